//! The drover publisher library, behind the `drover` binary.
//!
//! * [`keygen`] makes a minisign key pair;
//! * [`publish`] turns `bundles/<name>/` directories into reproducible, content-addressed
//!   bundle blobs and a signed channel index, writing blobs first and the index last;
//! * [`bundle_spec`] reads one `bundles/<name>/` directory (its `bundle.yaml` and, through
//!   [`bundle_files`], its files); [`kustomize`] and [`helm`] turn kustomizations and Helm
//!   charts into what a bundle holds: rendered YAML, and a k3s `HelmChart` object;
//! * [`secret_key`] loads the signing key, and [`store_write`] writes a store directory's
//!   index files last (for `drover publish` and `drover sync`);
//! * [`store`] opens and reads an existing store with the agent's own source and verify
//!   code; [`verify`] checks one whole (`drover verify`) and [`targets`] explains what one
//!   cluster would get from it (`drover targets`);
//! * [`diff`] compares two stores' indexes per bundle and target (`drover diff`);
//! * [`fleet_status`] aggregates the agents' status reports into a fleet view
//!   (`drover status`);
//! * [`sync`] copies a store between directories, `http(s)://` (read only) and other
//!   destinations: missing blobs first, the index and its signature last (`drover sync`);
//! * [`serve`] is a small static file server for a store (quick starts and tests);
//! * [`addon`] fills in the k3s add-on for one cluster (`drover addon`), and [`image`]
//!   builds the agent's OCI image without Docker (`drover image`).
//!
//! Each subcommand is one `run` function in its module; the binary only parses flags and
//! dispatches. Command modules are not used as libraries by one another: what two of them
//! share sits below both ([`store`], [`store_write`], [`http`], the crate-private
//! `parallel` and `runtime`).
//!
//! The format types come from the agent crate, so publisher and agent cannot drift apart.
#![deny(missing_docs)]

pub mod addon;
pub mod bundle_files;
pub mod bundle_spec;
pub mod diff;
pub mod error;
pub mod fleet_status;
pub mod helm;
pub mod http;
pub mod image;
pub mod keygen;
pub mod kustomize;
pub mod manifest_check;
pub mod oci_push;
pub mod pack;
mod parallel;
pub mod publish;
mod runtime;
pub mod secret_key;
pub mod serve;
pub mod store;
pub mod store_write;
pub mod sync;
pub mod targets;
pub mod verify;

pub use error::Error;
