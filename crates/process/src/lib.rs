//! What tokenwatch's Lambda functions share as processes, and the engine leaves out on purpose: their
//! environment read once into typed values ([`mod@env`], with the variables both functions read in
//! [`env::Common`]), the wall clock ([`now`]), CloudWatch embedded-metric lines ([`emf`]) and JSON logs
//! ([`init_logging`]). No AWS SDK: the adapters are in `tokenwatch-aws`.

pub mod emf;
pub mod env;

use std::time::{SystemTime, UNIX_EPOCH};

use tokenwatch_core::time::Epoch;

/// The wall clock, in seconds. The engine never reads it: the functions pass it in.
pub fn now() -> Epoch {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as Epoch)
        .unwrap_or_default()
}

/// JSON logs on stderr, at the level `RUST_LOG` names (`error` … `trace`) or `info`. A plain level rather
/// than `EnvFilter` directives keeps a regex engine out of the binaries.
pub fn init_logging() {
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|l| l.parse::<tracing_subscriber::filter::LevelFilter>().ok())
        .unwrap_or(tracing_subscriber::filter::LevelFilter::INFO);
    let _ = tracing_subscriber::fmt()
        .json()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .without_time()
        .try_init();
}
