//! The YAML `--config` file: the same settings as the flags, under camelCase keys. Unknown
//! keys are refused, so a typo is not silently ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ConfigError, Error, Result};

/// The YAML `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileConfig {
    #[serde(default)]
    pub(super) sources: Vec<String>,
    #[serde(default)]
    pub(super) keys: Vec<PathBuf>,
    pub(super) cluster_name: Option<String>,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    pub(super) sink: Option<String>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) interval: Option<String>,
    pub(super) interval_jitter: Option<u8>,
    pub(super) max_backoff: Option<String>,
    pub(super) connect_timeout: Option<String>,
    pub(super) read_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) blob_timeout: Option<String>,
    pub(super) max_index_size: Option<String>,
    pub(super) max_signature_size: Option<String>,
    pub(super) cache_size: Option<String>,
    pub(super) listen: Option<String>,
    pub(super) log_format: Option<String>,
    pub(super) report_url: Option<String>,
    pub(super) report_interval: Option<String>,
    #[serde(default)]
    pub(super) registry: FileRegistry,
    pub(super) ca_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) allow_namespaces: Vec<String>,
    pub(super) allow_cluster_scoped: Option<bool>,
    pub(super) channel: Option<String>,
}

/// The `registry:` section of the config file (for oci:// sources).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct FileRegistry {
    pub(super) config: Option<PathBuf>,
    pub(super) username: Option<String>,
    pub(super) password_file: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) insecure: bool,
}

impl FileConfig {
    /// Reads and parses the config file at `path`.
    pub(super) fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_norway::from_str(&text).map_err(|source| {
            ConfigError::File {
                path: path.to_path_buf(),
                source,
            }
            .into()
        })
    }
}
