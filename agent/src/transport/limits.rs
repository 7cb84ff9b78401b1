//! Size limits and timeouts applied while reading a store, each with a named default.

use std::time::Duration;

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
