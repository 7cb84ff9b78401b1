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
//! The check runs twice for the `kube` sink: in rendering, with the built-in list of
//! cluster-scoped kinds (the only knowledge the `dir` sink has), and again before any
//! write to the API, with the scope API discovery reports.

use std::collections::BTreeSet;

use crate::error::{Error, Result};

/// Namespaced kinds (group, kind) whose controller writes anywhere in the cluster.
pub const CLUSTER_WIDE_KINDS: &[(&str, &str)] = &[("helm.cattle.io", "HelmChart"), ("k3s.cattle.io", "Addon")];

/// Most refused objects named in one error; the rest are counted.
pub const MAX_NAMED_REFUSALS: usize = 20;

/// The namespaces the agent may write to, and whether it may write cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    namespaces: BTreeSet<String>,
    cluster_scoped: bool,
}

/// Where an object lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// In this namespace.
    Namespaced(&'a str),
    /// Cluster-scoped (or namespace-less with no default: treated as cluster-scoped).
    ClusterScoped,
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
        if let Some(bad) = namespaces.iter().find(|n| !is_dns_label(n)) {
            return Err(Error::Config(format!(
                "allowNamespaces: {bad:?} is not a namespace name (lower-case letters, digits and '-', at most 63)"
            )));
        }
        Ok(AllowList {
            namespaces,
            cluster_scoped,
        })
    }

    /// `None` when the object (of API `group` and `kind`) may be applied, else a
    /// description of the refused object.
    pub fn refusal(&self, group: &str, kind: &str, name: &str, placement: Placement<'_>) -> Option<String> {
        if CLUSTER_WIDE_KINDS.contains(&(group, kind)) && !self.cluster_scoped {
            let ns = match placement {
                Placement::Namespaced(ns) => format!(" in namespace {ns}"),
                Placement::ClusterScoped => String::new(),
            };
            return Some(format!("{kind} {name}{ns} (its controller writes cluster-wide)"));
        }
        match placement {
            Placement::Namespaced(ns) if self.namespaces.contains(ns) => None,
            Placement::Namespaced(ns) => Some(format!("{kind} {name} in namespace {ns}")),
            Placement::ClusterScoped if self.cluster_scoped => None,
            Placement::ClusterScoped if kind == "Namespace" && self.namespaces.contains(name) => None,
            Placement::ClusterScoped => Some(format!("{kind} {name} (cluster-scoped)")),
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
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

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
