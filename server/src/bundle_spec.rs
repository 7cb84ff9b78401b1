//! `bundles/<name>/bundle.yaml`: how a bundle source directory is published.
//!
//! A bundle directory is one of three kinds, told apart by what it holds:
//! * a Helm chart (`Chart.yaml`, or `chart:` naming one in a chart repository): packaged
//!   into a chart archive and published as a k3s `HelmChart` object ([`crate::helm`]);
//!   `values` (bundle and target) become its values;
//! * a kustomization (`kustomization.yaml` at the top, or any target with an `overlay`):
//!   rendered with `kubectl kustomize` ([`crate::kustomize`]);
//! * plain YAML files (anything else), with optional per-target `variant` directories.
//!
//! ```yaml
//! namespace: web              # default namespace for namespaced objects
//! dependsOn: [base]           # applied only after these bundles
//! paused: false
//! rollout: {percent: 100}
//! force: false                # kube sink: take fields other managers own
//! keepResources: false        # kube sink: keep the objects when no longer targeted
//! healthTimeout: 5m           # kube sink: unhealthy longer than this is an Error
//! values: {replicas: 2}       # Helm chart bundles: values for every target
//! chart: {repo: https://charts.example.com, name: web, version: 1.2.3}  # pulled at publish
//! targets:                    # first match wins; omitted = every cluster
//!   - clusterName: site-7
//!     variant: site-7         # plain bundles: sub-directory whose YAML is added to the base files
//!   - clusterSelector: {matchLabels: {env: lab}}
//!     doNotDeploy: true       # explicit exclusion
//!   - clusterSelector: {matchLabels: {env: prod}}
//!     overlay: overlays/prod  # kustomize bundles: the overlay directory to render
//!     values: {replicas: 5}   # Helm chart bundles: merged over the bundle's values
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use drover_agent::format::{BundleName, LabelSelector, Rollout};
use serde::Deserialize;

use crate::bundle_files::collect_manifests;
use crate::error::{Error, Result};
use crate::helm::CHART_FILE;
use crate::kustomize::KUSTOMIZATION_FILES;

pub use crate::bundle_files::BUNDLE_FILE;

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
    /// Helm chart bundles: chart values for every target.
    #[serde(default)]
    pub values: serde_norway::Mapping,
    /// A chart pulled from a Helm chart repository at publish time, instead of a chart in
    /// the bundle directory.
    pub chart: Option<crate::helm::ChartRef>,
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
    /// Kustomize bundles: the overlay directory (with its own kustomization) to render
    /// for this target instead of the bundle directory.
    pub overlay: Option<PathBuf>,
    /// Helm chart bundles: values merged over the bundle's `values` for this target.
    #[serde(default)]
    pub values: serde_norway::Mapping,
    /// Matching clusters must not run the bundle.
    #[serde(default)]
    pub do_not_deploy: bool,
}

impl TargetSpec {
    /// What the index's informational `variant` says: `variant DIR` or `overlay DIR`.
    pub fn variant_name(&self) -> Option<String> {
        match (&self.variant, &self.overlay) {
            (Some(v), _) => Some(format!("variant {}", v.display())),
            (None, Some(o)) => Some(format!("overlay {}", o.display())),
            (None, None) => None,
        }
    }
}

/// Targets that select every cluster without the author writing `clusterSelector: {}`:
/// `targets: []`, or a selector whose keys are all empty (`{matchLabels: {}}`,
/// `{matchLabels: null}`, `{matchExpressions: []}`). Each is most likely a mistake that
/// would widen a rollout to the whole fleet, so publish says so. `text` is the YAML `spec`
/// was parsed from.
fn implicit_every_cluster(text: &str, spec: &BundleSpec) -> Vec<String> {
    let Ok(raw) = serde_norway::from_str::<serde_norway::Value>(text) else {
        return Vec::new();
    };
    let raw_targets = raw.get("targets");
    if spec.targets.is_empty() && raw_targets.is_some_and(|t| !t.is_null()) {
        return vec![
            "targets: [] selects every cluster (omit targets, or write `- clusterSelector: {}`, to mean that)".into(),
        ];
    }
    let written_empty = |i: usize| {
        raw_targets
            .and_then(|t| t.get(i))
            .and_then(|t| t.get("clusterSelector"))
            .and_then(serde_norway::Value::as_mapping)
            .is_some_and(serde_norway::Mapping::is_empty)
    };
    spec.targets
        .iter()
        .enumerate()
        .filter(|(i, t)| t.cluster_name.is_none() && t.cluster_selector.as_ref().is_some_and(selects_all) && !written_empty(*i))
        .map(|(i, _)| {
            format!("targets[{i}].clusterSelector has no labels or expressions, so it selects every cluster (write `clusterSelector: {{}}` to mean that)")
        })
        .collect()
}

fn selects_all(selector: &LabelSelector) -> bool {
    selector.match_labels.is_empty() && selector.match_expressions.is_empty()
}

/// What a bundle directory is, and what publishing it needs.
#[derive(Debug)]
pub enum SourceKind {
    /// Plain YAML files (base and variants).
    Plain,
    /// A kustomization, rendered per overlay with `kubectl kustomize`.
    Kustomize,
    /// A Helm chart, packaged once.
    Helm(crate::helm::Chart),
}

/// How one target's blob is made. Equal recipes make equal blobs, so each distinct one
/// is built once.
#[derive(Debug, Clone, PartialEq)]
pub enum Recipe<'a> {
    /// `doNotDeploy`: the empty bundle.
    Nothing,
    /// Plain files: the base plus this variant directory, if any.
    Plain(Option<&'a PathBuf>),
    /// `kubectl kustomize` of this directory (the bundle's, or an overlay).
    Kustomize(PathBuf),
    /// The chart as a `HelmChart` object with these merged values.
    Helm(serde_norway::Mapping),
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
    /// What kind of bundle this is.
    pub kind: SourceKind,
    /// Things the author should know that do not stop the publish: targets whose selector
    /// matches every cluster although `clusterSelector: {}` was not written.
    pub warnings: Vec<String>,
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
        let (spec, warnings) = read_spec(&spec_path)?;
        let kind = source_kind(dir, &spec_path, &spec)?;
        let mut variants = BTreeMap::new();
        for (i, target) in spec.targets.iter().enumerate() {
            check_target(dir, &spec_path, &kind, i, target)?;
            if let Some(variant) = &target.variant {
                let vdir = check_subdir(dir, &spec_path, &format!("targets[{i}].variant"), variant)?;
                if !variants.contains_key(variant) {
                    variants.insert(variant.clone(), collect_manifests(&vdir, &vdir, &[])?);
                }
            }
        }
        let base = match kind {
            SourceKind::Plain => {
                let variant_dirs: Vec<PathBuf> = variants.keys().map(|v| dir.join(v)).collect();
                collect_manifests(dir, dir, &variant_dirs)?
            }
            // Rendered at publish time; their files are not manifests themselves.
            SourceKind::Kustomize | SourceKind::Helm(_) => BTreeMap::new(),
        };
        if matches!(kind, SourceKind::Kustomize)
            && !is_kustomization(dir)
            && (spec.targets.is_empty() || spec.targets.iter().any(|t| t.overlay.is_none() && !t.do_not_deploy))
        {
            return Err(Error::source(
                dir,
                "no kustomization.yaml here, so every target needs an overlay (or doNotDeploy: true)",
            ));
        }
        Ok(BundleSource {
            dir: dir.to_path_buf(),
            name,
            spec,
            base,
            variants,
            kind,
            warnings,
        })
    }

    /// How the blob of `target` (`None`: the implicit every-cluster target) is made.
    pub fn recipe<'a>(&'a self, target: Option<&'a TargetSpec>) -> Recipe<'a> {
        if target.is_some_and(|t| t.do_not_deploy) {
            return Recipe::Nothing;
        }
        match &self.kind {
            SourceKind::Plain => Recipe::Plain(target.and_then(|t| t.variant.as_ref())),
            SourceKind::Kustomize => Recipe::Kustomize(
                self.dir
                    .join(target.and_then(|t| t.overlay.as_deref()).unwrap_or(Path::new(""))),
            ),
            SourceKind::Helm(_) => {
                let mut values = self.spec.values.clone();
                if let Some(t) = target {
                    crate::helm::merge_values(&mut values, &t.values);
                }
                Recipe::Helm(values)
            }
        }
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

/// Reads and checks `bundle.yaml` (the defaults when there is none), with the warnings its
/// text gives.
fn read_spec(spec_path: &Path) -> Result<(BundleSpec, Vec<String>)> {
    let (spec, warnings): (BundleSpec, _) = match std::fs::read_to_string(spec_path) {
        Ok(text) => {
            let spec = serde_norway::from_str(&text).map_err(|e| Error::source(spec_path, e.to_string()))?;
            let warnings = implicit_every_cluster(&text, &spec)
                .into_iter()
                .map(|w| format!("{}: {w}", spec_path.display()))
                .collect();
            (spec, warnings)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (BundleSpec::default(), Vec::new()),
        Err(e) => return Err(drover_agent::Error::io(spec_path, e).into()),
    };
    if let Some(rollout) = spec.rollout.filter(|r| r.percent > 100) {
        return Err(Error::source(
            spec_path,
            format!("rollout.percent: {} is out of range (0 to 100)", rollout.percent),
        ));
    }
    Ok((spec, warnings))
}

/// Whether `dir` holds a kustomization file.
fn is_kustomization(dir: &Path) -> bool {
    KUSTOMIZATION_FILES.iter().any(|f| dir.join(f).is_file())
}

/// What kind of bundle `dir` is (pulling a `chart:` from its repository), and whether its
/// `values` fit that kind.
fn source_kind(dir: &Path, spec_path: &Path, spec: &BundleSpec) -> Result<SourceKind> {
    let kind = if let Some(chart) = &spec.chart {
        if dir.join(CHART_FILE).is_file() {
            return Err(Error::source(
                spec_path,
                format!("chart: this directory is a chart already ({CHART_FILE}); use one or the other"),
            ));
        }
        SourceKind::Helm(crate::helm::Chart::pull(chart).map_err(|m| Error::source(spec_path, m))?)
    } else if dir.join(CHART_FILE).is_file() {
        SourceKind::Helm(crate::helm::Chart::read(dir)?)
    } else if is_kustomization(dir) || spec.targets.iter().any(|t| t.overlay.is_some()) {
        SourceKind::Kustomize
    } else {
        SourceKind::Plain
    };
    if !matches!(kind, SourceKind::Helm(_)) && !spec.values.is_empty() {
        return Err(Error::source(
            spec_path,
            "values: only Helm chart bundles (a directory with Chart.yaml) take values",
        ));
    }
    Ok(kind)
}

/// Checks `targets[i]` of a bundle of `kind`: only the fields its kind takes, an overlay
/// that is a kustomization, and a valid selector or a cluster name.
fn check_target(dir: &Path, spec_path: &Path, kind: &SourceKind, i: usize, target: &TargetSpec) -> Result<()> {
    let misplaced = match (kind, target) {
        (SourceKind::Plain | SourceKind::Kustomize, t) if !t.values.is_empty() => {
            Some("values: only Helm chart bundles (a directory with Chart.yaml) take values")
        }
        (SourceKind::Helm(_), t) if t.overlay.is_some() => {
            Some("overlay: a Helm chart bundle has no overlays; use values")
        }
        (SourceKind::Helm(_) | SourceKind::Kustomize, t) if t.variant.is_some() => {
            Some("variant: only plain-YAML bundles take variant directories (kustomize: overlay; Helm: values)")
        }
        _ => None,
    };
    if let Some(problem) = misplaced {
        return Err(Error::source(spec_path, format!("targets[{i}].{problem}")));
    }
    if let Some(overlay) = &target.overlay {
        let odir = check_subdir(dir, spec_path, &format!("targets[{i}].overlay"), overlay)?;
        if !is_kustomization(&odir) {
            return Err(Error::source(
                &odir,
                format!("targets[{i}].overlay: no kustomization.yaml in this directory"),
            ));
        }
    }
    if target.cluster_selector.is_none() && target.cluster_name.is_none() {
        return Err(Error::source(
            spec_path,
            format!("targets[{i}] needs clusterSelector or clusterName (clusterSelector: {{}} means every cluster)"),
        ));
    }
    if let Some(selector) = &target.cluster_selector {
        selector
            .validate()
            .map_err(|m| Error::source(spec_path, format!("targets[{i}].clusterSelector: {m}")))?;
    }
    Ok(())
}

/// Checks that `sub` (the `field` of `spec_path`) is a relative sub-directory of `dir`
/// without `..`, and that it exists; returns its path.
fn check_subdir(dir: &Path, spec_path: &Path, field: &str, sub: &Path) -> Result<PathBuf> {
    let safe = sub.components().all(|c| matches!(c, std::path::Component::Normal(_)));
    if !safe || sub.as_os_str().is_empty() {
        return Err(Error::source(
            spec_path,
            format!("{field} {sub:?} must be a relative sub-directory without '..'"),
        ));
    }
    let full = dir.join(sub);
    if !full.is_dir() {
        return Err(Error::source(&full, format!("{field}: directory not found")));
    }
    Ok(full)
}

/// Checks one manifest file (`path` names it) as an agent will: UTF-8, YAML made of
/// Kubernetes objects. Returns the identities of its objects.
pub fn check_manifest_file(path: &Path, bytes: &[u8]) -> Result<Vec<crate::manifest_check::ObjectId>> {
    let text = std::str::from_utf8(bytes).map_err(|_| Error::source(path, "not UTF-8"))?;
    crate::manifest_check::object_ids(text, &path.display().to_string())
}
