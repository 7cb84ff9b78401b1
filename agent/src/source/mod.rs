//! Sources: where a store is read from. One type per transport, one file each, all with
//! the same three operations: read the index, read its signature, stream a blob.
//!
//! Nothing here trusts the bytes it returns. Size limits are enforced while reading, and
//! a blob is only moved into place after its size and sha256 match what the signed index
//! said (see [`crate::transport::BlobWriter`]).

pub mod blob;
mod file;
mod http;
mod oci;

pub use file::FileSource;
pub use http::HttpSource;
pub use oci::OciSource;

/// The limits every source obeys live in the store-reading layer; named here too, where
/// callers configure sources.
pub use crate::transport::{
    Limits, DEFAULT_BLOB_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_INDEX_BYTES, DEFAULT_MAX_SIGNATURE_BYTES,
    DEFAULT_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};

use std::path::Path;

use crate::error::{ConfigError, Result};
use crate::format::{Digest, BLOB_DIR, INDEX_FILE, SIGNATURE_FILE};

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
        let url = url::Url::parse(spec).map_err(|source| ConfigError::SourceNotUrl {
            spec: spec.to_string(),
            source,
        })?;
        match url.scheme() {
            "http" | "https" => Ok(Source::Http(HttpSource::new(url, limits)?)),
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| ConfigError::SourceNotAbsolute { spec: spec.to_string() })?;
                Ok(Source::File(FileSource::new(path, limits)))
            }
            other => Err(ConfigError::SourceScheme {
                spec: spec.to_string(),
                scheme: other.to_string(),
            }
            .into()),
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
            Source::File(s) => s.fetch_index().await,
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
            Source::File(s) => s.fetch_blob(digest, size, dest).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_refuses_unknown_schemes_and_relative_files() {
        let limits = Limits::default();
        assert!(Source::parse("ftp://host/x", &limits).is_err());
        assert!(Source::parse("not a url", &limits).is_err());
        assert!(Source::parse("file:///tmp/store", &limits).is_ok());
        assert!(Source::parse("http://127.0.0.1:1/store", &limits).is_ok());
    }
}
