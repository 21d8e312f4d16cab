//! One truth (issue 17): every generated history goes through `analyze`, through the detector on the
//! in-memory twins (deliveries in EventBridge's order, the sweep every 5 minutes) and through the
//! state-table report afterwards. Per group they must give the same verdict, lease, lease source,
//! credential source, client and severity, and the detector must page exactly the groups the offline
//! report says page at the default floor.
//!
//! Every disagreement is printed with its seed and group. Knobs (environment):
//! - `DIFFERENTIAL_HISTORIES=n`: how many histories (seeds `0..n`); default 300.
//! - `DIFFERENTIAL_SEED=n`: only this seed, with what was planted and each path's answer printed.
//! - `DIFFERENTIAL_SHAPE=Name`: histories of that one shape only (e.g. `RenewalWithStraggler`).
//! - `DIFFERENTIAL_SAMPLE=dir` (absolute): with `DIFFERENTIAL_SEED`, writes the history there as a
//!   scenario (a trail file, and `deliveries.txt`: what the detector is handed, in order, and when) and
//!   prints what `analyze` reports of it: the makings of a sample.
//!
//! Every sample of `samples/` that has a `deliveries.txt` (what the detector is handed, in order, and
//! when: a seed that once disagreed, written with `DIFFERENTIAL_SAMPLE`) is replayed the same way by the
//! second test. Every call into the engine is in `differential/paths.rs`. The rules both paths follow are
//! in docs/rules.md ("Incidents").

#[path = "differential/paths.rs"]
mod paths;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use tokenwatch_simulate::history::{self, History, Shape};

/// Account + principal (its last path segment) + session: a group, whatever path reports it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    account: Option<String>,
    principal: Option<String>,
    session: Option<String>,
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: &Option<String>| p.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "{}|{}|{}",
            part(&self.account),
            part(&self.principal),
            part(&self.session)
        )
    }
}

/// What one path says about one group, in the report's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    key: Key,
    verdict: String,
    lease_seconds: Option<u64>,
    lease_source: Option<String>,
    credential_source: String,
    client: Option<String>,
    severity: String,
    failures: u64,
    /// Offline: whether any of the group's incidents pages at the default floor.
    pages: bool,
}

/// Which path disagrees with `analyze`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Route {
    /// The state-table report after the history.
    Table,
    /// A page the detector published (open or escalation).
    Page,
    /// Whether the detector paged the group at all.
    Paging,
}

#[derive(Clone, Debug)]
struct Disagreement {
    seed: u64,
    key: Key,
    shape: Option<Shape>,
    route: Route,
    field: &'static str,
    offline: String,
    other: String,
}

impl Disagreement {
    /// What kind of disagreement it is, without the seed and group: for counting.
    fn class(&self) -> String {
        let shape = self.shape.map_or(String::new(), |s| format!("{s:?}: "));
        format!(
            "{shape}{:?} {}: analyze {} / other {}",
            self.route, self.field, self.offline, self.other
        )
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = match self.route {
            Route::Table => "the state-table report",
            Route::Page => "the detector's page",
            Route::Paging => "the detector",
        };
        write!(
            f,
            "seed {} group {} ({}): {} says {} = {}, analyze says {}",
            self.seed,
            self.key,
            self.shape.map_or("?".to_owned(), |s| format!("{s:?}")),
            who,
            self.field,
            self.other,
            self.offline
        )
    }
}

fn shape_of(h: &History, key: &Key) -> Option<Shape> {
    h.planted
        .iter()
        .find(|p| {
            let name = p.principal.rsplit('/').next();
            name == key.principal.as_deref()
                && match &key.session {
                    Some(s) => p.sessions.contains(s),
                    None => p.sessions.is_empty(),
                }
        })
        .map(|p| p.shape)
}

fn text<T: fmt::Debug>(v: &Option<T>) -> String {
    match v {
        Some(v) => format!("{v:?}").trim_matches('"').to_owned(),
        None => "null".to_owned(),
    }
}

/// The fields every path must agree on; `severity` only where it is the report's severity.
fn fields(a: &Outcome, b: &Outcome, with_severity: bool) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut field = |name, x: String, y: String| {
        if x != y {
            out.push((name, x, y));
        }
    };
    field("verdict", a.verdict.clone(), b.verdict.clone());
    field("lease_seconds", text(&a.lease_seconds), text(&b.lease_seconds));
    field("lease_source", text(&a.lease_source), text(&b.lease_source));
    field(
        "credential_source",
        a.credential_source.clone(),
        b.credential_source.clone(),
    );
    field("client", text(&a.client), text(&b.client));
    if with_severity {
        field("severity", a.severity.clone(), b.severity.clone());
    }
    out
}

/// Runs one history through the three paths and lists where they disagree.
fn differences(h: &History, verbose: bool) -> Vec<Disagreement> {
    let live = paths::live(h);
    let (start, _) = h.span();
    let table = paths::table(&live, start - 86_400);
    compare(h, verbose, &live.pages, &live.faults, table)
}

/// Where the three paths disagree on `h`: `pages` and `faults` are the detector's, `table` its
/// state-table report.
fn compare(
    h: &History,
    verbose: bool,
    pages: &[Outcome],
    faults: &[String],
    table: Vec<Outcome>,
) -> Vec<Disagreement> {
    let offline: BTreeMap<Key, Outcome> = paths::offline(h)
        .into_iter()
        .map(|o| (o.key.clone(), o))
        .collect();
    let table: BTreeMap<Key, Outcome> = table.into_iter().map(|o| (o.key.clone(), o)).collect();
    if verbose {
        println!("seed {} planted:\n{}", h.seed, h.describe());
        println!("deliveries (delivered, eventTime, call, error, who):");
        for d in &h.deliveries {
            let r = &h.records[d.record];
            let ui = &r["userIdentity"];
            let who = r["requestParameters"]["roleSessionName"]
                .as_str()
                .or(ui["arn"].as_str())
                .or(ui["accessKeyId"].as_str())
                .unwrap_or("?");
            println!(
                "  {} {} {} {} {} {}",
                d.at,
                history::event_time(r),
                r["eventName"].as_str().unwrap_or("?"),
                r["errorCode"].as_str().unwrap_or("-"),
                who,
                ui["accessKeyId"].as_str().unwrap_or("")
            );
        }
        for (name, outcomes) in [
            ("analyze", offline.values().collect::<Vec<_>>()),
            ("table", table.values().collect()),
            ("pages", pages.iter().collect()),
        ] {
            println!("{name}:");
            for o in outcomes {
                println!("  {o:?}");
            }
        }
    }
    assert!(
        faults.is_empty(),
        "seed {}: the detector reported faults: {:?}",
        h.seed,
        faults
    );

    let mut out = Vec::new();
    let mut push = |key: &Key, route, field, x: String, y: String| {
        out.push(Disagreement {
            seed: h.seed,
            key: key.clone(),
            shape: shape_of(h, key),
            route,
            field,
            offline: x,
            other: y,
        });
    };
    let keys: BTreeSet<&Key> = offline.keys().chain(table.keys()).collect();
    for key in keys {
        match (offline.get(key), table.get(key)) {
            (Some(a), Some(b)) => {
                for (field, x, y) in fields(a, b, true) {
                    push(key, Route::Table, field, x, y);
                }
            }
            (Some(_), None) => push(key, Route::Table, "group", "present".into(), "absent".into()),
            (None, Some(_)) => push(key, Route::Table, "group", "absent".into(), "present".into()),
            (None, None) => {}
        }
    }
    let paged: BTreeSet<&Key> = pages.iter().map(|p| &p.key).collect();
    for (key, o) in &offline {
        let should = paths::pages_at_default_floor(o);
        if should != paged.contains(key) {
            push(
                key,
                Route::Paging,
                "paged",
                format!("{} ({} {})", should, o.verdict, o.severity),
                paged.contains(key).to_string(),
            );
        }
    }
    let mut seen = BTreeSet::new();
    for page in pages {
        match offline.get(&page.key) {
            Some(o) => {
                for (field, x, y) in fields(o, page, false) {
                    if seen.insert((page.key.clone(), field, y.clone())) {
                        push(&page.key, Route::Page, field, x, y);
                    }
                }
            }
            None => {
                if seen.insert((page.key.clone(), "group", String::new())) {
                    push(&page.key, Route::Page, "group", "absent".into(), "paged".into());
                }
            }
        }
    }
    out
}

/// Writes a history as a scenario folder: the trail file (what `analyze` reads) and `deliveries.txt`
/// (which `analyze` skips: what the detector is handed, in order, and when); prints what `analyze`
/// reports of it, the starting point of the sample's `expected.json`.
fn write_sample(h: &History, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let (name, trail) = h.trail_file();
    std::fs::write(dir.join(name), &trail).unwrap();
    std::fs::write(dir.join("deliveries.txt"), h.deliveries_text()).unwrap();
    println!(
        "analyze of {}:\n{}",
        dir.display(),
        serde_json::to_string_pretty(&paths::analyze_text(&trail)).unwrap()
    );
}

/// A scenario folder as a history: its trail file and its deliveries.
fn read_sample(dir: &Path) -> History {
    let mut trail = None;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && name != "expected.json" {
            trail = Some(std::fs::read_to_string(&path).unwrap());
        }
    }
    let trail = trail.unwrap_or_else(|| panic!("{}: no trail file", dir.display()));
    let deliveries = std::fs::read_to_string(dir.join("deliveries.txt")).unwrap();
    history::from_sample(&trail, &deliveries).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

fn env<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn shape_named(name: &str) -> Shape {
    *Shape::ALL
        .iter()
        .find(|s| format!("{s:?}") == name)
        .unwrap_or_else(|| panic!("DIFFERENTIAL_SHAPE={name}: not one of {:?}", Shape::ALL))
}

fn history_of(seed: u64) -> History {
    match std::env::var("DIFFERENTIAL_SHAPE") {
        Ok(name) => history::with_shapes(seed, &[shape_named(&name)]),
        Err(_) => history::generate(seed),
    }
}

#[test]
fn the_generator_delivers_within_the_detectors_delivery_allowance() {
    assert_eq!(
        tokenwatch_simulate::history::MAX_DELIVERY_DELAY,
        paths::DELIVERY_ALLOWANCE,
        "the paths can only agree on records the detector waits for"
    );
}

#[test]
fn analyze_the_detector_and_the_state_table_agree_on_generated_histories() {
    let one: Option<u64> = env("DIFFERENTIAL_SEED");
    let seeds: Vec<u64> = match one {
        Some(seed) => vec![seed],
        None => (0..env("DIFFERENTIAL_HISTORIES").unwrap_or(300)).collect(),
    };
    let mut found = Vec::new();
    let mut classes: BTreeMap<String, (usize, u64)> = BTreeMap::new();
    for &seed in &seeds {
        let h = history_of(seed);
        if let (Some(_), Ok(dir)) = (one, std::env::var("DIFFERENTIAL_SAMPLE")) {
            write_sample(&h, Path::new(&dir));
        }
        for d in differences(&h, one.is_some()) {
            classes.entry(d.class()).or_insert((0, d.seed)).0 += 1;
            found.push(d);
        }
    }
    println!(
        "{} histories; disagreements by kind (count, first seed):",
        seeds.len()
    );
    for (class, (n, seed)) in &classes {
        println!("  {n:4} × {class} (seed {seed})");
    }
    for d in &found {
        println!("{d}");
    }
    assert!(
        found.is_empty(),
        "{} disagreements; replay one with DIFFERENTIAL_SEED=<seed>, write it as a sample with \
         DIFFERENTIAL_SAMPLE=<dir> (the first: {})",
        found.len(),
        found[0]
    );
}

/// Every sample with a `deliveries.txt` was once a disagreement: replayed through the three paths, it
/// must agree now.
#[test]
fn every_sample_with_deliveries_agrees_on_all_paths() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../samples");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("deliveries.txt").is_file())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 8,
        "the samples that were disagreements are missing: {dirs:?}"
    );
    let mut problems = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for d in differences(&read_sample(dir), false) {
            problems.push(format!("{name}: {d}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The detector on the real state table: a handful of generated histories through `DynamoStore` on
/// ministack (a fresh table each), compared with `analyze` and with the table's own report, as above.
/// The deployed function itself reads the wall clock, so a history could only be replayed through it in
/// real time; the handler code it runs is the same `Detector` driven here with each delivery's time.
#[test]
fn a_handful_of_histories_agree_on_the_real_state_table_in_ministack() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let seeds: Vec<u64> = match env("DIFFERENTIAL_SEED") {
        Some(seed) => vec![seed],
        None => vec![4, 16, 41, 97, 178],
    };
    let mut found = Vec::new();
    for seed in seeds {
        let h = history_of(seed);
        let (live, table) = runtime.block_on(async {
            let client = aws_sdk_dynamodb::Client::new(&tokenwatch_testkit::Emulator::Ministack.sdk().await);
            let name = tokenwatch_testkit::unique("differential");
            tokenwatch_aws::create_table(&client, &name)
                .await
                .expect("a table");
            let live = paths::live_on(&h, tokenwatch_aws::DynamoStore::from_client(client, name)).await;
            let (start, _) = h.span();
            let table = paths::table_on(&live, start - 86_400).await;
            (live, table)
        });
        found.extend(compare(&h, false, &live.pages, &live.faults, table));
    }
    for d in &found {
        println!("{d}");
    }
    assert!(found.is_empty(), "{} disagreements on DynamoDB", found.len());
}
