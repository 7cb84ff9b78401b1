//! The publisher's error type.

use std::path::PathBuf;

/// Errors of the drover publisher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from the shared format/source/verify code.
    #[error(transparent)]
    Agent(#[from] drover_agent::Error),
    /// A file of the publish source is wrong.
    #[error("{path}: {message}")]
    Source {
        /// The offending file or directory.
        path: PathBuf,
        /// What was expected and what was found.
        message: String,
    },
    /// A key could not be read, made or used.
    #[error("key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A store failed verification; every problem is listed.
    #[error("store {store} failed verification:\n  {}", problems.join("\n  "))]
    Verification {
        /// The store.
        store: String,
        /// One line per problem.
        problems: Vec<String>,
    },
    /// A report directory or listing could not be read (`drover status`).
    #[error("reports {location}: {message}")]
    Reports {
        /// The directory or URL.
        location: String,
        /// What went wrong.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::Source`].
    pub fn source(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Source {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl Error {
    /// Shorthand for [`Error::Reports`].
    pub fn reports(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Reports {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Result type of the publisher.
pub type Result<T, E = Error> = std::result::Result<T, E>;
