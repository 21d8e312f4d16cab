//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Why a corpus could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A directory of the trail layout could not be created.
    #[error("cannot create directory {}; check that the path is writable and not a file", path.display())]
    CreateDir {
        /// The directory that could not be created.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A trail file could not be compressed or written.
    #[error("cannot write trail file {}; check free space and permissions", path.display())]
    WriteFile {
        /// The file that could not be written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// An [`Options`](crate::Options) value cannot produce a valid trail.
    #[error("invalid option {field}: {reason}")]
    InvalidOption {
        /// The offending field of `Options`.
        field: &'static str,
        /// What the field must look like.
        reason: &'static str,
    },
}
