//! Object storage: JSON objects keyed by (group, resource, namespace, name), one global
//! `resourceVersion` counter bumped on every real change, and a bounded log of changes
//! for watches.
//!
//! Objects are stored once per resource, not per version: a resource served at several
//! versions (a CRD with v1alpha1 and v1) returns the same object with its `apiVersion`
//! rewritten, without conversion.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

use crate::selector::{FieldSelector, LabelSelector};

/// How many changes the watch log keeps. A watch resumed from an older
/// resourceVersion gets `410 Expired`, as on a real apiserver after compaction.
pub const MAX_WATCH_LOG: usize = 10_000;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// API group (`""` for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace, `""` for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

/// What happened to an object, as watch events name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl Change {
    /// `ADDED`, `MODIFIED` or `DELETED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "ADDED",
            Change::Modified => "MODIFIED",
            Change::Deleted => "DELETED",
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone)]
pub struct Event {
    /// resourceVersion of the change.
    pub rv: u64,
    /// What happened.
    pub change: Change,
    /// Which object.
    pub key: Key,
    /// The object after the change (before it, for deletions), carrying `rv`.
    pub object: Value,
}

/// All objects.
#[derive(Debug)]
pub struct Store {
    objects: BTreeMap<Key, Value>,
    rv: u64,
    log: VecDeque<Event>,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Self {
        Store {
            objects: BTreeMap::new(),
            rv: 1,
            log: VecDeque::new(),
        }
    }

    /// The latest resourceVersion handed out.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// The stored object.
    pub fn get(&self, key: &Key) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Objects of one resource, in one namespace or all of them, sorted by namespace
    /// and name.
    pub fn list<'a>(
        &'a self,
        group: &'a str,
        plural: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a Key, &'a Value)> + 'a {
        self.objects
            .iter()
            .filter(move |(k, _)| k.group == group && k.plural == plural && namespace.is_none_or(|n| k.namespace == n))
    }

    /// Keys of every object in `namespace` (any resource).
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<Key> {
        self.objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// Every object, for the `/_double/objects` dump.
    pub fn all(&self) -> impl Iterator<Item = (&Key, &Value)> {
        self.objects.iter()
    }

    /// Stores `object` under a new resourceVersion (written into its metadata) and logs
    /// the change. Callers decide beforehand whether anything changed: writing always
    /// bumps the version.
    pub fn write(&mut self, key: Key, mut object: Value) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let change = if self.objects.contains_key(&key) {
            Change::Modified
        } else {
            Change::Added
        };
        self.objects.insert(key.clone(), object.clone());
        self.record(change, key, object.clone());
        object
    }

    /// Removes an object, logging the deletion under a new resourceVersion.
    pub fn delete(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.rv += 1;
        object["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.record(Change::Deleted, key.clone(), object.clone());
        Some(object)
    }

    fn record(&mut self, change: Change, key: Key, object: Value) {
        if self.log.len() == MAX_WATCH_LOG {
            self.log.pop_front();
        }
        self.log.push_back(Event {
            rv: self.rv,
            change,
            key,
            object,
        });
    }

    /// Logged changes after `rv`, or `None` when changes after `rv` were already
    /// dropped from the log.
    pub fn changes_since(&self, rv: u64) -> Option<impl Iterator<Item = &Event>> {
        let oldest_kept = self.log.front().map_or(self.rv + 1, |e| e.rv);
        // Everything after rv is in the log iff the first change after rv is kept.
        if rv + 1 < oldest_kept && rv < self.rv {
            return None;
        }
        Some(self.log.iter().filter(move |e| e.rv > rv))
    }
}

/// What a list or watch selects within a resource.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Namespace, or all namespaces.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Filter {
    /// Whether the object at `key` is selected.
    pub fn matches(&self, key: &Key, object: &Value) -> bool {
        self.namespace.as_ref().is_none_or(|n| *n == key.namespace)
            && self.labels.matches(
                object
                    .get("metadata")
                    .and_then(|m| m.get("labels"))
                    .and_then(Value::as_object),
            )
            && self.fields.matches(object)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    fn key(ns: &str, name: &str) -> Key {
        Key {
            group: String::new(),
            plural: "configmaps".into(),
            namespace: ns.into(),
            name: name.into(),
        }
    }

    #[test]
    fn versions_and_log() {
        let mut s = Store::new();
        let start = s.resource_version();
        let a = s.write(key("ns", "a"), json!({"metadata": {"name": "a"}}));
        assert_eq!(a["metadata"]["resourceVersion"], (start + 1).to_string());
        s.write(key("ns", "a"), json!({"metadata": {"name": "a"}, "data": {}}));
        s.delete(&key("ns", "a")).unwrap();
        let changes: Vec<_> = s.changes_since(start).unwrap().map(|e| e.change).collect();
        assert_eq!(changes, [Change::Added, Change::Modified, Change::Deleted]);
        assert_eq!(s.changes_since(start + 2).unwrap().count(), 1);
        assert!(s.delete(&key("ns", "a")).is_none());
    }

    #[test]
    fn old_versions_expire_from_the_log() {
        let mut s = Store::new();
        for i in 0..MAX_WATCH_LOG + 5 {
            s.write(key("ns", "a"), json!({"metadata": {}, "i": i}));
        }
        assert!(s.changes_since(2).is_none());
        assert!(s.changes_since(s.resource_version() - 3).is_some());
        assert_eq!(s.changes_since(s.resource_version()).unwrap().count(), 0);
    }
}
