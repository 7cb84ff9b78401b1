//! The HTTP face of the double: parses Kubernetes API paths and query parameters,
//! decodes bodies by media type, calls the verbs in [`crate::ops`] and answers JSON
//! (errors as `Status` objects). Also serves discovery, OpenAPI, health endpoints and
//! two test-only endpoints:
//! - `GET /_double/requests` lists every API request received so far (method, path,
//!   query, content type, user agent); `DELETE /_double/requests` clears the list;
//! - `GET /_double/objects` dumps every stored object.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State as AxumState};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::discovery;
use crate::error::ApiError;
use crate::ops::{Config, DeleteOptions, PatchKind, State, Subresource, Target, WriteParams};
use crate::resources::Registry;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::Filter;
use crate::watch::{self, WatchRequest};

/// Largest request body accepted by default (a HelmChart carrying its chart archive can
/// be large); [`Config::max_request_bytes`] sets another limit.
pub const MAX_BODY_BYTES: usize = 16 << 20;

/// How long a watch without `timeoutSeconds` stays open.
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How many requests `/_double/requests` remembers (oldest dropped first).
pub const MAX_REQUEST_LOG: usize = 100_000;

/// The shared state of a running double.
#[derive(Debug)]
pub struct App {
    state: Mutex<State>,
    requests: Mutex<VecDeque<Value>>,
    changed: tokio::sync::watch::Sender<u64>,
    verbose: bool,
    establish_delay: Duration,
    ready_delay: Duration,
    max_body: usize,
}

impl App {
    /// A fresh double.
    pub fn new(config: Config) -> Arc<Self> {
        let (verbose, establish_delay, ready_delay) = (config.verbose, config.crd_establish_delay, config.ready_delay);
        let foreign_every = config.foreign_writer_interval;
        let max_body = if config.max_request_bytes == 0 {
            MAX_BODY_BYTES
        } else {
            config.max_request_bytes
        };
        let state = State::new(config);
        let (changed, _) = tokio::sync::watch::channel(state.store.resource_version());
        let app = Arc::new(App {
            state: Mutex::new(state),
            requests: Mutex::new(VecDeque::new()),
            changed,
            verbose,
            establish_delay,
            ready_delay,
            max_body,
        });
        if !foreign_every.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(Arc::clone(&app).foreign_writer(foreign_every));
        }
        app
    }

    /// The [`Config::foreign_writer_interval`] controller: a round every `every`.
    async fn foreign_writer(self: Arc<Self>, every: Duration) {
        for round in 1.. {
            tokio::time::sleep(every).await;
            if self.lock().foreign_write(round) > 0 {
                self.after_write();
            }
        }
    }

    /// Locks the state. A panic while it was held leaves it as it was; serving on is
    /// more useful to a test than failing every later request.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes watchers after a write and starts the delayed establishment of new CRDs and
    /// the delayed readiness of workloads.
    fn after_write(self: &Arc<Self>) {
        let (rv, pending, pending_ready) = {
            let mut state = self.lock();
            (
                state.store.resource_version(),
                std::mem::take(&mut state.pending_establish),
                std::mem::take(&mut state.pending_ready),
            )
        };
        self.changed.send_replace(rv);
        for name in pending {
            let app = Arc::clone(self);
            let delay = self.establish_delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                app.lock().establish_crd(&name);
                app.after_write();
            });
        }
        for key in pending_ready {
            let app = Arc::clone(self);
            let delay = self.ready_delay;
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                app.lock().become_ready(&key);
                app.after_write();
            });
        }
    }

    /// A receiver that changes whenever the store does.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn log_request(&self, entry: Value) {
        let mut log = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if log.len() == MAX_REQUEST_LOG {
            log.pop_front();
        }
        log.push_back(entry);
    }
}

/// The router serving the whole API for `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app)
}

/// Query parameters in order, percent-decoded.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(raw: &str) -> Self {
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k, true), percent_decode(v, true))
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Everything about one request the dispatcher needs.
struct Call<'a> {
    method: &'a Method,
    query: Query,
    content_type: &'a str,
    user_agent: &'a str,
    host: &'a str,
    body: &'a [u8],
}

async fn handle(AxumState(app): AxumState<Arc<App>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (content_type, user_agent, host) = (
        header(header::CONTENT_TYPE),
        header(header::USER_AGENT),
        header(header::HOST),
    );
    if !path.starts_with("/_double/") {
        app.log_request(json!({
            "method": parts.method.as_str(),
            "path": path,
            "query": raw_query,
            "contentType": content_type,
            "userAgent": user_agent,
        }));
    }
    let response = match to_bytes(body, app.max_body).await {
        Ok(body) => {
            let call = Call {
                method: &parts.method,
                query: Query::parse(&raw_query),
                content_type: &content_type,
                user_agent: &user_agent,
                host: &host,
                body: &body,
            };
            dispatch(&app, &path, &call)
        }
        Err(_) => error(&ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            // The real apiserver's wording (apierrors.NewRequestEntityTooLargeError).
            message: format!("Request entity too large: limit is {}", app.max_body),
            details: None,
        }),
    };
    if app.verbose {
        let q = if raw_query.is_empty() {
            String::new()
        } else {
            format!("?{raw_query}")
        };
        eprintln!("{} {path}{q} -> {}", parts.method, response.status().as_u16());
    }
    response
}

/// A JSON response.
pub fn json_response(code: u16, value: &Value) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An error as a `Status` response.
pub fn error(e: &ApiError) -> Response {
    json_response(e.code, &e.status())
}

fn ok(value: Value) -> Response {
    json_response(200, &value)
}

fn dispatch(app: &Arc<App>, path: &str, call: &Call<'_>) -> Response {
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode(s, false))
        .collect();
    let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
    let is_get = call.method == Method::GET;
    let registry = || app.lock().registry.clone();
    let found = |doc: Option<Value>| doc.map(ok).unwrap_or_else(|| error(&ApiError::no_such_resource()));
    match segs.as_slice() {
        ["version"] if is_get => ok(discovery::version()),
        ["healthz" | "readyz" | "livez"] if is_get => (StatusCode::OK, "ok").into_response(),
        ["api"] if is_get => ok(discovery::core_versions(call.host)),
        ["apis"] if is_get => ok(discovery::group_list(&registry())),
        ["apis", group] if is_get => found(discovery::group(&registry(), group)),
        ["api", "v1"] if is_get => found(discovery::resource_list(&registry(), "", "v1")),
        ["apis", group, version] if is_get => found(discovery::resource_list(&registry(), group, version)),
        ["openapi", "v3"] if is_get => ok(discovery::openapi_root(&registry())),
        ["openapi", "v3", "api", version] if is_get => {
            found(discovery::openapi_group_version(&registry(), "", version))
        }
        ["openapi", "v3", "apis", group, version] if is_get => {
            found(discovery::openapi_group_version(&registry(), group, version))
        }
        ["_double", "requests"] if is_get => {
            let log = app.requests.lock().unwrap_or_else(|e| e.into_inner());
            ok(Value::Array(log.iter().cloned().collect()))
        }
        ["_double", "requests"] if call.method == Method::DELETE => {
            app.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
            ok(json!([]))
        }
        ["_double", "objects"] if is_get => {
            let state = app.lock();
            let items: Vec<Value> = state.store.all().map(|(_, o)| o.clone()).collect();
            ok(json!({"resourceVersion": state.store.resource_version().to_string(), "items": items}))
        }
        ["api", "v1", rest @ ..] => resource(app, "", "v1", rest, call),
        ["apis", group, version, rest @ ..] => resource(app, group, version, rest, call),
        _ => error(&ApiError::no_such_resource()),
    }
}

/// Resolves `[namespaces/NS/]PLURAL[/NAME[/SUBRESOURCE]]` against the served types.
fn resolve(reg: &Registry, group: &str, version: &str, rest: &[&str]) -> Result<Target, ApiError> {
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..]
            if tail
                .first()
                .and_then(|p| reg.find(group, version, p))
                .is_some_and(|t| t.namespaced) =>
        {
            (Some(ns.to_string()), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(ApiError::no_such_resource()),
    };
    let rt = reg
        .find(group, version, plural)
        .ok_or_else(ApiError::no_such_resource)?
        .clone();
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::no_such_resource());
    }
    let subresource = match sub {
        None => None,
        Some("status") if rt.status => Some(Subresource::Status),
        Some("scale") if rt.scale => Some(Subresource::Scale),
        Some(_) => return Err(ApiError::no_such_resource()),
    };
    Ok(Target {
        rt,
        version: version.to_string(),
        namespace,
        name: name.map(str::to_string),
        subresource,
    })
}

fn filter(target: &Target, q: &Query) -> Result<Filter, ApiError> {
    Ok(Filter {
        namespace: target.namespace.clone(),
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or_default()).map_err(ApiError::bad_request)?,
    })
}

/// Decodes a request body by its media type (JSON, or YAML for YAML types).
fn decode(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let yaml = match mime.as_str() {
        ""
        | "application/json"
        | "application/merge-patch+json"
        | "application/strategic-merge-patch+json"
        | "application/json-patch+json" => false,
        "application/yaml" | "application/apply-patch+yaml" | "application/x-yaml" | "text/yaml" => true,
        _ => return Err(ApiError::unsupported_media_type(content_type)),
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice(body) {
        Ok(v) => Ok(v),
        Err(_) if yaml => {
            serde_norway::from_slice(body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }
        Err(e) => Err(ApiError::bad_request(format!("error decoding JSON: {e}"))),
    }
}

fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    let mime = content_type.split(';').next().unwrap_or_default().trim();
    match mime {
        "application/apply-patch+yaml" => Ok(PatchKind::Apply),
        "application/merge-patch+json" => Ok(PatchKind::Merge),
        "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
        "application/json-patch+json" => Ok(PatchKind::Json),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn write_params(call: &Call<'_>) -> WriteParams {
    WriteParams {
        field_manager: call.query.get("fieldManager").map(str::to_string),
        user_agent: call.user_agent.to_string(),
        force: call.query.flag("force"),
        dry_run: call.query.get("dryRun").is_some_and(|v| !v.is_empty()),
    }
}

fn delete_options(call: &Call<'_>) -> Result<DeleteOptions, ApiError> {
    let body = if call.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode(call.content_type, call.body)?
    };
    let s = |v: &Value| v.as_str().map(str::to_string);
    Ok(DeleteOptions {
        propagation_policy: call
            .query
            .get("propagationPolicy")
            .map(str::to_string)
            .or_else(|| s(&body["propagationPolicy"])),
        uid: s(&body["preconditions"]["uid"]),
        resource_version: s(&body["preconditions"]["resourceVersion"]),
        dry_run: call.query.get("dryRun").is_some_and(|v| !v.is_empty())
            || body["dryRun"].as_array().is_some_and(|a| !a.is_empty()),
    })
}

fn resource(app: &Arc<App>, group: &str, version: &str, rest: &[&str], call: &Call<'_>) -> Response {
    match resource_inner(app, group, version, rest, call) {
        Ok(response) => response,
        Err(e) => error(&e),
    }
}

fn resource_inner(
    app: &Arc<App>,
    group: &str,
    version: &str,
    rest: &[&str],
    call: &Call<'_>,
) -> Result<Response, ApiError> {
    if rest.is_empty() {
        return Err(ApiError::method_not_allowed(format!(
            "{} is not allowed here",
            call.method
        )));
    }
    let target = resolve(&app.lock().registry, group, version, rest)?;
    let collection = target.name.is_none();
    let method = call.method.clone();
    let response = match method {
        Method::GET if collection && call.query.flag("watch") => {
            let timeout = call
                .query
                .get("timeoutSeconds")
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_WATCH_TIMEOUT);
            let request = WatchRequest {
                filter: filter(&target, &call.query)?,
                target,
                resource_version: call.query.get("resourceVersion").map(str::to_string),
                send_initial_events: call.query.get("sendInitialEvents").map(|v| v == "true"),
                timeout,
            };
            return Ok(watch::serve(Arc::clone(app), request));
        }
        Method::GET if collection => ok(app.lock().list(&target, &filter(&target, &call.query)?)),
        Method::GET => ok(app.lock().get(&target)?),
        Method::POST if collection => {
            let body = decode(call.content_type, call.body)?;
            let created = app.lock().create(&target, body, &write_params(call))?;
            json_response(201, &created)
        }
        Method::PUT if !collection => {
            let body = decode(call.content_type, call.body)?;
            ok(app.lock().replace(&target, body, &write_params(call))?)
        }
        Method::PATCH if !collection => {
            let kind = patch_kind(call.content_type)?;
            if kind == PatchKind::Strategic && target.rt.crd.is_some() {
                return Err(ApiError::unsupported_media_type(call.content_type));
            }
            let body = decode(call.content_type, call.body)?;
            let (obj, created) = app.lock().patch(&target, kind, &body, &write_params(call))?;
            json_response(if created { 201 } else { 200 }, &obj)
        }
        Method::DELETE if collection => {
            let opts = delete_options(call)?;
            let f = filter(&target, &call.query)?;
            ok(app.lock().delete_collection(&target, &f, &opts)?)
        }
        Method::DELETE => {
            let opts = delete_options(call)?;
            ok(app.lock().delete(&target, &opts)?)
        }
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} is not supported on this path"
            )))
        }
    };
    if method != Method::GET {
        app.after_write();
    }
    Ok(response)
}

/// A streaming JSON response (newline-delimited watch events).
pub fn stream_response(body: Body) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    #[test]
    fn query_and_path_decoding() {
        let q = Query::parse("labelSelector=app%3Dweb%2Ctier+in+%28a%29&force=true&x");
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(q.flag("force"));
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(percent_decode("a%2Fb+c%", false), "a/b+c%");
    }

    #[test]
    fn paths_resolve_namespaced_and_cluster_scoped() {
        let reg = Registry::builtin();
        let t = resolve(&reg, "", "v1", &["namespaces", "ns1", "configmaps", "c"]).unwrap();
        assert_eq!((t.namespace.as_deref(), t.name.as_deref()), (Some("ns1"), Some("c")));
        let t = resolve(&reg, "", "v1", &["namespaces", "ns1", "status"]).unwrap();
        assert_eq!(
            (t.rt.plural.as_str(), t.subresource),
            ("namespaces", Some(Subresource::Status))
        );
        let t = resolve(&reg, "", "v1", &["configmaps"]).unwrap();
        assert_eq!(t.namespace, None);
        assert!(resolve(&reg, "", "v1", &["configmaps", "c"]).is_err());
        assert!(resolve(&reg, "", "v1", &["namespaces", "ns1", "configmaps", "c", "scale"]).is_err());
        let t = resolve(&reg, "apps", "v1", &["namespaces", "a", "deployments", "d", "scale"]).unwrap();
        assert_eq!(t.subresource, Some(Subresource::Scale));
    }
}
