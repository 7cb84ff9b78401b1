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
    /// `drover sync` will not write to its destination: it is read only, missing, or holds
    /// an index that must not be replaced (newer version, other channel, …).
    #[error("{destination}: {message}")]
    Destination {
        /// The destination as given.
        destination: String,
        /// Why, naming the versions or channels involved.
        message: String,
    },
    /// `drover sync` stopped while copying blobs; what it had staged was discarded and the
    /// destination is as it was.
    #[error("sync to {destination} stopped, nothing changed there")]
    SyncStopped {
        /// The destination.
        destination: String,
        /// What went wrong (a blob that failed verification, a network error, …).
        #[source]
        source: Box<Error>,
    },
    /// A report directory or listing could not be read (`drover status`).
    #[error("reports {location}: {message}")]
    Reports {
        /// The directory or URL.
        location: String,
        /// What went wrong.
        message: String,
    },
    /// A command-line value is wrong (`drover addon`, `drover image`).
    #[error("{field}: {message}")]
    Input {
        /// The flag or field, e.g. `--cluster-name`.
        field: String,
        /// What was expected and what was found.
        message: String,
    },
    /// The async runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime {
        /// Why (threads, file descriptors).
        #[source]
        source: std::io::Error,
    },
    /// `drover serve` could not listen on its address, or stopped serving.
    #[error("cannot listen on {address}")]
    Listen {
        /// The address as given.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// Writing a command's output to stdout failed (a closed pipe, a full disk).
    #[error("cannot write the output")]
    Output {
        /// The write error.
        #[source]
        source: std::io::Error,
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

/// `error` and its causes on one line, `outer: inner: innermost`, as the CLI prints them.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cause = e.source();
    }
    out
}

/// Result type of the publisher.
pub type Result<T, E = Error> = std::result::Result<T, E>;
