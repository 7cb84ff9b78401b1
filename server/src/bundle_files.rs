//! Reading the files of a bundle directory: exactly what is in it (no symlinks), keyed by
//! path relative to the bundle, for [`crate::bundle_spec`] and [`crate::helm`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Name of the optional per-bundle settings file (never part of the bundle's content).
pub const BUNDLE_FILE: &str = "bundle.yaml";

/// Collects `.yaml`/`.yml` files under `dir` (recursively), keyed by their path relative to
/// `root`, skipping `skip` directories and the top-level `bundle.yaml`. Symlinks are refused
/// so a bundle is exactly what is in its directory.
pub(crate) fn collect_manifests(root: &Path, dir: &Path, skip: &[PathBuf]) -> Result<BTreeMap<String, Vec<u8>>> {
    collect_files(root, dir, skip, |rel| rel.ends_with(".yaml") || rel.ends_with(".yml"))
}

/// Every regular file under `dir` but the top-level `bundle.yaml` (a Helm chart's files).
pub(crate) fn collect_all_files(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    collect_files(dir, dir, &[], |_| true)
}

/// Regular files under `dir` whose path relative to `root` is `wanted`, keyed by that path.
fn collect_files(
    root: &Path,
    dir: &Path,
    skip: &[PathBuf],
    wanted: impl Fn(&str) -> bool,
) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| drover_agent::Error::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| drover_agent::Error::io(&current, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| drover_agent::Error::io(&path, e))?;
            if kind.is_symlink() {
                return Err(Error::source(
                    &path,
                    "symlinks are not allowed in a bundle; copy the file instead",
                ));
            }
            if kind.is_dir() {
                if !skip.contains(&path) {
                    stack.push(path);
                }
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked paths are under the root")
                .to_string_lossy()
                .replace('\\', "/");
            if !kind.is_file() || !wanted(&rel) || rel == BUNDLE_FILE {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| drover_agent::Error::io(&path, e))?;
            files.insert(rel, bytes);
        }
    }
    Ok(files)
}
