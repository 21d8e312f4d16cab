//! Placeholder until the AWS adapters land.
fn main() {}
