//! Rendering: turn a verified bundle blob into the manifests this cluster gets.
//!
//! A bundle is a gzip-compressed tar. Its regular files ending in `.yaml`/`.yml` are the
//! manifests, taken in byte-wise lexical order of their paths; other regular files and
//! directories are ignored. A symlink, hard link, device, fifo or any other special entry,
//! an absolute path or a `..` component makes the whole bundle invalid, as does going past
//! the unpacked-size or entry-count limits (gzip bombs).
//!
//! Each manifest is then substituted (`${cluster.name}`, `${cluster.labels.<key>}`; an
//! unknown variable is an error, never an empty string), split into YAML documents, checked
//! to be Kubernetes objects, and namespaced objects without a namespace get the bundle's.
//!
//! Rendering streams: the tarball is read one entry at a time ([`tarball`]), each manifest
//! one document at a time ([`documents`]), and each object goes to an [`ObjectWriter`] (the
//! `dir` sink writes it to a temporary file) as soon as it is checked. Memory is bounded by
//! the largest document ([`Limits::max_document_bytes`]), not by the bundle. Two cases read
//! the bundle a second time, and both give exactly what reading it all at once would:
//! manifests out of path order in a hand-made tarball (see [`tarball`]), and a
//! CustomResourceDefinition that makes a kind cluster-scoped after objects of that kind
//! were already given the bundle's namespace.

mod documents;
mod tarball;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use serde_norway::{Mapping, Value};

use crate::allow::{api_group, builtin_scope, AllowList, Placement};
use crate::error::{Error, Result};
use crate::select::Cluster;
use crate::source::blob::VerifiedBlob;
use documents::{Documents, SplitError};
use tarball::{Manifest, Spool, Stop};

pub use tarball::MAX_HEADER_BYTES;

/// Default limit on the decompressed size of a bundle (4 GiB). Rendering streams, so this
/// bounds disk and CPU time, not memory: it stops a gzip bomb (deflate expands at most
/// about 1000-fold, so a few MiB of blob could otherwise unpack to terabytes) while leaving
/// room for bundles far larger than any cluster applies.
pub const DEFAULT_MAX_UNPACKED_BYTES: u64 = 4 << 30;
/// Default limit on the number of entries in a bundle tarball.
pub const DEFAULT_MAX_ENTRIES: u64 = 100_000;
/// Default limit on one YAML document (16 MiB). The largest thing held in memory while
/// rendering is one document, parsed; the Kubernetes API refuses objects over about 3 MiB
/// anyway (etcd's request limit).
pub const DEFAULT_MAX_DOCUMENT_BYTES: u64 = 16 << 20;

/// Limits that bound the work and memory a bundle may cost.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest decompressed size of the tarball (all entries, headers included), in bytes.
    pub max_unpacked_bytes: u64,
    /// Most entries a tarball may hold.
    pub max_entries: u64,
    /// Largest YAML document (the text between two `---` lines), in bytes.
    pub max_document_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_unpacked_bytes: DEFAULT_MAX_UNPACKED_BYTES,
            max_entries: DEFAULT_MAX_ENTRIES,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
        }
    }
}

/// Where rendered objects go, one at a time, in order.
pub trait ObjectWriter {
    /// Appends one object: a YAML document without the `---` separator.
    fn write_object(&mut self, document: &str) -> Result<()>;
    /// Discards every object written so far: rendering starts over.
    fn restart(&mut self) -> Result<()>;
}

/// A bundle's manifests held in memory (tests, small tools); the agent writes them to the
/// sink instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The objects, each a YAML document without the `---` separator.
    pub documents: Vec<String>,
}

impl ObjectWriter for Rendered {
    fn write_object(&mut self, document: &str) -> Result<()> {
        self.documents.push(document.to_string());
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.documents.clear();
        Ok(())
    }
}

/// One manifest file of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestFile {
    /// Normalised relative path inside the tarball (`/`-separated, no `./`).
    pub path: String,
    /// File content.
    pub text: String,
}

/// Reads, substitutes and validates the verified bundle `blob`, handing each object to `out`
/// as soon as it is checked; returns the number of objects. `what` names the bundle in
/// errors; `namespace` is the bundle's default namespace. On error, `out` holds a part of
/// the bundle and must be discarded. A hand-made tarball whose manifests are not in path
/// order is first copied to a temporary file in the blob's directory.
///
/// With an `allow` list, every object is checked against it once its namespace is known
/// (kinds of [`crate::allow::builtin_scope`] or defined cluster-scoped by a CRD of the
/// bundle, and objects left without a namespace, count as cluster-scoped; a kind neither
/// knows must pass both ways unless the sink checks with discovery); if any is refused,
/// the whole bundle is an [`Error::NotAllowed`] naming each refused object.
pub fn render_bundle(
    blob: &VerifiedBlob,
    what: &str,
    namespace: Option<&str>,
    cluster: &Cluster,
    limits: &Limits,
    allow: Option<&AllowList>,
    out: &mut dyn ObjectWriter,
) -> Result<u64> {
    let mut renderer = Renderer::new(what, namespace, cluster, limits);
    renderer.allow = allow;
    let mut spool: Option<Spool> = None;
    loop {
        let mut visit = |m: Manifest<'_>| renderer.render_file(m, out);
        let walked = match &mut spool {
            None => tarball::walk_sorted(tarball::open(blob.path())?, what, limits, &mut visit),
            Some(spool) => spool.visit(what, &mut visit),
        };
        match walked {
            Ok(()) if !renderer.stale => {
                return match (allow, renderer.refused.is_empty()) {
                    (Some(allow), false) => Err(allow.refused(what, &renderer.refused)),
                    _ => Ok(renderer.objects),
                }
            }
            // A CRD made a kind cluster-scoped after objects of that kind got the bundle's
            // namespace (or namespaced after objects of it were checked with an unknown
            // scope): render again, knowing it from the start. Each such pass learns at
            // least one kind more, so this ends.
            Ok(()) => {}
            Err(Stop::Unsorted) => {
                let dir = blob.path().parent().unwrap_or(Path::new("."));
                spool = Some(Spool::extract(blob.path(), dir, what, limits)?);
            }
            Err(Stop::Failed(e)) => return Err(e),
        }
        out.restart()?;
        renderer.restart();
    }
}

/// Most kinds remembered as "given the bundle's namespace"; past that, any cluster-scoped
/// CRD found later makes the bundle render again.
const MAX_TRACKED_KINDS: usize = 1024;

/// The per-object work of [`render_bundle`], and what it has learnt about the bundle.
struct Renderer<'a> {
    what: &'a str,
    namespace: Option<&'a str>,
    cluster: &'a Cluster,
    max_document_bytes: u64,
    /// Scope of the (group, kind) pairs the bundle's CRDs seen so far define, true when
    /// cluster-scoped (kept across passes); built-in kinds are in [`builtin_scope`].
    crd_scopes: BTreeMap<(String, String), bool>,
    /// Kinds of the objects given the bundle's namespace in this pass.
    defaulted: BTreeSet<String>,
    defaulted_overflow: bool,
    /// (group, kind) pairs checked against the allow-list with an unknown scope this pass.
    unknown: BTreeSet<(String, String)>,
    unknown_overflow: bool,
    /// An object of a kind later found to be cluster-scoped was given the namespace, or one
    /// of a kind later found to be namespaced was checked with an unknown scope.
    stale: bool,
    objects: u64,
    /// The operator's namespace allow-list, if any.
    allow: Option<&'a AllowList>,
    /// Objects of this pass the allow-list refuses.
    refused: Vec<String>,
}

impl<'a> Renderer<'a> {
    fn new(what: &'a str, namespace: Option<&'a str>, cluster: &'a Cluster, limits: &Limits) -> Self {
        Renderer {
            what,
            namespace,
            cluster,
            max_document_bytes: limits.max_document_bytes,
            crd_scopes: BTreeMap::new(),
            defaulted: BTreeSet::new(),
            defaulted_overflow: false,
            unknown: BTreeSet::new(),
            unknown_overflow: false,
            stale: false,
            objects: 0,
            allow: None,
            refused: Vec::new(),
        }
    }

    /// Prepares another pass over the bundle; what was learnt about kinds is kept.
    fn restart(&mut self) {
        self.defaulted.clear();
        self.defaulted_overflow = false;
        self.unknown.clear();
        self.unknown_overflow = false;
        self.stale = false;
        self.objects = 0;
        self.refused.clear();
    }

    /// Substitutes, checks and writes the objects of one manifest file, a document at a time.
    fn render_file(&mut self, m: Manifest<'_>, out: &mut dyn ObjectWriter) -> Result<(), Stop> {
        let at_file = format!("{}: {}", self.what, m.path);
        let mut documents = Documents::new(
            std::io::BufReader::with_capacity(64 << 10, &mut *m.data),
            self.max_document_bytes,
        );
        let mut numbered = 0u64;
        loop {
            let chunk = match documents.next_chunk() {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(()),
                Err(SplitError::Io(e)) => return Err(m.read_error(e).into()),
                Err(SplitError::TooLarge) => {
                    return Err(Error::invalid(
                        format!("{at_file}: document {}", numbered + 1),
                        format!(
                            "larger than the limit of {} bytes for one YAML document",
                            self.max_document_bytes
                        ),
                    )
                    .into())
                }
            };
            let text = String::from_utf8(chunk.text)
                .map_err(|_| Error::invalid(self.what, format!("entry {:?} is not UTF-8", m.raw_path)))?;
            let text = substitute(&text, self.cluster).map_err(|e| Error::invalid(&at_file, e))?;
            let part = Part {
                numbered,
                lines: chunk.line,
                whole: chunk.whole,
            };
            numbered += for_each_object(&text, &at_file, &part, &mut |obj| self.write(obj, out))?;
        }
    }

    /// Defaults the namespace of one checked object and writes it.
    fn write(&mut self, mut obj: Mapping, out: &mut dyn ObjectWriter) -> Result<()> {
        if let Some((key, cluster_scoped)) = crd_scope(&obj) {
            if !self.crd_scopes.contains_key(&key) {
                self.stale |= match cluster_scoped {
                    true => self.defaulted_overflow || self.defaulted.contains(&key.1),
                    false => self.unknown_overflow || self.unknown.contains(&key),
                };
                self.crd_scopes.insert(key, cluster_scoped);
            }
        }
        if let Some(ns) = self.namespace {
            let group = api_group(str_field(&obj, "apiVersion").unwrap_or_default());
            let kind = str_field(&obj, "kind").unwrap_or_default();
            if self.scope(group, kind) != Some(true) && default_namespace(&mut obj, ns) {
                let kind = str_field(&obj, "kind").unwrap_or_default();
                if !self.defaulted.contains(kind) {
                    if self.defaulted.len() < MAX_TRACKED_KINDS {
                        self.defaulted.insert(kind.to_string());
                    } else {
                        self.defaulted_overflow = true;
                    }
                }
            }
        }
        if let Some(allow) = self.allow {
            if let Some(refused) = self.refusal(allow, &obj) {
                tracing::warn!(bundle = self.what, object = %refused, "object outside the namespace allow-list");
                self.refused.push(refused);
            }
        }
        let document =
            serde_norway::to_string(&obj).map_err(|e| Error::invalid(self.what, format!("cannot write YAML: {e}")))?;
        out.write_object(&document)?;
        self.objects += 1;
        Ok(())
    }
}

impl Renderer<'_> {
    /// Whether (`group`, `kind`) is cluster-scoped (`Some(true)`), namespaced, or unknown,
    /// by the built-in table and the bundle's CRDs seen so far.
    fn scope(&self, group: &str, kind: &str) -> Option<bool> {
        builtin_scope(group, kind).or_else(|| self.crd_scopes.get(&(group.to_string(), kind.to_string())).copied())
    }

    /// Checks one object, its namespace already defaulted, against the allow-list.
    fn refusal(&mut self, allow: &AllowList, obj: &Mapping) -> Option<String> {
        let kind = str_field(obj, "kind").unwrap_or_default();
        let group = api_group(str_field(obj, "apiVersion").unwrap_or_default());
        let metadata = obj.get("metadata").and_then(Value::as_mapping);
        let name = metadata
            .and_then(|m| str_field(m, "name").or_else(|| str_field(m, "generateName")))
            .unwrap_or_default();
        let namespace = metadata.and_then(|m| str_field(m, "namespace"));
        let placement = match (self.scope(group, kind), namespace) {
            // The API server ignores the namespace of a cluster-scoped object.
            (Some(true), _) => Placement::ClusterScoped,
            (Some(false), Some(ns)) => Placement::Namespaced(ns),
            // The kube sink asks discovery before it writes anything.
            (None, Some(ns)) if !allow.fails_closed_on_unknown_scope() => Placement::Namespaced(ns),
            (None, None) if !allow.fails_closed_on_unknown_scope() => Placement::ClusterScoped,
            // Without an API server, a kind we cannot place must be allowed both ways: a
            // later CRD of the bundle that makes it namespaced makes the bundle render again.
            (None, ns) => {
                let key = (group.to_string(), kind.to_string());
                if !self.unknown.contains(&key) {
                    if self.unknown.len() < MAX_TRACKED_KINDS {
                        self.unknown.insert(key);
                    } else {
                        self.unknown_overflow = true;
                    }
                }
                Placement::Unknown(ns)
            }
            // Left without a namespace: the stricter reading.
            (Some(false), None) => Placement::ClusterScoped,
        };
        allow.refusal(group, kind, name, placement)
    }
}

/// Checks the tarball rules of format §5 on the blob read from `reader` (entry types,
/// paths, duplicates, limits, UTF-8 and the size of each YAML document) without keeping
/// the content; returns the manifest paths in the order they apply. This is what
/// `drover verify` checks.
pub fn check_tarball(reader: impl Read, what: &str, limits: &Limits) -> Result<Vec<String>> {
    let mut paths = Vec::new();
    let walked = tarball::walk(reader, what, limits, &mut |m| {
        let mut documents = Documents::new(
            std::io::BufReader::with_capacity(64 << 10, &mut *m.data),
            limits.max_document_bytes,
        );
        loop {
            match documents.next_chunk() {
                Ok(Some(chunk)) => {
                    std::str::from_utf8(&chunk.text)
                        .map_err(|_| Error::invalid(what, format!("entry {:?} is not UTF-8", m.raw_path)))?;
                }
                Ok(None) => break,
                Err(SplitError::Io(e)) => return Err(m.read_error(e).into()),
                Err(SplitError::TooLarge) => {
                    return Err(Error::invalid(
                        format!("{what}: {}", m.path),
                        format!(
                            "a YAML document is larger than the limit of {} bytes",
                            limits.max_document_bytes
                        ),
                    )
                    .into())
                }
            }
        }
        paths.push(m.path.to_string());
        Ok(())
    });
    finish_walk(walked)?;
    sorted_without_duplicates(paths, |p| p.as_str(), what)
}

/// Reads the manifest files of a gzip-compressed tar into memory, enforcing the bundle
/// rules; for tests and tools that look at small bundles (the agent streams instead).
pub fn read_manifests(reader: impl Read, what: &str, limits: &Limits) -> Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    let walked = tarball::walk(reader, what, limits, &mut |m| {
        let mut bytes = Vec::new();
        m.data.read_to_end(&mut bytes).map_err(|e| m.read_error(e))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::invalid(what, format!("entry {:?} is not UTF-8", m.raw_path)))?;
        files.push(ManifestFile {
            path: m.path.to_string(),
            text,
        });
        Ok(())
    });
    finish_walk(walked)?;
    sorted_without_duplicates(files, |f| f.path.as_str(), what)
}

fn finish_walk(walked: Result<(), Stop>) -> Result<()> {
    match walked {
        Ok(()) => Ok(()),
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::Unsorted) => unreachable!("tarball::walk never checks the order"),
    }
}

fn sorted_without_duplicates<T>(mut items: Vec<T>, path: impl Fn(&T) -> &str, what: &str) -> Result<Vec<T>> {
    items.sort_by(|a, b| path(a).as_bytes().cmp(path(b).as_bytes()));
    if let Some(w) = items.windows(2).find(|w| path(&w[0]) == path(&w[1])) {
        return Err(Error::invalid(what, format!("entry {:?} appears twice", path(&w[0]))));
    }
    Ok(items)
}

/// Replaces `${cluster.name}` and `${cluster.labels.<key>}`. `$${` stands for a literal
/// `${`. Other `${…}` (shell scripts in ConfigMaps, for example) are left alone; but any
/// `${cluster.…}` that is not one of the two forms, or names a label the cluster does not
/// have, is an error.
pub fn substitute(text: &str, cluster: &Cluster) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        if rest[..at].ends_with('$') {
            // `$${` escape: emit everything before the extra `$`, then a literal `${`.
            out.push_str(&rest[..at - 1]);
            out.push_str("${");
            rest = &rest[at + 2..];
            continue;
        }
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        if !after.starts_with("cluster.") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated variable \"${{{}\"", first_line(after)))?;
        let var = &after[..end];
        let value =
            match var.strip_prefix("cluster.") {
                Some("name") => cluster.name.as_str(),
                Some(other) => match other.strip_prefix("labels.") {
                    Some(key) => cluster.labels.get(key).map(String::as_str).ok_or_else(|| {
                        format!("variable ${{{var}}}: cluster {:?} has no label {key:?}", cluster.name)
                    })?,
                    None => {
                        return Err(format!(
                            "unknown variable ${{{var}}} (known: ${{cluster.name}}, ${{cluster.labels.<key>}})"
                        ))
                    }
                },
                None => unreachable!("checked starts_with(\"cluster.\") above"),
            };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or("");
    &line[..line.len().min(40)]
}

/// Checks that `text` is YAML made of Kubernetes objects, as the agent will require after
/// substitution (`${cluster.*}` placeholders inside values parse as strings). The publisher
/// calls this so a broken manifest is refused before it reaches any cluster.
pub fn check_manifest(text: &str, what: &str) -> Result<()> {
    parse_objects(text, what).map(|_| ())
}

/// Splits a manifest into objects, refusing documents that are not Kubernetes objects.
fn parse_objects(text: &str, what: &str) -> Result<Vec<Mapping>> {
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
struct Part {
    /// Documents in the file before it.
    numbered: u64,
    /// Line breaks in the file before it.
    lines: u64,
    /// True when it is the whole file.
    whole: bool,
}

/// Parses the YAML documents of `text` (the `part` of a file) in order, refusing any that
/// is not a Kubernetes object, and hands each object to `f`. Documents are numbered, and
/// error positions given, as in the whole file. Returns the number of documents, empty ones
/// included.
fn for_each_object(text: &str, what: &str, part: &Part, f: &mut dyn FnMut(Mapping) -> Result<()>) -> Result<u64> {
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

fn str_field<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
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

/// The (group, kind) a CustomResourceDefinition defines, and whether `spec.scope` makes
/// it cluster-scoped. The group is `spec.group`, else what follows the first dot of the
/// CRD's name (`<plural>.<group>`).
fn crd_scope(obj: &Mapping) -> Option<((String, String), bool)> {
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

/// Gives an object (not of a cluster-scoped kind) without a namespace the bundle's; true
/// when it did.
fn default_namespace(obj: &mut Mapping, namespace: &str) -> bool {
    match obj.get_mut("metadata") {
        Some(Value::Mapping(metadata)) if !metadata.contains_key("namespace") => {
            metadata.insert("namespace".into(), namespace.into());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        Cluster {
            name: "site-7".into(),
            labels: [("env".to_string(), "prod".to_string())].into(),
        }
    }

    fn tar_gz(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            // set_path refuses `..`, so write the name bytes directly, as an attacker would.
            h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name("target").expect("link name");
            }
            h.set_cksum();
            builder.append(&h, *data).expect("append");
        }
        builder.into_inner().expect("finish tar").finish().expect("finish gzip")
    }

    fn read(entries: &[(&str, tar::EntryType, &[u8])]) -> Result<Vec<ManifestFile>> {
        read_manifests(&tar_gz(entries)[..], "bundle web", &Limits::default())
    }

    #[test]
    fn manifests_come_in_bytewise_path_order_and_other_files_are_ignored() {
        let reg = tar::EntryType::Regular;
        let files = read(&[
            ("b.yaml", reg, b"b"),
            ("./a/z.yml", reg, b"az"),
            ("README.md", reg, b"x"),
            ("B.yaml", reg, b"B"),
        ])
        .expect("valid");
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["B.yaml", "a/z.yml", "b.yaml"]);
    }

    #[test]
    fn rejects_parent_dir_absolute_and_special_entries() {
        let reg = tar::EntryType::Regular;
        for (path, kind) in [
            ("../evil.yaml", reg),
            ("a/../../evil.yaml", reg),
            ("/etc/evil.yaml", reg),
            ("link.yaml", tar::EntryType::Symlink),
            ("hard.yaml", tar::EntryType::Link),
            ("dev", tar::EntryType::Char),
            ("blk", tar::EntryType::Block),
            ("fifo", tar::EntryType::Fifo),
        ] {
            let err = read(&[("ok.yaml", reg, b"a: 1"), (path, kind, b"")]).expect_err(path);
            assert!(err.to_string().contains("bundle web"), "{err}");
        }
    }

    #[test]
    fn rejects_bundle_past_unpacked_limit() {
        let limits = Limits {
            max_unpacked_bytes: 10,
            max_entries: 100,
            ..Limits::default()
        };
        let blob = tar_gz(&[("a.yaml", tar::EntryType::Regular, &[b' '; 11])]);
        let err = read_manifests(&blob[..], "b", &limits).expect_err("too big");
        assert!(err.to_string().contains("more than 10 bytes"), "{err}");
    }

    #[test]
    fn rejects_bundle_past_entry_limit() {
        let limits = Limits {
            max_unpacked_bytes: 1000,
            max_entries: 2,
            ..Limits::default()
        };
        let reg = tar::EntryType::Regular;
        let blob = tar_gz(&[("a", reg, b""), ("b", reg, b""), ("c", reg, b"")]);
        assert!(read_manifests(&blob[..], "b", &limits).is_err());
    }

    #[test]
    fn rejects_garbage_that_is_not_gzip() {
        assert!(read_manifests(&b"definitely not gzip"[..], "b", &Limits::default()).is_err());
    }

    #[test]
    fn substitutes_cluster_name_and_labels() {
        let out = substitute("host: ${cluster.name}.${cluster.labels.env}.example", &cluster()).expect("ok");
        assert_eq!(out, "host: site-7.prod.example");
    }

    #[test]
    fn unknown_variable_is_an_error_not_an_empty_string() {
        let err = substitute("x: ${cluster.labels.region}", &cluster()).expect_err("missing label");
        assert!(err.contains("region"), "{err}");
        assert!(substitute("x: ${cluster.zone}", &cluster()).is_err());
        assert!(substitute("x: ${cluster.name", &cluster()).is_err());
    }

    #[test]
    fn other_dollar_braces_and_escapes_are_left_for_the_workload() {
        let out = substitute("run: echo ${HOME} $${cluster.name} ${cluster.name}", &cluster()).expect("ok");
        assert_eq!(out, "run: echo ${HOME} ${cluster.name} site-7");
    }

    #[test]
    fn namespaced_objects_get_the_bundle_namespace_cluster_scoped_do_not() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: other\n---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                    spec:\n  scope: Cluster\n  names:\n    kind: Widget\n---\n\
                    apiVersion: x.io/v1\nkind: Widget\nmetadata:\n  name: w\n";
        let objects = parse_objects(yaml, "t").expect("objects");
        let scoped = all_cluster_scoped_kinds(&objects);
        let namespaces: Vec<Option<String>> = objects
            .into_iter()
            .map(|mut o| {
                default_unless_cluster_scoped(&mut o, "web", &scoped);
                o["metadata"]["namespace"].as_str().map(str::to_string)
            })
            .collect();
        assert_eq!(namespaces, [Some("web".into()), None, Some("other".into()), None, None]);
    }

    #[test]
    fn rejects_yaml_that_is_not_a_kubernetes_object() {
        assert!(parse_objects("- a\n- b\n", "t").is_err());
        assert!(parse_objects("kind: ConfigMap\nmetadata: {name: a}\n", "t").is_err());
        assert!(parse_objects("apiVersion: v1\nkind: ConfigMap\n", "t").is_err());
        assert!(parse_objects("a: [unclosed\n", "t").is_err());
        let list = "apiVersion: v1\nkind: List\nmetadata: {name: l}\nitems: [{apiVersion: v1, kind: Secret}]\n";
        let err = parse_objects(list, "t").expect_err("a list").to_string();
        assert!(err.contains("top-level \"items\""), "{err}");
        assert_eq!(
            parse_objects("---\n# only a comment\n", "t").expect("empty ok").len(),
            0
        );
    }

    /// Cluster-scoped custom kinds of a whole bundle: its CRDs'.
    fn all_cluster_scoped_kinds(objects: &[Mapping]) -> BTreeSet<(String, String)> {
        objects
            .iter()
            .filter_map(crd_scope)
            .filter(|(_, cluster)| *cluster)
            .map(|(key, _)| key)
            .collect()
    }

    /// Defaults the namespace of `obj` unless the built-in table or `scoped` (a bundle's
    /// cluster-scoped CRD kinds) says it is cluster-scoped.
    fn default_unless_cluster_scoped(obj: &mut Mapping, ns: &str, scoped: &BTreeSet<(String, String)>) {
        let group = api_group(str_field(obj, "apiVersion").unwrap_or_default()).to_string();
        let kind = str_field(obj, "kind").unwrap_or_default().to_string();
        if !builtin_scope(&group, &kind).unwrap_or_else(|| scoped.contains(&(group, kind))) {
            default_namespace(obj, ns);
        }
    }

    /// Rendering as it was done before it streamed: every manifest read whole, substituted
    /// whole, parsed whole, then namespaces defaulted knowing every CRD of the bundle.
    fn render_all_at_once(blob: &[u8], namespace: Option<&str>) -> Result<Vec<String>> {
        let files = read_manifests(blob, "bundle web", &Limits::default())?;
        let mut objects = Vec::new();
        for f in &files {
            let at = format!("bundle web: {}", f.path);
            let text = substitute(&f.text, &cluster()).map_err(|m| Error::invalid(&at, m))?;
            objects.extend(parse_objects(&text, &at)?);
        }
        let scoped = all_cluster_scoped_kinds(&objects);
        Ok(objects
            .into_iter()
            .map(|mut obj| {
                if let Some(ns) = namespace {
                    default_unless_cluster_scoped(&mut obj, ns, &scoped);
                }
                serde_norway::to_string(&obj).expect("serialise")
            })
            .collect())
    }

    /// The blob at `path`, checked against its own digest.
    fn verified(path: std::path::PathBuf) -> VerifiedBlob {
        let bytes = std::fs::read(&path).expect("read blob");
        VerifiedBlob::check_file(path, &crate::format::Digest::of(&bytes), bytes.len() as u64).expect("intact")
    }

    fn render_streaming(blob: &[u8], namespace: Option<&str>, limits: &Limits) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, blob).expect("write blob");
        let blob = verified(path);
        let mut out = Rendered::default();
        let objects = render_bundle(&blob, "bundle web", namespace, &cluster(), limits, None, &mut out)?;
        assert_eq!(objects as usize, out.documents.len());
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").collect();
        assert_eq!(left.len(), 1, "no spool file is left behind");
        Ok(out.documents)
    }

    fn config_map(i: usize) -> String {
        format!(
            "# object {i}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n\
             data:\n  site: ${{cluster.name}}\n  env: \"${{cluster.labels.env}}\"\n  script: |\n    echo ${{HOME}} ---\n"
        )
    }

    #[test]
    fn a_many_document_file_renders_as_it_did_before_streaming() {
        let reg = tar::EntryType::Regular;
        let mut many = String::from("# leading comment\n");
        for i in 0..500 {
            many.push_str(&config_map(i));
            many.push_str(if i % 7 == 0 { "---\n---\n" } else { "--- # next\n" });
        }
        many.push_str("...\n");
        let other = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\n\
                     apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: other}\nspec: {ports: [{port: 80}]}\n";
        let blob = tar_gz(&[
            ("a.yaml", reg, other.as_bytes()),
            ("b/many.yml", reg, many.as_bytes()),
            ("c.txt", reg, b"not a manifest"),
        ]);
        let before = render_all_at_once(&blob, Some("web")).expect("old way");
        assert_eq!(before.len(), 502);
        assert_eq!(
            render_streaming(&blob, Some("web"), &Limits::default()).expect("streamed"),
            before
        );
        assert_eq!(
            render_streaming(&blob, None, &Limits::default()).expect("streamed"),
            render_all_at_once(&blob, None).expect("old way")
        );
    }

    #[test]
    fn a_tarball_out_of_path_order_renders_in_path_order() {
        let reg = tar::EntryType::Regular;
        let (a, b) = (config_map(1), config_map(2));
        let blob = tar_gz(&[("z/b.yaml", reg, b.as_bytes()), ("a.yaml", reg, a.as_bytes())]);
        let docs = render_streaming(&blob, Some("web"), &Limits::default()).expect("rendered");
        assert_eq!(docs, render_all_at_once(&blob, Some("web")).expect("old way"));
        assert!(docs[0].contains("cm-1"), "{docs:?}");
        let dup = tar_gz(&[
            ("b.yaml", reg, b.as_bytes()),
            ("a.yaml", reg, a.as_bytes()),
            ("./b.yaml", reg, b""),
        ]);
        let err = render_streaming(&dup, None, &Limits::default()).expect_err("duplicate");
        assert!(err.to_string().contains("\"b.yaml\" appears twice"), "{err}");
        let dup = tar_gz(&[("a.yaml", reg, a.as_bytes()), ("./a.yaml", reg, a.as_bytes())]);
        let err = render_streaming(&dup, None, &Limits::default()).expect_err("duplicate");
        assert!(err.to_string().contains("\"a.yaml\" appears twice"), "{err}");
    }

    #[test]
    fn a_crd_after_its_objects_still_keeps_them_cluster_scoped() {
        let reg = tar::EntryType::Regular;
        let widgets = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                       apiVersion: x.io/v1\nkind: Gadget\nmetadata: {name: g}\n";
        let crd =
            "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.x.io\n\
                   spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
        let blob = tar_gz(&[
            ("a-widgets.yaml", reg, widgets.as_bytes()),
            ("z-crd.yaml", reg, crd.as_bytes()),
        ]);
        let docs = render_streaming(&blob, Some("web"), &Limits::default()).expect("rendered");
        assert_eq!(docs, render_all_at_once(&blob, Some("web")).expect("old way"));
        assert!(!docs[0].contains("namespace"), "Widget is cluster-scoped: {docs:?}");
        assert!(docs[1].contains("namespace: web"), "Gadget is namespaced: {docs:?}");
    }

    #[test]
    fn a_document_over_the_limit_is_refused_naming_its_file() {
        let reg = tar::EntryType::Regular;
        let big = format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{x: \"{}\"}}\n",
            config_map(1),
            "x".repeat(4000)
        );
        let blob = tar_gz(&[
            ("a.yaml", reg, config_map(0).as_bytes()),
            ("big.yaml", reg, big.as_bytes()),
        ]);
        let limits = Limits {
            max_document_bytes: 1000,
            ..Limits::default()
        };
        let err = render_streaming(&blob, None, &limits).expect_err("too large");
        let msg = err.to_string();
        assert!(msg.contains("bundle web: big.yaml: document 2"), "{msg}");
        assert!(msg.contains("limit of 1000 bytes for one YAML document"), "{msg}");
        let err = check_tarball(&blob[..], "bundle web", &limits).expect_err("too large");
        assert!(err.to_string().contains("big.yaml"), "{err}");
        // The whole file is larger than the limit, each document is not.
        let many = config_map(1) + &format!("---\n{}", config_map(2)).repeat(20);
        let blob = tar_gz(&[("many.yaml", reg, many.as_bytes())]);
        assert!(many.len() > 1000);
        assert_eq!(render_streaming(&blob, None, &limits).expect("fits").len(), 21);
    }

    #[test]
    fn yaml_errors_name_the_document_and_line_in_the_whole_file() {
        let reg = tar::EntryType::Regular;
        // A head with no document in it is not counted, as in the whole file.
        let mut text = String::from("# head\n\n---\n");
        for i in 0..5 {
            text.push_str(&config_map(i));
            text.push_str("---\n");
        }
        text.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: [unclosed\n");
        let blob = tar_gz(&[("m.yaml", reg, text.as_bytes())]);
        let streamed = render_streaming(&blob, None, &Limits::default()).expect_err("invalid");
        let whole = render_all_at_once(&blob, None).expect_err("invalid");
        assert_eq!(streamed.to_string(), whole.to_string());
        assert!(streamed.to_string().contains("document 6"), "{streamed}");
        assert!(streamed.to_string().contains("at line 63 column 1"), "{streamed}");
    }

    #[test]
    fn substitution_errors_name_the_file() {
        let reg = tar::EntryType::Regular;
        let text = format!("{}---\nkind: x\nlabel: ${{cluster.labels.region}}\n", config_map(0));
        let blob = tar_gz(&[("m.yaml", reg, text.as_bytes())]);
        let err = render_streaming(&blob, None, &Limits::default()).expect_err("no label");
        assert!(err.to_string().contains("bundle web: m.yaml"), "{err}");
        assert!(err.to_string().contains("no label \"region\""), "{err}");
    }

    #[test]
    fn a_gzip_bomb_stops_at_the_unpacked_limit() {
        let reg = tar::EntryType::Regular;
        let limits = Limits {
            max_unpacked_bytes: 64 << 10,
            ..Limits::default()
        };
        // Entries that declare more than the limit are refused before they are inflated.
        let blob = tar_gz(&[("filler.bin", reg, &vec![0u8; 100 << 10])]);
        let err = render_streaming(&blob, None, &limits).expect_err("bomb");
        assert!(err.to_string().contains("unpacks to more than 65536 bytes"), "{err}");
        // Entries that declare nothing (directories) still cost their headers: the
        // decompressed stream itself is counted.
        let dirs: Vec<String> = (0..1000).map(|i| format!("d{i}/")).collect();
        let entries: Vec<(&str, tar::EntryType, &[u8])> = dirs
            .iter()
            .map(|d| (d.as_str(), tar::EntryType::Directory, &b""[..]))
            .collect();
        let err = render_streaming(&tar_gz(&entries), None, &limits).expect_err("bomb");
        assert!(err.to_string().contains("unpacks to more than 65536 bytes"), "{err}");
    }

    #[test]
    fn a_huge_long_name_record_is_refused_before_it_is_buffered() {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let name = vec![b'a'; (MAX_HEADER_BYTES + 4096) as usize];
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(name.len() as u64);
        h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        h.set_cksum();
        builder.append(&h, &name[..]).expect("append");
        let blob = builder.into_inner().expect("tar").finish().expect("gzip");
        let err = render_streaming(&blob, None, &Limits::default()).expect_err("long name");
        assert!(err.to_string().contains("path records longer than"), "{err}");
    }

    fn render_allowed(yaml: &str, namespace: Option<&str>, allow: &AllowList) -> Result<Vec<String>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("blob");
        std::fs::write(&path, tar_gz(&[("m.yaml", tar::EntryType::Regular, yaml.as_bytes())])).expect("write blob");
        let mut out = Rendered::default();
        render_bundle(
            &verified(path),
            "bundle web",
            namespace,
            &cluster(),
            &Limits::default(),
            Some(allow),
            &mut out,
        )?;
        Ok(out.documents)
    }

    #[test]
    fn the_allow_list_checks_the_namespace_after_the_bundle_default_is_applied() {
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: web}\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        assert_eq!(render_allowed(yaml, Some("web"), &allow).expect("allowed").len(), 2);
        let err = render_allowed(yaml, Some("shop"), &allow)
            .expect_err("outside")
            .to_string();
        assert!(err.contains("ConfigMap a in namespace shop"), "{err}");
    }

    #[test]
    fn the_allow_list_names_every_refused_object_and_refuses_the_whole_bundle() {
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n\
                    apiVersion: v1\nkind: Secret\nmetadata: {name: s, namespace: kube-system}\n---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: admin}\n---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                    spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
        let err = render_allowed(yaml, Some("web"), &allow).expect_err("refused");
        assert!(matches!(err, Error::NotAllowed { .. }), "{err}");
        let err = err.to_string();
        for refused in [
            "Secret s in namespace kube-system",
            "ClusterRole admin (cluster-scoped)",
            "CustomResourceDefinition ws.x.io (cluster-scoped)",
        ] {
            assert!(err.contains(refused), "{refused}: {err}");
        }
        assert!(!err.contains("ConfigMap ok"), "{err}");
        let allow = AllowList::new(["web".to_string(), "kube-system".to_string()], true).expect("allow");
        assert_eq!(render_allowed(yaml, Some("web"), &allow).expect("all allowed").len(), 4);
    }

    #[test]
    fn the_allow_list_treats_unknown_kinds_without_namespace_as_cluster_scoped() {
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        // A kind defined cluster-scoped by a CRD later in the bundle, and an object with no
        // namespace and no bundle default: both refused.
        let yaml = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w}\n---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: ws.x.io\n\
                    spec:\n  scope: Cluster\n  names:\n    kind: Widget\n";
        let allow_cluster = AllowList::new(["web".to_string()], true).expect("allow");
        assert_eq!(
            render_allowed(yaml, Some("web"), &allow_cluster)
                .expect("allowed")
                .len(),
            2
        );
        let err = render_allowed(yaml, Some("web"), &allow)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("Widget w (cluster-scoped)"), "{err}");
        let lone = "apiVersion: x.io/v1\nkind: Gadget\nmetadata: {name: g}\n";
        let err = render_allowed(lone, None, &allow).expect_err("refused").to_string();
        assert!(err.contains("Gadget g (scope of Gadget.x.io unknown"), "{err}");
    }

    const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
                              metadata: {name: widgets.x.io}\nspec:\n  group: x.io\n  scope: SCOPE\n  \
                              names: {kind: Widget, plural: widgets}\n";

    #[test]
    fn a_cluster_scoped_custom_kind_is_refused_even_when_it_names_an_allowed_namespace() {
        // The API server ignores metadata.namespace on a cluster-scoped object.
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        let yaml = format!(
            "{}---\napiVersion: x.io/v1\nkind: Widget\nmetadata: {{name: w, namespace: web}}\n",
            WIDGET_CRD.replace("SCOPE", "Cluster")
        );
        for allow in [allow.clone(), allow.checked_by_discovery()] {
            let err = render_allowed(&yaml, Some("web"), &allow)
                .expect_err("refused")
                .to_string();
            assert!(err.contains("Widget w (cluster-scoped)"), "{err}");
        }
    }

    #[test]
    fn on_the_dir_sink_a_kind_of_unknown_scope_needs_its_crd_in_the_bundle() {
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        let widget = "apiVersion: x.io/v1\nkind: Widget\nmetadata: {name: w, namespace: web}\n";
        let err = render_allowed(widget, Some("web"), &allow)
            .expect_err("unknown scope")
            .to_string();
        assert!(
            err.contains("Widget w in namespace web (scope of Widget.x.io unknown") && err.contains("kube sink"),
            "{err}"
        );
        // Allowing cluster-scoped objects is not enough when the namespace is not listed.
        let other = widget.replace("namespace: web", "namespace: shop");
        let allow_cluster = AllowList::new(["web".to_string()], true).expect("allow");
        assert!(render_allowed(&other, Some("web"), &allow_cluster).is_err());
        assert_eq!(
            render_allowed(widget, Some("web"), &allow_cluster)
                .expect("both ways")
                .len(),
            1
        );
        // The kube sink checks again with discovery: rendering takes the kind as namespaced.
        let kube = allow.clone().checked_by_discovery();
        assert_eq!(render_allowed(widget, Some("web"), &kube).expect("namespaced").len(), 1);
        // A Namespaced CRD of the same group and kind, even after the object, places it
        // (the CRD itself is cluster-scoped, and named).
        let namespaced = WIDGET_CRD.replace("SCOPE", "Namespaced");
        let after = format!("{widget}---\n{namespaced}");
        let err = render_allowed(&after, Some("web"), &allow)
            .expect_err("the CRD itself is cluster-scoped")
            .to_string();
        assert!(
            err.contains("CustomResourceDefinition widgets.x.io") && !err.contains("Widget w"),
            "{err}"
        );
        let other_after = format!("{other}---\n{namespaced}");
        let err = render_allowed(&other_after, Some("web"), &allow_cluster)
            .expect_err("namespaced outside the list")
            .to_string();
        assert!(
            err.contains("Widget w in namespace shop") && !err.contains("unknown"),
            "{err}"
        );
        // A CRD of another group says nothing about x.io's Widget.
        let elsewhere = format!("{widget}---\n{}", namespaced.replace("group: x.io", "group: y.io"));
        assert!(render_allowed(&elsewhere, Some("web"), &allow).is_err());
    }

    #[test]
    fn scope_follows_the_api_group_not_the_kind_name() {
        let allow = AllowList::new(["web".to_string()], false).expect("allow");
        // Built-in cluster-scoped kinds: the namespace they name does not count.
        for (api_version, kind) in [
            ("networking.k8s.io/v1", "ServiceCIDR"),
            ("resource.k8s.io/v1", "DeviceClass"),
            ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy"),
            ("storage.k8s.io/v1", "VolumeAttributesClass"),
        ] {
            let yaml = format!("apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: x, namespace: web}}\n");
            let err = render_allowed(&yaml, Some("web"), &allow)
                .expect_err("cluster-scoped")
                .to_string();
            assert!(err.contains(&format!("{kind} x (cluster-scoped)")), "{err}");
        }
        // Only the core group's Namespace is a namespace; another group's is unknown.
        let fake = "apiVersion: example.com/v1\nkind: Namespace\nmetadata: {name: web}\n";
        let err = render_allowed(fake, None, &allow)
            .expect_err("not a namespace")
            .to_string();
        assert!(err.contains("scope of Namespace.example.com unknown"), "{err}");
        // k3s's HelmChartConfig is namespaced; its HelmChart still counts as cluster-wide.
        let config = "apiVersion: helm.cattle.io/v1\nkind: HelmChartConfig\nmetadata: {name: traefik}\n";
        assert_eq!(
            render_allowed(config, Some("web"), &allow).expect("namespaced").len(),
            1
        );
        let chart = config.replace("HelmChartConfig", "HelmChart");
        let err = render_allowed(&chart, Some("web"), &allow)
            .expect_err("cluster-wide")
            .to_string();
        assert!(
            err.contains("HelmChart traefik in namespace web (its controller writes cluster-wide)"),
            "{err}"
        );
    }

    /// "Billion laughs": nine levels of aliases, each repeating the one below nine times,
    /// expand to 9^9 (387 million) strings from a few hundred bytes.
    fn alias_bomb() -> String {
        let mut yaml = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 lol\n");
        for level in 1..=9 {
            let below = vec![format!("*a{}", level - 1); 9].join(", ");
            yaml.push_str(&format!("  a{level}: &a{level} [{below}]\n"));
        }
        yaml
    }

    #[test]
    fn a_yaml_alias_bomb_is_refused_by_the_parser_repetition_limit() {
        let blob = tar_gz(&[("m.yaml", tar::EntryType::Regular, alias_bomb().as_bytes())]);
        let err = render_streaming(&blob, None, &Limits::default()).expect_err("alias bomb");
        let err = err.to_string();
        assert!(err.contains("bundle web: m.yaml: document 1"), "{err}");
        assert!(err.contains("repetition limit exceeded"), "{err}");
        // The publisher's check refuses it the same way.
        assert!(check_manifest(&alias_bomb(), "m.yaml").is_err());
    }

    #[test]
    fn ordinary_anchors_and_aliases_still_render_expanded() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, labels: &l {app: web}}\n\
                    data: {copy: *l}\n";
        let objects = parse_objects(yaml, "t").expect("aliases are YAML");
        assert_eq!(objects[0]["data"]["copy"], objects[0]["metadata"]["labels"]);
    }

    #[test]
    fn a_tarball_with_more_entries_than_the_default_limit_is_refused() {
        // A million tiny entries would be refused the same way, after the first 100 001.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path("d/").expect("path");
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        let tar = h.as_bytes().repeat(DEFAULT_MAX_ENTRIES as usize + 1);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).expect("gzip");
        let blob = gz.finish().expect("gzip");
        let err = render_streaming(&blob, None, &Limits::default()).expect_err("too many entries");
        assert!(
            err.to_string()
                .contains(&format!("more than {DEFAULT_MAX_ENTRIES} entries")),
            "{err}"
        );
    }
}
