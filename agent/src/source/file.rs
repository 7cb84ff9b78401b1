//! `file://` sources: a store directory on a mounted USB stick, NFS share or local mirror.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{blob_path, RawIndex, INDEX_PATHS};
use crate::error::{Error, Result};
use crate::format::Digest;
use crate::transport::{read_limited, BlobWriter, Limits};

/// A store directory.
#[derive(Debug, Clone)]
pub struct FileSource {
    root: PathBuf,
    limits: Limits,
    received: Arc<AtomicU64>,
}

impl FileSource {
    /// A store rooted at `root`.
    pub fn new(root: PathBuf, limits: &Limits) -> Self {
        FileSource {
            root,
            limits: limits.clone(),
            received: Arc::default(),
        }
    }

    /// Bytes read from this store so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn read_file(&self, rel: &str, limit: u64) -> Result<(Vec<u8>, String)> {
        let path = self.root.join(rel);
        let what = path.display().to_string();
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let bytes = read_limited(file, limit, &what)?;
        self.received.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok((bytes, what))
    }

    /// Reads index and signature, on the blocking thread pool (a USB stick or NFS share
    /// can take long to answer, and must not stall the runtime).
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        let source = self.clone();
        crate::blocking::run(move || source.read_index()).await
    }

    /// Copies a blob into `dest`, verifying it as it streams, on the blocking thread pool.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let (source, digest, dest) = (self.clone(), digest.clone(), dest.to_path_buf());
        crate::blocking::run(move || source.copy_blob(&digest, size, &dest)).await
    }

    fn read_index(&self) -> Result<RawIndex> {
        let (index, sig) = INDEX_PATHS;
        let (bytes, origin) = self.read_file(index, self.limits.max_index_bytes)?;
        let (signature, _) = self.read_file(sig, self.limits.max_signature_bytes)?;
        Ok(RawIndex {
            bytes,
            signature,
            origin,
            not_modified: false,
        })
    }

    fn copy_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        let path = self.root.join(blob_path(digest));
        let what = path.display().to_string();
        let mut file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let mut writer = BlobWriter::new(dest, digest, size, what)?;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = file.read(&mut buf).map_err(|e| Error::io(&path, e))?;
            if n == 0 {
                break;
            }
            self.received.fetch_add(n as u64, Ordering::Relaxed);
            writer.write(&buf[..n])?;
        }
        writer.finish(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn reads_index_and_verified_blobs_from_a_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("blobs/sha256")).expect("mkdir");
        std::fs::write(dir.path().join("index.json"), b"{}").expect("index");
        std::fs::write(dir.path().join("index.json.minisig"), b"sig").expect("sig");
        let digest = Digest::of(b"blob");
        std::fs::write(dir.path().join(blob_path(&digest)), b"blob").expect("blob");
        let source = FileSource::new(dir.path().to_path_buf(), &Limits::default());
        let raw = source.fetch_index().await.expect("index");
        assert_eq!(
            (raw.bytes.as_slice(), raw.signature.as_slice()),
            (&b"{}"[..], &b"sig"[..])
        );
        let dest = dir.path().join("copy");
        source.fetch_blob(&digest, 4, &dest).await.expect("blob");
        assert_eq!(std::fs::read(&dest).expect("copied"), b"blob");
        assert_eq!(source.bytes_received(), 2 + 3 + 4);
        let wrong = source.fetch_blob(&Digest::of(b"other"), 4, &dir.path().join("x")).await;
        assert!(wrong.is_err() && !dir.path().join("x").exists());
    }
}
