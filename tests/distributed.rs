//! `tokenwatch report --from-trail … --distributed` end to end on ministack: the scanner's real debug
//! bootstrap deployed as a Lambda and the back-fill's state machine created from the template (its
//! Distributed Map reading the manifest the CLI writes), the samples uploaded as a trail's log files with
//! three faults (a truncated gzip, an object that is not a CloudTrail log file, an object the bucket
//! policy denies the scanner), and the report compared with `analyze` over the same files.
//!
//! ministack runs every item as its own invocation (it ignores `ItemBatcher`, so each item carries its
//! job); the template's settings are otherwise as deployed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use serde_json::{Value, json};
use tokenwatch_core::{Analyzer, Window};
use tokenwatch_testkit::{Emulator, inputs, scenarios, unique};

use crate::lambda::{bootstrap_zip, checked_binary};

/// The account that owns the trail bucket.
const OWNER: &str = "111111111111";
/// The account the stack is deployed in: the scanner and the CLI read as it.
const READER: &str = "222222222222";
const DAY: &str = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/02/";

async fn s3(access_key: &str) -> aws_sdk_s3::Client {
    let sdk = Emulator::Ministack.sdk_as(access_key).await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// `${Name}` in a `!Sub` of the back-fill's resources: `vars` first, then pseudo parameters, then the
/// parameters' defaults.
fn substitute(text: &str, vars: &[(&str, String)], template: &Value) -> String {
    let re = regex::Regex::new(r"\$\{([^}]+)\}").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        let name = &c[1];
        if let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) {
            return v.clone();
        }
        match name {
            "AWS::Partition" => "aws".into(),
            "AWS::Region" => "us-east-1".into(),
            "AWS::AccountId" => READER.into(),
            _ => match &template["Parameters"][name]["Default"] {
                Value::String(s) => s.clone(),
                Value::Null => panic!("${{{name}}}: not a parameter with a default"),
                other => other.to_string(),
            },
        }
    })
    .into_owned()
}

/// The deployed back-fill: its state machine and work bucket.
struct Backfill {
    state_machine: String,
    work: String,
}

/// Deploys the scanner (reading `trail`) and the state machine as the template defines them, with
/// `parameters` overriding the defaults.
async fn deploy(stack: &str, trail: &str, parameters: &[(&str, String)]) -> Backfill {
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime, State};

    let sdk = Emulator::Ministack.sdk_as(READER).await;
    let template = crate::infra::template("template.yaml");
    let work = unique("tw-dist-work");
    s3(READER)
        .await
        .create_bucket()
        .bucket(&work)
        .send()
        .await
        .unwrap();

    let function = &template["Resources"]["ScannerFunction"];
    let fp = &function["Properties"];
    let binary_name = function["Metadata"]["BuildProperties"]["Binary"]
        .as_str()
        .unwrap();
    // TOKENWATCH_SCANNER_BINARY: another build of the scanner (a release build, to measure it).
    let binary = match std::env::var_os("TOKENWATCH_SCANNER_BINARY") {
        Some(path) => std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", Path::new(&path).display())),
        None => checked_binary(binary_name, "functions/scanner").1,
    };
    let mut environment = Environment::builder();
    for (name, value) in fp["Environment"]["Variables"].as_object().unwrap() {
        let value = match value.get("Ref").and_then(Value::as_str) {
            Some("BackfillTrailBucket") => trail.to_owned(),
            Some("BackfillBucket") => work.clone(),
            Some(other) => panic!("the scanner's {name} refers to {other}, which this test does not deploy"),
            None => value.as_str().unwrap().to_owned(),
        };
        environment = environment.variables(name, value);
    }
    environment = environment.variables("AWS_ENDPOINT_URL", Emulator::Ministack.endpoint());
    let architecture = match std::env::consts::ARCH {
        "aarch64" => Architecture::Arm64,
        _ => Architecture::X8664,
    };
    let lambda = aws_sdk_lambda::Client::new(&sdk);
    let function_name = format!("{stack}-ScannerFunction");
    let created = lambda
        .create_function()
        .function_name(&function_name)
        .runtime(Runtime::from(fp["Runtime"].as_str().unwrap()))
        .handler(fp["Handler"].as_str().unwrap())
        .role(format!("arn:aws:iam::{READER}:role/{stack}-ScannerRole"))
        .architectures(architecture)
        .memory_size(fp["MemorySize"].as_i64().unwrap() as i32)
        .timeout(fp["Timeout"].as_i64().unwrap() as i32)
        .environment(environment.build())
        .code(
            FunctionCode::builder()
                .zip_file(Blob::new(bootstrap_zip(&binary)))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while lambda
        .get_function_configuration()
        .function_name(&function_name)
        .send()
        .await
        .unwrap()
        .state
        != Some(State::Active)
    {
        assert!(Instant::now() < deadline, "the scanner is not Active after 60 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let machine = &template["Resources"]["BackfillStateMachine"]["Properties"];
    let sub = &machine["DefinitionString"]["Fn::Sub"];
    let definition = substitute(
        sub[0].as_str().unwrap(),
        &[&[("Scanner", created.function_arn.unwrap())], parameters].concat(),
        &template,
    );
    let definition: Value = serde_json::from_str(&definition).expect("the definition is JSON");
    let name = substitute(
        machine["StateMachineName"]["Fn::Sub"].as_str().unwrap(),
        &[("AWS::StackName", stack.to_owned())],
        &template,
    );
    let sfn = aws_sdk_sfn::Client::new(&sdk);
    let state_machine = sfn
        .create_state_machine()
        .name(name)
        .definition(definition.to_string())
        .role_arn(format!(
            "arn:aws:iam::{READER}:role/{stack}-BackfillStateMachineRole"
        ))
        .send()
        .await
        .unwrap()
        .state_machine_arn;
    Backfill { state_machine, work }
}

/// Uploads the samples' trail log files under one day folder of `trail`, and the faults; returns
/// (the objects, the truncated, stray and denied keys).
async fn upload_samples(trail: &str) -> (Vec<(String, Vec<u8>)>, [String; 3]) {
    let owner = s3(OWNER).await;
    owner.create_bucket().bucket(trail).send().await.unwrap();
    let mut objects: Vec<(String, Vec<u8>)> = Vec::new();
    for dir in scenarios() {
        let scenario = dir.file_name().unwrap().to_string_lossy().into_owned();
        for file in inputs(&dir) {
            let body = std::fs::read(&file).unwrap();
            // The samples that are trail log files (the others are EventBridge events, lookup pages…).
            let mut probe = Analyzer::collecting(Window::default(), 3600);
            if tokenwatch_aws::trail::read_log_file(&mut probe, std::io::Cursor::new(body.clone())).is_err() {
                continue;
            }
            let file_name = file.file_name().unwrap().to_string_lossy().into_owned();
            objects.push((format!("{DAY}{scenario}-{file_name}"), body));
        }
    }
    assert!(
        objects.len() >= 13,
        "{} log files among the samples",
        objects.len()
    );
    let whole = objects
        .iter()
        .find(|(k, _)| k.ends_with(".gz"))
        .unwrap()
        .1
        .clone();
    let faults = [
        format!("{DAY}fault-truncated.json.gz"),
        format!("{DAY}fault-not-a-log-file.json"),
        format!("{DAY}fault-denied.json.gz"),
    ];
    objects.push((faults[0].clone(), whole[..whole.len() / 2].to_vec()));
    objects.push((faults[1].clone(), br#"{"hello":"world"}"#.to_vec()));
    objects.push((faults[2].clone(), whole.clone()));
    for (key, body) in &objects {
        owner
            .put_object()
            .bucket(trail)
            .key(key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
    }
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": ["s3:ListBucket", "s3:GetObject"],
             "Resource": [format!("arn:aws:s3:::{trail}"), format!("arn:aws:s3:::{trail}/*")]},
            {"Effect": "Deny", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
             "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{trail}/{}", faults[2])}
        ]
    });
    owner
        .put_bucket_policy()
        .bucket(trail)
        .policy(policy.to_string())
        .send()
        .await
        .unwrap();
    (objects, faults)
}

/// Runs `tokenwatch` as the stack's account against ministack; returns (exit code, stdout, stderr).
fn tokenwatch(args: &[&str]) -> (i32, String, String) {
    let (path, _) = checked_binary("tokenwatch", "crates/cli");
    let out = Command::new(path)
        .args(args)
        .env("AWS_ENDPOINT_URL", Emulator::Ministack.endpoint())
        .env("AWS_ACCESS_KEY_ID", READER)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A report document without the time it was made.
fn report_of(stdout: &str) -> Value {
    let mut v: Value = serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    v.as_object_mut().unwrap().remove("generated_at");
    v
}

/// `analyze` over `objects` (but `skip`) written as files.
fn analyze(objects: &[(String, Vec<u8>)], skip: &str, dir: &Path) -> Value {
    for (key, body) in objects.iter().filter(|(k, _)| k != skip) {
        let path = dir.join(key.rsplit('/').next().unwrap());
        std::fs::write(path, body).unwrap();
    }
    let (_, stdout, stderr) = tokenwatch(&["analyze", "--format", "json", dir.to_str().unwrap()]);
    assert!(!stdout.is_empty(), "analyze wrote nothing: {stderr}");
    report_of(&stdout)
}

/// Files left under the work bucket's runs folder.
async fn leftovers(work: &str) -> Vec<String> {
    s3(READER)
        .await
        .list_objects_v2()
        .bucket(work)
        .prefix("tokenwatch-partials/")
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_distributed_back_fill_gives_the_report_of_analyze_with_the_faults_named() {
    let stack = unique("tw-dist");
    let trail = unique("tw-dist-trail");
    let (objects, faults) = upload_samples(&trail).await;
    let backfill = deploy(&stack, &trail, &[]).await;

    let started = Instant::now();
    let (code, stdout, stderr) = distributed(&trail, &backfill, "600");
    eprintln!(
        "--distributed: {:.1} s\n{stderr}",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(code, 2, "the faults make the report partial: exit 2\n{stderr}");
    let named = |key: &str, words: &str| {
        let line = stderr
            .lines()
            .find(|l| l.contains(&format!(" s3://{trail}/{key}: ")))
            .unwrap_or_else(|| panic!("{key} is not named:\n{stderr}"));
        assert!(line.contains(words), "{line}");
    };
    named(&faults[0], "gzip");
    named(&faults[1], "CloudTrail");
    named(&faults[2], "AccessDenied");
    assert!(
        stderr.contains(&format!(
            "{} items (0 failed, 0 succeeded on a retry)",
            objects.len()
        )),
        "every object is an item:\n{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let expected = analyze(&objects, &faults[2], dir.path());
    assert_eq!(report_of(&stdout), expected, "--distributed and analyze differ");
    assert!(
        leftovers(&backfill.work).await.is_empty(),
        "the run's manifest and partials are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_back_fill_whose_items_all_fail_is_an_error_naming_them_and_leaves_no_files() {
    // The scanner reads only its own trail bucket: every item of another bucket is refused, the map
    // exceeds its tolerated failures and the execution fails.
    let stack = unique("tw-dist-bad");
    let trail = unique("tw-dist-trail");
    let other = unique("tw-dist-other");
    let (_, _) = upload_samples(&other).await;
    let owner = s3(OWNER).await;
    owner.create_bucket().bucket(&trail).send().await.unwrap();
    let backfill = deploy(&stack, &trail, &[]).await;
    let (code, _, stderr) = distributed(&other, &backfill, "300");
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("ended FAILED"), "{stderr}");
    assert!(
        stderr.contains("InvalidItem") && stderr.contains("is not the trail bucket"),
        "{stderr}"
    );
    assert!(leftovers(&backfill.work).await.is_empty());

    // A state machine that does not exist: an error at once, not a wait.
    let started = Instant::now();
    let (code, _, stderr) = tokenwatch(&[
        "report",
        "--from-trail",
        &format!("s3://{other}"),
        "--distributed",
        "--state-machine",
        &format!("arn:aws:states:us-east-1:{READER}:stateMachine:{stack}-nothing"),
        "--work-bucket",
        &backfill.work,
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("starting the back-fill"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(leftovers(&backfill.work).await.is_empty());
}

/// `tokenwatch report --from-trail s3://BUCKET --distributed` with `backfill`'s state machine and work
/// bucket, giving up after `timeout` seconds, as JSON: (exit code, stdout, stderr).
fn distributed(bucket: &str, backfill: &Backfill, timeout: &str) -> (i32, String, String) {
    tokenwatch(&[
        "report",
        "--from-trail",
        &format!("s3://{bucket}"),
        "--distributed",
        "--state-machine",
        &backfill.state_machine,
        "--work-bucket",
        &backfill.work,
        "--timeout",
        timeout,
        "--format",
        "json",
    ])
}

/// The scanner's own figures over every item of the state machine's last map run: (invocations,
/// records, seconds spent reading), from each item's result.
async fn scanner_figures(state_machine: &str) -> (usize, u64, f64) {
    let sfn = aws_sdk_sfn::Client::new(&Emulator::Ministack.sdk_as(READER).await);
    let executions = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .send()
        .await
        .unwrap();
    let execution = executions.executions()[0].execution_arn().to_owned();
    let runs = sfn
        .list_map_runs()
        .execution_arn(&execution)
        .send()
        .await
        .unwrap();
    let map_run = runs.map_runs()[0].map_run_arn().to_owned();
    let (mut invocations, mut records, mut seconds) = (0, 0, 0.0);
    let mut token = None;
    loop {
        let page = sfn
            .list_executions()
            .map_run_arn(&map_run)
            .set_next_token(token.take())
            .send()
            .await
            .unwrap();
        for item in page.executions() {
            let out = sfn
                .describe_execution()
                .execution_arn(item.execution_arn())
                .send()
                .await
                .unwrap();
            let result: Value = serde_json::from_str(out.output().unwrap_or("null")).unwrap();
            invocations += 1;
            records += result["Records"].as_u64().unwrap_or(0);
            seconds += result["Seconds"].as_f64().unwrap_or(0.0);
        }
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    (invocations, records, seconds)
}

/// The acceptance run over the simulated corpus of 1,000,000 records (`bench/corpus.sh` makes it under
/// bench/corpus/1000000; TOKENWATCH_DIST_CORPUS names another). Opt-in, a few minutes:
/// `cargo nextest run -p tokenwatch-e2e --run-ignored only a_million`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "minutes: the 1,000,000-record corpus on ministack (opt in with --run-ignored)"]
async fn a_million_simulated_records_give_the_report_of_analyze() {
    let corpus = std::env::var_os("TOKENWATCH_DIST_CORPUS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/corpus/1000000"));
    let mut files = Vec::new();
    crate::lambda::files(&corpus, &mut files);
    files.sort();
    assert!(
        !files.is_empty(),
        "{}: no corpus; make it with bench/corpus.sh",
        corpus.display()
    );
    let stack = unique("tw-dist-1m");
    let trail = unique("tw-dist-1m-trail");
    let owner = s3(OWNER).await;
    owner.create_bucket().bucket(&trail).send().await.unwrap();
    let started = Instant::now();
    for file in &files {
        let key = file.strip_prefix(&corpus).unwrap().to_string_lossy().into_owned();
        owner
            .put_object()
            .bucket(&trail)
            .key(key)
            .body(ByteStream::from(std::fs::read(file).unwrap()))
            .send()
            .await
            .unwrap();
    }
    eprintln!(
        "uploaded {} files in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    owner
        .put_bucket_policy()
        .bucket(&trail)
        .policy(
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{READER}:root")},
                 "Action": ["s3:ListBucket", "s3:GetObject"],
                 "Resource": [format!("arn:aws:s3:::{trail}"), format!("arn:aws:s3:::{trail}/*")]}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    // ministack runs each invocation as a process on this machine's cores: at the template's 100 at
    // once, its S3 answers late enough for downloads to time out.
    let backfill = deploy(&stack, &trail, &[("BackfillMaxConcurrency", "4".into())]).await;
    let started = Instant::now();
    let (code, stdout, stderr) = distributed(&trail, &backfill, "3600");
    let wall = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stderr}");
    let (_, expected, analyze_stderr) =
        tokenwatch(&["analyze", "--format", "json", corpus.to_str().unwrap()]);
    assert_eq!(
        report_of(&stdout),
        report_of(&expected),
        "--distributed and analyze differ\n{stderr}\n{analyze_stderr}"
    );
    let (invocations, records, seconds) = scanner_figures(&backfill.state_machine).await;
    eprintln!(
        "--distributed over {} files in {wall:.1} s; {invocations} scanner invocations read {records} records \
         in {seconds:.1} s of their own time: {:.0} records/s per invocation\n{stderr}",
        files.len(),
        records as f64 / seconds.max(1e-9)
    );
    assert_eq!(records, 1_000_000, "every record read once");
    assert!(leftovers(&backfill.work).await.is_empty());
}
