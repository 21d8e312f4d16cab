//! Mergeable partials: what an [`Analyzer`] read from some of a trail's objects, in a form that can be
//! written out, sent elsewhere and merged with the partials of the other objects, so that work can be
//! spread over many machines (the scanner Lambda under Step Functions' Distributed Map) and still give
//! the report one analyzer would give over every object.
//!
//! A partial keeps each failure of its window as it came (failures are a few percent of records at most)
//! with its eventID, and each issuing call, rather than the summed-up sessions an analyzer keeps: sums
//! cannot be de-duplicated after the fact, and a failure delivered twice may be delivered in two objects
//! read by two scanners. Merging is one merge per field ([`Merge`]), so a new kind of state is a new field
//! with its own merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::analyze::{Analyzer, Window};
use crate::classify::{Failure, Issuance};
use crate::finding::Report;
use crate::time::Epoch;

/// The version of the serialised form; a partial of another version is refused, not misread.
pub const FORMAT: u32 = 1;

/// State that two partials each hold part of.
pub trait Merge {
    /// Folds `other` in. Merging is associative and, for the report it leads to, commutative.
    fn merge(&mut self, other: Self);
}

/// What some objects of a trail held, ready to be merged and reported on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// [`FORMAT`] when it was written.
    pub format: u32,
    /// How it was read: the same for every partial of one run.
    pub settings: Settings,
    /// Records read.
    pub counts: Counts,
    /// The failures of the window, each eventID once.
    pub failures: FailureLog,
    /// The issuing calls seen (any time: sessions issued before the window keep their lease).
    pub issuances: Issuances,
    /// Objects that could not be read in full, by name, with the reason.
    #[serde(default)]
    pub unread: Unread,
    /// Every temporary key's last use, for near misses.
    #[serde(default)]
    pub usage: crate::usage::SessionUse,
}

/// How the records of a partial were read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Which failures were counted.
    pub window: Window,
    /// Quiet time that ends an incident (seconds).
    pub cooldown: Epoch,
}

/// Records read, duplicates included.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records read (each value that could not be opened counts as one).
    pub records: u64,
    /// Records that could not be used.
    pub skipped_records: u64,
}

impl Merge for Counts {
    fn merge(&mut self, other: Self) {
        self.records += other.records;
        self.skipped_records += other.skipped_records;
    }
}

/// Failures: those with an eventID once each, those without as they came.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureLog {
    /// By eventID.
    pub by_event_id: BTreeMap<String, Failure>,
    /// Failures without an eventID (never de-duplicated, as in [`Analyzer`]).
    pub without_event_id: Vec<Failure>,
}

impl FailureLog {
    /// Adds a failure; a second one with the same eventID is dropped.
    pub fn insert(&mut self, f: Failure) {
        match &f.event_id {
            Some(id) => {
                if !self.by_event_id.contains_key(id) {
                    self.by_event_id.insert(id.clone(), f);
                }
            }
            None => self.without_event_id.push(f),
        }
    }

    /// Failures held.
    pub fn len(&self) -> usize {
        self.by_event_id.len() + self.without_event_id.len()
    }

    /// None held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl IntoIterator for FailureLog {
    type Item = Failure;
    type IntoIter = std::iter::Chain<
        std::collections::btree_map::IntoValues<String, Failure>,
        std::vec::IntoIter<Failure>,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.by_event_id.into_values().chain(self.without_event_id)
    }
}

impl Merge for FailureLog {
    fn merge(&mut self, other: Self) {
        for (id, f) in other.by_event_id {
            self.by_event_id.entry(id).or_insert(f);
        }
        self.without_event_id.extend(other.without_event_id);
    }
}

/// Issuing calls as they came (copies of one call are combined when they are taken in).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Issuances(pub Vec<Issuance>);

impl Merge for Issuances {
    fn merge(&mut self, other: Self) {
        self.0.extend(other.0);
    }
}

/// Objects (or folders) not read in full: `s3://bucket/key` to the reason.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Unread(pub BTreeMap<String, String>);

impl Merge for Unread {
    fn merge(&mut self, other: Self) {
        for (name, reason) in other.0 {
            self.0.entry(name).or_insert(reason);
        }
    }
}

/// Why a serialised partial was refused.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    /// Not JSON of a partial.
    #[error("not a tokenwatch partial: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another version of tokenwatch.
    #[error("a partial of format {found}, this tokenwatch reads format {FORMAT}: deploy the same version")]
    Format {
        /// Its format.
        found: u32,
    },
    /// Read with other settings than the partial it is merged with.
    #[error("partials read with different windows or cool-downs cannot be merged")]
    Settings,
}

impl Partial {
    /// An empty partial for these settings.
    pub fn empty(settings: Settings) -> Partial {
        Partial {
            format: FORMAT,
            settings,
            counts: Counts::default(),
            failures: FailureLog::default(),
            issuances: Issuances::default(),
            unread: Unread::default(),
            usage: Default::default(),
        }
    }

    /// Folds another partial of the same run in. Refused when it was read with other settings.
    pub fn merge(&mut self, other: Partial) -> Result<(), PartialError> {
        if other.settings != self.settings {
            return Err(PartialError::Settings);
        }
        let Partial {
            format: _,
            settings: _,
            counts,
            failures,
            issuances,
            unread,
            usage,
        } = other;
        self.counts.merge(counts);
        self.failures.merge(failures);
        self.issuances.merge(issuances);
        self.unread.merge(unread);
        self.usage.merge(usage);
        Ok(())
    }

    /// The report over every record the partial holds.
    pub fn report(self) -> Report {
        let mut analyzer = Analyzer::with_cooldown(self.settings.window, self.settings.cooldown);
        analyzer.absorb(self);
        analyzer.report()
    }

    /// The serialised form.
    pub fn to_json(&self) -> Vec<u8> {
        // A partial is plain data (strings, numbers, maps keyed by strings): serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A partial from its serialised form.
    pub fn from_json(bytes: &[u8]) -> Result<Partial, PartialError> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let version: Version = serde_json::from_slice(bytes)?;
        if version.format != FORMAT {
            return Err(PartialError::Format {
                found: version.format,
            });
        }
        Ok(serde_json::from_slice(bytes)?)
    }
}
