//! End-to-end tests across crates: one test binary (see Cargo.toml).

mod detector;
mod distributed;
mod emulated;
mod golden;
mod infra;
mod lambda;
mod livescan;
mod order;
mod reporter;
mod simulated;
