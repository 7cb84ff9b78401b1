//! `bundles/<name>/bundle.yaml`: how a bundle source directory is published.
//!
//! ```yaml
//! namespace: web              # default namespace for namespaced objects
//! dependsOn: [base]           # applied only after these bundles
//! paused: false
//! rollout: {percent: 100}
//! force: false                # kube sink: take fields other managers own
//! keepResources: false        # kube sink: keep the objects when no longer targeted
//! healthTimeout: 5m           # kube sink: unhealthy longer than this is an Error
//! targets:                    # first match wins; omitted = every cluster
//!   - clusterName: site-7
//!     variant: site-7         # sub-directory whose YAML is added to the base files
//!   - clusterSelector: {matchLabels: {env: prod}}
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drover_agent::format::{BundleName, LabelSelector, Rollout};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Name of the optional per-bundle settings file.
pub const BUNDLE_FILE: &str = "bundle.yaml";

/// The parsed `bundle.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BundleSpec {
    /// Default namespace.
    pub namespace: Option<String>,
    /// Dependencies.
    #[serde(default)]
    pub depends_on: Vec<BundleName>,
    /// Paused flag.
    #[serde(default)]
    pub paused: bool,
    /// Staged rollout.
    pub rollout: Option<Rollout>,
    /// kube sink: take fields other managers own, recreate on immutable-field changes.
    #[serde(default)]
    pub force: bool,
    /// kube sink: keep the objects when the bundle stops targeting a cluster.
    #[serde(default)]
    pub keep_resources: bool,
    /// kube sink: how long objects may stay unhealthy before the bundle is an Error (e.g. 10m).
    #[serde(default, deserialize_with = "duration_opt")]
    pub health_timeout: Option<std::time::Duration>,
    /// Targets; empty means one target selecting every cluster.
    #[serde(default)]
    pub targets: Vec<TargetSpec>,
}

fn duration_opt<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<std::time::Duration>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| drover_agent::config::parse_duration(&s).map_err(serde::de::Error::custom))
        .transpose()
}

/// One target of `bundle.yaml`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetSpec {
    /// Label selector.
    pub cluster_selector: Option<LabelSelector>,
    /// Exact cluster name.
    pub cluster_name: Option<String>,
    /// Sub-directory of the bundle whose YAML files are added to (or replace, by relative
    /// path) the base files for this target.
    pub variant: Option<PathBuf>,
}

/// A bundle source directory, read. Its settings are checked; its manifests are checked by
/// [`check_manifest_file`], which publishing runs on every core.
#[derive(Debug)]
pub struct BundleSource {
    /// The directory.
    pub dir: PathBuf,
    /// Bundle name (the directory name).
    pub name: BundleName,
    /// Its settings.
    pub spec: BundleSpec,
    /// Base manifests: relative path → bytes.
    pub base: BTreeMap<String, Vec<u8>>,
    /// Variant manifests by variant directory.
    pub variants: BTreeMap<PathBuf, BTreeMap<String, Vec<u8>>>,
}

impl BundleSource {
    /// Reads `dir` (named after the bundle).
    pub fn read(dir: &Path) -> Result<Self> {
        let dir_name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = BundleName::parse(&dir_name).map_err(|m| Error::source(dir, m))?;
        let spec_path = dir.join(BUNDLE_FILE);
        let spec: BundleSpec = match std::fs::read_to_string(&spec_path) {
            Ok(text) => serde_norway::from_str(&text).map_err(|e| Error::source(&spec_path, e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BundleSpec::default(),
            Err(e) => return Err(drover_agent::Error::io(&spec_path, e).into()),
        };
        let mut variants = BTreeMap::new();
        for (i, target) in spec.targets.iter().enumerate() {
            if target.cluster_selector.is_none() && target.cluster_name.is_none() {
                return Err(Error::source(
                    &spec_path,
                    format!(
                        "targets[{i}] needs clusterSelector or clusterName (clusterSelector: {{}} means every cluster)"
                    ),
                ));
            }
            if let Some(selector) = &target.cluster_selector {
                selector
                    .validate()
                    .map_err(|m| Error::source(&spec_path, format!("targets[{i}].clusterSelector: {m}")))?;
            }
            if let Some(variant) = &target.variant {
                let safe = variant
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !safe || variant.as_os_str().is_empty() {
                    return Err(Error::source(
                        &spec_path,
                        format!("targets[{i}].variant {variant:?} must be a relative sub-directory without '..'"),
                    ));
                }
                let vdir = dir.join(variant);
                if !vdir.is_dir() {
                    return Err(Error::source(
                        &vdir,
                        format!("targets[{i}].variant: directory not found"),
                    ));
                }
                if !variants.contains_key(variant) {
                    variants.insert(variant.clone(), collect_manifests(&vdir, &vdir, &[])?);
                }
            }
        }
        let variant_dirs: Vec<PathBuf> = variants.keys().map(|v| dir.join(v)).collect();
        let base = collect_manifests(dir, dir, &variant_dirs)?;
        Ok(BundleSource {
            dir: dir.to_path_buf(),
            name,
            spec,
            base,
            variants,
        })
    }

    /// Every manifest file read, base and variants: the file it came from, and its bytes.
    pub fn manifest_files(&self) -> Vec<(PathBuf, &[u8])> {
        let base = self.base.iter().map(|(rel, b)| (self.dir.join(rel), &b[..]));
        let variants = self
            .variants
            .iter()
            .flat_map(|(v, files)| files.iter().map(move |(rel, b)| (self.dir.join(v).join(rel), &b[..])));
        base.chain(variants).collect()
    }

    /// The manifests for a target: base files plus (overriding) its variant's files.
    pub fn files_for(&self, variant: Option<&PathBuf>) -> BTreeMap<&str, &[u8]> {
        let mut files: BTreeMap<&str, &[u8]> = self.base.iter().map(|(k, b)| (k.as_str(), &b[..])).collect();
        if let Some(v) = variant.and_then(|v| self.variants.get(v)) {
            files.extend(v.iter().map(|(k, b)| (k.as_str(), &b[..])));
        }
        files
    }
}

/// Collects `.yaml`/`.yml` files under `dir` (recursively), keyed by their path relative to
/// `root`, skipping `skip` directories and the top-level `bundle.yaml`. Symlinks are refused
/// so a bundle is exactly what is in its directory.
fn collect_manifests(root: &Path, dir: &Path, skip: &[PathBuf]) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|e| drover_agent::Error::io(&current, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| drover_agent::Error::io(&current, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| drover_agent::Error::io(&path, e))?;
            if kind.is_symlink() {
                return Err(Error::source(
                    &path,
                    "symlinks are not allowed in a bundle; copy the file instead",
                ));
            }
            if kind.is_dir() {
                if !skip.contains(&path) {
                    stack.push(path);
                }
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .expect("walked paths are under the root")
                .to_string_lossy()
                .replace('\\', "/");
            let is_yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
            if !kind.is_file() || !is_yaml || rel == BUNDLE_FILE {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| drover_agent::Error::io(&path, e))?;
            files.insert(rel, bytes);
        }
    }
    Ok(files)
}

/// Checks one manifest file (`path` names it) as an agent will: UTF-8, YAML made of
/// Kubernetes objects.
pub fn check_manifest_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::source(path, "not UTF-8"))?;
    crate::manifest_check::check_manifest(text, &path.display().to_string())
}
