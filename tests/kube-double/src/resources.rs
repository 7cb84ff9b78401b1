//! The resource types the double serves: the built-in kinds it knows from birth and the
//! kinds that CustomResourceDefinitions add while it runs. Discovery, routing and the
//! write path all read this one registry, so a kind is either fully served or not at all.

use std::cmp::Ordering;

/// One resource type (a plural name in a group), served at one or more versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: String,
    /// Served versions, preferred first.
    pub versions: Vec<String>,
    /// Plural resource name as used in URLs (`deployments`).
    pub plural: String,
    /// Singular name (`deployment`).
    pub singular: String,
    /// Kind (`Deployment`); the list kind is this plus `List`.
    pub kind: String,
    /// Whether objects live in a namespace.
    pub namespaced: bool,
    /// Short names kubectl accepts (`deploy`).
    pub short_names: Vec<String>,
    /// Categories (`all`).
    pub categories: Vec<String>,
    /// Whether `.status` is a subresource: main-resource writes leave it alone and
    /// `/status` writes touch nothing else.
    pub status: bool,
    /// Whether the `/scale` subresource exists (maps to `.spec.replicas`).
    pub scale: bool,
    /// Whether `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    /// Name of the CustomResourceDefinition that registered this type, if any.
    pub crd: Option<String>,
}

impl ResourceType {
    /// `group/version` (or just `version` for the core group).
    pub fn group_version(&self, version: &str) -> String {
        group_version(&self.group, version)
    }

    /// The preferred (first) version.
    pub fn preferred_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    /// Whether `version` is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// `Kind.group` (`Deployment.apps`, or `ConfigMap` for core) as in Invalid messages.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// `group/version`, or `version` for the core group.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits an `apiVersion` into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

struct Builtin {
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    status: bool,
    scale: bool,
    generation: bool,
}

const fn b(
    group: &'static str,
    version: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Builtin {
    Builtin {
        group,
        version,
        plural,
        kind,
        namespaced,
        short,
        all: false,
        status: false,
        scale: false,
        generation: false,
    }
}

impl Builtin {
    const fn in_all(mut self) -> Self {
        self.all = true;
        self
    }
    const fn with_status(mut self) -> Self {
        self.status = true;
        self
    }
    const fn with_scale(mut self) -> Self {
        self.scale = true;
        self
    }
    const fn with_generation(mut self) -> Self {
        self.generation = true;
        self
    }
}

/// The built-in kinds, in the order discovery lists their groups. `helm.cattle.io`
/// HelmChart is deliberately absent: on k3s it comes from a CRD, and tests apply one.
const BUILTINS: &[Builtin] = &[
    b("", "v1", "namespaces", "Namespace", false, &["ns"]).with_status(),
    b("", "v1", "configmaps", "ConfigMap", true, &["cm"]),
    b("", "v1", "secrets", "Secret", true, &[]),
    b("", "v1", "services", "Service", true, &["svc"])
        .in_all()
        .with_status(),
    b("", "v1", "serviceaccounts", "ServiceAccount", true, &["sa"]),
    b("", "v1", "events", "Event", true, &["ev"]),
    b("", "v1", "pods", "Pod", true, &["po"]).in_all().with_status(),
    b(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
        &["pvc"],
    )
    .with_status(),
    b("apps", "v1", "deployments", "Deployment", true, &["deploy"])
        .in_all()
        .with_status()
        .with_scale()
        .with_generation(),
    b("apps", "v1", "statefulsets", "StatefulSet", true, &["sts"])
        .in_all()
        .with_status()
        .with_scale()
        .with_generation(),
    b("apps", "v1", "daemonsets", "DaemonSet", true, &["ds"])
        .in_all()
        .with_status()
        .with_generation(),
    b("apps", "v1", "replicasets", "ReplicaSet", true, &["rs"])
        .in_all()
        .with_status()
        .with_scale()
        .with_generation(),
    b("batch", "v1", "jobs", "Job", true, &[])
        .in_all()
        .with_status()
        .with_generation(),
    b("batch", "v1", "cronjobs", "CronJob", true, &["cj"])
        .in_all()
        .with_status()
        .with_generation(),
    b("rbac.authorization.k8s.io", "v1", "roles", "Role", true, &[]),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
    ),
    b(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
    ),
    b(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        false,
        &["crd", "crds"],
    )
    .with_status()
    .with_generation(),
    b("networking.k8s.io", "v1", "ingresses", "Ingress", true, &["ing"])
        .with_status()
        .with_generation(),
    b(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        true,
        &["netpol"],
    )
    .with_generation(),
    b(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
    )
    .with_status()
    .with_generation(),
    b("events.k8s.io", "v1", "events", "Event", true, &["ev"]),
    b("coordination.k8s.io", "v1", "leases", "Lease", true, &[]),
];

/// Every resource type currently served.
#[derive(Debug, Clone)]
pub struct Registry {
    types: Vec<ResourceType>,
    /// Bumped whenever the set of types changes (CRD registered or removed); used as
    /// the OpenAPI document hash so clients re-fetch.
    pub generation: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in kinds only.
    pub fn builtin() -> Self {
        let types = BUILTINS
            .iter()
            .map(|b| ResourceType {
                group: b.group.to_string(),
                versions: vec![b.version.to_string()],
                plural: b.plural.to_string(),
                singular: b.kind.to_ascii_lowercase(),
                kind: b.kind.to_string(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: if b.all { vec!["all".to_string()] } else { Vec::new() },
                status: b.status,
                scale: b.scale,
                generation: b.generation,
                crd: None,
            })
            .collect();
        Registry { types, generation: 1 }
    }

    /// All types, built-ins first, in registration order.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// The type served at `group`/`version` under `plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural && t.serves(version))
    }

    /// The type with this group and plural, whatever version.
    pub fn find_any_version(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types.iter().find(|t| t.group == group && t.plural == plural)
    }

    /// The type of objects with this `apiVersion` and `kind`.
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind && t.serves(version))
    }

    /// Types served at `group`/`version`.
    pub fn in_group_version<'a>(&'a self, group: &'a str, version: &'a str) -> impl Iterator<Item = &'a ResourceType> {
        self.types.iter().filter(move |t| t.group == group && t.serves(version))
    }

    /// Groups with their served versions, preferred first; core group first.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut groups: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            let entry = match groups.iter_mut().find(|(g, _)| *g == t.group) {
                Some(entry) => entry,
                None => {
                    groups.push((t.group.clone(), Vec::new()));
                    groups.last_mut().expect("just pushed")
                }
            };
            for v in &t.versions {
                if !entry.1.contains(v) {
                    entry.1.push(v.clone());
                }
            }
        }
        for (_, versions) in &mut groups {
            versions.sort_by(|a, b| compare_versions(a, b));
        }
        groups
    }

    /// Replaces every type registered by the CRD `crd_name` with `types`.
    pub fn set_crd_types(&mut self, crd_name: &str, types: Vec<ResourceType>) {
        let before = self.types.clone();
        self.types.retain(|t| t.crd.as_deref() != Some(crd_name));
        self.types.extend(types);
        if self.types != before {
            self.generation += 1;
        }
    }
}

/// Orders Kubernetes versions the way the apiserver prefers them: GA before beta before
/// alpha, higher numbers first, anything unrecognised last alphabetically.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    version_rank(a).cmp(&version_rank(b)).then_with(|| a.cmp(b))
}

fn version_rank(v: &str) -> (u8, std::cmp::Reverse<u64>, std::cmp::Reverse<u64>) {
    let Some(rest) = v.strip_prefix('v') else {
        return (3, std::cmp::Reverse(0), std::cmp::Reverse(0));
    };
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let Ok(major) = digits.parse::<u64>() else {
        return (3, std::cmp::Reverse(0), std::cmp::Reverse(0));
    };
    let tail = &rest[digits.len()..];
    let (stage, minor) = if tail.is_empty() {
        (0, 0)
    } else if let Some(n) = tail.strip_prefix("beta") {
        (1, n.parse().unwrap_or(u64::MAX))
    } else if let Some(n) = tail.strip_prefix("alpha") {
        (2, n.parse().unwrap_or(u64::MAX))
    } else {
        return (3, std::cmp::Reverse(0), std::cmp::Reverse(0));
    };
    if stage != 0 && minor == u64::MAX {
        return (3, std::cmp::Reverse(0), std::cmp::Reverse(0));
    }
    (stage, std::cmp::Reverse(major), std::cmp::Reverse(minor))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_the_apiserver() {
        let mut v = vec!["v1alpha1", "v2", "foo", "v1beta2", "v1", "v1beta1"];
        v.sort_by(|a, b| compare_versions(a, b));
        assert_eq!(v, ["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn helm_chart_is_not_built_in() {
        assert!(Registry::builtin().find("helm.cattle.io", "v1", "helmcharts").is_none());
        assert!(Registry::builtin().find("apps", "v1", "deployments").is_some());
    }
}
