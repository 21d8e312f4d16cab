//! Writes a corpus and reports how long it took.
//!
//! `cargo run --release -p tokenwatch-simulate --example generate -- DIR [RECORDS] [SEED]`

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: generate DIR [RECORDS] [SEED]")?;
    let records = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1_000_000);
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    let opts = tokenwatch_simulate::Options {
        records,
        seed,
        ..Default::default()
    };
    let started = Instant::now();
    let summary = tokenwatch_simulate::write_corpus(dir.as_ref(), &opts)?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} records in {} files: {:.1} MB JSON ({:.0} B/record), {:.1} MB gzip, {} failures in {} groups; \
         {secs:.2} s ({:.0} records/s, {:.0} MB/s of JSON)",
        summary.records,
        summary.files,
        summary.json_bytes as f64 / 1e6,
        summary.json_bytes as f64 / summary.records.max(1) as f64,
        summary.gzip_bytes as f64 / 1e6,
        summary.failures,
        summary.groups.len(),
        summary.records as f64 / secs,
        summary.json_bytes as f64 / 1e6 / secs,
    );
    println!("{}", serde_json::to_string_pretty(&summary.to_json())?);
    Ok(())
}
