//! Sources: where a store is read from. One type per transport, one file each, all with
//! the same three operations: read the index, read its signature, stream a blob.
//!
//! Nothing here trusts the bytes it returns. Size limits are enforced while reading, and
//! a blob is only moved into place after its size and sha256 match what the signed index
//! said (see [`BlobWriter`]).

pub mod blob;
mod file;
mod http;
mod oci;

pub use file::FileSource;
pub use http::HttpSource;
pub(crate) use http::{fetch_error, read_body_limited};
pub use oci::OciSource;

use std::path::Path;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::format::{Digest, BLOB_DIR, INDEX_FILE, SIGNATURE_FILE};

/// Default limit on the size of `index.json` (8 MiB: tens of thousands of bundles).
pub const DEFAULT_MAX_INDEX_BYTES: u64 = 8 << 20;
/// Default limit on the size of `index.json.minisig` (a real one is about 300 bytes).
pub const DEFAULT_MAX_SIGNATURE_BYTES: u64 = 16 << 10;
/// Default time allowed to establish a connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed between two reads of a response before it is abandoned.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed for a whole index or signature request, body included: a server
/// that trickles bytes just fast enough to beat the read timeout is still cut off.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time allowed for a whole blob download (blobs have no size limit, so this is
/// generous: about 900 MB at 2 Mbit/s).
pub const DEFAULT_BLOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Limits applied by every source.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted `index.json`, in bytes.
    pub max_index_bytes: u64,
    /// Largest accepted `index.json.minisig`, in bytes.
    pub max_signature_bytes: u64,
    /// Connection timeout (HTTP).
    pub connect_timeout: Duration,
    /// Idle timeout between reads (HTTP).
    pub read_timeout: Duration,
    /// Whole-request timeout for index and signature (HTTP).
    pub request_timeout: Duration,
    /// Whole-request timeout for one blob (HTTP).
    pub blob_timeout: Duration,
    /// CA certificates trusted for `https://` sources and the report URL in addition to the
    /// built-in Mozilla roots (a site's private CA). Not a limit, but a setting every HTTP
    /// client of the agent shares.
    pub extra_roots: Vec<reqwest::Certificate>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_index_bytes: DEFAULT_MAX_INDEX_BYTES,
            max_signature_bytes: DEFAULT_MAX_SIGNATURE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            blob_timeout: DEFAULT_BLOB_TIMEOUT,
            extra_roots: Vec::new(),
        }
    }
}

/// An index and its signature as read from a source: not yet trusted.
#[derive(Debug, Clone)]
pub struct RawIndex {
    /// Exact bytes of `index.json`.
    pub bytes: Vec<u8>,
    /// Exact bytes of `index.json.minisig`.
    pub signature: Vec<u8>,
    /// Where `index.json` was read from (for messages).
    pub origin: String,
    /// True when the source answered "not modified" (HTTP 304) and these are the bytes it
    /// served before: nothing but the conditional request crossed the wire.
    pub not_modified: bool,
}

/// A store location.
#[derive(Debug, Clone)]
pub enum Source {
    /// `http://` or `https://` base URL of a store.
    Http(HttpSource),
    /// `file://` path of a store directory (USB stick, NFS, rsync'd mirror).
    File(FileSource),
    /// `oci://HOST[:PORT]/REPOSITORY:CHANNEL`: a channel tag in an OCI registry.
    Oci(Box<OciSource>),
}

impl Source {
    /// Parses a source URL: `http://…`, `https://…`, `file:///absolute/path` or
    /// `oci://HOST[:PORT]/REPOSITORY:CHANNEL` (reached anonymously over HTTPS).
    pub fn parse(spec: &str, limits: &Limits) -> Result<Self> {
        Source::parse_with(spec, limits, &crate::oci::RegistryOptions::default())
    }

    /// [`Source::parse`], with how to reach and authenticate to OCI registries.
    pub fn parse_with(spec: &str, limits: &Limits, registry: &crate::oci::RegistryOptions) -> Result<Self> {
        if spec.starts_with("oci://") {
            let reference = crate::oci::Reference::parse(spec)?;
            return Ok(Source::Oci(Box::new(OciSource::new(reference, registry, limits)?)));
        }
        let url = url::Url::parse(spec).map_err(|e| {
            Error::Config(format!(
                "source {spec:?}: not a URL ({e}); use http(s)://… or file:///path"
            ))
        })?;
        match url.scheme() {
            "http" | "https" => Ok(Source::Http(HttpSource::new(url, limits)?)),
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|_| Error::Config(format!("source {spec:?}: file:// URL needs an absolute local path")))?;
                Ok(Source::File(FileSource::new(path, limits)))
            }
            other => Err(Error::Config(format!(
                "source {spec:?}: unsupported scheme {other:?} (supported: http, https, file, oci)"
            ))),
        }
    }

    /// The source's location, for messages and reports.
    pub fn location(&self) -> String {
        match self {
            Source::Http(s) => s.base().to_string(),
            Source::File(s) => format!("file://{}", s.root().display()),
            Source::Oci(s) => s.reference().to_string(),
        }
    }

    /// Reads `index.json` and `index.json.minisig`. An HTTP source asks conditionally
    /// (If-None-Match / If-Modified-Since) once it has read the index before.
    pub async fn fetch_index(&self) -> Result<RawIndex> {
        match self {
            Source::Http(s) => s.fetch_index().await,
            Source::File(s) => s.fetch_index(),
            Source::Oci(s) => s.fetch_index().await,
        }
    }

    /// Forgets the remembered index so the next read is unconditional: called when what it
    /// served did not verify (say an index read between a publisher's two renames, paired
    /// with the older signature), so one bad read is not replayed from cache by 304s.
    pub fn forget_index(&self) {
        match self {
            Source::Http(s) => s.forget_index(),
            Source::Oci(s) => s.forget_index(),
            Source::File(_) => {}
        }
    }

    /// Bytes received from this source since the agent started (bodies and, for HTTP,
    /// nothing of the headers).
    pub fn bytes_received(&self) -> u64 {
        match self {
            Source::Http(s) => s.bytes_received(),
            Source::File(s) => s.bytes_received(),
            Source::Oci(s) => s.bytes_received(),
        }
    }

    /// Streams the blob `digest` into `dest`, checking that it is exactly `size` bytes and
    /// hashes to `digest`. On any error `dest` is left untouched.
    pub async fn fetch_blob(&self, digest: &Digest, size: u64, dest: &Path) -> Result<()> {
        match self {
            Source::Http(s) => s.fetch_blob(digest, size, dest).await,
            Source::File(s) => s.fetch_blob(digest, size, dest),
            Source::Oci(s) => s.fetch_blob(digest, size, dest).await,
        }
    }
}

/// Relative path of a blob inside a store.
pub fn blob_path(digest: &Digest) -> String {
    format!("{BLOB_DIR}/{}", digest.hex())
}

/// Relative paths of the index and its signature.
pub(crate) const INDEX_PATHS: (&str, &str) = (INDEX_FILE, SIGNATURE_FILE);

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
}

/// Reads all of `reader` into memory, refusing more than `limit` bytes.
pub(crate) fn read_limited(reader: impl std::io::Read, limit: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    reader
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(what, e))?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_writer_refuses_wrong_digest_and_leaves_no_file() {
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
    fn blob_writer_stops_at_declared_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"ab").expect("under size");
        assert!(matches!(w.write(b"cd"), Err(Error::SizeMismatch { .. })));
    }

    #[test]
    fn blob_writer_accepts_matching_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let dest = dir.path().join("blob");
        let mut w = BlobWriter::new(&dest, &Digest::of(b"abc"), 3, "test".into()).expect("writer");
        w.write(b"a").expect("chunk");
        w.write(b"bc").expect("chunk");
        w.finish(&dest).expect("valid blob");
        assert_eq!(std::fs::read(&dest).expect("read"), b"abc");
    }

    #[test]
    fn read_limited_refuses_one_byte_too_many() {
        assert!(read_limited(&b"12345"[..], 5, "x").is_ok());
        assert!(matches!(
            read_limited(&b"123456"[..], 5, "x"),
            Err(Error::TooLarge { .. })
        ));
    }

    #[test]
    fn parse_refuses_unknown_schemes_and_relative_files() {
        let limits = Limits::default();
        assert!(Source::parse("ftp://host/x", &limits).is_err());
        assert!(Source::parse("not a url", &limits).is_err());
        assert!(Source::parse("file:///tmp/store", &limits).is_ok());
        assert!(Source::parse("http://127.0.0.1:1/store", &limits).is_ok());
    }
}
