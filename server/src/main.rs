//! `drover`: the publisher CLI. Thin: parse flags, call the library, map errors to exit
//! codes (0 success, 1 failure, 2 usage). `drover status` refines them: 1 means the fleet
//! needs attention, 3 that no fleet view could be made (see docs/fleet-status.md).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use drover::fleet_status;
use drover::publish::{PublishOptions, DEFAULT_EXPIRES_IN, DEFAULT_MAX_BUNDLE_SIZE};
use drover::sync::{ExistingBlobs, Overwrite, Progress, SyncOptions};
use drover_agent::config::{parse_duration, parse_label, parse_size};
use drover_agent::select::Cluster;
use time::OffsetDateTime;

#[derive(Parser)]
#[command(name = "drover", version, about = "Publish, verify and serve signed drover stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How `oci://` stores are reached (for `drover sync`).
#[derive(clap::Args)]
struct RegistryFlags {
    /// Plain HTTP to the registry (no TLS), for registries on a trusted network.
    #[arg(long)]
    insecure: bool,
    /// Registry user name (basic auth, or for the registry's token service).
    #[arg(long, value_name = "USER", env = "DROVER_REGISTRY_USERNAME")]
    username: Option<String>,
    /// File holding the registry password or token (or set DROVER_REGISTRY_PASSWORD).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// docker config.json to take registry credentials from (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    registry_config: Option<PathBuf>,
    /// Extra CA certificates (PEM) to trust for the registry.
    #[arg(long, value_name = "FILE")]
    ca_file: Option<PathBuf>,
    /// Client certificate and key (one PEM file) for registries that require mutual TLS.
    #[arg(long, value_name = "FILE")]
    client_cert: Option<PathBuf>,
}

impl RegistryFlags {
    fn options(self) -> anyhow::Result<drover_agent::oci::RegistryOptions> {
        let password = match &self.password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--password-file {}", path.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => std::env::var("DROVER_REGISTRY_PASSWORD").ok(),
        };
        Ok(drover_agent::oci::RegistryOptions {
            insecure: self.insecure,
            username: self.username,
            password: password.map(Into::into),
            docker_config: self.registry_config,
            ca_file: self.ca_file,
            client_identity: self.client_cert,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Make a minisign key pair: DIR/drover.key (secret, unencrypted) and DIR/drover.pub.
    Keygen(KeygenArgs),
    /// Build SRC/bundles/<name>/ into signed, content-addressed STORE files.
    Publish(PublishArgs),
    /// Check a store's signature, expiry and every referenced blob.
    Verify(VerifyArgs),
    /// Copy a store: the blobs DST lacks first, then index.json, then its signature, so a
    /// reader of DST never sees a half-written store. A failed or interrupted sync leaves
    /// DST valid at its old version; running it again completes it.
    Sync(SyncArgs),
    /// Serve a store directory over HTTP (ETag, 304 on If-None-Match).
    Serve(ServeArgs),
    /// Show which bundle and digest a cluster would get, and why.
    Targets(TargetsArgs),
    /// What changes between two stores (e.g. the published one and a new one): per bundle,
    /// the settings and the targets whose blob changes. Indexes are read, not verified.
    Diff(DiffArgs),
    /// Print the k3s add-on (manifests/drover.yaml) with this cluster's values filled in:
    /// `drover addon … > /var/lib/rancher/k3s/server/manifests/drover.yaml` installs the agent.
    Addon(AddonArgs),
    /// Build the agent's OCI image (static binary, CA bundle, non-root user 65532) without
    /// Docker, into an OCI layout directory and/or a registry. Same input, same digest.
    Image(ImageArgs),
    /// Fleet view from the agents' status reports: clusters per bundle, digest and state,
    /// stale clusters, bundle errors. Exit 0: all well; 1: something needs attention; 3: no
    /// view (source unreadable or empty).
    Status(StatusArgs),
}

/// Flags of `drover keygen`.
#[derive(clap::Args)]
struct KeygenArgs {
    /// Directory for the key files.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Flags of `drover publish`.
#[derive(clap::Args)]
struct PublishArgs {
    /// Directory holding bundles/<name>/.
    src: PathBuf,
    /// Store directory to write (created if missing).
    #[arg(long, value_name = "DIR")]
    store: PathBuf,
    /// Secret key (drover keygen, or minisign -G -W).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Channel name written into the index.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// How long agents accept this index (e.g. 30d, 12h, 2w; default 30d). Re-publish before
    /// it runs out.
    #[arg(long, value_name = "DURATION", value_parser = parse_expiry)]
    expires_in: Option<Duration>,
    /// Largest bundle blob accepted (compressed), e.g. 32MiB (default), 500KiB, 1048576.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_bundle_size: Option<u64>,
    /// Build and check every bundle and print what would be published; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Publish even though the store holds another channel's index (replacing that channel).
    #[arg(long)]
    force: bool,
}

/// Flags of `drover verify`.
#[derive(clap::Args)]
struct VerifyArgs {
    /// Store directory, or http(s):// / file:// URL.
    store: String,
    /// Trusted public key; repeat for several.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
}

/// Flags of `drover sync`.
#[derive(clap::Args)]
struct SyncArgs {
    /// Source: store directory, http(s):// or file:// URL, or oci://HOST[:PORT]/REPO:CHANNEL.
    src: String,
    /// Destination: store directory (created if missing, not its parents), file:// URL, or
    /// oci://HOST[:PORT]/REPO:CHANNEL.
    dst: String,
    /// Trusted public key; repeat for several. With it, the source index and every blob
    /// are verified before anything is written; without it the copy is unverified.
    #[arg(long = "key", value_name = "FILE")]
    keys: Vec<PathBuf>,
    /// Say what would be copied; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace DST's index even when it is newer, conflicts, is of another channel or is
    /// unreadable (agents that took a newer version will refuse the older one).
    #[arg(long)]
    force: bool,
    /// Re-hash the blobs already in DST and copy corrupt ones again (default: a blob of
    /// the right size is taken as present).
    #[arg(long)]
    verify_existing: bool,
    /// Blobs copied at once (default: 4 from http(s)://, 1 from a directory).
    #[arg(long, value_name = "N")]
    jobs: Option<std::num::NonZeroUsize>,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// Flags of `drover serve`.
#[derive(clap::Args)]
struct ServeArgs {
    /// Store directory.
    store: PathBuf,
    /// Address to listen on; port 0 picks a free port (the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

/// Flags of `drover targets`.
#[derive(clap::Args)]
struct TargetsArgs {
    /// Store directory, or http(s):// / file:// URL.
    store: String,
    /// Trusted public key; repeat for several.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// The cluster's name.
    #[arg(long)]
    cluster_name: String,
    /// A cluster label KEY=VALUE; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
}

/// Flags of `drover diff`.
#[derive(clap::Args)]
struct DiffArgs {
    /// The store before: directory, or http(s):// / file:// / oci:// URL.
    store_a: String,
    /// The store after.
    store_b: String,
}

/// Flags of `drover addon`.
#[derive(clap::Args)]
struct AddonArgs {
    /// Store URL the agent reads (http(s)://, file://, oci://); repeat for mirrors.
    #[arg(long = "source", value_name = "URL", required = true)]
    sources: Vec<String>,
    /// Trusted minisign public key file, embedded in the add-on; repeat for several.
    #[arg(long = "key", value_name = "FILE", required = true)]
    keys: Vec<PathBuf>,
    /// This cluster's name.
    #[arg(long, value_name = "NAME")]
    cluster_name: String,
    /// A cluster label KEY=VALUE; repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Agent image (default: the shipped drover-agent:VERSION, as loaded from the air-gap tarball).
    #[arg(long, value_name = "REF")]
    image: Option<String>,
    /// Least privilege: write access only in these namespaces (comma-separated) and drover-system, instead of cluster-wide; the agent's allow-list (allowNamespaces) gets the same namespaces.
    #[arg(long, value_name = "NS,…", value_delimiter = ',')]
    namespaces: Vec<String>,
}

/// Flags of `drover image`.
#[derive(clap::Args)]
struct ImageArgs {
    /// The static drover-agent binary (bash tests/build-static.sh prints its path).
    #[arg(long, value_name = "FILE")]
    binary: PathBuf,
    /// Image tag.
    #[arg(long, value_name = "TAG", default_value = env!("CARGO_PKG_VERSION"))]
    tag: String,
    /// PEM CA bundle to include.
    #[arg(long, value_name = "FILE", default_value = drover::image::DEFAULT_CA_BUNDLE)]
    ca_bundle: PathBuf,
    /// Write an OCI image layout here (then e.g. `skopeo copy oci:DIR:TAG docker-archive:…`).
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// Push to this repository, HOST[:PORT]/REPO, under the tag.
    #[arg(long, value_name = "HOST/REPO")]
    push: Option<String>,
    #[command(flatten)]
    registry: RegistryFlags,
}

/// Flags of `drover status`.
#[derive(clap::Args)]
struct StatusArgs {
    /// Report directory, or http(s):// URL of a directory listing (nginx autoindex).
    source: String,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// A cluster is stale when its last check-in is older than this (e.g. 15m, 2h, 1d).
    /// Default per report: its heartbeat (reportIntervalSeconds, else 10m) + 3 × its
    /// intervalSeconds, at least 5m; 13m for agents with default settings.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    stale_after: Option<Duration>,
    /// Measure staleness against this RFC 3339 time instead of the clock (tests).
    #[arg(long, hide = true, value_parser = parse_time)]
    now: Option<OffsetDateTime>,
}

/// Output formats of `drover status`.
#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// The whole aggregation, for scripts.
    Json,
}

fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("drover: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Dispatches one subcommand to its module: `drover::<command>::run`.
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Keygen(a) => drover::keygen::run(&a.out)?,
        Command::Publish(a) => drover::publish::run(&a.options(), now)?,
        Command::Verify(a) => drover::verify::run(&a.store, &a.keys, now)?,
        Command::Sync(a) => {
            let opts = a.options(now);
            let registry = a.registry.options()?;
            drover::sync::run(&a.src, &a.dst, &registry, &opts, a.dry_run)?;
        }
        Command::Serve(a) => drover::serve::run(a.store, &a.listen)?,
        Command::Targets(a) => {
            let cluster = Cluster {
                name: a.cluster_name,
                labels: a.labels.into_iter().collect(),
            };
            drover::targets::run(&a.store, &a.keys, &cluster, now)?;
        }
        Command::Diff(a) => drover::diff::run(&a.store_a, &a.store_b)?,
        Command::Addon(a) => drover::addon::run(&a.options())?,
        Command::Image(a) => {
            let (input, to) = a.into_parts()?;
            drover::image::run(&input, &to)?;
        }
        Command::Status(a) => {
            let (format, opts) = a.options(now);
            return Ok(ExitCode::from(fleet_status::run(&a.source, format, &opts)?));
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl PublishArgs {
    fn options(self) -> PublishOptions {
        PublishOptions {
            src: self.src,
            store: self.store,
            key: self.key,
            channel: self.channel,
            expires_in: self.expires_in.unwrap_or(DEFAULT_EXPIRES_IN),
            max_bundle_size: self.max_bundle_size.unwrap_or(DEFAULT_MAX_BUNDLE_SIZE),
            dry_run: self.dry_run,
            force: self.force,
        }
    }
}

impl SyncArgs {
    fn options(&self, now: OffsetDateTime) -> SyncOptions {
        SyncOptions {
            overwrite: if self.force {
                Overwrite::Force
            } else {
                Overwrite::Refuse
            },
            existing: if self.verify_existing {
                ExistingBlobs::Rehash
            } else {
                ExistingBlobs::CheckSize
            },
            jobs: self.jobs,
            progress: if std::io::stderr().is_terminal() {
                Progress::Bar
            } else {
                Progress::Quiet
            },
            now,
            keys: self.keys.clone(),
        }
    }
}

impl AddonArgs {
    fn options(self) -> drover::addon::AddonOptions {
        drover::addon::AddonOptions {
            sources: self.sources,
            keys: self.keys,
            cluster_name: self.cluster_name,
            labels: self.labels.into_iter().collect(),
            image: self.image,
            namespaces: self.namespaces,
        }
    }
}

impl ImageArgs {
    /// What to build and where it goes; the registry credentials are read only for a push.
    fn into_parts(self) -> anyhow::Result<(drover::image::ImageInput, drover::image::ImageDestinations)> {
        anyhow::ensure!(
            self.layout.is_some() || self.push.is_some(),
            "say where the image goes: --layout DIR and/or --push HOST/REPO"
        );
        let push = match self.push {
            Some(repository) => Some((repository, self.registry.options()?)),
            None => None,
        };
        let input = drover::image::ImageInput {
            binary: self.binary,
            ca_bundle: self.ca_bundle,
            tag: self.tag,
        };
        Ok((
            input,
            drover::image::ImageDestinations {
                layout: self.layout,
                push,
            },
        ))
    }
}

impl StatusArgs {
    fn options(&self, now: OffsetDateTime) -> (fleet_status::Format, fleet_status::Options) {
        let format = match self.output {
            Output::Table => fleet_status::Format::Table,
            Output::Json => fleet_status::Format::Json,
        };
        let opts = fleet_status::Options {
            now: self.now.unwrap_or(now),
            stale_after: self.stale_after,
        };
        (format, opts)
    }
}

/// `--expires-in`: a duration longer than zero (an index that expires as it is written
/// would be refused by every agent).
fn parse_expiry(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?}: an index must stay valid for longer than 0 (e.g. 30d)")),
        d => Ok(d),
    }
}
