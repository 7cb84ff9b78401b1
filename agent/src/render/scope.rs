//! Whether a kind is cluster-scoped: the built-in table ([`crate::allow::builtin_scope`])
//! and the CustomResourceDefinitions of the bundle.

use serde_norway::{Mapping, Value};

use super::objects::str_field;
use crate::allow::api_group;

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
