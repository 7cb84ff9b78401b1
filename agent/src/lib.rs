//! The drover agent library.
//!
//! drover keeps a k3s cluster in the state declared by a *store*: a signed channel index
//! (`index.json` + `index.json.minisig`) and bundle tarballs named by their sha256
//! (`blobs/sha256/<hex>`). The agent runs one pipeline, one module per stage:
//!
//! ```text
//! source → verify → select → render → sink → state/report
//! ```
//!
//! * [`transport`] is the store-reading layer under [`source`] and [`oci`]: limits, the
//!   digest-checking blob writer, the bounded body reader and the one HTTP client factory.
//! * [`source`] reads index, signature and blobs from `http(s)://` and `file://` stores, with
//!   size limits enforced while streaming and every blob checked against its sha256.
//! * [`verify`] checks the minisign signature before the index is parsed, then expiry and
//!   anti-rollback, and is the only way to obtain a [`verify::VerifiedIndex`].
//! * [`select`] decides, for this cluster, which digest of which bundle applies and why.
//! * [`render`] reads a verified bundle tarball safely and substitutes `${cluster.*}`.
//! * [`sink`] hands rendered manifests to the cluster (the k3s auto-deploy directory).
//! * [`cycle`] runs the stages once, deciding for every sink what happens to each bundle.
//! * [`allow`] is the optional namespace allow-list (least privilege).
//! * [`state`] remembers what was applied, written atomically.
//!
//! The publisher (`drover` binary, server crate) reuses [`format`], [`verify`] and [`select`].
#![deny(missing_docs)]

pub mod allow;
mod blocking;
pub mod config;
pub mod cycle;
pub mod daemon;
pub mod error;
pub mod format;
pub mod fsutil;
pub mod keyfile;
pub mod listener;
pub mod metrics;
pub mod oci;
pub mod render;
pub mod report;
pub mod secret;
pub mod select;
pub mod sink;
pub mod source;
pub mod state;
pub mod status;
pub mod transport;
pub mod verify;

pub use error::Error;
