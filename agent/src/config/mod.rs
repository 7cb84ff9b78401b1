//! Agent configuration: command-line flags ([`Flags`]) and an optional YAML `--config` file
//! become one validated [`AgentConfig`] before anything runs, in three steps:
//!
//! 1. the config file is read (`file.rs`: unknown keys are refused);
//! 2. flags and file merge into [`Settings`], a pure function with the precedence rules
//!    (`merge::merge`: flags win over the file; list flags replace the file's list; labels
//!    merge per key);
//! 3. [`AgentConfig::open`] does all the I/O the settings call for, in one place: CA
//!    bundles, the registry password file, sources (their HTTP clients), the sink and the
//!    trusted keys.

mod file;
mod flags;
mod merge;
mod parse;

pub use flags::Flags;
pub use merge::{RegistrySettings, Settings};
pub use parse::{parse_duration, parse_label, parse_size};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use merge::merge;

use crate::error::{ConfigError, Error, Result};
use crate::secret::SecretString;
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
    /// Reads the config file the flags name, merges flags over it (flags win, see [`Settings`]) and opens
    /// what the result names ([`AgentConfig::open`]).
    pub fn from_flags(flags: Flags) -> Result<Self> {
        let file = match &flags.config {
            Some(path) => file::FileConfig::load(path)?,
            None => file::FileConfig::default(),
        };
        AgentConfig::open(merge(flags, file)?)
    }

    /// Does the I/O `settings` call for: reads the CA bundles (`$SSL_CERT_FILE` when none is
    /// configured) and the registry password, builds the sources and their clients, parses
    /// the sink, builds the allow-list and loads the trusted keys.
    pub fn open(settings: Settings) -> Result<Self> {
        let mut source_limits = settings.limits;
        source_limits.extra_roots = match settings.ca_file.or_else(ssl_cert_file) {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let registry = open_registry(settings.registry)?;
        let sources = settings
            .sources
            .iter()
            .map(|s| Source::parse_with(s, &source_limits, &registry))
            .collect::<Result<_>>()?;
        let sink = Sink::parse(&settings.sink)?;
        let allow = if settings.allow_namespaces.is_empty() {
            None
        } else {
            Some(crate::allow::AllowList::new(
                settings.allow_namespaces,
                settings.allow_cluster_scoped,
            )?)
        };
        Ok(AgentConfig {
            sources,
            keys: TrustedKeys::load(&settings.keys)?,
            cluster: settings.cluster,
            sink,
            state_dir: settings.state_dir,
            once: settings.once,
            interval: settings.interval,
            jitter_percent: settings.jitter_percent,
            max_backoff: settings.max_backoff,
            cache_bytes: settings.cache_bytes,
            listen: settings.listen,
            log_json: settings.log_json,
            report: settings.report,
            registry,
            source_limits,
            render_limits: crate::render::Limits::default(),
            allow,
            channel: settings.channel,
        })
    }
}

/// The extra roots of `caFile`, which must hold at least one certificate.
fn read_ca_file(path: PathBuf) -> Result<Vec<reqwest::Certificate>> {
    let certs = crate::transport::load_ca_bundle(&path).map_err(|e| e.into_error(Some("caFile")))?;
    if certs.is_empty() {
        return Err(ConfigError::EmptyCaBundle { path }.into());
    }
    Ok(certs)
}

/// Registry options with the password read from its file (one trailing newline dropped).
fn open_registry(settings: RegistrySettings) -> Result<crate::oci::RegistryOptions> {
    let password = match &settings.password_file {
        Some(path) => Some(SecretString::from(
            std::fs::read_to_string(path)
                .map_err(|e| Error::io(path, e))?
                .trim_end_matches(['\n', '\r']),
        )),
        None => None,
    };
    Ok(crate::oci::RegistryOptions {
        insecure: settings.insecure,
        username: settings.username,
        password,
        docker_config: settings.docker_config,
        ca_file: settings.ca_file.or_else(ssl_cert_file),
        client_identity: settings.client_cert,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Writes a trusted key and returns the required settings as YAML naming it.
    fn required_yaml(dir: &std::path::Path) -> String {
        let kp = minisign::KeyPair::generate_unencrypted_keypair().expect("keypair");
        let key = dir.join("k.pub");
        std::fs::write(&key, kp.pk.to_box().expect("box").into_string()).expect("write key");
        format!("sources: [\"oci://127.0.0.1:1/fleet:stable\"]\nkeys: [{key:?}]\nclusterName: c\nsink: dir:/m\nstateDir: /s\n")
    }

    #[test]
    fn refuses_a_ca_file_without_certificates_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "no certificate here\n").expect("write ca");
        let file = dir.path().join("agent.yaml");
        std::fs::write(&file, format!("{}caFile: {ca:?}\n", required_yaml(dir.path()))).expect("write config");
        let err = AgentConfig::from_flags(Flags {
            config: Some(file),
            ..Flags::default()
        })
        .expect_err("empty CA bundle");
        assert!(
            matches!(err, Error::Configuration(ConfigError::EmptyCaBundle { .. })),
            "{err}"
        );
        assert!(err.to_string().contains("caFile") && err.to_string().contains("no certificate in it"));
    }

    #[test]
    fn reads_the_registry_password_file_and_never_shows_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").expect("write password");
        let file = dir.path().join("agent.yaml");
        std::fs::write(&file, required_yaml(dir.path())).expect("write config");
        let cfg = AgentConfig::from_flags(Flags {
            config: Some(file),
            registry_username: Some("robot".into()),
            registry_password_file: Some(password),
            ..Flags::default()
        })
        .expect("valid");
        let shown = cfg.registry.password.as_ref().map(SecretString::expose);
        assert_eq!(shown, Some("s3cret"), "trailing newline dropped");
        assert!(!format!("{cfg:?}").contains("s3cret"), "Debug of the config hides it");
    }
}
