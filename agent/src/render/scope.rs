//! Whether a kind is cluster-scoped: the built-in table ([`crate::allow::builtin_scope`])
//! and the CustomResourceDefinitions of the bundle. Rendering learns the bundle's CRDs as
//! it goes; what it learnt comes out with the objects ([`super::Rendering`]), so the
//! allow-list and the sinks place objects by the same rule.

use std::collections::BTreeMap;

use serde_norway::{Mapping, Value};

use super::objects::str_field;
use crate::allow::{api_group, builtin_scope};

/// The scopes rendering knows: built-in kinds and the kinds of the bundle's CRDs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scopes {
    /// (group, kind) → cluster-scoped, from the bundle's CRDs.
    crds: BTreeMap<(String, String), bool>,
}

impl Scopes {
    /// Whether (`group`, `kind`) is cluster-scoped (`Some(true)`), namespaced, or unknown.
    pub fn cluster_scoped(&self, group: &str, kind: &str) -> Option<bool> {
        builtin_scope(group, kind).or_else(|| self.crds.get(&(group.to_string(), kind.to_string())).copied())
    }

    /// Learns the kind `obj` defines if it is a CRD; returns that kind and its scope the
    /// first time it is learnt.
    pub(super) fn learn(&mut self, obj: &Mapping) -> Option<((String, String), bool)> {
        let (key, cluster_scoped) = crd_scope(obj)?;
        if self.crds.contains_key(&key) {
            return None;
        }
        self.crds.insert(key.clone(), cluster_scoped);
        Some((key, cluster_scoped))
    }
}

/// The (group, kind) a CustomResourceDefinition defines, and whether `spec.scope` makes
/// it cluster-scoped. The group is `spec.group`, else what follows the first dot of the
/// CRD's name (`<plural>.<group>`).
pub(crate) fn crd_scope(obj: &Mapping) -> Option<((String, String), bool)> {
    if str_field(obj, "kind") != Some("CustomResourceDefinition")
        || api_group(str_field(obj, "apiVersion").unwrap_or_default()) != "apiextensions.k8s.io"
    {
        return None;
    }
    let spec = obj.get("spec").and_then(Value::as_mapping)?;
    let cluster_scoped = match str_field(spec, "scope")? {
        "Cluster" => true,
        "Namespaced" => false,
        _ => return None,
    };
    let kind = spec
        .get("names")
        .and_then(Value::as_mapping)
        .and_then(|n| str_field(n, "kind"))?;
    let group = str_field(spec, "group").or_else(|| {
        obj.get("metadata")
            .and_then(Value::as_mapping)
            .and_then(|m| str_field(m, "name"))
            .and_then(|n| n.split_once('.'))
            .map(|(_, group)| group)
    })?;
    Some(((group.to_string(), kind.to_string()), cluster_scoped))
}
