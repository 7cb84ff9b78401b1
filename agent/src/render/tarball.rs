//! Safe, streaming reading of a bundle tarball (format §5): entries are taken one at a time
//! from the gzip stream, every rule is checked as the entry arrives, and each manifest is
//! handed to a visitor as a reader, so no more than one read buffer of it is in memory.
//!
//! Manifests must be visited in byte-wise order of their paths. `drover publish` writes
//! them in that order, so the tarball is read once, straight through. A hand-made tarball
//! may list them in another order (`tar` recurses into `a/` before reaching `a-b.yaml`);
//! the first manifest out of order stops the walk with [`Stop::Unsorted`], and the caller
//! starts over from a [`Spool`]: the manifests copied, in tarball order, into one temporary
//! file beside the blob, then visited in path order from there.

use std::cell::Cell;
use std::io::{BufWriter, Read, Seek, SeekFrom};
use std::path::{Component, Path};
use std::rc::Rc;

use super::Limits;
use crate::error::{Error, Result};

/// Most bytes the tar stream may spend on headers and on the pax and GNU long-name records
/// between two entries. The tar reader keeps such records in memory, so they are bounded on
/// their own; a real one holds a path (at most a few KiB).
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Why a walk over the manifests stopped before the end.
#[derive(Debug)]
pub(super) enum Stop {
    /// A manifest came after one with a greater path: visit them from a [`Spool`] instead.
    Unsorted,
    /// The bundle is invalid, or reading or writing failed.
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

/// One manifest file of the bundle, as it is visited.
pub(super) struct Manifest<'a> {
    /// Normalised path (`/`-separated, no `./`).
    pub path: &'a str,
    /// The path as written in the tarball, for messages.
    pub raw_path: &'a str,
    /// The file's bytes.
    pub data: &'a mut dyn Read,
    guard: &'a Guard,
}

impl Manifest<'_> {
    /// The error to report when reading [`Manifest::data`] failed.
    pub fn read_error(&self, e: std::io::Error) -> Error {
        self.guard.error(e, || format!("entry {:?}", self.raw_path))
    }
}

/// Limits enforced on the decompressed tar stream itself, below the tar reader.
struct Guard {
    what: String,
    max_unpacked_bytes: u64,
    /// Decompressed bytes read so far.
    read: Cell<u64>,
    /// Offset in the tar stream up to which reading is expected before the next entry.
    allowed: Cell<u64>,
    /// Set when a read was refused, so the error can name the limit.
    tripped: Cell<Option<Tripped>>,
}

/// Which limit of [`Guard`] refused a read.
#[derive(Debug, Clone, Copy)]
enum Tripped {
    Unpacked,
    Headers,
}

impl Guard {
    fn error(&self, e: std::io::Error, context: impl FnOnce() -> String) -> Error {
        match self.tripped.get() {
            Some(Tripped::Unpacked) => Error::invalid(
                &self.what,
                format!("unpacks to more than {} bytes", self.max_unpacked_bytes),
            ),
            Some(Tripped::Headers) => Error::invalid(
                &self.what,
                format!("tar headers or path records longer than {MAX_HEADER_BYTES} bytes between two entries"),
            ),
            None => Error::invalid(&self.what, format!("{}: {e}", context())),
        }
    }
}

/// Counts and bounds the bytes coming out of the gzip decoder.
struct Guarded<R> {
    inner: R,
    guard: Rc<Guard>,
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let g = &self.guard;
        let read = g.read.get();
        if read >= g.allowed.get() {
            g.tripped.set(Some(Tripped::Headers));
            return Err(std::io::Error::other("tar header records too long"));
        }
        let room = (g.allowed.get() - read).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        g.read.set(read + n as u64);
        if g.read.get() > g.max_unpacked_bytes {
            g.tripped.set(Some(Tripped::Unpacked));
            return Err(std::io::Error::other("bundle unpacks past its limit"));
        }
        Ok(n)
    }
}

/// Walks the gzip-compressed tar read from `reader`, enforcing the rules of format §5 on
/// every entry, and hands each manifest (a regular file ending in `.yaml`/`.yml`) to
/// `visit` in tarball order. Duplicates and order are the visitor's business.
pub(super) fn walk(
    reader: impl Read,
    what: &str,
    limits: &Limits,
    visit: &mut dyn FnMut(Manifest<'_>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let bad = |message: String| Stop::Failed(Error::invalid(what, message));
    let guard = Rc::new(Guard {
        what: what.to_string(),
        max_unpacked_bytes: limits.max_unpacked_bytes,
        read: Cell::new(0),
        allowed: Cell::new(MAX_HEADER_BYTES),
        tripped: Cell::new(None),
    });
    let stream = Guarded {
        inner: flate2::read::GzDecoder::new(reader),
        guard: Rc::clone(&guard),
    };
    let mut archive = tar::Archive::new(stream);
    let (mut entries, mut unpacked) = (0u64, 0u64);
    let all = archive
        .entries()
        .map_err(|e| Stop::Failed(guard.error(e, || "not a tar.gz".into())))?;
    for entry in all {
        let mut entry = entry.map_err(|e| Stop::Failed(guard.error(e, || "not a valid tar.gz".into())))?;
        // This entry's data, then the next header and its path records, may be read.
        let data_end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
        guard.allowed.set(data_end.saturating_add(MAX_HEADER_BYTES));
        entries += 1;
        if entries > limits.max_entries {
            return Err(bad(format!("more than {} entries", limits.max_entries)));
        }
        let raw_path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = safe_path(&raw_path).map_err(|m| bad(format!("entry {raw_path:?}: {m}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() || kind.is_pax_global_extensions() {
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "entry {raw_path:?} is a {kind:?}; only regular files and directories are allowed"
            )));
        }
        // Checked before reading, so an oversized entry is refused without inflating it.
        unpacked += entry.size();
        if unpacked > limits.max_unpacked_bytes {
            return Err(bad(format!("unpacks to more than {} bytes", limits.max_unpacked_bytes)));
        }
        if !(path.ends_with(".yaml") || path.ends_with(".yml")) {
            continue;
        }
        let size = entry.size();
        visit(Manifest {
            path: &path,
            raw_path: &raw_path,
            data: &mut (&mut entry).take(size),
            guard: &guard,
        })?;
    }
    Ok(())
}

/// Walks the tarball and visits its manifests in tarball order, stopping with
/// [`Stop::Unsorted`] at the first one out of byte-wise path order.
pub(super) fn walk_sorted(
    reader: impl Read,
    what: &str,
    limits: &Limits,
    visit: &mut dyn FnMut(Manifest<'_>) -> Result<(), Stop>,
) -> Result<(), Stop> {
    let mut last: Option<String> = None;
    walk(reader, what, limits, &mut |m| {
        match last.as_deref().map(|l| m.path.as_bytes().cmp(l.as_bytes())) {
            Some(std::cmp::Ordering::Less) => return Err(Stop::Unsorted),
            Some(std::cmp::Ordering::Equal) => return Err(duplicate(what, m.path)),
            _ => {}
        }
        last = Some(m.path.to_string());
        visit(m)
    })
}

fn duplicate(what: &str, path: &str) -> Stop {
    Stop::Failed(Error::invalid(what, format!("entry {path:?} appears twice")))
}

/// A bundle's manifests copied out of the tarball into one unnamed temporary file, to be
/// visited in path order whatever their order in the tarball.
pub(super) struct Spool {
    file: std::fs::File,
    /// (path, raw path, offset, length), sorted by path.
    manifests: Vec<(String, String, u64, u64)>,
}

impl Spool {
    /// Checks the whole tarball at `blob` and copies its manifests into a temporary file in
    /// `dir` (removed when the spool is dropped, or by the cache pruning after a crash).
    pub fn extract(blob: &Path, dir: &Path, what: &str, limits: &Limits) -> Result<Spool> {
        let tmp = tempfile::Builder::new()
            .prefix(".render-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        let mut out = BufWriter::with_capacity(64 << 10, tmp);
        let mut manifests = Vec::new();
        let mut offset = 0u64;
        let input = open(blob)?;
        let walked = walk(input, what, limits, &mut |m| {
            let len = std::io::copy(m.data, &mut out).map_err(|e| m.read_error(e))?;
            manifests.push((m.path.to_string(), m.raw_path.to_string(), offset, len));
            offset += len;
            Ok(())
        });
        match walked {
            Ok(()) => {}
            Err(Stop::Failed(e)) => return Err(e),
            Err(Stop::Unsorted) => unreachable!("walk() itself never checks the order"),
        }
        let tmp = out.into_inner().map_err(|e| Error::io(dir, e.into_error()))?;
        // The name is not needed any more: the file goes away with the handle.
        let file = tmp.into_file();
        manifests.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        if let Some(w) = manifests.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(Error::invalid(what, format!("entry {:?} appears twice", w[0].0)));
        }
        Ok(Spool { file, manifests })
    }

    /// Visits the spooled manifests in byte-wise path order.
    pub fn visit(&mut self, what: &str, visit: &mut dyn FnMut(Manifest<'_>) -> Result<(), Stop>) -> Result<(), Stop> {
        let guard = Guard {
            what: what.to_string(),
            max_unpacked_bytes: u64::MAX,
            read: Cell::new(0),
            allowed: Cell::new(u64::MAX),
            tripped: Cell::new(None),
        };
        for (path, raw_path, offset, len) in &self.manifests {
            (&self.file)
                .seek(SeekFrom::Start(*offset))
                .map_err(|e| guard.error(e, || "spool file".into()))?;
            let mut data = std::io::BufReader::with_capacity(64 << 10, (&self.file).take(*len));
            visit(Manifest {
                path,
                raw_path,
                data: &mut data,
                guard: &guard,
            })?;
        }
        Ok(())
    }
}

/// Opens a blob for reading.
pub(super) fn open(blob: &Path) -> Result<std::io::BufReader<std::fs::File>> {
    let file = std::fs::File::open(blob).map_err(|e| Error::io(blob, e))?;
    Ok(std::io::BufReader::with_capacity(64 << 10, file))
}

/// Normalises a tar entry path, refusing absolute paths and `..` components.
fn safe_path(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') {
        return Err("absolute paths are not allowed".into());
    }
    let mut parts = Vec::new();
    for c in Path::new(raw).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => return Err("'..' components are not allowed".into()),
            Component::RootDir | Component::Prefix(_) => return Err("absolute paths are not allowed".into()),
        }
    }
    Ok(parts.join("/"))
}
