//! The API verbs (get, list, create, update, patch, delete) on the double's state, free
//! of HTTP. Every write goes through one pipeline, [`State::commit`]: identity and
//! server fields, per-kind defaults and validation, generation, the optional
//! controller, CRD status, then a no-op check, so that a write that changes nothing
//! keeps the object's resourceVersion (that is how clients see there was no drift).

use std::time::Duration;

use serde_json::{json, Value};

use crate::apply::{self, ApplyOptions, Scope};
use crate::controller;
use crate::crd;
use crate::error::{ApiError, FieldError};
use crate::patch;
use crate::resources::{split_api_version, Registry, ResourceType};
use crate::store::{Filter, Key, Store};
use crate::strategy;

/// How the double behaves beyond the API itself.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Report workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs) ready
    /// or complete as soon as they are written, as kube-controller-manager would once
    /// their pods run. Off: they have no status until a test writes one.
    pub auto_ready: bool,
    /// How long a new CRD waits before `Established=True` (and before its kind is
    /// served). Zero: at once.
    pub crd_establish_delay: Duration,
    /// With `auto_ready`: how long after a workload is written its ready status is
    /// written, as a separate status write by the controller (the object is first seen
    /// with its old status, `observedGeneration` behind, and its resourceVersion moves
    /// when it becomes ready). Zero: in the same write.
    pub ready_delay: Duration,
    /// Every this often, another controller (manager [`FOREIGN_MANAGER`]) writes the
    /// annotation [`FOREIGN_ANNOTATION`] on every object that is part of an ApplySet,
    /// moving its resourceVersion, as controllers on a real cluster do. Zero: never.
    pub foreign_writer_interval: Duration,
    /// Largest request body accepted, in bytes (413 past it); 0: the double's default,
    /// 16 MiB. The real apiserver's is 3 MiB.
    pub max_request_bytes: usize,
    /// Log every request to stderr.
    pub verbose: bool,
}

/// The field manager of the [`Config::foreign_writer_interval`] controller.
pub const FOREIGN_MANAGER: &str = "someone-elses-controller";
/// The annotation it writes (its value counts its rounds).
pub const FOREIGN_ANNOTATION: &str = "example.com/last-seen";

/// A subresource of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`.
    Status,
    /// `/scale`.
    Scale,
}

/// What a request addresses: a resource type at a version, and optionally a namespace,
/// an object name and a subresource.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource type.
    pub rt: ResourceType,
    /// The version in the URL.
    pub version: String,
    /// Namespace in the URL (`None` for cluster-scoped or all-namespaces requests).
    pub namespace: Option<String>,
    /// Object name in the URL.
    pub name: Option<String>,
    /// Subresource in the URL.
    pub subresource: Option<Subresource>,
}

impl Target {
    fn api_version(&self) -> String {
        self.rt.group_version(&self.version)
    }

    fn key_for(&self, name: &str) -> Key {
        Key {
            group: self.rt.group.clone(),
            plural: self.rt.plural.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.to_string(),
        }
    }

    fn key(&self) -> Result<Key, ApiError> {
        self.name
            .as_deref()
            .map(|n| self.key_for(n))
            .ok_or_else(|| ApiError::method_not_allowed("this verb needs an object name in the URL"))
    }

    fn not_found(&self, name: &str) -> ApiError {
        ApiError::not_found(&self.rt.group, &self.rt.plural, name)
    }

    /// The object as served at this target's version.
    pub fn render(&self, obj: &Value) -> Value {
        let mut o = obj.clone();
        o["apiVersion"] = json!(self.api_version());
        o
    }

    fn main_scope(&self) -> Scope {
        Scope::Main {
            status_subresource: self.rt.status,
        }
    }
}

/// The manager and options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteParams {
    /// `fieldManager` query parameter.
    pub field_manager: Option<String>,
    /// Manager for updates without `fieldManager`: the User-Agent up to the first `/`,
    /// as the real apiserver derives it.
    pub user_agent: String,
    /// `force=true`.
    pub force: bool,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
}

impl WriteParams {
    fn update_manager(&self) -> String {
        match &self.field_manager {
            Some(m) if !m.is_empty() => m.clone(),
            _ => {
                let agent = self.user_agent.split('/').next().unwrap_or_default();
                let agent: String = agent.chars().take(128).collect();
                if agent.is_empty() {
                    "unknown".to_string()
                } else {
                    agent
                }
            }
        }
    }
}

/// The PATCH flavours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/apply-patch+yaml`: server-side apply.
    Apply,
    /// `application/merge-patch+json`.
    Merge,
    /// `application/strategic-merge-patch+json` (approximated).
    Strategic,
    /// `application/json-patch+json`.
    Json,
}

/// DELETE options from the query and the DeleteOptions body.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// `propagationPolicy` (accepted; everything is deleted at once).
    pub propagation_policy: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// Everything the double holds.
#[derive(Debug)]
pub struct State {
    /// The objects.
    pub store: Store,
    /// The served types.
    pub registry: Registry,
    /// Behaviour switches.
    pub config: Config,
    /// CRDs created since the caller last looked, waiting for `Established` after
    /// [`Config::crd_establish_delay`].
    pub pending_establish: Vec<String>,
    /// Workloads written since the caller last looked, waiting for their ready status
    /// after [`Config::ready_delay`].
    pub pending_ready: Vec<Key>,
}

/// Current time as the apiserver writes it (RFC 3339, whole seconds, UTC).
pub fn now() -> String {
    let t = time::OffsetDateTime::now_utc();
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

fn new_uid() -> String {
    let n = fastrand::u128(..);
    let h = format!("{n:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn resource_version_of(obj: &Value) -> Option<&str> {
    obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
}

const NAMESPACES: (&str, &str) = ("", "namespaces");

fn is_namespace(rt: &ResourceType) -> bool {
    (rt.group.as_str(), rt.plural.as_str()) == NAMESPACES && rt.crd.is_none()
}

fn is_crd(rt: &ResourceType) -> bool {
    rt.group == "apiextensions.k8s.io" && rt.plural == "customresourcedefinitions"
}

impl State {
    /// A fresh cluster: built-in types and the namespaces k3s starts with.
    pub fn new(config: Config) -> Self {
        let mut state = State {
            store: Store::new(),
            registry: Registry::builtin(),
            config,
            pending_establish: Vec::new(),
            pending_ready: Vec::new(),
        };
        let rt = state
            .registry
            .find("", "v1", "namespaces")
            .cloned()
            .expect("namespaces are built in");
        let target = Target {
            rt,
            version: "v1".to_string(),
            namespace: None,
            name: None,
            subresource: None,
        };
        let params = WriteParams {
            user_agent: "kube-apiserver".to_string(),
            ..WriteParams::default()
        };
        for ns in strategy::INITIAL_NAMESPACES {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            state
                .create(&target, body, &params)
                .expect("the initial namespaces are valid");
        }
        state
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.store
            .get(&Key {
                group: String::new(),
                plural: "namespaces".to_string(),
                namespace: String::new(),
                name: ns.to_string(),
            })
            .is_some()
    }

    fn require_namespace(&self, t: &Target) -> Result<(), ApiError> {
        match &t.namespace {
            Some(ns) if t.rt.namespaced && !self.namespace_exists(ns) => Err(ApiError::not_found("", "namespaces", ns)),
            _ => Ok(()),
        }
    }

    /// GET of one object (or its status or scale).
    pub fn get(&self, t: &Target) -> Result<Value, ApiError> {
        let key = t.key()?;
        let obj = self.store.get(&key).ok_or_else(|| t.not_found(&key.name))?;
        Ok(match t.subresource {
            Some(Subresource::Scale) => scale_of(obj),
            _ => t.render(obj),
        })
    }

    /// LIST: a `KindList` with the current resourceVersion.
    pub fn list(&self, t: &Target, filter: &Filter) -> Value {
        let items: Vec<Value> = self
            .store
            .list(&t.rt.group, &t.rt.plural, t.namespace.as_deref())
            .filter(|(k, o)| filter.matches(k, o))
            .map(|(_, o)| t.render(o))
            .collect();
        self.list_of(t, items)
    }

    fn list_of(&self, t: &Target, items: Vec<Value>) -> Value {
        json!({
            "kind": format!("{}List", t.rt.kind),
            "apiVersion": t.api_version(),
            "metadata": {"resourceVersion": self.store.resource_version().to_string()},
            "items": items,
        })
    }

    /// POST to a collection.
    pub fn create(&mut self, t: &Target, mut body: Value, p: &WriteParams) -> Result<Value, ApiError> {
        if t.name.is_some() || t.subresource.is_some() {
            return Err(ApiError::method_not_allowed("POST is only allowed on collections"));
        }
        if t.rt.namespaced && t.namespace.is_none() {
            return Err(ApiError::no_such_resource());
        }
        check_type(t, &body, false)?;
        let meta = body["metadata"].clone();
        let name = match (meta["name"].as_str(), meta["generateName"].as_str()) {
            (Some(n), _) if !n.is_empty() => n.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => generate_name(prefix),
            _ => {
                return Err(ApiError::invalid(
                    &t.rt.qualified_kind(),
                    &t.rt.group,
                    "",
                    vec![FieldError::required(
                        "metadata.name",
                        "name or generateName is required",
                    )],
                ))
            }
        };
        let target = Target {
            name: Some(name.clone()),
            ..t.clone()
        };
        self.require_namespace(&target)?;
        let key = target.key()?;
        if self.store.get(&key).is_some() {
            return Err(ApiError::already_exists(&t.rt.group, &t.rt.plural, &name));
        }
        if t.rt.status {
            if let Some(m) = body.as_object_mut() {
                m.remove("status");
            }
        }
        let now = now();
        apply::record_update(
            &json!({}),
            &mut body,
            &p.update_manager(),
            &t.api_version(),
            t.main_scope(),
            &now,
        );
        let stored = self.commit(&target, None, body, t.main_scope(), p)?;
        Ok(target.render(&stored))
    }

    /// PUT of an object, its status or its scale.
    pub fn replace(&mut self, t: &Target, body: Value, p: &WriteParams) -> Result<Value, ApiError> {
        let key = t.key()?;
        let old = self.store.get(&key).cloned().ok_or_else(|| t.not_found(&key.name))?;
        if let Some(rv) = resource_version_of(&body) {
            if Some(rv) != resource_version_of(&old) {
                return Err(ApiError::modified(&t.rt.group, &t.rt.plural, &key.name));
            }
        }
        if let Some(name) = body["metadata"]["name"].as_str() {
            if name != key.name && t.subresource != Some(Subresource::Scale) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({})",
                    key.name
                )));
            }
        }
        let now = now();
        let manager = p.update_manager();
        let (scope, mut new) = match t.subresource {
            None => {
                check_type(t, &body, false)?;
                let mut new = body;
                if t.rt.status {
                    set_or_remove(&mut new, "status", old.get("status").cloned());
                }
                (t.main_scope(), new)
            }
            Some(Subresource::Status) => {
                let mut new = old.clone();
                set_or_remove(&mut new, "status", body.get("status").cloned());
                (Scope::Status, new)
            }
            Some(Subresource::Scale) => (Scope::Scale, with_replicas(t, &old, &body)?),
        };
        apply::record_update(&old, &mut new, &manager, &t.api_version(), scope, &now);
        let stored = self.commit(t, Some(&old), new, scope, p)?;
        Ok(match t.subresource {
            Some(Subresource::Scale) => scale_of(&stored),
            _ => t.render(&stored),
        })
    }

    /// PATCH; returns the result and whether it created the object (apply only).
    pub fn patch(
        &mut self,
        t: &Target,
        kind: PatchKind,
        body: &Value,
        p: &WriteParams,
    ) -> Result<(Value, bool), ApiError> {
        let key = t.key()?;
        let old = self.store.get(&key).cloned();
        let now = now();
        if kind == PatchKind::Apply {
            return self.server_side_apply(t, &key, old, body, p, &now);
        }
        let old = old.ok_or_else(|| t.not_found(&key.name))?;
        let apply_patch = |target: &mut Value| -> Result<(), ApiError> {
            match kind {
                PatchKind::Merge => patch::merge_patch(target, body),
                PatchKind::Strategic => patch::strategic_merge(target, body),
                PatchKind::Json => patch::json_patch(target, body).map_err(|e| {
                    ApiError::invalid(
                        &t.rt.qualified_kind(),
                        &t.rt.group,
                        &key.name,
                        vec![FieldError {
                            reason: "FieldValueInvalid",
                            field: "patch".to_string(),
                            message: e,
                        }],
                    )
                })?,
                PatchKind::Apply => unreachable!("handled above"),
            }
            Ok(())
        };
        let manager = p.update_manager();
        let (scope, mut new) = match t.subresource {
            Some(Subresource::Scale) => {
                let mut scale = scale_of(&old);
                apply_patch(&mut scale)?;
                (Scope::Scale, with_replicas(t, &old, &scale)?)
            }
            sub => {
                let mut patched = old.clone();
                apply_patch(&mut patched)?;
                if resource_version_of(&patched) != resource_version_of(&old) {
                    return Err(ApiError::modified(&t.rt.group, &t.rt.plural, &key.name));
                }
                if sub == Some(Subresource::Status) {
                    let mut new = old.clone();
                    set_or_remove(&mut new, "status", patched.get("status").cloned());
                    (Scope::Status, new)
                } else {
                    if t.rt.status {
                        set_or_remove(&mut patched, "status", old.get("status").cloned());
                    }
                    (t.main_scope(), patched)
                }
            }
        };
        apply::record_update(&old, &mut new, &manager, &t.api_version(), scope, &now);
        let stored = self.commit(t, Some(&old), new, scope, p)?;
        let out = match t.subresource {
            Some(Subresource::Scale) => scale_of(&stored),
            _ => t.render(&stored),
        };
        Ok((out, false))
    }

    fn server_side_apply(
        &mut self,
        t: &Target,
        key: &Key,
        old: Option<Value>,
        applied: &Value,
        p: &WriteParams,
        now: &str,
    ) -> Result<(Value, bool), ApiError> {
        let manager = p
            .field_manager
            .as_deref()
            .filter(|m| !m.is_empty())
            .ok_or_else(|| ApiError::bad_request("fieldManager is required for apply requests"))?;
        let scope = match t.subresource {
            None => t.main_scope(),
            Some(Subresource::Status) => Scope::Status,
            Some(Subresource::Scale) => {
                return Err(ApiError::bad_request(
                    "server-side apply to the scale subresource is not supported by this test double",
                ))
            }
        };
        check_type(t, applied, true)?;
        if let Some(name) = applied["metadata"]["name"].as_str() {
            if name != key.name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({name}) does not match the name on the URL ({})",
                    key.name
                )));
            }
        }
        if let Some(rv) = resource_version_of(applied) {
            if Some(rv) != old.as_ref().and_then(resource_version_of) {
                return Err(ApiError::modified(&t.rt.group, &t.rt.plural, &key.name));
            }
        }
        let live = match &old {
            Some(o) => o.clone(),
            None if t.subresource.is_some() => return Err(t.not_found(&key.name)),
            None => {
                self.require_namespace(t)?;
                strategy::validate_name(&t.rt, &key.name)?;
                json!({})
            }
        };
        let api_version = t.api_version();
        let opts = ApplyOptions {
            manager,
            force: p.force,
            api_version: &api_version,
            scope,
            now,
        };
        let merged = apply::apply(&live, applied, opts).map_err(|c| apply::conflict_error(&c))?;
        let stored = self.commit(t, old.as_ref(), merged, scope, p)?;
        Ok((t.render(&stored), old.is_none()))
    }

    /// The write pipeline shared by every verb; returns the stored object (unchanged,
    /// with its old resourceVersion, when the write is a no-op).
    fn commit(
        &mut self,
        t: &Target,
        old: Option<&Value>,
        mut new: Value,
        scope: Scope,
        p: &WriteParams,
    ) -> Result<Value, ApiError> {
        let rt = &t.rt;
        let key = t.key()?;
        let now = now();
        let api_version = t.api_version();
        if !new.is_object() {
            return Err(ApiError::bad_request("the object must be a JSON/YAML map"));
        }
        new["apiVersion"] = json!(api_version);
        new["kind"] = json!(rt.kind);
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let meta = new["metadata"].as_object_mut().expect("metadata is a map");
        meta.insert("name".to_string(), json!(key.name));
        if rt.namespaced {
            meta.insert("namespace".to_string(), json!(key.namespace));
        } else {
            meta.remove("namespace");
        }
        for server_owned in ["selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"] {
            meta.remove(server_owned);
        }
        match old {
            None => {
                meta.insert("uid".to_string(), json!(new_uid()));
                meta.insert("creationTimestamp".to_string(), json!(now));
                meta.remove("resourceVersion");
            }
            Some(o) => {
                for kept in ["uid", "creationTimestamp", "resourceVersion"] {
                    match o["metadata"].get(kept) {
                        Some(v) => meta.insert(kept.to_string(), v.clone()),
                        None => meta.remove(kept),
                    };
                }
            }
        }
        if old.is_none() {
            strategy::validate_name(rt, &key.name)?;
        }
        strategy::check_shape(rt, &new)?;
        strategy::default_fields(rt, old, &mut new);
        if is_crd(rt) {
            crd::validate(&new)?;
        }
        if let Some(o) = old {
            strategy::check_immutable(rt, o, &new)?;
        }
        strategy::set_generation(rt, old, &mut new);

        let mut ready_later = false;
        if self.config.auto_ready && matches!(scope, Scope::Main { .. } | Scope::Scale) {
            if let Some(status) = controller::ready_status(rt, &new, &now) {
                if self.config.ready_delay.is_zero() {
                    self.write_status(&mut new, status, controller::MANAGER, &api_version, &now);
                } else {
                    ready_later = !p.dry_run && new.get("status") != Some(&status);
                }
            }
        }
        if is_crd(rt) {
            let established = old.is_some_and(crd::is_established) || self.config.crd_establish_delay.is_zero();
            let status = crd::status(&new, old, established, &now);
            self.write_status(&mut new, status, "kube-apiserver", &api_version, &now);
        }

        if old == Some(&new) {
            return Ok(new);
        }
        if p.dry_run {
            return Ok(new);
        }
        let stored = self.store.write(key.clone(), new);
        if is_crd(rt) {
            self.crd_written(&stored, old.is_none());
        }
        if ready_later {
            self.pending_ready.push(key);
        }
        Ok(stored)
    }

    fn write_status(&self, obj: &mut Value, status: Value, manager: &str, api_version: &str, now: &str) {
        if obj.get("status") == Some(&status) {
            return;
        }
        let before = obj.clone();
        obj["status"] = status;
        apply::record_update(&before, obj, manager, api_version, Scope::Status, now);
    }

    fn crd_written(&mut self, crd_obj: &Value, created: bool) {
        let name = crd_obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if crd::is_established(crd_obj) {
            let types = crd::resource_type(crd_obj).into_iter().collect();
            self.registry.set_crd_types(&name, types);
        } else if created {
            self.pending_establish.push(name);
        }
    }

    /// Marks a CRD `Established` and starts serving its kind (the delayed half of
    /// [`Config::crd_establish_delay`]). Does nothing if it is gone or already done.
    pub fn establish_crd(&mut self, name: &str) {
        let key = Key {
            group: "apiextensions.k8s.io".to_string(),
            plural: "customresourcedefinitions".to_string(),
            namespace: String::new(),
            name: name.to_string(),
        };
        let Some(old) = self.store.get(&key).cloned() else {
            return;
        };
        if crd::is_established(&old) {
            return;
        }
        let now = now();
        let mut new = old.clone();
        let status = crd::status(&old, Some(&old), true, &now);
        let api_version = old["apiVersion"]
            .as_str()
            .unwrap_or("apiextensions.k8s.io/v1")
            .to_string();
        self.write_status(&mut new, status, "kube-apiserver", &api_version, &now);
        let stored = self.store.write(key, new);
        self.crd_written(&stored, false);
    }

    /// Writes a workload's ready status, as its controller would once its pods run (the
    /// delayed half of [`Config::ready_delay`]): a status write of its own, by
    /// kube-controller-manager, that moves the resourceVersion. Does nothing if the
    /// object is gone or already ready.
    pub fn become_ready(&mut self, key: &Key) {
        let Some(old) = self.store.get(key).cloned() else {
            return;
        };
        let api_version = old["apiVersion"].as_str().unwrap_or_default().to_string();
        let version = api_version.rsplit('/').next().unwrap_or_default();
        let Some(rt) = self.registry.find(&key.group, version, &key.plural) else {
            return;
        };
        let now = now();
        let Some(status) = controller::ready_status(rt, &old, &now) else {
            return;
        };
        let mut new = old.clone();
        self.write_status(&mut new, status, controller::MANAGER, &api_version, &now);
        if new != old {
            self.store.write(key.clone(), new);
        }
    }

    /// One round of the [`Config::foreign_writer_interval`] controller: writes
    /// [`FOREIGN_ANNOTATION`] = `round` on every object labelled as part of an ApplySet,
    /// as an update by [`FOREIGN_MANAGER`]. Returns how many objects it wrote.
    pub fn foreign_write(&mut self, round: u64) -> usize {
        let keys: Vec<Key> = self
            .store
            .all()
            .filter(|(_, o)| !o["metadata"]["labels"]["applyset.kubernetes.io/part-of"].is_null())
            .map(|(k, _)| k.clone())
            .collect();
        let now = now();
        for key in &keys {
            let Some(old) = self.store.get(key).cloned() else {
                continue;
            };
            let mut new = old.clone();
            if !new["metadata"]["annotations"].is_object() {
                new["metadata"]["annotations"] = json!({});
            }
            new["metadata"]["annotations"][FOREIGN_ANNOTATION] = json!(round.to_string());
            let api_version = old["apiVersion"].as_str().unwrap_or_default().to_string();
            let version = api_version.rsplit('/').next().unwrap_or_default();
            let status_subresource = self
                .registry
                .find(&key.group, version, &key.plural)
                .is_some_and(|rt| rt.status);
            let scope = Scope::Main { status_subresource };
            apply::record_update(&old, &mut new, FOREIGN_MANAGER, &api_version, scope, &now);
            self.store.write(key.clone(), new);
        }
        keys.len()
    }

    /// DELETE of one object; answers a `Status` of success.
    pub fn delete(&mut self, t: &Target, opts: &DeleteOptions) -> Result<Value, ApiError> {
        let key = t.key()?;
        let old = self.store.get(&key).cloned().ok_or_else(|| t.not_found(&key.name))?;
        let (group, plural) = (&t.rt.group, &t.rt.plural);
        if let Some(uid) = &opts.uid {
            if old["metadata"]["uid"].as_str() != Some(uid) {
                let what = format!(
                    "UID in precondition: {uid}, UID in object meta: {}",
                    old["metadata"]["uid"]
                );
                return Err(ApiError::precondition_failed(group, plural, &key.name, &what));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if resource_version_of(&old) != Some(rv) {
                let what = format!(
                    "ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    old["metadata"]["resourceVersion"]
                );
                return Err(ApiError::precondition_failed(group, plural, &key.name, &what));
            }
        }
        if is_namespace(&t.rt) && strategy::PROTECTED_NAMESPACES.contains(&key.name.as_str()) {
            return Err(ApiError {
                code: 403,
                reason: "Forbidden",
                message: format!(
                    "namespaces \"{}\" is forbidden: this namespace may not be deleted",
                    key.name
                ),
                details: Some(json!({"name": key.name, "kind": "namespaces"})),
            });
        }
        if !opts.dry_run {
            self.remove(&key);
        }
        let mut details = json!({"name": key.name, "kind": plural, "uid": old["metadata"]["uid"]});
        if !group.is_empty() {
            details["group"] = json!(group);
        }
        Ok(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}))
    }

    /// DELETE of a collection: every selected object; answers the list of them.
    pub fn delete_collection(&mut self, t: &Target, filter: &Filter, opts: &DeleteOptions) -> Result<Value, ApiError> {
        let keys: Vec<Key> = self
            .store
            .list(&t.rt.group, &t.rt.plural, t.namespace.as_deref())
            .filter(|(k, o)| filter.matches(k, o))
            .map(|(k, _)| k.clone())
            .filter(|k| !(is_namespace(&t.rt) && strategy::PROTECTED_NAMESPACES.contains(&k.name.as_str())))
            .collect();
        let mut items = Vec::new();
        for key in keys {
            let obj = if opts.dry_run {
                self.store.get(&key).cloned()
            } else {
                self.remove(&key)
            };
            items.extend(obj.map(|o| t.render(&o)));
        }
        Ok(self.list_of(t, items))
    }

    /// Deletes an object and what hangs off it: a namespace's contents, a CRD's
    /// custom resources and served kind.
    fn remove(&mut self, key: &Key) -> Option<Value> {
        if (key.group.as_str(), key.plural.as_str()) == NAMESPACES {
            for k in self.store.keys_in_namespace(&key.name) {
                self.store.delete(&k);
            }
        }
        if key.group == "apiextensions.k8s.io" && key.plural == "customresourcedefinitions" {
            let served: Vec<(String, String)> = self
                .registry
                .types()
                .iter()
                .filter(|rt| rt.crd.as_deref() == Some(key.name.as_str()))
                .map(|rt| (rt.group.clone(), rt.plural.clone()))
                .collect();
            for (group, plural) in served {
                let doomed: Vec<Key> = self.store.list(&group, &plural, None).map(|(k, _)| k.clone()).collect();
                for k in doomed {
                    self.store.delete(&k);
                }
            }
            self.registry.set_crd_types(&key.name, Vec::new());
        }
        self.store.delete(key)
    }
}

/// Checks `apiVersion`/`kind` of a body against the URL (required for apply).
fn check_type(t: &Target, body: &Value, required: bool) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON or YAML object"));
    }
    let api_version = body["apiVersion"].as_str();
    let kind = body["kind"].as_str();
    if required && (api_version.is_none() || kind.is_none()) {
        return Err(ApiError::bad_request(format!(
            "apiVersion and kind must be set in an apply patch (expected {} {})",
            t.api_version(),
            t.rt.kind
        )));
    }
    if let Some(av) = api_version {
        let (group, version) = split_api_version(av);
        if group != t.rt.group || !t.rt.serves(version) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.api_version()
            )));
        }
    }
    if let Some(kind) = kind {
        if kind != t.rt.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                t.rt.kind
            )));
        }
    }
    if let (Some(ns), Some(body_ns)) = (&t.namespace, body["metadata"]["namespace"].as_str()) {
        if t.rt.namespaced && ns != body_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

fn set_or_remove(obj: &mut Value, field: &str, value: Option<Value>) {
    match value {
        Some(v) => obj[field] = v,
        None => {
            if let Some(m) = obj.as_object_mut() {
                m.remove(field);
            }
        }
    }
}

fn generate_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// The `autoscaling/v1` Scale view of a replicated object.
fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = obj["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_u64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_u64().unwrap_or(0), "selector": selector},
    })
}

/// `old` with `.spec.replicas` taken from a Scale object.
fn with_replicas(t: &Target, old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let replicas = scale["spec"]["replicas"].as_u64().ok_or_else(|| {
        let name = old["metadata"]["name"].as_str().unwrap_or_default();
        ApiError::invalid(
            "Scale.autoscaling",
            "autoscaling",
            name,
            vec![FieldError::invalid(
                "spec.replicas",
                &scale["spec"]["replicas"],
                "must be greater than or equal to 0",
            )],
        )
    })?;
    if let Some(rv) = resource_version_of(scale) {
        if Some(rv) != resource_version_of(old) {
            let name = old["metadata"]["name"].as_str().unwrap_or_default();
            return Err(ApiError::modified(&t.rt.group, &t.rt.plural, name));
        }
    }
    let mut new = old.clone();
    new["spec"]["replicas"] = json!(replicas);
    Ok(new)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;

    fn target(state: &State, group: &str, plural: &str, ns: Option<&str>, name: Option<&str>) -> Target {
        Target {
            rt: state.registry.find(group, "v1", plural).unwrap().clone(),
            version: "v1".into(),
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: None,
        }
    }

    fn params(manager: &str) -> WriteParams {
        WriteParams {
            field_manager: Some(manager.into()),
            ..WriteParams::default()
        }
    }

    #[test]
    fn noop_apply_keeps_the_resource_version() {
        let mut s = State::new(Config::default());
        let t = target(&s, "", "configmaps", Some("default"), Some("c"));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let (first, created) = s.patch(&t, PatchKind::Apply, &cm, &params("m")).unwrap();
        assert!(created);
        let (again, created) = s.patch(&t, PatchKind::Apply, &cm, &params("m")).unwrap();
        assert!(!created);
        assert_eq!(first, again);
        let mut changed = cm.clone();
        changed["data"]["a"] = json!("2");
        let (third, _) = s.patch(&t, PatchKind::Apply, &changed, &params("m")).unwrap();
        assert_ne!(
            third["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
    }

    #[test]
    fn apply_into_a_missing_namespace_is_not_found() {
        let mut s = State::new(Config::default());
        let t = target(&s, "", "configmaps", Some("nope"), Some("c"));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        let err = s.patch(&t, PatchKind::Apply, &cm, &params("m")).unwrap_err();
        assert_eq!((err.code, err.message.as_str()), (404, "namespaces \"nope\" not found"));
    }

    #[test]
    fn deleting_a_namespace_deletes_its_objects() {
        let mut s = State::new(Config::default());
        let ns = target(&s, "", "namespaces", None, None);
        s.create(&ns, json!({"metadata": {"name": "x"}}), &params("m")).unwrap();
        let cms = target(&s, "", "configmaps", Some("x"), None);
        s.create(&cms, json!({"metadata": {"name": "c"}}), &params("m"))
            .unwrap();
        s.delete(
            &target(&s, "", "namespaces", None, Some("x")),
            &DeleteOptions::default(),
        )
        .unwrap();
        assert_eq!(s.list(&cms, &Filter::default())["items"], json!([]));
        let err = s
            .delete(
                &target(&s, "", "namespaces", None, Some("default")),
                &DeleteOptions::default(),
            )
            .unwrap_err();
        assert_eq!(err.code, 403);
    }

    #[test]
    fn generate_name_put_preconditions_dry_run_and_collection_delete() {
        let mut s = State::new(Config::default());
        let cms = target(&s, "", "configmaps", Some("default"), None);
        let made = s
            .create(
                &cms,
                json!({"metadata": {"generateName": "x-", "labels": {"k": "a"}}}),
                &params("m"),
            )
            .unwrap();
        let name = made["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("x-") && name.len() == 7, "{name}");
        s.create(
            &cms,
            json!({"metadata": {"name": "y", "labels": {"k": "b"}}}),
            &params("m"),
        )
        .unwrap();
        let err = s
            .create(&cms, json!({"metadata": {"name": "y"}}), &params("m"))
            .unwrap_err();
        assert_eq!((err.code, err.reason), (409, "AlreadyExists"));

        let one = target(&s, "", "configmaps", Some("default"), Some(&name));
        let mut stale = made.clone();
        stale["metadata"]["resourceVersion"] = json!("1");
        assert_eq!(s.replace(&one, stale, &params("m")).unwrap_err().code, 409);
        let mut fresh = made.clone();
        fresh["data"] = json!({"a": "b"});
        let dry = WriteParams {
            dry_run: true,
            ..params("m")
        };
        assert_eq!(s.replace(&one, fresh.clone(), &dry).unwrap()["data"]["a"], "b");
        assert!(s.get(&one).unwrap().get("data").is_none(), "dry run stores nothing");
        let replaced = s.replace(&one, fresh, &params("m")).unwrap();
        assert_ne!(
            replaced["metadata"]["resourceVersion"],
            made["metadata"]["resourceVersion"]
        );

        let filter = Filter {
            namespace: Some("default".into()),
            labels: crate::selector::LabelSelector::parse("k=a").unwrap(),
            ..Filter::default()
        };
        let gone = s.delete_collection(&cms, &filter, &DeleteOptions::default()).unwrap();
        assert_eq!(gone["kind"], "ConfigMapList");
        assert_eq!(gone["items"].as_array().unwrap().len(), 1);
        let left = s.list(&cms, &Filter::default());
        assert_eq!(left["items"][0]["metadata"]["name"], "y");
    }

    #[test]
    fn with_a_ready_delay_the_ready_status_is_a_later_write_of_its_own() {
        let mut s = State::new(Config {
            auto_ready: true,
            ready_delay: Duration::from_millis(50),
            ..Config::default()
        });
        let t = target(&s, "apps", "deployments", Some("default"), Some("web"));
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}});
        let (written, _) = s.patch(&t, PatchKind::Apply, &d, &params("m")).unwrap();
        assert!(
            written["status"]["readyReplicas"].is_null(),
            "not ready yet: {written:#}"
        );
        let pending = std::mem::take(&mut s.pending_ready);
        assert_eq!(pending.len(), 1);
        s.become_ready(&pending[0]);
        let ready = s.get(&t).unwrap();
        assert_eq!(ready["status"]["readyReplicas"], 2);
        assert_ne!(
            ready["metadata"]["resourceVersion"], written["metadata"]["resourceVersion"],
            "becoming ready is a write of its own"
        );
        let managers: Vec<&str> = ready["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert!(managers.contains(&controller::MANAGER), "{managers:?}");
    }

    #[test]
    fn the_foreign_writer_annotates_applyset_members_only_and_moves_their_resource_version() {
        let mut s = State::new(Config::default());
        let t = target(&s, "", "configmaps", Some("default"), Some("mine"));
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "mine", "labels": {"applyset.kubernetes.io/part-of": "applyset-x-v1"}}});
        let (written, _) = s.patch(&t, PatchKind::Apply, &cm, &params("drover")).unwrap();
        let other = target(&s, "", "configmaps", Some("default"), Some("other"));
        let plain = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other"}});
        s.patch(&other, PatchKind::Apply, &plain, &params("m")).unwrap();
        assert_eq!(s.foreign_write(7), 1);
        let after = s.get(&t).unwrap();
        assert_eq!(after["metadata"]["annotations"][FOREIGN_ANNOTATION], "7");
        assert_ne!(
            after["metadata"]["resourceVersion"],
            written["metadata"]["resourceVersion"]
        );
        let managers: Vec<&str> = after["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|f| f["manager"].as_str())
            .collect();
        assert!(
            managers.contains(&FOREIGN_MANAGER) && managers.contains(&"drover"),
            "{managers:?}"
        );
        assert!(s.get(&other).unwrap()["metadata"]["annotations"].is_null());
    }

    #[test]
    fn auto_ready_reports_deployments_available() {
        let mut s = State::new(Config {
            auto_ready: true,
            ..Config::default()
        });
        let mut t = target(&s, "apps", "deployments", Some("default"), Some("web"));
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}}});
        let (obj, _) = s.patch(&t, PatchKind::Apply, &d, &params("m")).unwrap();
        assert_eq!(obj["status"]["readyReplicas"], 2);
        assert_eq!(obj["status"]["observedGeneration"], 1);
        t.subresource = Some(Subresource::Scale);
        let scale = s
            .patch(
                &t,
                PatchKind::Merge,
                &json!({"spec": {"replicas": 5}}),
                &params("kubectl-scale"),
            )
            .unwrap()
            .0;
        assert_eq!(scale["spec"]["replicas"], 5);
        assert_eq!(scale["status"]["selector"], "app=web");
        t.subresource = None;
        let obj = s.get(&t).unwrap();
        assert_eq!(obj["status"]["readyReplicas"], 5);
        assert_eq!(obj["metadata"]["generation"], 2);
    }
}
