//! `?watch=true` on a collection: a stream of newline-delimited JSON events
//! (`{"type":"ADDED","object":{…}}`), enough for kubectl `get -w`/`wait` and kube-rs
//! watchers.
//!
//! Without `resourceVersion` (or with `0`) the stream starts with an `ADDED` event per
//! existing object; with one, it replays the changes after it from the store's log, or
//! sends a `410 Expired` ERROR event when they are no longer kept. `sendInitialEvents=true`
//! ends the initial events with the `k8s.io/initial-events-end` BOOKMARK. A MODIFIED
//! object that stops matching the selector is not turned into a DELETED event, unlike
//! the real apiserver.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::ops::{State, Target};
use crate::routes::{stream_response, App};
use crate::store::{Change, Filter};

/// Events buffered per watcher before the writer waits for the client.
const WATCH_BUFFER: usize = 256;

/// What one watch asks for.
#[derive(Debug)]
pub struct WatchRequest {
    /// Resource type and namespace (a name in the target is ignored).
    pub target: Target,
    /// Label, field and namespace selection.
    pub filter: Filter,
    /// `resourceVersion` query parameter.
    pub resource_version: Option<String>,
    /// `sendInitialEvents` query parameter.
    pub send_initial_events: Option<bool>,
    /// When the server ends the stream.
    pub timeout: Duration,
}

fn line(kind: &str, object: Value) -> Bytes {
    let mut text = json!({"type": kind, "object": object}).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// Events after `since` for this watch, and the resourceVersion they reach.
fn changes(state: &State, req: &WatchRequest, since: u64) -> Result<(Vec<Bytes>, u64), ApiError> {
    let rt = &req.target.rt;
    let log = state.store.changes_since(since).ok_or_else(|| {
        ApiError::expired(format!(
            "too old resource version: {since} ({})",
            state.store.resource_version()
        ))
    })?;
    let lines = log
        .filter(|e| e.key.group == rt.group && e.key.plural == rt.plural)
        .filter(|e| req.filter.matches(&e.key, &e.object))
        .map(|e| line(e.change.as_str(), req.target.render(&e.object)))
        .collect();
    Ok((lines, state.store.resource_version().max(since)))
}

/// The opening events and the resourceVersion to follow from.
fn opening(state: &State, req: &WatchRequest) -> (Vec<Bytes>, u64) {
    let rt = &req.target.rt;
    let requested = req
        .resource_version
        .as_deref()
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&v| v > 0);
    let current = state.store.resource_version();
    let mut lines = Vec::new();
    match requested {
        Some(rv) if req.send_initial_events != Some(true) => match changes(state, req, rv) {
            Ok(found) => return found,
            Err(e) => {
                lines.push(line("ERROR", e.status()));
                return (lines, u64::MAX);
            }
        },
        _ => {
            let objects = state.store.list(&rt.group, &rt.plural, req.filter.namespace.as_deref());
            for (_, obj) in objects.filter(|(k, o)| req.filter.matches(k, o)) {
                lines.push(line(Change::Added.as_str(), req.target.render(obj)));
            }
        }
    }
    if req.send_initial_events == Some(true) {
        lines.push(line(
            "BOOKMARK",
            json!({
                "kind": rt.kind,
                "apiVersion": rt.group_version(&req.target.version),
                "metadata": {
                    "resourceVersion": current.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            }),
        ));
    }
    (lines, current)
}

/// Starts streaming the watch; the response ends at the timeout, on an error event, or
/// when the client goes away.
pub fn serve(app: Arc<App>, req: WatchRequest) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(WATCH_BUFFER);
    let mut changed = app.subscribe();
    let (first, mut seen) = opening(&app.lock(), &req);
    tokio::spawn(async move {
        for l in first {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if seen == u64::MAX {
            return; // the opening was an error event
        }
        let deadline = tokio::time::Instant::now() + req.timeout;
        loop {
            tokio::select! {
                res = changed.changed() => if res.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
            let next = changes(&app.lock(), &req, seen);
            let lines = match next {
                Ok((lines, rv)) => {
                    seen = rv;
                    lines
                }
                Err(e) => {
                    let _ = tx.send(line("ERROR", e.status())).await;
                    return;
                }
            };
            for l in lines {
                if tx.send(l).await.is_err() {
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    stream_response(Body::from_stream(stream))
}
