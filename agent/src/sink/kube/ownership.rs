//! What the kube sink may write and delete. KEP-3659 asks tooling never to mutate an
//! ApplySet that belongs to another tool; drover also never moves another set's member
//! into a bundle, never lets a bundle overwrite the agent's own records (ApplySet parents,
//! the status object), and deletes only members it applied itself, in the namespaces its
//! parent records and the allow-list allows. The decisions are pure functions of what the
//! API server returned, so each is tested here without a server.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

use crate::allow::{AllowList, Placement};
use crate::error::{Error, KubeRefusal, Result};

/// The tool name drover writes in `applyset.kubernetes.io/tooling` (`drover/<version>`).
pub(crate) const TOOL: &str = "drover";
/// Name of the ConfigMap the agent reports its status in.
pub(crate) const STATUS_NAME: &str = "drover-status";
/// Prefix of the names of drover's ApplySet parents.
pub(crate) const PARENT_PREFIX: &str = "drover-applyset-";
/// What a refusal says of a parent without a tooling annotation.
const NO_TOOLING: &str = "an unnamed tool (no applyset.kubernetes.io/tooling)";

/// Refuses an existing parent (`parent`, with its `annotations`) that another tool manages.
pub(crate) fn check_tooling(parent: &str, annotations: &BTreeMap<String, String>) -> Result<()> {
    let tooling = annotations.get(super::TOOLING_ANNOTATION);
    let ours = tooling.is_some_and(|t| t.split('/').next() == Some(TOOL));
    match ours {
        true => Ok(()),
        false => Err(Error::KubeRefused {
            what: format!("ConfigMap {parent}"),
            refusal: KubeRefusal::ForeignApplySet {
                parent: format!("ConfigMap {parent}"),
                tooling: tooling.cloned().unwrap_or_else(|| NO_TOOLING.to_string()),
            },
        }),
    }
}

/// Refuses an object (`what`) whose `labels` say it belongs to an ApplySet other than `id`.
pub(crate) fn check_member(what: &str, labels: Option<&BTreeMap<String, String>>, id: &str) -> Result<()> {
    match labels.and_then(|l| l.get(super::PART_OF_LABEL)) {
        Some(other) if other != id => Err(Error::KubeRefused {
            what: what.to_string(),
            refusal: KubeRefusal::OtherApplySet {
                object: what.to_string(),
                id: other.clone(),
            },
        }),
        _ => Ok(()),
    }
}

/// The identity of an object of a bundle, as far as [`check_own_record`] needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Identity<'a> {
    pub(crate) group: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) name: &'a str,
    /// Where it lands (a namespaced object without one lands in the default namespace).
    pub(crate) namespace: Option<&'a str>,
    /// Whether it carries `applyset.kubernetes.io/id` (it is an ApplySet parent).
    pub(crate) is_parent: bool,
}

/// Refuses an object that is one of the agent's own records in `agent_namespace`: an
/// ApplySet parent (drover's or any tool's) or the status ConfigMap.
pub(crate) fn check_own_record(object: Identity<'_>, agent_namespace: &str) -> Result<()> {
    let config_map = (object.group, object.kind) == ("", "ConfigMap");
    let in_agent_namespace = object.namespace == Some(agent_namespace);
    let own = object.is_parent
        || (config_map && in_agent_namespace && (object.name == STATUS_NAME || object.name.starts_with(PARENT_PREFIX)));
    if !own {
        return Ok(());
    }
    let at = object.namespace.map(|ns| format!("{ns}/")).unwrap_or_default();
    let what = format!("{} {at}{}", object.kind, object.name);
    Err(Error::KubeRefused {
        what: what.clone(),
        refusal: KubeRefusal::OwnRecord { object: what },
    })
}

/// Why a member that left its bundle is kept rather than deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kept {
    /// drover is not among its field managers: someone else made it and only labelled it.
    NotApplied,
    /// It lives in a namespace the ApplySet parent does not record.
    OutsideNamespaces,
    /// The namespace allow-list would not let drover apply it.
    NotAllowed,
}

impl Kept {
    /// Why, as the agent's log says it.
    pub(crate) fn why(self) -> &'static str {
        match self {
            Kept::NotApplied => "carries the ApplySet label but drover never applied it",
            Kept::OutsideNamespaces => "outside the namespaces its ApplySet parent records",
            Kept::NotAllowed => "outside the namespace allow-list",
        }
    }
}

/// Where pruning may delete: the namespaces the parent records (its own included) and the
/// allow-list, when set.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds<'a> {
    pub(crate) namespaces: &'a BTreeSet<String>,
    pub(crate) allow: Option<&'a AllowList>,
}

/// A member found in the cluster, as far as [`may_delete`] needs it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    pub(crate) group: &'a str,
    pub(crate) kind: &'a str,
    pub(crate) name: &'a str,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) managers: &'a [ManagedFieldsEntry],
}

/// `Ok` when pruning may delete `member`, else why it is kept.
pub(crate) fn may_delete(member: Member<'_>, bounds: Bounds<'_>) -> std::result::Result<(), Kept> {
    let applied = member
        .managers
        .iter()
        .any(|m| m.manager.as_deref() == Some(super::FIELD_MANAGER));
    if !applied {
        return Err(Kept::NotApplied);
    }
    if member.namespace.is_some_and(|ns| !bounds.namespaces.contains(ns)) {
        return Err(Kept::OutsideNamespaces);
    }
    let placement = match member.namespace {
        Some(ns) => Placement::Namespaced(ns),
        None => Placement::ClusterScoped,
    };
    match bounds.allow {
        Some(allow)
            if allow
                .refusal(member.group, member.kind, member.name, placement)
                .is_some() =>
        {
            Err(Kept::NotAllowed)
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn refuses_an_applyset_owned_by_another_tool() {
        let kubectl = map(&[(super::super::TOOLING_ANNOTATION, "kubectl/v1.32.4")]);
        let err = check_tooling("drover-system/drover-applyset-web", &kubectl).expect_err("kubectl's");
        assert!(matches!(
            &err,
            Error::KubeRefused { refusal: KubeRefusal::ForeignApplySet { tooling, .. }, .. } if tooling == "kubectl/v1.32.4"
        ));
        assert!(
            err.to_string()
                .contains("drover-applyset-web: belongs to kubectl/v1.32.4, not drover"),
            "{err}"
        );
        assert!(
            check_tooling("p", &map(&[])).is_err(),
            "no tooling: not provably drover's"
        );
        let ours = map(&[(super::super::TOOLING_ANNOTATION, "drover/0.1.0")]);
        assert!(check_tooling("p", &ours).is_ok());
        let lookalike = map(&[(super::super::TOOLING_ANNOTATION, "drover-fork/1")]);
        assert!(check_tooling("p", &lookalike).is_err());
    }

    #[test]
    fn refuses_a_member_of_another_applyset_but_not_of_its_own() {
        let other = map(&[(super::super::PART_OF_LABEL, "applyset-other-v1")]);
        let err = check_member("ConfigMap web/shared", Some(&other), "applyset-ours-v1").expect_err("other set");
        assert!(matches!(
            err,
            Error::KubeRefused {
                refusal: KubeRefusal::OtherApplySet { .. },
                ..
            }
        ));
        let ours = map(&[(super::super::PART_OF_LABEL, "applyset-ours-v1")]);
        assert!(check_member("x", Some(&ours), "applyset-ours-v1").is_ok());
        assert!(check_member("x", None, "applyset-ours-v1").is_ok());
    }

    fn identity<'a>(kind: &'a str, name: &'a str, namespace: Option<&'a str>) -> Identity<'a> {
        Identity {
            group: "",
            kind,
            name,
            namespace,
            is_parent: false,
        }
    }

    #[test]
    fn refuses_bundle_objects_that_are_the_agents_own_records() {
        let ns = "drover-system";
        for name in ["drover-applyset-other", "drover-status"] {
            let err = check_own_record(identity("ConfigMap", name, Some(ns)), ns).expect_err(name);
            assert!(matches!(
                err,
                Error::KubeRefused {
                    refusal: KubeRefusal::OwnRecord { .. },
                    ..
                }
            ));
        }
        let parent = Identity {
            is_parent: true,
            ..identity("Secret", "someones-set", Some("web"))
        };
        assert!(check_own_record(parent, ns).is_err(), "any ApplySet parent");
        assert!(check_own_record(identity("ConfigMap", "drover-status", Some("web")), ns).is_ok());
        assert!(check_own_record(identity("Secret", "drover-status", Some(ns)), ns).is_ok());
        assert!(check_own_record(identity("ConfigMap", "settings", Some(ns)), ns).is_ok());
    }

    fn managed_by(manager: &str) -> Vec<ManagedFieldsEntry> {
        vec![ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some("Apply".into()),
            ..ManagedFieldsEntry::default()
        }]
    }

    #[test]
    fn prunes_only_what_drover_applied_in_the_namespaces_its_parent_records() {
        let namespaces: BTreeSet<String> = ["drover-system", "web"].map(String::from).into();
        let bounds = Bounds {
            namespaces: &namespaces,
            allow: None,
        };
        let drover = managed_by("drover");
        let member = |namespace, managers| Member {
            group: "",
            kind: "ConfigMap",
            name: "x",
            namespace,
            managers,
        };
        assert_eq!(may_delete(member(Some("web"), &drover), bounds), Ok(()));
        assert_eq!(may_delete(member(None, &drover), bounds), Ok(()), "cluster-scoped");
        assert_eq!(
            may_delete(member(Some("kube-system"), &drover), bounds),
            Err(Kept::OutsideNamespaces)
        );
        let someone = managed_by("kubectl");
        assert_eq!(may_delete(member(Some("web"), &someone), bounds), Err(Kept::NotApplied));
    }

    #[test]
    fn prunes_only_inside_the_allow_list_when_one_is_set() {
        let namespaces: BTreeSet<String> = ["drover-system", "web", "other"].map(String::from).into();
        let allow = AllowList::new(["web".to_string()], false).expect("an allow-list");
        let bounds = Bounds {
            namespaces: &namespaces,
            allow: Some(&allow),
        };
        let drover = managed_by("drover");
        let member = |namespace| Member {
            group: "",
            kind: "ConfigMap",
            name: "x",
            namespace,
            managers: &drover,
        };
        assert_eq!(may_delete(member(Some("web")), bounds), Ok(()));
        assert_eq!(may_delete(member(Some("other")), bounds), Err(Kept::NotAllowed));
        assert_eq!(may_delete(member(None), bounds), Err(Kept::NotAllowed));
    }
}
