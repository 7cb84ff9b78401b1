//! A temporary publisher and cluster in one directory: keys, sources, a store, and the
//! agent's manifests and state.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::fsutil::{copy_dir, repo_root, snapshot};
use crate::publisher::drover_ok;

/// A temporary publisher + cluster: keys, a source tree, a store, and an agent's
/// manifests and state directories.
pub struct Site {
    /// Root of everything (deleted on drop).
    pub dir: tempfile::TempDir,
}

impl Site {
    /// A new site with a drover key pair in `keys/`.
    pub fn new() -> Self {
        let site = Site {
            dir: tempfile::tempdir().expect("tempdir"),
        };
        drover_ok(&["keygen", "--out", site.path("keys").to_str().unwrap()]);
        site
    }

    /// A path under the site root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A path under the site root, as a string.
    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_str().expect("utf-8 temp path").to_string()
    }

    /// Writes a file (creating parent directories).
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// Copies the repository's `examples/` into `src/`.
    pub fn with_examples(self) -> Self {
        copy_dir(&repo_root().join("examples/bundles"), &self.path("src/bundles"));
        self
    }

    /// `drover publish src --store store --key keys/drover.key EXTRA…`.
    pub fn publish(&self, extra: &[&str]) -> String {
        let (src, store, key) = (self.p("src"), self.p("store"), self.p("keys/drover.key"));
        let mut args = vec!["publish", &src, "--store", &store, "--key", &key];
        args.extend_from_slice(extra);
        drover_ok(&args)
    }

    /// The `file://` URL of the store.
    pub fn store_url(&self) -> String {
        format!("file://{}", self.p("store"))
    }

    /// Contents of the manifests directory: file name → text.
    pub fn manifests(&self) -> BTreeMap<String, String> {
        snapshot(&self.path("manifests"))
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v).expect("manifests are UTF-8")))
            .collect()
    }

    /// Byte-for-byte snapshot of the manifests and state directories. `status.json` is
    /// left out: it is the agent's report, rewritten after every cycle (a refused index
    /// makes it say so), not state the next cycle depends on.
    pub fn sink_and_state(&self) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, Vec<u8>>) {
        let mut state = snapshot(&self.path("state"));
        state.remove("status.json");
        (snapshot(&self.path("manifests")), state)
    }

    /// Blob digests referenced by the store's index, per bundle, in target order.
    pub fn index_digests(&self) -> BTreeMap<String, Vec<String>> {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(self.path("store/index.json")).unwrap()).unwrap();
        index["bundles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let digests = b["targets"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["digest"].as_str().unwrap().to_string());
                (b["name"].as_str().unwrap().to_string(), digests.collect())
            })
            .collect()
    }
}

impl Default for Site {
    fn default() -> Self {
        Self::new()
    }
}
