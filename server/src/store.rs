//! Reading an existing store with the agent's own code: `drover verify` and
//! `drover targets` see exactly what an agent would.

use std::collections::BTreeSet;
use std::path::PathBuf;

use drover_agent::format::Digest;
use drover_agent::render::{check_tarball, Limits as RenderLimits};
use drover_agent::select::{first_match, plan, rollout_bucket, Cluster, Decision};
use drover_agent::source::{Limits, Source};
use drover_agent::verify::{verify_index, TrustedKeys, VerifiedIndex};
use time::OffsetDateTime;

use crate::error::{Error, Result};

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

/// Checks signature, expiry, and the size, sha256 and tarball rules of every referenced
/// blob. Returns the verified index, or every problem found.
pub async fn verify_store(store: &str, keys: &[PathBuf], now: OffsetDateTime) -> Result<(VerifiedIndex, usize)> {
    let source = open(store)?;
    let verified = load_index(&source, keys, now).await?;
    let scratch = tempfile::tempdir().map_err(|e| drover_agent::Error::io(std::env::temp_dir(), e))?;
    let mut problems = Vec::new();
    let mut checked: BTreeSet<Digest> = BTreeSet::new();
    for bundle in &verified.index().bundles {
        let blobs = bundle
            .targets
            .iter()
            .enumerate()
            .flat_map(|(i, t)| t.blobs().map(move |b| (i, b)));
        for (i, (digest, size)) in blobs {
            if !checked.insert(digest.clone()) {
                continue;
            }
            let dest = scratch.path().join(digest.hex());
            let at = format!("bundle {} targets[{i}]", bundle.name);
            if let Err(e) = source.fetch_blob(digest, size, &dest).await {
                problems.push(format!("{at}: {e}"));
                continue;
            }
            let checked_tar = std::fs::File::open(&dest)
                .map_err(|e| drover_agent::Error::io(&dest, e))
                .and_then(|f| check_tarball(std::io::BufReader::new(f), &at, &RenderLimits::default()));
            if let Err(e) = checked_tar {
                problems.push(e.to_string());
            }
            let _ = std::fs::remove_file(&dest);
        }
    }
    if problems.is_empty() {
        Ok((verified, checked.len()))
    } else {
        Err(Error::Verification {
            store: store.to_string(),
            problems,
        })
    }
}

/// One line per bundle: what `cluster` would get from the verified index, and why.
pub fn explain_targets(index: &VerifiedIndex, cluster: &Cluster) -> Vec<String> {
    plan(index, cluster)
        .into_iter()
        .map(|item| {
            let b = item.bundle;
            let why = |t: usize| describe_target(&b.targets[t]);
            let percent = b.rollout.map_or(100, |r| r.percent);
            let line = match &item.decision {
                Decision::Deploy(c) => match &c.outside_wave {
                    None if percent < 100 => format!(
                        "deploy {} (targets[{}]: {}; in the {percent}% wave, bucket {})",
                        c.digest,
                        c.target,
                        why(c.target),
                        rollout_bucket(&cluster.name, &b.name)
                    ),
                    None => format!("deploy {} (targets[{}]: {})", c.digest, c.target, why(c.target)),
                    Some(wave) => format!(
                        "deploy previous {} (targets[{}]: {}; outside the {}% wave, bucket {}; the wave gets {})",
                        c.digest,
                        c.target,
                        why(c.target),
                        wave.percent,
                        wave.bucket,
                        wave.wave_digest
                    ),
                },
                Decision::NotTargeted => match first_match(&b.targets, cluster) {
                    Some(c) => format!("not deployed: targets[{}] ({}) is doNotDeploy", c.target, why(c.target)),
                    None => "not deployed: no target matches".to_string(),
                },
                Decision::Paused { would_get } => format!(
                    "paused: keeps what it has (targets[{}] would give {})",
                    would_get.target, would_get.digest
                ),
                Decision::OutsideRollout {
                    bucket,
                    percent,
                    would_get,
                } => format!(
                    "outside rollout: bucket {bucket} >= {percent}%, keeps what it has, nothing if new (wave gets {}; the index names no previous blob)",
                    would_get.digest
                ),
                Decision::Invalid(problem) => format!("error: {problem}"),
            };
            let deps = if b.depends_on.is_empty() {
                String::new()
            } else {
                let names: Vec<&str> = b.depends_on.iter().map(|d| d.as_str()).collect();
                format!(" [dependsOn: {}]", names.join(", "))
            };
            format!("{:<24} {line}{deps}", b.name.as_str())
        })
        .collect()
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
