//! Where and how the CLI writes: stdout or `-o FILE`, colour (`--color`, `NO_COLOR`, a terminal), the
//! table's width (`COLUMNS`, the terminal, 100), a quiet end when the reader goes away (`| head`), and
//! messages on stderr that `--quiet` silences.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::ValueEnum;
use tokenwatch_render::table::Layout;

/// Width of the table when neither `COLUMNS` nor a terminal says.
pub const DEFAULT_WIDTH: usize = 100;

/// `--color`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when writing to a terminal and NO_COLOR is not set.
    #[default]
    Auto,
    /// Colour unless NO_COLOR is set.
    Always,
    /// Never colour.
    Never,
}

/// How this run writes, from the global flags.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// `-o FILE`, else stdout.
    pub file: Option<PathBuf>,
    /// `--color`.
    pub color: Color,
    /// `--quiet`: no progress, no summaries; errors and warnings still.
    pub quiet: bool,
}

/// Set when the reader of stdout went away: the rest of the output is dropped, quietly.
#[derive(Debug)]
pub struct ClosedPipe;

impl std::fmt::Display for ClosedPipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the reader of the output went away")
    }
}

impl std::error::Error for ClosedPipe {}

impl Output {
    /// Whether what goes to the output is coloured: never with `NO_COLOR` (any non-empty value), never in
    /// a file or pipe unless `--color always`.
    pub fn colored(&self) -> bool {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        match self.color {
            _ if no_color => false,
            Color::Never => false,
            Color::Always => true,
            Color::Auto => self.file.is_none() && io::stdout().is_terminal(),
        }
    }

    /// The table's layout: `COLUMNS` if set, else the terminal's width (when writing to one), else
    /// [`DEFAULT_WIDTH`].
    pub fn layout(&self) -> Layout {
        let from_env = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.trim().parse::<usize>().ok())
            .filter(|&c| c > 0);
        let from_terminal = || {
            (self.file.is_none() && io::stdout().is_terminal())
                .then(|| console::Term::stdout().size_checked())
                .flatten()
                .map(|(_, cols)| usize::from(cols))
                .filter(|&c| c > 0)
        };
        Layout {
            width: from_env.or_else(from_terminal).unwrap_or(DEFAULT_WIDTH),
            color: self.colored(),
        }
    }

    /// Writes `text` to the file or stdout. A closed pipe on stdout is [`ClosedPipe`] (an exit, not an
    /// error message).
    pub fn write(&self, text: &str) -> Result<()> {
        match &self.file {
            Some(path) => {
                let mut f = File::create(path).with_context(|| format!("writing {}", path.display()))?;
                f.write_all(text.as_bytes())
                    .and_then(|()| f.flush())
                    .with_context(|| format!("writing {}", path.display()))
            }
            None => {
                let mut out = io::stdout().lock();
                match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
                    Err(e) => Err(anyhow::Error::new(e).context("writing the output")),
                }
            }
        }
    }

    /// Writes what `write` makes to the file or stdout as it makes it, buffered, for output too large to
    /// hold whole (a report of a million groups). Errors as [`Output::write`].
    pub fn write_with(&self, write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> Result<()> {
        match &self.file {
            Some(path) => {
                let f = File::create(path).with_context(|| format!("writing {}", path.display()))?;
                let mut w = io::BufWriter::with_capacity(1 << 16, f);
                write(&mut w)
                    .and_then(|()| w.flush())
                    .with_context(|| format!("writing {}", path.display()))
            }
            None => {
                let mut w = io::BufWriter::with_capacity(1 << 16, io::stdout().lock());
                match write(&mut w).and_then(|()| w.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(ClosedPipe.into()),
                    Err(e) => Err(anyhow::Error::new(e).context("writing the output")),
                }
            }
        }
    }

    /// A progress or summary line on stderr, unless `--quiet`.
    pub fn note(&self, line: &str) {
        if !self.quiet {
            say(line);
        }
    }
}

/// A line on stderr, prefixed `tokenwatch: `; a closed stderr is ignored (nothing else can be said).
pub fn say(line: &str) {
    // File names, S3 keys and AWS messages can neither drive the terminal nor start a line of their own
    // that looks like ours: a line break in them is shown as `\n`.
    let _ = writeln!(
        io::stderr().lock(),
        "tokenwatch: {}",
        tokenwatch_render::text::line(line)
    );
}

/// [`say`] for a text of our own that has several lines (an error and its fix): each line escaped.
pub fn say_lines(text: &str) {
    let mut err = io::stderr().lock();
    for l in text.lines() {
        let _ = writeln!(err, "tokenwatch: {}", tokenwatch_render::text::line(l));
    }
}

/// The exit status of a run that wrote its output: `code`, or 0 when the reader went away first.
pub fn finished(result: Result<ExitCode>) -> Result<ExitCode> {
    match result {
        Err(e) if e.downcast_ref::<ClosedPipe>().is_some() => Ok(ExitCode::SUCCESS),
        other => other,
    }
}
