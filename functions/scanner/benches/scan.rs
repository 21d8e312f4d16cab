//! Records per second of one scanner invocation: the handler, in process, over batches of the simulated
//! corpus's log files served by ministack's S3 (real SDK, real HTTP on loopback), as a batch of the
//! Distributed Map hands them to it, with the template's DOWNLOADS and every partial written to S3.
//! Prints, per batch size, the records, wall and CPU seconds of each invocation and their records/s.
//!
//!     bench/corpus.sh                               # makes bench/corpus/1000000 once
//!     scripts/emulators.sh start && source target/emulators/env
//!     cargo bench -p tokenwatch-scanner --bench scan [-- BATCH...]    # default batches of 50 files
//!
//! TOKENWATCH_BENCH_CORPUS names another corpus folder.

use std::path::{Path, PathBuf};
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use serde_json::json;
use tokenwatch_aws::partials::PartialStore;
use tokenwatch_scanner::config::Config;
use tokenwatch_scanner::{Scanner, handle};
use tokenwatch_testkit::{Emulator, unique};

/// This process's user + system CPU seconds (Linux).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let batches: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let batches = if batches.is_empty() { vec![50] } else { batches };
    let corpus = std::env::var_os("TOKENWATCH_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/corpus/1000000"));
    let mut paths = Vec::new();
    files(&corpus, &mut paths);
    paths.sort();
    assert!(
        !paths.is_empty(),
        "{}: no corpus; make it with bench/corpus.sh",
        corpus.display()
    );

    let sdk = Emulator::Ministack.sdk().await;
    let client = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    );
    let trail = unique("tw-bench-scan-trail");
    let work = unique("tw-bench-scan-work");
    for bucket in [&trail, &work] {
        client.create_bucket().bucket(bucket).send().await.unwrap();
    }
    let started = Instant::now();
    let mut keys = Vec::new();
    let mut bytes = 0;
    for path in &paths {
        let key = path.strip_prefix(&corpus).unwrap().to_string_lossy().into_owned();
        let body = std::fs::read(path).unwrap();
        bytes += body.len();
        client
            .put_object()
            .bucket(&trail)
            .key(&key)
            .body(ByteStream::from(body))
            .send()
            .await
            .unwrap();
        keys.push(key);
    }
    println!(
        "corpus: {} files, {:.1} MB gzip, uploaded to ministack in {:.1} s",
        keys.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // The template's settings: two downloads on one vCPU, every partial to S3.
    let config = Config::from_lookup(|k| match k {
        "TRAIL_BUCKET" => Some(trail.clone()),
        "PARTIALS_BUCKET" => Some(work.clone()),
        "DOWNLOADS" => Some("2".into()),
        "INLINE_LIMIT" => Some("0".into()),
        _ => None,
    })
    .unwrap();
    let scanner = Scanner {
        partials: PartialStore::new(client.clone(), &work, &config.partials_prefix),
        client: client.clone(),
        config,
    };
    let job = json!({"Bucket": trail, "Cooldown": 3600, "Run": "bench"});
    for size in batches {
        let (mut records, mut wall, mut cpu, mut n) = (0u64, 0.0, 0.0, 0);
        let mut best = 0.0f64;
        for chunk in keys.chunks(size) {
            let batch = json!({
                "Items": chunk.iter().map(|k| json!({"Key": k})).collect::<Vec<_>>(),
                "BatchInput": job,
            });
            let (t, c) = (Instant::now(), cpu_seconds());
            let out = handle(batch, &scanner).await.unwrap();
            let (dt, dc) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
            let r = out["Records"].as_u64().unwrap();
            assert_eq!(out["Unread"], json!(0), "{out}");
            records += r;
            wall += dt;
            cpu += dc;
            n += 1;
            best = best.max(r as f64 / dt);
        }
        println!(
            "batches of {size} files: {n} invocations, {records} records, {:.0} records/s per invocation \
             (wall; best {best:.0}), {:.0} records per CPU-second, {:.2} s and {:.0} records per invocation",
            records as f64 / wall,
            records as f64 / cpu.max(1e-9),
            wall / n as f64,
            records as f64 / n as f64
        );
    }
    scanner.partials.delete_run("bench").await.unwrap();
}
