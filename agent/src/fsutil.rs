//! Crash-safe file replacement shared by the sink, the state and the publisher.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Replaces `path` with `bytes` atomically: the bytes go to a temporary file in the same
/// directory, are flushed to disk, and the file is renamed over `path`. A reader sees the
/// old content or the new, never a mix; a crash leaves at most a stray `.tmp` file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    persist(temp_with(path, bytes)?, path)
}

/// A temporary file next to `path` holding `bytes`.
fn temp_with(path: &Path, bytes: &[u8]) -> Result<tempfile::NamedTempFile> {
    let mut tmp = temp_beside(path)?;
    tmp.write_all(bytes).map_err(|e| Error::io(tmp.path(), e))?;
    Ok(tmp)
}

/// An empty temporary file in the directory of `path` (named `.drover-*.tmp`, which k3s
/// and the agent's own listings ignore), to be [`persist`]ed over `path` once written.
/// It is removed if dropped before that.
pub fn temp_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = parent_dir(path);
    tempfile::Builder::new()
        .prefix(".drover-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Removes the temporary files [`temp_beside`] left in `dir` (a process killed between
/// creating one and renaming it cannot remove it); returns how many went. Only one agent
/// may write a directory, so any such file there is a leftover. A missing `dir` has none.
pub fn remove_temp_files(dir: &Path) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".drover-") && name.ends_with(".tmp") {
            let path = entry.path();
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }
    Ok(removed)
}

/// Replaces `path` with `bytes` atomically like [`write_atomic`], but without forcing the
/// bytes to disk: for derived files rewritten often (the status report), where a power cut
/// may lose the last version but a reader must still never see half of one.
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_with(path, bytes)?;
    set_readable(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Flushes `tmp` to disk and renames it over `path`, then syncs the directory so the
/// rename itself survives a power cut.
pub fn persist(tmp: tempfile::NamedTempFile, path: &Path) -> Result<()> {
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    set_readable(tmp.path())?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    sync_dir(parent_dir(path))
}

/// tempfile creates files with mode 0600; published and applied files are meant to be read
/// by other users (nginx, k3s), so they get the usual 0644.
fn set_readable(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).map_err(|e| Error::io(path, e))?;
    }
    Ok(())
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes `dir`'s entries (a rename in it) to disk; a no-op off Unix.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// Creates `dir` and its parents if missing.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.yaml");
        write_atomic(&path, b"one").expect("first write");
        write_atomic(&path, b"two").expect("second write");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.yaml")]);
    }

    #[test]
    fn leftover_temporary_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let leftover = temp_beside(&dir.path().join("f.yaml")).expect("temp");
        let (_, leftover) = leftover.keep().expect("keep, as a killed process would");
        for other in ["drover-web.yaml", ".hidden", "x.tmp"] {
            std::fs::write(dir.path().join(other), b"keep").expect("write");
        }
        assert_eq!(remove_temp_files(dir.path()).expect("clean"), 1);
        assert!(!leftover.exists());
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 3);
        assert_eq!(remove_temp_files(&dir.path().join("missing")).expect("none"), 0);
    }
}
