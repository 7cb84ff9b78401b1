//! Bundle blobs for the cycle: a verified copy in the state directory's blob cache,
//! downloaded (and checked while it streams) from the source that gave the index, then
//! from the others, when the cache has none intact.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Result;
use crate::format::Digest;
use crate::source::Source;
use crate::state;

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
    /// Returns the path of a verified copy of blob `digest` in the cache, downloading it
    /// (from the winning source first, then the others) when missing or damaged.
    pub(crate) async fn fetch(&self, digest: &Digest, size: u64) -> Result<PathBuf> {
        let dest = state::cached_blob(self.state_dir, digest);
        if cached_blob_is_intact(dest.clone(), digest.clone(), size).await {
            state::touch_cached_blob(&dest);
            return Ok(dest);
        }
        crate::fsutil::ensure_dir(dest.parent().expect("cached blob paths have a parent"))?;
        let others = self.sources.iter().filter(|s| s.location() != self.winner.location());
        let mut last = None;
        for source in std::iter::once(self.winner).chain(others) {
            match source.fetch_blob(digest, size, &dest).await {
                Ok(()) => return Ok(dest),
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

/// Whether the cached copy at `path` has exactly the size and digest the index gives
/// (hashed on the blocking pool: a bundle may be large).
async fn cached_blob_is_intact(path: PathBuf, digest: Digest, size: u64) -> bool {
    crate::blocking::run(move || Digest::of_file(&path).is_ok_and(|(d, n)| n == size && d == digest)).await
}
