//! The namespace allow-list (least privilege): when the operator gives one, the agent
//! refuses every object whose namespace is not on it, and every cluster-scoped object
//! unless cluster-scoped objects are allowed too. A Namespace object named on the list is
//! allowed (a bundle may create the namespace it is allowed to fill).
//!
//! Some namespaced objects act cluster-wide: a k3s `HelmChart` (helm.cattle.io) makes the
//! helm-controller install a chart with its own cluster-admin rights, into any namespace,
//! cluster-scoped objects included; a k3s `Addon` (k3s.cattle.io) applies a manifest file
//! the same way. They count as cluster-scoped.
//!
//! Refusal is per bundle: one object outside the list makes the whole bundle an Error and
//! none of it is applied, so a cluster never runs half a bundle; the version applied
//! before stays. Every refused object is named (kind, name, namespace) in the error.
//!
//! Scope is a property of the (API group, kind) pair, never of the kind name alone: a
//! `Namespace` of group `example.com` is not a namespace. The `dir` sink has no API server
//! to ask, so rendering places objects with [`builtin_scope`] (the built-in Kubernetes and
//! k3s kinds) plus the CRDs of the same bundle. Any other kind has an unknown scope; with
//! the `dir` sink it must pass both as cluster-scoped and as namespaced (fail closed),
//! because the API server ignores `metadata.namespace` on a cluster-scoped object.
//!
//! The check runs once per bundle, after rendering and before the sink writes anything
//! ([`AllowList::check`]), on the rendered objects. Each sink places them: the `dir` sink
//! with [`placement_offline`], the `kube` sink with the scope API discovery reports for
//! kinds neither the built-in table nor the bundle's CRDs know.

use std::collections::BTreeSet;

use crate::error::{Error, Result};
use crate::format::check_dns_label;

/// Namespaced kinds (group, kind) whose controller writes anywhere in the cluster.
pub const CLUSTER_WIDE_KINDS: &[(&str, &str)] = &[("helm.cattle.io", "HelmChart"), ("k3s.cattle.io", "Addon")];

/// Where the objects of one API group live: `(group, cluster-scoped kinds, namespaced kinds)`.
/// Built into Kubernetes up to 1.34 (plus removed kinds a bundle may still name), and the
/// groups k3s installs with its own CRDs (traefik ships with k3s by default). A kind of one
/// of these groups not listed has an unknown scope, like any kind of another group.
pub const KNOWN_SCOPES: &[(&str, &[&str], &[&str])] = &[
    (
        "",
        &["ComponentStatus", "Namespace", "Node", "PersistentVolume"],
        &[
            "Binding",
            "ConfigMap",
            "Endpoints",
            "Event",
            "LimitRange",
            "PersistentVolumeClaim",
            "Pod",
            "PodTemplate",
            "ReplicationController",
            "ResourceQuota",
            "Secret",
            "Service",
            "ServiceAccount",
        ],
    ),
    (
        "admissionregistration.k8s.io",
        &[
            "MutatingAdmissionPolicy",
            "MutatingAdmissionPolicyBinding",
            "MutatingWebhookConfiguration",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionPolicyBinding",
            "ValidatingWebhookConfiguration",
        ],
        &[],
    ),
    ("apiextensions.k8s.io", &["CustomResourceDefinition"], &[]),
    ("apiregistration.k8s.io", &["APIService"], &[]),
    (
        "apps",
        &[],
        &[
            "ControllerRevision",
            "DaemonSet",
            "Deployment",
            "ReplicaSet",
            "StatefulSet",
        ],
    ),
    ("authentication.k8s.io", &["SelfSubjectReview", "TokenReview"], &[]),
    (
        "authorization.k8s.io",
        &[
            "SelfSubjectAccessReview",
            "SelfSubjectRulesReview",
            "SubjectAccessReview",
        ],
        &["LocalSubjectAccessReview"],
    ),
    ("autoscaling", &[], &["HorizontalPodAutoscaler"]),
    ("batch", &[], &["CronJob", "Job"]),
    (
        "certificates.k8s.io",
        &["CertificateSigningRequest", "ClusterTrustBundle"],
        &["PodCertificateRequest"],
    ),
    ("coordination.k8s.io", &[], &["Lease", "LeaseCandidate"]),
    ("discovery.k8s.io", &[], &["EndpointSlice"]),
    ("events.k8s.io", &[], &["Event"]),
    (
        "extensions",
        &["PodSecurityPolicy"],
        &["DaemonSet", "Deployment", "Ingress", "NetworkPolicy", "ReplicaSet"],
    ),
    (
        "flowcontrol.apiserver.k8s.io",
        &["FlowSchema", "PriorityLevelConfiguration"],
        &[],
    ),
    ("internal.apiserver.k8s.io", &["StorageVersion"], &[]),
    (
        "networking.k8s.io",
        &["IPAddress", "IngressClass", "ServiceCIDR"],
        &["Ingress", "NetworkPolicy"],
    ),
    ("node.k8s.io", &["RuntimeClass"], &[]),
    ("policy", &["PodSecurityPolicy"], &["PodDisruptionBudget"]),
    (
        "rbac.authorization.k8s.io",
        &["ClusterRole", "ClusterRoleBinding"],
        &["Role", "RoleBinding"],
    ),
    (
        "resource.k8s.io",
        &["DeviceClass", "DeviceTaintRule", "ResourceClass", "ResourceSlice"],
        &["PodSchedulingContext", "ResourceClaim", "ResourceClaimTemplate"],
    ),
    ("scheduling.k8s.io", &["PriorityClass"], &[]),
    (
        "storage.k8s.io",
        &[
            "CSIDriver",
            "CSINode",
            "StorageClass",
            "VolumeAttachment",
            "VolumeAttributesClass",
        ],
        &["CSIStorageCapacity"],
    ),
    ("storagemigration.k8s.io", &["StorageVersionMigration"], &[]),
    // k3s's own CRDs.
    ("helm.cattle.io", &[], &["HelmChart", "HelmChartConfig"]),
    ("k3s.cattle.io", &["ETCDSnapshotFile"], &["Addon"]),
    (
        "traefik.io",
        &[],
        &[
            "IngressRoute",
            "IngressRouteTCP",
            "IngressRouteUDP",
            "Middleware",
            "MiddlewareTCP",
            "ServersTransport",
            "ServersTransportTCP",
            "TLSOption",
            "TLSStore",
            "TraefikService",
        ],
    ),
];

/// `Some(true)` when the built-in `kind` of API `group` is cluster-scoped, `Some(false)`
/// when it is namespaced, `None` when the agent does not know it.
pub fn builtin_scope(group: &str, kind: &str) -> Option<bool> {
    let (_, cluster, namespaced) = KNOWN_SCOPES.iter().find(|(g, _, _)| *g == group)?;
    if cluster.contains(&kind) {
        Some(true)
    } else if namespaced.contains(&kind) {
        Some(false)
    } else {
        None
    }
}

/// The API group of an `apiVersion` (`""` for the core group's `v1`).
pub fn api_group(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(group, _)| group)
}

/// Most refused objects named in one error; the rest are counted.
pub const MAX_NAMED_REFUSALS: usize = 20;

/// The namespaces the agent may write to, and whether it may write cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    namespaces: BTreeSet<String>,
    cluster_scoped: bool,
}

/// One object as the allow-list judges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Its API group (`""` for the core group).
    pub group: &'a str,
    /// Its kind.
    pub kind: &'a str,
    /// Its name (or the prefix the API server names it from).
    pub name: &'a str,
    /// Where it lands.
    pub placement: Placement<'a>,
}

/// Where an object lands when no API server is asked, given whether its kind is
/// cluster-scoped (`None`: unknown) and the namespace it names. The API server ignores
/// the namespace of a cluster-scoped object; a namespaced object left without a namespace
/// gets the stricter reading (cluster-scoped); a kind of unknown scope must be allowed
/// both ways.
pub fn placement_offline(cluster_scoped: Option<bool>, namespace: Option<&str>) -> Placement<'_> {
    match (cluster_scoped, namespace) {
        (Some(true), _) | (Some(false), None) => Placement::ClusterScoped,
        (Some(false), Some(ns)) => Placement::Namespaced(ns),
        (None, ns) => Placement::Unknown(ns),
    }
}

/// Where an object lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// In this namespace.
    Namespaced(&'a str),
    /// Cluster-scoped (or namespace-less with no default: treated as cluster-scoped).
    ClusterScoped,
    /// A kind whose scope the agent does not know, with the namespace the object names, if
    /// any: it must be allowed both ways.
    Unknown(Option<&'a str>),
}

impl AllowList {
    /// An allow-list of `namespaces` (at least one), with cluster-scoped objects allowed or not.
    pub fn new(namespaces: impl IntoIterator<Item = String>, cluster_scoped: bool) -> Result<Self> {
        let namespaces: BTreeSet<String> = namespaces.into_iter().collect();
        if namespaces.is_empty() {
            return Err(Error::Config(
                "allowNamespaces: give at least one namespace (without it every namespace is allowed)".into(),
            ));
        }
        if let Some(bad) = namespaces.iter().find(|n| check_dns_label(n).is_err()) {
            return Err(Error::Config(format!(
                "allowNamespaces: {bad:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
            )));
        }
        Ok(AllowList {
            namespaces,
            cluster_scoped,
        })
    }

    /// Checks every object of bundle `what`: `Ok` when all may be applied, else an
    /// [`Error::NotAllowed`] naming each refused object, in order.
    pub fn check<'a>(&self, what: &str, objects: impl IntoIterator<Item = Candidate<'a>>) -> Result<()> {
        let refused: Vec<String> = objects
            .into_iter()
            .filter_map(|o| self.refusal(o.group, o.kind, o.name, o.placement))
            .inspect(|r| tracing::warn!(bundle = what, object = %r, "object outside the namespace allow-list"))
            .collect();
        match refused.is_empty() {
            true => Ok(()),
            false => Err(self.refused(what, &refused)),
        }
    }

    /// `None` when the object (of API `group` and `kind`) may be applied, else a
    /// description of the refused object.
    pub fn refusal(&self, group: &str, kind: &str, name: &str, placement: Placement<'_>) -> Option<String> {
        if CLUSTER_WIDE_KINDS.contains(&(group, kind)) && !self.cluster_scoped {
            let ns = match placement {
                Placement::Namespaced(ns) | Placement::Unknown(Some(ns)) => format!(" in namespace {ns}"),
                Placement::ClusterScoped | Placement::Unknown(None) => String::new(),
            };
            return Some(format!("{kind} {name}{ns} (its controller writes cluster-wide)"));
        }
        match placement {
            Placement::Namespaced(ns) if self.namespaces.contains(ns) => None,
            Placement::Namespaced(ns) => Some(format!("{kind} {name} in namespace {ns}")),
            Placement::ClusterScoped if self.cluster_scoped => None,
            Placement::ClusterScoped if (group, kind) == ("", "Namespace") && self.namespaces.contains(name) => None,
            Placement::ClusterScoped => Some(format!("{kind} {name} (cluster-scoped)")),
            Placement::Unknown(ns) if self.cluster_scoped && ns.is_none_or(|ns| self.namespaces.contains(ns)) => None,
            Placement::Unknown(ns) => {
                let ns = ns.map(|ns| format!(" in namespace {ns}")).unwrap_or_default();
                let group = if group.is_empty() { "core" } else { group };
                Some(format!(
                    "{kind} {name}{ns} (scope of {kind}.{group} unknown without its \
                     CustomResourceDefinition in the bundle: counted as cluster-scoped; include \
                     the CRD, or use the kube sink, which asks the API server)"
                ))
            }
        }
    }

    /// The error for a bundle (`what`) with `refused` objects (not empty).
    pub fn refused(&self, what: &str, refused: &[String]) -> Error {
        let mut named = refused
            .iter()
            .take(MAX_NAMED_REFUSALS)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ");
        if refused.len() > MAX_NAMED_REFUSALS {
            named.push_str(&format!("; and {} more", refused.len() - MAX_NAMED_REFUSALS));
        }
        Error::NotAllowed {
            what: what.to_string(),
            allowed: self.describe(),
            objects: named,
        }
    }

    /// What the list allows, for messages: `namespaces shop, web; no cluster-scoped objects`.
    pub fn describe(&self) -> String {
        let list = self.namespaces.iter().cloned().collect::<Vec<_>>().join(", ");
        let cluster = if self.cluster_scoped {
            "cluster-scoped objects allowed"
        } else {
            "no cluster-scoped objects"
        };
        format!("namespaces {list}; {cluster}")
    }
}

/// A Kubernetes namespace name: an RFC 1123 label.
#[cfg(test)]
mod tests {
    use super::*;

    fn shop(cluster_scoped: bool) -> AllowList {
        AllowList::new(["shop".to_string(), "web".to_string()], cluster_scoped).expect("valid")
    }

    #[test]
    fn objects_in_listed_namespaces_pass_others_are_named() {
        let allow = shop(false);
        assert_eq!(
            allow.refusal("", "Deployment", "pos", Placement::Namespaced("shop")),
            None
        );
        assert_eq!(
            allow
                .refusal("", "Secret", "token", Placement::Namespaced("kube-system"))
                .as_deref(),
            Some("Secret token in namespace kube-system")
        );
    }

    #[test]
    fn cluster_scoped_objects_need_the_opt_in_except_a_listed_namespace_itself() {
        let allow = shop(false);
        assert_eq!(
            allow
                .refusal("", "ClusterRole", "admin", Placement::ClusterScoped)
                .as_deref(),
            Some("ClusterRole admin (cluster-scoped)")
        );
        assert_eq!(allow.refusal("", "Namespace", "shop", Placement::ClusterScoped), None);
        assert!(allow
            .refusal("", "Namespace", "kube-system", Placement::ClusterScoped)
            .is_some());
        assert_eq!(
            shop(true).refusal("", "ClusterRole", "admin", Placement::ClusterScoped),
            None
        );
    }

    #[test]
    fn helm_charts_and_addons_count_as_cluster_scoped_wherever_they_sit() {
        let allow = shop(false);
        assert_eq!(
            allow
                .refusal("helm.cattle.io", "HelmChart", "grafana", Placement::Namespaced("shop"))
                .as_deref(),
            Some("HelmChart grafana in namespace shop (its controller writes cluster-wide)")
        );
        assert!(allow
            .refusal("k3s.cattle.io", "Addon", "a", Placement::Namespaced("shop"))
            .is_some());
        assert_eq!(
            shop(true).refusal("helm.cattle.io", "HelmChart", "grafana", Placement::Namespaced("shop")),
            None
        );
        // Only those groups: another CRD of the same kind name is an ordinary object.
        assert_eq!(
            allow.refusal("example.com", "HelmChart", "x", Placement::Namespaced("shop")),
            None
        );
    }

    #[test]
    fn built_in_scope_is_looked_up_by_group_and_kind() {
        assert_eq!(builtin_scope("rbac.authorization.k8s.io", "ClusterRole"), Some(true));
        assert_eq!(builtin_scope("networking.k8s.io", "ServiceCIDR"), Some(true));
        assert_eq!(builtin_scope("", "ConfigMap"), Some(false));
        // The same kind name in another group is not known.
        assert_eq!(builtin_scope("", "ClusterRole"), None);
        assert_eq!(builtin_scope("example.com", "Namespace"), None);
        // A kind of a known group that is not listed (a newer one) is not known either.
        assert_eq!(builtin_scope("resource.k8s.io", "SomethingNew"), None);
        assert_eq!(api_group("v1"), "");
        assert_eq!(api_group("networking.k8s.io/v1"), "networking.k8s.io");
        // Only the core group's Namespace may be created by name.
        let allow = shop(false);
        assert!(allow
            .refusal("example.com", "Namespace", "shop", Placement::ClusterScoped)
            .is_some());
    }

    #[test]
    fn an_object_of_unknown_scope_must_be_allowed_both_ways() {
        assert!(shop(false)
            .refusal("x.io", "Widget", "w", Placement::Unknown(Some("shop")))
            .is_some_and(|r| r.contains("unknown")));
        assert_eq!(
            shop(true).refusal("x.io", "Widget", "w", Placement::Unknown(Some("shop"))),
            None
        );
        assert!(shop(true)
            .refusal("x.io", "Widget", "w", Placement::Unknown(Some("kube-system")))
            .is_some());
    }

    #[test]
    fn offline_a_namespaced_object_without_namespace_counts_as_cluster_scoped() {
        assert_eq!(placement_offline(Some(true), Some("shop")), Placement::ClusterScoped);
        assert_eq!(placement_offline(Some(false), None), Placement::ClusterScoped);
        assert_eq!(
            placement_offline(Some(false), Some("shop")),
            Placement::Namespaced("shop")
        );
        assert_eq!(placement_offline(None, Some("shop")), Placement::Unknown(Some("shop")));
    }

    #[test]
    fn a_check_refuses_the_bundle_naming_each_refused_object_in_order() {
        let candidate = |name, ns| Candidate {
            group: "",
            kind: "ConfigMap",
            name,
            placement: Placement::Namespaced(ns),
        };
        let allow = shop(false);
        allow.check("bundle web", [candidate("a", "shop")]).expect("allowed");
        let err = allow
            .check(
                "bundle web",
                [candidate("b", "x"), candidate("a", "shop"), candidate("c", "y")],
            )
            .expect_err("refused")
            .to_string();
        assert!(
            err.ends_with("ConfigMap b in namespace x; ConfigMap c in namespace y"),
            "{err}"
        );
    }

    #[test]
    fn the_error_names_every_refused_object_up_to_a_bound() {
        let allow = shop(false);
        let refused: Vec<String> = (0..25).map(|i| format!("Secret s{i} in namespace x")).collect();
        let err = allow.refused("bundle web", &refused).to_string();
        assert!(
            err.contains("bundle web") && err.contains("namespaces shop, web"),
            "{err}"
        );
        assert!(
            err.contains("Secret s19 in namespace x") && !err.contains("s20 "),
            "{err}"
        );
        assert!(err.contains("and 5 more"), "{err}");
    }

    #[test]
    fn rejects_an_empty_list_and_names_that_are_not_namespaces() {
        assert!(AllowList::new(Vec::<String>::new(), false).is_err());
        let err = AllowList::new(["Shop_1".to_string()], false)
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("\"Shop_1\""), "{err}");
    }
}
