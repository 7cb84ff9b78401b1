//! Whether an object must be applied again, and whether applying it restored a drift.
//!
//! After each apply drover remembers a mark of the object as the server returned it:
//! `generation` for kinds that have one (it moves on every change outside metadata and
//! status, so status updates by controllers do not count), else `resourceVersion` (which
//! moves on every write). The next cycle lists the bundle's ApplySet members and skips the
//! apply of an object whose mark is unchanged, that still carries this set's
//! `applyset.kubernetes.io/part-of` (it was listed by it) and every label and annotation
//! the manifest sets, with the manifest's value. Anything else is applied: a missing object,
//! a moved mark (a field edited, by drover's manager or another's), a removed label.
//!
//! Applying is server-side apply, so a change by another manager to a field drover does
//! not own is left as it is; the apply is then a no-op and the server keeps the
//! `resourceVersion`. Drift is therefore counted only when the object was missing or the
//! apply changed it: exactly when drover restored something it owns.

use kube::api::DynamicObject;
use serde_json::Value;

/// The mark of an object as the server returned it: `g<generation>` or `rv<resourceVersion>`.
pub(crate) fn mark(object: &DynamicObject) -> String {
    match object.metadata.generation {
        Some(g) => format!("g{g}"),
        None => format!("rv{}", object.metadata.resource_version.clone().unwrap_or_default()),
    }
}

/// Whether `live` (listed as a member of this bundle's set) still matches what drover
/// applied: the `previous` mark and every label and annotation of the manifest `body`.
pub(crate) fn unchanged(body: &Value, live: &DynamicObject, previous: Option<&str>) -> bool {
    if previous != Some(mark(live).as_str()) {
        return false;
    }
    let carries = |wanted: &Value, have: Option<&std::collections::BTreeMap<String, String>>| {
        wanted.as_object().is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(k, v)| have.and_then(|h| h.get(k)).map(String::as_str) == v.as_str())
        })
    };
    carries(&body["metadata"]["labels"], live.metadata.labels.as_ref())
        && carries(&body["metadata"]["annotations"], live.metadata.annotations.as_ref())
}

/// Whether applying restored a drift: the object had been applied at this digest before
/// (`had_mark`) and was missing (`before` is `None`) or the apply changed it.
pub(crate) fn restored(had_mark: bool, before: Option<&DynamicObject>, after: &DynamicObject) -> bool {
    had_mark && before.is_none_or(|b| b.metadata.resource_version != after.metadata.resource_version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(generation: Option<i64>, rv: &str, labels: Value) -> DynamicObject {
        let mut metadata = json!({"name": "web", "resourceVersion": rv, "labels": labels});
        if let Some(g) = generation {
            metadata["generation"] = json!(g);
        }
        serde_json::from_value(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": metadata}))
            .expect("an object")
    }

    #[test]
    fn an_object_is_skipped_only_with_its_mark_and_the_manifests_labels() {
        let body = json!({"metadata": {"labels": {"app": "web"}}});
        let live = object(Some(3), "41", json!({"app": "web", "added": "by-someone"}));
        assert!(unchanged(&body, &live, Some("g3")));
        assert!(!unchanged(&body, &live, Some("g2")), "edited since");
        assert!(!unchanged(&body, &live, None), "never applied at this digest");
        let unlabelled = object(Some(3), "42", json!({}));
        assert!(!unchanged(&body, &unlabelled, Some("g3")), "a label removed");
        let config_map = object(None, "7", json!({"app": "web"}));
        assert!(unchanged(&body, &config_map, Some("rv7")));
        assert!(!unchanged(&body, &config_map, Some("rv6")));
    }

    #[test]
    fn drift_is_what_the_apply_restored_not_what_another_manager_changed() {
        let before = object(Some(4), "50", json!({}));
        let same = object(Some(4), "50", json!({}));
        assert!(!restored(true, Some(&before), &same), "a no-op apply: not drift");
        let changed = object(Some(5), "51", json!({}));
        assert!(restored(true, Some(&before), &changed));
        assert!(restored(true, None, &changed), "deleted out of band");
        assert!(!restored(false, None, &changed), "a new digest's first apply");
    }
}
