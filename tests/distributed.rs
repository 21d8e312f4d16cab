//! `tokenwatch report --from-trail … --distributed` end to end on ministack: the scanner's real debug
//! bootstrap deployed as a Lambda and the back-fill's state machine created from the template (its
//! Distributed Map reading the manifest the CLI writes), the samples uploaded as a trail's log files with
//! three faults (a truncated gzip, an object that is not a CloudTrail log file, an object the bucket
//! policy denies the scanner), and the report compared with `analyze` over the same files.
//!
//! ministack runs every item as its own invocation (it ignores `ItemBatcher`, so each item carries its
//! job); the template's settings are otherwise as deployed.
//!
//! The map's Retry is met by the real scanner over real HTTP: its S3 requests go through a proxy in front
//! of ministack's S3 that answers one object's `GET`s with `503 SlowDown` (S3's throttling) until the map
//! has seen the item fail once, or on every attempt. `--stack NAME` reads a stack created on ministack's
//! CloudFormation from the template's own back-fill bucket, condition and outputs.

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
    deploy_with(stack, trail, parameters, Around::default()).await
}

/// What a deployment has around it besides the template's settings.
#[derive(Default)]
struct Around {
    /// The work bucket, made already (by a stack); `None`: make one.
    work: Option<String>,
    /// The scanner's S3 endpoint (`AWS_ENDPOINT_URL_S3`), when it is not ministack's.
    s3_endpoint: Option<String>,
}

async fn deploy_with(stack: &str, trail: &str, parameters: &[(&str, String)], around: Around) -> Backfill {
    use aws_sdk_lambda::primitives::Blob;
    use aws_sdk_lambda::types::{Architecture, Environment, FunctionCode, Runtime, State};

    let sdk = Emulator::Ministack.sdk_as(READER).await;
    let template = crate::infra::template("template.yaml");
    let work = match around.work {
        Some(work) => work,
        None => {
            let work = unique("tw-dist-work");
            s3(READER)
                .await
                .create_bucket()
                .bucket(&work)
                .send()
                .await
                .unwrap();
            work
        }
    };

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
    if let Some(endpoint) = around.s3_endpoint {
        environment = environment.variables("AWS_ENDPOINT_URL_S3", endpoint);
    }
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

/// `tokenwatch ARGS` as the stack's account against ministack.
fn tokenwatch_command(args: &[&str]) -> Command {
    let (path, _) = checked_binary("tokenwatch", "crates/cli");
    let mut command = Command::new(path);
    command
        .args(args)
        .env("AWS_ENDPOINT_URL", Emulator::Ministack.endpoint())
        .env("AWS_ACCESS_KEY_ID", READER)
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
    command
}

/// (exit code, stdout, stderr) of a finished `tokenwatch`.
fn outcome(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tokenwatch` as the stack's account against ministack; returns (exit code, stdout, stderr).
fn tokenwatch(args: &[&str]) -> (i32, String, String) {
    outcome(tokenwatch_command(args).output().unwrap())
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
    outcome(distributed_command(bucket, backfill, timeout).output().unwrap())
}

/// The command [`distributed`] runs.
fn distributed_command(bucket: &str, backfill: &Backfill, timeout: &str) -> Command {
    tokenwatch_command(&[
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

/// ministack's S3 as the scanner sees it through a proxy that answers every `GET` of one object with
/// `503 SlowDown` while it is armed: the throttling S3 gives a hot prefix, met by the real scanner
/// over real HTTP. Each request gets its own upstream connection (`Connection: close`), so each is seen.
struct ThrottledS3 {
    endpoint: String,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    throttled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl ThrottledS3 {
    async fn start(key: &str) -> ThrottledS3 {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Emulator::Ministack
            .endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let armed = Arc::new(AtomicBool::new(true));
        let throttled = Arc::new(AtomicUsize::new(0));
        let (a, t, suffix) = (Arc::clone(&armed), Arc::clone(&throttled), format!("/{key}"));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (armed, throttled, suffix, upstream) =
                    (Arc::clone(&a), Arc::clone(&t), suffix.clone(), upstream.clone());
                tokio::spawn(async move {
                    let mut buffer = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let end = loop {
                        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match client.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
                    let mut words = head.split(' ');
                    let (method, target) =
                        (words.next().unwrap_or_default(), words.next().unwrap_or_default());
                    let path = target.split('?').next().unwrap_or_default();
                    if method == "GET" && path.ends_with(&suffix) && armed.load(Ordering::SeqCst) {
                        throttled.fetch_add(1, Ordering::SeqCst);
                        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                                    <Message>Please reduce your request rate.</Message></Error>";
                        let response = format!(
                            "HTTP/1.1 503 Slow Down\r\ncontent-type: application/xml\r\ncontent-length: {}\r\n\
                             connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = client.write_all(response.as_bytes()).await;
                        return;
                    }
                    let mut rewritten: Vec<String> = head
                        .trim_end()
                        .split("\r\n")
                        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                        .map(str::to_owned)
                        .collect();
                    rewritten.push("Connection: close".into());
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let mut out = (rewritten.join("\r\n") + "\r\n\r\n").into_bytes();
                    out.extend_from_slice(&buffer[end..]);
                    if server.write_all(&out).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        ThrottledS3 {
            endpoint,
            armed,
            throttled,
        }
    }

    fn heal(&self) {
        self.armed.store(false, std::sync::atomic::Ordering::SeqCst);
    }

    fn throttled(&self) -> usize {
        self.throttled.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The items (child executions) of the map run of `state_machine`'s newest execution, each with its
/// input and the number of its scanner attempts that failed (`TaskFailed` in its history).
async fn items_of(state_machine: &str) -> Vec<(String, String, usize)> {
    let sfn = aws_sdk_sfn::Client::new(&Emulator::Ministack.sdk_as(READER).await);
    let Ok(executions) = sfn
        .list_executions()
        .state_machine_arn(state_machine)
        .send()
        .await
    else {
        return Vec::new();
    };
    let Some(execution) = executions.executions().first() else {
        return Vec::new();
    };
    let Ok(runs) = sfn
        .list_map_runs()
        .execution_arn(execution.execution_arn())
        .send()
        .await
    else {
        return Vec::new();
    };
    let Some(run) = runs.map_runs().first() else {
        return Vec::new();
    };
    let mut items = Vec::new();
    let Ok(children) = sfn.list_executions().map_run_arn(run.map_run_arn()).send().await else {
        return Vec::new();
    };
    for child in children.executions() {
        let arn = child.execution_arn();
        let input = match sfn.describe_execution().execution_arn(arn).send().await {
            Ok(d) => d.input().unwrap_or_default().to_owned(),
            Err(_) => continue,
        };
        let failed = match sfn.get_execution_history().execution_arn(arn).send().await {
            Ok(h) => h
                .events()
                .iter()
                .filter(|e| e.r#type().as_str() == "TaskFailed")
                .count(),
            Err(_) => continue,
        };
        items.push((child.status().as_str().to_owned(), input, failed));
    }
    items
}

/// The template's Retry of the scanner's task for the error type `Retryable`: its MaxAttempts.
fn retries_of_retryable() -> usize {
    let template = crate::infra::template("template.yaml");
    let definition =
        template["Resources"]["BackfillStateMachine"]["Properties"]["DefinitionString"]["Fn::Sub"][0]
            .as_str()
            .unwrap()
            .to_owned();
    let definition: Value = serde_json::from_str(
        &regex::Regex::new(r"\$\{[^}]+\}")
            .unwrap()
            .replace_all(&definition, "1"),
    )
    .unwrap();
    let retry = &definition["States"]["Scan"]["ItemProcessor"]["States"]["ScanBatch"]["Retry"];
    let retrier = retry
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["ErrorEquals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "Retryable")
        })
        .expect("the scanner's task retries Retryable");
    assert!(retrier["BackoffRate"].as_f64().unwrap() > 1.0, "with backoff");
    retrier["MaxAttempts"].as_u64().unwrap() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_s3_throttles_once_is_retried_by_the_map_and_counted_and_the_report_is_analyze_s() {
    let stack = unique("tw-dist-retry");
    let trail = unique("tw-dist-trail");
    let (objects, faults) = upload_samples(&trail).await;
    let throttled_key = objects[0].0.clone();
    let proxy = ThrottledS3::start(&throttled_key).await;
    let backfill = deploy_with(
        &stack,
        &trail,
        &[],
        Around {
            s3_endpoint: Some(proxy.endpoint.clone()),
            ..Around::default()
        },
    )
    .await;

    let running = distributed_command(&trail, &backfill, "600")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // S3 throttles the object until the map has seen its item fail once; then the map's retry reads it.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let items = items_of(&backfill.state_machine).await;
        if items
            .iter()
            .any(|(_, input, failed)| input.contains(&throttled_key) && *failed >= 1)
        {
            proxy.heal();
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the throttled item never failed: {items:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, stdout, stderr) = outcome(
        tokio::task::spawn_blocking(move || running.wait_with_output().unwrap())
            .await
            .unwrap(),
    );
    assert!(proxy.throttled() >= 1);
    eprintln!(
        "S3 throttled the object {} times
{stderr}",
        proxy.throttled()
    );

    assert_eq!(
        code, 2,
        "the three faults still make the report partial\n{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} items (0 failed, 1 succeeded on a retry)",
            objects.len()
        )),
        "the retried item is counted:\n{stderr}"
    );
    assert!(
        !stderr.contains(&throttled_key),
        "the retried object is not named:\n{stderr}"
    );
    let items = items_of(&backfill.state_machine).await;
    let retried: Vec<_> = items.iter().filter(|(_, _, failed)| *failed > 0).collect();
    assert_eq!(retried.len(), 1, "{items:?}");
    assert!(
        retried[0].1.contains(&throttled_key) && retried[0].0 == "SUCCEEDED",
        "{retried:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let expected = analyze(&objects, &faults[2], dir.path());
    assert_eq!(report_of(&stdout), expected, "--distributed and analyze differ");
    assert!(leftovers(&backfill.work).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_s3_throttles_on_every_attempt_is_named_with_its_reason_after_the_map_s_retries() {
    let stack = unique("tw-dist-throttled");
    let trail = unique("tw-dist-trail");
    let (objects, faults) = upload_samples(&trail).await;
    let throttled_key = objects[0].0.clone();
    let proxy = ThrottledS3::start(&throttled_key).await;
    // One item of the samples' is more than the default 5 % the map tolerates; half lets the run end.
    let backfill = deploy_with(
        &stack,
        &trail,
        &[("BackfillToleratedFailurePercentage", "50".into())],
        Around {
            s3_endpoint: Some(proxy.endpoint.clone()),
            ..Around::default()
        },
    )
    .await;
    let (code, stdout, stderr) = distributed(&trail, &backfill, "600");
    eprintln!("S3 throttled the object {} times\n{stderr}", proxy.throttled());
    assert_eq!(code, 2, "a failed item makes the report partial\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains(&format!(" s3://{trail}/{throttled_key}: ")))
        .unwrap_or_else(|| panic!("the throttled object is not named:\n{stderr}"));
    assert!(
        line.contains("the scanner's item failed: Retryable: 1 of 1 objects met a transient fault")
            && line.contains("SlowDown"),
        "{line}"
    );
    assert!(
        stderr.contains(&format!(
            "{} items (1 failed, 0 succeeded on a retry)",
            objects.len()
        )),
        "{stderr}"
    );
    let attempts = 1 + retries_of_retryable();
    let items = items_of(&backfill.state_machine).await;
    let failed: Vec<_> = items.iter().filter(|(_, _, failed)| *failed > 0).collect();
    assert_eq!(failed.len(), 1, "{items:?}");
    assert_eq!(
        (failed[0].0.as_str(), failed[0].2),
        ("FAILED", attempts),
        "every attempt failed: {failed:?}"
    );
    assert!(proxy.throttled() >= attempts);

    // The report is analyze's over the objects that were read.
    let dir = tempfile::tempdir().unwrap();
    let read: Vec<(String, Vec<u8>)> = objects
        .iter()
        .filter(|(k, _)| *k != throttled_key)
        .cloned()
        .collect();
    let expected = analyze(&read, &faults[2], dir.path());
    assert_eq!(report_of(&stdout), expected, "--distributed and analyze differ");
    assert!(leftovers(&backfill.work).await.is_empty());
}

/// A stack on ministack's CloudFormation with the template's own back-fill bucket, its `Backfills`
/// condition and its two back-fill outputs (the state machine stands in as a parameter named as the
/// resource, so the output's `Ref` reads it): what `--stack` reads of a deployed stack.
async fn create_stack(name: &str, trail: &str, state_machine: &str) -> tokenwatch_aws::probe::Stack {
    let template = crate::infra::template("template.yaml");
    let mut parameters = serde_json::Map::new();
    for p in ["BackfillTrailBucket", "BackfillPartialsDays"] {
        parameters.insert(p.into(), template["Parameters"][p].clone());
    }
    parameters.insert("BackfillStateMachine".into(), json!({"Type": "String"}));
    let mut outputs = serde_json::Map::new();
    for o in ["BackfillStateMachineArn", "BackfillBucketName"] {
        outputs.insert(o.into(), template["Outputs"][o].clone());
    }
    let body = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": parameters,
        "Conditions": {"Backfills": template["Conditions"]["Backfills"].clone()},
        "Resources": {"BackfillBucket": template["Resources"]["BackfillBucket"].clone()},
        "Outputs": outputs,
    })
    .to_string();
    let sdk = Emulator::Ministack.sdk_as(READER).await;
    let prober = tokenwatch_aws::probe::Prober::new(&sdk);
    let credentials = tokenwatch_aws::drill::operator_credentials(&sdk).await.unwrap();
    use tokenwatch_aws::probe::QueryService::CloudFormation;
    prober
        .query(
            CloudFormation,
            "CreateStack",
            &[
                ("StackName", name),
                ("TemplateBody", &body),
                ("Parameters.member.1.ParameterKey", "BackfillTrailBucket"),
                ("Parameters.member.1.ParameterValue", trail),
                ("Parameters.member.2.ParameterKey", "BackfillStateMachine"),
                ("Parameters.member.2.ParameterValue", state_machine),
            ],
            &credentials,
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stack = tokenwatch_aws::drill::describe_stack(&prober, &credentials, name)
            .await
            .unwrap();
        if !stack.status.ends_with("_IN_PROGRESS") {
            assert_eq!(stack.status, "CREATE_COMPLETE", "{stack:?}");
            return stack;
        }
        assert!(Instant::now() < deadline, "{stack:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stack_names_the_back_fill_by_the_stack_s_outputs() {
    let stack = unique("tw-dist-stack");
    let trail = unique("tw-dist-trail");
    let (objects, faults) = upload_samples(&trail).await;
    // The stack first: it makes the work bucket the scanner then writes to, and names the state machine
    // by the name the template gives it (`${AWS::StackName}-backfill`), which the deployment then makes.
    let placeholder = format!("arn:aws:states:us-east-1:{READER}:stateMachine:{stack}-backfill");
    let created = create_stack(&stack, &trail, &placeholder).await;
    let work = created.outputs["BackfillBucketName"].clone();
    let backfill = deploy_with(
        &stack,
        &trail,
        &[],
        Around {
            work: Some(work.clone()),
            ..Around::default()
        },
    )
    .await;
    assert_eq!(backfill.state_machine, created.outputs["BackfillStateMachineArn"]);

    let args = |bucket: &str| {
        tokenwatch(&[
            "report",
            "--from-trail",
            &format!("s3://{bucket}"),
            "--distributed",
            "--stack",
            &stack,
            "--timeout",
            "600",
            "--format",
            "json",
        ])
    };
    let (code, stdout, stderr) = args(&trail);
    assert_eq!(code, 2, "the faults make the report partial: exit 2\n{stderr}");
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        report_of(&stdout),
        analyze(&objects, &faults[2], dir.path()),
        "--distributed --stack and analyze differ"
    );
    assert!(
        stderr.contains(&format!("s3://{work}/tokenwatch-partials/")),
        "{stderr}"
    );
    assert!(leftovers(&work).await.is_empty());

    // The stack's scanner reads only its own trail bucket: another is refused before anything runs.
    let (code, _, stderr) = args("tw-some-other-trail");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("reads the bucket {trail}, not tw-some-other-trail")),
        "{stderr}"
    );
    // A stack without the back-fill's outputs.
    let (code, _, stderr) = tokenwatch(&[
        "report",
        "--from-trail",
        &format!("s3://{trail}"),
        "--distributed",
        "--stack",
        "tw-no-such-stack",
    ]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("tw-no-such-stack"), "{stderr}");
}
