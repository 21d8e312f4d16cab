//! The HTML report as a browser shows it: `tokenwatch analyze --format html samples/` opened in headless
//! Chromium (Debian's `chromium` package; `scripts/test.sh` installs it). Checks the rendered DOM (the
//! histogram's bars, every group's text, hostile values shown as text and never run), that the console
//! stays empty (no script error, no blocked fetch), and that a screenshot is a real page.
//!
//! Chromium only ever opens a `file://` URL here: background networking, sync, component updates and
//! extensions are off, and `--host-resolver-rules` answers every host name with "not found" without a DNS
//! query, so a run sends nothing over the network. The page's own Content-Security-Policy
//! (`default-src 'none'`) would block a fetch anyway, and the blocked fetch would show in the console.
//! A missing Chromium fails these tests; it never skips them.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokenwatch_testkit::samples_dir;

const TIMEOUT: Duration = Duration::from_secs(120);

/// `$CHROMIUM`, else `chromium` on the PATH; a clear failure otherwise.
fn chromium() -> PathBuf {
    if let Some(explicit) = std::env::var_os("CHROMIUM") {
        return PathBuf::from(explicit);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("chromium"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed, and the HTML report test needs it: install Debian's package with \
                 `apt-get update && apt-get install -y --no-install-recommends chromium` (scripts/test.sh does \
                 this), or point $CHROMIUM at a Chromium binary"
            )
        })
}

/// What a Chromium run left: stdout (the DOM with `--dump-dom`) and stderr (its log, console included).
struct Run {
    stdout: String,
    stderr: String,
}

impl Run {
    /// Lines the page wrote to the console: script errors, CSP violations, `console.*` calls.
    fn console(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
            .collect()
    }
}

/// Runs headless Chromium on `page` with `extra` flags, in its own profile under `dir`.
fn run_chromium(dir: &Path, name: &str, page: &Path, extra: &[&str]) -> Run {
    let profile = dir.join(format!("profile-{name}"));
    let (out_path, err_path) = (
        dir.join(format!("{name}.stdout")),
        dir.join(format!("{name}.stderr")),
    );
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-extensions",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-component-update",
            // Containers often have a 64 MB /dev/shm, too small for a renderer.
            "--disable-dev-shm-usage",
            // Without it Chromium still resolves its update and account hosts at start-up.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--virtual-time-budget=2000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(&url)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {}: {e}", chromium().display()));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "chromium did not finish within {TIMEOUT:?} on {url}; its log:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        stdout: std::fs::read_to_string(&out_path).unwrap(),
        stderr: std::fs::read_to_string(&err_path).unwrap(),
    };
    assert!(
        status.success(),
        "chromium failed ({status}) on {url}; its log:\n{}",
        run.stderr
    );
    run
}

fn tokenwatch(args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokenwatch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "tokenwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The histogram drawn for a desktop window (the page also draws one for a phone).
fn wide_histogram(dom: &str) -> &str {
    let start = dom
        .find("<svg class=\"histogram wide\"")
        .expect("the desktop histogram");
    &dom[start..start + dom[start..].find("</svg>").unwrap()]
}

/// The bars (one `<g>` per non-empty bin, its segments coloured by verdict) of the desktop histogram.
fn histogram_bars(dom: &str) -> Vec<&str> {
    let svg = wide_histogram(dom);
    svg.match_indices("<g class=\"hist-bar")
        .map(|(i, _)| &svg[i..i + svg[i..].find("</g>").unwrap()])
        .collect()
}

/// The text of each bar's `<title>`.
fn bar_titles(dom: &str) -> Vec<&str> {
    histogram_bars(dom)
        .into_iter()
        .map(|bar| {
            let start = bar.find("<title>").unwrap() + "<title>".len();
            &bar[start..start + bar[start..].find("</title>").unwrap()]
        })
        .collect()
}

/// How text appears in a serialized DOM: `& < >` escaped, quotes as they are.
fn as_dom_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `Group::label`: the principal's last path segment and the session name.
fn label(g: &Value) -> String {
    let principal = g["principal"]
        .as_str()
        .map(|p| p.rsplit(['/', ':']).next().unwrap_or(p));
    match (principal, g["session"].as_str()) {
        (Some(p), Some(s)) => format!("{p}/{s}"),
        (Some(p), None) => p.to_owned(),
        (None, Some(s)) => format!("?/{s}"),
        (None, None) => "(unknown principal)".to_owned(),
    }
}

/// The histogram's documented bins: age as a share of the lease, rounded to the nearest 10 %; under −5 %
/// and over 205 % each have one open-ended bin. Returns the non-empty bins with their group counts.
fn expected_bins(groups: &[Value]) -> Vec<(i64, usize)> {
    let mut bins = std::collections::BTreeMap::new();
    for g in groups {
        let (Some(age), Some(lease)) = (
            g["age_at_first_failure_seconds"].as_i64(),
            g["lease_seconds"].as_i64(),
        ) else {
            continue;
        };
        if lease <= 0 {
            continue;
        }
        let percent = 100.0 * age as f64 / lease as f64;
        let bin = ((percent / 10.0 + 0.5).floor() as i64 * 10).clamp(-10, 210);
        *bins.entry(bin).or_insert(0) += 1;
    }
    bins.into_iter().collect()
}

fn is_png_of(bytes: &[u8], width: u32, height: u32) -> bool {
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes.len() > 24
        && bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        && &bytes[12..16] == b"IHDR"
        && be(16) == width
        && be(20) == height
}

#[test]
fn the_samples_report_renders_in_chromium_with_its_histogram_groups_and_no_console_output() {
    let dir = tempfile::tempdir().unwrap();
    let samples = samples_dir().display().to_string();
    let html = tokenwatch(&["analyze", "--format", "html", &samples], "");
    let report: Value =
        serde_json::from_str(&tokenwatch(&["analyze", "--format", "json", &samples], "")).unwrap();
    let groups = report["groups"].as_array().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();

    let run = run_chromium(dir.path(), "dom", &page, &["--dump-dom"]);
    let dom = &run.stdout;
    assert!(
        dom.contains("<h1>tokenwatch report</h1>"),
        "no rendered page in the DOM dump:\n{dom:.2000}"
    );
    assert_eq!(
        run.console(),
        Vec::<&str>::new(),
        "the page wrote to the console (a script error, or a fetch the page's CSP blocked)"
    );

    // The histogram: one bar per non-empty bin, each titled with its count.
    let expected = expected_bins(groups);
    assert_eq!(
        expected.iter().map(|(_, n)| n).collect::<Vec<_>>(),
        [&2, &15, &2],
        "the samples' ages: two clock skews at 15-17 %, fifteen groups at the lease end, a paused laptop at \
         ~520 % and a session failing again past its lease"
    );
    let bars = histogram_bars(dom);
    assert_eq!(
        bars.len(),
        expected.len(),
        "histogram bars in the rendered DOM: {bars:#?}"
    );
    let titles = bar_titles(dom);
    for ((_, n), title) in expected.iter().zip(&titles) {
        let group_word = if *n == 1 { "group" } else { "groups" };
        assert!(
            title.starts_with(&format!("{n} {group_word} first failed at ")),
            "{title}"
        );
    }
    assert!(titles[1].contains("95–105 % of the lease (the lease end)"));
    assert!(
        bars[1].contains("at-lease"),
        "the lease-end bar is marked: {}",
        bars[1]
    );
    assert!(
        bars[1].contains("class=\"hist-seg v-stale-cache\""),
        "bars are coloured by verdict: {}",
        bars[1]
    );

    // Every group: its label in the table and as a section heading, its principal, session and fix.
    for g in groups {
        let label = as_dom_text(&label(g));
        assert!(
            dom.contains(&format!("<h3>{label}</h3>")),
            "no section for {label}"
        );
        assert!(dom.contains(&format!(">{label}</a>")), "no table row for {label}");
        for field in ["principal", "session", "first_failure", "last_failure"] {
            if let Some(v) = g[field].as_str() {
                assert!(dom.contains(&as_dom_text(v)), "{label}: {field} {v}");
            }
        }
        let one_line = g["remediation"]
            .as_str()
            .unwrap()
            .split(['`', ':'])
            .next()
            .unwrap();
        assert!(dom.contains(&as_dom_text(one_line)), "{label}: {one_line}");
    }
    assert_eq!(dom.matches("<svg class=\"timeline\"").count(), groups.len());

    // The screenshot: a real 1280×2000 page, not a blank one (which compresses to a few KB).
    let shot = dir.path().join("report.png");
    run_chromium(
        dir.path(),
        "shot",
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2000",
        ],
    );
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", shot.display()));
    assert!(is_png_of(&png, 1280, 2000), "not a 1280×2000 PNG");
    assert!(
        png.len() > 60_000,
        "the screenshot is nearly blank: {} bytes",
        png.len()
    );
    // Kept for people to look at (CI can publish target/tmp/).
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&keep).unwrap();
    std::fs::copy(&page, keep.join("report.html")).unwrap();
    std::fs::copy(&shot, keep.join("report.png")).unwrap();
    eprintln!("report and screenshot: {}", keep.display());
}

#[test]
fn hostile_event_values_are_text_in_chromium_never_markup() {
    let dir = tempfile::tempdir().unwrap();
    let session = "\"><script>console.error('xss')</script>";
    let record = serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": format!("AROAHOSTILE1EXAMPLE:{session}"),
            "arn": format!("arn:aws:sts::123456789012:assumed-role/R&D-role/{session}"),
            "accountId": "123456789012",
            "accessKeyId": "ASIAHOSTILE1EXAMPLE",
            "sessionContext": {"attributes": {"creationDate": "2026-11-02T08:00:00Z"}}
        },
        "eventTime": "2026-11-02T09:00:20Z",
        "eventSource": "s3.amazonaws.com",
        "eventName": "<img src=x onerror=console.error('img')>",
        "sourceIPAddress": "<iframe src=\"https://example.com/\"></iframe>",
        "userAgent": "Boto3/1.34.0 md/Botocore#1.34.0 ua/2.0 os/linux lang/python#3.11",
        "errorCode": "ExpiredToken",
        "eventID": "hostile-1",
        "recipientAccountId": "123456789012"
    });
    let html = tokenwatch(&["analyze", "--format", "html", "-"], &record.to_string());
    let page = dir.path().join("hostile.html");
    std::fs::write(&page, &html).unwrap();

    let run = run_chromium(dir.path(), "hostile", &page, &["--dump-dom"]);
    let dom = &run.stdout;
    assert_eq!(run.console(), Vec::<&str>::new(), "something ran or was fetched");
    for element in ["<script", "<img", "<iframe"] {
        assert!(!dom.contains(element), "{element} became an element");
    }
    assert!(dom.contains("R&amp;D-role/\"&gt;&lt;script&gt;console.error('xss')&lt;/script&gt;"));
    assert!(dom.contains("s3:&lt;img src=x onerror=console.error('img')&gt;"));
    assert_eq!(histogram_bars(dom).len(), 1);
}

/// The console check above is only worth something if this Chromium reports script errors where the
/// test looks: a page with an uncaught error must show it.
#[test]
fn the_console_check_sees_a_script_error() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("broken.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let run = run_chromium(dir.path(), "broken", &page, &["--dump-dom"]);
    assert!(
        run.console()
            .iter()
            .any(|l| l.contains("Uncaught ReferenceError")),
        "this Chromium does not log script errors to stderr; the console check cannot work:\n{}",
        run.stderr
    );
}

/// A page that shows `report` in an `<iframe>` `width` CSS pixels wide (a phone's viewport: headless
/// Chromium's window is never narrower than 500 px, an iframe's viewport is as wide as the frame) and, once
/// drawn, writes into its own DOM what it measured: the report's horizontal overflow, its elements that
/// stick out of the viewport, the rendered height of the visible histogram's labels, and the narrowest box
/// a group's name is set in. The report itself runs no script (its CSP forbids it); the wrapper reads it
/// from outside, as a same-origin `srcdoc` frame.
fn framed_with_probe(report: &str, width: u32) -> String {
    const PROBE: &str = r#"<script>
const frame = document.getElementById('phone');
frame.addEventListener('load', () => {
  const doc = frame.contentDocument;
  const vw = doc.documentElement.clientWidth;
  const out = [];
  for (const e of doc.querySelectorAll('body *')) {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    // Inside a drawing, a label must stay inside the drawing; everything else inside the viewport.
    const svg = e.tagName !== 'svg' && e.closest('svg');
    const box = svg ? svg.getBoundingClientRect() : { left: 0, right: vw };
    const name = e.tagName + '.' + (e.getAttribute('class') || '') + ' ' + (e.textContent || '').trim().slice(0, 30);
    if (r.right > box.right + 0.5 || r.left < box.left - 0.5) out.push(name + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
    // Text wider than its box (a long word that cannot break) spills out of it.
    else if (!svg && e.scrollWidth > e.clientWidth + 1 && e.clientWidth > 0) out.push(name + ' spills: ' + e.scrollWidth + ' > ' + e.clientWidth);
  }
  const visible = [...doc.querySelectorAll('svg.histogram')].filter(s => s.getBoundingClientRect().width > 0);
  const ticks = visible.flatMap(s => [...s.querySelectorAll('text.tick')]).map(t => t.getBoundingClientRect().height);
  // A name that fits on one line is not squeezed, however short it is; one that wraps must have room.
  const lines = e => { const r = document.createRange(); r.selectNodeContents(e); return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; };
  const names = [...doc.querySelectorAll('td.name, h3')].filter(e => lines(e) > 1).map(e => e.getBoundingClientRect().width).filter(w => w > 0);
  const result = {
    viewport: vw,
    scroll_width: doc.documentElement.scrollWidth,
    overflowing: out,
    histograms_visible: visible.length,
    smallest_tick_px: ticks.length ? Math.min(...ticks) : 0,
    narrowest_name_px: names.length ? Math.min(...names) : vw,
  };
  const pre = document.createElement('pre');
  pre.id = 'layout-probe';
  pre.textContent = JSON.stringify(result);
  document.body.appendChild(pre);
});
</script>"#;
    let escaped = report.replace('&', "&amp;").replace('"', "&quot;");
    format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body style=\"margin:0;background:#555\">\
         <iframe id=\"phone\" style=\"width:{width}px;height:2400px;border:0;background:#fff;display:block\" \
         srcdoc=\"{escaped}\"></iframe>{PROBE}</body></html>"
    )
}

/// The probe's findings in a DOM dump.
fn probe_result(dom: &str) -> Value {
    let marker = "<pre id=\"layout-probe\">";
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("the layout probe did not run:\n{dom:.2000}"))
        + marker.len();
    let json = &dom[start..start + dom[start..].find("</pre>").unwrap()];
    serde_json::from_str(&json.replace("&quot;", "\"").replace("&amp;", "&")).unwrap()
}

#[test]
fn on_a_420_px_phone_nothing_is_clipped_and_the_histogram_labels_are_legible() {
    let dir = tempfile::tempdir().unwrap();
    let html = tokenwatch(
        &[
            "analyze",
            "--format",
            "html",
            &samples_dir().display().to_string(),
        ],
        "",
    );
    let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join("html-report");
    std::fs::create_dir_all(&keep).unwrap();
    for (width, name) in [(420, "phone"), (1280, "desktop")] {
        let page = dir.path().join(format!("{name}.html"));
        std::fs::write(&page, framed_with_probe(&html, width)).unwrap();
        let run = run_chromium(
            dir.path(),
            name,
            &page,
            &["--dump-dom", "--window-size=1300,2400"],
        );
        let found = probe_result(&run.stdout);
        assert!(
            found["viewport"].as_i64().unwrap() <= width as i64,
            "{name}: {found}"
        );
        assert!(
            found["scroll_width"].as_i64() <= found["viewport"].as_i64(),
            "{name}: the page scrolls sideways: {found}"
        );
        assert_eq!(
            found["overflowing"],
            serde_json::json!([]),
            "{name}: cut at the edge: {found}"
        );
        assert_eq!(
            found["histograms_visible"], 1,
            "{name}: one histogram, drawn for the width: {found}"
        );
        assert!(
            found["smallest_tick_px"].as_f64().unwrap() >= 10.0,
            "{name}: histogram labels too small to read: {found}"
        );
        assert!(
            // On a phone a name gets the card's width; on a desktop a table column of its own.
            found["narrowest_name_px"].as_f64().unwrap()
                >= if width < 640 {
                    0.6 * f64::from(width)
                } else {
                    150.0
                },
            "{name}: group names squeezed into a narrow column: {found}"
        );
        // A screenshot for people to look at (CI can publish target/tmp/): the frame at the left.
        let shot = keep.join(format!("report-{width}px.png"));
        run_chromium(
            dir.path(),
            &format!("{name}-shot"),
            &page,
            &[
                &format!("--screenshot={}", shot.display()),
                "--window-size=1300,2400",
            ],
        );
        assert!(is_png_of(&std::fs::read(&shot).unwrap(), 1300, 2400));
        eprintln!("{name} screenshot: {}", shot.display());
    }
}
