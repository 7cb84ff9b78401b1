//! Flags and the config file merged into one validated [`Settings`], without any I/O: no
//! file is read, no environment variable looked at, no client built. What the settings
//! name (key files, CA bundles, the password file) is opened afterwards, in
//! [`super::AgentConfig::open`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::file::FileConfig;
use super::parse::{parse_duration, parse_size};
use super::{
    Flags, ReportConfig, DEFAULT_CACHE_BYTES, DEFAULT_INTERVAL, DEFAULT_JITTER_PERCENT, DEFAULT_LISTEN,
    DEFAULT_MAX_BACKOFF, DEFAULT_REPORT_INTERVAL,
};
use crate::error::ConfigError;
use crate::select::Cluster;
use crate::source::Limits;

/// Example shown when no sink is configured.
const SINK_EXAMPLE: &str = ", e.g. dir:/var/lib/rancher/k3s/server/manifests";

/// Every setting of the agent, merged and checked, as plain data.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Source specs in priority order (parsed when opened).
    pub sources: Vec<String>,
    /// Trusted key files.
    pub keys: Vec<PathBuf>,
    /// This cluster's name and labels.
    pub cluster: Cluster,
    /// The sink spec (parsed when opened).
    pub sink: String,
    /// State directory.
    pub state_dir: PathBuf,
    /// Run a single cycle.
    pub once: bool,
    /// Interval between cycles in daemon mode (more than zero).
    pub interval: Duration,
    /// Random spread of each interval, in percent either way (at most 50).
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
    /// Source limits; `extra_roots` stays empty until the CA file is read.
    pub limits: Limits,
    /// CA bundle for https:// sources and the report URL (`$SSL_CERT_FILE` applies when opened).
    pub ca_file: Option<PathBuf>,
    /// How oci:// sources reach their registries.
    pub registry: RegistrySettings,
    /// Namespaces of the allow-list (empty: no allow-list).
    pub allow_namespaces: Vec<String>,
    /// The allow-list also allows cluster-scoped objects.
    pub allow_cluster_scoped: bool,
    /// The channel indexes must belong to.
    pub channel: Option<String>,
}

/// The registry settings, as file paths (opened later).
#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Plain HTTP.
    pub insecure: bool,
    /// User name.
    pub username: Option<String>,
    /// File holding the password or token.
    pub password_file: Option<PathBuf>,
    /// docker `config.json`.
    pub docker_config: Option<PathBuf>,
    /// Extra CA certificates (PEM).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM).
    pub client_cert: Option<PathBuf>,
}

/// Merges `flags` over `file`. Precedence, for every setting:
///
/// 1. a flag given on the command line wins;
/// 2. else the config file's key;
/// 3. else the documented default (or an error naming both, for a required setting).
///
/// List flags (`--source`, `--key`, `--allow-namespace`) given at all replace the file's
/// list; `--label` merges per key over the file's `labels`; switches (`--once`,
/// `--insecure-registry`, `--allow-cluster-scoped`) can only turn a setting on.
pub(super) fn merge(flags: Flags, file: FileConfig) -> Result<Settings, ConfigError> {
    let mut labels = file.labels.clone();
    labels.extend(flags.labels.iter().cloned());
    let name = flags
        .cluster_name
        .clone()
        .or(file.cluster_name.clone())
        .ok_or(ConfigError::Missing {
            flag: "--cluster-name",
            key: "clusterName",
            hint: "",
        })?;
    if name.is_empty() {
        return Err(ConfigError::EmptyClusterName);
    }
    let sources = pick(flags.sources.clone(), file.sources.clone());
    if sources.is_empty() {
        return Err(ConfigError::NoSource);
    }
    let limits = merge_limits(&flags, &file)?;
    let sink = flags.sink.clone().or(file.sink.clone()).ok_or(ConfigError::Missing {
        flag: "--sink",
        key: "sink",
        hint: SINK_EXAMPLE,
    })?;
    let state_dir = flags
        .state_dir
        .clone()
        .or(file.state_dir.clone())
        .ok_or(ConfigError::Missing {
            flag: "--state-dir",
            key: "stateDir",
            hint: "",
        })?;
    let daemon = merge_daemon(&flags, &file)?;
    let allow_namespaces = pick(flags.allow_namespaces, file.allow_namespaces);
    let allow_cluster_scoped = flags.allow_cluster_scoped || file.allow_cluster_scoped.unwrap_or(false);
    if allow_namespaces.is_empty() && allow_cluster_scoped {
        return Err(ConfigError::ClusterScopedWithoutAllowList);
    }
    Ok(Settings {
        sources,
        keys: if flags.keys.is_empty() { file.keys } else { flags.keys },
        cluster: Cluster { name, labels },
        sink,
        state_dir,
        once: flags.once,
        interval: daemon.interval,
        jitter_percent: daemon.jitter_percent,
        max_backoff: daemon.max_backoff,
        cache_bytes: daemon.cache_bytes,
        listen: daemon.listen,
        log_json: daemon.log_json,
        report: daemon.report,
        limits,
        ca_file: flags.ca_file.or(file.ca_file),
        registry: RegistrySettings {
            insecure: flags.insecure_registry || file.registry.insecure,
            username: flags.registry_username.or(file.registry.username),
            password_file: flags.registry_password_file.or(file.registry.password_file),
            docker_config: flags.registry_config.or(file.registry.config),
            ca_file: flags.registry_ca_file.or(file.registry.ca_file),
            client_cert: flags.registry_client_cert.or(file.registry.client_cert),
        },
        allow_namespaces,
        allow_cluster_scoped,
        channel: flags.channel.or(file.channel),
    })
}

/// The command line's list when it has one, else the file's.
fn pick<T>(cli: Vec<T>, file: Vec<T>) -> Vec<T> {
    if cli.is_empty() {
        file
    } else {
        cli
    }
}

fn merge_limits(flags: &Flags, file: &FileConfig) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    Ok(Limits {
        max_index_bytes: size(
            "maxIndexSize",
            flags.max_index_size,
            &file.max_index_size,
            defaults.max_index_bytes,
        )?,
        max_signature_bytes: size(
            "maxSignatureSize",
            flags.max_signature_size,
            &file.max_signature_size,
            defaults.max_signature_bytes,
        )?,
        connect_timeout: duration(
            "connectTimeout",
            flags.connect_timeout,
            &file.connect_timeout,
            defaults.connect_timeout,
        )?,
        read_timeout: duration(
            "readTimeout",
            flags.read_timeout,
            &file.read_timeout,
            defaults.read_timeout,
        )?,
        request_timeout: duration(
            "requestTimeout",
            flags.request_timeout,
            &file.request_timeout,
            defaults.request_timeout,
        )?,
        blob_timeout: duration(
            "blobTimeout",
            flags.blob_timeout,
            &file.blob_timeout,
            defaults.blob_timeout,
        )?,
        extra_roots: Vec::new(),
    })
}

/// The daemon's settings: cadence, listener, logs, reports, cache.
struct Daemon {
    interval: Duration,
    jitter_percent: u8,
    max_backoff: Duration,
    cache_bytes: u64,
    listen: Option<SocketAddr>,
    log_json: bool,
    report: Option<ReportConfig>,
}

fn merge_daemon(flags: &Flags, file: &FileConfig) -> Result<Daemon, ConfigError> {
    let interval = duration("interval", flags.interval, &file.interval, DEFAULT_INTERVAL)?;
    if interval.is_zero() {
        return Err(ConfigError::ZeroInterval);
    }
    let jitter_percent = flags
        .interval_jitter
        .or(file.interval_jitter)
        .unwrap_or(DEFAULT_JITTER_PERCENT);
    if jitter_percent > 50 {
        return Err(ConfigError::JitterTooLarge {
            percent: jitter_percent,
        });
    }
    let listen = match flags
        .listen
        .as_deref()
        .or(file.listen.as_deref())
        .unwrap_or(DEFAULT_LISTEN)
    {
        "off" | "" => None,
        addr => Some(addr.parse::<SocketAddr>().map_err(|source| ConfigError::Listen {
            addr: addr.to_string(),
            source,
        })?),
    };
    let log_json = match flags.log_format.as_deref().or(file.log_format.as_deref()) {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError::LogFormat {
                found: other.to_string(),
            })
        }
    };
    let report = match flags.report_url.clone().or(file.report_url.clone()) {
        Some(spec) => {
            let url = url::Url::parse(&spec)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or(ConfigError::ReportUrl { spec })?;
            let interval = duration(
                "reportInterval",
                flags.report_interval,
                &file.report_interval,
                DEFAULT_REPORT_INTERVAL,
            )?;
            Some(ReportConfig { url, interval })
        }
        None => None,
    };
    Ok(Daemon {
        interval,
        jitter_percent,
        max_backoff: duration("maxBackoff", flags.max_backoff, &file.max_backoff, DEFAULT_MAX_BACKOFF)?,
        cache_bytes: size("cacheSize", flags.cache_size, &file.cache_size, DEFAULT_CACHE_BYTES)?,
        listen,
        log_json,
        report,
    })
}

/// A duration from the flag, else the config file (named `key` in errors), else `default`.
fn duration(
    key: &'static str,
    flag: Option<Duration>,
    file: &Option<String>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match (flag, file) {
        (Some(d), _) => Ok(d),
        (None, Some(s)) => parse_duration(s).map_err(|message| ConfigError::Value { key, message }),
        (None, None) => Ok(default),
    }
}

/// A byte size from the flag, else the config file (named `key` in errors), else `default`.
fn size(key: &'static str, flag: Option<u64>, file: &Option<String>, default: u64) -> Result<u64, ConfigError> {
    match (flag, file) {
        (Some(n), _) => Ok(n),
        (None, Some(s)) => parse_size(s).map_err(|message| ConfigError::Value { key, message }),
        (None, None) => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn required() -> FileConfig {
        FileConfig {
            sources: vec!["file:///srv/store".into()],
            cluster_name: Some("from-file".into()),
            sink: Some("dir:/m".into()),
            state_dir: Some("/s".into()),
            ..FileConfig::default()
        }
    }

    #[test]
    fn flags_win_over_the_file_and_labels_merge_per_key() {
        let mut file = required();
        file.labels = [("env".into(), "prod".into()), ("region".into(), "eu".into())].into();
        file.interval = Some("5m".into());
        file.allow_namespaces = vec!["shop".into()];
        let flags = Flags {
            cluster_name: Some("from-flag".into()),
            labels: vec![("env".into(), "dev".into())],
            interval: Some(Duration::from_secs(7)),
            sources: vec!["http://a/".into(), "http://b/".into()],
            ..Flags::default()
        };
        let s = merge(flags, file).expect("valid");
        assert_eq!(s.cluster.name, "from-flag");
        assert_eq!(s.cluster.labels["env"], "dev");
        assert_eq!(s.cluster.labels["region"], "eu");
        assert_eq!(s.interval, Duration::from_secs(7));
        assert_eq!(s.sources, ["http://a/", "http://b/"], "a flag list replaces the file's");
        assert_eq!(s.allow_namespaces, ["shop"], "no flag list: the file's stays");
    }

    #[test]
    fn defaults_fill_what_neither_gives() {
        let s = merge(Flags::default(), required()).expect("valid");
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.listen, Some(DEFAULT_LISTEN.parse().expect("addr")));
        assert_eq!(s.limits.max_index_bytes, crate::source::DEFAULT_MAX_INDEX_BYTES);
        assert!(s.report.is_none() && !s.log_json && s.ca_file.is_none());
    }

    #[test]
    fn refuses_missing_required_settings_naming_flag_and_key() {
        let mut file = required();
        file.state_dir = None;
        let err = merge(Flags::default(), file).expect_err("no state dir");
        assert!(
            matches!(
                err,
                ConfigError::Missing {
                    flag: "--state-dir",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.to_string(), "configuration: --state-dir (or stateDir) is required");
        let mut file = required();
        file.sources.clear();
        assert!(matches!(merge(Flags::default(), file), Err(ConfigError::NoSource)));
    }

    #[test]
    fn refuses_bad_values_naming_the_key() {
        let mut file = required();
        file.max_index_size = Some("lots".into());
        let err = merge(Flags::default(), file).expect_err("bad size");
        assert!(
            matches!(
                err,
                ConfigError::Value {
                    key: "maxIndexSize",
                    ..
                }
            ),
            "{err}"
        );
        let mut file = required();
        file.interval_jitter = Some(80);
        assert!(matches!(
            merge(Flags::default(), file),
            Err(ConfigError::JitterTooLarge { percent: 80 })
        ));
        let mut file = required();
        file.allow_cluster_scoped = Some(true);
        assert!(matches!(
            merge(Flags::default(), file),
            Err(ConfigError::ClusterScopedWithoutAllowList)
        ));
    }
}
