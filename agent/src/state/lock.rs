//! One agent per state directory: an exclusive advisory lock (`flock`) on a file inside it,
//! held for the agent's whole life. Two agents on one directory would overwrite each
//! other's record of what is applied and prune each other's blobs; the second one is
//! refused at start with the holder's pid, which the holder writes into the lock file.
//!
//! The kernel drops the lock when its holder dies, so a killed agent never leaves the
//! directory locked; a clean exit also removes the file, so the directory holds only state.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

/// File name of the lock inside the state directory.
pub const LOCK_FILE: &str = "lock";

/// How often taking the lock is tried again when the file it locked was removed (by a
/// holder exiting) between opening and locking it.
const REPLACED_RETRIES: usize = 8;

/// The held lock of a state directory; released (and its file removed) on drop.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    /// Locks state directory `dir` (creating it when missing) for this process, or fails with
    /// [`Error::StateLocked`] naming the directory and the holder's pid.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        fsutil::ensure_dir(dir)?;
        let path = dir.join(LOCK_FILE);
        for _ in 0..REPLACED_RETRIES {
            let mut file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::io(&path, e))?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(Error::StateLocked {
                        dir: dir.to_path_buf(),
                        pid: holder_pid(&mut file),
                    })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
            }
            if still_at(&file, &path) {
                record_pid(&mut file, &path);
                return Ok(StateLock { file, path });
            }
        }
        Err(Error::StateLocked {
            dir: dir.to_path_buf(),
            pid: None,
        })
    }

    /// Where the lock file is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Removed while still locked: an agent that opened this file meanwhile sees, once it
        // gets the lock, that the path no longer names it, and opens the path again.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Whether `path` still names the file `file` is open on (a holder that exited removed it).
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(named)) => held.dev() == named.dev() && held.ino() == named.ino(),
        _ => false,
    }
}

/// Writes this process's pid into the lock file. Best effort: without it the directory is
/// locked all the same, and a refused agent says the holder's pid is unknown.
fn record_pid(file: &mut File, path: &Path) {
    let written = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "could not write the pid into the state directory's lock file");
    }
}

/// The pid the holder wrote, if it wrote one.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_state_directory_is_refused_with_the_holders_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let held = StateLock::acquire(&state).expect("first lock");
        let pid = std::fs::read_to_string(held.path()).expect("lock file");
        assert_eq!(pid.trim(), std::process::id().to_string());
        match StateLock::acquire(&state) {
            Err(Error::StateLocked { dir, pid }) => {
                assert_eq!((dir, pid), (state.clone(), Some(std::process::id())));
            }
            other => panic!("expected StateLocked, got {other:?}"),
        }
    }

    #[test]
    fn a_released_lock_leaves_no_file_and_can_be_taken_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(StateLock::acquire(dir.path()).expect("first lock"));
        assert!(!dir.path().join(LOCK_FILE).exists(), "lock file removed on release");
        let again = StateLock::acquire(dir.path()).expect("lock after release");
        assert!(again.path().exists());
    }

    #[test]
    fn a_lock_file_left_by_a_killed_agent_does_not_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(LOCK_FILE), "4194305\n").expect("stale lock file");
        let lock = StateLock::acquire(dir.path()).expect("a stale file is no lock");
        let pid = std::fs::read_to_string(lock.path()).expect("lock file");
        assert_eq!(pid.trim(), std::process::id().to_string(), "pid rewritten");
    }
}
