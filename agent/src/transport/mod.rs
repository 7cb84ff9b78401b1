//! The store-reading layer: what every way of reading a store shares, below both the
//! sources ([`crate::source`]) and the OCI client ([`crate::oci`]), and importing neither.
//!
//! * [`Limits`]: the size limits and timeouts every read obeys, each with a named default.
//! * [`BlobWriter`]: receives a blob next to its destination, hashing as it goes, and moves
//!   it into place only when size and sha256 match the signed index.
//! * [`read_body`] (with [`read_body_limited`] and [`get_limited`] on top) and
//!   [`read_limited`]: the one bounded reader of a small body, for HTTP responses and for
//!   local files.
//! * [`ClientOptions`]: the one place a `reqwest::Client` is built (agent and publisher), and
//!   [`load_ca_bundle`], the one place a PEM CA bundle is read.

mod blob_writer;
mod body;
mod client;
mod limits;

pub use blob_writer::BlobWriter;
pub use body::{fetch_error, get_limited, read_body, read_body_limited, read_limited, BodyError, GetError};
pub use client::{
    load_ca_bundle, load_identity, ClientError, ClientOptions, PemError, AGENT_USER_AGENT, PUBLISHER_USER_AGENT,
};
pub use limits::{
    Limits, DEFAULT_BLOB_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_INDEX_BYTES, DEFAULT_MAX_SIGNATURE_BYTES,
    DEFAULT_READ_TIMEOUT, DEFAULT_REQUEST_TIMEOUT,
};
