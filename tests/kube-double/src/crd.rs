//! CustomResourceDefinitions: validating them, turning them into served resource types
//! and writing the status conditions (`NamesAccepted`, `Established`) clients wait for.
//!
//! Schemas are not enforced, versions are not converted (one stored object is served at
//! every version), and only the `status` subresource and a `scale` subresource on
//! `.spec.replicas` are modelled.

use serde_json::{json, Value};

use crate::error::{ApiError, FieldError};
use crate::resources::{compare_versions, ResourceType};

/// Checks what the real apiserver checks first: names, group, scope, one storage version.
pub fn validate(crd: &Value) -> Result<(), ApiError> {
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    let spec = &crd["spec"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (group, plural, kind) = (
        s(&spec["group"]),
        s(&spec["names"]["plural"]),
        s(&spec["names"]["kind"]),
    );
    let mut errors = Vec::new();
    if group.is_empty() {
        errors.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errors.push(FieldError::invalid(
            "spec.group",
            &spec["group"],
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errors.push(FieldError::required("spec.names.plural", ""));
    }
    if kind.is_empty() {
        errors.push(FieldError::required("spec.names.kind", ""));
    }
    if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
        errors.push(FieldError::invalid(
            "metadata.name",
            &json!(name),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        _ => errors.push(FieldError::invalid(
            "spec.scope",
            &spec["scope"],
            "supported values: \"Cluster\", \"Namespaced\"",
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errors.push(FieldError::required(
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    } else if versions.iter().filter(|v| v["storage"] == json!(true)).count() != 1 {
        errors.push(FieldError::invalid(
            "spec.versions",
            &spec["versions"],
            "must have exactly one version marked as storage version",
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "CustomResourceDefinition.apiextensions.k8s.io",
            "apiextensions.k8s.io",
            name,
            errors,
        ))
    }
}

/// The resource type a (valid) CRD serves, or `None` when no version is served.
pub fn resource_type(crd: &Value) -> Option<ResourceType> {
    let spec = &crd["spec"];
    let names = &spec["names"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default()
    };
    let served: Vec<&Value> = spec["versions"]
        .as_array()?
        .iter()
        .filter(|v| v["served"] != json!(false))
        .collect();
    let mut versions: Vec<String> = served
        .iter()
        .filter_map(|v| v["name"].as_str())
        .map(str::to_string)
        .collect();
    versions.sort_by(|a, b| compare_versions(a, b));
    if versions.is_empty() {
        return None;
    }
    let kind = names["kind"].as_str()?.to_string();
    Some(ResourceType {
        group: spec["group"].as_str()?.to_string(),
        versions,
        plural: names["plural"].as_str()?.to_string(),
        singular: names["singular"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        kind,
        namespaced: spec["scope"] == "Namespaced",
        short_names: strings(&names["shortNames"]),
        categories: strings(&names["categories"]),
        status: served.iter().any(|v| v["subresources"]["status"].is_object()),
        scale: served
            .iter()
            .any(|v| v["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"),
        generation: true,
        crd: Some(crd["metadata"]["name"].as_str()?.to_string()),
    })
}

/// Whether the stored CRD says `Established=True`.
pub fn is_established(crd: &Value) -> bool {
    condition(crd, "Established").is_some_and(|c| c["status"] == "True")
}

fn condition<'a>(crd: &'a Value, kind: &str) -> Option<&'a Value> {
    crd["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The status the apiextensions controllers would write: accepted names, stored
/// versions, `NamesAccepted=True`, and `Established=True` when `established`.
/// Transition times of unchanged conditions are kept from `old`.
pub fn status(crd: &Value, old: Option<&Value>, established: bool, now: &str) -> Value {
    let names = &crd["spec"]["names"];
    let mut accepted = names.clone();
    if accepted["singular"].is_null() {
        accepted["singular"] = json!(names["kind"].as_str().unwrap_or_default().to_ascii_lowercase());
    }
    if accepted["listKind"].is_null() {
        accepted["listKind"] = json!(format!("{}List", names["kind"].as_str().unwrap_or_default()));
    }
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"] == json!(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    let mut stored = old
        .and_then(|o| o["status"]["storedVersions"].as_array().cloned())
        .unwrap_or_default();
    for v in storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let cond = |kind: &str, reason: &str, message: &str| {
        let since = old
            .and_then(|o| condition(o, kind))
            .filter(|c| c["status"] == "True")
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": since})
    };
    let mut conditions = vec![cond("NamesAccepted", "NoConflicts", "no conflicts found")];
    if established {
        conditions.push(cond(
            "Established",
            "InitialNamesAccepted",
            "the initial names have been accepted",
        ));
    }
    json!({"acceptedNames": accepted, "conditions": conditions, "storedVersions": stored})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "helmcharts.helm.cattle.io"},
            "spec": {"group": "helm.cattle.io", "scope": "Namespaced",
                "names": {"plural": "helmcharts", "kind": "HelmChart", "singular": "helmchart"},
                "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}},
                             {"name": "v1beta1", "served": true, "storage": false}]}
        })
    }

    #[test]
    fn a_crd_becomes_a_resource_type() {
        validate(&crd()).unwrap();
        let t = resource_type(&crd()).unwrap();
        assert_eq!(t.versions, ["v1", "v1beta1"]);
        assert!(t.namespaced && t.status && t.generation);
        assert_eq!(t.crd.as_deref(), Some("helmcharts.helm.cattle.io"));
    }

    #[test]
    fn bad_crds_are_invalid() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong");
        let err = validate(&c).unwrap_err();
        assert_eq!(err.code, 422);
        assert!(err.message.contains("must be spec.names.plural"), "{}", err.message);
        let mut c = crd();
        c["spec"]["versions"][1]["storage"] = json!(true);
        assert!(validate(&c).is_err());
    }

    #[test]
    fn status_conditions() {
        let s = status(&crd(), None, true, "t0");
        let mut obj = crd();
        obj["status"] = s;
        assert!(is_established(&obj));
        assert_eq!(obj["status"]["storedVersions"], json!(["v1"]));
        let again = status(&crd(), Some(&obj), true, "t1");
        assert_eq!(again, obj["status"], "unchanged conditions keep their times");
        assert!(!is_established(&json!({"status": status(&crd(), None, false, "t")})));
        // still installing
    }
}
