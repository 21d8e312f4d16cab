//! A table for a terminal that fits its width: columns shrink and their cells wrap inside the column,
//! never across the line; text is broken between words (or after `/`, `-`, `_`, `.`, `:`, `@` inside a long
//! word), never inside a code span (`` `…` ``) unless the span alone is wider than the whole line. When
//! even the narrowest columns do not fit, the columns that matter least are left out. A row may carry a
//! note (the fix) shown under it across the table's width when no column of readable width is left for
//! it, and rows may be folded under a parent row (a workload's groups under the workload).
//!
//! Widths are display widths (a CJK character or an emoji takes two cells). Colour, when asked for, is
//! added after the layout, so escape sequences never count toward a width.

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Space between two columns.
const GAP: usize = 2;
/// A note gets its own column only when the column can be at least this wide.
const MIN_NOTE_COLUMN: usize = 48;

/// How a column behaves when the table is too wide.
#[derive(Clone, Debug)]
pub struct Column {
    /// The header.
    pub header: &'static str,
    /// Numbers: right-aligned, never wrapped.
    pub numeric: bool,
    /// The width the column reads well at: it is narrowed below this only when every column that can be
    /// left out has been (never below its header).
    pub min: usize,
    /// Columns with a lower rank are left out first when even the narrowest layout is too wide; rank 0
    /// is never left out.
    pub rank: u8,
    /// Wrapped lines of this column get an ANSI style (SGR parameters, e.g. `31` for red) chosen from the
    /// cell's text, when colour is on.
    pub style: Option<fn(&str) -> Option<&'static str>>,
}

impl Column {
    /// A text column that is never left out.
    pub fn text(header: &'static str, min: usize) -> Column {
        Column {
            header,
            numeric: false,
            min,
            rank: 0,
            style: None,
        }
    }

    /// A right-aligned number column.
    pub fn number(header: &'static str) -> Column {
        Column {
            numeric: true,
            ..Column::text(header, 1)
        }
    }

    /// Left out before columns of a higher rank.
    pub fn rank(mut self, rank: u8) -> Column {
        self.rank = rank;
        self
    }

    /// Styled by `style` when colour is on.
    pub fn styled(mut self, style: fn(&str) -> Option<&'static str>) -> Column {
        self.style = Some(style);
        self
    }
}

/// One row: a cell per column (a cell may hold `\n` for separate lines), an optional note, and the rows
/// folded under it.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The cells, in column order.
    pub cells: Vec<String>,
    /// Shown in the note column, or under the row.
    pub note: Option<String>,
    /// Rows folded under this one (shown indented below it).
    pub children: Vec<Row>,
}

/// A table: columns, rows, and a note column (its header) if rows carry notes.
#[derive(Clone, Debug)]
pub struct Table {
    /// The columns.
    pub columns: Vec<Column>,
    /// The header of the note column, and the label a note gets when shown under its row.
    pub note: Option<&'static str>,
    /// The rows.
    pub rows: Vec<Row>,
}

/// How to draw.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The width of a line, in cells.
    pub width: usize,
    /// Write ANSI colour.
    pub color: bool,
}

/// The display width of `s`.
pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

impl Table {
    /// The table as lines of at most `layout.width` cells (each ending in `\n`).
    pub fn render(&self, layout: Layout) -> String {
        let total = layout.width.max(20);
        let rows = self.flattened();
        let mut shown: Vec<usize> = (0..self.columns.len()).collect();
        let natural: Vec<usize> = (0..self.columns.len()).map(|c| self.natural(c, &rows)).collect();
        let floor: Vec<usize> = (0..self.columns.len()).map(|c| self.floor(c, &rows)).collect();
        // The width a column reads well at: its `min`, never below its floor or above its natural width.
        let comfort: Vec<usize> = (0..self.columns.len())
            .map(|c| self.columns[c].min.max(floor[c]).min(natural[c]))
            .collect();
        let longest_note_atom = rows
            .iter()
            .filter_map(|(_, r)| r.note.as_deref())
            .flat_map(atoms)
            .map(|a| width(a.text.trim()))
            .max()
            .unwrap_or(0);
        let has_notes = self.note.is_some() && rows.iter().any(|(_, r)| r.note.is_some());

        // A note column when every other column keeps its natural width and the notes still get a
        // readable column that holds their longest code span.
        let naturals: usize = natural.iter().sum::<usize>() + GAP * shown.len();
        let note_column = has_notes && total >= naturals + MIN_NOTE_COLUMN.max(longest_note_atom);
        let mut widths = natural.clone();
        if !note_column {
            // Drop the least important columns until the narrowest layout fits.
            loop {
                let needed: usize =
                    shown.iter().map(|&c| comfort[c]).sum::<usize>() + GAP * shown.len().saturating_sub(1);
                if needed <= total {
                    break;
                }
                let Some((pos, _)) = shown
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| self.columns[**c].rank > 0)
                    .min_by_key(|(pos, c)| (self.columns[**c].rank, std::cmp::Reverse(*pos)))
                else {
                    break;
                };
                shown.remove(pos);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|(depth, r)| {
                    let mut cells = r.cells.clone();
                    // Folded rows' indent takes room in the first column.
                    if let Some(first) = cells.first_mut() {
                        *first = format!("{}{first}", " ".repeat(indent_width(*depth)));
                    }
                    cells
                })
                .collect();
            // Down to the comfortable widths first; below them only when nothing is left to leave out.
            shrink(&mut widths, &comfort, &shown, total, &cells);
            shrink(&mut widths, &floor, &shown, total, &cells);
        }
        let note_width = if note_column { total - naturals } else { 0 };

        let mut out = String::new();
        let header_cells: Vec<String> = shown.iter().map(|&c| self.columns[c].header.to_owned()).collect();
        let mut header = self.line(&shown, &widths, &header_cells, 0, layout, true);
        if note_column && let Some(h) = self.note {
            header[0].push_str(&bold(h, layout.color));
        }
        for l in header {
            out.push_str(l.trim_end());
            out.push('\n');
        }
        for (depth, row) in &rows {
            let cells: Vec<String> = shown
                .iter()
                .map(|&c| row.cells.get(c).cloned().unwrap_or_default())
                .collect();
            let mut lines = self.line(&shown, &widths, &cells, *depth, layout, false);
            if let Some(note) = &row.note {
                if note_column {
                    let wrapped = wrap(note, note_width);
                    for (i, text) in wrapped.iter().enumerate() {
                        if i >= lines.len() {
                            lines.push(" ".repeat(naturals));
                        }
                        lines[i].push_str(text);
                    }
                } else if let Some(label) = self.note {
                    let indent = 2 + 2 * depth;
                    let lead = format!("{}{}: ", " ".repeat(indent), label.to_lowercase());
                    let hang = " ".repeat(width(&lead).min(total / 2));
                    let room = total.saturating_sub(width(&lead)).max(1);
                    for (i, text) in wrap(note, room).iter().enumerate() {
                        let prefix = if i == 0 { &lead } else { &hang };
                        lines.push(format!("{prefix}{text}"));
                    }
                }
            }
            for l in lines {
                out.push_str(l.trim_end());
                out.push('\n');
            }
        }
        out
    }

    /// Rows in display order with their depth.
    fn flattened(&self) -> Vec<(usize, &Row)> {
        fn walk<'a>(rows: &'a [Row], depth: usize, out: &mut Vec<(usize, &'a Row)>) {
            for r in rows {
                out.push((depth, r));
                walk(&r.children, depth + 1, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.rows, 0, &mut out);
        out
    }

    /// The widest line of a column (header included), with the indent of folded rows in the first one.
    fn natural(&self, c: usize, rows: &[(usize, &Row)]) -> usize {
        let header = width(self.columns[c].header);
        rows.iter()
            .map(|(depth, r)| {
                let indent = if c == 0 { indent_width(*depth) } else { 0 };
                r.cells
                    .get(c)
                    .map_or(0, |cell| cell.lines().map(width).max().unwrap_or(0))
                    + indent
            })
            .max()
            .unwrap_or(0)
            .max(header)
    }

    /// The narrowest a column can be: its header on one line (headers are short), whole numbers, and room
    /// for the indent of folded rows.
    fn floor(&self, c: usize, rows: &[(usize, &Row)]) -> usize {
        let col = &self.columns[c];
        if col.numeric {
            return self.natural(c, rows);
        }
        let deepest = rows.iter().map(|(d, _)| *d).max().unwrap_or(0);
        let indent = if c == 0 { indent_width(deepest) } else { 0 };
        width(col.header).max(indent + 4)
    }

    /// One row's cells wrapped into lines, padded to the column widths.
    fn line(
        &self,
        shown: &[usize],
        widths: &[usize],
        cells: &[String],
        depth: usize,
        layout: Layout,
        header: bool,
    ) -> Vec<String> {
        let mut columns: Vec<Vec<String>> = Vec::new();
        for (i, &c) in shown.iter().enumerate() {
            let w = widths[c];
            let indent = if i == 0 { indent_width(depth) } else { 0 };
            let mut lines: Vec<String> = Vec::new();
            for part in cells[i].split('\n') {
                lines.extend(wrap(part, w.saturating_sub(indent).max(1)));
            }
            if indent > 0 {
                for (k, l) in lines.iter_mut().enumerate() {
                    let lead = if k == 0 {
                        format!("{}└ ", " ".repeat(indent - 2))
                    } else {
                        " ".repeat(indent)
                    };
                    *l = format!("{lead}{l}");
                }
            }
            columns.push(lines);
        }
        let height = columns.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut out = Vec::with_capacity(height);
        for k in 0..height {
            let mut l = String::new();
            for (i, &c) in shown.iter().enumerate() {
                let col = &self.columns[c];
                let text = columns[i].get(k).map(String::as_str).unwrap_or("");
                let pad = widths[c].saturating_sub(width(text));
                let styled = if header {
                    bold(text, layout.color)
                } else {
                    match (layout.color, col.style.and_then(|s| s(cells[i].trim()))) {
                        (true, Some(sgr)) if !text.is_empty() => format!("\x1b[{sgr}m{text}\x1b[0m"),
                        _ => text.to_owned(),
                    }
                };
                if col.numeric {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(&styled);
                } else {
                    l.push_str(&styled);
                    l.push_str(&" ".repeat(pad));
                }
                l.push_str(&" ".repeat(GAP));
            }
            out.push(l);
        }
        out
    }
}

fn bold(text: &str, color: bool) -> String {
    if color && !text.is_empty() {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_owned()
    }
}

/// Folded rows are indented by two cells per level.
fn indent_width(depth: usize) -> usize {
    2 * depth
}

/// Narrows the shown columns one cell at a time until they fit in `total`, each time taking the cell from
/// the column where it costs the fewest added lines (a date that wraps beside a three-line name costs
/// nothing), then from the one with the most room above its floor.
fn shrink(widths: &mut [usize], floor: &[usize], shown: &[usize], total: usize, cells: &[Vec<String>]) {
    let lines_at = |c: usize, w: usize| -> Vec<usize> {
        cells
            .iter()
            .map(|row| {
                row.get(c)
                    .map_or(1, |cell| cell.split('\n').map(|p| wrap(p, w.max(1)).len()).sum())
            })
            .collect()
    };
    let mut current: Vec<Vec<usize>> = (0..widths.len())
        .map(|c| {
            if shown.contains(&c) {
                lines_at(c, widths[c])
            } else {
                Vec::new()
            }
        })
        .collect();
    loop {
        let used: usize =
            shown.iter().map(|&c| widths[c]).sum::<usize>() + GAP * shown.len().saturating_sub(1);
        if used <= total {
            return;
        }
        let mut best: Option<(usize, usize, usize, Vec<usize>)> = None;
        for &c in shown.iter().filter(|&&c| widths[c] > floor[c]) {
            let narrower = lines_at(c, widths[c] - 1);
            let added: usize = (0..cells.len())
                .map(|r| {
                    let others = shown
                        .iter()
                        .filter(|&&o| o != c)
                        .map(|&o| current[o].get(r).copied().unwrap_or(1))
                        .max()
                        .unwrap_or(1);
                    let before = others.max(current[c].get(r).copied().unwrap_or(1));
                    let after = others.max(narrower.get(r).copied().unwrap_or(1));
                    after.saturating_sub(before)
                })
                .sum();
            let slack = widths[c] - floor[c];
            let better = match &best {
                None => true,
                Some((_, best_added, best_slack, _)) => {
                    (added, std::cmp::Reverse(slack)) < (*best_added, std::cmp::Reverse(*best_slack))
                }
            };
            if better {
                best = Some((c, added, slack, narrower));
            }
        }
        let Some((c, _, _, narrower)) = best else {
            return;
        };
        widths[c] -= 1;
        current[c] = narrower;
    }
}

/// A piece of text that stays on one line if it can: a code span (with its backticks) or a word, with
/// the space that follows it.
#[derive(Debug, PartialEq, Eq)]
struct Atom<'a> {
    text: &'a str,
    code: bool,
}

/// Splits `s` into words and code spans. An unpaired backtick starts no span.
fn atoms(s: &str) -> Vec<Atom<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`'
            && let Some(close) = s[i + 1..].find('`')
        {
            if i > start {
                out.extend(words(&s[start..i]));
            }
            let mut end = i + 1 + close + 1;
            // The punctuation right after a span sticks to it ("`x`," never starts a line with ",").
            while end < bytes.len() && matches!(bytes[end], b',' | b'.' | b';' | b':' | b')') {
                end += 1;
            }
            while end < bytes.len() && bytes[end] == b' ' {
                end += 1;
            }
            out.push(Atom {
                text: &s[i..end],
                code: true,
            });
            start = end;
            i = end;
            continue;
        }
        i += 1;
    }
    if start < s.len() {
        out.extend(words(&s[start..]));
    }
    out
}

/// Words with their trailing spaces.
fn words(s: &str) -> impl Iterator<Item = Atom<'_>> {
    let mut rest = s;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.find(' ').map_or(rest.len(), |i| {
            i + rest[i..].bytes().take_while(|b| *b == b' ').count()
        });
        let (word, tail) = rest.split_at(end);
        rest = tail;
        Some(Atom {
            text: word,
            code: false,
        })
    })
}

/// Wraps `s` to lines of at most `max` cells: between atoms; a word longer than a line is broken after a
/// separator (`/`, `-`, `_`, `.`, `:`, `@`) where it can, else anywhere; a code span only when it alone is
/// longer than a line.
pub fn wrap(s: &str, max: usize) -> Vec<String> {
    let max = max.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for atom in atoms(s) {
        let w = width(atom.text.trim_end());
        if width(&line) + w <= max {
            line.push_str(atom.text);
            continue;
        }
        if !line.trim_end().is_empty() {
            lines.push(line.trim_end().to_owned());
            line.clear();
        }
        if w <= max {
            line.push_str(atom.text);
            continue;
        }
        // Longer than a whole line: break it.
        let pieces = if atom.code {
            hard_break(atom.text.trim_end(), max)
        } else {
            soft_break(atom.text.trim_end(), max)
        };
        let last = pieces.len() - 1;
        for (k, p) in pieces.into_iter().enumerate() {
            if k == last {
                line = p;
                if atom.text.ends_with(' ') {
                    line.push(' ');
                }
            } else {
                lines.push(p);
            }
        }
    }
    if !line.trim_end().is_empty() || lines.is_empty() {
        lines.push(line.trim_end().to_owned());
    }
    lines
}

/// Breaks a long word after separators, packing as much as fits on each line.
fn soft_break(word: &str, max: usize) -> Vec<String> {
    let mut pieces: Vec<&str> = Vec::new();
    let mut start = 0;
    for (i, c) in word.char_indices() {
        if matches!(c, '/' | '-' | '_' | '.' | ':' | '@' | ',') {
            pieces.push(&word[start..i + c.len_utf8()]);
            start = i + c.len_utf8();
        }
    }
    if start < word.len() {
        pieces.push(&word[start..]);
    }
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for p in pieces {
        if width(&line) + width(p) <= max {
            line.push_str(p);
            continue;
        }
        if !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if width(p) <= max {
            line.push_str(p);
        } else {
            let mut broken = hard_break(p, max);
            line = broken.pop().unwrap_or_default();
            out.extend(broken);
        }
    }
    out.push(line);
    out
}

/// Breaks anywhere, by display width.
fn hard_break(s: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut line = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = UnicodeWidthChar::width(c).unwrap_or(0);
        if w + cw > max && !line.is_empty() {
            out.push(std::mem::take(&mut line));
            w = 0;
        }
        line.push(c);
        w += cw;
    }
    out.push(line);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JS_FIX: &str = "Pass `fromTemporaryCredentials({ params: { RoleArn } })` (or `fromIni` with a role \
                          profile) from @aws-sdk/credential-providers as the client's credentials";

    #[test]
    fn wrapping_keeps_code_spans_whole_and_lines_within_the_width() {
        // The longest span is 52 cells wide, backticks included.
        for max in [56, 60, 80] {
            let lines = wrap(JS_FIX, max);
            for l in &lines {
                assert!(width(l) <= max, "{max}: {l:?} is too wide");
                assert_eq!(
                    l.matches('`').count() % 2,
                    0,
                    "{max}: a code span was broken: {l:?}"
                );
            }
            assert_eq!(lines.join(" "), JS_FIX, "{max}: nothing lost");
        }
    }

    #[test]
    fn a_code_span_wider_than_the_line_is_broken_rather_than_the_line_overflowing() {
        let lines = wrap(JS_FIX, 20);
        assert!(lines.iter().all(|l| width(l) <= 20), "{lines:#?}");
    }

    #[test]
    fn long_names_break_after_separators() {
        let lines = wrap(
            "AWSReservedSSO_AdministratorAccess_0123456789abcdef/maria@example.com",
            24,
        );
        assert_eq!(
            lines,
            vec![
                "AWSReservedSSO_",
                "AdministratorAccess_",
                "0123456789abcdef/maria@",
                "example.com"
            ]
        );
        assert_eq!(wrap("", 10), vec![""]);
        assert_eq!(wrap("a b", 10), vec!["a b"]);
    }

    #[test]
    fn wide_characters_count_two_cells() {
        let lines = wrap("日本語のセッション名", 8);
        assert!(lines.iter().all(|l| width(l) <= 8), "{lines:?}");
        assert_eq!(lines.concat(), "日本語のセッション名");
    }

    fn table() -> Table {
        let row = |g: &str, v: &str, n: &str, fix: &str| Row {
            cells: vec![
                g.into(),
                v.into(),
                n.into(),
                "2026-11-02 09:00Z\nstill failing".into(),
            ],
            note: Some(fix.into()),
            children: vec![],
        };
        Table {
            columns: vec![
                Column::text("GROUP", 14),
                Column::text("VERDICT", 12),
                Column::number("FAILURES"),
                Column::text("SINCE", 10).rank(1),
            ],
            note: Some("FIX"),
            rows: vec![
                row(
                    "etl-pipeline-role/nightly-etl",
                    "stale-cache",
                    "83",
                    "Let botocore refresh the role",
                ),
                row(
                    "AWSReservedSSO_AdministratorAccess_0123456789abcdef/maria@example.com",
                    "web-identity-token-expired",
                    "4",
                    JS_FIX,
                ),
            ],
        }
    }

    #[test]
    fn the_table_fits_every_width_and_keeps_every_note() {
        for w in [40, 60, 80, 100, 120, 200] {
            let out = table().render(Layout {
                width: w,
                color: false,
            });
            for l in out.lines() {
                assert!(width(l) <= w, "at {w}: {l:?} is {} wide\n{out}", width(l));
            }
            assert!(out.contains("Let botocore refresh the role"), "{out}");
            let flat: String = out.split_whitespace().collect::<Vec<_>>().join(" ");
            if w >= 60 {
                assert!(
                    flat.contains("`fromTemporaryCredentials({ params: { RoleArn } })`"),
                    "at {w}:\n{out}"
                );
            }
        }
    }

    #[test]
    fn notes_get_a_column_on_a_wide_line_and_a_line_of_their_own_on_a_narrow_one() {
        let wide = table().render(Layout {
            width: 200,
            color: false,
        });
        assert!(wide.lines().next().unwrap().ends_with("FIX"), "{wide}");
        assert_eq!(wide.lines().filter(|l| l.contains("fix:")).count(), 0);
        let narrow = table().render(Layout {
            width: 80,
            color: false,
        });
        assert!(!narrow.lines().next().unwrap().contains("FIX"), "{narrow}");
        assert!(
            narrow.contains("\n  fix: Let botocore refresh the role\n"),
            "{narrow}"
        );
    }

    #[test]
    fn the_least_important_column_goes_first_when_nothing_else_fits() {
        let narrow = table().render(Layout {
            width: 40,
            color: false,
        });
        assert!(!narrow.contains("SINCE"), "{narrow}");
        assert!(
            narrow.contains("GROUP") && narrow.contains("FAILURES"),
            "{narrow}"
        );
        let wide = table().render(Layout {
            width: 100,
            color: false,
        });
        assert!(wide.contains("SINCE") && wide.contains("still failing"), "{wide}");
    }

    #[test]
    fn folded_rows_sit_indented_under_their_parent() {
        let mut t = table();
        let children = std::mem::take(&mut t.rows);
        t.rows = vec![Row {
            cells: vec![
                "etl-pipeline-role/nightly-*".into(),
                "stale-cache".into(),
                "87".into(),
                String::new(),
            ],
            note: None,
            children,
        }];
        let out = t.render(Layout {
            width: 100,
            color: false,
        });
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].starts_with("etl-pipeline-role/nightly-*"), "{out}");
        assert!(lines[2].starts_with("└ etl-pipeline-role/"), "{out}");
        assert!(out.contains("\n    fix: Let botocore"), "{out}");
    }

    #[test]
    fn colour_is_added_after_the_layout_and_only_when_asked() {
        let mut t = table();
        t.columns[1] = Column::text("VERDICT", 12).styled(|v| (v == "stale-cache").then_some("31"));
        let plain = t.render(Layout {
            width: 100,
            color: false,
        });
        assert!(!plain.contains('\x1b'));
        let coloured = t.render(Layout {
            width: 100,
            color: true,
        });
        assert!(coloured.contains("\x1b[31mstale-cache\x1b[0m"), "{coloured}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut esc = false;
            for c in s.chars() {
                match (esc, c) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain, "colour changes no width");
    }
}
