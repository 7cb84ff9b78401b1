//! The per-object work of [`super::render_bundle`]: substitute, split, check, default the
//! namespace, write; and what it learns about the bundle's kinds on the way (which may
//! call for another pass).

use std::collections::BTreeSet;

use serde_norway::{Mapping, Value};

use super::documents::{Documents, SplitError};
use super::objects::{for_each_object, str_field, Object, Part};
use super::scope::Scopes;
use super::substitute::substitute;
use super::tarball::{Manifest, Stop};
use super::{Limits, ObjectWriter};
use crate::allow::api_group;
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
    /// Scopes of the built-in kinds and of the kinds the bundle's CRDs seen so far
    /// define (kept across passes).
    pub(super) scopes: Scopes,
    /// Kinds of the objects given the bundle's namespace in this pass.
    defaulted: BTreeSet<String>,
    defaulted_overflow: bool,
    /// An object of a kind later found to be cluster-scoped was given the namespace.
    pub(super) stale: bool,
    pub(super) objects: u64,
}

impl<'a> Renderer<'a> {
    pub(super) fn new(what: &'a str, namespace: Option<&'a str>, cluster: &'a Cluster, limits: &Limits) -> Self {
        Renderer {
            what,
            namespace,
            cluster,
            max_document_bytes: limits.max_document_bytes,
            scopes: Scopes::default(),
            defaulted: BTreeSet::new(),
            defaulted_overflow: false,
            stale: false,
            objects: 0,
        }
    }

    /// Prepares another pass over the bundle; what was learnt about kinds is kept.
    pub(super) fn restart(&mut self) {
        self.defaulted.clear();
        self.defaulted_overflow = false;
        self.stale = false;
        self.objects = 0;
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
        if let Some(((_, kind), true)) = self.scopes.learn(&obj) {
            self.stale |= self.defaulted_overflow || self.defaulted.contains(&kind);
        }
        if let Some(ns) = self.namespace {
            let group = api_group(str_field(&obj, "apiVersion").unwrap_or_default());
            let kind = str_field(&obj, "kind").unwrap_or_default();
            if self.scopes.cluster_scoped(group, kind) != Some(true) && default_namespace(&mut obj, ns) {
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
        let document =
            serde_norway::to_string(&obj).map_err(|e| Error::invalid(self.what, format!("cannot write YAML: {e}")))?;
        out.write_object(Object::new(obj, document))?;
        self.objects += 1;
        Ok(())
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
