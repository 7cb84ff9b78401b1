//! YAML documents to Kubernetes objects: parsing (error positions as in the whole file)
//! and the checks every object passes (apiVersion, kind, a name, no lists).

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use super::documents;
use crate::allow::api_group;
use crate::error::{Error, Result};

/// One rendered Kubernetes object: who it is, its body as parsed (namespace defaulted),
/// and the YAML text the dir sink writes. Made only by rendering, from a checked object.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// `apiVersion`, such as `apps/v1`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// `metadata.name`; `None` for an object the API server names (`generateName`).
    pub name: Option<String>,
    /// `metadata.generateName`, if any.
    pub generate_name: Option<String>,
    /// `metadata.namespace` after defaulting, if any.
    pub namespace: Option<String>,
    /// The object as parsed.
    pub body: Mapping,
    /// The object as a YAML document without the `---` separator.
    pub text: String,
}

impl Object {
    /// A checked object (see [`check_object`]) with its text.
    pub(super) fn new(body: Mapping, text: String) -> Object {
        let metadata = body.get("metadata").and_then(Value::as_mapping);
        let meta = |key: &str| metadata.and_then(|m| str_field(m, key)).map(str::to_string);
        Object {
            api_version: str_field(&body, "apiVersion").unwrap_or_default().to_string(),
            kind: str_field(&body, "kind").unwrap_or_default().to_string(),
            name: meta("name"),
            generate_name: meta("generateName"),
            namespace: meta("namespace"),
            text,
            body,
        }
    }

    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        api_group(&self.api_version)
    }

    /// The name, or the prefix the API server names it from.
    pub fn name_or_prefix(&self) -> &str {
        self.name
            .as_deref()
            .or(self.generate_name.as_deref())
            .unwrap_or_default()
    }
}

/// Checks that `text` is YAML made of Kubernetes objects, as the agent will require after
/// substitution (`${cluster.*}` placeholders inside values parse as strings). The publisher
/// calls this so a broken manifest is refused before it reaches any cluster.
pub fn check_manifest(text: &str, what: &str) -> Result<()> {
    parse_objects(text, what).map(|_| ())
}

/// Splits a manifest into objects, refusing documents that are not Kubernetes objects.
pub(super) fn parse_objects(text: &str, what: &str) -> Result<Vec<Mapping>> {
    let mut objects = Vec::new();
    let whole = Part {
        numbered: 0,
        lines: 0,
        whole: true,
    };
    for_each_object(text, what, &whole, &mut |obj| {
        objects.push(obj);
        Ok(())
    })?;
    Ok(objects)
}

/// Where a piece of text parsed on its own sits in its file.
pub(super) struct Part {
    /// Documents in the file before it.
    pub(super) numbered: u64,
    /// Line breaks in the file before it.
    pub(super) lines: u64,
    /// True when it is the whole file.
    pub(super) whole: bool,
}

/// Parses the YAML documents of `text` (the `part` of a file) in order, refusing any that
/// is not a Kubernetes object, and hands each object to `f`. Documents are numbered, and
/// error positions given, as in the whole file. Returns the number of documents, empty ones
/// included.
pub(super) fn for_each_object(
    text: &str,
    what: &str,
    part: &Part,
    f: &mut dyn FnMut(Mapping) -> Result<()>,
) -> Result<u64> {
    let mut n = part.numbered;
    for doc in serde_norway::Deserializer::from_str(text) {
        n += 1;
        let at = || format!("{what}: document {n}");
        let value = ParsedDocument::deserialize(doc).map_err(|e| {
            Error::invalid(
                at(),
                format!("not valid YAML: {}", documents::shift_lines(&e.to_string(), part.lines)),
            )
        })?;
        let value = match value {
            ParsedDocument::Value(value) => value,
            // A part with no document in it, within a file that has documents elsewhere.
            ParsedDocument::NoDocument if !part.whole => {
                n -= 1;
                continue;
            }
            ParsedDocument::NoDocument => Value::Null,
        };
        match value {
            Value::Null => continue,
            Value::Mapping(map) => {
                check_object(&map).map_err(|m| Error::invalid(at(), m))?;
                f(map)?;
            }
            other => {
                return Err(Error::invalid(
                    at(),
                    format!("expected a Kubernetes object (a mapping), found {}", type_name(&other)),
                ))
            }
        }
    }
    Ok(n - part.numbered)
}

/// A document as the YAML parser yields it: exactly a [`Value`], except that the empty
/// document it yields for a text holding no document at all is told apart.
enum ParsedDocument {
    NoDocument,
    Value(Value),
}

impl<'de> Deserialize<'de> for ParsedDocument {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{EnumAccessDeserializer, MapAccessDeserializer, SeqAccessDeserializer};
        use serde::de::{EnumAccess, MapAccess, SeqAccess};
        struct V;
        // Compound values go through Value's own visitor; scalars map as it maps them.
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ParsedDocument;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::NoDocument)
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::Null))
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::Bool(b)))
            }
            fn visit_i64<E: serde::de::Error>(self, i: i64) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::Number(i.into())))
            }
            fn visit_u64<E: serde::de::Error>(self, u: u64) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::Number(u.into())))
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::Number(f.into())))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::String(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<ParsedDocument, E> {
                Ok(ParsedDocument::Value(Value::String(s)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<ParsedDocument, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(ParsedDocument::Value)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ParsedDocument, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(ParsedDocument::Value)
            }
            fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<ParsedDocument, A::Error> {
                Value::deserialize(EnumAccessDeserializer::new(data)).map(ParsedDocument::Value)
            }
        }
        d.deserialize_any(V)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

pub(super) fn str_field<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn check_object(map: &Mapping) -> Result<(), String> {
    for key in ["apiVersion", "kind"] {
        if str_field(map, key).is_none_or(str::is_empty) {
            return Err(format!("not a Kubernetes object: missing string field {key:?}"));
        }
    }
    let metadata = map
        .get("metadata")
        .and_then(Value::as_mapping)
        .ok_or("not a Kubernetes object: missing \"metadata\" mapping")?;
    if str_field(metadata, "name").is_none() && str_field(metadata, "generateName").is_none() {
        return Err("not a Kubernetes object: metadata has neither \"name\" nor \"generateName\"".into());
    }
    // k3s (and kubectl) decode any document with an `items` field as a list and apply every
    // item, whatever its `kind`: objects drover would not see, check or prune.
    if map.contains_key("items") {
        return Err(format!(
            "a list of objects (kind {:?} with a top-level \"items\") is not allowed: put each object in its own document",
            str_field(map, "kind").unwrap_or_default()
        ));
    }
    Ok(())
}
