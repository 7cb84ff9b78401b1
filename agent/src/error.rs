//! The agent library's error type. Every variant names the thing it is about (a file, a URL,
//! a field, a bundle) and says what was expected and what was found.

use std::path::PathBuf;

/// Errors of the drover agent library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A network request failed.
    #[error("{url}: {message}")]
    Fetch {
        /// The URL requested.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// Where a store holds a regular file (index, signature, blob), a `file://` store has
    /// something else: reading a FIFO or device could block the agent for ever.
    #[error("{}: not a regular file but {kind}; a store holds only regular files", path.display())]
    NotRegularFile {
        /// The path in the store.
        path: PathBuf,
        /// What was found there ("a FIFO", "a directory", …).
        kind: &'static str,
    },
    /// Data was larger than its limit.
    #[error("{what}: larger than the limit of {limit} bytes")]
    TooLarge {
        /// What was being read (a URL or path).
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// A blob's bytes did not hash to the digest the index gave for it.
    #[error("{what}: content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch {
        /// Where the blob came from.
        what: String,
        /// The digest from the signed index.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A blob had a different size than the index said.
    #[error("{what}: size mismatch: index says {expected} bytes, got {actual}")]
    SizeMismatch {
        /// Where the blob came from.
        what: String,
        /// The size from the signed index.
        expected: u64,
        /// The number of bytes received.
        actual: u64,
    },
    /// A trusted key could not be read.
    #[error("trusted key {path}: {message}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What was wrong with it.
        message: String,
    },
    /// The index signature did not verify with any trusted key.
    #[error("{what}: signature rejected: {message}")]
    Signature {
        /// The index that was being verified.
        what: String,
        /// Why each trusted key refused it.
        message: String,
    },
    /// The index is past its `expires` time.
    #[error("{what}: index expired at {expires} (now {now}); the publisher must re-publish")]
    Expired {
        /// The index.
        what: String,
        /// Its expiry.
        expires: String,
        /// The agent's clock.
        now: String,
    },
    /// The index is older than (or conflicts with) one already applied.
    #[error("{what}: {message}")]
    Rollback {
        /// The index.
        what: String,
        /// Details (versions involved).
        message: String,
    },
    /// The index belongs to another channel than the one this agent follows.
    #[error("{what}: index of channel {found:?}, but this agent follows channel {expected:?} ({why}); refused")]
    WrongChannel {
        /// The index.
        what: String,
        /// The channel in the index.
        found: String,
        /// The channel the agent follows.
        expected: String,
        /// Where `expected` comes from.
        why: &'static str,
    },
    /// The index or a bundle file is malformed.
    #[error("{what}: invalid: {message}")]
    Invalid {
        /// What was being read: a file, URL, field path or bundle entry.
        what: String,
        /// What was expected and what was found.
        message: String,
    },
    /// Objects of a bundle fall outside the agent's namespace allow-list.
    #[error("{what}: refused by the namespace allow-list ({allowed}); nothing of this bundle was applied: {objects}")]
    NotAllowed {
        /// The bundle.
        what: String,
        /// What the allow-list allows.
        allowed: String,
        /// The refused objects (kind, name, namespace).
        objects: String,
    },
    /// The end of a cycle could not be recorded in the state directory (disk full, read-only
    /// file system). Manifests of this cycle may already be in place; the state still says
    /// `Applying` for them, so the next cycle completes the record.
    #[error("{path}: the cycle's result could not be saved in the state directory ({source}); manifests may already be written, the next cycle completes the record")]
    StateNotSaved {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the state directory's lock: two agents on one state directory
    /// would overwrite each other's record of what is applied.
    #[error("{}: state directory is in use by another drover-agent ({}); give each agent its own --state-dir", dir.display(), pid.map_or_else(|| "pid unknown".to_string(), |p| format!("pid {p}")))]
    StateLocked {
        /// The state directory.
        dir: PathBuf,
        /// The holder's pid, as it wrote it into the lock file.
        pid: Option<u32>,
    },
    /// A request to the Kubernetes API failed (kube sink).
    #[error("{what}: {}", context.explain(source))]
    Kube {
        /// The object or kind the request was about (`Deployment.apps/web/api`).
        what: String,
        /// What the sink was doing, which shapes the explanation.
        context: KubeContext,
        /// The client's error, with the API server's Status when it answered.
        #[source]
        source: kube::Error,
    },
    /// The kube sink refused to write or delete objects that are not the bundle's to change
    /// (another tool's ApplySet, a member of another set, the agent's own records).
    #[error("{what}: {refusal}")]
    KubeRefused {
        /// The bundle or object refused.
        what: String,
        /// Why.
        refusal: KubeRefusal,
    },
    /// A Kubernetes object did not reach the state the kube sink waited for in time.
    #[error("{what}: {wait}")]
    KubeTimeout {
        /// The object waited for.
        what: String,
        /// What was waited for, and how long.
        wait: KubeWait,
    },
    /// The configuration is not usable (untyped; new code uses [`Error::Configuration`]).
    #[error("configuration: {0}")]
    Config(String),
    /// The configuration is not usable: the variant names the flag, key or file.
    #[error(transparent)]
    Configuration(#[from] ConfigError),
}

/// A setting (flag, `--config` key, a file they name, a source or registry spec) that
/// cannot be used. Each message starts with `configuration:`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The `--config` file is not YAML of the documented shape (an unknown key included).
    #[error("configuration: {}: {source}", path.display())]
    File {
        /// The config file.
        path: PathBuf,
        /// What the YAML reader said.
        #[source]
        source: serde_norway::Error,
    },
    /// A required setting is neither a flag nor a config key.
    #[error("configuration: {flag} (or {key}) is required{hint}")]
    Missing {
        /// The flag, such as `--state-dir`.
        flag: &'static str,
        /// The config key, such as `stateDir`.
        key: &'static str,
        /// An example, or nothing.
        hint: &'static str,
    },
    /// No `--source` and no `sources`.
    #[error("configuration: at least one --source (or sources) is required")]
    NoSource,
    /// The cluster name is the empty string.
    #[error("configuration: cluster name must not be empty")]
    EmptyClusterName,
    /// A duration or size in the config file does not parse.
    #[error("configuration: {key}: {message}")]
    Value {
        /// The config key.
        key: &'static str,
        /// What the parser said.
        message: String,
    },
    /// `interval` is zero.
    #[error("configuration: interval must be more than 0s")]
    ZeroInterval,
    /// `intervalJitter` is over 50.
    #[error("configuration: intervalJitter: {percent} is over 50 (percent)")]
    JitterTooLarge {
        /// The value given.
        percent: u8,
    },
    /// `listen` is neither `ADDR:PORT` nor `off`.
    #[error("configuration: listen: {addr:?} is not ADDR:PORT or off ({source})")]
    Listen {
        /// The value given.
        addr: String,
        /// What the address parser said.
        #[source]
        source: std::net::AddrParseError,
    },
    /// `logFormat` is neither `text` nor `json`.
    #[error("configuration: logFormat: {found:?} is not text or json")]
    LogFormat {
        /// The value given.
        found: String,
    },
    /// `reportUrl` is not an `http(s)://` URL.
    #[error("configuration: reportUrl: {spec:?} is not an http(s) URL")]
    ReportUrl {
        /// The value given.
        spec: String,
    },
    /// `allowClusterScoped` without `allowNamespaces`.
    #[error(
        "configuration: allowClusterScoped only makes sense with allowNamespaces (--allow-namespace); \
         without an allow-list everything is allowed"
    )]
    ClusterScopedWithoutAllowList,
    /// A CA bundle (`caFile`, a registry CA file) is not PEM.
    #[error("configuration: {}{}: not a PEM CA bundle: {source}", key.map(|k| format!("{k} ")).unwrap_or_default(), path.display())]
    NotCaBundle {
        /// The config key naming the file, when it is reported.
        key: Option<&'static str>,
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: reqwest::Error,
    },
    /// `caFile` holds no certificate.
    #[error("configuration: caFile {}: no certificate in it", path.display())]
    EmptyCaBundle {
        /// The file.
        path: PathBuf,
    },
    /// A client certificate file is not a PEM certificate with its key.
    #[error("configuration: {}: not a PEM certificate and key: {source}", path.display())]
    NotIdentity {
        /// The file.
        path: PathBuf,
        /// What the PEM reader said.
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be built.
    #[error("configuration: HTTP client: {source}")]
    HttpClient {
        /// What reqwest said.
        #[source]
        source: reqwest::Error,
    },
    /// A source is not a URL.
    #[error("configuration: source {spec:?}: not a URL ({source}); use http(s)://… or file:///path")]
    SourceNotUrl {
        /// The source as given.
        spec: String,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// A `file://` source without an absolute local path.
    #[error("configuration: source {spec:?}: file:// URL needs an absolute local path")]
    SourceNotAbsolute {
        /// The source as given.
        spec: String,
    },
    /// A source of an unsupported scheme.
    #[error("configuration: source {spec:?}: unsupported scheme {scheme:?} (supported: http, https, file, oci)")]
    SourceScheme {
        /// The source as given.
        spec: String,
        /// Its scheme.
        scheme: String,
    },
    /// A store URL (base + relative path) that does not join.
    #[error("configuration: {url}: {source}")]
    StoreUrl {
        /// The base URL and the relative path.
        url: String,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// An `oci://` reference that does not parse.
    #[error("configuration: {spec:?}: {why}; expected oci://HOST[:PORT]/REPOSITORY:CHANNEL")]
    Reference {
        /// The reference as given.
        spec: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A registry host that does not make a URL.
    #[error("configuration: registry {host:?}: {source}")]
    RegistryHost {
        /// The host as given.
        host: String,
        /// What the URL parser said.
        #[source]
        source: url::ParseError,
    },
    /// A docker `config.json` that is not JSON.
    #[error("configuration: {}: not a docker config.json: {source}", path.display())]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// What the JSON reader said.
        #[source]
        source: serde_json::Error,
    },
    /// A docker `config.json` whose `auth` for a host is unusable.
    #[error("configuration: {}: auths.{host}.auth is not {expected}", path.display())]
    DockerAuth {
        /// The file.
        path: PathBuf,
        /// The registry host.
        host: String,
        /// What it should be.
        expected: &'static str,
    },
}

impl Error {
    /// True for a refusal by verification: a signature, expiry, rollback, size or digest
    /// check failed (as opposed to a transport error or bad local configuration).
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            Error::Signature { .. }
                | Error::Expired { .. }
                | Error::Rollback { .. }
                | Error::WrongChannel { .. }
                | Error::DigestMismatch { .. }
                | Error::SizeMismatch { .. }
                | Error::TooLarge { .. }
        )
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            message: message.into(),
        }
    }
}

/// What the kube sink was doing when a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubeContext {
    /// Any request; the client's error says it all.
    Request,
    /// Discovery found no resource for the object's apiVersion and kind.
    UnknownKind,
    /// Server-side apply met fields another field manager owns (409).
    Conflict,
    /// The API server refused the object as invalid (422).
    Refused,
}

impl KubeContext {
    /// The explanation of `source` in this context, as users read it.
    fn explain(self, source: &kube::Error) -> String {
        let server_says = || match source {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        match self {
            KubeContext::Request => source.to_string(),
            KubeContext::UnknownKind => format!("unknown kind: {source}"),
            KubeContext::Conflict => format!(
                "conflict with another field manager: {} (set `force: true` in the bundle's bundle.yaml to take them)",
                server_says()
            ),
            KubeContext::Refused => format!(
                "refused: {} (an immutable field changed? force recreates)",
                server_says()
            ),
        }
    }
}

/// Why the kube sink refused to touch an object (KEP-3659: tooling must not mutate
/// ApplySets, or members of ApplySets, that belong to another tool).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubeRefusal {
    /// The bundle's ApplySet parent names another tool in `applyset.kubernetes.io/tooling`.
    ForeignApplySet {
        /// The parent (`ConfigMap drover-system/drover-applyset-web`).
        parent: String,
        /// The tooling it names (`kubectl/v1.32.4`).
        tooling: String,
    },
    /// An object of the bundle already belongs to another ApplySet.
    OtherApplySet {
        /// The object (`ConfigMap web/shared`).
        object: String,
        /// The `applyset.kubernetes.io/part-of` it carries.
        id: String,
    },
    /// An object of the bundle is one of the agent's own records.
    OwnRecord {
        /// The object (`ConfigMap drover-system/drover-status`).
        object: String,
    },
}

impl std::fmt::Display for KubeRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The error's `what` names the parent or object; the message does not repeat it.
            KubeRefusal::ForeignApplySet { tooling, .. } => write!(
                f,
                "belongs to {tooling}, not drover (applyset.kubernetes.io/tooling): refusing to take over this ApplySet; nothing applied or pruned"
            ),
            KubeRefusal::OtherApplySet { id, .. } => write!(
                f,
                "already belongs to ApplySet {id} (applyset.kubernetes.io/part-of): refusing to move it into this bundle; nothing applied or pruned"
            ),
            KubeRefusal::OwnRecord { .. } => write!(
                f,
                "one of the agent's own records (an ApplySet parent or its status): a bundle may not write it; nothing applied"
            ),
        }
    }
}

/// What the kube sink waited for in vain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KubeWait {
    /// A CustomResourceDefinition never reported `Established`.
    Established(std::time::Duration),
    /// A deleted object (to be created again) was still there.
    Deleted(std::time::Duration),
}

impl std::fmt::Display for KubeWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeWait::Established(waited) => write!(f, "not Established after {}s", waited.as_secs()),
            KubeWait::Deleted(waited) => write!(f, "still present {}s after its deletion", waited.as_secs()),
        }
    }
}

/// Result type of the agent library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
