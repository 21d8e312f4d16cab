//! Whatever an event says, the people-facing renderings (table, markdown, CSV, HTML) carry no character
//! that acts on a terminal or reorders or hides text: every value goes through `tokenwatch_render::text`.

use proptest::prelude::*;
use tokenwatch_core::finding::{Finding, Report, example_finding};
const WIDE: tokenwatch_render::table::Layout = tokenwatch_render::table::Layout {
    width: 400,
    color: false,
};

use tokenwatch_render::Document;
use tokenwatch_render::text::is_unsafe;

/// Strings rich in what an attacker would send: escape sequences, BEL, C1 controls (CSI), line breaks,
/// bidi overrides and isolates, zero-width characters, a forged `tokenwatch:` line, formula starts, markup.
fn hostile() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        '\u{1b}',
        '\u{7}',
        '\u{0}',
        '\u{7f}',
        '\u{85}',
        '\u{9b}',
        '\n',
        '\r',
        '\t',
        '\u{b}',
        '\u{c}',
        '\u{202e}',
        '\u{202d}',
        '\u{2066}',
        '\u{2069}',
        '\u{200b}',
        '\u{200d}',
        '\u{200f}',
        '\u{2060}',
        '\u{feff}',
        '\u{2028}',
        '\u{2029}',
        '\u{ad}',
        '\u{e0041}',
        '\u{3164}',
        '=',
        '+',
        '-',
        '@',
        '"',
        ',',
        '|',
        '`',
        '<',
        '&',
        '\\',
    ]);
    let mixed = prop::collection::vec(
        prop_oneof![3 => special, 2 => any::<char>(), 2 => prop::char::range('a', 'z')],
        0..24,
    )
    .prop_map(String::from_iter);
    prop_oneof![9 => mixed, 1 => Just("x\ntokenwatch: forged line\u{1b}[2J".to_owned())]
}

fn finding(values: &[String]) -> Finding {
    let v = |i: usize| values[i % values.len()].clone();
    let mut f = example_finding();
    f.key.account = Some(v(0));
    f.principal = Some(format!("arn:aws:iam::123456789012:role/{}", v(1)));
    f.key.session = Some(v(2));
    f.access_key_ids = vec![v(3)];
    f.error_codes = std::sync::Arc::new([(v(4), 1)].into());
    f.event_names = std::sync::Arc::new([(v(5), 2)].into());
    f.source_ips = vec![v(6)];
    f.remediation.fix = v(7).into();
    f.remediation.detail = v(8).into();
    f
}

fn document(findings: Vec<Finding>) -> Document {
    Document::of(
        &Report {
            records: 10,
            failures: 6,
            skipped_records: 0,
            findings,
            workloads: Vec::new(),
            near_misses: Default::default(),
        },
        tokenwatch_render::Made::at(1_793_700_000),
    )
}

/// Unsafe characters in `text` other than the line feeds and tabs `allowed` lets through, and CR only
/// as part of CR LF.
fn leaks(text: &str, allowed: &[char]) -> Vec<char> {
    let mut chars = text.chars().peekable();
    let mut out = Vec::new();
    while let Some(c) = chars.next() {
        let crlf = c == '\r' && chars.peek() == Some(&'\n') && allowed.contains(&'\r');
        if is_unsafe(c) && !crlf && !(c != '\r' && allowed.contains(&c)) {
            out.push(c);
        }
    }
    out
}

/// RFC 4180 read back (quoted fields may hold commas, doubled quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    rows
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn table_and_markdown_show_event_values_on_their_own_lines_with_nothing_unsafe(
        values in prop::collection::vec(hostile(), 9)
    ) {
        let hostile = document(vec![finding(&values), example_finding()]);
        let benign = document(vec![example_finding(), example_finding()]);
        for (name, got, plain) in [
            ("table", hostile.to_table(WIDE), benign.to_table(WIDE)),
            ("markdown", hostile.to_markdown(), benign.to_markdown()),
        ] {
            prop_assert_eq!(leaks(&got, &['\n']), Vec::<char>::new(), "{}: {:?}", name, got);
            prop_assert_eq!(
                got.lines().count(), plain.lines().count(),
                "{}: an event value added a line: {:?}", name, got
            );
            prop_assert!(!got.lines().any(|l| l.starts_with("tokenwatch:")), "{}", name);
        }
    }

    #[test]
    fn csv_keeps_rfc_4180_and_the_formula_defence_and_passes_nothing_unsafe(
        values in prop::collection::vec(hostile(), 9)
    ) {
        let csv = document(vec![finding(&values)]).to_csv();
        prop_assert_eq!(leaks(&csv, &['\n', '\r', '\t']), Vec::<char>::new(), "{:?}", csv);
        let rows = parse_csv(&csv);
        prop_assert_eq!(rows.len(), 2, "{:?}", csv);
        prop_assert_eq!(rows[1].len(), rows[0].len());
        for column in ["account", "principal", "session", "error_codes", "remediation"] {
            let i = rows[0].iter().position(|c| c == column).unwrap();
            let cell = &rows[1][i];
            prop_assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{} could be evaluated: {:?}", column, cell
            );
        }
    }

    #[test]
    fn html_passes_nothing_that_reorders_hides_or_controls(values in prop::collection::vec(hostile(), 9)) {
        let html = document(vec![finding(&values)]).to_html();
        prop_assert_eq!(leaks(&html, &['\n', '\r', '\t']), Vec::<char>::new());
    }
}

#[test]
fn a_bidi_override_in_a_session_is_shown_as_an_escape_in_every_rendering() {
    let mut f = example_finding();
    f.key.session = Some("nightly\u{202e}lte".into());
    let doc = document(vec![f]);
    for (name, text) in [
        ("table", doc.to_table(WIDE)),
        ("markdown", doc.to_markdown()),
        ("csv", doc.to_csv()),
        ("html", doc.to_html()),
    ] {
        assert!(!text.contains('\u{202e}'), "{name}");
        assert!(text.contains("u{202e}"), "{name}: the override is shown: {text}");
    }
}
