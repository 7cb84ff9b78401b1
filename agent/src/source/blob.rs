//! Bundle blobs for the cycle: a verified copy in the state directory's blob cache,
//! downloaded (and checked while it streams) from the source that gave the index, then
//! from the others, when the cache has none intact.
//!
//! Proof travels with the blob: what comes out is a [`VerifiedBlob`], which only a digest
//! check makes, and rendering accepts nothing else.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::Digest;
use crate::source::Source;
use crate::state;

/// A bundle blob on disk whose bytes hashed to its digest (and had its size) when it was
/// checked: streamed by a source against the digest of the signed index, or hashed again
/// by [`VerifiedBlob::check_file`]. Nothing else constructs one.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedBlob {
    path: PathBuf,
    digest: Digest,
}

impl VerifiedBlob {
    /// For the store-reading code, once it checked that the file at `path` holds exactly
    /// the blob `digest`.
    fn checked(path: PathBuf, digest: Digest) -> Self {
        VerifiedBlob { path, digest }
    }

    /// Hashes the file at `path` and returns it as verified when it is `size` bytes with
    /// sha256 `digest` (for tools and tests that hold a blob outside any store).
    pub fn check_file(path: PathBuf, digest: &Digest, size: u64) -> Result<Self> {
        let (actual, len) = Digest::of_file(&path).map_err(|e| Error::io(&path, e))?;
        let what = path.display().to_string();
        if len != size {
            return Err(Error::SizeMismatch {
                what,
                expected: size,
                actual: len,
            });
        }
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what,
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(VerifiedBlob::checked(path, actual))
    }

    /// Where the blob is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The digest it was checked against.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// Where one cycle fetches blobs from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlobFetch<'a> {
    /// Every configured source.
    pub(crate) sources: &'a [Source],
    /// The source whose index won: asked first.
    pub(crate) winner: &'a Source,
    /// The state directory holding the blob cache.
    pub(crate) state_dir: &'a Path,
    /// Counts blobs refused by verification (exported as a metric).
    pub(crate) verify_failures: &'a AtomicU64,
}

impl BlobFetch<'_> {
    /// A verified copy of blob `digest` in the cache, downloaded (from the winning source
    /// first, then the others) when missing or damaged.
    pub(crate) async fn fetch(&self, digest: &Digest, size: u64) -> Result<VerifiedBlob> {
        let dest = state::cached_blob(self.state_dir, digest);
        if let Some(cached) = cached_blob(dest.clone(), digest.clone(), size).await {
            state::touch_cached_blob(&dest);
            return Ok(cached);
        }
        crate::fsutil::ensure_dir(dest.parent().expect("cached blob paths have a parent"))?;
        let others = self.sources.iter().filter(|s| s.location() != self.winner.location());
        let mut last = None;
        for source in std::iter::once(self.winner).chain(others) {
            match source.fetch_blob(digest, size, &dest).await {
                // The source checked size and digest while it streamed.
                Ok(()) => return Ok(VerifiedBlob::checked(dest, digest.clone())),
                Err(e) => {
                    if e.is_verification_failure() {
                        self.verify_failures.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::warn!(source = %source.location(), blob = %digest, error = %e, "blob fetch failed");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("at least one source was tried"))
    }
}

/// The cached copy at `path` when it has exactly the size and digest the index gives
/// (hashed on the blocking pool: a bundle may be large).
async fn cached_blob(path: PathBuf, digest: Digest, size: u64) -> Option<VerifiedBlob> {
    crate::blocking::run(move || VerifiedBlob::check_file(path, &digest, size).ok()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_verified_only_with_its_own_size_and_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, b"bundle").expect("write");
        let digest = Digest::of(b"bundle");
        let blob = VerifiedBlob::check_file(path.clone(), &digest, 6).expect("intact");
        assert_eq!((blob.path(), blob.digest()), (path.as_path(), &digest));
        let other = VerifiedBlob::check_file(path.clone(), &Digest::of(b"other"), 6);
        assert!(matches!(other, Err(Error::DigestMismatch { .. })), "{other:?}");
        let short = VerifiedBlob::check_file(path, &digest, 7);
        assert!(matches!(short, Err(Error::SizeMismatch { .. })), "{short:?}");
    }
}
