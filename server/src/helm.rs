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

use crate::bundle_spec::{collect_all_files, CHART_FILE};
use crate::error::{Error, Result};

/// `apiVersion` of the k3s HelmChart custom resource.
pub const HELM_CHART_API_VERSION: &str = "helm.cattle.io/v1";
/// The namespace k3s's helm-controller watches for HelmChart objects.
pub const HELM_CHART_NAMESPACE: &str = "kube-system";
/// Where the chart's objects go when the bundle sets no `namespace`.
pub const DEFAULT_TARGET_NAMESPACE: &str = "default";

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
