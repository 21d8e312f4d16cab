//! Text that people read, made safe to show: the one place that decides which characters may reach a
//! screen as they are.
//!
//! Values from events (principal, session, error codes, addresses) and names from the file system or S3
//! (file names, object keys) are chosen by whoever wrote them. Shown raw, they could move the cursor,
//! recolour or clear a terminal (ESC, or CSI as the single C1 character `U+009B`), ring its bell, overwrite
//! a line (a lone CR), start a line that looks like tokenwatch's own (`\ntokenwatch: …`), reorder what is
//! read (bidi overrides and isolates) or hide characters (zero-width ones), so that two different
//! principals look alike. Such a character is written as a visible escape (`\u{202e}`, `\n`): nothing is
//! lost, two different values never look the same, and nothing acts on the display.
//!
//! The table, markdown, CSV and HTML renderers, the SNS messages and the command line's messages on
//! stderr all go through here; none has escaping rules of its own for these characters (markup escaping,
//! CSV quoting and the formula defence stay with their format).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` acts on a display rather than being drawn, or draws nothing at all: the C0 and C1 control
/// characters and DEL (Unicode category Cc), the format characters (Cf: bidi marks, embeddings, overrides
/// and isolates, zero-width space and joiners, word joiner, invisible operators, byte-order mark, soft
/// hyphen, tag characters, …), the line and paragraph separators (Zl, Zp), and the invisible fillers used
/// to forge look-alike names (combining grapheme joiner, Hangul fillers).
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        // Cc: C0, DEL, C1.
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            // Cf (Unicode 16).
            | '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{890}'..='\u{891}'
            | '\u{8e2}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{110bd}'
            | '\u{110cd}'
            | '\u{13430}'..='\u{1343f}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0001}'
            | '\u{e0020}'..='\u{e007f}'
            // Zl, Zp.
            | '\u{2028}'
            | '\u{2029}'
            // Invisible, though not format characters: combining grapheme joiner, Hangul fillers.
            | '\u{34f}'
            | '\u{115f}'
            | '\u{1160}'
            | '\u{3164}'
            | '\u{ffa0}'
    )
}

/// Text for one line: a message on stderr, a table or markdown cell. Every unsafe character is escaped,
/// line breaks and tabs included, so the text stays on its line and in its column.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, |_, _| false)
}

/// Text that may span lines: a CSV field (RFC 4180 quotes line breaks), HTML text. Tabs, line feeds and
/// CR LF pairs are kept; every other unsafe character is escaped, a lone CR included (it returns the
/// cursor and lets the rest of the line overwrite what came before).
pub fn lines(s: &str) -> Cow<'_, str> {
    escape(s, |c, next| match c {
        '\t' | '\n' => true,
        '\r' => next == Some('\n'),
        _ => false,
    })
}

/// `s` with each unsafe character that `keep` (given the character and the next one) refuses escaped.
fn escape(s: &str, keep: impl Fn(char, Option<char>) -> bool) -> Cow<'_, str> {
    let mut chars = s.chars().peekable();
    let mut out: Option<String> = None;
    let mut at = 0;
    while let Some(c) = chars.next() {
        let next = chars.peek().copied();
        if is_unsafe(c) && !keep(c, next) {
            let out = out.get_or_insert_with(|| {
                let mut o = String::with_capacity(s.len() + 16);
                o.push_str(&s[..at]);
                o
            });
            push_escaped(out, c);
        } else if let Some(out) = out.as_mut() {
            out.push(c);
        }
        at += c.len_utf8();
    }
    out.map_or(Cow::Borrowed(s), Cow::Owned)
}

/// The escape people know from Rust and JSON: `\t`, `\n`, `\r`, else `\u{hex}`.
fn push_escaped(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        c => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for s in [
            "",
            "arn:aws:iam::123456789012:role/etl",
            "café × 東京 — ok",
            "a\\u{1b}b",
        ] {
            assert!(matches!(line(s), Cow::Borrowed(t) if t == s), "{s}");
            assert!(matches!(lines(s), Cow::Borrowed(t) if t == s), "{s}");
        }
    }

    #[test]
    fn terminal_controls_are_shown_not_run() {
        assert_eq!(line("a\u{1b}[31mred\u{7}"), "a\\u{1b}[31mred\\u{7}");
        assert_eq!(line("csi\u{9b}2J"), "csi\\u{9b}2J");
        assert_eq!(line("x\ntokenwatch: forged"), "x\\ntokenwatch: forged");
        assert_eq!(line("a\tb\rc"), "a\\tb\\rc");
    }

    #[test]
    fn bidi_and_zero_width_characters_are_shown_not_obeyed() {
        assert_eq!(line("evil\u{202e}fdp.exe"), "evil\\u{202e}fdp.exe");
        assert_eq!(line("ad\u{200b}min"), "ad\\u{200b}min");
        assert_eq!(line("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        assert_eq!(line("\u{feff}bom"), "\\u{feff}bom");
        assert_eq!(line("tag\u{e0041}"), "tag\\u{e0041}");
        assert_eq!(line("p\u{2028}q"), "p\\u{2028}q");
    }

    #[test]
    fn lines_keeps_line_breaks_and_tabs_but_not_a_lone_carriage_return() {
        assert_eq!(lines("a\r\nb\nc\td"), "a\r\nb\nc\td");
        assert_eq!(lines("shown\rhidden"), "shown\\rhidden");
        assert_eq!(lines("end\r"), "end\\r");
        assert_eq!(lines("a\u{1b}b\u{85}c\u{202d}"), "a\\u{1b}b\\u{85}c\\u{202d}");
    }

    #[test]
    fn printable_look_alikes_are_left_alone() {
        // Visible characters, however exotic, are the text itself.
        for c in ['é', '×', '…', '\u{a0}', '東', '\u{1f600}', '\u{fe0f}'] {
            assert!(!is_unsafe(c), "{c:?}");
        }
    }

    proptest! {
        #[test]
        fn nothing_unsafe_survives_and_nothing_else_changes(s in any::<String>()) {
            let one = line(&s);
            prop_assert!(!one.chars().any(is_unsafe), "{:?}", one);
            let many = lines(&s);
            prop_assert!(
                !many.chars().any(|c| is_unsafe(c) && !matches!(c, '\t' | '\n' | '\r')),
                "{:?}", many
            );
            prop_assert!(!many.replace("\r\n", "").contains('\r'), "{:?}", many);
            // Safe characters come through in order: removing the escapes gives the safe part of `s`.
            let safe: String = s.chars().filter(|c| !is_unsafe(*c)).collect();
            let mut unescaped = String::new();
            let mut rest = one.as_ref();
            while let Some(i) = rest.find('\\') {
                unescaped.push_str(&rest[..i]);
                let tail = &rest[i..];
                let skip = if tail.starts_with("\\u{") {
                    tail.find('}').map_or(1, |j| j + 1)
                } else if tail.starts_with("\\n") || tail.starts_with("\\t") || tail.starts_with("\\r") {
                    2
                } else {
                    unescaped.push('\\');
                    1
                };
                rest = &tail[skip..];
            }
            unescaped.push_str(rest);
            if !s.contains('\\') {
                prop_assert_eq!(unescaped, safe);
            }
        }
    }
}
