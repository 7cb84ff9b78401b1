//! The store format, v1: the types of `index.json` and the names used in a store.
//!
//! docs/format.md is the normative specification and mirrors these types one-to-one.
//! Unknown fields are ignored so that later v1 additions stay readable by older agents;
//! every field described here is checked by [`Index::validate`].

mod digest;
mod label;
mod name;
mod selector;

pub use digest::Digest;
pub use label::{check_label_key, check_label_value};
pub use name::{check_dns_label, BundleName};
pub use selector::{LabelSelector, Operator, Requirement};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// The only `apiVersion` this agent understands.
pub const API_VERSION: &str = "drover.dev/v1";
/// The `kind` of a channel index.
pub const INDEX_KIND: &str = "Index";
/// File name of the channel index inside a store.
pub const INDEX_FILE: &str = "index.json";
/// File name of the index signature inside a store.
pub const SIGNATURE_FILE: &str = "index.json.minisig";
/// Directory of bundle blobs inside a store; a blob lives at `blobs/sha256/<hex>`.
pub const BLOB_DIR: &str = "blobs/sha256";

/// A channel index: the one mutable, signed file of a store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always [`API_VERSION`].
    pub api_version: String,
    /// Always [`INDEX_KIND`].
    pub kind: String,
    /// Channel name, e.g. `stable`.
    pub channel: String,
    /// Increases with every publish; agents refuse to go back.
    pub version: u64,
    /// After this instant agents refuse the index (anti-freeze).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// The bundles of this channel.
    #[serde(default)]
    pub bundles: Vec<Bundle>,
}

/// One bundle entry of the index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    /// Unique name; also names the file the dir sink writes.
    pub name: BundleName,
    /// Namespace given to namespaced objects that have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Bundles that must be in place on the cluster before this one is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<BundleName>,
    /// A paused bundle stays at whatever digest each cluster has now.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Staged rollout; absent means 100 %.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<Rollout>,
    /// kube sink: take fields other field managers own, and delete and recreate objects
    /// whose immutable fields changed. Ignored by the dir sink; absent means false (older
    /// agents ignore it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// kube sink: when the bundle stops targeting the cluster (or leaves the index), keep
    /// its objects and only forget them (drop the inventory). Ignored by the dir sink.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_resources: bool,
    /// kube sink: how long the bundle's objects may stay unhealthy before it is an Error,
    /// in seconds (absent: 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_timeout_seconds: Option<u64>,
    /// Ordered targets: the first that matches the cluster wins.
    pub targets: Vec<Target>,
}

/// Staged rollout of a bundle.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rollout {
    /// Percentage (0–100) of clusters, by stable hash bucket, that take the current digest.
    pub percent: u8,
}

/// One target of a bundle: which clusters, and which blob they get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Label selector over the cluster's labels; `{}` matches every cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    /// Exact cluster name. With a selector as well, both must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Digest of the bundle blob for matching clusters.
    pub digest: Digest,
    /// Size of that blob in bytes.
    pub size: u64,
    /// The blob matching clusters outside the rollout wave get: what this target gave
    /// before the change now rolling out. Absent when there is no earlier blob (first
    /// publish) or nothing is rolling out. Older agents ignore it and keep what they have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<BlobRef>,
    /// Informational: the variant directory or kustomize overlay the blob was built from,
    /// for people and `drover targets`. Agents ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// Matching clusters must not run the bundle (an explicit exclusion, tried in order
    /// like any target). `digest`/`size` then name the empty bundle, so agents that predate
    /// this field apply nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub do_not_deploy: bool,
}

/// A blob named by digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    /// Digest of the blob.
    pub digest: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
}

impl Target {
    /// Every blob this target references: its digest, then its previous digest if any.
    pub fn blobs(&self) -> impl Iterator<Item = (&Digest, u64)> {
        std::iter::once((&self.digest, self.size)).chain(self.previous.iter().map(|p| (&p.digest, p.size)))
    }
}

impl Index {
    /// Parses `bytes` as a format v1 index and checks its field rules ([`Index::validate`]).
    /// This is not verification: call it on bytes whose signature was checked, or where
    /// trust is not the question (`what` names the index in errors).
    pub fn parse(bytes: &[u8], what: &str) -> Result<Index> {
        let index: Index = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid(what, format!("not a valid format v1 index: {e}")))?;
        index.validate(what)?;
        Ok(index)
    }

    /// Checks every field rule of format v1 that serde cannot express. `what` names the
    /// index (its URL or path) in errors.
    pub fn validate(&self, what: &str) -> Result<()> {
        let bad = |field: String, message: String| Error::invalid(format!("{what}: {field}"), message);
        if self.api_version != API_VERSION {
            return Err(bad(
                "apiVersion".into(),
                format!("expected {API_VERSION:?}, found {:?}", self.api_version),
            ));
        }
        if self.kind != INDEX_KIND {
            return Err(bad(
                "kind".into(),
                format!("expected {INDEX_KIND:?}, found {:?}", self.kind),
            ));
        }
        if self.channel.is_empty() {
            return Err(bad("channel".into(), "must not be empty".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, bundle) in self.bundles.iter().enumerate() {
            let at = |field: &str| format!("bundles[{i}] ({}).{field}", bundle.name);
            if !seen.insert(&bundle.name) {
                return Err(bad(at("name"), "duplicate bundle name".into()));
            }
            if let Some(rollout) = bundle.rollout {
                if rollout.percent > 100 {
                    return Err(bad(
                        at("rollout.percent"),
                        format!("must be 0..=100, found {}", rollout.percent),
                    ));
                }
            }
            if let Some(ns) = &bundle.namespace {
                name::check_dns_label(ns).map_err(|m| bad(at("namespace"), m))?;
            }
            for (t, target) in bundle.targets.iter().enumerate() {
                if target.cluster_selector.is_none() && target.cluster_name.is_none() {
                    return Err(bad(
                        at(&format!("targets[{t}]")),
                        "needs clusterSelector or clusterName (use clusterSelector: {} for every cluster)".into(),
                    ));
                }
                if let Some(selector) = &target.cluster_selector {
                    selector
                        .validate()
                        .map_err(|m| bad(at(&format!("targets[{t}].clusterSelector")), m))?;
                }
            }
        }
        Ok(())
    }

    /// Finds a bundle by name.
    pub fn bundle(&self, name: &BundleName) -> Option<&Bundle> {
        self.bundles.iter().find(|b| &b.name == name)
    }

    /// Every blob the index references (all targets of all bundles, previous digests
    /// included), each once, ordered
    /// by digest: what a copy of the store must hold.
    pub fn blobs(&self) -> Vec<(Digest, u64)> {
        let mut blobs: std::collections::BTreeMap<&Digest, u64> = std::collections::BTreeMap::new();
        for (digest, size) in self.bundles.iter().flat_map(|b| &b.targets).flat_map(Target::blobs) {
            blobs.insert(digest, size);
        }
        blobs.into_iter().map(|(d, size)| (d.clone(), size)).collect()
    }
}

/// Formats a timestamp as RFC 3339, as the index does.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"{"apiVersion":"drover.dev/v1","kind":"Index","channel":"stable","version":7,
      "expires":"2026-12-31T00:00:00Z","bundles":[{"name":"web","namespace":"web","dependsOn":[],
      "paused":false,"rollout":{"percent":100},"targets":[{"clusterSelector":{"matchLabels":{"env":"prod"}},
      "digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1234},
      {"clusterName":"site-7","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":9}]}]}"#;

    #[test]
    fn parses_the_example_from_the_spec() {
        let index: Index = serde_json::from_str(EXAMPLE).expect("example parses");
        index.validate("example").expect("example is valid");
        assert_eq!(index.version, 7);
        assert_eq!(index.bundles[0].targets[1].cluster_name.as_deref(), Some("site-7"));
    }

    #[test]
    fn rejects_wrong_api_version_naming_the_field() {
        let mut index: Index = serde_json::from_str(EXAMPLE).expect("example parses");
        index.api_version = "drover.dev/v2".into();
        let err = index.validate("x").expect_err("v2 refused").to_string();
        assert!(err.contains("apiVersion") && err.contains("drover.dev/v2"), "{err}");
    }

    #[test]
    fn rejects_target_without_selector_or_name() {
        let mut index: Index = serde_json::from_str(EXAMPLE).expect("example parses");
        index.bundles[0].targets[0].cluster_selector = None;
        let err = index.validate("x").expect_err("refused").to_string();
        assert!(err.contains("targets[0]"), "{err}");
    }

    #[test]
    fn previous_blobs_are_part_of_the_store_and_do_not_deploy_parses() {
        let zeros = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let twos = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
        let text = EXAMPLE.replacen(
            r#""size":1234}"#,
            &format!(r#""size":1234,"previous":{{"digest":"{twos}","size":5}},"doNotDeploy":true}}"#),
            1,
        );
        let index: Index = serde_json::from_str(&text).expect("parses");
        index.validate("x").expect("valid");
        let target = &index.bundles[0].targets[0];
        assert!(target.do_not_deploy);
        let blobs: Vec<String> = index.blobs().iter().map(|(d, _)| d.to_string()).collect();
        assert!(
            blobs.contains(&twos.to_string()) && blobs.contains(&zeros.to_string()),
            "{blobs:?}"
        );
        // Written back, absent fields stay absent: an index without them is byte-identical
        // to what older publishers wrote.
        let plain: Index = serde_json::from_str(EXAMPLE).expect("parses");
        let json = serde_json::to_string(&plain).expect("serialises");
        assert!(!json.contains("previous") && !json.contains("doNotDeploy"), "{json}");
    }

    #[test]
    fn rejects_duplicate_bundle_names() {
        let mut index: Index = serde_json::from_str(EXAMPLE).expect("example parses");
        index.bundles.push(index.bundles[0].clone());
        assert!(index.validate("x").expect_err("dup").to_string().contains("duplicate"));
    }
}

/// Index serialisation laws on random indexes: what the publisher writes is what an agent
/// reads.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    fn digest() -> impl Strategy<Value = Digest> {
        any::<[u8; 8]>().prop_map(|seed| Digest::of(&seed))
    }

    fn name() -> impl Strategy<Value = BundleName> {
        "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?".prop_map(|s| BundleName::parse(&s).expect("regex gives DNS labels"))
    }

    fn target() -> impl Strategy<Value = Target> {
        (
            prop::option::of(selector::properties::selector()),
            prop::option::of("[a-z0-9-]{1,12}"),
            digest(),
            any::<u64>(),
            prop::option::of((digest(), any::<u64>())),
            prop::option::of("[a-z0-9/-]{1,12}"),
            any::<bool>(),
        )
            .prop_map(
                |(cluster_selector, cluster_name, digest, size, previous, variant, do_not_deploy)| Target {
                    cluster_name: cluster_name
                        .filter(|_| cluster_selector.is_none())
                        .or(Some("site-1".into())),
                    cluster_selector,
                    digest,
                    size,
                    previous: previous.map(|(digest, size)| BlobRef { digest, size }),
                    variant,
                    do_not_deploy,
                },
            )
    }

    fn bundle() -> impl Strategy<Value = Bundle> {
        (
            name(),
            prop::option::of("[a-z0-9]{1,10}"),
            prop::collection::vec(name(), 0..3),
            any::<(bool, bool, bool)>(),
            prop::option::of(0u8..=100),
            prop::option::of(any::<u64>()),
            prop::collection::vec(target(), 0..3),
        )
            .prop_map(
                |(name, namespace, depends_on, (paused, force, keep_resources), percent, health, targets)| Bundle {
                    name,
                    namespace,
                    depends_on,
                    paused,
                    rollout: percent.map(|percent| Rollout { percent }),
                    force,
                    keep_resources,
                    health_timeout_seconds: health,
                    targets,
                },
            )
    }

    fn index() -> impl Strategy<Value = Index> {
        (
            "[a-z][a-z0-9-]{0,15}",
            any::<u64>(),
            // Years 1970 to 2999, to the nanosecond, at any whole-minute UTC offset.
            (0i64..32_503_680_000, 0u32..1_000_000_000, -840i16..=840),
            prop::collection::vec(bundle(), 0..4),
        )
            .prop_map(|(channel, version, (secs, nanos, minutes), bundles)| {
                let offset = time::UtcOffset::from_whole_seconds(i32::from(minutes) * 60).expect("within ±14h");
                let expires = OffsetDateTime::from_unix_timestamp(secs)
                    .expect("in range")
                    .replace_nanosecond(nanos)
                    .expect("in range")
                    .to_offset(offset);
                Index {
                    api_version: API_VERSION.into(),
                    kind: INDEX_KIND.into(),
                    channel,
                    version,
                    expires,
                    bundles,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn serialise_then_parse_is_identity(index in index()) {
            let json = serde_json::to_vec_pretty(&index).expect("an index serialises");
            let back: Index = serde_json::from_slice(&json).expect("a serialised index parses");
            prop_assert_eq!(&back, &index);
            // And a second serialisation writes the very same bytes: signatures stay valid.
            prop_assert_eq!(serde_json::to_vec_pretty(&back).expect("serialises"), json);
            prop_assert_eq!(back.validate("a").is_ok(), index.validate("b").is_ok());
        }
    }
}
