//! Reading an existing store with the agent's own code, so `drover verify`, `drover targets`,
//! `drover diff` and `drover sync` see exactly what an agent would.

use std::path::PathBuf;

use drover_agent::source::{Limits, Source};
use drover_agent::verify::{verify_index, TrustedKeys, VerifiedIndex};
use time::OffsetDateTime;

use crate::error::Result;

/// Opens a store given as a directory path or an `http(s)://` / `file://` URL.
pub fn open(store: &str) -> Result<Source> {
    open_with(store, &drover_agent::oci::RegistryOptions::default())
}

/// [`open`], with how to reach and authenticate to OCI registries (`oci://` stores).
pub fn open_with(store: &str, registry: &drover_agent::oci::RegistryOptions) -> Result<Source> {
    let limits = Limits::default();
    if store.contains("://") {
        return Ok(Source::parse_with(store, &limits, registry)?);
    }
    let path = std::fs::canonicalize(store).map_err(|e| drover_agent::Error::io(store, e))?;
    Ok(Source::File(drover_agent::source::FileSource::new(path, &limits)))
}

/// Reads and verifies the store's index with `keys` at `now`.
pub async fn load_index(source: &Source, keys: &[PathBuf], now: OffsetDateTime) -> Result<VerifiedIndex> {
    let keys = TrustedKeys::load(keys)?;
    let raw = source.fetch_index().await?;
    Ok(verify_index(&raw, &keys, now, None)?)
}

/// How a target selects clusters: `clusterName=… clusterSelector=…`.
pub fn describe_target(t: &drover_agent::format::Target) -> String {
    let mut parts = Vec::new();
    if let Some(name) = &t.cluster_name {
        parts.push(format!("clusterName={name}"));
    }
    if let Some(sel) = &t.cluster_selector {
        parts.push(format!(
            "clusterSelector={}",
            serde_json::to_string(sel).expect("selectors serialise: plain data")
        ));
    }
    if let Some(variant) = &t.variant {
        parts.push(format!("({variant})"));
    }
    parts.join(" ")
}
