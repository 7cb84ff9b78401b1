//! The per-object work of [`super::render_bundle`]: substitute, split, check, default the
//! namespace, check against the allow-list, write; and what it learns about the bundle's
//! kinds on the way (which may call for another pass).

use std::collections::{BTreeMap, BTreeSet};

use serde_norway::{Mapping, Value};

use super::documents::{Documents, SplitError};
use super::objects::{for_each_object, str_field, Object, Part};
use super::scope::crd_scope;
use super::substitute::substitute;
use super::tarball::{Manifest, Stop};
use super::{Limits, ObjectWriter};
use crate::allow::{api_group, builtin_scope, AllowList, Placement};
use crate::error::{Error, Result};
use crate::select::Cluster;

/// Most kinds remembered as "given the bundle's namespace"; past that, any cluster-scoped
/// CRD found later makes the bundle render again.
const MAX_TRACKED_KINDS: usize = 1024;

/// The per-object work of [`render_bundle`], and what it has learnt about the bundle.
pub(super) struct Renderer<'a> {
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
    pub(super) stale: bool,
    pub(super) objects: u64,
    /// The operator's namespace allow-list, if any.
    pub(super) allow: Option<&'a AllowList>,
    /// Objects of this pass the allow-list refuses.
    pub(super) refused: Vec<String>,
}

impl<'a> Renderer<'a> {
    pub(super) fn new(what: &'a str, namespace: Option<&'a str>, cluster: &'a Cluster, limits: &Limits) -> Self {
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
    pub(super) fn restart(&mut self) {
        self.defaulted.clear();
        self.defaulted_overflow = false;
        self.unknown.clear();
        self.unknown_overflow = false;
        self.stale = false;
        self.objects = 0;
        self.refused.clear();
    }

    /// Substitutes, checks and writes the objects of one manifest file, a document at a time.
    pub(super) fn render_file(&mut self, m: Manifest<'_>, out: &mut dyn ObjectWriter) -> Result<(), Stop> {
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
        out.write_object(Object::new(obj, document))?;
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

/// Gives an object (not of a cluster-scoped kind) without a namespace the bundle's; true
/// when it did.
pub(super) fn default_namespace(obj: &mut Mapping, namespace: &str) -> bool {
    match obj.get_mut("metadata") {
        Some(Value::Mapping(metadata)) if !metadata.contains_key("namespace") => {
            metadata.insert("namespace".into(), namespace.into());
            true
        }
        _ => false,
    }
}
