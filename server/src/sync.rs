//! `drover sync SRC DST`: copies a store so that a reader of DST never sees a half-written
//! one, and an interrupted copy leaves DST valid at its old version.
//!
//! The steps, in this order:
//! 1. read SRC's `index.json` and `index.json.minisig`. With trusted keys, verify them as an
//!    agent would (signature before parsing, format rules, expiry); without keys, check the
//!    format rules and expiry only. Either way the blob list, and so every size and digest a
//!    blob is checked against, comes from this index;
//! 2. read DST's current index and refuse to replace a newer version, the same version with
//!    other bytes, another channel, or a file that is not a drover index (agents that took
//!    the newer version would refuse the older one forever) unless forced;
//! 3. find the referenced blobs DST lacks (by digest; size checked, content re-hashed on
//!    request);
//! 4. *stage* each missing blob: stream it from SRC, checking size and sha256 as it arrives,
//!    into a place readers of DST do not look. If any blob fails, everything staged is
//!    discarded and DST is exactly as it was;
//! 5. *commit*: the staged blobs become visible, then `index.json`, then
//!    `index.json.minisig` (each a complete file renamed into place).
//!
//! A sync killed during 1–4 leaves DST's index and signature untouched: it stays valid at its
//! old version, and the next run reuses what was staged (re-hashed first). During 5 the only
//! moment a reader can see something inconsistent is between the two renames of the index
//! and its signature: the new index with the old signature, which fails verification, so
//! agents keep what they have until their next poll — the same window as `drover publish`.
//!
//! A destination is a [`Destination`]; each kind implements the same few operations
//! (read the current index, test for a blob, stage a blob, commit, discard).

use std::collections::BTreeMap;
use std::io::Read;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_agent::format::{rfc3339, Digest, Index, Target, BLOB_DIR, INDEX_FILE, SIGNATURE_FILE};
use drover_agent::source::{RawIndex, Source, DEFAULT_MAX_INDEX_BYTES, DEFAULT_MAX_SIGNATURE_BYTES};
use drover_agent::verify::{verify_index, TrustedKeys};
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::oci_push::OciDestination;
use crate::store_write::replace_index_files;
use drover_agent::oci::RegistryOptions;

/// Directory inside a destination store where blobs are staged before they become visible.
/// Nothing in a store ever refers to it; a sync that was killed may leave it behind, and
/// the next sync reuses (after re-hashing) and then removes it.
pub const STAGING_DIR: &str = ".drover-sync";

/// Blobs copied at once from a network source (`http(s)://`, `oci://`) unless told
/// otherwise. A directory source copies one at a time: a USB stick reads fastest
/// sequentially.
pub const DEFAULT_NETWORK_JOBS: usize = 4;

/// How often the progress bar samples the bytes received.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// What to do when DST's current index must not be replaced by SRC's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse a newer version, the same version with other bytes, another channel, or an
    /// unreadable index (the default).
    #[default]
    Refuse,
    /// Replace it anyway (`--force`): agents that applied the newer version will refuse
    /// this one as a rollback.
    Force,
}

/// How much to trust a blob that is already in DST.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExistingBlobs {
    /// Present with the right size is enough (the default; blobs are immutable and were
    /// verified when they were written).
    #[default]
    CheckSize,
    /// Re-hash it (`--verify-existing`); a corrupt one is copied again.
    Rehash,
}

/// Whether to draw a progress bar on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Progress {
    /// No progress output.
    #[default]
    Quiet,
    /// An indicatif bar of bytes copied (only sensible when stderr is a terminal).
    Bar,
}

/// How a sync runs.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Trusted public keys. Empty: SRC's index is not verified, only checked for form (the
    /// blobs are still checked against the sizes and digests it lists).
    pub keys: Vec<PathBuf>,
    /// What to do with a DST index that must not be replaced.
    pub overwrite: Overwrite,
    /// How blobs already in DST are checked.
    pub existing: ExistingBlobs,
    /// Blobs copied at once; `None`: [`DEFAULT_NETWORK_JOBS`] from a network source, 1 from
    /// a directory.
    pub jobs: Option<NonZeroUsize>,
    /// Progress output.
    pub progress: Progress,
    /// The time against which SRC's `expires` is checked.
    pub now: OffsetDateTime,
}

/// `drover sync SRC DST`: plans the copy, warns on stderr when it is unverified or forced,
/// and then prints the plan (`dry_run`) or copies and prints what was done.
pub fn run(src: &str, dst: &str, registry: &RegistryOptions, opts: &SyncOptions, dry_run: bool) -> Result<()> {
    let dest = Arc::new(Destination::parse_with(dst, registry)?);
    let source = Arc::new(crate::store::open_with(src, registry)?);
    if opts.keys.is_empty() {
        eprintln!(
            "drover: warning: no --key given: the source index is not verified (blobs are still checked against the sizes and sha256 it lists)"
        );
    }
    let rt = crate::runtime::start()?;
    let plan = rt.block_on(plan(&source, &dest, opts))?;
    if let IndexChange::Forced { reason, .. } = &plan.index_change {
        eprintln!("drover: warning: --force: {dst}: {reason}; replacing it");
    }
    if dry_run {
        print!("{}", describe_plan(&plan));
        return Ok(());
    }
    let summary = rt.block_on(execute(&plan, source, dest, opts))?;
    println!("{}", describe_summary(&plan, &summary, src, dst));
    Ok(())
}

/// Whether SRC's index was verified against trusted keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Signature, format and expiry checked with the given keys.
    Verified,
    /// No keys given: format and expiry checked, signature not.
    Unverified,
}

/// What happens to DST's `index.json` and `index.json.minisig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChange {
    /// DST has no index yet.
    Create,
    /// DST has an older version of the same channel.
    Upgrade {
        /// DST's version.
        from: u64,
    },
    /// DST has the same index bytes and signature: nothing to write.
    Unchanged,
    /// DST has the same index bytes with another signature (an interrupted sync, or the
    /// same index signed again): only the signature is written.
    Signature,
    /// DST's index would have been refused, and [`Overwrite::Force`] replaces it.
    Forced {
        /// DST's version, when its index could be read.
        from: Option<u64>,
        /// Why it would have been refused.
        reason: String,
    },
}

/// What a sync will do, worked out without writing anything.
#[derive(Debug, Clone)]
pub struct Plan {
    /// SRC's channel.
    pub channel: String,
    /// SRC's index version.
    pub version: u64,
    /// Whether SRC's index was verified.
    pub trust: Trust,
    /// What happens to DST's index.
    pub index_change: IndexChange,
    /// Referenced blobs DST lacks (digest, size), ordered by digest: they are copied.
    pub missing: Vec<(Digest, u64)>,
    /// Number of referenced blobs DST already has.
    pub present: usize,
    /// Every referenced blob (digest, size), ordered by digest.
    pub blobs: Vec<(Digest, u64)>,
    /// Names of the bundles that reference each blob, for messages.
    pub users: BTreeMap<Digest, Vec<String>>,
    raw: RawIndex,
}

impl Plan {
    /// Total size of the blobs to copy.
    pub fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|(_, size)| size).sum()
    }

    /// True when DST already holds exactly this store.
    pub fn is_noop(&self) -> bool {
        self.missing.is_empty() && self.index_change == IndexChange::Unchanged
    }
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Blobs copied (digest, size).
    pub copied: Vec<(Digest, u64)>,
    /// Bytes of the blobs copied.
    pub bytes: u64,
    /// Blobs that were already there.
    pub present: usize,
    /// What happened to the index.
    pub index_change: IndexChange,
}

/// What a destination receives when a sync commits: SRC's exact index and signature, and
/// every blob the index references (the staged ones and those already there).
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// Channel name from the index.
    pub channel: &'a str,
    /// Version from the index.
    pub version: u64,
    /// Exact bytes of `index.json`.
    pub index: &'a [u8],
    /// Exact bytes of `index.json.minisig`.
    pub signature: &'a [u8],
    /// Every referenced blob (digest, size), ordered by digest.
    pub blobs: &'a [(Digest, u64)],
}

/// Where a sync writes.
///
/// Every operation is an `async fn` with one arm per kind, so a kind that talks to a
/// network service fits the same shape. The contract a kind must keep:
/// * nothing [`Destination::put_blob`] writes is visible to readers of the store before
///   [`Destination::commit`];
/// * [`Destination::commit`] makes the staged blobs visible before the index, and the
///   index before its signature;
/// * [`Destination::discard`] forgets everything staged.
#[derive(Debug)]
pub enum Destination {
    /// A store directory (USB stick, mirror served by nginx, NFS share).
    Dir(DirDestination),
    /// A channel tag in an OCI registry. Uploaded blobs are invisible to readers until the
    /// manifest is put under the tag, which is the whole commit.
    Oci(Box<OciDestination>),
}

impl Destination {
    /// Parses DST: a directory path (created at sync time if missing, but not its parents)
    /// or a `file://` URL. `http(s)://` is refused: those stores are read only.
    pub fn parse(spec: &str) -> Result<Self> {
        Destination::parse_with(spec, &RegistryOptions::default())
    }

    /// [`Destination::parse`], with how to reach and authenticate to OCI registries.
    pub fn parse_with(spec: &str, registry: &RegistryOptions) -> Result<Self> {
        let refuse = |message: &str| Error::Destination {
            destination: spec.to_string(),
            message: message.to_string(),
        };
        if spec.starts_with("http://") || spec.starts_with("https://") {
            return Err(refuse(
                "http(s):// is read only: sync into a directory, then serve that (nginx, drover serve)",
            ));
        }
        if spec.starts_with("oci://") {
            let reference = drover_agent::oci::Reference::parse(spec)?;
            let limits = drover_agent::source::Limits::default();
            return Ok(Destination::Oci(Box::new(OciDestination::new(
                reference, registry, &limits,
            )?)));
        }
        if spec.starts_with("file://") {
            // The agent's own parsing, so a file:// URL means the same on both sides.
            return match Source::parse(spec, &drover_agent::source::Limits::default())? {
                Source::File(f) => Ok(Destination::Dir(DirDestination::new(f.root().to_path_buf()))),
                _ => Err(refuse("not a file:// URL")),
            };
        }
        if spec.contains("://") {
            return Err(refuse(
                "unsupported scheme (a destination is a directory, a file:// URL or oci://)",
            ));
        }
        if spec.is_empty() {
            return Err(refuse("empty destination"));
        }
        let path = std::path::absolute(spec).map_err(|e| drover_agent::Error::io(spec, e))?;
        Ok(Destination::Dir(DirDestination::new(path)))
    }

    /// Where this is, for messages.
    pub fn location(&self) -> String {
        match self {
            Destination::Dir(d) => d.root().display().to_string(),
            Destination::Oci(d) => d.reference().to_string(),
        }
    }

    /// DST's current index and signature, `None` when it has no index yet. A missing
    /// signature reads as empty bytes (the index is still compared).
    pub async fn read_index(&self) -> Result<Option<RawIndex>> {
        match self {
            Destination::Dir(d) => d.read_index(),
            Destination::Oci(d) => d.current_index().await,
        }
    }

    /// True when DST holds blob `digest` of `size` bytes (and, with
    /// [`ExistingBlobs::Rehash`], its content hashes to `digest`).
    pub async fn has_blob(&self, digest: &Digest, size: u64, existing: ExistingBlobs) -> Result<bool> {
        match self {
            Destination::Dir(d) => d.has_blob(digest, size, existing),
            // The registry checks digests on upload; HEAD says whether it holds the blob.
            Destination::Oci(d) => d.has_blob(digest).await,
        }
    }

    /// Gets DST ready to receive blobs (a directory creates its layout). Called only when
    /// something will be written, never by a dry run.
    pub async fn prepare(&self) -> Result<()> {
        match self {
            Destination::Dir(d) => d.prepare(),
            Destination::Oci(_) => Ok(()),
        }
    }

    /// Stages blob `digest` of `size` bytes from `source`, verified as it streams. Not
    /// visible to readers of DST until [`Destination::commit`].
    pub async fn put_blob(&self, source: &Source, digest: &Digest, size: u64) -> Result<()> {
        match self {
            Destination::Dir(d) => d.put_blob(source, digest, size).await,
            Destination::Oci(d) => d.put_blob(source, digest, size).await,
        }
    }

    /// Makes the staged blobs visible, then writes the index, then its signature.
    pub async fn commit(&self, commit: &Commit<'_>) -> Result<()> {
        match self {
            Destination::Dir(d) => d.commit(commit),
            Destination::Oci(d) => d
                .commit(
                    commit.channel,
                    commit.version,
                    commit.index,
                    commit.signature,
                    commit.blobs,
                )
                .await
                .map(|_| ()),
        }
    }

    /// Forgets everything staged; DST is left as it was before the sync.
    pub async fn discard(&self) -> Result<()> {
        match self {
            Destination::Dir(d) => d.discard(),
            // Blobs pushed without a manifest are not part of any channel; the registry's
            // garbage collection removes them.
            Destination::Oci(_) => Ok(()),
        }
    }
}

/// A store directory as a destination. Blobs are staged in [`STAGING_DIR`] inside it (same
/// filesystem, so making them visible is a rename).
#[derive(Debug, Clone)]
pub struct DirDestination {
    root: PathBuf,
}

impl DirDestination {
    /// The store directory `root` (need not exist yet).
    pub fn new(root: PathBuf) -> Self {
        DirDestination { root }
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOB_DIR).join(digest.hex())
    }

    fn staging(&self) -> PathBuf {
        self.root.join(STAGING_DIR)
    }

    fn staged_path(&self, digest: &Digest) -> PathBuf {
        self.staging().join(digest.hex())
    }

    fn read_index(&self) -> Result<Option<RawIndex>> {
        let index_path = self.root.join(INDEX_FILE);
        let Some(bytes) = read_optional(&index_path, DEFAULT_MAX_INDEX_BYTES)? else {
            return Ok(None);
        };
        let signature =
            read_optional(&self.root.join(SIGNATURE_FILE), DEFAULT_MAX_SIGNATURE_BYTES)?.unwrap_or_default();
        Ok(Some(RawIndex {
            bytes,
            signature,
            origin: index_path.display().to_string(),
            not_modified: false,
        }))
    }

    fn has_blob(&self, digest: &Digest, size: u64, existing: ExistingBlobs) -> Result<bool> {
        file_holds(&self.blob_path(digest), digest, size, existing)
    }

    fn prepare(&self) -> Result<()> {
        // Only the store directory itself is created, not its parents: a DST under an
        // unmounted /media/usb must fail, not fill the root filesystem.
        if let Err(e) = std::fs::create_dir(&self.root) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return Err(Error::Destination {
                    destination: self.root.display().to_string(),
                    message: "its parent directory does not exist (is the medium mounted?)".into(),
                });
            }
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(drover_agent::Error::io(&self.root, e).into());
            }
        }
        drover_agent::fsutil::ensure_dir(&self.root.join(BLOB_DIR))?;
        drover_agent::fsutil::ensure_dir(&self.staging())?;
        Ok(())
    }

    async fn put_blob(&self, source: &Source, digest: &Digest, size: u64) -> Result<()> {
        let staged = self.staged_path(digest);
        // Left by a sync that was killed: it was verified before it got this name, but it
        // is re-hashed anyway, since it sat in a directory anyone may have written to.
        if file_holds(&staged, digest, size, ExistingBlobs::Rehash)? {
            return Ok(());
        }
        Ok(source.fetch_blob(digest, size, &staged).await?)
    }

    fn commit(&self, commit: &Commit<'_>) -> Result<()> {
        let blob_dir = self.root.join(BLOB_DIR);
        let mut moved = false;
        for (digest, _) in commit.blobs {
            let staged = self.staged_path(digest);
            if staged.is_file() {
                std::fs::rename(&staged, self.blob_path(digest)).map_err(|e| drover_agent::Error::io(&staged, e))?;
                moved = true;
            }
        }
        if moved {
            // The blobs' bytes were flushed when they were staged; this makes the renames
            // durable before the index that refers to them is.
            sync_dir(&blob_dir)?;
        }
        replace_index_files(&self.root, commit.index, commit.signature)?;
        self.discard()
    }

    fn discard(&self) -> Result<()> {
        match std::fs::remove_dir_all(self.staging()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(drover_agent::Error::io(self.staging(), e).into()),
        }
    }
}

/// Reads a whole file of at most `limit` bytes; `None` when it does not exist.
fn read_optional(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(drover_agent::Error::io(path, e).into()),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| drover_agent::Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(drover_agent::Error::TooLarge {
            what: path.display().to_string(),
            limit,
        }
        .into());
    }
    Ok(Some(bytes))
}

/// True when `path` is a regular file of `size` bytes (and with [`ExistingBlobs::Rehash`]
/// hashes to `digest`).
fn file_holds(path: &Path, digest: &Digest, size: u64, existing: ExistingBlobs) -> Result<bool> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(drover_agent::Error::io(path, e).into()),
    };
    if !meta.is_file() || meta.len() != size {
        return Ok(false);
    }
    match existing {
        ExistingBlobs::CheckSize => Ok(true),
        ExistingBlobs::Rehash => Ok(&sha256_file(path)? == digest),
    }
}

fn sha256_file(path: &Path) -> Result<Digest> {
    Digest::of_file(path)
        .map(|(digest, _)| digest)
        .map_err(|e| drover_agent::Error::io(path, e).into())
}

fn sync_dir(dir: &Path) -> Result<()> {
    Ok(drover_agent::fsutil::sync_dir(dir)?)
}

/// Steps 1–3: reads and checks SRC's index and DST's, and finds the blobs DST lacks.
/// Writes nothing (this is all `--dry-run` does).
pub async fn plan(source: &Source, dest: &Destination, opts: &SyncOptions) -> Result<Plan> {
    let raw = source.fetch_index().await?;
    let (index, trust) = read_source_index(&raw, &opts.keys, opts.now)?;
    let current = dest.read_index().await?;
    let index_change = check_destination_index(current.as_ref(), &raw, &index, opts.overwrite, &dest.location())?;
    let blobs = index.blobs();
    let mut missing = Vec::new();
    for (digest, size) in &blobs {
        if !dest.has_blob(digest, *size, opts.existing).await? {
            missing.push((digest.clone(), *size));
        }
    }
    Ok(Plan {
        channel: index.channel.clone(),
        version: index.version,
        trust,
        index_change,
        present: blobs.len() - missing.len(),
        missing,
        users: blob_users(&index),
        blobs,
        raw,
    })
}

/// Steps 4 and 5: stages the missing blobs of `plan`, then commits. If staging fails, what
/// was staged is discarded and DST is left as it was ([`Error::SyncStopped`]).
pub async fn execute(plan: &Plan, source: Arc<Source>, dest: Arc<Destination>, opts: &SyncOptions) -> Result<Summary> {
    let summary = Summary {
        copied: plan.missing.clone(),
        bytes: plan.missing_bytes(),
        present: plan.present,
        index_change: plan.index_change.clone(),
    };
    if plan.is_noop() {
        // Nothing to write, but a killed sync may have left staged blobs behind.
        dest.discard().await?;
        return Ok(summary);
    }
    dest.prepare().await?;
    if let Err(e) = stage_blobs(plan, &source, &dest, opts).await {
        let stopped = |e| Error::SyncStopped {
            destination: dest.location(),
            source: Box::new(e),
        };
        return Err(match dest.discard().await {
            Ok(()) => stopped(e),
            Err(discard) => stopped(Error::Destination {
                destination: dest.location(),
                message: format!("{e}; and discarding what was staged failed: {discard}"),
            }),
        });
    }
    dest.commit(&Commit {
        channel: &plan.channel,
        version: plan.version,
        index: &plan.raw.bytes,
        signature: &plan.raw.signature,
        blobs: &plan.blobs,
    })
    .await?;
    Ok(summary)
}

/// Copies `plan.missing` into DST's staging area, `jobs` at a time; stops at the first
/// failure and waits for the copies in flight to end.
async fn stage_blobs(plan: &Plan, source: &Arc<Source>, dest: &Arc<Destination>, opts: &SyncOptions) -> Result<()> {
    let jobs = opts.jobs.map_or_else(|| default_jobs(source), NonZeroUsize::get);
    let bar = progress_bar(opts.progress, plan.missing_bytes());
    let ticker = (opts.progress == Progress::Bar).then(|| {
        let (bar, source, total) = (bar.clone(), Arc::clone(source), plan.missing_bytes());
        let start = source.bytes_received();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_TICK);
            loop {
                tick.tick().await;
                bar.set_position(source.bytes_received().saturating_sub(start).min(total));
            }
        })
    });
    let total = plan.missing.len();
    bar.set_message(format!("0/{total} blobs"));
    let mut queue = plan.missing.iter();
    let mut running = tokio::task::JoinSet::new();
    let mut done = 0;
    let result = loop {
        while running.len() < jobs {
            let Some((digest, size)) = queue.next() else { break };
            let (source, dest, digest, size) = (Arc::clone(source), Arc::clone(dest), digest.clone(), *size);
            running.spawn(async move { dest.put_blob(&source, &digest, size).await });
        }
        match running.join_next().await {
            None => break Ok(()),
            Some(Ok(Ok(()))) => {
                done += 1;
                bar.set_message(format!("{done}/{total} blobs"));
            }
            Some(Ok(Err(e))) => break Err(e),
            Some(Err(e)) => {
                break Err(Error::Destination {
                    destination: dest.location(),
                    message: format!("a blob copy ended abnormally: {e}"),
                })
            }
        }
    };
    running.shutdown().await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    bar.finish_and_clear();
    result
}

fn default_jobs(source: &Source) -> usize {
    if matches!(source, Source::File(_)) {
        1
    } else {
        DEFAULT_NETWORK_JOBS
    }
}

fn progress_bar(progress: Progress, total: u64) -> indicatif::ProgressBar {
    match progress {
        Progress::Quiet => indicatif::ProgressBar::hidden(),
        Progress::Bar => {
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr());
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {msg} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            bar
        }
    }
}

/// Step 1 on the index bytes: with keys, full verification; without, form and expiry.
fn read_source_index(raw: &RawIndex, keys: &[PathBuf], now: OffsetDateTime) -> Result<(Index, Trust)> {
    if !keys.is_empty() {
        let keys = TrustedKeys::load(keys)?;
        let verified = verify_index(raw, &keys, now, None)?;
        return Ok((verified.index().clone(), Trust::Verified));
    }
    let what = raw.origin.as_str();
    let index = Index::parse(&raw.bytes, what)?;
    if index.expires <= now {
        return Err(drover_agent::Error::Expired {
            what: what.to_string(),
            expires: rfc3339(index.expires),
            now: rfc3339(now),
        }
        .into());
    }
    Ok((index, Trust::Unverified))
}

/// Step 2: may DST's `current` index be replaced by `new` (whose parsed form is
/// `new_index`)? Refusals name both versions; [`Overwrite::Force`] turns them into
/// [`IndexChange::Forced`].
pub fn check_destination_index(
    current: Option<&RawIndex>,
    new: &RawIndex,
    new_index: &Index,
    overwrite: Overwrite,
    destination: &str,
) -> Result<IndexChange> {
    let Some(current) = current else {
        return Ok(IndexChange::Create);
    };
    if current.bytes == new.bytes {
        return Ok(if current.signature == new.signature {
            IndexChange::Unchanged
        } else {
            IndexChange::Signature
        });
    }
    let refuse = |from: Option<u64>, reason: String| match overwrite {
        Overwrite::Refuse => Err(Error::Destination {
            destination: destination.to_string(),
            message: format!("{reason}; refusing to replace it (--force replaces it)"),
        }),
        Overwrite::Force => Ok(IndexChange::Forced { from, reason }),
    };
    let parsed = serde_json::from_slice::<Index>(&current.bytes)
        .map_err(|e| e.to_string())
        .and_then(|i| i.validate(&current.origin).map(|()| i).map_err(|e| e.to_string()));
    let (channel, version) = (&new_index.channel, new_index.version);
    match parsed {
        Err(e) => refuse(None, format!("its index.json is not a drover index ({e})")),
        Ok(cur) if &cur.channel != channel => refuse(
            Some(cur.version),
            format!(
                "it holds channel {} (version {}), the source channel {channel} (version {version})",
                cur.channel, cur.version
            ),
        ),
        Ok(cur) if cur.version > version => refuse(
            Some(cur.version),
            format!(
                "it has channel {channel} version {}, newer than version {version} from the source (agents that took version {} refuse older ones)",
                cur.version, cur.version
            ),
        ),
        Ok(cur) if cur.version == version => refuse(
            Some(cur.version),
            format!(
                "it has channel {channel} version {version} with other content than the source's version {version} (a publisher must raise the version for every change)"
            ),
        ),
        Ok(cur) => Ok(IndexChange::Upgrade { from: cur.version }),
    }
}

/// For each referenced blob, the names of the bundles whose targets use it.
fn blob_users(index: &Index) -> BTreeMap<Digest, Vec<String>> {
    let mut users: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for bundle in &index.bundles {
        for (digest, _) in bundle.targets.iter().flat_map(Target::blobs) {
            let names = users.entry(digest.clone()).or_default();
            if names.last().map(String::as_str) != Some(bundle.name.as_str()) {
                names.push(bundle.name.as_str().to_string());
            }
        }
    }
    users
}

/// `1 blob`, `2 blobs`.
fn blobs_count(n: usize) -> String {
    format!("{n} blob{}", if n == 1 { "" } else { "s" })
}

/// Sizes for people: `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `index version 6 → 7`, `index version 7 unchanged`, …
fn describe_index_change(change: &IndexChange, version: u64) -> String {
    match change {
        IndexChange::Create => format!("index version (none) → {version}"),
        IndexChange::Upgrade { from } => format!("index version {from} → {version}"),
        IndexChange::Unchanged => format!("index version {version} unchanged"),
        IndexChange::Signature => format!("index version {version}, signature replaced"),
        IndexChange::Forced { from: Some(from), .. } => format!("index version {from} → {version} (forced)"),
        IndexChange::Forced { from: None, .. } => format!("index (unreadable) → version {version} (forced)"),
    }
}

/// What `--dry-run` prints: one line of totals, then one line per blob to copy.
pub fn describe_plan(plan: &Plan) -> String {
    let mut out = format!(
        "would copy {} ({}), {} already there; {}\n",
        blobs_count(plan.missing.len()),
        human_bytes(plan.missing_bytes()),
        plan.present,
        describe_index_change(&plan.index_change, plan.version)
    );
    for (digest, size) in &plan.missing {
        let users = plan.users.get(digest).map(|u| u.join(", ")).unwrap_or_default();
        out.push_str(&format!("  {digest} {:>10}  {users}\n", human_bytes(*size)));
    }
    out
}

/// The summary line of a sync from `src` to `dst` (as the user wrote them).
pub fn describe_summary(plan: &Plan, summary: &Summary, src: &str, dst: &str) -> String {
    format!(
        "synced channel {} version {} from {src} to {dst}: {} copied ({}), {} already there; {}",
        plan.channel,
        plan.version,
        blobs_count(summary.copied.len()),
        human_bytes(summary.bytes),
        summary.present,
        describe_index_change(&summary.index_change, plan.version)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_agent::source::{FileSource, Limits};

    fn index_json(channel: &str, version: u64, blobs: &[&[u8]]) -> Vec<u8> {
        let targets: Vec<String> = blobs
            .iter()
            .map(|b| {
                format!(
                    r#"{{"clusterSelector":{{}},"digest":"{}","size":{}}}"#,
                    Digest::of(b),
                    b.len()
                )
            })
            .collect();
        let bundles: Vec<String> = targets
            .iter()
            .enumerate()
            .map(|(i, t)| format!(r#"{{"name":"b{i}","targets":[{t}]}}"#))
            .collect();
        format!(
            r#"{{"apiVersion":"drover.dev/v1","kind":"Index","channel":"{channel}","version":{version},"expires":"2099-01-01T00:00:00Z","bundles":[{}]}}"#,
            bundles.join(",")
        )
        .into_bytes()
    }

    fn raw(bytes: Vec<u8>, signature: &[u8]) -> RawIndex {
        RawIndex {
            bytes,
            signature: signature.to_vec(),
            origin: "test".into(),
            not_modified: false,
        }
    }

    fn parsed(raw: &RawIndex) -> Index {
        serde_json::from_slice(&raw.bytes).expect("test index parses")
    }

    fn change(current: Option<&RawIndex>, new: &RawIndex, overwrite: Overwrite) -> Result<IndexChange> {
        check_destination_index(current, new, &parsed(new), overwrite, "/dst")
    }

    #[test]
    fn a_destination_without_index_gets_one() {
        let new = raw(index_json("stable", 7, &[]), b"sig");
        assert_eq!(change(None, &new, Overwrite::Refuse).expect("ok"), IndexChange::Create);
    }

    #[test]
    fn an_older_destination_index_is_upgraded() {
        let new = raw(index_json("stable", 7, &[]), b"sig7");
        let old = raw(index_json("stable", 6, &[]), b"sig6");
        assert_eq!(
            change(Some(&old), &new, Overwrite::Refuse).expect("ok"),
            IndexChange::Upgrade { from: 6 }
        );
    }

    #[test]
    fn identical_index_is_unchanged_and_a_new_signature_alone_is_written() {
        let new = raw(index_json("stable", 7, &[]), b"sig");
        assert_eq!(
            change(Some(&new.clone()), &new, Overwrite::Refuse).expect("ok"),
            IndexChange::Unchanged
        );
        // What a sync killed between its two renames leaves: new index, old signature.
        let half = raw(index_json("stable", 7, &[]), b"old sig");
        assert_eq!(
            change(Some(&half), &new, Overwrite::Refuse).expect("ok"),
            IndexChange::Signature
        );
    }

    #[test]
    fn a_newer_destination_index_is_refused_naming_both_versions() {
        let new = raw(index_json("stable", 6, &[]), b"sig6");
        let dst = raw(index_json("stable", 7, &[]), b"sig7");
        let err = change(Some(&dst), &new, Overwrite::Refuse)
            .expect_err("rollback")
            .to_string();
        assert!(
            err.contains("version 7") && err.contains("version 6") && err.contains("--force"),
            "{err}"
        );
        assert!(matches!(
            change(Some(&dst), &new, Overwrite::Force),
            Ok(IndexChange::Forced { from: Some(7), .. })
        ));
    }

    #[test]
    fn same_version_with_other_bytes_is_refused() {
        let new = raw(index_json("stable", 7, &[b"a"]), b"sig");
        let dst = raw(index_json("stable", 7, &[b"b"]), b"sig");
        let err = change(Some(&dst), &new, Overwrite::Refuse)
            .expect_err("equivocation")
            .to_string();
        assert!(err.contains("other content"), "{err}");
    }

    #[test]
    fn another_channel_or_a_foreign_file_is_refused_unless_forced() {
        let new = raw(index_json("stable", 7, &[]), b"sig");
        let beta = raw(index_json("beta", 3, &[]), b"sig");
        let err = change(Some(&beta), &new, Overwrite::Refuse)
            .expect_err("channel")
            .to_string();
        assert!(err.contains("beta") && err.contains("stable"), "{err}");
        let junk = raw(b"<html>not an index</html>".to_vec(), b"");
        let err = change(Some(&junk), &new, Overwrite::Refuse)
            .expect_err("junk")
            .to_string();
        assert!(err.contains("not a drover index"), "{err}");
        assert!(matches!(
            change(Some(&junk), &new, Overwrite::Force),
            Ok(IndexChange::Forced { from: None, .. })
        ));
    }

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(12_600), "12.3 KiB");
        assert_eq!(human_bytes(4 << 20), "4.0 MiB");
    }

    #[test]
    fn destinations_are_directories_or_file_urls_never_http() {
        for spec in ["http://cdn.example/fleet", "https://cdn.example/fleet"] {
            let err = Destination::parse(spec).expect_err("read only").to_string();
            assert!(err.contains("read only"), "{err}");
        }
        assert!(Destination::parse("ftp://host/x").is_err());
        assert!(Destination::parse("").is_err());
        let Destination::Dir(d) = Destination::parse("file:///media/usb/drover").expect("file url") else {
            panic!("a file:// URL is a directory destination")
        };
        assert_eq!(d.root(), Path::new("/media/usb/drover"));
        let Destination::Dir(d) = Destination::parse("relative/mirror").expect("path") else {
            panic!("a path is a directory destination")
        };
        assert!(d.root().is_absolute() && d.root().ends_with("relative/mirror"));
        let Destination::Oci(o) = Destination::parse("oci://127.0.0.1:5000/fleet:stable").expect("oci") else {
            panic!("oci:// is a registry destination")
        };
        assert_eq!(o.reference().repository, "fleet");
        let err = Destination::parse("oci://127.0.0.1:5000/fleet")
            .expect_err("no tag")
            .to_string();
        assert!(err.contains("CHANNEL"), "{err}");
    }

    /// A store directory holding `blobs` and an unsigned index of them.
    fn store(dir: &Path, version: u64, blobs: &[&[u8]]) {
        std::fs::create_dir_all(dir.join(BLOB_DIR)).expect("mkdir");
        for b in blobs {
            std::fs::write(dir.join(BLOB_DIR).join(Digest::of(b).hex()), b).expect("blob");
        }
        std::fs::write(dir.join(INDEX_FILE), index_json("stable", version, blobs)).expect("index");
        std::fs::write(dir.join(SIGNATURE_FILE), format!("sig {version}")).expect("sig");
    }

    fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else { continue };
            for entry in entries {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let bytes = std::fs::read(&path).expect("read");
                    out.insert(path.strip_prefix(dir).expect("under dir").to_path_buf(), bytes);
                }
            }
        }
        out
    }

    fn options() -> SyncOptions {
        SyncOptions {
            keys: Vec::new(),
            overwrite: Overwrite::Refuse,
            existing: ExistingBlobs::CheckSize,
            jobs: None,
            progress: Progress::Quiet,
            now: OffsetDateTime::now_utc(),
        }
    }

    async fn run(src: &Path, dst: &Path) -> Result<Summary> {
        let source = Arc::new(Source::File(FileSource::new(src.to_path_buf(), &Limits::default())));
        let dest = Arc::new(Destination::Dir(DirDestination::new(dst.to_path_buf())));
        let plan = plan(&source, &dest, &options()).await?;
        execute(&plan, source, dest, &options()).await
    }

    #[tokio::test]
    async fn copies_missing_blobs_then_the_index_and_nothing_the_second_time() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        store(&src, 1, &[b"one", b"two"]);
        let first = run(&src, &dst).await.expect("first sync");
        assert_eq!((first.copied.len(), first.present), (2, 0));
        assert_eq!(files(&src), files(&dst), "byte-identical, staging area gone");
        let second = run(&src, &dst).await.expect("second sync");
        assert_eq!((second.copied.len(), second.present), (0, 2));
        assert_eq!(second.index_change, IndexChange::Unchanged);
    }

    #[tokio::test]
    async fn a_bad_blob_discards_everything_staged_and_leaves_the_destination_as_it_was() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        store(&src, 1, &[b"one"]);
        run(&src, &dst).await.expect("first sync");
        store(&src, 2, &[b"one", b"aaa", b"bbb", b"ccc"]);
        // Corrupt the blob fetched last (blobs are fetched in digest order).
        let last = [b"aaa", b"bbb", b"ccc"]
            .map(|b| Digest::of(b))
            .into_iter()
            .max()
            .expect("three");
        std::fs::write(src.join(BLOB_DIR).join(last.hex()), b"xxx").expect("corrupt");
        let before = files(&dst);
        let err = run(&src, &dst).await.expect_err("digest mismatch");
        assert!(matches!(err, Error::SyncStopped { .. }), "{err}");
        assert_eq!(files(&dst), before, "destination unchanged");
        assert!(!dst.join(STAGING_DIR).exists());
    }

    #[tokio::test]
    async fn blobs_staged_by_a_killed_sync_are_rehashed_and_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        store(&src, 1, &[b"kept", b"bad!"]);
        // A killed sync left one good and one damaged staged blob; the source has since
        // lost the good one, so only reuse can complete the copy.
        let staging = dst.join(STAGING_DIR);
        std::fs::create_dir_all(&staging).expect("mkdir");
        std::fs::write(staging.join(Digest::of(b"kept").hex()), b"kept").expect("staged");
        std::fs::write(staging.join(Digest::of(b"bad!").hex()), b"BAD!").expect("staged");
        std::fs::remove_file(src.join(BLOB_DIR).join(Digest::of(b"kept").hex())).expect("rm");
        run(&src, &dst).await.expect("completes from staged + source");
        assert_eq!(
            std::fs::read(dst.join(BLOB_DIR).join(Digest::of(b"bad!").hex())).expect("blob"),
            b"bad!"
        );
        assert!(!staging.exists());
    }

    #[tokio::test]
    async fn verify_existing_copies_a_corrupt_blob_again() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (src, dst) = (tmp.path().join("src"), tmp.path().join("dst"));
        store(&src, 1, &[b"good"]);
        run(&src, &dst).await.expect("first sync");
        let blob = dst.join(BLOB_DIR).join(Digest::of(b"good").hex());
        std::fs::write(&blob, b"evil").expect("corrupt");
        let dest = Destination::Dir(DirDestination::new(dst.clone()));
        let d = Digest::of(b"good");
        assert!(dest.has_blob(&d, 4, ExistingBlobs::CheckSize).await.expect("stat"));
        assert!(!dest.has_blob(&d, 4, ExistingBlobs::Rehash).await.expect("hash"));
        let source = Arc::new(Source::File(FileSource::new(src.clone(), &Limits::default())));
        let opts = SyncOptions {
            existing: ExistingBlobs::Rehash,
            ..options()
        };
        let dest = Arc::new(dest);
        let plan = plan(&source, &dest, &opts).await.expect("plan");
        assert_eq!(plan.missing, vec![(d, 4)]);
        execute(&plan, source, dest, &opts).await.expect("sync");
        assert_eq!(std::fs::read(&blob).expect("blob"), b"good");
    }

    #[tokio::test]
    async fn a_missing_parent_directory_is_not_created() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        store(&src, 1, &[b"one"]);
        let err = run(&src, &tmp.path().join("unmounted/drover"))
            .await
            .expect_err("no parent");
        assert!(err.to_string().contains("parent directory does not exist"), "{err}");
        assert!(!tmp.path().join("unmounted").exists());
    }

    #[test]
    fn dry_run_lists_each_blob_with_its_bundles() {
        let new = raw(index_json("stable", 7, &[b"a", b"b"]), b"sig");
        let index = parsed(&new);
        let blobs = index.blobs();
        let plan = Plan {
            channel: "stable".into(),
            version: 7,
            trust: Trust::Verified,
            index_change: IndexChange::Upgrade { from: 6 },
            missing: vec![blobs[0].clone()],
            present: 1,
            users: blob_users(&index),
            blobs,
            raw: new,
        };
        let text = describe_plan(&plan);
        assert!(
            text.starts_with("would copy 1 blob (1 B), 1 already there; index version 6 → 7\n"),
            "{text}"
        );
        assert!(text.contains(plan.missing[0].0.as_str()), "{text}");
    }
}
