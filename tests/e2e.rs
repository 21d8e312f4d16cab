//! End-to-end tests across crates: one test binary (see Cargo.toml).

mod detector;
mod emulated;
mod infra;
mod lambda;
mod reporter;
mod simulated;
