//! A Kubernetes API test double: an HTTP server that speaks enough of the real
//! Kubernetes API for drover's `kube` sink and for stock `kubectl`, so that the sink can
//! be tested on a machine without a kube-apiserver, against something an independent
//! client (kubectl) also accepts.
//!
//! It serves discovery and a minimal OpenAPI v3 ([`discovery`]), namespaced and
//! cluster-scoped CRUD with label and field selectors ([`store`], [`selector`]),
//! server-side apply with managedFields ownership and conflicts ([`apply`]), the other
//! PATCH flavours ([`patch`]), `/status` and `/scale` subresources, CRDs that add kinds
//! ([`crd`]), per-kind immutable fields and defaults ([`strategy`]), an optional
//! "everything becomes ready" controller ([`controller`]) and watches ([`watch`]).
//! docs/development.md says what it does not model.
//!
//! Run it as the `kube-api-double` binary (it prints `listening on http://ADDR` first),
//! or embed it with [`serve`].
#![deny(missing_docs)]

pub mod apply;
pub mod controller;
pub mod crd;
pub mod discovery;
pub mod error;
pub mod ops;
pub mod patch;
pub mod resources;
pub mod routes;
pub mod selector;
pub mod store;
pub mod strategy;
pub mod watch;

pub use ops::Config;
pub use routes::{router, App};

/// Serves the API on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: tokio::net::TcpListener, config: Config) -> std::io::Result<()> {
    axum::serve(listener, router(App::new(config))).await
}
