//! `file://` sources: a store directory on a mounted USB stick, NFS share or local mirror.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::{blob_path, read_limited, BlobWriter, Limits, RawIndex, INDEX_PATHS};
use crate::error::{Error, Result};
use crate::format::Digest;

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

    /// Reads index and signature.
    pub fn fetch_index(&self) -> Result<RawIndex> {
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

    /// Copies a blob into `dest`, verifying it as it streams.
    pub fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
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
