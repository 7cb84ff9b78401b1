//! `drover publish`: build and sign a store from `SRC/bundles/<name>/`.
//!
//! Order of writes, so that a reader never sees an index whose blobs are missing:
//! 1. every blob (content-addressed; an existing blob is never rewritten);
//! 2. `index.json` (temp file + rename);
//! 3. `index.json.minisig` (temp file + rename).
//!
//! Between 2 and 3 a reader may see the new index with the old signature; it fails
//! verification and keeps its current state until the next poll.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_agent::format::{
    Bundle, Digest, Index, LabelSelector, Target, API_VERSION, BLOB_DIR, INDEX_FILE, INDEX_KIND,
};
use drover_agent::fsutil;
use time::OffsetDateTime;

use crate::bundle_spec::{check_manifest_file, BundleSource};
use crate::error::{Error, Result};
use crate::keygen::load_secret_key;
use crate::pack::pack;
use crate::parallel;

/// Default validity of a published index.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(30 * 86_400);

/// What to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// Directory holding `bundles/<name>/`.
    pub src: PathBuf,
    /// Store directory to write.
    pub store: PathBuf,
    /// Secret key file.
    pub key: PathBuf,
    /// Channel name.
    pub channel: String,
    /// How long the index stays valid.
    pub expires_in: Duration,
}

/// What a publish did.
#[derive(Debug, Clone)]
pub struct PublishSummary {
    /// The new index version.
    pub version: u64,
    /// When it expires.
    pub expires: OffsetDateTime,
    /// Number of bundles.
    pub bundles: usize,
    /// Blobs written by this publish.
    pub blobs_written: Vec<Digest>,
    /// Blobs referenced that were already in the store.
    pub blobs_reused: usize,
}

/// A target as `bundle.yaml` asks for it: selector, cluster name, variant directory.
type WantedTarget<'a> = (Option<LabelSelector>, Option<String>, Option<&'a PathBuf>);

/// Builds every bundle, writes new blobs, then the signed index.
pub fn publish(opts: &PublishOptions, now: OffsetDateTime) -> Result<PublishSummary> {
    if opts.channel.is_empty() {
        return Err(Error::source(&opts.store, "channel name must not be empty"));
    }
    let sk = load_secret_key(&opts.key)?;
    let sources = read_bundle_sources(&opts.src)?;
    let blob_dir = opts.store.join(BLOB_DIR);
    fsutil::ensure_dir(&blob_dir)?;

    let wanted: Vec<Vec<WantedTarget<'_>>> = sources
        .iter()
        .map(|source| {
            let spec = &source.spec;
            if spec.targets.is_empty() {
                vec![(Some(LabelSelector::default()), None, None)]
            } else {
                spec.targets
                    .iter()
                    .map(|t| (t.cluster_selector.clone(), t.cluster_name.clone(), t.variant.as_ref()))
                    .collect()
            }
        })
        .collect();
    // Checking every manifest and compressing every blob are all the work. They run as one
    // batch on every core, blobs first (the longest jobs), each job on one thread from the
    // same bytes, so the output does not depend on the number of cores. Nothing is written
    // unless every manifest passed.
    let packs = sources
        .iter()
        .zip(&wanted)
        .flat_map(|(source, targets)| targets.iter().map(move |(_, _, variant)| Job::Pack(source, *variant)));
    let checks = sources
        .iter()
        .flat_map(BundleSource::manifest_files)
        .map(|(path, bytes)| Job::Check(path, bytes));
    let jobs: Vec<Job<'_>> = packs.chain(checks).collect();
    let mut blobs = Vec::new();
    for done in parallel::map(&jobs, Job::run) {
        if let Some(blob) = done? {
            blobs.push(blob);
        }
    }
    let mut blobs = blobs.into_iter();

    let mut written = Vec::new();
    let mut reused = 0;
    let mut bundles = Vec::new();
    for (source, wanted) in sources.iter().zip(wanted) {
        let spec = &source.spec;
        let mut targets = Vec::new();
        for (cluster_selector, cluster_name, _) in wanted {
            let blob = blobs.next().expect("one blob per target, in order");
            let (digest, size, new) = write_blob(&blob_dir, blob)?;
            if new {
                written.push(digest.clone());
            } else {
                reused += 1;
            }
            targets.push(Target {
                cluster_selector,
                cluster_name,
                digest,
                size,
            });
        }
        bundles.push(Bundle {
            name: source.name.clone(),
            namespace: spec.namespace.clone(),
            depends_on: spec.depends_on.clone(),
            paused: spec.paused,
            rollout: spec.rollout,
            force: spec.force,
            keep_resources: spec.keep_resources,
            health_timeout_seconds: spec.health_timeout.map(|d| d.as_secs()),
            targets,
        });
    }
    check_dependencies(&bundles, &opts.src)?;

    let version = previous_version(&opts.store)? + 1;
    let expires = now + opts.expires_in;
    let index = Index {
        api_version: API_VERSION.into(),
        kind: INDEX_KIND.into(),
        channel: opts.channel.clone(),
        version,
        expires,
        bundles,
    };
    index.validate(&opts.src.display().to_string())?;
    let mut bytes = serde_json::to_vec_pretty(&index).expect("index serialises: plain data");
    bytes.push(b'\n');
    let comment = format!("drover index channel={} version={version}", opts.channel);
    let signature = minisign::sign(
        None,
        &sk,
        &bytes[..],
        Some(&comment),
        Some("drover channel index signature"),
    )
    .map_err(|e| Error::Key {
        path: opts.key.clone(),
        message: format!("signing failed: {e}"),
    })?;
    // Both files complete on disk before either is renamed, and index.json's mtime moved
    // past the previous one's second (web servers' ETags), as drover sync writes them.
    crate::sync::replace_index_files(&opts.store, &bytes, signature.into_string().as_bytes())?;
    Ok(PublishSummary {
        version,
        expires,
        bundles: index.bundles.len(),
        blobs_written: written,
        blobs_reused: reused,
    })
}

/// One piece of the work of publishing.
enum Job<'a> {
    /// Pack the blob of a bundle's target (its variant directory, if any).
    Pack(&'a BundleSource, Option<&'a PathBuf>),
    /// Check one manifest file.
    Check(PathBuf, &'a [u8]),
}

impl Job<'_> {
    /// Runs the job; a blob for [`Job::Pack`].
    fn run(&self) -> Result<Option<Vec<u8>>> {
        match self {
            Job::Pack(source, variant) => pack(&source.files_for(*variant))
                .map(Some)
                .map_err(|e| drover_agent::Error::io(&source.dir, e).into()),
            Job::Check(path, bytes) => check_manifest_file(path, bytes).map(|()| None),
        }
    }
}

/// Writes `blob` into `blob_dir` unless it is there already; returns its digest, its size
/// and whether it was written.
fn write_blob(blob_dir: &Path, blob: Vec<u8>) -> Result<(Digest, u64, bool)> {
    let digest = Digest::of(&blob);
    let path = blob_dir.join(digest.hex());
    let new = !path.exists();
    if new {
        fsutil::write_atomic(&path, &blob)?;
    }
    Ok((digest, blob.len() as u64, new))
}

fn read_bundle_sources(src: &Path) -> Result<Vec<BundleSource>> {
    let bundles_dir = src.join("bundles");
    let entries = std::fs::read_dir(&bundles_dir)
        .map_err(|e| Error::source(&bundles_dir, format!("cannot read the bundles directory: {e}")))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| drover_agent::Error::io(&bundles_dir, e))?;
        if entry
            .file_type()
            .map_err(|e| drover_agent::Error::io(entry.path(), e))?
            .is_dir()
        {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::source(
            &bundles_dir,
            "no bundle directories found (expected bundles/<name>/)",
        ));
    }
    dirs.iter().map(|d| BundleSource::read(d)).collect()
}

/// Refuses unknown `dependsOn` names and cycles at publish time, before agents see them.
fn check_dependencies(bundles: &[Bundle], src: &Path) -> Result<()> {
    for b in bundles {
        for d in &b.depends_on {
            if !bundles.iter().any(|o| &o.name == d) {
                return Err(Error::source(
                    src,
                    format!("bundle {}: dependsOn names unknown bundle {d}", b.name),
                ));
            }
        }
    }
    // Depth-first search from each bundle; a path back to itself is a cycle.
    for start in bundles {
        let mut stack = vec![(&start.name, vec![start.name.as_str()])];
        while let Some((name, path)) = stack.pop() {
            let Some(b) = bundles.iter().find(|b| &b.name == name) else {
                continue;
            };
            for d in &b.depends_on {
                let mut next = path.clone();
                next.push(d.as_str());
                if d == &start.name {
                    return Err(Error::source(src, format!("dependsOn cycle: {}", next.join(" -> "))));
                }
                if !path.contains(&d.as_str()) {
                    stack.push((d, next));
                }
            }
        }
    }
    Ok(())
}

/// The version of the store's current index, or 0 for a new store. The old index is read
/// only for its number; an unreadable one is an error rather than a silent restart at 1,
/// which every agent would refuse as a rollback.
fn previous_version(store: &Path) -> Result<u64> {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        version: u64,
    }
    let path = store.join(INDEX_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<VersionOnly>(&bytes)
            .map(|v| v.version)
            .map_err(|e| {
                Error::source(
                    &path,
                    format!("existing index has no readable version ({e}); agents would refuse a restart at 1"),
                )
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(drover_agent::Error::io(&path, e).into()),
    }
}
