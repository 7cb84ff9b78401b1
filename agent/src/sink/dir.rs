//! The `dir` sink: one `drover-<bundle>.yaml` per bundle in the k3s auto-deploy directory
//! (`/var/lib/rancher/k3s/server/manifests`).
//!
//! k3s's deploy controller applies a file when it appears or its content changes, and
//! prunes objects that disappear from a file it has applied; deleting the *file* deletes
//! nothing. So removal is a *tombstone*: the file is rewritten with comments only, k3s
//! applies the now-empty object set and deletes what it had created from that file, and the
//! tombstone stays so the deletion is never undone by a restart. Writing is atomic
//! (temporary file + rename) and skipped when the bytes are already there, so k3s is not
//! woken for nothing. The agent only ever touches files named `drover-*.yaml`.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::{BundleName, Digest};
use crate::fsutil;
use crate::render::Rendered;

/// A k3s manifests directory.
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
}

impl DirSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(dir: PathBuf) -> Self {
        DirSink { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `bundle`.
    pub fn file_for(&self, bundle: &BundleName) -> PathBuf {
        self.dir.join(format!("drover-{bundle}.yaml"))
    }

    /// Whether the bundle's file exists with exactly the content hashed as `sha256`.
    pub fn is_in_place(&self, bundle: &BundleName, sha256: &Digest) -> bool {
        std::fs::read(self.file_for(bundle)).is_ok_and(|bytes| &Digest::of(&bytes) == sha256)
    }

    /// Writes the bundle's manifests; returns the sha256 of the file.
    pub fn apply(&self, bundle: &BundleName, digest: &Digest, rendered: &Rendered) -> Result<Digest> {
        let mut text = format!(
            "# Managed by drover-agent: bundle {bundle}, blob {digest}.\n\
             # Local edits are overwritten on the next cycle; change the bundle and re-publish instead.\n"
        );
        for doc in &rendered.documents {
            text.push_str("---\n");
            text.push_str(doc);
        }
        self.write(bundle, text.as_bytes())
    }

    /// Replaces the bundle's file by a tombstone so that k3s prunes its objects; returns
    /// the sha256 of the tombstone.
    pub fn remove(&self, bundle: &BundleName, reason: &str) -> Result<Digest> {
        let text = format!(
            "# Managed by drover-agent: bundle {bundle} was removed from this cluster ({reason}).\n\
             # This file holds no objects on purpose: k3s deletes the objects it applied from it.\n\
             # Keep it; deleting the file would not delete anything in the cluster.\n"
        );
        self.write(bundle, text.as_bytes())
    }

    fn write(&self, bundle: &BundleName, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::of(bytes);
        let path = self.file_for(bundle);
        if std::fs::read(&path).is_ok_and(|old| old == bytes) {
            return Ok(digest);
        }
        fsutil::ensure_dir(&self.dir)?;
        fsutil::write_atomic(&path, bytes)?;
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(docs: &[&str]) -> Rendered {
        Rendered {
            documents: docs.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn writes_one_multi_document_file_per_bundle() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().join("manifests"));
        let name = BundleName::parse("web").expect("name");
        let sha = sink
            .apply(&name, &Digest::of(b"blob"), &rendered(&["a: 1\n", "b: 2\n"]))
            .expect("apply");
        let text = std::fs::read_to_string(dir.path().join("manifests/drover-web.yaml")).expect("read");
        assert!(text.ends_with("---\na: 1\n---\nb: 2\n"), "{text}");
        assert!(sink.is_in_place(&name, &sha));
    }

    #[test]
    fn unchanged_content_is_not_rewritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let name = BundleName::parse("web").expect("name");
        sink.apply(&name, &Digest::of(b"blob"), &rendered(&["a: 1\n"]))
            .expect("apply");
        use std::os::unix::fs::MetadataExt;
        let path = sink.file_for(&name);
        let before = std::fs::metadata(&path).expect("stat").ino();
        sink.apply(&name, &Digest::of(b"blob"), &rendered(&["a: 1\n"]))
            .expect("apply");
        let after = std::fs::metadata(&path).expect("stat").ino();
        assert_eq!(
            before, after,
            "an identical rewrite would replace the file and wake k3s"
        );
    }

    #[test]
    fn removal_leaves_a_tombstone_without_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sink = DirSink::new(dir.path().to_path_buf());
        let name = BundleName::parse("web").expect("name");
        sink.apply(&name, &Digest::of(b"blob"), &rendered(&["a: 1\n"]))
            .expect("apply");
        sink.remove(&name, "no target matches").expect("remove");
        let text = std::fs::read_to_string(sink.file_for(&name)).expect("tombstone");
        assert!(text.lines().all(|l| l.starts_with('#')), "{text}");
    }
}
