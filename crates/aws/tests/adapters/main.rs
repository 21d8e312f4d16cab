//! The adapters over real HTTP: the real SDK clients against moto (and ministack where moto falls short),
//! plus aws-smithy-mocks for the error paths no emulator produces. One test binary.
//!
//! Emulator tests need `TOKENWATCH_MOTO_ENDPOINT` / `TOKENWATCH_MINISTACK_ENDPOINT`: `scripts/test.sh`
//! starts the emulators and sets them; by hand, `scripts/emulators.sh install && scripts/emulators.sh
//! start && source target/emulators/env`. Without them those tests fail; they never pass silently.

mod common;
mod concurrency;
mod contract;
mod group_ids;
mod issuance_cap;
mod merge;
mod mocks;
mod sns;
mod timeouts;
