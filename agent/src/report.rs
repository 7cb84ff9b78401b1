//! Sends the status report to `--report-url`: an HTTP `PUT` of `status.json` to
//! `<url>/<cluster-name>.json`, which works with nginx's DAV module, any WebDAV server and
//! object stores that accept PUT. A report is sent when it changed, and otherwise at most
//! every report interval as a heartbeat, so a fleet of idle clusters does not flood the
//! report server. A failed report never fails the cycle; it is retried next cycle.

use std::time::{Duration, Instant};

use crate::config::ReportConfig;
use crate::error::{Error, Result};
use crate::source::Limits;
use crate::status::ClusterStatus;
use crate::transport::{ClientOptions, AGENT_USER_AGENT};

/// Sends status reports for one cluster.
#[derive(Debug)]
pub struct Reporter {
    client: reqwest::Client,
    url: url::Url,
    heartbeat: Duration,
    last_sent: Option<(ClusterStatus, Instant)>,
}

impl Reporter {
    /// A reporter for `cluster`, with the sources' connect and request timeouts.
    pub fn new(cfg: &ReportConfig, cluster: &str, limits: &Limits) -> Result<Self> {
        let mut url = cfg.url.clone();
        url.path_segments_mut()
            .map_err(|()| Error::Config(format!("reportUrl {}: cannot hold a path", cfg.url)))?
            .pop_if_empty()
            .push(&format!("{cluster}.json"));
        let client = ClientOptions::new(AGENT_USER_AGENT, limits.connect_timeout)
            .read_timeout(limits.read_timeout)
            .timeout(limits.request_timeout)
            .roots(&limits.extra_roots)
            .build()?;
        Ok(Reporter {
            client,
            url,
            heartbeat: cfg.interval,
            last_sent: None,
        })
    }

    /// Where reports go.
    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// Sends `status` unless the same content went out less than a heartbeat ago.
    /// Returns `None` when nothing was sent.
    pub async fn maybe_send(&mut self, status: &ClusterStatus) -> Option<Result<()>> {
        let due = match &self.last_sent {
            Some((last, at)) => !last.same_content(status) || at.elapsed() >= self.heartbeat,
            None => true,
        };
        if !due {
            return None;
        }
        let result = self.send(status).await;
        if result.is_ok() {
            self.last_sent = Some((status.clone(), Instant::now()));
        }
        Some(result)
    }

    async fn send(&self, status: &ClusterStatus) -> Result<()> {
        let fail = |message: String| Error::Fetch {
            url: self.url.to_string(),
            message,
        };
        let response = self
            .client
            .put(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(status.to_json())
            .send()
            .await
            .map_err(|e| fail(format!("report not sent: {e}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(fail(format!("report refused: HTTP status {}", response.status())))
        }
    }
}
