//! `--format html`: the report as one self-contained page to look at.
//!
//! The page is a single file with inline CSS and inline SVG, no script and no external resource; its
//! Content-Security-Policy (`default-src 'none'`) makes a browser refuse any fetch or script even if
//! something slipped through. It shows the totals, a histogram of the age at first failure as a share of
//! the session's lease (so the cluster at the lease end, "our pipeline dies exactly one hour in", shows
//! at a glance), a table of groups, and per group a timeline (issue → lease end → failures) with its
//! remediation. Every value that may come from an event goes through [`escape`].

use std::fmt::Write as _;

use tokenwatch_core::model::{Severity, Verdict};
use tokenwatch_core::time::Epoch;

use crate::report::{Document, Group, duration};

/// Escapes text for HTML and SVG content and quoted attribute values: `& < > " '` become entities, and
/// unsafe characters other than line breaks and tabs (controls, bidi overrides that would reorder the
/// page's text, zero-width characters) are shown as escapes ([`crate::text::lines`]).
pub fn escape(s: &str) -> String {
    let s = crate::text::lines(s);
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Width of a histogram bin, in percent of the lease. Bins are centred on multiples of it, so the bin
/// labelled 100 % holds ages from 95 % to 105 % of the lease: the lease boundary is inside one bin.
pub const BIN_PERCENT: i64 = 10;
/// The last centred bin; older ages go to the overflow bin.
pub const MAX_BIN_PERCENT: i64 = 200;

/// Where a group's age at first failure falls, as a share of its lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum AgeBin {
    /// Before 0 − half a bin: the failure predates the session's issue time.
    Before,
    /// Centred on this percentage of the lease (0, 10, …, 200).
    Centred(i64),
    /// Past the last centred bin.
    After,
}

impl AgeBin {
    /// The bin of `age_seconds` against `lease_seconds` (which must be positive).
    pub fn of(age_seconds: i64, lease_seconds: u64) -> AgeBin {
        let (age, lease) = (i128::from(age_seconds), i128::from(lease_seconds));
        let step = i128::from(BIN_PERCENT);
        // round(100 · age / lease / step) in integers: floor((100 · age + lease · step / 2) / (lease · step)).
        let k = (100 * age * 2 + lease * step).div_euclid(2 * lease * step);
        if k < 0 {
            AgeBin::Before
        } else if k * step > i128::from(MAX_BIN_PERCENT) {
            AgeBin::After
        } else {
            AgeBin::Centred((k * step) as i64)
        }
    }

    /// Every bin, in axis order.
    pub fn all() -> Vec<AgeBin> {
        let mut bins = vec![AgeBin::Before];
        bins.extend((0..=MAX_BIN_PERCENT / BIN_PERCENT).map(|k| AgeBin::Centred(k * BIN_PERCENT)));
        bins.push(AgeBin::After);
        bins
    }

    /// The range the bin covers, for people: `95–105 % of the lease`.
    pub fn describe(self) -> String {
        let half = BIN_PERCENT / 2;
        match self {
            AgeBin::Before => format!("before −{half} % of the lease (failed before the session was issued)"),
            AgeBin::Centred(0) => format!("0–{half} % of the lease"),
            AgeBin::Centred(p) => format!("{}–{} % of the lease", p - half, p + half),
            AgeBin::After => format!("more than {} % of the lease", MAX_BIN_PERCENT + half),
        }
    }

    /// Whether this is the bin of the lease end.
    pub fn at_lease_end(self) -> bool {
        self == AgeBin::Centred(100)
    }
}

/// The histogram of age at first failure: groups per [`AgeBin`], for groups whose age and lease are known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgeHistogram {
    /// Non-empty bins in axis order, each with the indexes (into the report's groups) of its groups.
    pub bins: Vec<(AgeBin, Vec<usize>)>,
    /// Groups whose age is known but whose lease is not, so they have no place on the axis.
    pub without_lease: usize,
}

impl AgeHistogram {
    /// Bins the groups of a report.
    pub fn of(groups: &[Group]) -> AgeHistogram {
        let mut histogram = AgeHistogram::default();
        let mut binned: Vec<(AgeBin, usize)> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            match (g.age_at_first_failure_seconds, g.lease_seconds) {
                (Some(age), Some(lease)) if lease > 0 => binned.push((AgeBin::of(age, lease), i)),
                (Some(_), _) => histogram.without_lease += 1,
                (None, _) => {}
            }
        }
        binned.sort();
        for (bin, i) in binned {
            match histogram.bins.last_mut() {
                Some((last, members)) if *last == bin => members.push(i),
                _ => histogram.bins.push((bin, vec![i])),
            }
        }
        histogram
    }

    /// Groups placed on the axis.
    pub fn plotted(&self) -> usize {
        self.bins.iter().map(|(_, m)| m.len()).sum()
    }

    /// Groups in the lease-end bin.
    pub fn at_lease_end(&self) -> usize {
        self.bins
            .iter()
            .filter(|(b, _)| b.at_lease_end())
            .map(|(_, m)| m.len())
            .sum()
    }
}

const STYLE: &str = r#"
:root { --ink: #1d2430; --muted: #5b6475; --line: #d5dae3; --bg: #f6f7f9; --accent: #2458b3;
  --valid: #9fd3a8; --expired: #f3d0cc; --fail: #c62828; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
  color: var(--ink); background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 10px; }
h3 { font-size: 17px; margin: 0; overflow-wrap: anywhere; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; }
.totals { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0 6px; }
.total { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 16px; min-width: 120px; }
.total b { display: block; font-size: 24px; }
.total span { color: var(--muted); font-size: 13px; }
.headline { font-size: 16px; margin: 10px 0 0; }
.muted { color: var(--muted); }
.badge { display: inline-block; border-radius: 10px; padding: 0 9px; font-size: 12.5px; font-weight: 600;
  white-space: nowrap; vertical-align: 2px; border: 1px solid transparent; }
.badge.sev-critical { background: #7f0000; color: #fff; }
.badge.sev-high { background: #d32f2f; color: #fff; }
.badge.sev-medium { background: #f5a623; color: #2b1d00; }
.badge.sev-low { background: #fff3b0; color: #4a3b00; border-color: #e6d36b; }
.badge.sev-info { background: #e3e7ee; color: #333c4d; }
.verdict { background: #eaf0fb; color: #1c3f80; border-color: #c9d7f2; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 14px; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.nowrap { white-space: nowrap; }
/* The group is what a reader scans for; the other columns give way before it wraps to a sliver. */
table.groups td.name { min-width: 13em; }
td a { color: var(--accent); text-decoration: none; overflow-wrap: anywhere; }
svg { display: block; width: 100%; height: auto; overflow: hidden; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
.hist-bar { fill: #7d95c4; }
.hist-count { font-size: 13px; font-weight: 700; fill: var(--ink); paint-order: stroke; stroke: #fff; stroke-width: 4px; }
.axis { stroke: #8a93a3; stroke-width: 1; }
.grid { stroke: #e6e9ef; stroke-width: 1; }
.tick { font-size: 11px; fill: var(--muted); }
.lease-mark { stroke: var(--fail); stroke-width: 1.5; stroke-dasharray: 5 4; }
.lease-label { font-size: 12px; font-weight: 700; fill: var(--fail); }
.group { margin: 16px 0; }
.group header { display: flex; flex-wrap: wrap; align-items: baseline; gap: 10px; margin-bottom: 10px; }
.timeline { margin: 4px 0 2px; }
.tl-track { fill: #eef1f5; }
.tl-valid { fill: var(--valid); }
.tl-expired { fill: var(--expired); }
.tl-fail { fill: var(--fail); }
.tl-label { font-size: 12px; fill: var(--muted); }
.tl-fail-label { font-size: 12px; font-weight: 600; fill: var(--fail); }
.legend { font-size: 13px; color: var(--muted); margin: 0 0 10px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 8px 0 12px; font-size: 14px; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.fix { background: #f3f8f2; border-left: 4px solid #3c8d4a; padding: 8px 14px; border-radius: 4px; }
.fix h4 { margin: 0 0 4px; font-size: 14px; }
.fix p { margin: 0; overflow-wrap: break-word; }
code { font: 13px/1.3 ui-monospace, "DejaVu Sans Mono", monospace; background: #e9edf3; padding: 0 4px; border-radius: 3px; }
footer { margin-top: 36px; font-size: 12.5px; color: var(--muted); }
.v-stale-cache { fill: #c62828; background: #c62828; }
.v-refresh-race { fill: #2e7d32; background: #2e7d32; }
.v-paused-process { fill: #6a1b9a; background: #6a1b9a; }
.v-clock-skew { fill: #ef6c00; background: #ef6c00; }
.v-web-identity-token-expired { fill: #00838f; background: #00838f; }
.v-unknown { fill: #78909c; background: #78909c; }
.key { white-space: nowrap; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin: 0 4px 0 12px; vertical-align: -1px; }
.histogram.narrow { display: none; }
/* A phone: one column, tables as cards, the histogram drawn for a narrow screen, no text scaled down. */
@media (max-width: 640px) {
  main { padding: 14px 12px 32px; }
  h1 { font-size: 22px; }
  .histogram.wide { display: none; }
  .histogram.narrow { display: block; }
  .card { padding: 12px; }
  table.groups thead { display: none; }
  table.groups, table.groups tbody, table.groups tr, table.groups td { display: block; width: auto; }
  table.groups tr { border-bottom: 1px solid var(--line); padding: 8px 0; }
  table.groups td { border: 0; padding: 1px 10px; text-align: left; white-space: normal; }
  table.groups td[data-label]::before { content: attr(data-label) ": "; color: var(--muted); }
  table.groups td.name { min-width: 0; }
  table.groups td.name a { font-weight: 600; }
  .group header h3 { flex-basis: 100%; }
  dl { grid-template-columns: 1fr; gap: 0; }
  dt { margin-top: 6px; }
  svg.timeline text { display: none; }
}
"#;

/// How a histogram is drawn: its area in SVG user units, and which ages get a label.
struct Geometry {
    class: &'static str,
    size: (f64, f64),
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    /// Age labels every this many percent.
    label_every: i64,
    /// Label 0 % and 200 % too (a narrow axis has no room beside the open-ended bins' labels).
    label_ends: bool,
    /// The caption under the axis.
    caption: &'static str,
}

/// For a desktop window: 900 units shown at about 1100 px.
const WIDE: Geometry = Geometry {
    class: "wide",
    size: (900.0, 300.0),
    left: 48.0,
    right: 16.0,
    top: 34.0,
    bottom: 58.0,
    label_every: 50,
    label_ends: true,
    caption: "age at first failure, as a share of the session's lease (bins 10 % wide, centred: 100 % = 95–105 %)",
};

/// For a phone: 400 units shown at about 380 px, so a 12-unit label stays about 11 px tall.
const NARROW: Geometry = Geometry {
    class: "narrow",
    size: (400.0, 260.0),
    left: 30.0,
    right: 8.0,
    top: 30.0,
    bottom: 56.0,
    label_every: 50,
    label_ends: false,
    caption: "age at first failure, % of the lease",
};
/// Timeline drawing area, in SVG user units.
const TL: (f64, f64) = (900.0, 74.0);
const TL_PAD: f64 = 14.0;

impl Document {
    /// One self-contained HTML page: totals, the age histogram, a table of groups and each group's
    /// timeline and remediation. No script and no network fetch; every value from events is escaped.
    pub fn to_html(&self) -> String {
        let mut out = String::with_capacity(16_384 + self.groups.len() * 4096);
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        out.push_str(
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n",
        );
        out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
        out.push_str("<title>tokenwatch report</title>\n<style>");
        out.push_str(STYLE);
        out.push_str("</style>\n</head>\n<body>\n<main>\n");

        let histogram = AgeHistogram::of(&self.groups);
        self.html_header(&mut out, &histogram);
        out.push_str("<h2>Age at first failure</h2>\n<div class=\"card\">\n");
        html_histogram(&mut out, &self.groups, &histogram, &WIDE);
        html_histogram(&mut out, &self.groups, &histogram, &NARROW);
        html_histogram_legend(&mut out, &self.groups, &histogram);
        if !self.groups.is_empty() {
            self.html_table(&mut out);
            out.push_str("<h2>Groups</h2>\n");
            for (i, g) in self.groups.iter().enumerate() {
                html_group(&mut out, i, g);
            }
        }
        if !self.near_misses.is_empty() {
            self.html_near_misses(&mut out);
        }
        out.push_str(
            "<footer>Generated by tokenwatch. Age = first failure − session issue time; lease = the \
             session's lifetime. Verdict rules: docs/rules.md.</footer>\n</main>\n</body>\n</html>\n",
        );
        out
    }

    fn html_header(&self, out: &mut String, histogram: &AgeHistogram) {
        out.push_str("<header>\n<h1>tokenwatch report</h1>\n");
        out.push_str(
            "<p class=\"muted\">Expired-credential failures in CloudTrail, grouped by account, principal and \
             session.</p>\n<div class=\"totals\">\n",
        );
        let mut total = |value: u64, what: &str| {
            let _ = writeln!(
                out,
                "<div class=\"total\"><b>{}</b><span>{what}</span></div>",
                thousands(value)
            );
        };
        if !self.from_state_table() {
            total(self.records, "records read");
        }
        total(self.failures, "expired-credential failures");
        total(self.groups.len() as u64, "groups");
        if self.skipped_records > 0 {
            total(self.skipped_records, "records skipped");
        }
        for severity in Severity::ALL.iter().rev() {
            let n = self.groups.iter().filter(|g| g.severity == *severity).count();
            if n > 0 {
                let _ = writeln!(
                    out,
                    "<div class=\"total\"><b>{n}</b><span class=\"badge sev-{s}\">{s}</span></div>",
                    s = severity.as_str()
                );
            }
        }
        out.push_str("</div>\n");
        let measured = histogram.plotted();
        if self.groups.is_empty() {
            out.push_str("<p class=\"headline\">No expired-credential failures were found.</p>\n");
        } else if measured > 0 {
            let at_end = histogram.at_lease_end();
            let _ = writeln!(
                out,
                "<p class=\"headline\"><b>{at_end} of {measured}</b> group{s} with a measurable age first failed \
                 within {half} % of the lease end{tail}</p>",
                s = if measured == 1 { "" } else { "s" },
                half = BIN_PERCENT / 2,
                tail = if at_end > 0 {
                    ": credentials used until the moment they expired."
                } else {
                    "."
                },
            );
        }
        out.push_str("</header>\n");
    }

    /// The near misses, after the failures: a table with how close each came and its fix.
    fn html_near_misses(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "<h2>Near misses</h2>\n<p class=\"muted\">{}: sessions used after their client would have \
             refreshed them. Nothing failed yet; a longer run will.</p>\n<table class=\"groups\">\n\
             <thead><tr><th>group</th><th>how close</th><th>last use</th><th>client</th><th>times</th>\
             <th>fix</th></tr></thead>\n<tbody>",
            escape(&crate::nearmiss::summary(&self.near_misses))
        );
        for g in &self.near_misses.groups {
            let _ = writeln!(
                out,
                "<tr><td class=\"name\">{label}</td><td data-label=\"how close\">{close}</td>\
                 <td class=\"nowrap\" data-label=\"last use\">{last}</td><td data-label=\"client\">{client}</td>\
                 <td class=\"num\" data-label=\"times\">{times}</td><td data-label=\"fix\">{fix}</td></tr>",
                label = escape(&g.label()),
                close = escape(&g.how_close),
                last = escape(&g.last_use),
                client = escape(g.client.as_str()),
                times = escape(&g.how_often()),
                fix = escape(&g.fix),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }

    fn html_table(&self, out: &mut String) {
        out.push_str(
            "<h2>All groups</h2>\n<table class=\"groups\">\n<thead><tr><th>group</th><th>verdict</th><th>severity</th>\
             <th>failures</th><th>age / lease</th><th>client</th><th>credential source</th>\
             <th>first failure</th></tr></thead>\n<tbody>\n",
        );
        for (i, g) in self.groups.iter().enumerate() {
            let _ = writeln!(
                out,
                "<tr><td class=\"name\"><a href=\"#group-{n}\">{label}</a></td><td data-label=\"verdict\">{verdict}</td>\
                 <td data-label=\"severity\"><span class=\"badge sev-{sev}\">{sev}</span></td>\
                 <td class=\"num\" data-label=\"failures\">{failures}</td>\
                 <td class=\"nowrap\" data-label=\"age / lease\">{age}</td><td data-label=\"client\">{client}</td>\
                 <td data-label=\"credential source\">{source}</td>\
                 <td class=\"nowrap\" data-label=\"first failure\">{first}</td></tr>",
                n = i + 1,
                label = escape(&g.label()),
                verdict = escape(g.verdict.as_str()),
                sev = escape(g.severity.as_str()),
                failures = g.failures,
                age = escape(&g.age_against_lease()),
                client = escape(g.client.map(|c| c.as_str()).unwrap_or("-")),
                source = escape(g.credential_source.as_str()),
                first = escape(&g.first_failure),
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
}

fn html_histogram(out: &mut String, groups: &[Group], histogram: &AgeHistogram, geo: &Geometry) {
    let (w, h) = geo.size;
    let slots = AgeBin::all();
    let plot_w = w - geo.left - geo.right;
    let plot_h = h - geo.top - geo.bottom;
    // The open-ended bins stand a little apart from the centred ones, as on a broken axis.
    const GAP: f64 = 0.8;
    let slot_w = plot_w / (slots.len() as f64 + 2.0 * GAP);
    let base = geo.top + plot_h;
    let max = histogram
        .bins
        .iter()
        .map(|(_, m)| m.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let step = max.div_ceil(5).max(1);
    // A step of headroom above the tallest bar keeps its count clear of the lease-end label.
    let top = (max / step + 1) * step;
    let y = |n: usize| base - plot_h * n as f64 / top as f64;
    let x_of = |bin: AgeBin| {
        let i = slots.iter().position(|b| *b == bin).unwrap_or(0);
        let gaps = match bin {
            AgeBin::Before => 0.0,
            AgeBin::Centred(_) => GAP,
            AgeBin::After => 2.0 * GAP,
        };
        geo.left + slot_w * (i as f64 + gaps)
    };
    let _ = writeln!(
        out,
        "<svg class=\"histogram {class}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Histogram: groups by age \
         at first failure as a share of the lease, coloured by verdict; {plotted} groups plotted\">",
        class = geo.class,
        plotted = histogram.plotted()
    );
    // Grid lines and the count axis.
    for n in (0..=top).step_by(step) {
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x1}\" x2=\"{x2:.1}\" y1=\"{yy:.1}\" y2=\"{yy:.1}\"/>\
             <text class=\"tick\" x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\">{n}</text>",
            x1 = geo.left,
            x2 = w - geo.right,
            yy = y(n),
            tx = geo.left - 6.0,
            ty = y(n) + 4.0,
        );
    }
    // The lease end: a dashed line through the middle of its bin.
    let lease_x = x_of(AgeBin::Centred(100)) + slot_w / 2.0;
    let _ = writeln!(
        out,
        "<line class=\"lease-mark\" x1=\"{lease_x:.1}\" x2=\"{lease_x:.1}\" y1=\"{y1:.1}\" y2=\"{base:.1}\"/>\
         <text class=\"lease-label\" x=\"{lease_x:.1}\" y=\"{ly:.1}\" text-anchor=\"middle\">lease end</text>",
        y1 = geo.top - 8.0,
        ly = geo.top - 14.0,
    );
    // Bars: one per non-empty bin, stacked by verdict (most severe kind at the bottom).
    for (bin, members) in &histogram.bins {
        let n = members.len();
        let x = x_of(*bin) + slot_w * 0.12;
        let bw = slot_w * 0.76;
        let names: Vec<String> = members.iter().take(12).map(|&i| groups[i].label()).collect();
        let more = if n > names.len() {
            format!(", and {} more", n - names.len())
        } else {
            String::new()
        };
        let title = format!(
            "{n} group{s} first failed at {range}{end}: {names}{more}",
            s = if n == 1 { "" } else { "s" },
            range = bin.describe(),
            end = if bin.at_lease_end() {
                " (the lease end)"
            } else {
                ""
            },
            names = names.join(", "),
        );
        let _ = write!(
            out,
            "<g class=\"hist-bar{cls}\" data-count=\"{n}\"><title>{title}</title>",
            cls = if bin.at_lease_end() { " at-lease" } else { "" },
            title = escape(&title),
        );
        let mut below = 0;
        for verdict in Verdict::ALL {
            let k = members.iter().filter(|&&i| groups[i].verdict == *verdict).count();
            if k == 0 {
                continue;
            }
            let _ = write!(
                out,
                "<rect class=\"hist-seg v-{v}\" data-verdict=\"{v}\" data-count=\"{k}\" x=\"{x:.1}\" y=\"{by:.1}\" \
                 width=\"{bw:.1}\" height=\"{bh:.1}\"/>",
                v = verdict.as_str(),
                by = y(below + k),
                bh = y(below) - y(below + k),
            );
            below += k;
        }
        let _ = writeln!(
            out,
            "</g><text class=\"hist-count\" x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{n}</text>",
            cx = x + bw / 2.0,
            ty = y(n) - 6.0,
        );
    }
    // The age axis: a tick per bin, labelled at both ends and every `label_every` percent.
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{x1}\" x2=\"{x2:.1}\" y1=\"{base:.1}\" y2=\"{base:.1}\"/>",
        x1 = geo.left,
        x2 = w - geo.right
    );
    for bin in &slots {
        let cx = x_of(*bin) + slot_w / 2.0;
        let label = match bin {
            AgeBin::Before => Some("< 0".to_owned()),
            AgeBin::Centred(p) if !geo.label_ends && (*p == 0 || *p == MAX_BIN_PERCENT) => None,
            AgeBin::Centred(p) if p % geo.label_every == 0 => Some(format!("{p} %")),
            AgeBin::Centred(_) => None,
            AgeBin::After => Some(format!("> {MAX_BIN_PERCENT}")),
        };
        let _ = write!(
            out,
            "<line class=\"axis\" x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{base:.1}\" y2=\"{y2:.1}\"/>",
            y2 = base + 4.0
        );
        if let Some(label) = label {
            // The open-ended bins' labels keep inside the drawing: anchored at its edges.
            let (lx, anchor) = match bin {
                AgeBin::Before => (x_of(*bin), "start"),
                AgeBin::After => (x_of(*bin) + slot_w, "end"),
                AgeBin::Centred(_) => (cx, "middle"),
            };
            let _ = write!(
                out,
                "<text class=\"tick\" x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"{anchor}\">{label}</text>",
                ty = base + 17.0
            );
        }
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "<text class=\"tick\" x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\">{caption}</text>",
        cx = geo.left + plot_w / 2.0,
        ty = h - 12.0,
        caption = geo.caption,
    );
    out.push_str("</svg>\n");
}

/// Below both histograms: the verdicts' colours, and what could not be plotted.
fn html_histogram_legend(out: &mut String, groups: &[Group], histogram: &AgeHistogram) {
    let present: Vec<Verdict> = Verdict::ALL
        .iter()
        .copied()
        .filter(|v| {
            histogram
                .bins
                .iter()
                .any(|(_, m)| m.iter().any(|&i| groups[i].verdict == *v))
        })
        .collect();
    if !present.is_empty() {
        out.push_str("<p class=\"legend\">Bars by verdict:");
        for v in present {
            let _ = write!(
                out,
                " <span class=\"key\"><span class=\"swatch v-{v}\"></span>{v}</span>",
                v = v.as_str()
            );
        }
        out.push_str("</p>\n");
    }
    let unmeasured = groups.len() - histogram.plotted();
    if groups.is_empty() {
        out.push_str("<p class=\"legend\">Nothing to plot: no failures.</p>\n");
    } else if unmeasured > 0 {
        let _ = writeln!(
            out,
            "<p class=\"legend\">{unmeasured} of {total} group{s} not plotted: no issue time or no lease was \
             found for {them}.</p>",
            total = groups.len(),
            s = if groups.len() == 1 { "" } else { "s" },
            them = if unmeasured == 1 { "it" } else { "them" },
        );
    }
    out.push_str("</div>\n");
}

/// `200000` → `200,000`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// Seconds → SVG x over the span `from..to`.
fn scale(t: Epoch, from: Epoch, to: Epoch) -> f64 {
    let span = (to - from).max(1) as f64;
    TL_PAD + (TL.0 - 2.0 * TL_PAD) * ((t - from) as f64 / span).clamp(0.0, 1.0)
}

fn html_group(out: &mut String, i: usize, g: &Group) {
    let _ = writeln!(
        out,
        "<section class=\"group card\" id=\"group-{n}\">\n<header><h3>{label}</h3>\
         <span class=\"badge verdict\">{verdict}</span><span class=\"badge sev-{sev}\">{sev}</span>\
         <span class=\"muted\">{failures} failure{s}</span></header>",
        n = i + 1,
        label = escape(&g.label()),
        verdict = escape(g.verdict.as_str()),
        sev = escape(g.severity.as_str()),
        failures = g.failures,
        s = if g.failures == 1 { "" } else { "s" },
    );
    html_timeline(out, g);

    out.push_str("<dl>\n");
    let mut item = |term: &str, value: &str| {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(term), escape(value));
    };
    let unknown = "unknown";
    let join = |items: &mut dyn Iterator<Item = String>| {
        let v: Vec<String> = items.collect();
        if v.is_empty() {
            "none".to_owned()
        } else {
            v.join(", ")
        }
    };
    item("principal", g.principal.as_deref().unwrap_or(unknown));
    item("session", g.session.as_deref().unwrap_or(unknown));
    item("account", g.account.as_deref().unwrap_or(unknown));
    item("access keys", &join(&mut g.access_key_ids.iter().cloned()));
    item("credential source", g.credential_source.as_str());
    item(
        "lease",
        &match (g.lease_seconds, g.lease_source) {
            (Some(l), Some(s)) => format!("{} ({s})", duration(l as i64)),
            (Some(l), None) => duration(l as i64),
            _ => unknown.to_owned(),
        },
    );
    item("issued at", g.issued_at.as_deref().unwrap_or(unknown));
    item(
        "age at first failure",
        &g.age_at_first_failure_seconds
            .map(|a| format!("{} ({a} s)", duration(a)))
            .unwrap_or_else(|| unknown.to_owned()),
    );
    item(
        "failures",
        &format!("{} from {} to {}", g.failures, g.first_failure, g.last_failure),
    );
    item("client", g.client.map(|c| c.as_str()).unwrap_or(unknown));
    item(
        "error codes",
        &join(&mut g.error_codes.iter().map(|(c, n)| format!("{c} × {n}"))),
    );
    item(
        "calls",
        &join(&mut g.event_names.iter().map(|(c, n)| format!("{c} × {n}"))),
    );
    item("source IPs", &join(&mut g.source_ips.iter().cloned()));
    if let Some(incident) = &g.incident {
        item("incident", &incident.describe());
    }
    out.push_str("</dl>\n");

    out.push_str("<div class=\"fix\"><h4>Fix</h4><p>");
    // Backticks mark commands and settings in the remediation: shown as code, each part escaped.
    let parts: Vec<&str> = g.remediation.split('`').collect();
    let paired = parts.len() % 2 == 1;
    for (k, part) in parts.iter().enumerate() {
        if k % 2 == 1 && (paired || k + 1 < parts.len()) {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            if k % 2 == 1 {
                out.push('`');
            }
            out.push_str(&escape(part));
        }
    }
    out.push_str("</p></div>\n</section>\n");
}

/// The strip from issue time to the last failure: the valid lease, the time past it, the lease end and the
/// failure span.
fn html_timeline(out: &mut String, g: &Group) {
    let (first, last, issued) = (g.first, g.last, g.issued);
    let lease_end = issued
        .zip(g.lease_seconds)
        .map(|(t, l)| t.saturating_add(i64::try_from(l).unwrap_or(i64::MAX)));
    let from = issued.unwrap_or(first).min(first);
    let mut to = last.max(lease_end.unwrap_or(last));
    if to <= from {
        // A single instant with no issue time: a minute's strip with the failure at its start.
        to = from + 60;
    }
    let x = |t: Epoch| scale(t, from, to);
    let (w, h) = TL;
    let (track_y, track_h) = (28.0, 16.0);
    let _ = writeln!(
        out,
        "<svg class=\"timeline\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Timeline of the session\">"
    );
    let _ = writeln!(
        out,
        "<rect class=\"tl-track\" x=\"{TL_PAD}\" y=\"{track_y}\" width=\"{tw:.1}\" height=\"{track_h}\" rx=\"3\"/>",
        tw = w - 2.0 * TL_PAD
    );
    if let (Some(issued), Some(end)) = (issued, lease_end) {
        let (x0, x1, x2) = (x(issued), x(end.min(to)), x(to));
        let _ = writeln!(
            out,
            "<rect class=\"tl-valid\" x=\"{x0:.1}\" y=\"{track_y}\" width=\"{vw:.1}\" height=\"{track_h}\">\
             <title>valid: {a} → {b}</title></rect>",
            vw = (x1 - x0).max(1.0),
            a = escape(g.issued_at.as_deref().unwrap_or_default()),
            b = escape(&tokenwatch_core::time::format_time(end)),
        );
        if x2 > x1 {
            let _ = writeln!(
                out,
                "<rect class=\"tl-expired\" x=\"{x1:.1}\" y=\"{track_y}\" width=\"{ew:.1}\" height=\"{track_h}\">\
                 <title>expired</title></rect>",
                ew = x2 - x1
            );
        }
    }
    // Failure span, at least visible when it is a single instant.
    let (f0, f1) = (x(first), x(last));
    let _ = writeln!(
        out,
        "<rect class=\"tl-fail\" x=\"{fx:.1}\" y=\"{fy}\" width=\"{fw:.1}\" height=\"{fh}\" rx=\"1\">\
         <title>{n} failure{s}: {a} → {b}</title></rect>",
        fx = f0.min(w - TL_PAD - 4.0),
        fy = track_y - 4.0,
        fw = (f1 - f0).max(4.0),
        fh = track_h + 8.0,
        n = g.failures,
        s = if g.failures == 1 { "" } else { "s" },
        a = escape(&g.first_failure),
        b = escape(&g.last_failure),
    );
    let anchor = |px: f64| {
        if px < 120.0 {
            "start"
        } else if px > w - 120.0 {
            "end"
        } else {
            "middle"
        }
    };
    match issued {
        Some(_) => {
            let _ = writeln!(
                out,
                "<text class=\"tl-label\" x=\"{TL_PAD}\" y=\"18\" text-anchor=\"start\">issued</text>"
            );
        }
        None => {
            let _ = writeln!(
                out,
                "<text class=\"tl-label\" x=\"{TL_PAD}\" y=\"18\" text-anchor=\"start\">issue time unknown: \
                 the strip shows the failures only</text>"
            );
        }
    }
    if let Some(end) = lease_end {
        let le = x(end);
        let _ = writeln!(
            out,
            "<line class=\"lease-mark\" x1=\"{le:.1}\" x2=\"{le:.1}\" y1=\"20\" y2=\"{y2}\"/>\
             <text class=\"lease-label\" x=\"{le:.1}\" y=\"14\" text-anchor=\"{a}\">lease end ({lease})</text>",
            y2 = track_y + track_h + 6.0,
            a = anchor(le),
            lease = escape(&duration(g.lease_seconds.unwrap_or_default() as i64)),
        );
    }
    let since_issue = |t: Epoch| {
        issued
            .map(|i| format!("+{}", duration(t - i)))
            .unwrap_or_default()
    };
    let fail_text = if first == last {
        format!("failure {}", since_issue(first))
    } else if issued.is_some() {
        format!("failures {} → {}", since_issue(first), since_issue(last))
    } else {
        format!("failures over {}", duration(last - first))
    };
    let (fx, fa) = if f1 > w / 2.0 { (f1, "end") } else { (f0, "start") };
    let _ = writeln!(
        out,
        "<text class=\"tl-fail-label\" x=\"{fx:.1}\" y=\"{ty}\" text-anchor=\"{fa}\">{text}</text>",
        ty = track_y + track_h + 22.0,
        text = escape(fail_text.trim()),
    );
    out.push_str("</svg>\n");
    let mut legend = String::new();
    if let Some(issued_at) = &g.issued_at {
        let _ = write!(legend, "issued {issued_at}");
        if let Some(end) = lease_end {
            let _ = write!(
                legend,
                " · lease ends {}",
                tokenwatch_core::time::format_time(end)
            );
        }
        legend.push_str(" · ");
    }
    let _ = write!(legend, "failures {} → {}", g.first_failure, g.last_failure);
    if g.verdict == Verdict::ClockSkew {
        legend.push_str(" · the session was still valid when it failed");
    }
    let _ = writeln!(out, "<p class=\"legend\">{}</p>", escape(&legend));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_group;
    use tokenwatch_core::finding::example_finding;
    use tokenwatch_core::model::{CredentialSource, LeaseSource};

    fn report(groups: Vec<Group>) -> Document {
        crate::report::test_document(100, groups.iter().map(|g| g.failures).sum(), groups)
    }

    fn count(haystack: &str, needle: &str) -> usize {
        haystack.matches(needle).count()
    }

    #[test]
    fn escape_turns_every_markup_character_into_an_entity() {
        assert_eq!(
            escape(r#"<a href="x">Tom & 'Jerry'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("a\u{0}b\u{1b}c\td"), "a\\u{0}b\\u{1b}c\td");
    }

    #[test]
    fn bidi_overrides_and_zero_width_characters_cannot_reorder_or_hide_page_text() {
        assert_eq!(
            escape("role/\u{202e}nimda\u{202c}\u{200b}x"),
            "role/\\u{202e}nimda\\u{202c}\\u{200b}x"
        );
        assert_eq!(escape("line\r\nnext\rover"), "line\r\nnext\\rover");
    }

    #[test]
    fn hostile_values_from_events_are_shown_not_run() {
        let mut g = test_group();
        g.session = Some(r#""><script>alert(1)</script>"#.into());
        g.principal = Some("arn:aws:iam::123456789012:role/R&D-<team>".into());
        g.error_codes = [("<img src=x onerror=alert(2)>".to_owned(), 1)].into();
        g.event_names = [("s3:Get'Object\"".to_owned(), 1)].into();
        g.source_ips = vec!["<b>10.0.0.1</b>".into()];
        g.access_key_ids = vec!["ASIA<i>".into()];
        g.remediation = "Use `<x>` & \"quotes\" then `unpaired <y>".into();
        let html = report(vec![g]).to_html();
        assert!(!html.contains("<script"), "a script element got through");
        assert!(!html.contains("<img"), "an img element got through");
        assert!(!html.contains("<b>10.0.0.1"), "a b element got through");
        assert!(!html.contains("<i>"), "an i element got through");
        assert!(!html.contains("<x>") && !html.contains("<y>"));
        assert!(html.contains("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("arn:aws:iam::123456789012:role/R&amp;D-&lt;team&gt;"));
        assert!(
            html.contains("R&amp;D-&lt;team&gt;/&quot;&gt;&lt;script&gt;"),
            "the label is escaped too"
        );
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
        assert!(html.contains("s3:Get&#39;Object&quot;"));
        assert!(
            html.contains("Use <code>&lt;x&gt;</code> &amp; &quot;quotes&quot; then `unpaired &lt;y&gt;")
        );
        // Nothing but the page's own markup: no raw & outside entities, no attribute broken out of.
        for (i, _) in html.match_indices('&') {
            let entity = &html[i..html[i..].find(';').map_or(html.len(), |j| i + j + 1)];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;"].contains(&entity),
                "a bare & at {i}: {entity:.20}"
            );
        }
    }

    #[test]
    fn the_page_fetches_nothing_and_runs_nothing() {
        let html = report(vec![test_group()]).to_html();
        assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
        for banned in [
            "<script", "<link", "<img", "<iframe", "src=", "url(", "http:", "https:", "@import",
        ] {
            assert!(!html.contains(banned), "{banned}");
        }
    }

    fn group_aged(age: Option<i64>, lease: Option<u64>) -> Group {
        let mut g = test_group();
        g.age_at_first_failure_seconds = age;
        g.lease_seconds = lease;
        g
    }

    #[test]
    fn ages_are_binned_as_a_share_of_the_lease_centred_on_tens() {
        assert_eq!(AgeBin::of(3614, 3600), AgeBin::Centred(100));
        assert_eq!(
            AgeBin::of(3420, 3600),
            AgeBin::Centred(100),
            "95 % starts the lease-end bin"
        );
        assert_eq!(AgeBin::of(3419, 3600), AgeBin::Centred(90));
        assert_eq!(AgeBin::of(3779, 3600), AgeBin::Centred(100));
        assert_eq!(
            AgeBin::of(3780, 3600),
            AgeBin::Centred(110),
            "105 % starts the next"
        );
        assert_eq!(AgeBin::of(909, 900), AgeBin::Centred(100));
        assert_eq!(AgeBin::of(43_221, 43_200), AgeBin::Centred(100));
        assert_eq!(AgeBin::of(612, 3600), AgeBin::Centred(20));
        assert_eq!(AgeBin::of(0, 3600), AgeBin::Centred(0));
        assert_eq!(AgeBin::of(-100, 3600), AgeBin::Centred(0));
        assert_eq!(
            AgeBin::of(-180, 3600),
            AgeBin::Centred(0),
            "−5 % is still the 0 bin"
        );
        assert_eq!(AgeBin::of(-181, 3600), AgeBin::Before);
        assert_eq!(AgeBin::of(7379, 3600), AgeBin::Centred(200));
        assert_eq!(AgeBin::of(7380, 3600), AgeBin::After);
        assert_eq!(AgeBin::of(18_730, 3600), AgeBin::After);
        assert_eq!(AgeBin::of(i64::MAX, 1), AgeBin::After);
        assert_eq!(AgeBin::of(i64::MIN, u64::MAX), AgeBin::Before);
        assert_eq!(AgeBin::all().len(), 23);
    }

    /// The samples' shape: eight stale caches and a refresh race at the lease end, a paused laptop far
    /// past it, a clock skew early, a web identity token and an unknown without an age.
    fn samples_like() -> Document {
        report(vec![
            group_aged(Some(3614), Some(3600)),
            group_aged(Some(3611), Some(3600)),
            group_aged(Some(3614), Some(3600)),
            group_aged(Some(1812), Some(1800)),
            group_aged(Some(21_815), Some(21_600)),
            group_aged(Some(909), Some(900)),
            group_aged(Some(43_221), Some(43_200)),
            group_aged(Some(3607), Some(3600)),
            group_aged(None, None),
            group_aged(Some(18_730), Some(3600)),
            group_aged(None, Some(3600)),
            group_aged(Some(3605), Some(3600)),
            group_aged(Some(612), Some(3600)),
        ])
    }

    #[test]
    fn the_histogram_has_one_bar_per_non_empty_bin_with_its_count() {
        let r = samples_like();
        let h = AgeHistogram::of(&r.groups);
        let shape: Vec<(AgeBin, usize)> = h.bins.iter().map(|(b, m)| (*b, m.len())).collect();
        assert_eq!(
            shape,
            vec![
                (AgeBin::Centred(20), 1),
                (AgeBin::Centred(100), 9),
                (AgeBin::After, 1)
            ]
        );
        assert_eq!((h.plotted(), h.at_lease_end(), h.without_lease), (11, 9, 0));

        let html = r.to_html();
        // Drawn twice: for a desktop window and for a phone.
        assert_eq!(count(&html, "<g class=\"hist-bar"), 6);
        assert_eq!(count(&html, "<g class=\"hist-bar at-lease\" data-count=\"9\""), 2);
        assert!(html.contains("<title>9 groups first failed at 95–105 % of the lease (the lease end): "));
        assert!(html.contains("<title>1 group first failed at 15–25 % of the lease: "));
        assert!(html.contains("<title>1 group first failed at more than 205 % of the lease: "));
        assert!(html.contains(
            "<b>9 of 11</b> groups with a measurable age first failed within 5 % of the lease end"
        ));
        assert!(html.contains("2 of 13 groups not plotted"));
    }

    #[test]
    fn bars_are_coloured_by_verdict_whatever_their_bin() {
        // Stale caches that failed at 110–130 % of the lease are still stale caches, drawn in their colour.
        let mut late = group_aged(Some(4300), Some(3600));
        late.verdict = Verdict::StaleCache;
        let mut skew = group_aged(Some(612), Some(3600));
        skew.verdict = Verdict::ClockSkew;
        let mut race = group_aged(Some(3605), Some(3600));
        race.verdict = Verdict::RefreshRace;
        let html = report(vec![late, skew, race, group_aged(Some(3614), Some(3600))]).to_html();
        let wide = &html[html.find("<svg class=\"histogram wide\"").unwrap()..];
        let wide = &wide[..wide.find("</svg>").unwrap()];
        let bin_120 = &wide[wide.find("first failed at 115–125 %").unwrap()..];
        assert!(
            bin_120[..bin_120.find("</g>").unwrap()].contains("class=\"hist-seg v-stale-cache\""),
            "{bin_120:.400}"
        );
        let lease_end = &wide[wide
            .find("<g class=\"hist-bar at-lease\" data-count=\"2\"")
            .unwrap()..];
        let lease_end = &lease_end[..lease_end.find("</g>").unwrap()];
        assert!(
            lease_end.contains("data-verdict=\"stale-cache\" data-count=\"1\""),
            "{lease_end}"
        );
        assert!(
            lease_end.contains("data-verdict=\"refresh-race\" data-count=\"1\""),
            "{lease_end}"
        );
        assert!(wide.contains("class=\"hist-seg v-clock-skew\""));
        assert!(html.contains("Bars by verdict: <span class=\"key\"><span class=\"swatch v-stale-cache\"></span>stale-cache</span>"));
    }

    #[test]
    fn a_known_age_without_a_lease_is_counted_but_not_plotted() {
        let h = AgeHistogram::of(&[group_aged(Some(3600), None), group_aged(Some(3600), Some(0))]);
        assert_eq!((h.bins.len(), h.without_lease), (0, 2));
    }

    #[test]
    fn every_group_gets_a_timeline_and_its_remediation() {
        let mut unknown = example_finding();
        unknown.assessment.issued_at = None;
        unknown.assessment.lease = None;
        unknown.assessment.age_at_first_failure = None;
        unknown.assessment.verdict = Verdict::Unknown;
        unknown.assessment.credential_source = CredentialSource::Unknown;
        unknown.remediation =
            tokenwatch_core::remediation::remediation(Verdict::Unknown, CredentialSource::Unknown, None);
        let unknown = Group::of(&unknown);
        let mut single = example_finding();
        single.last_failure = single.first_failure;
        single.failures = 1;
        if let Some(lease) = single.assessment.lease.as_mut() {
            lease.source = LeaseSource::DefaultAssumeRole;
        }
        let single = Group::of(&single);
        let r = report(vec![test_group(), unknown, single]);
        let html = r.to_html();
        assert_eq!(count(&html, "<svg class=\"timeline\""), 3);
        assert_eq!(count(&html, "<rect class=\"tl-fail\""), 3);
        assert_eq!(count(&html, "lease end (1h)"), 2);
        assert!(html.contains("issue time unknown"));
        assert!(html.contains("failures +1h00m14s → +1h31m40s"));
        assert!(html.contains("failure +1h00m14s<"));
        assert!(html.contains("issued 2026-11-02T08:00:00Z · lease ends 2026-11-02T09:00:00Z"));
        assert!(html.contains("Let botocore refresh the role: configure <code>role_arn</code>"));
        assert!(html.contains("Find the issuing call to measure the session&#39;s age"));
        for n in 1..=3 {
            assert!(html.contains(&format!("href=\"#group-{n}\"")));
            assert!(html.contains(&format!("id=\"group-{n}\"")));
        }
    }

    #[test]
    fn totals_are_grouped_in_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(200_000), "200,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn an_empty_report_renders_a_whole_page() {
        let html = report(vec![]).to_html();
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        assert!(html.contains("No expired-credential failures were found."));
        assert!(html.contains("<svg class=\"histogram wide\""));
        assert!(html.contains("<svg class=\"histogram narrow\""));
        assert_eq!(count(&html, "<g class=\"hist-bar"), 0);
        assert!(!html.contains("<table>"));
        assert_eq!(count(&html, "<svg"), count(&html, "</svg>"));
    }
}
