//! The non-apply PATCH flavours: JSON merge patch (RFC 7386), strategic merge patch
//! (approximated: see [`strategic_merge`]) and JSON patch (RFC 6902).

use serde_json::{Map, Value};

/// RFC 7386: maps merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Keys by which strategic merge patch merges lists of maps, tried in order. The real
/// apiserver takes the key from each field's schema (`containers` by `name`,
/// `ports` by `containerPort`, `conditions` by `type`, …); without schemas the double
/// uses the first of these that every element on both sides carries.
const MERGE_KEYS: &[&str] = &["name", "containerPort", "port", "mountPath", "type", "ip"];

/// Strategic merge patch, approximated: like a merge patch, except that lists of maps
/// merge element-wise by a merge key (see [`MERGE_KEYS`]), `$patch: delete` removes a
/// list element or map, `$patch: replace` replaces a map, `$deleteFromPrimitiveList/F`
/// removes values from list F, and other `$` directives are ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replacement = patch.clone();
        replacement.remove("$patch");
        *target = Value::Object(strip_directives(replacement));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let target = target.as_object_mut().expect("just made an object");
    for (key, value) in patch {
        if let Some(list) = key.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(items)), Value::Array(gone)) = (target.get_mut(list), value) {
                items.retain(|i| !gone.contains(i));
            }
            continue;
        }
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(m) if m.get("$patch").and_then(Value::as_str) == Some("delete") => {
                target.remove(key);
            }
            Value::Array(items) => {
                let merged = match target.get(key) {
                    Some(Value::Array(existing)) => merge_lists(existing, items),
                    _ => items.iter().filter(|i| !is_delete(i)).map(strip_value).collect(),
                };
                target.insert(key.clone(), Value::Array(merged));
            }
            Value::Object(_) => strategic_merge(target.entry(key.clone()).or_insert(Value::Null), value),
            other => {
                target.insert(key.clone(), other.clone());
            }
        }
    }
}

fn is_delete(v: &Value) -> bool {
    v.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn merge_lists(existing: &[Value], patch: &[Value]) -> Vec<Value> {
    let all_have = |key: &str| {
        existing.iter().chain(patch).all(|i| i.get(key).is_some()) && !existing.is_empty() && !patch.is_empty()
    };
    let Some(key) = MERGE_KEYS.iter().copied().find(|k| all_have(k)) else {
        return patch.iter().filter(|i| !is_delete(i)).map(strip_value).collect();
    };
    let mut out: Vec<Value> = existing.to_vec();
    for item in patch {
        let id = &item[key];
        let pos = out.iter().position(|e| &e[key] == id);
        match (pos, is_delete(item)) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut out[i], item),
            (None, false) => out.push(strip_value(item)),
        }
    }
    out
}

fn strip_value(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_directives(m.clone())),
        other => other.clone(),
    }
}

fn strip_directives(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k, strip_value(&v)))
        .collect()
}

/// RFC 6902 JSON patch: `add`, `remove`, `replace`, `move`, `copy`, `test`.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be a list of operations")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).ok_or("operation without \"op\"")?;
        let path = pointer(op, "path")?;
        match kind {
            "add" => add(target, &path, value(op)?)?,
            "remove" => {
                remove(target, &path)?;
            }
            "replace" => {
                remove(target, &path)?;
                add(target, &path, value(op)?)?;
            }
            "move" => {
                let v = remove(target, &pointer(op, "from")?)?;
                add(target, &path, v)?;
            }
            "copy" => {
                let from = pointer(op, "from")?;
                let v = lookup(target, &from)
                    .cloned()
                    .ok_or(format!("missing value at {from:?}"))?;
                add(target, &path, v)?;
            }
            "test" => {
                if lookup(target, &path) != Some(&value(op)?) {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn value(op: &Value) -> Result<Value, String> {
    op.get("value")
        .cloned()
        .ok_or_else(|| "operation without \"value\"".to_string())
}

fn pointer(op: &Value, field: &str) -> Result<Vec<String>, String> {
    let p = op
        .get(field)
        .and_then(Value::as_str)
        .ok_or(format!("operation without \"{field}\""))?;
    if p.is_empty() {
        return Ok(Vec::new());
    }
    let rest = p.strip_prefix('/').ok_or(format!("invalid JSON pointer {p:?}"))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn lookup<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn parent<'a>(v: &'a mut Value, path: &[String]) -> Result<(&'a mut Value, String), String> {
    let (last, parents) = path.split_last().ok_or("cannot operate on the whole document")?;
    let mut cur = v;
    for seg in parents {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or(format!("path /{} does not exist", path.join("/")))?;
    }
    Ok((cur, last.clone()))
}

fn add(target: &mut Value, path: &[String], v: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (container, last) = parent(target, path)?;
    match container {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(a) if last == "-" => a.push(v),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| format!("invalid array index {last:?}"))?;
            if i > a.len() {
                return Err(format!("array index {i} out of bounds"));
            }
            a.insert(i, v);
        }
        _ => return Err(format!("cannot add to a scalar at /{}", path.join("/"))),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &[String]) -> Result<Value, String> {
    let (container, last) = parent(target, path)?;
    let missing = || format!("path /{} does not exist", path.join("/"));
    match container {
        Value::Object(m) => m.remove(&last).ok_or_else(missing),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| missing())?;
            (i < a.len()).then(|| a.remove(i)).ok_or_else(missing)
        }
        _ => Err(missing()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_deletes_with_null() {
        let mut t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut t, &json!({"a": {"b": null, "d": 3}, "l": [3]}));
        assert_eq!(t, json!({"a": {"c": 2, "d": 3}, "l": [3]}));
    }

    #[test]
    fn strategic_merge_merges_named_lists() {
        let mut t = json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}], "args": ["1"]});
        strategic_merge(
            &mut t,
            &json!({"containers": [{"name": "b", "image": "z"}, {"name": "a", "$patch": "delete"}, {"name": "c"}],
                    "args": ["2"], "$setElementOrder/containers": [{"name": "b"}]}),
        );
        assert_eq!(
            t,
            json!({"containers": [{"name": "b", "image": "z"}, {"name": "c"}], "args": ["2"]})
        );
    }

    #[test]
    fn json_patch_operations() {
        let mut t = json!({"spec": {"replicas": 1, "list": [1, 3]}});
        json_patch(
            &mut t,
            &json!([
                {"op": "replace", "path": "/spec/replicas", "value": 3},
                {"op": "add", "path": "/spec/list/1", "value": 2},
                {"op": "add", "path": "/metadata", "value": {"labels": {"a/b": "c"}}},
                {"op": "test", "path": "/metadata/labels/a~1b", "value": "c"},
                {"op": "copy", "from": "/spec/replicas", "path": "/spec/copied"},
                {"op": "remove", "path": "/spec/list/0"},
            ]),
        )
        .unwrap();
        assert_eq!(
            t,
            json!({"spec": {"replicas": 3, "copied": 3, "list": [2, 3]}, "metadata": {"labels": {"a/b": "c"}}})
        );
        assert!(json_patch(&mut t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&mut t, &json!([{"op": "test", "path": "/spec/replicas", "value": 1}])).is_err());
    }
}
