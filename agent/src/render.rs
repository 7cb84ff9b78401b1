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
//! The work is split by concern: [`tarball`] reads entries safely, [`documents`] splits a
//! manifest into documents, [`substitute`](mod@substitute) fills in `${cluster.*}`,
//! [`objects`] parses and checks Kubernetes objects, [`scope`] tells cluster-scoped kinds
//! from namespaced ones, [`renderer`] does all of it per object, and [`manifests`] reads a
//! bundle whole for tools.
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
mod manifests;
mod objects;
mod renderer;
mod scope;
mod substitute;
mod tarball;
#[cfg(test)]
mod tests;

use std::path::Path;

use crate::error::Result;
use crate::select::Cluster;
use crate::source::blob::VerifiedBlob;
use renderer::Renderer;
use tarball::{Manifest, Spool, Stop};

pub use manifests::{check_tarball, read_manifests};
pub use objects::{check_manifest, Object};
pub use scope::Scopes;
pub use substitute::substitute;
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
    /// Appends one object.
    fn write_object(&mut self, object: Object) -> Result<()>;
    /// Discards every object written so far: rendering starts over.
    fn restart(&mut self) -> Result<()>;
}

/// A bundle's objects held in memory (the kube sink, tests, small tools); the dir sink
/// writes them to a file as they come instead.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendered {
    /// The objects, in the bundle's order.
    pub objects: Vec<Object>,
}

impl Rendered {
    /// Each object as a YAML document without the `---` separator.
    pub fn documents(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(|o| o.text.as_str())
    }
}

impl ObjectWriter for Rendered {
    fn write_object(&mut self, object: Object) -> Result<()> {
        self.objects.push(object);
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.objects.clear();
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

/// What rendering a bundle yields besides its objects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rendering {
    /// How many objects were written.
    pub objects: u64,
    /// The scopes the objects were placed by: built-in kinds and the bundle's CRDs.
    pub scopes: Scopes,
}

/// Reads, substitutes and validates the verified bundle `blob`, handing each object to `out`
/// as soon as it is checked. `what` names the bundle in errors; `namespace` is the bundle's
/// default namespace, given to objects of kinds not known to be cluster-scoped. On error,
/// `out` holds a part of the bundle and must be discarded. A hand-made tarball whose
/// manifests are not in path order is first copied to a temporary file in the blob's
/// directory. The namespace allow-list is not checked here: the sink checks the objects
/// once, with [`Rendering::scopes`] (and, for the kube sink, API discovery).
pub fn render_bundle(
    blob: &VerifiedBlob,
    what: &str,
    namespace: Option<&str>,
    cluster: &Cluster,
    limits: &Limits,
    out: &mut dyn ObjectWriter,
) -> Result<Rendering> {
    let mut renderer = Renderer::new(what, namespace, cluster, limits);
    let mut spool: Option<Spool> = None;
    loop {
        let mut visit = |m: Manifest<'_>| renderer.render_file(m, out);
        let walked = match &mut spool {
            None => tarball::walk_sorted(tarball::open(blob.path())?, what, limits, &mut visit),
            Some(spool) => spool.visit(what, &mut visit),
        };
        match walked {
            Ok(()) if !renderer.stale => {
                return Ok(Rendering {
                    objects: renderer.objects,
                    scopes: renderer.scopes,
                })
            }
            // A CRD made a kind cluster-scoped after objects of that kind got the bundle's
            // namespace: render again, knowing it from the start. Each such pass learns at
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
