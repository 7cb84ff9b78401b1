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

use std::collections::HashSet;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::Result;

/// Checks that `text` is YAML made of Kubernetes objects; `what` names it in errors.
pub fn check_manifest(text: &str, what: &str) -> Result<()> {
    if all_objects(text) {
        return Ok(());
    }
    Ok(drover_agent::render::check_manifest(text, what)?)
}

/// True when every document of `text` is empty or a Kubernetes object; false when not, or
/// not sure.
fn all_objects(text: &str) -> bool {
    serde_norway::Deserializer::from_str(text).all(|doc| Document::deserialize(doc).is_ok())
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
struct Str<const NON_EMPTY: bool>;

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
                    Ok(Str)
                }
            }
        }
        d.deserialize_any(V::<NON_EMPTY>)
    }
}

/// `metadata`: a mapping with a string `name` or `generateName`.
struct Metadata;

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
                while let Some(key) = map.next_key::<Key>()? {
                    keys.insert(&key)?;
                    if matches!(key.known, Known::Name | Known::GenerateName) {
                        map.next_value::<Str<false>>()?;
                        named = true;
                    } else {
                        map.next_value::<Any>()?;
                    }
                }
                if named {
                    Ok(Metadata)
                } else {
                    Err(not_sure())
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One document: empty, or a mapping with non-empty string `apiVersion` and `kind` and a
/// [`Metadata`] mapping.
struct Document;

impl<'de> Deserialize<'de> for Document {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Document;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document)
            }
            fn visit_none<E: de::Error>(self) -> Result<Document, E> {
                Ok(Document)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Document, A::Error> {
                let mut keys = Keys::default();
                let (mut api_version, mut kind, mut metadata) = (false, false, false);
                while let Some(key) = map.next_key::<Key>()? {
                    keys.insert(&key)?;
                    match key.known {
                        Known::ApiVersion => {
                            map.next_value::<Str<true>>()?;
                            api_version = true;
                        }
                        Known::Kind => {
                            map.next_value::<Str<true>>()?;
                            kind = true;
                        }
                        Known::Metadata => {
                            map.next_value::<Metadata>()?;
                            metadata = true;
                        }
                        _ => {
                            map.next_value::<Any>()?;
                        }
                    }
                }
                if api_version && kind && metadata {
                    Ok(Document)
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
