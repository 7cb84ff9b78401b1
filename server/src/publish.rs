//! `drover publish`: build and sign a store from `SRC/bundles/<name>/`.
//!
//! Order of writes, so that a reader never sees an index whose blobs are missing:
//! 1. every blob (content-addressed; an existing blob is never rewritten);
//! 2. `index.json` (temp file + rename);
//! 3. `index.json.minisig` (temp file + rename).
//!
//! Between 2 and 3 a reader may see the new index with the old signature; it fails
//! verification and keeps its current state until the next poll.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_agent::format::{
    BlobRef, Bundle, BundleName, Digest, Index, LabelSelector, Target, API_VERSION, BLOB_DIR, INDEX_FILE, INDEX_KIND,
};
use drover_agent::fsutil;
use time::OffsetDateTime;

use crate::bundle_spec::{check_manifest_file, BundleSource, Recipe, SourceKind, TargetSpec, BUNDLE_FILE};
use crate::error::{Error, Result};
use crate::manifest_check::{check_objects, ObjectId};
use crate::pack::pack;
use crate::parallel;
use crate::secret_key::load_secret_key;

/// Default validity of a published index.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(30 * 86_400);

/// Default largest bundle blob (compressed bytes) `drover publish` accepts: 32 MiB, well
/// under what agents unpack ([`drover_agent::render::DEFAULT_MAX_UNPACKED_BYTES`]) and
/// large enough for a chart with its dependencies.
pub const DEFAULT_MAX_BUNDLE_SIZE: u64 = 32 << 20;

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
    /// Largest blob accepted, in bytes.
    pub max_bundle_size: u64,
    /// Build and check everything, write nothing.
    pub dry_run: bool,
    /// Publish over an index of another channel (replacing that channel in this store).
    pub force: bool,
}

/// What a publish did (or, dry run, would do).
#[derive(Debug, Clone)]
pub struct PublishSummary {
    /// The new index version.
    pub version: u64,
    /// When it expires.
    pub expires: OffsetDateTime,
    /// Number of bundles.
    pub bundles: usize,
    /// Blobs written by this publish (dry run: that it would write).
    pub blobs_written: Vec<Digest>,
    /// Blobs referenced that were already in the store.
    pub blobs_reused: usize,
    /// The index written (dry run: that would be written).
    pub index: Index,
    /// Warnings about the sources (see [`BundleSource::warnings`]), for stderr.
    pub warnings: Vec<String>,
    /// Bundles of the previous index that this one no longer has (agents remove them).
    pub removed: Vec<BundleName>,
}

impl PublishSummary {
    /// One line per target: bundle, target, digest, size, whether the blob is new, and the
    /// previous digest clusters outside the rollout wave get. What `--dry-run` prints.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for b in &self.index.bundles {
            let mut flags = Vec::new();
            if b.paused {
                flags.push("paused".to_string());
            }
            if let Some(r) = b.rollout {
                flags.push(format!("rollout {}%", r.percent));
            }
            let flags = if flags.is_empty() {
                String::new()
            } else {
                format!(" ({})", flags.join(", "))
            };
            out.push_str(&format!("bundle {}{flags}\n", b.name));
            for (i, t) in b.targets.iter().enumerate() {
                let what = crate::store::describe_target(t);
                if t.do_not_deploy {
                    out.push_str(&format!("  targets[{i}] {what}: doNotDeploy\n"));
                    continue;
                }
                let new = if self.blobs_written.contains(&t.digest) {
                    "new"
                } else {
                    "in store"
                };
                let previous = t
                    .previous
                    .as_ref()
                    .map(|p| format!("; outside the wave: {}", p.digest))
                    .unwrap_or_default();
                out.push_str(&format!(
                    "  targets[{i}] {what}: {} ({} bytes, {new}){previous}\n",
                    t.digest, t.size
                ));
            }
        }
        out
    }
}

/// A target as `bundle.yaml` asks for it: selector, cluster name, its spec (`None` for the
/// implicit every-cluster target).
type WantedTarget<'a> = (Option<LabelSelector>, Option<String>, Option<&'a TargetSpec>);

/// `drover publish`: publishes (or, dry run, describes) and reports on stdout, with the
/// sources' warnings on stderr.
pub fn run(opts: &PublishOptions, now: OffsetDateTime) -> Result<()> {
    let s = publish(opts, now)?;
    for warning in &s.warnings {
        eprintln!("drover: warning: {warning}");
    }
    let (channel, store) = (&opts.channel, opts.store.display());
    if opts.dry_run {
        print!("{}", s.describe());
        println!(
            "dry run: would publish channel {channel} version {} to {store} ({} bundles; {} new blobs); nothing written",
            s.version,
            s.bundles,
            s.blobs_written.len()
        );
        for name in &s.removed {
            println!("would remove: {}", name.as_str());
        }
        return Ok(());
    }
    println!(
        "published channel {channel} version {} to {store} ({} bundles; {} new blobs, {} unchanged; expires {})",
        s.version,
        s.bundles,
        s.blobs_written.len(),
        s.blobs_reused,
        drover_agent::format::rfc3339(s.expires)
    );
    for name in &s.removed {
        println!(
            "removed: {} (no longer in {}; agents remove it)",
            name.as_str(),
            opts.src.display()
        );
    }
    Ok(())
}

/// Builds every bundle, writes new blobs, then the signed index.
pub fn publish(opts: &PublishOptions, now: OffsetDateTime) -> Result<PublishSummary> {
    if opts.channel.is_empty() {
        return Err(Error::source(&opts.store, "channel name must not be empty"));
    }
    let sk = load_secret_key(&opts.key)?;
    let sources = read_bundle_sources(&opts.src)?;
    check_dependencies(&sources)?;
    let previous_index = previous_index(&opts.store)?;
    check_same_channel(opts, previous_index.as_ref())?;
    let wanted = wanted_targets(&sources);
    let recipes = distinct_recipes(&sources, &wanted);
    let packed = pack_blobs(&sources, &recipes.recipes)?;
    let blobs = write_blobs(opts, &sources, &recipes.recipes, packed)?;
    let mut reused = 0;
    let bundles = sources
        .iter()
        .zip(wanted)
        .zip(&recipes.of_target)
        .map(|((source, wanted), recipe_of)| {
            let old = previous_index.as_ref().and_then(|i| i.bundle(&source.name));
            let (bundle, bundle_reused) = index_bundle(source, wanted, recipe_of, &blobs, old);
            reused += bundle_reused;
            bundle
        })
        .collect();
    let version = previous_index.as_ref().map_or(0, |i| i.version) + 1;
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
    let summary = PublishSummary {
        version,
        expires,
        bundles: index.bundles.len(),
        blobs_written: blobs.written,
        blobs_reused: reused,
        index,
        warnings: sources.iter().flat_map(|s| s.warnings.iter().cloned()).collect(),
        removed: removed_bundles(previous_index.as_ref(), &sources),
    };
    if !opts.dry_run {
        write_signed_index(opts, &sk, &summary.index)?;
    }
    Ok(summary)
}

/// The targets each bundle asks for, in order: its `targets`, or the implicit
/// every-cluster target when it lists none.
fn wanted_targets(sources: &[BundleSource]) -> Vec<Vec<WantedTarget<'_>>> {
    sources
        .iter()
        .map(|source| {
            let spec = &source.spec;
            if spec.targets.is_empty() {
                vec![(Some(LabelSelector::default()), None, None)]
            } else {
                spec.targets
                    .iter()
                    .map(|t| (t.cluster_selector.clone(), t.cluster_name.clone(), Some(t)))
                    .collect()
            }
        })
        .collect()
}

/// The distinct recipes to build, and which of them each target uses.
struct Recipes<'a> {
    /// (index of the bundle source, recipe), each distinct one once.
    recipes: Vec<(usize, Recipe<'a>)>,
    /// Per bundle, per target: the index of its recipe in `recipes`.
    of_target: Vec<Vec<usize>>,
}

/// Each distinct recipe (bundle, variant/overlay/values) is built once, however many
/// targets share it.
fn distinct_recipes<'a>(sources: &'a [BundleSource], wanted: &[Vec<WantedTarget<'a>>]) -> Recipes<'a> {
    let mut recipes: Vec<(usize, Recipe<'a>)> = Vec::new();
    let of_target = sources
        .iter()
        .zip(wanted)
        .enumerate()
        .map(|(s, (source, targets))| {
            targets
                .iter()
                .map(|(_, _, spec)| {
                    let recipe = source.recipe(*spec);
                    match recipes.iter().position(|(rs, r)| *rs == s && *r == recipe) {
                        Some(i) => i,
                        None => {
                            recipes.push((s, recipe));
                            recipes.len() - 1
                        }
                    }
                })
                .collect()
        })
        .collect();
    Recipes { recipes, of_target }
}

/// What checking the sources found: the object identities of every manifest file, and
/// the rendered files of every kustomize and Helm recipe, in recipe order.
struct Checked {
    ids_of_file: BTreeMap<PathBuf, Vec<ObjectId>>,
    rendered: Vec<Files<'static>>,
}

/// Checks every manifest file and renders kustomizations and charts as one batch on every
/// core. Each job runs on one thread from the same bytes, so the output does not depend on
/// the number of cores.
fn check_and_render<'a>(sources: &'a [BundleSource], recipes: &'a [(usize, Recipe<'a>)]) -> Result<Checked> {
    let checks = sources
        .iter()
        .flat_map(BundleSource::manifest_files)
        .map(|(path, bytes)| Job::Check(path, bytes));
    let renders = recipes
        .iter()
        .filter(|(_, r)| matches!(r, Recipe::Kustomize(_) | Recipe::Helm(_)))
        .map(|(s, r)| Job::Render(&sources[*s], r));
    let jobs: Vec<Job<'_>> = renders.chain(checks).collect();
    let mut checked = Checked {
        ids_of_file: BTreeMap::new(),
        rendered: Vec::new(),
    };
    for (job, done) in jobs.iter().zip(parallel::map(&jobs, Job::run)) {
        match (job, done?) {
            (Job::Check(path, _), Done::Checked(ids)) => {
                checked.ids_of_file.insert(path.clone(), ids);
            }
            (Job::Render(..), Done::Rendered(files)) => checked.rendered.push(files),
            _ => unreachable!("each job gives its kind of result"),
        }
    }
    Ok(checked)
}

/// Builds the file set of every recipe, checks its objects together (duplicates, the
/// bundle's namespace), and packs each into a blob, a second batch on every core. Nothing
/// is written here, so a failure leaves the store as it was.
fn pack_blobs(sources: &[BundleSource], recipes: &[(usize, Recipe<'_>)]) -> Result<Vec<Vec<u8>>> {
    let checked = check_and_render(sources, recipes)?;
    let mut rendered = checked.rendered.into_iter();
    let file_sets: Vec<Files<'_>> = recipes
        .iter()
        .map(|(s, recipe)| {
            let source = &sources[*s];
            let files = match recipe {
                Recipe::Nothing => Files::default(),
                Recipe::Plain(variant) => plain_files(source, *variant, &checked.ids_of_file),
                Recipe::Kustomize(_) | Recipe::Helm(_) => rendered.next().expect("one rendering per such recipe"),
            };
            let objects: Vec<(&ObjectId, &str)> = files
                .iter()
                .flat_map(|(path, (_, ids))| ids.iter().map(move |id| (id, path.as_str())))
                .collect();
            check_objects(&objects, source.spec.namespace.as_deref()).map_err(|m| Error::source(&source.dir, m))?;
            Ok(files)
        })
        .collect::<Result<_>>()?;
    let blobs = parallel::map(&file_sets, |files| {
        let entries: BTreeMap<&str, &[u8]> = files.iter().map(|(rel, (b, _))| (rel.as_str(), &b[..])).collect();
        pack(&entries)
    });
    recipes
        .iter()
        .zip(blobs)
        .map(|((s, _), blob)| blob.map_err(|e| drover_agent::Error::io(&sources[*s].dir, e).into()))
        .collect()
}

/// The blobs of a publish: one reference per recipe, and the digests new to the store.
struct Blobs {
    refs: Vec<BlobRef>,
    written: Vec<Digest>,
}

/// Refuses a blob over `--max-bundle-size`, naming the directory it came from, and writes
/// the new ones (not on a dry run).
fn write_blobs(
    opts: &PublishOptions,
    sources: &[BundleSource],
    recipes: &[(usize, Recipe<'_>)],
    packed: Vec<Vec<u8>>,
) -> Result<Blobs> {
    let blob_dir = opts.store.join(BLOB_DIR);
    if !opts.dry_run {
        fsutil::ensure_dir(&blob_dir)?;
    }
    let mut blobs = Blobs {
        refs: Vec::with_capacity(packed.len()),
        written: Vec::new(),
    };
    for ((s, recipe), blob) in recipes.iter().zip(packed) {
        let source = &sources[*s];
        if blob.len() as u64 > opts.max_bundle_size {
            let from = match recipe {
                Recipe::Plain(Some(v)) => source.dir.join(v),
                Recipe::Kustomize(dir) => dir.clone(),
                _ => source.dir.clone(),
            };
            return Err(Error::source(
                from,
                format!(
                    "bundle {} is {} bytes compressed, over the --max-bundle-size of {} bytes",
                    source.name,
                    blob.len(),
                    opts.max_bundle_size
                ),
            ));
        }
        let (digest, size, new) = write_blob(&blob_dir, blob, opts.dry_run)?;
        if new && !blobs.written.contains(&digest) {
            blobs.written.push(digest.clone());
        }
        blobs.refs.push(BlobRef { digest, size });
    }
    Ok(blobs)
}

/// The index entry of one bundle, and how many of its targets reuse a blob already in the
/// store. `old` is the bundle in the previous index, for the previous blobs of a rollout.
fn index_bundle(
    source: &BundleSource,
    wanted: Vec<WantedTarget<'_>>,
    recipe_of: &[usize],
    blobs: &Blobs,
    old: Option<&Bundle>,
) -> (Bundle, usize) {
    let spec = &source.spec;
    // Only a rollout in progress needs previous blobs: at 100 % every cluster is in the wave.
    let old = old.filter(|_| spec.rollout.is_some_and(|r| r.percent < 100));
    let mut reused = 0;
    let mut targets = Vec::new();
    for ((cluster_selector, cluster_name, tspec), &r) in wanted.into_iter().zip(recipe_of) {
        let BlobRef { digest, size } = blobs.refs[r].clone();
        if !blobs.written.contains(&digest) {
            reused += 1;
        }
        let mut target = Target {
            cluster_selector,
            cluster_name,
            digest,
            size,
            previous: None,
            variant: tspec.and_then(TargetSpec::variant_name),
            do_not_deploy: tspec.is_some_and(|t| t.do_not_deploy),
        };
        target.previous = old.and_then(|old| previous_blob(old, &target));
        targets.push(target);
    }
    let bundle = Bundle {
        name: source.name.clone(),
        namespace: spec.namespace.clone(),
        depends_on: spec.depends_on.clone(),
        paused: spec.paused,
        rollout: spec.rollout,
        force: spec.force,
        keep_resources: spec.keep_resources,
        health_timeout_seconds: spec.health_timeout.map(|d| d.as_secs()),
        targets,
    };
    (bundle, reused)
}

/// Signs `index` with `sk` and writes it and its signature into the store, after every
/// blob it names.
fn write_signed_index(opts: &PublishOptions, sk: &minisign::SecretKey, index: &Index) -> Result<()> {
    let mut bytes = serde_json::to_vec_pretty(index).expect("index serialises: plain data");
    bytes.push(b'\n');
    let comment = format!("drover index channel={} version={}", opts.channel, index.version);
    let signature = minisign::sign(
        None,
        sk,
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
    crate::store_write::replace_index_files(&opts.store, &bytes, signature.into_string().as_bytes())
}

/// The files of one blob: relative path → bytes and the identities of its objects
/// (borrowed from the bundle source for plain bundles, which are most of the bytes).
type Files<'a> = BTreeMap<String, (Cow<'a, [u8]>, Cow<'a, [ObjectId]>)>;

/// The file set of a plain bundle for `variant`, with the identities its check found.
fn plain_files<'a>(
    source: &'a BundleSource,
    variant: Option<&PathBuf>,
    ids: &'a BTreeMap<PathBuf, Vec<ObjectId>>,
) -> Files<'a> {
    source
        .files_for(variant)
        .into_iter()
        .map(|(rel, bytes)| {
            let in_variant = variant.is_some_and(|v| source.variants.get(v).is_some_and(|f| f.contains_key(rel)));
            let origin = match variant {
                Some(v) if in_variant => source.dir.join(v).join(rel),
                _ => source.dir.join(rel),
            };
            let found = ids
                .get(&origin)
                .map_or(Cow::Owned(Vec::new()), |ids| Cow::Borrowed(&ids[..]));
            (rel.to_string(), (Cow::Borrowed(bytes), found))
        })
        .collect()
}

/// The blob clusters outside the rollout wave get for `new` (while its bundle rolls out,
/// below 100 %), from the same target (same
/// selector and name) of the bundle in the previous index: while a change rolls out, the
/// blob the whole fleet had before it. Re-publishing the same blob (raising the percent)
/// keeps the previous blob; a new blob after a complete rollout (100 %, not paused) makes
/// the old blob the previous one; a new blob in the middle of a rollout keeps the previous
/// blob, so an abandoned canary never becomes what the rest of the fleet falls back to.
fn previous_blob(old: &Bundle, new: &Target) -> Option<BlobRef> {
    if new.do_not_deploy {
        return None;
    }
    let same = old.targets.iter().find(|t| {
        t.cluster_selector == new.cluster_selector && t.cluster_name == new.cluster_name && !t.do_not_deploy
    })?;
    let old_was_complete = !old.paused && old.rollout.is_none_or(|r| r.percent >= 100);
    let previous = if same.digest != new.digest && old_was_complete {
        Some(BlobRef {
            digest: same.digest.clone(),
            size: same.size,
        })
    } else {
        same.previous.clone()
    };
    previous.filter(|p| p.digest != new.digest)
}

/// One piece of the work of publishing.
enum Job<'a> {
    /// Render a kustomization or a chart and check what it gives.
    Render(&'a BundleSource, &'a Recipe<'a>),
    /// Check one manifest file.
    Check(PathBuf, &'a [u8]),
}

/// The result of a [`Job`].
enum Done {
    /// The rendered files, checked.
    Rendered(Files<'static>),
    /// The identities of the objects of a checked file.
    Checked(Vec<ObjectId>),
}

impl Job<'_> {
    fn run(&self) -> Result<Done> {
        match self {
            Job::Render(source, recipe) => render(source, recipe).map(Done::Rendered),
            Job::Check(path, bytes) => check_manifest_file(path, bytes).map(Done::Checked),
        }
    }
}

/// File name of the rendered output of a kustomization inside a bundle blob.
pub const KUSTOMIZE_OUTPUT: &str = "kustomize.yaml";
/// File name of the HelmChart object inside a Helm chart bundle's blob.
pub const HELM_CHART_OUTPUT: &str = "helmchart.yaml";

/// Renders a kustomize or Helm recipe into one checked file.
fn render(source: &BundleSource, recipe: &Recipe<'_>) -> Result<Files<'static>> {
    let (name, bytes, origin) = match (recipe, &source.kind) {
        (Recipe::Kustomize(dir), _) => (KUSTOMIZE_OUTPUT, crate::kustomize::render(dir)?, dir.clone()),
        (Recipe::Helm(values), SourceKind::Helm(chart)) => {
            let ns = source
                .spec
                .namespace
                .as_deref()
                .unwrap_or(crate::helm::DEFAULT_TARGET_NAMESPACE);
            let object = chart.helm_chart_object(&source.name, ns, values);
            (HELM_CHART_OUTPUT, object.into_bytes(), source.dir.clone())
        }
        _ => unreachable!("only kustomize and Helm recipes are rendered"),
    };
    let what = format!("{} (rendered {name})", origin.display());
    let ids = check_manifest_file(Path::new(&what), &bytes)?;
    Ok([(name.to_string(), (Cow::Owned(bytes), Cow::Owned(ids)))].into())
}

/// Writes `blob` into `blob_dir` unless it is there already (or `dry_run`); returns its
/// digest, its size and whether it is new.
fn write_blob(blob_dir: &Path, blob: Vec<u8>, dry_run: bool) -> Result<(Digest, u64, bool)> {
    let digest = Digest::of(&blob);
    let path = blob_dir.join(digest.hex());
    let new = !path.exists();
    if new && !dry_run {
        fsutil::write_atomic(&path, &blob)?;
    }
    Ok((digest, blob.len() as u64, new))
}

fn read_bundle_sources(src: &Path) -> Result<Vec<BundleSource>> {
    let bundles_dir = src.join("bundles");
    let entries = std::fs::read_dir(&bundles_dir).map_err(|e| {
        // `drover publish src/bundles`: one level too deep.
        let hint = match (src.file_name(), src.parent()) {
            (Some(name), Some(parent)) if name == "bundles" => {
                let parent = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
                format!(
                    " (give the directory that holds bundles/: drover publish {})",
                    parent.display()
                )
            }
            _ => String::new(),
        };
        Error::source(&bundles_dir, format!("cannot read the bundles directory: {e}{hint}"))
    })?;
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

/// Refuses unknown `dependsOn` names and cycles at publish time, before anything is built
/// and before agents see them; the error names the `bundle.yaml` that declares the edge.
fn check_dependencies(sources: &[BundleSource]) -> Result<()> {
    let spec_path = |s: &BundleSource| s.dir.join(BUNDLE_FILE);
    for b in sources {
        for d in &b.spec.depends_on {
            if !sources.iter().any(|o| &o.name == d) {
                return Err(Error::source(
                    spec_path(b),
                    format!("dependsOn: no bundle named {d} (expected a directory bundles/{d}/)"),
                ));
            }
        }
    }
    // Depth-first search from each bundle; a path back to itself is a cycle.
    for start in sources {
        let mut stack = vec![(&start.name, vec![start.name.as_str()])];
        while let Some((name, path)) = stack.pop() {
            let Some(b) = sources.iter().find(|b| &b.name == name) else {
                continue;
            };
            for d in &b.spec.depends_on {
                let mut next = path.clone();
                next.push(d.as_str());
                if d == &start.name {
                    return Err(Error::source(
                        spec_path(start),
                        format!("dependsOn: cycle {}", next.join(" -> ")),
                    ));
                }
                if !path.contains(&d.as_str()) {
                    stack.push((d, next));
                }
            }
        }
    }
    Ok(())
}

/// Bundles in `previous` that no source provides any more.
fn removed_bundles(previous: Option<&Index>, sources: &[BundleSource]) -> Vec<BundleName> {
    let kept: std::collections::BTreeSet<&BundleName> = sources.iter().map(|s| &s.name).collect();
    previous
        .map(|p| {
            p.bundles
                .iter()
                .map(|b| &b.name)
                .filter(|n| !kept.contains(n))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// A store directory holds one channel: publishing another over it would replace it, and
/// every agent following the old channel would refuse the store from then on.
fn check_same_channel(opts: &PublishOptions, previous: Option<&Index>) -> Result<()> {
    match previous {
        Some(index) if index.channel != opts.channel && !opts.force => Err(Error::source(
            opts.store.join(INDEX_FILE),
            format!(
                "this store holds channel {:?}; publishing channel {:?} here would replace it, and every agent following {:?} would refuse the store. Use one store per channel (e.g. stores/{} and stores/{}), or --force to replace the channel",
                index.channel, opts.channel, index.channel, index.channel, opts.channel
            ),
        )),
        _ => Ok(()),
    }
}

/// The store's current index, or `None` for a new store. It is the publisher's own file,
/// read for its version (the next one is higher) and its targets' digests (the previous
/// blobs of a rollout). An unreadable one is an error rather than a silent restart at 1,
/// which every agent would refuse as a rollback.
fn previous_index(store: &Path) -> Result<Option<Index>> {
    let path = store.join(INDEX_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<Index>(&bytes).map(Some).map_err(|e| {
            Error::source(
                &path,
                format!("existing index is not readable ({e}); agents would refuse a restart at version 1"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(drover_agent::Error::io(&path, e).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_map(value: &str) -> String {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: default\ndata:\n  value: {value:?}\n")
    }

    /// A publish source with `bundles` (name, bundle.yaml or "", manifest), a fresh key and
    /// an empty store, all in one temporary directory.
    fn site(bundles: &[(&str, &str, &str)]) -> (tempfile::TempDir, PublishOptions) {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, spec, manifest) in bundles {
            write_bundle(dir.path(), name, spec, manifest);
        }
        let (key, _) = crate::keygen::keygen(&dir.path().join("keys")).expect("keygen");
        let opts = PublishOptions {
            src: dir.path().join("src"),
            store: dir.path().join("store"),
            key,
            channel: "stable".into(),
            expires_in: DEFAULT_EXPIRES_IN,
            max_bundle_size: DEFAULT_MAX_BUNDLE_SIZE,
            dry_run: false,
            force: false,
        };
        (dir, opts)
    }

    fn write_bundle(root: &Path, name: &str, spec: &str, manifest: &str) {
        let bundle = root.join("src/bundles").join(name);
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        std::fs::write(bundle.join("web.yaml"), manifest).expect("manifest");
        if !spec.is_empty() {
            std::fs::write(bundle.join(BUNDLE_FILE), spec).expect("bundle.yaml");
        }
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
    }

    #[test]
    fn writes_the_blob_and_a_signed_index_and_reuses_the_blob_on_republish() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let first = publish(&opts, now()).expect("first publish");
        assert_eq!((first.version, first.bundles, first.blobs_reused), (1, 1, 0));
        let digest = &first.index.bundles[0].targets[0].digest;
        assert_eq!(first.blobs_written, std::slice::from_ref(digest));
        assert!(opts.store.join(BLOB_DIR).join(digest.hex()).is_file());
        assert!(opts.store.join(INDEX_FILE).is_file());
        assert!(opts.store.join(drover_agent::format::SIGNATURE_FILE).is_file());
        assert_eq!(first.expires, now() + DEFAULT_EXPIRES_IN);

        let second = publish(&opts, now()).expect("second publish");
        assert_eq!(second.version, 2, "each publish raises the version");
        assert!(second.blobs_written.is_empty());
        assert_eq!(second.blobs_reused, 1);
        assert_eq!(
            &second.index.bundles[0].targets[0].digest, digest,
            "same input, same blob"
        );
    }

    #[test]
    fn a_dry_run_builds_and_describes_but_writes_nothing() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let opts = PublishOptions { dry_run: true, ..opts };
        let summary = publish(&opts, now()).expect("dry run");
        assert_eq!(summary.blobs_written.len(), 1, "the blob it would write");
        assert!(!opts.store.exists(), "nothing written, not even the store directory");
        assert!(
            summary.describe().contains("bundle web\n  targets[0] "),
            "{}",
            summary.describe()
        );
        assert!(summary.describe().contains(", new)"), "{}", summary.describe());
    }

    #[test]
    fn refuses_a_bundle_over_the_size_limit_and_writes_no_index() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let opts = PublishOptions {
            max_bundle_size: 10,
            ..opts
        };
        let err = publish(&opts, now()).expect_err("too large").to_string();
        assert!(err.contains("over the --max-bundle-size of 10 bytes"), "{err}");
        assert!(err.contains("bundles/web"), "names the bundle directory: {err}");
        assert!(!opts.store.join(INDEX_FILE).exists());
    }

    #[test]
    fn refuses_an_unknown_dependency_and_a_cycle_naming_the_bundle_yaml() {
        let (_dir, opts) = site(&[("a", "dependsOn: [missing]\n", &config_map("1"))]);
        let err = publish(&opts, now()).expect_err("unknown dependency").to_string();
        assert!(
            err.contains("a/bundle.yaml") && err.contains("dependsOn: no bundle named missing"),
            "{err}"
        );

        let (_dir, opts) = site(&[
            ("a", "dependsOn: [b]\n", &config_map("1")),
            ("b", "dependsOn: [a]\n", &config_map("2")),
        ]);
        let err = publish(&opts, now()).expect_err("cycle").to_string();
        assert!(err.contains("dependsOn: cycle a -> b -> a"), "{err}");
    }

    #[test]
    fn an_unreadable_previous_index_is_an_error_not_a_restart_at_version_one() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        std::fs::create_dir_all(&opts.store).expect("store");
        std::fs::write(opts.store.join(INDEX_FILE), "{ not json").expect("junk index");
        let err = publish(&opts, now()).expect_err("junk index").to_string();
        assert!(err.contains("agents would refuse a restart at version 1"), "{err}");
        assert_eq!(previous_index(&opts.src).expect("no index there"), None);
    }

    #[test]
    fn a_bundle_without_targets_gets_one_implicit_every_cluster_target() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let sources = read_bundle_sources(&opts.src).expect("sources");
        let wanted = wanted_targets(&sources);
        assert_eq!(wanted.len(), 1);
        assert!(matches!(&wanted[0][..], [(Some(sel), None, None)] if *sel == LabelSelector::default()));
    }

    #[test]
    fn targets_with_the_same_recipe_share_one_blob() {
        let spec = "targets:\n  - clusterSelector: {matchLabels: {env: prod}}\n  - clusterSelector: {matchLabels: {env: lab}}\n";
        let (_dir, opts) = site(&[("web", spec, &config_map("1"))]);
        let sources = read_bundle_sources(&opts.src).expect("sources");
        let wanted = wanted_targets(&sources);
        let recipes = distinct_recipes(&sources, &wanted);
        assert_eq!(recipes.recipes.len(), 1);
        assert_eq!(recipes.of_target, [vec![0, 0]]);
        let summary = publish(&opts, now()).expect("publish");
        let targets = &summary.index.bundles[0].targets;
        assert_eq!(targets.len(), 2);
        assert_eq!(targets[0].digest, targets[1].digest);
        assert_eq!(summary.blobs_written.len(), 1);
    }

    #[test]
    fn a_rollout_keeps_what_the_fleet_had_before_it_as_the_previous_blob() {
        let (dir, opts) = site(&[("web", "", &config_map("1"))]);
        let v1 = publish(&opts, now()).expect("v1, complete");
        let before = v1.index.bundles[0].targets[0].digest.clone();

        write_bundle(dir.path(), "web", "rollout: {percent: 10}\n", &config_map("2"));
        let v2 = publish(&opts, now()).expect("v2, canary");
        let canary = &v2.index.bundles[0].targets[0];
        assert_ne!(canary.digest, before);
        assert_eq!(canary.previous.as_ref().map(|p| &p.digest), Some(&before));

        // A new blob in the middle of the rollout: the abandoned canary does not become
        // what the rest of the fleet falls back to.
        write_bundle(dir.path(), "web", "rollout: {percent: 50}\n", &config_map("3"));
        let v3 = publish(&opts, now()).expect("v3, another canary");
        assert_eq!(
            v3.index.bundles[0].targets[0].previous.as_ref().map(|p| &p.digest),
            Some(&before)
        );

        // At 100 % every cluster is in the wave: no previous blob.
        write_bundle(dir.path(), "web", "rollout: {percent: 100}\n", &config_map("3"));
        let v4 = publish(&opts, now()).expect("v4, complete");
        assert_eq!(v4.index.bundles[0].targets[0].previous, None);
    }

    #[test]
    fn an_empty_channel_name_is_refused() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let opts = PublishOptions {
            channel: String::new(),
            ..opts
        };
        let err = publish(&opts, now()).expect_err("empty channel").to_string();
        assert!(err.contains("channel name must not be empty"), "{err}");
    }

    #[test]
    fn refuses_to_publish_another_channel_over_a_store_unless_forced() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        publish(&opts, now()).expect("stable");
        let canary = PublishOptions {
            channel: "canary".into(),
            ..opts.clone()
        };
        let before = std::fs::read(opts.store.join(INDEX_FILE)).expect("index");
        let err = publish(&canary, now()).expect_err("other channel").to_string();
        assert!(err.contains("this store holds channel \"stable\""), "{err}");
        assert!(
            err.contains("one store per channel") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(opts.store.join(INDEX_FILE)).expect("index"),
            before,
            "index untouched"
        );
        let forced = PublishOptions { force: true, ..canary };
        assert_eq!(publish(&forced, now()).expect("forced").index.channel, "canary");
    }

    #[test]
    fn a_source_one_level_too_deep_suggests_its_parent() {
        let (_dir, opts) = site(&[("web", "", &config_map("1"))]);
        let opts = PublishOptions {
            src: opts.src.join("bundles"),
            ..opts
        };
        let err = publish(&opts, now()).expect_err("too deep").to_string();
        let parent = opts.src.parent().expect("parent").display().to_string();
        assert!(err.contains(&format!("drover publish {parent}")), "{err}");
    }

    #[test]
    fn a_publish_lists_the_bundles_it_drops() {
        let (dir, opts) = site(&[("web", "", &config_map("1")), ("shop-config", "", &config_map("2"))]);
        assert!(publish(&opts, now()).expect("v1").removed.is_empty());
        std::fs::remove_dir_all(dir.path().join("src/bundles/shop-config")).expect("remove");
        let removed = publish(&opts, now()).expect("v2").removed;
        assert_eq!(
            removed.iter().map(BundleName::as_str).collect::<Vec<_>>(),
            ["shop-config"]
        );
    }
}
