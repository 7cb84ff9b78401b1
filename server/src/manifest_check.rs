//! The publisher's check of every manifest: is it YAML made of Kubernetes objects, as an
//! agent will require? It gives the verdict of [`drover_agent::render::check_manifest`],
//! faster: publishing checks every byte of every bundle, and building a value tree for each
//! document was half of `drover publish`'s time.
//!
//! The fast path walks the parser's events with visitors that keep nothing but a hash of
//! each mapping key (so duplicate keys, which the agent refuses, are still caught) and the
//! few fields the check looks at. It is deliberately stricter than the agent: anything it
//! does not recognise (tags, a second numeric or complex key in a mapping, a hash
//! collision, a non-string `name`) counts as "not sure", and then the agent's own check
//! runs and gives the verdict and its message. So the fast path accepts only what the
//! agent's check accepts.
//!
//! It also returns each object's identity ([`ObjectId`]), so publishing can refuse what
//! the agent would apply badly: two objects with the same identity in one bundle, and
//! names the API server would refuse ([`check_objects`]).

use std::collections::HashSet;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::Result;

/// Checks that `text` is YAML made of Kubernetes objects; `what` names it in errors.
pub fn check_manifest(text: &str, what: &str) -> Result<()> {
    object_ids(text, what).map(|_| ())
}

/// What names an object in a cluster: API group, kind, namespace (as written; `None` for
/// cluster-scoped objects and for namespaced ones that take the bundle's default) and
/// name (`None` with `generateName`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    /// API group: `apiVersion` without its version (`""` for the core group).
    pub group: String,
    /// Kind.
    pub kind: String,
    /// `metadata.namespace`, if written.
    pub namespace: Option<String>,
    /// `metadata.name`, if written.
    pub name: Option<String>,
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() {
            String::new()
        } else {
            format!(".{}", self.group)
        };
        write!(f, "{}{group} ", self.kind)?;
        if let Some(ns) = &self.namespace {
            write!(f, "{ns}/")?;
        }
        f.write_str(self.name.as_deref().unwrap_or("(generateName)"))
    }
}

/// Checks `text` as [`check_manifest`] does and returns the identity of every object in it,
/// in order.
pub fn object_ids(text: &str, what: &str) -> Result<Vec<ObjectId>> {
    if let Some(ids) = fast_object_ids(text) {
        return Ok(ids);
    }
    drover_agent::render::check_manifest(text, what)?;
    // The agent's check passed: every document is a mapping with string apiVersion and
    // kind and a metadata mapping, so reading them back as values cannot fail.
    let mut ids = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let value = serde_norway::Value::deserialize(doc).map_err(|e| crate::Error::source(what, e.to_string()))?;
        if value.is_null() {
            continue;
        }
        let field =
            |v: &serde_norway::Value, k: &str| v.get(k).and_then(serde_norway::Value::as_str).map(str::to_string);
        let meta = value.get("metadata").cloned().unwrap_or_default();
        ids.push(ObjectId {
            group: group_of(&field(&value, "apiVersion").unwrap_or_default()),
            kind: field(&value, "kind").unwrap_or_default(),
            namespace: field(&meta, "namespace"),
            name: field(&meta, "name"),
        });
    }
    Ok(ids)
}

/// The API group of an `apiVersion`: `apps/v1` → `apps`, `v1` → `""`.
fn group_of(api_version: &str) -> String {
    api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string()
}

/// The identities of every object of `text` when every document is empty or a Kubernetes
/// object; `None` when not, or not sure.
fn fast_object_ids(text: &str) -> Option<Vec<ObjectId>> {
    let mut ids = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        if let Some(id) = Document::deserialize(doc).ok()?.0 {
            ids.push(id);
        }
    }
    Some(ids)
}

/// True when every document of `text` is empty or a Kubernetes object; false when not, or
/// not sure.
#[cfg(test)]
fn all_objects(text: &str) -> bool {
    fast_object_ids(text).is_some()
}

/// Kinds whose names the API server checks as path segments, not DNS subdomains (RBAC
/// names such as `system:controller:foo` are valid).
const PATH_SEGMENT_NAMED_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// Refuses what the agent would apply badly from one bundle's objects: a name that is not
/// a DNS-1123 subdomain (a path segment for RBAC kinds), a namespace that is not a DNS-1123
/// label, and two objects with the same identity (an object without a namespace counts
/// as in `default_namespace`, the bundle's). `objects` pairs each object with the file it
/// comes from, which errors name.
pub fn check_objects(
    objects: &[(&ObjectId, &str)],
    default_namespace: Option<&str>,
) -> std::result::Result<(), String> {
    type Identity<'a> = (&'a str, &'a str, Option<&'a str>, &'a str);
    let mut seen: std::collections::HashMap<Identity<'_>, &str> = std::collections::HashMap::new();
    for &(id, file) in objects {
        if let Some(name) = &id.name {
            let valid = if PATH_SEGMENT_NAMED_KINDS.contains(&id.kind.as_str()) {
                is_path_segment_name(name)
            } else {
                is_dns_subdomain(name)
            };
            if !valid {
                return Err(format!(
                    "{file}: {} {name:?}: metadata.name is not a valid RFC 1123 name (lowercase letters, digits, '-' and '.', at most 253 characters, alphanumeric at both ends)",
                    id.kind
                ));
            }
        }
        if let Some(ns) = &id.namespace {
            if !is_dns_label(ns) {
                return Err(format!(
                    "{file}: {id}: metadata.namespace {ns:?} is not a valid RFC 1123 label (lowercase letters, digits and '-', at most 63 characters)"
                ));
            }
        }
        if let Some(name) = &id.name {
            let namespace = id.namespace.as_deref().or(default_namespace);
            let identity = (id.group.as_str(), id.kind.as_str(), namespace, name.as_str());
            if let Some(first) = seen.insert(identity, file) {
                return Err(format!(
                    "{file}: {id} is also defined in {first}: an object may appear once per bundle"
                ));
            }
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    drover_agent::format::check_dns_label(s).is_ok()
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '%'])
}

/// The error of every visitor here: the message is never shown.
fn not_sure<E: de::Error>() -> E {
    E::custom("not sure")
}

/// Keys seen in one mapping, by hash.
#[derive(Default)]
struct Keys {
    few: Vec<u64>,
    many: HashSet<u64>,
}

impl Keys {
    fn insert<E: de::Error>(&mut self, key: &Key) -> Result<(), E> {
        let fresh = if self.many.is_empty() && self.few.len() < 32 {
            let fresh = !self.few.contains(&key.hash);
            self.few.push(key.hash);
            fresh
        } else {
            self.many.extend(self.few.drain(..));
            self.many.insert(key.hash)
        };
        if fresh {
            Ok(())
        } else {
            Err(not_sure())
        }
    }
}

/// The mapping keys the check looks at.
#[derive(PartialEq)]
enum Known {
    ApiVersion,
    Kind,
    Metadata,
    Name,
    GenerateName,
    Namespace,
    /// A top-level `items`: a list of objects, which the agent refuses.
    Items,
    Other,
}

/// A mapping key: a hash that is equal for keys the full check finds equal, and whether it
/// is one of the [`Known`] strings.
struct Key {
    hash: u64,
    known: Known,
}

/// FNV-1a over the key's class and bytes: a collision only costs the full check.
fn key_hash(class: u8, text: &[u8]) -> u64 {
    std::iter::once(class)
        .chain(text.iter().copied())
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a mapping key")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                let known = match s {
                    "apiVersion" => Known::ApiVersion,
                    "kind" => Known::Kind,
                    "metadata" => Known::Metadata,
                    "name" => Known::Name,
                    "generateName" => Known::GenerateName,
                    "namespace" => Known::Namespace,
                    "items" => Known::Items,
                    _ => Known::Other,
                };
                Ok(Key {
                    hash: key_hash(0, s.as_bytes()),
                    known,
                })
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Key, E> {
                Ok(Key {
                    hash: key_hash(1, &[u8::from(b)]),
                    known: Known::Other,
                })
            }
            fn visit_unit<E: de::Error>(self) -> Result<Key, E> {
                Ok(Key {
                    hash: key_hash(2, b""),
                    known: Known::Other,
                })
            }
            // Numbers compare by value in the full check (1, 0x1, 1.0): all share one hash,
            // so two numeric keys in a mapping mean "not sure".
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Key, E> {
                Ok(Key {
                    hash: key_hash(3, b""),
                    known: Known::Other,
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                self.visit_i64(v as i64)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Key, E> {
                self.visit_i64(0)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Key, A::Error> {
                Any::visit_seq(seq)?;
                Ok(Key {
                    hash: key_hash(4, b""),
                    known: Known::Other,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Key, A::Error> {
                Any::visit_map(map)?;
                Ok(Key {
                    hash: key_hash(4, b""),
                    known: Known::Other,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Any value without tags or duplicate keys.
struct Any;

impl Any {
    fn visit_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Any, A::Error> {
        while seq.next_element::<Any>()?.is_some() {}
        Ok(Any)
    }

    fn visit_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<Any, A::Error> {
        let mut keys = Keys::default();
        while let Some(key) = map.next_key::<Key>()? {
            keys.insert(&key)?;
            map.next_value::<Any>()?;
        }
        Ok(Any)
    }
}

impl<'de> Deserialize<'de> for Any {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Any;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any value without tags")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_none<E: de::Error>(self) -> Result<Any, E> {
                Ok(Any)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Any, A::Error> {
                Any::visit_seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Any, A::Error> {
                Any::visit_map(map)
            }
        }
        d.deserialize_any(V)
    }
}

/// A string (with `NON_EMPTY`, a non-empty one); anything else is "not sure".
struct Str<const NON_EMPTY: bool>(String);

impl<'de, const NON_EMPTY: bool> Deserialize<'de> for Str<NON_EMPTY> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const N: bool>;
        impl<'de, const N: bool> Visitor<'de> for V<N> {
            type Value = Str<N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<N>, E> {
                if N && s.is_empty() {
                    Err(not_sure())
                } else {
                    Ok(Str(s.to_string()))
                }
            }
        }
        d.deserialize_any(V::<NON_EMPTY>)
    }
}

/// `metadata`: a mapping with a string `name` or `generateName`; its `name` and
/// `namespace`.
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Metadata;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("object metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut keys = Keys::default();
                let mut named = false;
                let (mut name, mut namespace) = (None, None);
                while let Some(key) = map.next_key::<Key>()? {
                    keys.insert(&key)?;
                    match key.known {
                        Known::Name => {
                            name = Some(map.next_value::<Str<false>>()?.0);
                            named = true;
                        }
                        Known::GenerateName => {
                            map.next_value::<Str<false>>()?;
                            named = true;
                        }
                        // A non-string namespace is for the agent's check to judge.
                        Known::Namespace => namespace = Some(map.next_value::<Str<false>>()?.0),
                        _ => {
                            map.next_value::<Any>()?;
                        }
                    }
                }
                if named {
                    Ok(Metadata { name, namespace })
                } else {
                    Err(not_sure())
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One document: empty (`None`), or a mapping with non-empty string `apiVersion` and
/// `kind` and a [`Metadata`] mapping (its identity).
struct Document(Option<ObjectId>);

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut keys = Keys::default();
                let (mut api_version, mut kind, mut metadata) = (None, None, None);
                while let Some(key) = map.next_key::<Key>()? {
                    keys.insert(&key)?;
                    match key.known {
                        Known::ApiVersion => api_version = Some(map.next_value::<Str<true>>()?.0),
                        Known::Kind => kind = Some(map.next_value::<Str<true>>()?.0),
                        Known::Metadata => metadata = Some(map.next_value::<Metadata>()?),
                        // The full check refuses lists of objects and says why.
                        Known::Items => return Err(not_sure()),
                        _ => {
                            map.next_value::<Any>()?;
                        }
                    }
                }
                if let (Some(api_version), Some(kind), Some(metadata)) = (api_version, kind, metadata) {
                    Ok(Document(Some(ObjectId {
                        group: group_of(&api_version),
                        kind,
                        namespace: metadata.namespace,
                        name: metadata.name,
                    })))
                } else {
                    Err(not_sure())
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_agent::render::check_manifest as full_check;

    #[test]
    fn agrees_with_the_agents_check_where_it_is_sure() {
        let valid = [
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  x: '1'\n",
            "---\n# nothing\n---\napiVersion: v1\nkind: Secret\nmetadata: {generateName: s-}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {true: a, false: b, ~: c, x: [1, {y: 2}]}\n",
            "",
        ];
        for text in valid {
            assert!(all_objects(text), "{text:?}");
            assert!(full_check(text, "t").is_ok(), "{text:?}");
        }
        let refused = [
            "- a\n",
            "kind: ConfigMap\nmetadata: {name: a}\n",
            "apiVersion: v1\nkind: ConfigMap\n",
            "apiVersion: v1\nkind: ''\nmetadata: {name: a}\n",
            "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {}}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [name]\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: 1, x: 2}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {x: {y: 1, y: 2}}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, name: b}\n",
            "apiVersion: v1\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\na: [unclosed\n",
            "apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems: []\n",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nitems: [{apiVersion: v1, kind: Secret}]\n",
        ];
        for text in refused {
            assert!(!all_objects(text), "{text:?}");
            let err = check_manifest(text, "t").expect_err(text);
            assert_eq!(
                err.to_string(),
                crate::Error::from(full_check(text, "t").expect_err(text)).to_string()
            );
        }
    }

    #[test]
    fn identities_agree_between_fast_and_full_paths() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: a, namespace: web}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\nx: !tag 1\n";
        let ids = object_ids(text, "t").expect("valid");
        assert_eq!(ids.len(), 2);
        assert_eq!(
            (ids[0].group.as_str(), ids[0].namespace.as_deref()),
            ("apps", Some("web"))
        );
        assert_eq!((ids[1].group.as_str(), ids[1].name.as_deref()), ("", Some("b")));
        let fast = fast_object_ids("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n").expect("sure");
        assert_eq!(fast[0], ids[1]);
    }

    fn id(kind: &str, ns: Option<&str>, name: &str) -> ObjectId {
        ObjectId {
            group: String::new(),
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: Some(name.into()),
        }
    }

    #[test]
    fn rejects_duplicate_objects_naming_both_files() {
        let (a, a_in_x) = (id("ConfigMap", None, "a"), id("ConfigMap", Some("x"), "a"));
        let err = check_objects(&[(&a, "one.yaml"), (&a, "two.yaml")], None).expect_err("duplicate");
        assert!(
            err.contains("two.yaml") && err.contains("one.yaml") && err.contains("ConfigMap a"),
            "{err}"
        );
        check_objects(&[(&a, "one.yaml"), (&a_in_x, "two.yaml")], None).expect("another namespace is another object");
        let err = check_objects(&[(&a, "one.yaml"), (&a_in_x, "two.yaml")], Some("x")).expect_err("same namespace");
        assert!(err.contains("ConfigMap x/a"), "{err}");
    }

    #[test]
    fn rejects_names_that_are_not_rfc_1123() {
        let one = |id: ObjectId| check_objects(&[(&id, "f.yaml")], None);
        for bad in ["Web", "web_1", "-web", "web.", &"a".repeat(254)] {
            let err = one(id("ConfigMap", None, bad)).expect_err(bad);
            assert!(err.contains("f.yaml") && err.contains("RFC 1123"), "{err}");
        }
        one(id("ConfigMap", None, "web-1.example")).expect("subdomain");
        one(id("ClusterRole", None, "system:web")).expect("RBAC names are path segments");
        let err = one(id("ConfigMap", Some("Web"), "a")).expect_err("namespace");
        assert!(err.contains("namespace"), "{err}");
    }

    #[test]
    fn not_sure_falls_back_to_the_agents_check() {
        // Two numeric keys: the fast path cannot tell 1 from 2, the agent's check can.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata2: {1: a, 2: b}\n";
        assert!(!all_objects(text));
        assert!(check_manifest(text, "t").is_ok());
        // A tagged value.
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\nx: !custom 1\n";
        assert!(!all_objects(text));
        assert!(check_manifest(text, "t").is_ok());
    }
}
