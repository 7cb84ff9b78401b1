//! The digest-checking writer every blob download goes through.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::format::Digest;

/// Accumulates a blob into a temporary file next to its destination while hashing it; the
/// file is renamed into place only if size and digest match. Dropping it without
/// [`BlobWriter::finish`] discards the bytes.
pub struct BlobWriter {
    file: std::io::BufWriter<tempfile::NamedTempFile>,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    size: u64,
    what: String,
}

impl BlobWriter {
    /// Prepares to receive blob `expected` of `size` bytes, read from `what`, for `dest`.
    pub fn new(dest: &Path, expected: &Digest, size: u64, what: String) -> Result<Self> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        let file = tempfile::Builder::new()
            .prefix(".blob-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(BlobWriter {
            file: std::io::BufWriter::with_capacity(64 << 10, file),
            hasher: Sha256::new(),
            written: 0,
            expected: expected.clone(),
            size,
            what,
        })
    }

    /// Adds a chunk; fails as soon as the blob grows past its declared size.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        use std::io::Write;
        self.written += chunk.len() as u64;
        if self.written > self.size {
            return Err(Error::SizeMismatch {
                what: self.what.clone(),
                expected: self.size,
                actual: self.written,
            });
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(|e| Error::io(self.file.get_ref().path(), e))
    }

    /// Checks size and digest, then moves the blob to `dest`.
    pub fn finish(self, dest: &Path) -> Result<()> {
        if self.written != self.size {
            return Err(Error::SizeMismatch {
                what: self.what,
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.expected {
            return Err(Error::DigestMismatch {
                what: self.what,
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let file = self.file.into_inner().map_err(|e| Error::io(dest, e.into_error()))?;
        crate::fsutil::persist(file, dest)
    }

    /// [`BlobWriter::finish`] on tokio's blocking pool, for network transports: persisting
    /// fsyncs the file and its directory, which must not stall the runtime.
    pub async fn finish_off_runtime(self, dest: &Path) -> Result<()> {
        let dest = dest.to_path_buf();
        crate::blocking::run(move || self.finish(&dest)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_wrong_digest_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"good"), 4, "test".into()).expect("writer");
        w.write(b"evil").expect("same size accepted while streaming");
        let err = w.finish(&dest).expect_err("digest mismatch");
        assert!(matches!(err, Error::DigestMismatch { .. }), "{err}");
        assert!(!dest.exists());
        assert_eq!(
            std::fs::read_dir(dir.path()).expect("ls").count(),
            0,
            "temp file removed"
        );
    }

    #[test]
    fn stops_at_declared_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"ab").expect("under size");
        assert!(matches!(w.write(b"cd"), Err(Error::SizeMismatch { .. })));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn finishes_off_the_runtime_with_the_same_checks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"abc").expect("chunk");
        w.finish_off_runtime(&dest).await.expect("valid blob");
        assert_eq!(std::fs::read(&dest).expect("read"), b"abc");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"xyz").expect("chunk");
        assert!(matches!(
            w.finish_off_runtime(&dest).await,
            Err(Error::DigestMismatch { .. })
        ));
    }

    #[test]
    fn accepts_matching_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"a").expect("chunk");
        w.write(b"bc").expect("chunk");
        w.finish(&dest).expect("valid blob");
        assert_eq!(std::fs::read(&dest).expect("read"), b"abc");
    }
}
