//! The tokio runtime the commands that read stores or networks run on.

use crate::error::{Error, Result};

/// A multi-threaded runtime with I/O and timers, started when a command needs one.
pub(crate) fn start() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })
}
