//! Per-kind rules the real apiserver applies on every write (its "REST strategies"),
//! reduced to the ones clients notice: name validation, a few defaults, immutable
//! fields, and `metadata.generation`.

use serde_json::{json, Value};

use crate::apply::get_path;
use crate::error::{ApiError, FieldError};
use crate::resources::ResourceType;

/// Namespaces the real apiserver refuses to delete.
pub const PROTECTED_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// Namespaces that exist from the start, as on a fresh k3s server.
pub const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn is(rt: &ResourceType, group: &str, plural: &str) -> bool {
    rt.group == group && rt.plural == plural && rt.crd.is_none()
}

fn path(p: &str) -> Vec<String> {
    p.split('.').map(str::to_string).collect()
}

/// Rejects names the real apiserver rejects (lowercase RFC 1123 subdomains; labels for
/// namespaces and services; RBAC names only exclude `/` and `%`).
pub fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let rbac = rt.group == "rbac.authorization.k8s.io";
    let label = is(rt, "", "namespaces") || is(rt, "", "services");
    let problem = if rbac {
        (name.is_empty() || name == "." || name == ".." || name.contains(['/', '%']))
            .then_some("may not contain '/' or '%' and may not be '.' or '..'")
    } else if label {
        (!is_dns_label(name)).then_some(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', \
             regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        )
    } else {
        (name.len() > 253 || !name.split('.').all(is_dns_label)).then_some(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', \
             and must start and end with an alphanumeric character (e.g. 'example.com', regex used for \
             validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )
    };
    match problem {
        None => Ok(()),
        Some(msg) => Err(ApiError::invalid(
            &rt.qualified_kind(),
            &rt.group,
            name,
            vec![FieldError::invalid("metadata.name", &json!(name), msg)],
        )),
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Rejects bodies the real apiserver could not decode into its types: metadata, labels
/// and annotations must be maps (of strings), and for built-in kinds so must `spec`,
/// `status`, `data`, `binaryData` and `stringData` when present.
pub fn check_shape(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let kind = &rt.kind;
    let meta = &obj["metadata"];
    if !meta.is_object() {
        return Err(ApiError::bad_request(format!("{kind}: metadata must be a map")));
    }
    for field in ["labels", "annotations"] {
        match &meta[field] {
            Value::Null => {}
            Value::Object(m) if m.values().all(Value::is_string) => {}
            _ => {
                return Err(ApiError::bad_request(format!(
                    "{kind}: metadata.{field} must be a map of strings to strings"
                )))
            }
        }
    }
    if rt.crd.is_none() {
        for field in ["spec", "status", "data", "binaryData", "stringData"] {
            if !matches!(obj.get(field), None | Some(Value::Null) | Some(Value::Object(_))) {
                return Err(ApiError::bad_request(format!("{kind}: {field} must be a map")));
            }
        }
    }
    Ok(())
}

/// Server-populated fields and defaults, applied on every write (`old` is the stored
/// object for updates).
pub fn default_fields(rt: &ResourceType, old: Option<&Value>, new: &mut Value) {
    let name = new["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if is(rt, "", "namespaces") {
        new["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
        if new["spec"]["finalizers"].is_null() {
            new["spec"]["finalizers"] = json!(["kubernetes"]);
        }
        if new["status"]["phase"].is_null() {
            new["status"]["phase"] = json!("Active");
        }
    }
    if is(rt, "", "secrets") {
        if let Some(Value::Object(plain)) = new.as_object_mut().and_then(|m| m.remove("stringData")) {
            for (k, v) in plain {
                new["data"][k] = json!(base64(v.as_str().unwrap_or_default().as_bytes()));
            }
        }
        if new["type"].is_null() {
            new["type"] = json!("Opaque");
        }
    }
    let replicated = ["deployments", "statefulsets", "replicasets"]
        .iter()
        .any(|p| is(rt, "apps", p));
    if replicated && new["spec"]["replicas"].is_null() {
        new["spec"]["replicas"] = json!(1);
    }
    if is(rt, "", "services") {
        if new["spec"]["type"].is_null() {
            new["spec"]["type"] = json!("ClusterIP");
        }
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).map(str::to_string);
        if new["spec"]["clusterIP"].is_null() && new["spec"]["type"] != "ExternalName" {
            let ip = old_ip.unwrap_or_else(|| format!("10.43.{}.{}", fastrand::u8(..), fastrand::u8(1..255)));
            new["spec"]["clusterIP"] = json!(ip);
        }
        if !new["spec"]["clusterIP"].is_null() && new["spec"]["clusterIPs"].is_null() {
            new["spec"]["clusterIPs"] = json!([new["spec"]["clusterIP"].clone()]);
        }
    }
}

/// Standard base64 with padding, as Secret `data` holds it.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Fields an update may not change, with the apiserver's wording.
pub fn check_immutable(rt: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    let mut immutable = |p: &str, msg: &str| {
        let (before, after) = (get_path(old, &path(p)), get_path(new, &path(p)));
        if before.is_some() && before != after {
            errors.push(FieldError::invalid(p, after.unwrap_or(&Value::Null), msg));
        }
    };
    if ["deployments", "statefulsets", "daemonsets", "replicasets"]
        .iter()
        .any(|p| is(rt, "apps", p))
    {
        immutable("spec.selector", "field is immutable");
    }
    if is(rt, "batch", "jobs") {
        immutable("spec.selector", "field is immutable");
        immutable("spec.template", "field is immutable");
        immutable("spec.completions", "field is immutable");
    }
    if is(rt, "", "services") {
        immutable("spec.clusterIP", "field is immutable");
    }
    if is(rt, "apiextensions.k8s.io", "customresourcedefinitions") {
        immutable("spec.scope", "field is immutable");
        immutable("spec.group", "field is immutable");
    }
    if (is(rt, "", "configmaps") || is(rt, "", "secrets")) && old["immutable"] == json!(true) {
        for f in ["data", "binaryData", "stringData", "immutable"] {
            if old.get(f) != new.get(f) {
                errors.push(FieldError {
                    reason: "FieldValueForbidden",
                    field: f.to_string(),
                    message: "Forbidden: field is immutable when `immutable` is set".to_string(),
                });
            }
        }
    }
    if is(rt, "apps", "statefulsets") {
        const UPDATABLE: &[&str] = &[
            "replicas",
            "ordinals",
            "template",
            "updateStrategy",
            "revisionHistoryLimit",
            "persistentVolumeClaimRetentionPolicy",
            "minReadySeconds",
        ];
        let rest = |o: &Value| {
            let mut spec = o.get("spec").cloned().unwrap_or(json!({}));
            if let Some(m) = spec.as_object_mut() {
                m.retain(|k, _| !UPDATABLE.contains(&k.as_str()) && k != "selector");
            }
            spec
        };
        if rest(old) != rest(new) {
            errors.push(FieldError {
                reason: "FieldValueForbidden",
                field: "spec".to_string(),
                message: "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                          'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and \
                          'minReadySeconds' are forbidden"
                    .to_string(),
            });
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        let name = new["metadata"]["name"].as_str().unwrap_or_default();
        Err(ApiError::invalid(&rt.qualified_kind(), &rt.group, name, errors))
    }
}

/// Sets `metadata.generation`: 1 on create, +1 when anything outside metadata and
/// status changes; absent for kinds that do not track it.
pub fn set_generation(rt: &ResourceType, old: Option<&Value>, new: &mut Value) {
    if !rt.generation {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("generation");
        }
        return;
    }
    let spec_of = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
        }
        o
    };
    let generation = match old {
        None => 1,
        Some(old) => {
            let g = old["metadata"]["generation"].as_u64().unwrap_or(1);
            if spec_of(old) == spec_of(new) {
                g
            } else {
                g + 1
            }
        }
    };
    new["metadata"]["generation"] = json!(generation);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;
    use crate::resources::Registry;

    fn rt(group: &str, plural: &str) -> ResourceType {
        Registry::builtin().find(group, "v1", plural).unwrap().clone()
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        let cm = rt("", "configmaps");
        assert!(check_shape(&cm, &json!({"metadata": {"labels": {"a": "b"}}, "data": {}})).is_ok());
        for bad in [
            json!({"metadata": "x"}),
            json!({"metadata": {"labels": "x"}}),
            json!({"metadata": {"annotations": {"a": 1}}}),
            json!({"metadata": {}, "data": ["x"]}),
        ] {
            assert_eq!(check_shape(&cm, &bad).unwrap_err().code, 400, "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name(&rt("", "configmaps"), "a.b-c").is_ok());
        assert!(validate_name(&rt("", "configmaps"), "Foo").is_err());
        assert!(validate_name(&rt("", "namespaces"), "a.b").is_err());
        assert!(validate_name(&rt("rbac.authorization.k8s.io", "clusterroles"), "system:x").is_ok());
    }

    #[test]
    fn selector_is_immutable() {
        let d = rt("apps", "deployments");
        let old = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "a"}}}});
        let new = json!({"metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "b"}}}});
        let err = check_immutable(&d, &old, &new).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"b\"}}: field is immutable"
        );
        assert!(check_immutable(&d, &old, &old).is_ok());
    }

    #[test]
    fn secrets_turn_string_data_into_data() {
        assert_eq!(
            [base64(b""), base64(b"f"), base64(b"fo"), base64(b"foo")],
            ["", "Zg==", "Zm8=", "Zm9v"]
        );
        let mut s = json!({"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}, "data": {"a": "YQ=="}});
        default_fields(&rt("", "secrets"), None, &mut s);
        assert_eq!(s["data"], json!({"a": "YQ==", "pw": "aHVudGVyMg=="}));
        assert!(s.get("stringData").is_none());
        assert_eq!(s["type"], "Opaque");
    }

    #[test]
    fn generation_counts_spec_changes() {
        let d = rt("apps", "deployments");
        let mut a = json!({"metadata": {}, "spec": {"replicas": 1}});
        set_generation(&d, None, &mut a);
        let mut b = a.clone();
        b["status"] = json!({"x": 1});
        b["metadata"]["labels"] = json!({"l": "v"});
        set_generation(&d, Some(&a), &mut b);
        assert_eq!(b["metadata"]["generation"], 1);
        let mut c = b.clone();
        c["spec"]["replicas"] = json!(2);
        set_generation(&d, Some(&b), &mut c);
        assert_eq!(c["metadata"]["generation"], 2);
    }
}
