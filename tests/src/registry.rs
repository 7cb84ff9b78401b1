//! A real OCI registry (the CNCF distribution registry) on a free port.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::net::free_port;
use crate::process::{require, wait_for, Daemon};

/// A real CNCF distribution registry (Debian `docker-registry`) on a free port, storing
/// into `work/data`, logging requests to `work/registry.log`. With `htpasswd` (a file made
/// by `htpasswd -Bbn`), it requires basic auth.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Its config file (for `docker-registry garbage-collect`).
    pub config: PathBuf,
    /// The request log.
    pub log: PathBuf,
    _daemon: Daemon,
}

impl Registry {
    /// Starts the registry.
    pub fn start(work: &Path, htpasswd: Option<&Path>) -> Registry {
        Registry::start_with(work, htpasswd, "")
    }

    /// Starts the registry with `http_extra` added under its `http:` section (indented two
    /// spaces, e.g. a `tls:` block).
    pub fn start_with(work: &Path, htpasswd: Option<&Path>, http_extra: &str) -> Registry {
        // free_port releases the port before the registry binds it; if another process
        // took it meanwhile the registry exits, and a new port is tried.
        for _ in 0..5 {
            if let Some(registry) = Registry::try_start(work, htpasswd, http_extra, free_port()) {
                return registry;
            }
        }
        panic!(
            "docker-registry could not bind a free port five times; see {}",
            work.display()
        );
    }

    fn try_start(work: &Path, htpasswd: Option<&Path>, http_extra: &str, port: u16) -> Option<Registry> {
        let bin = require("docker-registry", "docker-registry");
        std::fs::create_dir_all(work.join("data")).unwrap();
        let auth = htpasswd
            .map(|p| {
                format!(
                    "auth:\n  htpasswd:\n    realm: drover-test\n    path: {}\n",
                    p.display()
                )
            })
            .unwrap_or_default();
        let config = work.join("registry.yml");
        // Level info: the registry says `listening on ADDR` once it holds the port.
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: drover-test\n{http_extra}{auth}",
                work.join("data").display()
            ),
        )
        .unwrap();
        let log = work.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .args(["serve", config.to_str().unwrap()])
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawn docker-registry");
        let mut daemon = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}/"),
        };
        let listening = format!("listening on 127.0.0.1:{port}");
        let mut exited = false;
        wait_for("docker-registry to listen", Duration::from_secs(20), || {
            exited = matches!(daemon.child.try_wait(), Ok(Some(_)));
            exited
                || (std::fs::read_to_string(&log).is_ok_and(|l| l.contains(&listening))
                    && TcpStream::connect(("127.0.0.1", port)).is_ok())
        });
        (!exited).then(|| Registry {
            host: format!("127.0.0.1:{port}"),
            config,
            log,
            _daemon: daemon,
        })
    }

    /// Marks the access log now (see [`mark_log`](crate::net::mark_log)); plain-HTTP
    /// registries only.
    pub fn mark(&self) -> usize {
        crate::net::mark_log(self.port(), "/v2", || self.requests())
    }

    /// The requests answered since `mark`, complete (see [`log_since`](crate::net::log_since)).
    pub fn requests_since(&self, mark: usize) -> Vec<String> {
        crate::net::log_since(self.port(), "/v2", || self.requests(), mark)
    }

    fn port(&self) -> u16 {
        self.host
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("host is 127.0.0.1:PORT")
    }

    /// Request lines of its access log (`"METHOD PATH HTTP/1.1" STATUS`), in order.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let start = l
                    .find("\"HEAD ")
                    .or_else(|| l.find("\"GET "))
                    .or_else(|| l.find("\"PUT "));
                let start = start.or_else(|| l.find("\"POST ")).or_else(|| l.find("\"PATCH "))?;
                let rest = &l[start + 1..];
                let (request, after) = rest.split_once('"')?;
                let status = after.split_whitespace().next().unwrap_or("");
                Some(format!("{request} {status}"))
            })
            .collect()
    }
}
