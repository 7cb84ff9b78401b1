//! Server-side apply and field ownership (`metadata.managedFields`).
//!
//! The model is a simplification of structured-merge-diff, the library behind the real
//! apiserver, that keeps the parts clients observe:
//! - a *field* is a leaf of the object: a scalar, a list (lists are atomic here; the real
//!   one merges many lists by key), or an empty map; maps are descended into;
//! - every manager entry (`manager`, `operation` Apply/Update, `subresource`) owns a set
//!   of fields, stored in the real `fieldsV1` format (`{"f:spec":{"f:replicas":{}}}`);
//! - an apply sets the applied leaves, fails with a conflict when that changes a field
//!   another entry owns (unless forced, which moves the ownership), and removes fields
//!   the applier owned before, no longer applies and nobody else owns;
//! - an update (create, PUT, merge/strategic/JSON patch) gives its manager the fields it
//!   changed and takes them from everybody else.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// Path of one field from the object root: `["spec", "replicas"]`.
pub type FieldPath = Vec<String>;

/// The fields one manager entry owns.
pub type FieldSet = BTreeSet<FieldPath>;

/// Which part of an object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The main resource. When the kind has a status subresource, `.status` is out of
    /// scope (main-resource writes never change it).
    Main {
        /// Whether `.status` belongs to the `/status` subresource.
        status_subresource: bool,
    },
    /// The `/status` subresource: only `.status`.
    Status,
    /// The `/scale` subresource: only `.spec.replicas`.
    Scale,
}

impl Scope {
    /// The `subresource` recorded in managedFields entries (`""` for the main resource).
    pub fn subresource(self) -> &'static str {
        match self {
            Scope::Main { .. } => "",
            Scope::Status => "status",
            Scope::Scale => "scale",
        }
    }

    fn includes_top(self, key: &str) -> bool {
        match self {
            Scope::Main { status_subresource } => {
                !(matches!(key, "apiVersion" | "kind") || (status_subresource && key == "status"))
            }
            Scope::Status => key == "status",
            Scope::Scale => key == "spec",
        }
    }
}

/// Metadata the server owns: never part of any manager's fields.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The leaves of `obj` within `scope`, with their values. Nulls are not fields.
pub fn leaves(obj: &Value, scope: Scope) -> BTreeMap<FieldPath, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else { return out };
    for (key, value) in map {
        if !scope.includes_top(key) {
            continue;
        }
        let mut path = vec![key.clone()];
        match (key.as_str(), value) {
            ("metadata", Value::Object(meta)) => {
                for (mk, mv) in meta {
                    if SERVER_METADATA.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(mk.clone());
                    collect(mv, &mut path, &mut out);
                    path.pop();
                }
            }
            ("spec", Value::Object(spec)) if scope == Scope::Scale => {
                if let Some(replicas) = spec.get("replicas") {
                    path.push("replicas".to_string());
                    collect(replicas, &mut path, &mut out);
                }
            }
            _ => collect(value, &mut path, &mut out),
        }
    }
    out
}

fn collect(value: &Value, path: &mut FieldPath, out: &mut BTreeMap<FieldPath, Value>) {
    match value {
        Value::Null => {}
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(k.clone());
                collect(v, path, out);
                path.pop();
            }
        }
        other => {
            out.insert(path.clone(), other.clone());
        }
    }
}

/// Whether one path contains the other (or they are equal).
fn overlaps(a: &[String], b: &[String]) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// The value at `path`, if every step exists.
pub fn get_path<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, seg| v.get(seg))
}

/// Sets `path` to `value`, creating (or replacing non-map) intermediate maps.
pub fn set_path(obj: &mut Value, path: &[String], value: Value) {
    let mut cur = obj;
    for seg in path {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("just made an object")
            .entry(seg.clone())
            .or_insert(Value::Null);
    }
    *cur = value;
}

/// Removes the field at `path` and any maps that become empty because of it, except
/// `metadata` itself.
pub fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let Some(parent) = parents
        .iter()
        .try_fold(&mut *obj, |v, seg| v.get_mut(seg))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    parent.remove(last);
    if parent.is_empty() && !parents.is_empty() && parents != ["metadata"] {
        remove_path(obj, parents);
    }
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Field manager name (`kubectl`, `drover`).
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// apiVersion the manager last wrote with.
    pub api_version: String,
    /// RFC 3339 time of the manager's last change to its fields.
    pub time: String,
    /// `""`, `status` or `scale`.
    pub subresource: String,
    /// Owned fields.
    pub fields: FieldSet,
}

impl ManagedEntry {
    fn is(&self, manager: &str, operation: &str, subresource: &str) -> bool {
        self.manager == manager && self.operation == operation && self.subresource == subresource
    }

    /// How the apiserver names this entry in conflict messages.
    fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&self.fields),
        });
        if !self.subresource.is_empty() {
            entry["subresource"] = json!(self.subresource);
        }
        entry
    }

    fn from_json(v: &Value) -> Option<Self> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(ManagedEntry {
            manager: s("manager")?,
            operation: s("operation")?,
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time").unwrap_or_default(),
            subresource: s("subresource").unwrap_or_default(),
            fields: v.get("fieldsV1").map(parse_fields_v1).unwrap_or_default(),
        })
    }
}

/// Encodes a field set in the `fieldsV1` format. A path that also has owned children is
/// marked with `"."`, as the real format does.
pub fn fields_v1(fields: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for seg in path {
            node = node
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("fieldsV1 nodes are maps");
        }
    }
    for path in fields {
        let node = path.iter().try_fold(&mut root, |n, seg| {
            n.get_mut(&format!("f:{seg}")).and_then(Value::as_object_mut)
        });
        if let Some(node) = node.filter(|n| !n.is_empty()) {
            node.insert(".".to_string(), json!({}));
        }
    }
    Value::Object(root)
}

/// Decodes `fieldsV1`. Keyed list elements (`k:`/`v:`/`i:`, written by real servers) are
/// taken as ownership of the whole list, since lists are atomic here.
pub fn parse_fields_v1(v: &Value) -> FieldSet {
    fn walk(v: &Value, path: &mut FieldPath, out: &mut FieldSet) {
        let Some(map) = v.as_object() else { return };
        if map.is_empty() && !path.is_empty() {
            out.insert(path.clone());
            return;
        }
        for (k, child) in map {
            if k == "." {
                out.insert(path.clone());
            } else if let Some(seg) = k.strip_prefix("f:") {
                path.push(seg.to_string());
                walk(child, path, out);
                path.pop();
            } else if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
    let mut out = FieldSet::new();
    walk(v, &mut Vec::new(), &mut out);
    out
}

/// The entries in `obj.metadata.managedFields` (unreadable entries are dropped).
pub fn read_entries(obj: &Value) -> Vec<ManagedEntry> {
    get_path(obj, &["metadata".to_string(), "managedFields".to_string()])
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(ManagedEntry::from_json).collect())
        .unwrap_or_default()
}

/// Writes `entries` (without empty ones) to `obj.metadata.managedFields`.
pub fn write_entries(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(ManagedEntry::to_json)
        .collect();
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    let meta = obj["metadata"].as_object_mut().expect("metadata is a map");
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".to_string(), Value::Array(list));
    }
}

/// Who applies, and how.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions<'a> {
    /// `fieldManager` query parameter.
    pub manager: &'a str,
    /// `force=true`: take conflicting fields instead of failing.
    pub force: bool,
    /// apiVersion of the request, recorded in the entry.
    pub api_version: &'a str,
    /// Main resource or a subresource.
    pub scope: Scope,
    /// Current time (RFC 3339), for entries whose fields change.
    pub now: &'a str,
}

/// A field an apply would change that another manager owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager, as the apiserver prints it (`"kubectl" using apps/v1`).
    pub manager: String,
    /// The field, as the apiserver prints it (`.spec.replicas`).
    pub field: String,
}

/// Applies `applied` (the manager's full intent) to `live` (the stored object, or `{}`
/// for a new one) and returns the merged object with updated managedFields.
pub fn apply(live: &Value, applied: &Value, opts: ApplyOptions<'_>) -> Result<Value, Vec<Conflict>> {
    let sub = opts.scope.subresource();
    let applied_leaves = leaves(applied, opts.scope);
    let mut entries = read_entries(live);
    let mine = |e: &ManagedEntry| e.is(opts.manager, "Apply", sub);
    let previous = entries.iter().find(|e| mine(e)).cloned();

    let mut merged = live.clone();
    for (path, value) in &applied_leaves {
        // An empty map merges into an existing one: it adds nothing and removes nothing.
        let empty_map = value.as_object().is_some_and(Map::is_empty);
        if empty_map && get_path(&merged, path).is_some_and(Value::is_object) {
            continue;
        }
        set_path(&mut merged, path, value.clone());
    }

    // A conflict is a field owned by someone else whose value this apply changes.
    // Adding keys under a map someone else owns as a whole (an empty map they applied)
    // changes their field's value but is not a conflict: maps are not atomic.
    let touches = |applied: &FieldPath, owned: &FieldPath| {
        (applied.starts_with(owned) && (applied == owned || !get_path(live, owned).is_some_and(Value::is_object)))
            || owned.starts_with(applied)
    };
    let mut conflicts = Vec::new();
    for entry in entries.iter_mut().filter(|e| !mine(e)) {
        let mut taken = Vec::new();
        for owned in &entry.fields {
            let touched = applied_leaves.keys().any(|p| touches(p, owned));
            if touched && get_path(live, owned) != get_path(&merged, owned) {
                taken.push(owned.clone());
            }
        }
        for owned in taken {
            conflicts.push(Conflict {
                manager: entry.describe(),
                field: format!(".{}", owned.join(".")),
            });
            if opts.force {
                entry.fields.remove(&owned);
            }
        }
    }
    if !conflicts.is_empty() && !opts.force {
        return Err(conflicts);
    }

    // Fields this manager applied before and now leaves out go away, unless somebody
    // else still owns them.
    if let Some(prev) = &previous {
        for dropped in prev.fields.iter().filter(|p| !applied_leaves.contains_key(*p)) {
            let reapplied = applied_leaves.keys().any(|p| overlaps(p, dropped));
            let shared = entries
                .iter()
                .filter(|e| !mine(e))
                .any(|e| e.fields.iter().any(|q| overlaps(q, dropped)));
            // A map owned as a whole (applied empty) keeps what others put in it.
            let filled_map = get_path(&merged, dropped)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty());
            if !reapplied && !shared && !filled_map {
                remove_path(&mut merged, dropped);
            }
        }
    }

    let fields: FieldSet = applied_leaves.into_keys().collect();
    match entries.iter_mut().find(|e| mine(e)) {
        Some(entry) => {
            if entry.fields != fields || entry.api_version != opts.api_version {
                entry.time = opts.now.to_string();
            }
            entry.fields = fields;
            entry.api_version = opts.api_version.to_string();
        }
        None => entries.push(ManagedEntry {
            manager: opts.manager.to_string(),
            operation: "Apply".to_string(),
            api_version: opts.api_version.to_string(),
            time: opts.now.to_string(),
            subresource: sub.to_string(),
            fields,
        }),
    }
    write_entries(&mut merged, &entries);
    Ok(merged)
}

/// Records a non-apply write (`old` → `new`, `old` is `{}` for a create) by `manager`:
/// it gains the fields it changed, everybody else loses them, and fields that no longer
/// exist are owned by nobody.
///
/// As on the real apiserver, a main-resource write that carries a non-empty
/// `managedFields` list starts from that list (this is how clients rewrite ownership,
/// e.g. kubectl moving client-side-apply fields to server-side apply); otherwise, and
/// for subresources, it starts from `old`'s.
pub fn record_update(old: &Value, new: &mut Value, manager: &str, api_version: &str, scope: Scope, now: &str) {
    let sub = scope.subresource();
    let before = leaves(old, scope);
    let after = leaves(new, scope);
    let sent = read_entries(new);
    let mut entries = if matches!(scope, Scope::Main { .. }) && !sent.is_empty() {
        sent
    } else {
        read_entries(old)
    };
    let changed: Vec<&FieldPath> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(*v))
        .map(|(p, _)| p)
        .collect();
    let removed: Vec<&FieldPath> = before.keys().filter(|p| !after.contains_key(*p)).collect();

    let mine = |e: &ManagedEntry| e.is(manager, "Update", sub);
    for entry in entries.iter_mut() {
        let own = mine(entry);
        entry.fields.retain(|q| {
            let gone = removed.iter().any(|p| overlaps(p, q));
            let stolen = !own && changed.iter().any(|p| overlaps(p, q));
            !gone && !stolen
        });
    }
    if !changed.is_empty() {
        match entries.iter_mut().find(|e| mine(e)) {
            Some(entry) => {
                entry
                    .fields
                    .retain(|q| !changed.iter().any(|p| overlaps(p, q) && p != &q));
                entry.fields.extend(changed.into_iter().cloned());
                entry.time = now.to_string();
                entry.api_version = api_version.to_string();
            }
            None => entries.push(ManagedEntry {
                manager: manager.to_string(),
                operation: "Update".to_string(),
                api_version: api_version.to_string(),
                time: now.to_string(),
                subresource: sub.to_string(),
                fields: changed.into_iter().cloned().collect(),
            }),
        }
    }
    write_entries(new, &entries);
}

/// The 409 the apiserver answers for apply conflicts, worded like the real one.
pub fn conflict_error(conflicts: &[Conflict]) -> ApiError {
    let causes = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with {}", c.manager),
                "field": c.field,
            })
        })
        .collect();
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.field
        ),
        many => {
            let mut by_manager: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for c in many {
                by_manager.entry(&c.manager).or_default().push(&c.field);
            }
            let mut lines = Vec::new();
            for (manager, fields) in by_manager {
                lines.push(format!("conflicts with {manager}:"));
                lines.extend(fields.into_iter().map(|f| format!("- {f}")));
            }
            format!("Apply failed with {} conflicts: {}", many.len(), lines.join("\n"))
        }
    };
    ApiError::apply_conflict(message, causes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    const MAIN: Scope = Scope::Main {
        status_subresource: true,
    };

    fn opts<'a>(manager: &'a str, force: bool) -> ApplyOptions<'a> {
        ApplyOptions {
            manager,
            force,
            api_version: "apps/v1",
            scope: MAIN,
            now: "2024-01-01T00:00:00Z",
        }
    }

    fn deploy(replicas: u64, image: &str) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
            "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "web", "image": image}]}}},
            "status": {"replicas": 9},
        })
    }

    fn fields_of(obj: &Value, manager: &str) -> Vec<String> {
        read_entries(obj)
            .into_iter()
            .filter(|e| e.manager == manager)
            .flat_map(|e| e.fields.into_iter().map(|p| p.join(".")))
            .collect()
    }

    #[test]
    fn apply_owns_leaves_but_not_server_fields_or_status() {
        let obj = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        assert_eq!(
            fields_of(&obj, "kubectl"),
            ["metadata.labels.app", "spec.replicas", "spec.template.spec.containers"]
        );
        assert!(obj.get("status").is_none(), "status is the subresource's");
        assert_eq!(
            obj["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {"f:app": {}}}, "f:spec": {"f:replicas": {}, "f:template": {"f:spec": {"f:containers": {}}}}})
        );
    }

    #[test]
    fn reapplying_the_same_config_changes_nothing() {
        let first = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let mut later = opts("kubectl", false);
        later.now = "2030-01-01T00:00:00Z";
        assert_eq!(apply(&first, &deploy(2, "a"), later).unwrap(), first);
    }

    #[test]
    fn another_manager_changing_a_field_conflicts_unless_forced() {
        let live = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"replicas": 5}});
        let err = apply(&live, &other, opts("other", false)).unwrap_err();
        assert_eq!(
            err,
            [Conflict {
                manager: "\"kubectl\"".into(),
                field: ".spec.replicas".into()
            }]
        );
        let msg = conflict_error(&err).message;
        assert_eq!(
            msg,
            "Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"
        );

        // Same value: no conflict, shared ownership.
        let same = json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 2}});
        let shared = apply(&live, &same, opts("other", false)).unwrap();
        assert_eq!(fields_of(&shared, "other"), ["spec.replicas"]);
        assert!(fields_of(&shared, "kubectl").contains(&"spec.replicas".to_string()));

        let forced = apply(&live, &other, opts("other", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 5);
        assert!(!fields_of(&forced, "kubectl").contains(&"spec.replicas".to_string()));
        assert_eq!(fields_of(&forced, "other"), ["spec.replicas"]);
    }

    #[test]
    fn dropped_fields_are_removed_unless_shared() {
        let live = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let mut less = deploy(2, "a");
        less["metadata"].as_object_mut().unwrap().remove("labels");
        let out = apply(&live, &less, opts("kubectl", false)).unwrap();
        assert!(out["metadata"].get("labels").is_none(), "{out}");

        // Shared with another applier: stays.
        let other = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"labels": {"app": "web"}}});
        let shared = apply(&live, &other, opts("other", false)).unwrap();
        let out = apply(&shared, &less, opts("kubectl", false)).unwrap();
        assert_eq!(out["metadata"]["labels"]["app"], "web");
    }

    #[test]
    fn updates_take_ownership_and_then_conflict_with_appliers() {
        let live = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(7);
        record_update(&live, &mut scaled, "kubectl-scale", "apps/v1", MAIN, "t");
        assert_eq!(fields_of(&scaled, "kubectl-scale"), ["spec.replicas"]);
        assert!(!fields_of(&scaled, "kubectl").contains(&"spec.replicas".to_string()));
        let err = apply(&scaled, &deploy(2, "a"), opts("kubectl", false)).unwrap_err();
        assert_eq!(err[0].manager, "\"kubectl-scale\" using apps/v1");
        assert_eq!(err[0].field, ".spec.replicas");
    }

    #[test]
    fn status_scope_touches_only_status() {
        let live = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let mut o = opts("ctrl", false);
        o.scope = Scope::Status;
        let patch = json!({"spec": {"replicas": 100}, "status": {"readyReplicas": 2}});
        let out = apply(&live, &patch, o).unwrap();
        assert_eq!(out["spec"]["replicas"], 2);
        assert_eq!(out["status"]["readyReplicas"], 2);
        let entry = read_entries(&out).into_iter().find(|e| e.manager == "ctrl").unwrap();
        assert_eq!(entry.subresource, "status");
    }

    #[test]
    fn empty_maps_are_not_atomic() {
        let cm = |labels: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": labels}});
        let live = apply(&json!({}), &cm(json!({})), opts("a", false)).unwrap();
        assert_eq!(fields_of(&live, "a"), ["metadata.labels"]);
        let both = apply(&live, &cm(json!({"x": "1"})), opts("b", false)).unwrap();
        assert_eq!(both["metadata"]["labels"], json!({"x": "1"}));
        // Re-applying the empty map neither conflicts nor wipes b's label.
        let again = apply(&both, &cm(json!({})), opts("a", false)).unwrap();
        assert_eq!(again["metadata"]["labels"], json!({"x": "1"}));
        // Dropping it keeps b's label too.
        let dropped = apply(
            &again,
            &json!({"apiVersion": "v1", "kind": "ConfigMap"}),
            opts("a", false),
        )
        .unwrap();
        assert_eq!(dropped["metadata"]["labels"], json!({"x": "1"}));
    }

    #[test]
    fn updates_may_rewrite_managed_fields() {
        let live = apply(&json!({}), &deploy(2, "a"), opts("kubectl", false)).unwrap();
        let mut new = live.clone();
        new["metadata"]["managedFields"][0]["manager"] = json!("renamed");
        record_update(&live, &mut new, "patcher", "apps/v1", MAIN, "t");
        assert_eq!(fields_of(&new, "renamed").len(), 3);
        assert!(fields_of(&new, "kubectl").is_empty());
    }

    #[test]
    fn fields_v1_round_trips_with_dot_markers() {
        let set: FieldSet = [vec!["a".to_string()], vec!["a".to_string(), "b".to_string()]]
            .into_iter()
            .collect();
        let v = fields_v1(&set);
        assert_eq!(v, json!({"f:a": {".": {}, "f:b": {}}}));
        assert_eq!(parse_fields_v1(&v), set);
    }
}
