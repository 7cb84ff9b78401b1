//! Agent configuration: command-line flags and an optional YAML `--config` file are
//! merged into one validated [`AgentConfig`] before anything runs. Flags win over the
//! file; list flags given on the command line replace the file's list; labels merge per key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::select::Cluster;
use crate::sink::Sink;
use crate::source::{self, Source};
use crate::verify::TrustedKeys;

/// Default interval between cycles in daemon mode.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Default random spread of the interval, in percent either way.
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
/// Default cap of the retry delay while no source gives a valid index.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Default bound of the blob cache (blobs in use are kept regardless).
pub const DEFAULT_CACHE_BYTES: u64 = 512 << 20;
/// Default address of the local listener (metrics, health, sync trigger).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
/// Default longest time between two status reports when nothing changes.
pub const DEFAULT_REPORT_INTERVAL: Duration = Duration::from_secs(600);

/// Command-line flags of `drover-agent`.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "drover-agent",
    version,
    about = "Pull a signed drover store and apply it to this k3s cluster"
)]
pub struct Flags {
    /// YAML file with the same settings under camelCase keys (sources, keys, clusterName, labels, sink, stateDir, interval, …; see docs/operations.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store to read: http(s)://HOST/PATH, file:///PATH or oci://HOST[:PORT]/REPO:CHANNEL. Repeat for several; the highest verified version wins.
    #[arg(long = "source", value_name = "URL")]
    pub sources: Vec<String>,
    /// Trusted minisign public key file. Repeat to trust several (key rotation).
    #[arg(long = "key", value_name = "FILE")]
    pub keys: Vec<PathBuf>,
    /// This cluster's name (matched by clusterName targets, substituted for ${cluster.name}).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
    /// A cluster label KEY=VALUE (matched by clusterSelector). Repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Where manifests go: dir:PATH (a k3s auto-deploy manifests directory) or kube[:KUBECONFIG] (the Kubernetes API; docs/kube-sink.md).
    #[arg(long, value_name = "SINK")]
    pub sink: Option<String>,
    /// Directory for the agent's state (last applied version, per-bundle results, blob cache).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run one cycle and exit: 0 when every targeted bundle is in place, 1 when a bundle
    /// failed, 3 when the index could not be used (nothing changed), 2 on bad configuration.
    #[arg(long)]
    pub once: bool,
    /// Interval between cycles without --once, e.g. 60s, 5m.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// Random spread of each interval, in percent either way (0 to 50; default 10).
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(0..=50))]
    pub interval_jitter: Option<u8>,
    /// Longest wait between retries while no source gives a valid index (default 5m).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_backoff: Option<Duration>,
    /// Time allowed to connect to a source (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Option<Duration>,
    /// Time allowed between two reads of a response (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub read_timeout: Option<Duration>,
    /// Time allowed for a whole index or signature request (default 60s).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// Time allowed for a whole blob download (default 1h).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub blob_timeout: Option<Duration>,
    /// Largest accepted index.json, e.g. 8MiB (default).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_index_size: Option<u64>,
    /// Largest accepted index.json.minisig, e.g. 16KiB (default).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_signature_size: Option<u64>,
    /// Bound of the blob cache in the state directory, e.g. 512MiB (default); blobs in use are always kept.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: Option<u64>,
    /// Local listener for /metrics, /healthz, /readyz and POST /sync: ADDR:PORT or "off" (default 127.0.0.1:9090).
    #[arg(long, value_name = "ADDR|off")]
    pub listen: Option<String>,
    /// Log format on stderr: text (default) or json.
    #[arg(long, value_name = "FORMAT", value_parser = ["text", "json"])]
    pub log_format: Option<String>,
    /// Base URL to PUT this cluster's status report to, as URL/<cluster-name>.json (WebDAV, nginx dav_methods PUT).
    #[arg(long, value_name = "URL")]
    pub report_url: Option<String>,
    /// Longest time between two reports when nothing changes (default 10m); a change is reported at once.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub report_interval: Option<Duration>,
    /// oci:// sources: a docker config.json (or mounted dockerconfigjson Secret) with registry credentials.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
    /// oci:// sources: user name for the registry (basic auth or its token service).
    #[arg(long, value_name = "USER")]
    pub registry_username: Option<String>,
    /// oci:// sources: file holding the registry password or token.
    #[arg(long, value_name = "FILE")]
    pub registry_password_file: Option<PathBuf>,
    /// oci:// sources: extra CA certificates (PEM) to trust.
    #[arg(long, value_name = "FILE")]
    pub registry_ca_file: Option<PathBuf>,
    /// oci:// sources: client certificate and key (one PEM file) for mutual TLS.
    #[arg(long, value_name = "FILE")]
    pub registry_client_cert: Option<PathBuf>,
    /// oci:// sources: talk plain HTTP to the registry (a registry without TLS on a trusted network).
    #[arg(long)]
    pub insecure_registry: bool,
    /// https:// sources and the report URL: extra CA certificates (PEM bundle) to trust besides the built-in roots
    /// (default: $SSL_CERT_FILE when set, as in the agent image).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Least privilege: apply objects only in this namespace. Repeat for several. A bundle
    /// with any object elsewhere (or cluster-scoped, unless --allow-cluster-scoped) is refused whole.
    #[arg(long = "allow-namespace", value_name = "NAMESPACE")]
    pub allow_namespaces: Vec<String>,
    /// With --allow-namespace: also allow cluster-scoped objects (ClusterRoles, CRDs, Namespaces, …).
    #[arg(long)]
    pub allow_cluster_scoped: bool,
    /// Accept only indexes of this channel. Without it the agent keeps to the channel it
    /// last applied (set this to move a cluster to another channel).
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,
}

/// The YAML `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    sources: Vec<String>,
    #[serde(default)]
    keys: Vec<PathBuf>,
    cluster_name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    sink: Option<String>,
    state_dir: Option<PathBuf>,
    interval: Option<String>,
    interval_jitter: Option<u8>,
    max_backoff: Option<String>,
    connect_timeout: Option<String>,
    read_timeout: Option<String>,
    request_timeout: Option<String>,
    blob_timeout: Option<String>,
    max_index_size: Option<String>,
    max_signature_size: Option<String>,
    cache_size: Option<String>,
    listen: Option<String>,
    log_format: Option<String>,
    report_url: Option<String>,
    report_interval: Option<String>,
    #[serde(default)]
    registry: FileRegistry,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    allow_namespaces: Vec<String>,
    allow_cluster_scoped: Option<bool>,
    channel: Option<String>,
}

/// The `registry:` section of the config file (for oci:// sources).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileRegistry {
    config: Option<PathBuf>,
    username: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
}

/// Where and how often the status report is sent.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    /// Base URL; the report goes to `<url>/<cluster-name>.json`.
    pub url: url::Url,
    /// Longest time between two reports when nothing changes.
    pub interval: Duration,
}

/// A validated configuration: every source parsed, every key loaded.
#[derive(Debug)]
pub struct AgentConfig {
    /// Sources in priority order.
    pub sources: Vec<Source>,
    /// Trusted keys.
    pub keys: TrustedKeys,
    /// This cluster.
    pub cluster: Cluster,
    /// Where manifests go.
    pub sink: Sink,
    /// State directory.
    pub state_dir: PathBuf,
    /// Run a single cycle.
    pub once: bool,
    /// Interval between cycles in daemon mode.
    pub interval: Duration,
    /// Random spread of each interval, in percent either way.
    pub jitter_percent: u8,
    /// Cap of the retry delay while no source gives a valid index.
    pub max_backoff: Duration,
    /// Bound of the blob cache, in bytes.
    pub cache_bytes: u64,
    /// Local listener address; `None` when turned off.
    pub listen: Option<SocketAddr>,
    /// JSON logs instead of text.
    pub log_json: bool,
    /// Where status reports go, if anywhere.
    pub report: Option<ReportConfig>,
    /// How oci:// sources reach their registries.
    pub registry: crate::oci::RegistryOptions,
    /// Limits applied while reading sources.
    pub source_limits: source::Limits,
    /// Limits applied while rendering bundles.
    pub render_limits: crate::render::Limits,
    /// The namespace allow-list; `None` when every namespace is allowed.
    pub allow: Option<crate::allow::AllowList>,
    /// The channel indexes must belong to; `None`: the one last applied, if any.
    pub channel: Option<String>,
}

impl AgentConfig {
    /// Merges flags over the config file they name and validates the result.
    pub fn from_flags(flags: Flags) -> Result<Self> {
        let file = match &flags.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                serde_norway::from_str::<FileConfig>(&text)
                    .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        let pick = |cli: Vec<String>, file: Vec<String>| if cli.is_empty() { file } else { cli };
        let source_specs = pick(flags.sources, file.sources);
        let key_paths = if flags.keys.is_empty() { file.keys } else { flags.keys };
        let mut labels = file.labels;
        labels.extend(flags.labels);
        let name = flags
            .cluster_name
            .or(file.cluster_name)
            .ok_or_else(|| Error::Config("--cluster-name (or clusterName) is required".into()))?;
        if name.is_empty() {
            return Err(Error::Config("cluster name must not be empty".into()));
        }
        if source_specs.is_empty() {
            return Err(Error::Config("at least one --source (or sources) is required".into()));
        }
        let defaults = source::Limits::default();
        let source_limits = source::Limits {
            max_index_bytes: size_setting(
                "maxIndexSize",
                flags.max_index_size,
                file.max_index_size,
                defaults.max_index_bytes,
            )?,
            max_signature_bytes: size_setting(
                "maxSignatureSize",
                flags.max_signature_size,
                file.max_signature_size,
                defaults.max_signature_bytes,
            )?,
            connect_timeout: duration_setting(
                "connectTimeout",
                flags.connect_timeout,
                file.connect_timeout,
                defaults.connect_timeout,
            )?,
            read_timeout: duration_setting(
                "readTimeout",
                flags.read_timeout,
                file.read_timeout,
                defaults.read_timeout,
            )?,
            request_timeout: duration_setting(
                "requestTimeout",
                flags.request_timeout,
                file.request_timeout,
                defaults.request_timeout,
            )?,
            blob_timeout: duration_setting(
                "blobTimeout",
                flags.blob_timeout,
                file.blob_timeout,
                defaults.blob_timeout,
            )?,
            extra_roots: match flags.ca_file.or(file.ca_file).or_else(ssl_cert_file) {
                Some(path) => {
                    let pem = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
                    let certs = reqwest::Certificate::from_pem_bundle(&pem)
                        .map_err(|e| Error::Config(format!("caFile {}: not a PEM CA bundle: {e}", path.display())))?;
                    if certs.is_empty() {
                        return Err(Error::Config(format!(
                            "caFile {}: no certificate in it",
                            path.display()
                        )));
                    }
                    certs
                }
                None => Vec::new(),
            },
        };
        let password_file = flags.registry_password_file.or(file.registry.password_file);
        let password = match &password_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| Error::io(path, e))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
            ),
            None => None,
        };
        let registry = crate::oci::RegistryOptions {
            insecure: flags.insecure_registry || file.registry.insecure,
            username: flags.registry_username.or(file.registry.username),
            password,
            docker_config: flags.registry_config.or(file.registry.config),
            ca_file: flags.registry_ca_file.or(file.registry.ca_file).or_else(ssl_cert_file),
            client_identity: flags.registry_client_cert.or(file.registry.client_cert),
        };
        let sources = source_specs
            .iter()
            .map(|s| Source::parse_with(s, &source_limits, &registry))
            .collect::<Result<_>>()?;
        let sink = Sink::parse(&flags.sink.or(file.sink).ok_or_else(|| {
            Error::Config("--sink (or sink) is required, e.g. dir:/var/lib/rancher/k3s/server/manifests".into())
        })?)?;
        let state_dir = flags
            .state_dir
            .or(file.state_dir)
            .ok_or_else(|| Error::Config("--state-dir (or stateDir) is required".into()))?;
        let interval = duration_setting("interval", flags.interval, file.interval, DEFAULT_INTERVAL)?;
        if interval.is_zero() {
            return Err(Error::Config("interval must be more than 0s".into()));
        }
        let jitter_percent = flags
            .interval_jitter
            .or(file.interval_jitter)
            .unwrap_or(DEFAULT_JITTER_PERCENT);
        if jitter_percent > 50 {
            return Err(Error::Config(format!(
                "intervalJitter: {jitter_percent} is over 50 (percent)"
            )));
        }
        let listen = match flags.listen.or(file.listen).as_deref().unwrap_or(DEFAULT_LISTEN) {
            "off" | "" => None,
            addr => Some(
                addr.parse::<SocketAddr>()
                    .map_err(|e| Error::Config(format!("listen: {addr:?} is not ADDR:PORT or off ({e})")))?,
            ),
        };
        let log_json = match flags.log_format.or(file.log_format).as_deref() {
            None | Some("text") => false,
            Some("json") => true,
            Some(other) => return Err(Error::Config(format!("logFormat: {other:?} is not text or json"))),
        };
        let report = match flags.report_url.or(file.report_url) {
            Some(spec) => {
                let url = url::Url::parse(&spec)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https"))
                    .ok_or_else(|| Error::Config(format!("reportUrl: {spec:?} is not an http(s) URL")))?;
                let interval = duration_setting(
                    "reportInterval",
                    flags.report_interval,
                    file.report_interval,
                    DEFAULT_REPORT_INTERVAL,
                )?;
                Some(ReportConfig { url, interval })
            }
            None => None,
        };
        let allow_namespaces = pick(flags.allow_namespaces, file.allow_namespaces);
        let allow_cluster_scoped = flags.allow_cluster_scoped || file.allow_cluster_scoped.unwrap_or(false);
        let allow = if allow_namespaces.is_empty() {
            if allow_cluster_scoped {
                return Err(Error::Config(
                    "allowClusterScoped only makes sense with allowNamespaces (--allow-namespace); \
                     without an allow-list everything is allowed"
                        .into(),
                ));
            }
            None
        } else {
            Some(crate::allow::AllowList::new(allow_namespaces, allow_cluster_scoped)?)
        };
        Ok(AgentConfig {
            sources,
            keys: TrustedKeys::load(&key_paths)?,
            cluster: Cluster { name, labels },
            sink,
            state_dir,
            once: flags.once,
            interval,
            jitter_percent,
            max_backoff: duration_setting("maxBackoff", flags.max_backoff, file.max_backoff, DEFAULT_MAX_BACKOFF)?,
            cache_bytes: size_setting("cacheSize", flags.cache_size, file.cache_size, DEFAULT_CACHE_BYTES)?,
            listen,
            log_json,
            report,
            registry,
            source_limits,
            render_limits: crate::render::Limits::default(),
            allow,
            channel: flags.channel.or(file.channel),
        })
    }
}

/// `$SSL_CERT_FILE`, the conventional variable naming a PEM CA bundle (the agent image sets
/// it to the bundle it carries): extra roots when no flag or config key names a CA file.
/// Unlike a configured file, one that does not exist is skipped: the variable is often set
/// machine-wide (an environment inherited into a chroot or a container that lacks the file).
fn ssl_cert_file() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.exists())
}

/// A duration from the flag, else the config file (named `key` in errors), else `default`.
fn duration_setting(key: &str, flag: Option<Duration>, file: Option<String>, default: Duration) -> Result<Duration> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(s)) => parse_duration(&s).map_err(|e| Error::Config(format!("{key}: {e}"))),
        (None, None) => Ok(default),
    }
}

/// A byte size from the flag, else the config file (named `key` in errors), else `default`.
fn size_setting(key: &str, flag: Option<u64>, file: Option<String>, default: u64) -> Result<u64> {
    match (flag, file) {
        (Some(n), _) => Ok(n),
        (None, Some(s)) => parse_size(&s).map_err(|e| Error::Config(format!("{key}: {e}"))),
        (None, None) => Ok(default),
    }
}

/// Parses a byte size: `4096`, `16KiB`, `8MiB`, `2GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 4096, 16KiB, 8MiB, 1GiB"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("{s:?}: unit must be one of B, KiB, MiB, GiB, KB, MB, GB")),
    };
    n.checked_mul(factor).ok_or_else(|| format!("{s:?} is too large"))
}

/// Parses `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses a duration such as `500ms`, `90s`, `5m`, `12h`, `30d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m, 12h, 30d"))?;
    if unit == "ms" {
        return Ok(Duration::from_millis(n));
    }
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{s:?}: unit must be one of ms, s, m, h, d, w")),
    };
    n.checked_mul(secs)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_the_documented_units() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("d").is_err());
        assert!(parse_duration("3y").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("16KiB"), Ok(16 << 10));
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("3PiB").is_err());
    }

    #[test]
    fn labels_need_a_key_and_an_equals_sign() {
        assert_eq!(parse_label("env=prod"), Ok(("env".into(), "prod".into())));
        assert_eq!(parse_label("gpu="), Ok(("gpu".into(), "".into())));
        assert!(parse_label("=x").is_err());
        assert!(parse_label("env").is_err());
    }

    #[test]
    fn config_file_fills_what_flags_leave_out_and_flags_win() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let key = dir.path().join("k.pub");
        std::fs::write(&key, kp.pk.to_box().expect("box").into_string()).expect("write key");
        let file = dir.path().join("agent.yaml");
        std::fs::write(
            &file,
            format!(
                "sources: [\"file:///srv/store\"]\nkeys: [{key:?}]\nclusterName: from-file\n\
                 labels: {{env: prod, region: eu}}\nsink: dir:/tmp/m\nstateDir: /tmp/s\n"
            ),
        )
        .expect("write config");
        let flags = Flags {
            config: Some(file),
            cluster_name: Some("from-flag".into()),
            labels: vec![("env".into(), "dev".into())],
            ..Flags::default()
        };
        let cfg = AgentConfig::from_flags(flags).expect("valid");
        assert_eq!(cfg.cluster.name, "from-flag");
        assert_eq!(cfg.cluster.labels["env"], "dev");
        assert_eq!(cfg.cluster.labels["region"], "eu");
        assert_eq!(cfg.sources.len(), 1);
    }

    #[test]
    fn daemon_settings_come_from_the_file_with_defaults_and_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let key = dir.path().join("k.pub");
        std::fs::write(&key, kp.pk.to_box().expect("box").into_string()).expect("write key");
        let base =
            format!("sources: [\"file:///srv/store\"]\nkeys: [{key:?}]\nclusterName: c\nsink: dir:/m\nstateDir: /s\n");
        let load = |extra: &str| {
            let file = dir.path().join("agent.yaml");
            std::fs::write(&file, format!("{base}{extra}")).expect("write config");
            AgentConfig::from_flags(Flags {
                config: Some(file),
                ..Flags::default()
            })
        };
        let cfg = load("").expect("defaults");
        assert_eq!(cfg.interval, DEFAULT_INTERVAL);
        assert_eq!(cfg.jitter_percent, DEFAULT_JITTER_PERCENT);
        assert_eq!(cfg.listen, Some(DEFAULT_LISTEN.parse().expect("addr")));
        assert!(cfg.report.is_none() && !cfg.log_json);
        assert_eq!(cfg.source_limits.max_index_bytes, source::DEFAULT_MAX_INDEX_BYTES);

        let cfg = load(
            "interval: 5m\nintervalJitter: 20\nmaxBackoff: 1h\nlisten: \"off\"\nlogFormat: json\n\
             reportUrl: http://reports.example/r/\nreportInterval: 30m\nmaxIndexSize: 1MiB\n\
             readTimeout: 5s\ncacheSize: 64MiB\n",
        )
        .expect("all set");
        assert_eq!(cfg.interval, Duration::from_secs(300));
        assert_eq!(cfg.jitter_percent, 20);
        assert_eq!(cfg.max_backoff, Duration::from_secs(3600));
        assert_eq!(cfg.listen, None);
        assert!(cfg.log_json);
        let report = cfg.report.expect("report");
        assert_eq!(report.url.as_str(), "http://reports.example/r/");
        assert_eq!(report.interval, Duration::from_secs(1800));
        assert_eq!(cfg.source_limits.max_index_bytes, 1 << 20);
        assert_eq!(cfg.source_limits.read_timeout, Duration::from_secs(5));
        assert_eq!(cfg.cache_bytes, 64 << 20);
        assert!(cfg.allow.is_none(), "no allow-list unless one is given");

        let cfg = load("allowNamespaces: [shop, web]\nallowClusterScoped: true\n").expect("allow-list");
        assert_eq!(
            cfg.allow.expect("allow-list").describe(),
            "namespaces shop, web; cluster-scoped objects allowed"
        );

        for (bad, needle) in [
            ("intervalJitter: 80\n", "intervalJitter"),
            ("listen: nowhere\n", "listen"),
            ("reportUrl: ftp://x/\n", "reportUrl"),
            ("maxIndexSize: lots\n", "maxIndexSize"),
            ("interval: 0s\n", "interval"),
            ("logFormat: xml\n", "logFormat"),
            ("allowClusterScoped: true\n", "allowClusterScoped"),
            ("allowNamespaces: [\"Kube_System\"]\n", "allowNamespaces"),
        ] {
            let err = load(bad).expect_err(bad).to_string();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_config_keys_are_refused_with_the_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("agent.yaml");
        std::fs::write(&file, "clusterNmae: typo\n").expect("write");
        let err = AgentConfig::from_flags(Flags {
            config: Some(file),
            ..Flags::default()
        })
        .expect_err("typo refused")
        .to_string();
        assert!(err.contains("agent.yaml") && err.contains("clusterNmae"), "{err}");
    }
}
