//! Tables that fit the terminal: columns shrink and their cells wrap inside them, never across the line
//! (docs/contract.md, "The command line").

use std::fmt::Write;

/// Columns are never narrower than this (or their header, if shorter).
const MIN_COLUMN: usize = 8;
/// Between two columns.
const GAP: &str = "  ";

/// The width to fit: `COLUMNS`, else the terminal's (stdout, then stderr), else 100.
pub(crate) fn width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|w| *w >= 20)
        .or_else(|| {
            [console::Term::stdout(), console::Term::stderr()]
                .iter()
                .find_map(|t| t.size_checked().map(|(_, w)| usize::from(w)))
        })
        .unwrap_or(100)
}

/// `headers` and `rows` as aligned columns at most `width` characters wide (when every column can shrink
/// to its minimum): the widest column gives way first, and cells wrap at spaces (or anywhere in a word
/// longer than the column).
pub(crate) fn render(headers: &[&str], rows: &[Vec<String>], width: usize) -> String {
    let n = headers.len();
    // A header wraps like any cell: only its longest word sets a width.
    let mut widths: Vec<usize> = headers
        .iter()
        .map(|h| h.split(' ').map(|w| w.chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP.len() * n.saturating_sub(1);
    while total(&widths) > width {
        let Some((i, _)) = widths
            .iter()
            .enumerate()
            .filter(|(_, w)| **w > MIN_COLUMN)
            .max_by_key(|(_, w)| **w)
        else {
            break;
        };
        widths[i] -= 1;
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let wrapped: Vec<Vec<String>> = cells.iter().zip(&widths).map(|(c, w)| wrap(c, *w)).collect();
        let height = wrapped.iter().map(Vec::len).max().unwrap_or(1);
        for k in 0..height {
            let mut l = String::new();
            for (i, lines) in wrapped.iter().enumerate() {
                let text = lines.get(k).map(String::as_str).unwrap_or("");
                if i + 1 == n {
                    l.push_str(text);
                } else {
                    let _ = write!(l, "{text:<w$}{GAP}", w = widths[i]);
                }
            }
            out.push_str(l.trim_end());
            out.push('\n');
        }
    };
    line(headers);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

/// `text` in lines of at most `width` characters, broken at spaces where it can be.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let used = current.chars().count();
            let room = if used == 0 {
                width
            } else {
                width.saturating_sub(used + 1)
            };
            if word.len() <= room {
                if used > 0 {
                    current.push(' ');
                }
                current.extend(&word);
                break;
            }
            if used > 0 {
                lines.push(std::mem::take(&mut current));
                continue;
            }
            let rest = word.split_off(width);
            lines.push(word.into_iter().collect());
            word = rest;
        }
    }
    lines.push(current);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_fits_is_left_as_it_is() {
        let t = render(&["A", "BB"], &[vec!["x".into(), "yy yy".into()]], 80);
        assert_eq!(t, "A  BB\nx  yy yy\n");
        let headed = render(&["SEEN BY IT"], &[vec!["yes".into()]], 80);
        assert_eq!(headed, "SEEN\nBY\nIT\nyes\n", "a header wraps inside its column");
    }

    #[test]
    fn a_wide_table_shrinks_its_widest_column_and_wraps_inside_it() {
        let long = "one two three four five six seven eight nine ten".to_owned();
        let t = render(&["SERVICE", "RECORDED"], &[vec!["S3".into(), long]], 30);
        for l in t.lines() {
            assert!(l.chars().count() <= 30, "{l:?}");
        }
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines.len() > 2, "{t}");
        assert!(
            lines[2].starts_with("         "),
            "a wrapped line keeps to its column: {t}"
        );
        assert_eq!(t.split_whitespace().filter(|w| *w == "ten").count(), 1);
    }

    #[test]
    fn words_longer_than_the_column_are_cut() {
        assert_eq!(wrap("abcdefghij", 4), ["abcd", "efgh", "ij"]);
        assert_eq!(wrap("ab cd ef", 5), ["ab cd", "ef"]);
        assert_eq!(wrap("", 5), [""]);
    }
}
