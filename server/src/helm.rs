//! Helm chart bundles: a chart directory becomes one k3s `HelmChart` object.
//!
//! drover packages the chart itself, as `helm package` lays it out (every file under
//! `<chart name>/`, a gzip-compressed tar) and reproducibly ([`crate::pack`]: sorted
//! entries, zero times and owners), so the same chart gives the same blob on any machine
//! without a `helm` binary. The archive travels inside the bundle as `spec.chartContent`,
//! so the cluster needs neither Helm nor a chart repository: k3s's helm-controller installs
//! it. The fields set are documented in docs/authoring.md.

use std::collections::BTreeMap;
use std::path::Path;

use drover_agent::format::BundleName;
use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::bundle_files::collect_all_files;
use crate::error::{Error, Result};
use crate::http;

/// Name of the file that makes a bundle directory a Helm chart.
pub const CHART_FILE: &str = "Chart.yaml";
/// `apiVersion` of the k3s HelmChart custom resource.
pub const HELM_CHART_API_VERSION: &str = "helm.cattle.io/v1";
/// The namespace k3s's helm-controller watches for HelmChart objects.
pub const HELM_CHART_NAMESPACE: &str = "kube-system";
/// Where the chart's objects go when the bundle sets no `namespace`.
pub const DEFAULT_TARGET_NAMESPACE: &str = "default";
/// Largest chart repository `index.yaml` read.
pub const MAX_REPO_INDEX_BYTES: u64 = 32 << 20;
/// Largest chart archive pulled from a repository.
pub const MAX_CHART_ARCHIVE_BYTES: u64 = 32 << 20;

/// `chart:` in bundle.yaml: a chart in a Helm chart repository, pulled at publish time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartRef {
    /// Repository URL: the directory holding `index.yaml` (`http://` or `https://`).
    pub repo: String,
    /// Chart name in the repository.
    pub name: String,
    /// Exact chart version.
    pub version: String,
}

/// A chart directory, packaged.
#[derive(Debug)]
pub struct Chart {
    /// `name` from Chart.yaml: the archive's top directory.
    pub name: String,
    /// `version` from Chart.yaml.
    pub version: String,
    /// The chart archive (`.tgz`).
    pub archive: Vec<u8>,
}

impl Chart {
    /// Reads and packages the chart in `dir` (everything but `bundle.yaml`).
    pub fn read(dir: &Path) -> Result<Chart> {
        #[derive(Deserialize)]
        struct Meta {
            name: String,
            version: String,
        }
        let chart_path = dir.join(CHART_FILE);
        let files = collect_all_files(dir)?;
        let text = files
            .get(CHART_FILE)
            .ok_or_else(|| Error::source(&chart_path, "not found"))?;
        let meta: Meta = serde_norway::from_slice(text).map_err(|e| {
            Error::source(
                &chart_path,
                format!("not a chart description (needs name and version): {e}"),
            )
        })?;
        let safe = !meta.name.is_empty()
            && meta
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !meta.name.starts_with('.');
        if !safe {
            return Err(Error::source(
                &chart_path,
                format!(
                    "name {:?}: a chart name is letters, digits, '-', '_' and '.'",
                    meta.name
                ),
            ));
        }
        let entries: Vec<(String, &[u8])> = files
            .iter()
            .map(|(rel, bytes)| (format!("{}/{rel}", meta.name), &bytes[..]))
            .collect();
        let entries: BTreeMap<&str, &[u8]> = entries.iter().map(|(p, b)| (p.as_str(), *b)).collect();
        let archive = crate::pack::pack(&entries).map_err(|e| drover_agent::Error::io(dir, e))?;
        Ok(Chart {
            name: meta.name,
            version: meta.version,
            archive,
        })
    }

    /// Pulls `chart` from its repository: `index.yaml`, then the archive its entry names,
    /// checked against the entry's sha256 `digest` when the index has one, and checked to
    /// hold `<name>/Chart.yaml`. The archive is used as it was published, byte for byte.
    /// Errors name the URL.
    pub fn pull(chart: &ChartRef) -> std::result::Result<Chart, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        rt.block_on(pull(chart))
    }

    /// The `HelmChart` object (YAML) that installs this chart as release `release` into
    /// `target_namespace` with `values`. `${cluster.*}` placeholders in values stay as
    /// written: the agent substitutes them.
    pub fn helm_chart_object(&self, release: &BundleName, target_namespace: &str, values: &Mapping) -> String {
        let chart_content = <ct_codecs::Base64 as ct_codecs::Encoder>::encode_to_string(&self.archive)
            .expect("base64 of an in-memory archive: the output length fits in memory");
        let mut spec = Mapping::new();
        spec.insert("chartContent".into(), chart_content.into());
        spec.insert("version".into(), self.version.clone().into());
        spec.insert("targetNamespace".into(), target_namespace.into());
        spec.insert("createNamespace".into(), true.into());
        if !values.is_empty() {
            let text = serde_norway::to_string(values).expect("values read from YAML serialise back");
            spec.insert("valuesContent".into(), text.into());
        }
        let mut metadata = Mapping::new();
        metadata.insert("name".into(), release.as_str().into());
        metadata.insert("namespace".into(), HELM_CHART_NAMESPACE.into());
        let mut object = Mapping::new();
        object.insert("apiVersion".into(), HELM_CHART_API_VERSION.into());
        object.insert("kind".into(), "HelmChart".into());
        object.insert("metadata".into(), Value::Mapping(metadata));
        object.insert("spec".into(), Value::Mapping(spec));
        serde_norway::to_string(&object).expect("a mapping of strings serialises")
    }
}

async fn pull(chart: &ChartRef) -> std::result::Result<Chart, String> {
    #[derive(Deserialize)]
    struct RepoIndex {
        #[serde(default)]
        entries: BTreeMap<String, Vec<Entry>>,
    }
    #[derive(Deserialize)]
    struct Entry {
        version: String,
        #[serde(default)]
        urls: Vec<String>,
        digest: Option<String>,
    }
    let mut base = reqwest::Url::parse(&chart.repo).map_err(|e| format!("chart.repo {:?}: {e}", chart.repo))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(format!(
            "chart.repo {}: only http:// and https:// repositories",
            chart.repo
        ));
    }
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let client = http::client().map_err(|e| format!("HTTP client: {e}"))?;
    let index_url = base.join("index.yaml").map_err(|e| format!("{base}: {e}"))?;
    let bytes = http::fetch(&client, &index_url, MAX_REPO_INDEX_BYTES)
        .await
        .map_err(|e| format!("{index_url}: {e}"))?;
    let index: RepoIndex =
        serde_norway::from_slice(&bytes).map_err(|e| format!("{index_url}: not a chart repository index: {e}"))?;
    let entry = index
        .entries
        .get(&chart.name)
        .and_then(|versions| versions.iter().find(|e| e.version == chart.version))
        .ok_or_else(|| format!("{index_url}: no chart {:?} version {:?}", chart.name, chart.version))?;
    let url = entry
        .urls
        .first()
        .ok_or_else(|| format!("{index_url}: chart {} {} lists no urls", chart.name, chart.version))?;
    let url = base.join(url).map_err(|e| format!("{index_url}: url {url:?}: {e}"))?;
    let archive = http::fetch(&client, &url, MAX_CHART_ARCHIVE_BYTES)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if let Some(expected) = &entry.digest {
        let found = drover_agent::format::Digest::of(&archive);
        if !found.hex().eq_ignore_ascii_case(expected.trim_start_matches("sha256:")) {
            return Err(format!(
                "{url}: sha256 is {}, the repository index says {expected}",
                found.hex()
            ));
        }
    }
    if !archive_has_chart(&archive, &chart.name) {
        return Err(format!("{url}: not a chart archive with {}/{CHART_FILE}", chart.name));
    }
    Ok(Chart {
        name: chart.name.clone(),
        version: chart.version.clone(),
        archive,
    })
}

/// True when `archive` is a gzip-compressed tar holding `<name>/Chart.yaml`.
fn archive_has_chart(archive: &[u8], name: &str) -> bool {
    let wanted = format!("{name}/{CHART_FILE}");
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    let Ok(entries) = tar.entries() else {
        return false;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            return false;
        };
        if entry.path().is_ok_and(|p| p.to_string_lossy() == wanted) {
            return true;
        }
    }
    false
}

/// Merges `over` into `base`: mappings merge key by key, recursively; anything else in
/// `over` (scalars, lists) replaces what `base` has, as Helm merges values files.
pub fn merge_values(base: &mut Mapping, over: &Mapping) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Mapping(b)), Value::Mapping(o)) => merge_values(b, o),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(yaml: &str) -> Mapping {
        serde_norway::from_str(yaml).expect("test YAML")
    }

    #[test]
    fn target_values_merge_over_bundle_values_key_by_key() {
        let mut base = mapping("image: {repo: web, tag: '1'}\nreplicas: 1\nports: [80, 443]\n");
        merge_values(&mut base, &mapping("image: {tag: '2'}\nports: [8080]\n"));
        assert_eq!(
            base,
            mapping("image: {repo: web, tag: '2'}\nreplicas: 1\nports: [8080]\n")
        );
    }

    #[test]
    fn chart_archive_is_reproducible_and_under_the_chart_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("Chart.yaml"),
            "apiVersion: v2\nname: hello\nversion: 0.1.0\n",
        )
        .expect("w");
        std::fs::create_dir(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/cm.yaml"), "kind: ConfigMap\n").expect("w");
        std::fs::write(dir.path().join("bundle.yaml"), "namespace: hello\n").expect("w");
        let chart = Chart::read(dir.path()).expect("chart");
        assert_eq!(chart.archive, Chart::read(dir.path()).expect("chart").archive);
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&chart.archive[..]));
        let paths: Vec<String> = tar
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(paths, ["hello/Chart.yaml", "hello/templates/cm.yaml"]);
    }
}
