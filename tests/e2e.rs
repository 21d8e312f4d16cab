//! End-to-end tests across crates: one test binary (see Cargo.toml).

mod detector;
mod infra;
mod simulated;
