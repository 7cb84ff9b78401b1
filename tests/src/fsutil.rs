//! Files and directories: the repository root, copies, byte-for-byte snapshots and hashes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The repository root (parent of tests/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Recursively copies a directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every file under `dir` (relative path → bytes); empty if `dir` is missing.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    files
}

/// Writes a [`snapshot`] back under `dir`.
pub fn restore(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (rel, bytes) in files {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

/// Lower-case hex sha256 of `bytes` (as blob file names and digests carry it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// What changes when a file is written or replaced: its inode (a rename puts a new one in
/// place), its mtime (a write) and its ctime (a write, a chmod, a rename onto it), to the
/// nanosecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Inode number.
    pub ino: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

/// The [`Stamp`] of `path`.
pub fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ns = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    Stamp {
        ino: meta.ino(),
        mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
        ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
    }
}

/// The [`Stamp`] of every file and directory under `dir` (relative path → stamp; `""`
/// is `dir` itself, whose mtime moves when an entry is created, renamed or removed).
pub fn stamps(dir: &Path) -> BTreeMap<String, Stamp> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rel = d.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
        out.insert(rel, stamp(&d));
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, stamp(&entry.path()));
            }
        }
    }
    out
}

/// Asserts `text` is a dir-sink tombstone for `bundle`: at least one line, every line a
/// comment, naming the bundle (an empty or truncated file is not a tombstone).
pub fn assert_tombstone(text: &str, bundle: &str) {
    assert!(!text.trim().is_empty(), "a tombstone is not empty");
    assert!(text.ends_with('\n'), "a tombstone ends its last line:\n{text}");
    assert!(
        text.lines().all(|l| l.starts_with('#')),
        "a tombstone holds comments only:\n{text}"
    );
    assert!(
        text.contains(&format!("bundle {bundle} ")),
        "the tombstone names bundle {bundle}:\n{text}"
    );
}
