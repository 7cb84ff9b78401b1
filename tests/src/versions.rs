//! Several published versions of one site and everything a clean agent writes for them:
//! what crash and disk-full tests compare a damaged run against.

use std::collections::BTreeMap;
use std::path::Path;

use crate::agent::AgentRun;
use crate::fsutil::{copy_dir, repo_root, snapshot};
use crate::process::text;
use crate::site::Site;

/// A sequence of published versions of one site, each kept in its own store directory,
/// and every manifests file a clean agent writes for any of them: what crash and
/// disk-full tests compare a damaged run against.
pub struct Versions {
    /// `file://` URL of each version's store, oldest first.
    pub stores: Vec<String>,
    /// For each `drover-*.yaml` file name, every content a clean run of some version wrote.
    pub allowed: BTreeMap<String, std::collections::BTreeSet<Vec<u8>>>,
    /// The manifests directory after a clean run of the last version.
    pub last: BTreeMap<String, Vec<u8>>,
}

impl Versions {
    /// Publishes `count` versions of the examples in `site` (each changes web, which gets
    /// a 32 KiB ConfigMap, and monitoring; the fourth drops monitoring, so its file becomes a tombstone), copies
    /// each store to `store-v<N>`, and applies them in order with a clean agent of
    /// `cluster` with `labels` in a scratch directory to learn what each writes.
    pub fn publish(site: &Site, count: usize, cluster: &str, labels: &[&str]) -> Versions {
        copy_dir(&repo_root().join("examples/bundles"), &site.path("src/bundles"));
        let scratch = tempfile::tempdir().unwrap();
        let (mut stores, mut allowed, mut last) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
        for v in 0..count {
            if v > 0 {
                // 32 KiB of padding: the manifest takes several pages to write (disk-full
                // tests) while its blob stays small (it compresses).
                let pad = "x".repeat(32 << 10);
                site.write(
                    "src/bundles/web/release.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: web-release}}\ndata: {{v: \"{v}\", pad: {pad}}}\n"
                    ),
                );
            }
            if v == 3 {
                std::fs::remove_dir_all(site.path("src/bundles/monitoring")).unwrap();
            } else if site.path("src/bundles/monitoring").exists() {
                site.write(
                    "src/bundles/monitoring/release.yaml",
                    &format!(
                        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: mon-release}}\ndata: {{v: \"{v}\"}}\n"
                    ),
                );
            }
            site.publish(&[]);
            let store = site.path(&format!("store-v{v}"));
            copy_dir(&site.path("store"), &store);
            let url = format!("file://{}", store.display());
            let out = AgentRun::once(site)
                .source(&url)
                .cluster(cluster)
                .labels(labels)
                .under(scratch.path())
                .run();
            assert_eq!(out.status.code(), Some(0), "clean run of version {v}: {}", text(&out));
            last = snapshot(&scratch.path().join("manifests"));
            for (name, bytes) in &last {
                allowed
                    .entry(name.clone())
                    .or_insert_with(std::collections::BTreeSet::new)
                    .insert(bytes.clone());
            }
            stores.push(url);
        }
        Versions { stores, allowed, last }
    }

    /// Checks what a k3s reading `manifests` and the next agent reading `state` could see
    /// after a run was cut short (`context` names it in failures): every `drover-*.yaml`
    /// is byte-for-byte what a clean run of some version wrote, any other file is a
    /// `.drover-*.tmp` leftover (which k3s ignores), and state.json, if there, is whole JSON.
    pub fn assert_consistent(&self, manifests: &Path, state: &Path, context: &str) {
        for (name, bytes) in snapshot(manifests) {
            if name.starts_with(".drover-") && name.ends_with(".tmp") {
                continue;
            }
            let known = self.allowed.get(&name).is_some_and(|set| set.contains(&bytes));
            assert!(
                known,
                "{context}: {name} is not what any version writes:\n{}",
                String::from_utf8_lossy(&bytes)
            );
        }
        if let Ok(bytes) = std::fs::read(state.join("state.json")) {
            let parsed = serde_json::from_slice::<serde_json::Value>(&bytes);
            assert!(parsed.is_ok(), "{context}: state.json is not whole JSON: {parsed:?}");
        }
    }
}
