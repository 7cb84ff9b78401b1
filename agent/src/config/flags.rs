//! The command-line flags of `drover-agent` (clap), as given: nothing is checked here
//! beyond what each flag's own parser checks.

use std::path::PathBuf;
use std::time::Duration;

use super::parse::{parse_duration, parse_label, parse_size};

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
    /// Where manifests go: dir:PATH (a k3s auto-deploy manifests directory) or kube[:KUBECONFIG][?namespace=NS] (the Kubernetes API; NS is the agent's own namespace, default drover-system; docs/kube-sink.md).
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
    /// Local listener for /metrics, /healthz, /readyz, /status and POST /sync: ADDR:PORT or "off" (default 127.0.0.1:9090).
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
