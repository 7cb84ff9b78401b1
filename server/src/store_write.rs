//! Writing the index files of a store directory, shared by `drover publish` and
//! `drover sync` to a directory: the last step of both, after every blob is in place.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use drover_agent::format::{INDEX_FILE, SIGNATURE_FILE};

use crate::error::{Error, Result};

/// Writes `index.json` and `index.json.minisig` of `root`, skipping a file whose bytes are
/// already right. Both new files are complete and flushed before either is renamed into
/// place, so the window in which a reader can pair the new index with the old signature
/// is two renames long.
pub fn replace_index_files(root: &Path, index: &[u8], signature: &[u8]) -> Result<()> {
    let index_path = root.join(INDEX_FILE);
    let signature_path = root.join(SIGNATURE_FILE);
    let write_index = std::fs::read(&index_path).ok().as_deref() != Some(index);
    let write_signature = write_index || std::fs::read(&signature_path).ok().as_deref() != Some(signature);
    let index_tmp = if write_index {
        let previous = std::fs::metadata(&index_path).and_then(|m| m.modified()).ok();
        Some(complete_temp_file(
            root,
            index,
            index_mtime(previous, SystemTime::now()),
        )?)
    } else {
        None
    };
    let signature_tmp = if write_signature {
        Some(complete_temp_file(root, signature, None)?)
    } else {
        None
    };
    if let Some(tmp) = index_tmp {
        tmp.persist(&index_path)
            .map_err(|e| drover_agent::Error::io(&index_path, e.error))?;
    }
    if let Some(tmp) = signature_tmp {
        tmp.persist(&signature_path)
            .map_err(|e| drover_agent::Error::io(&signature_path, e.error))?;
    }
    if write_index || write_signature {
        drover_agent::fsutil::sync_dir(root)?;
    }
    Ok(())
}

/// A temporary file in `dir` holding `bytes`, readable by all (web servers serve it),
/// with modification time `mtime` if given, flushed to disk.
fn complete_temp_file(dir: &Path, bytes: &[u8], mtime: Option<SystemTime>) -> Result<tempfile::NamedTempFile> {
    let io = |path: &Path, e| Error::from(drover_agent::Error::io(path, e));
    let mut tmp = tempfile::Builder::new()
        .prefix(".drover-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| io(dir, e))?;
    tmp.write_all(bytes).map_err(|e| io(tmp.path(), e))?;
    if let Some(mtime) = mtime {
        tmp.as_file().set_modified(mtime).map_err(|e| io(tmp.path(), e))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(|e| io(tmp.path(), e))?;
    }
    tmp.as_file().sync_all().map_err(|e| io(tmp.path(), e))?;
    Ok(tmp)
}

/// The modification time a new `index.json` must get, when `now` would not do: web servers
/// derive `ETag` and `Last-Modified` from the mtime in whole seconds and the size (nginx:
/// `"<mtime hex>-<size hex>"`), so a new index of the same size written within the same
/// second as the old one would be announced as "304 Not Modified" to polling agents.
/// `None` when `now` is already a later second than `previous`.
pub fn index_mtime(previous: Option<SystemTime>, now: SystemTime) -> Option<SystemTime> {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let previous = previous?;
    if secs(now) > secs(previous) {
        None
    } else {
        Some(UNIX_EPOCH + Duration::from_secs(secs(previous) + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_mtime_moves_past_the_previous_second_only_when_needed() {
        let t = |s: u64, ms: u64| UNIX_EPOCH + Duration::from_millis(s * 1000 + ms);
        assert_eq!(index_mtime(None, t(100, 0)), None);
        assert_eq!(index_mtime(Some(t(99, 900)), t(100, 0)), None);
        assert_eq!(index_mtime(Some(t(100, 100)), t(100, 900)), Some(t(101, 0)));
        assert_eq!(index_mtime(Some(t(105, 0)), t(100, 0)), Some(t(106, 0)));
    }

    #[test]
    fn replaces_both_files_and_leaves_identical_ones_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        replace_index_files(dir.path(), b"index v1", b"sig v1").expect("first write");
        let index = dir.path().join(INDEX_FILE);
        assert_eq!(std::fs::read(&index).expect("index"), b"index v1");
        let written = std::fs::metadata(&index).and_then(|m| m.modified()).expect("mtime");
        replace_index_files(dir.path(), b"index v1", b"sig v1").expect("same bytes");
        let kept = std::fs::metadata(&index).and_then(|m| m.modified()).expect("mtime");
        assert_eq!(written, kept, "an index with the same bytes is not rewritten");
        replace_index_files(dir.path(), b"index v2", b"sig v2").expect("new version");
        assert_eq!(std::fs::read(&index).expect("index"), b"index v2");
        assert_eq!(std::fs::read(dir.path().join(SIGNATURE_FILE)).expect("sig"), b"sig v2");
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 2, "no temporary file is left behind");
    }
}
