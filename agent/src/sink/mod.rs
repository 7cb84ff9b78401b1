//! Sinks: where rendered manifests go. `dir:PATH` writes into the k3s auto-deploy
//! directory (see [`dir`]); other sinks join this enum.

pub mod dir;

pub use dir::{BundleFile, DirSink};

use crate::error::{Error, Result};

/// A configured sink.
#[derive(Debug, Clone)]
pub enum Sink {
    /// Files in a k3s auto-deploy manifests directory.
    Dir(DirSink),
}

impl Sink {
    /// Parses `dir:PATH`.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec.split_once(':') {
            Some(("dir", path)) if !path.is_empty() => Ok(Sink::Dir(DirSink::new(path.into()))),
            _ => Err(Error::Config(format!(
                "sink {spec:?}: expected dir:PATH (e.g. dir:/var/lib/rancher/k3s/server/manifests)"
            ))),
        }
    }
}
