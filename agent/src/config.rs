//! Agent configuration: command-line flags and an optional YAML `--config` file are
//! merged into one validated [`AgentConfig`] before anything runs. Flags win over the
//! file; list flags given on the command line replace the file's list; labels merge per key.

use std::collections::BTreeMap;
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

/// Command-line flags of `drover-agent`.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "drover-agent",
    version,
    about = "Pull a signed drover store and apply it to this k3s cluster"
)]
pub struct Flags {
    /// YAML file with the same settings (camelCase keys: sources, keys, clusterName, labels, sink, stateDir, interval).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Store to read: http(s)://HOST/PATH or file:///PATH. Repeat for several; the highest verified version wins.
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
    /// Where manifests go: dir:PATH (a k3s auto-deploy manifests directory).
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
    /// Limits applied while reading sources.
    pub source_limits: source::Limits,
    /// Limits applied while rendering bundles.
    pub render_limits: crate::render::Limits,
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
        let source_limits = source::Limits::default();
        let sources = source_specs
            .iter()
            .map(|s| Source::parse(s, &source_limits))
            .collect::<Result<_>>()?;
        let sink = Sink::parse(&flags.sink.or(file.sink).ok_or_else(|| {
            Error::Config("--sink (or sink) is required, e.g. dir:/var/lib/rancher/k3s/server/manifests".into())
        })?)?;
        let state_dir = flags
            .state_dir
            .or(file.state_dir)
            .ok_or_else(|| Error::Config("--state-dir (or stateDir) is required".into()))?;
        let interval = match (flags.interval, file.interval) {
            (Some(d), _) => d,
            (None, Some(s)) => parse_duration(&s).map_err(|e| Error::Config(format!("interval: {e}")))?,
            (None, None) => DEFAULT_INTERVAL,
        };
        Ok(AgentConfig {
            sources,
            keys: TrustedKeys::load(&key_paths)?,
            cluster: Cluster { name, labels },
            sink,
            state_dir,
            once: flags.once,
            interval,
            source_limits,
            render_limits: crate::render::Limits::default(),
        })
    }
}

/// Parses `KEY=VALUE`.
pub fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

/// Parses a duration such as `90s`, `5m`, `12h`, `30d`, `2w`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m, 12h, 30d"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(format!("{s:?}: unit must be one of s, m, h, d, w")),
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
