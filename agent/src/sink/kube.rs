//! The `kube` sink: applies bundles through the Kubernetes API with server-side apply
//! (field manager `drover`), so the agent can order, prune, wait for health and see drift.
//!
//! * **Order**: Namespaces and CustomResourceDefinitions first; each CRD must report
//!   `Established` before the objects of the bundle are applied, then discovery is asked
//!   again so the new kinds resolve.
//! * **Inventory** (ApplySet, KEP-3659): each bundle has a parent ConfigMap
//!   `drover-applyset-<bundle>` in the agent's namespace, labelled
//!   `applyset.kubernetes.io/id=<id>`, annotated with the group-kinds and namespaces it
//!   contains; every applied object carries `applyset.kubernetes.io/part-of=<id>`. An object
//!   of the inventory no longer in the bundle is deleted, unless it is annotated
//!   `drover.dev/prune: disabled`. Only objects carrying this bundle's part-of label are
//!   ever deleted.
//! * **Health**: Deployments, StatefulSets and DaemonSets rolled out, Jobs complete, objects
//!   with a `Ready` condition true; anything else is healthy once it exists.
//! * **Drift**: every cycle re-applies; an object whose `generation` (or, for kinds without
//!   one, `resourceVersion`) moved since drover last applied it had drifted and is counted.

pub(crate) mod bundles;
mod discovery;
mod drift;
mod health;
mod ownership;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::allow::{AllowList, Candidate, Placement};
use crate::error::{Error, KubeContext, KubeWait, Result};
use crate::format::BundleName;
use crate::render::{Object as Rendered, Scopes};

/// Field manager of every apply.
pub const FIELD_MANAGER: &str = "drover";
/// Namespace of namespaced objects that name none and whose bundle sets none: `default`,
/// as kubectl and k3s's deploy controller use, whether the agent runs in a pod (where the
/// client's own default would be the agent's namespace) or outside.
pub const OBJECT_DEFAULT_NAMESPACE: &str = "default";
/// Annotation that keeps an object when it leaves its bundle.
pub const PRUNE_ANNOTATION: &str = "drover.dev/prune";
/// Label naming the ApplySet an object belongs to.
pub const PART_OF_LABEL: &str = "applyset.kubernetes.io/part-of";
/// Label of an ApplySet parent.
pub const ID_LABEL: &str = "applyset.kubernetes.io/id";
/// Annotation of a parent listing the group-kinds of its members.
pub const GROUP_KINDS_ANNOTATION: &str = "applyset.kubernetes.io/contains-group-kinds";
/// Annotation of a parent listing namespaces of its members besides its own.
pub const NAMESPACES_ANNOTATION: &str = "applyset.kubernetes.io/additional-namespaces";
/// Annotation of a parent naming the tool that manages it.
pub const TOOLING_ANNOTATION: &str = "applyset.kubernetes.io/tooling";
/// What drover writes in its parents' tooling annotation.
const TOOLING: &str = concat!("drover/", env!("CARGO_PKG_VERSION"));
/// Annotation of a parent: keep the members when the bundle is removed.
pub const KEEP_ANNOTATION: &str = "drover.dev/keep-resources";
/// Default namespace of the agent (ApplySet parents, status ConfigMap).
pub const DEFAULT_NAMESPACE: &str = "drover-system";
/// How long a CRD may take to become Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an object deleted to be created again may take to be gone.
const DELETE_WAIT: Duration = Duration::from_secs(30);
/// How often a wait asks the API server again.
const POLL: Duration = Duration::from_millis(200);
/// Kind of the objects that define kinds.
const CRD_KIND: &str = "CustomResourceDefinition";

/// Where the kube sink connects and keeps its bookkeeping.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    /// A kubeconfig file; without it, in-cluster configuration or `$KUBECONFIG`.
    pub kubeconfig: Option<PathBuf>,
    /// The agent's namespace (ApplySet parents, status ConfigMap).
    pub namespace: String,
}

/// A connection to one cluster's API server.
#[derive(Clone)]
pub struct KubeSink {
    client: kube::Client,
    namespace: String,
    /// What discovery answered, kept across cycles.
    discovery: discovery::Discovery,
}

impl std::fmt::Debug for KubeSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeSink").field("namespace", &self.namespace).finish()
    }
}

/// One object to apply.
#[derive(Debug, Clone)]
struct Object {
    gvk: GroupVersionKind,
    name: String,
    namespace: Option<String>,
    body: Value,
}

/// A bundle's rendered objects as the kube sink applies them, converted once.
#[derive(Debug, Clone)]
pub struct Prepared {
    objects: Vec<Object>,
}

impl Prepared {
    /// The objects of `bundle` (`what` in errors) to apply: each needs a name, and labels
    /// that are a mapping.
    pub fn new(what: &str, rendered: &[Rendered]) -> Result<Self> {
        let objects = rendered.iter().map(|o| to_apply(o, what)).collect::<Result<_>>()?;
        Ok(Prepared { objects })
    }
}

/// How a bundle wants to be applied (from its index entry).
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Take fields other managers own; recreate on immutable-field changes.
    pub force: bool,
    /// Keep the objects when the bundle is removed.
    pub keep_resources: bool,
}

/// The result of applying one bundle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Objects applied.
    pub objects: usize,
    /// Objects that had drifted from what drover applied last time (and were restored).
    pub drifted: usize,
    /// Objects deleted because they left the bundle.
    pub pruned: usize,
    /// Members that left the bundle but were not drover's to delete (another manager made
    /// them, or they are outside the parent's namespaces or the allow-list): reported, kept.
    pub left: usize,
    /// `generation`/`resourceVersion` of each object after the apply, to detect drift next time.
    pub marks: BTreeMap<String, String>,
    /// `None` when every object is healthy, else the first object that is not and why.
    pub unhealthy: Option<String>,
}

fn kube_err(what: impl Into<String>, source: kube::Error) -> Error {
    Error::Kube {
        what: what.into(),
        context: KubeContext::Request,
        source,
    }
}

/// How the API server refused an apply, as far as the sink decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiRefusal {
    /// Fields another field manager owns (409).
    Conflict,
    /// A field that may not change once set (422).
    ImmutableField,
    /// Any other invalid object (422).
    Invalid,
}

/// The wording apimachinery gives every immutable-field cause (`FieldImmutableErrorMsg`;
/// immutable ConfigMaps and Secrets add to it): the API has no reason code of its own
/// for this.
const FIELD_IMMUTABLE: &str = "field is immutable";

fn api_refusal(e: &kube::Error) -> Option<ApiRefusal> {
    let kube::Error::Api(status) = e else {
        return None;
    };
    let causes = status.details.as_ref().map(|d| d.causes.as_slice()).unwrap_or_default();
    let immutable = match causes.is_empty() {
        true => status.message.contains(FIELD_IMMUTABLE),
        false => causes.iter().any(|c| c.message.contains(FIELD_IMMUTABLE)),
    };
    match status.code {
        409 => Some(ApiRefusal::Conflict),
        422 if immutable => Some(ApiRefusal::ImmutableField),
        422 => Some(ApiRefusal::Invalid),
        _ => None,
    }
}

/// An apply's error, explained by how the API server refused it.
fn apply_err(what: String, source: kube::Error) -> Error {
    let context = match api_refusal(&source) {
        Some(ApiRefusal::Conflict) => KubeContext::Conflict,
        Some(ApiRefusal::ImmutableField | ApiRefusal::Invalid) => KubeContext::Refused,
        None => KubeContext::Request,
    };
    Error::Kube { what, context, source }
}

/// Namespaces, then CRDs, then the rest.
fn apply_order(object: &Object) -> u8 {
    match (object.gvk.group.as_str(), object.gvk.kind.as_str()) {
        ("", "Namespace") => 0,
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 1,
        _ => 2,
    }
}

/// What applying a bundle's objects one by one has gathered.
#[derive(Debug, Default)]
struct Progress {
    applied: Applied,
    /// Namespaces the objects landed in.
    namespaces: BTreeSet<String>,
    /// Keys of the objects applied, which pruning keeps.
    keep: BTreeSet<String>,
}

impl Progress {
    /// Records `object` as the server returned it (`result`); `before` is the member as
    /// listed before the apply, if it was.
    fn record(
        &mut self,
        object: &Object,
        result: &DynamicObject,
        before: Option<&DynamicObject>,
        previous: &BTreeMap<String, String>,
    ) {
        // The key as the server names the object (a namespaced object given no
        // namespace lands in the default one), so pruning recognises it.
        let key = object_key(&object.gvk, result.metadata.namespace.as_deref(), &object.name);
        if drift::restored(previous.contains_key(&key), before, result) {
            self.applied.drifted += 1;
        }
        if let Some(ns) = &result.metadata.namespace {
            self.namespaces.insert(ns.clone());
        }
        self.applied.marks.insert(key.clone(), drift::mark(result));
        self.keep.insert(key);
        self.applied.objects += 1;
        if self.applied.unhealthy.is_none() {
            self.applied.unhealthy = unhealthy(&object.gvk.kind, result);
        }
    }
}

impl KubeSink {
    /// Connects with `opts`.
    pub async fn connect(opts: &KubeOptions) -> Result<Self> {
        let config = match &opts.kubeconfig {
            Some(path) => {
                let file = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                    .await
                    .map_err(|e| Error::Config(format!("kubeconfig {}: {e}", path.display())))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| Error::Config(format!("no in-cluster configuration or KUBECONFIG: {e}")))?,
        };
        let client = kube::Client::try_from(config).map_err(|e| Error::Config(format!("Kubernetes client: {e}")))?;
        Ok(KubeSink {
            client,
            namespace: opts.namespace.clone(),
            discovery: discovery::Discovery::default(),
        })
    }

    /// The ApplySet id of `bundle`: `applyset-<base64url(sha256(name.namespace.kind.group))>-v1`
    /// of its parent ConfigMap, as KEP-3659 defines it.
    pub fn applyset_id(&self, bundle: &BundleName) -> String {
        let parent = format!("{}.{}.ConfigMap.", parent_name(bundle), self.namespace);
        let hash = sha2::Sha256::digest(parent.as_bytes());
        use ct_codecs::Encoder;
        let b64 = ct_codecs::Base64UrlSafeNoPadding::encode_to_string(hash).expect("base64 of 32 bytes");
        format!("applyset-{b64}-v1")
    }

    async fn resolve(&self, gvk: &GroupVersionKind) -> Result<(ApiResource, ApiCapabilities)> {
        self.discovery
            .pinned(&self.client, gvk)
            .await
            .map_err(|source| Error::Kube {
                what: format!("{}/{} {}", gvk.group, gvk.version, gvk.kind),
                context: KubeContext::UnknownKind,
                source,
            })
    }

    fn api(&self, ar: &ApiResource, caps: &ApiCapabilities, namespace: Option<&str>) -> Api<DynamicObject> {
        match (&caps.scope, namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            (Scope::Namespaced, None) => Api::namespaced_with(self.client.clone(), OBJECT_DEFAULT_NAMESPACE, ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), ar),
        }
    }

    /// Applies the rendered `documents` of `bundle`, prunes what left it, and evaluates
    /// health. `previous` holds the drift marks of the last apply; `allow`, when set,
    /// bounds what pruning may delete as it bounds what may be applied; `parents` are the
    /// ApplySet parents as this cycle read them ([`KubeSink::parents`]).
    pub async fn apply(
        &self,
        bundle: &BundleName,
        prepared: &Prepared,
        policy: Policy,
        previous: &BTreeMap<String, String>,
        allow: Option<&AllowList>,
        parents: &Parents,
    ) -> Result<Applied> {
        let mut objects: Vec<&Object> = prepared.objects.iter().collect();
        // Namespaces, then CRDs, then the rest, keeping the bundle's order within each.
        objects.sort_by_key(|o| apply_order(o));
        let id = self.applyset_id(bundle);
        // Refusals first: nothing is written when one applies.
        self.refuse_in_manifests(&objects, &id)?;
        let parent = self.parent_record(bundle, parents.0.get(&parent_name(bundle)))?;
        if !parent.exists {
            self.ensure_namespace(&self.namespace).await?;
        }
        // The parent lists every kind and namespace the bundle holds now or held before,
        // before any object is applied: a crash or a failed prune never leaves members it
        // forgot.
        let group_kinds: BTreeSet<String> = objects.iter().map(|o| group_kind(&o.gvk)).collect();
        let all_kinds: BTreeSet<String> = group_kinds.union(&parent.kinds).cloned().collect();
        let members = self.members(&id, &all_kinds).await?;
        self.refuse_other_sets(&objects, &id, &members).await?;
        let mut recorded = parent.namespaces.clone();
        recorded.extend(objects.iter().filter_map(|o| o.namespace.clone()));
        let current = parent.exists
            && parent.kinds == all_kinds
            && parent.namespaces == self.others(&recorded)
            && parent.keep == policy.keep_resources
            // An agent of another version names itself.
            && parent.tooling.as_deref() == Some(TOOLING);
        if !current {
            self.write_parent(bundle, &id, &all_kinds, &recorded, policy.keep_resources)
                .await?;
        }
        let Progress {
            mut applied,
            namespaces,
            keep,
        } = self
            .apply_objects(&objects, &id, policy.force, previous, &members)
            .await?;
        let mut bounds_namespaces = parent.namespaces;
        bounds_namespaces.extend(namespaces.iter().cloned());
        bounds_namespaces.insert(self.namespace.clone());
        let bounds = ownership::Bounds {
            namespaces: &bounds_namespaces,
            allow,
        };
        (applied.pruned, applied.left) = self.prune(members, &keep, bounds).await?;
        if all_kinds != group_kinds || self.others(&recorded) != self.others(&namespaces) {
            // Pruned: the parent may now list only what the bundle holds (KEP-3659 asks for
            // a superset of the members until then), and the namespaces it uses.
            self.write_parent(bundle, &id, &group_kinds, &namespaces, policy.keep_resources)
                .await?;
        }
        Ok(applied)
    }

    /// `namespaces` but the agent's own, as a parent's `additional-namespaces` lists them.
    fn others(&self, namespaces: &BTreeSet<String>) -> BTreeSet<String> {
        namespaces.iter().filter(|n| **n != self.namespace).cloned().collect()
    }

    /// Applies `objects` in order as members of ApplySet `id`, waiting for each CRD to be
    /// Established before the objects after it.
    async fn apply_objects(
        &self,
        objects: &[&Object],
        id: &str,
        force: bool,
        previous: &BTreeMap<String, String>,
        members: &[Found],
    ) -> Result<Progress> {
        let live: BTreeMap<String, &DynamicObject> = members.iter().map(|m| (m.key(), &m.object)).collect();
        let mut progress = Progress::default();
        let mut crds: Vec<String> = Vec::new();
        for (i, object) in objects.iter().enumerate() {
            if i > 0 && objects[i - 1].gvk.kind == CRD_KIND && object.gvk.kind != CRD_KIND {
                for crd in crds.drain(..) {
                    self.wait_established(&crd).await?;
                }
            }
            let before = live_member(&live, object);
            let result = match before {
                // Nothing drifted: no request.
                Some(b)
                    if drift::unchanged(
                        &object.body,
                        b,
                        previous.get(&member_key(object, b)).map(String::as_str),
                    ) =>
                {
                    b.clone()
                }
                _ => self.apply_object(object, id, force).await?,
            };
            progress.record(object, &result, before, previous);
            if object.gvk.kind == CRD_KIND {
                crds.push(object.name.clone());
            }
        }
        for crd in crds {
            self.wait_established(&crd).await?;
        }
        Ok(progress)
    }

    /// Refuses a bundle holding the agent's own records or objects that name another
    /// ApplySet in their manifest.
    fn refuse_in_manifests(&self, objects: &[&Object], id: &str) -> Result<()> {
        for object in objects {
            let labels = object.body["metadata"]["labels"].as_object();
            let identity = ownership::Identity {
                group: &object.gvk.group,
                kind: &object.gvk.kind,
                name: &object.name,
                namespace: Some(object.namespace.as_deref().unwrap_or(OBJECT_DEFAULT_NAMESPACE)),
                is_parent: labels.is_some_and(|l| l.contains_key(ID_LABEL)),
            };
            ownership::check_own_record(identity, &self.namespace)?;
            let part_of: Option<BTreeMap<String, String>> = labels
                .and_then(|l| l.get(PART_OF_LABEL))
                .and_then(Value::as_str)
                .map(|v| BTreeMap::from([(PART_OF_LABEL.to_string(), v.to_string())]));
            ownership::check_member(&describe(object), part_of.as_ref(), id)?;
        }
        Ok(())
    }

    /// Refuses a bundle with an object that exists in the cluster as a member of another
    /// ApplySet. Objects already members of this one (`members`) need no request.
    async fn refuse_other_sets(&self, objects: &[&Object], id: &str, members: &[Found]) -> Result<()> {
        let ours: BTreeSet<String> = members.iter().map(Found::key).collect();
        for object in objects {
            let ns = object.namespace.as_deref();
            if ours.contains(&object_key(&object.gvk, ns, &object.name))
                || ours.contains(&object_key(
                    &object.gvk,
                    Some(ns.unwrap_or(OBJECT_DEFAULT_NAMESPACE)),
                    &object.name,
                ))
            {
                continue;
            }
            // A kind the server does not know yet (its CRD comes with the bundle) has no
            // objects to take over.
            let Ok((ar, caps)) = self.resolve(&object.gvk).await else {
                continue;
            };
            let live = self
                .api(&ar, &caps, ns)
                .get_opt(&object.name)
                .await
                .map_err(|e| kube_err(describe(object), e))?;
            if let Some(live) = live {
                ownership::check_member(&describe(object), live.metadata.labels.as_ref(), id)?;
            }
        }
        Ok(())
    }

    /// Applies one object as a member of ApplySet `id`; with `force`, an object whose
    /// immutable fields changed is deleted and created again.
    async fn apply_object(&self, object: &Object, id: &str, force: bool) -> Result<DynamicObject> {
        let (ar, caps) = self.resolve(&object.gvk).await?;
        let mut body = object.body.clone();
        body["metadata"]["labels"][PART_OF_LABEL] = json!(id);
        let api = self.api(&ar, &caps, object.namespace.as_deref());
        let mut params = PatchParams::apply(FIELD_MANAGER);
        if force {
            params = params.force();
        }
        let key = object_key(&object.gvk, object.namespace.as_deref(), &object.name);
        let result = match api.patch(&object.name, &params, &Patch::Apply(&body)).await {
            Err(e) if force && api_refusal(&e) == Some(ApiRefusal::ImmutableField) => {
                api.delete(&object.name, &DeleteParams::foreground())
                    .await
                    .map_err(|e| kube_err(&key, e))?;
                self.wait_gone(&api, &object.name).await?;
                api.patch(&object.name, &params, &Patch::Apply(&body)).await
            }
            Err(e) if is_not_found(&e) => {
                // Apply creates what is missing, so 404 says the resource itself is gone
                // (its CRD was removed) or moved: ask discovery again, once.
                self.discovery.forget(&object.gvk.group, &object.gvk.kind);
                let (ar, caps) = self.resolve(&object.gvk).await?;
                let api = self.api(&ar, &caps, object.namespace.as_deref());
                api.patch(&object.name, &params, &Patch::Apply(&body)).await
            }
            other => other,
        };
        result.map_err(|e| apply_err(key, e))
    }

    /// Checks every object of a rendered bundle against `allow`, placed by `scopes` (the
    /// built-in kinds and the bundle's own CRDs, as rendering placed them) or, for a kind
    /// neither knows, by the scope API discovery reports; reads only, so nothing is written
    /// when an object is refused. A namespaced object without a namespace is placed where
    /// the API will put it: the default namespace.
    pub async fn check_allowed(
        &self,
        what: &str,
        prepared: &Prepared,
        scopes: &Scopes,
        allow: &AllowList,
    ) -> Result<()> {
        let objects = &prepared.objects;
        // Discovery is asked once per (group, kind).
        let mut discovered: BTreeMap<(String, String), bool> = BTreeMap::new();
        let mut placed = Vec::with_capacity(objects.len());
        for object in objects {
            let (group, kind) = (object.gvk.group.as_str(), object.gvk.kind.as_str());
            let cluster_scoped = match scopes.cluster_scoped(group, kind) {
                Some(known) => known,
                None => match discovered.get(&(group.to_string(), kind.to_string())) {
                    Some(found) => *found,
                    None => {
                        let found = matches!(self.resolve(&object.gvk).await?.1.scope, Scope::Cluster);
                        discovered.insert((group.to_string(), kind.to_string()), found);
                        found
                    }
                },
            };
            placed.push(cluster_scoped);
        }
        let candidates = objects.iter().zip(placed).map(|(object, cluster_scoped)| Candidate {
            group: &object.gvk.group,
            kind: &object.gvk.kind,
            name: &object.name,
            placement: match cluster_scoped {
                true => Placement::ClusterScoped,
                false => Placement::Namespaced(object.namespace.as_deref().unwrap_or(OBJECT_DEFAULT_NAMESPACE)),
            },
        });
        allow.check(what, candidates)
    }

    /// Deletes every object of `bundle`'s inventory (but those opted out, and those not
    /// drover's to delete), then its parent. A bundle applied with `keepResources` keeps
    /// its objects: only the parent goes. Another tool's parent is refused, untouched;
    /// `allow`, when set, bounds what is deleted.
    pub async fn remove(&self, bundle: &BundleName, allow: Option<&AllowList>) -> Result<usize> {
        let id = self.applyset_id(bundle);
        let parent = self.read_parent(bundle).await?;
        let deleted = if parent.keep {
            0
        } else {
            let mut namespaces = parent.namespaces.clone();
            namespaces.insert(self.namespace.clone());
            let bounds = ownership::Bounds {
                namespaces: &namespaces,
                allow,
            };
            let members = self.members(&id, &parent.kinds).await?;
            self.prune(members, &BTreeSet::new(), bounds).await?.0
        };
        let parents: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        match parents.delete(&parent_name(bundle), &DeleteParams::default()).await {
            Ok(_) => Ok(deleted),
            Err(e) if is_not_found(&e) => Ok(deleted),
            Err(e) => Err(kube_err(format!("ConfigMap {}", parent_name(bundle)), e)),
        }
    }

    /// Writes the status report into ConfigMap `drover-status` of the agent's namespace.
    pub async fn write_status(&self, status_json: &str) -> Result<()> {
        self.ensure_namespace(&self.namespace).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": ownership::STATUS_NAME, "namespace": self.namespace},
            "data": {"status.json": status_json}});
        api.patch(
            ownership::STATUS_NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| kube_err("ConfigMap drover-status", e))?;
        Ok(())
    }

    /// Records a Warning Event about `bundle` (on its ApplySet parent).
    pub async fn event(&self, bundle: &BundleName, reason: &str, message: &str) {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::Event>(&()),
        );
        let now = crate::format::rfc3339(time::OffsetDateTime::now_utc());
        let body: DynamicObject = match serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"generateName": format!("drover-{bundle}-"), "namespace": self.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "ConfigMap", "name": parent_name(bundle), "namespace": self.namespace},
            "reason": reason, "message": message, "type": "Warning",
            "source": {"component": "drover-agent"},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        })) {
            Ok(b) => b,
            Err(_) => return,
        };
        if let Err(e) = api.create(&PostParams::default(), &body).await {
            tracing::warn!(bundle = %bundle, error = %e, "could not record an Event");
        }
    }

    async fn ensure_namespace(&self, namespace: &str) -> Result<()> {
        let api: Api<DynamicObject> = Api::all_with(
            self.client.clone(),
            &ApiResource::erase::<k8s_openapi::api::core::v1::Namespace>(&()),
        );
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        api.patch(namespace, &PatchParams::apply(FIELD_MANAGER), &Patch::Apply(&body))
            .await
            .map_err(|e| kube_err(format!("Namespace {namespace}"), e))?;
        Ok(())
    }

    async fn wait_established(&self, crd: &str) -> Result<()> {
        let gvk = GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition");
        let (ar, caps) = self.resolve(&gvk).await?;
        let api = self.api(&ar, &caps, None);
        let deadline = tokio::time::Instant::now() + CRD_TIMEOUT;
        loop {
            let object = api
                .get(crd)
                .await
                .map_err(|e| kube_err(format!("CustomResourceDefinition {crd}"), e))?;
            if condition_true(&object, "Established") {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::KubeTimeout {
                    what: format!("CustomResourceDefinition {crd}"),
                    wait: KubeWait::Established(CRD_TIMEOUT),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn wait_gone(&self, api: &Api<DynamicObject>, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + DELETE_WAIT;
        while tokio::time::Instant::now() <= deadline {
            match api.get_opt(name).await {
                Ok(None) => return Ok(()),
                Ok(Some(_)) => tokio::time::sleep(POLL).await,
                Err(e) => return Err(kube_err(name, e)),
            }
        }
        Err(Error::KubeTimeout {
            what: name.to_string(),
            wait: KubeWait::Deleted(DELETE_WAIT),
        })
    }

    /// What `bundle`'s parent records (nothing when there is none yet); refuses a parent
    /// that another tool manages.
    async fn read_parent(&self, bundle: &BundleName) -> Result<ParentRecord> {
        let name = parent_name(bundle);
        let parent = self
            .config_maps()
            .get_opt(&name)
            .await
            .map_err(|e| kube_err(format!("ConfigMap {name}"), e))?;
        self.parent_record(bundle, parent.as_ref())
    }

    /// Every ConfigMap of the agent's namespace named as drover names ApplySet parents, by
    /// name: one request a cycle instead of one a bundle.
    pub async fn parents(&self) -> Result<Parents> {
        let list = match self.config_maps().list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) if is_not_found(&e) => Vec::new(),
            Err(e) => return Err(kube_err(format!("ConfigMaps in {}", self.namespace), e)),
        };
        let parents = list
            .into_iter()
            .filter_map(|cm| Some((cm.metadata.name.clone()?, cm)))
            .filter(|(name, _)| name.starts_with(ownership::PARENT_PREFIX))
            .collect();
        Ok(Parents(parents))
    }

    /// What `bundle`'s `parent`, as read, records; refuses another tool's.
    fn parent_record(&self, bundle: &BundleName, parent: Option<&DynamicObject>) -> Result<ParentRecord> {
        let Some(parent) = parent else {
            return Ok(ParentRecord::default());
        };
        let annotations = parent.metadata.annotations.clone().unwrap_or_default();
        let name = parent_name(bundle);
        ownership::check_tooling(&format!("{}/{name}", self.namespace), &annotations)?;
        let list = |key: &str| -> BTreeSet<String> {
            annotations
                .get(key)
                .map(|s| s.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect())
                .unwrap_or_default()
        };
        Ok(ParentRecord {
            exists: true,
            kinds: list(GROUP_KINDS_ANNOTATION),
            namespaces: list(NAMESPACES_ANNOTATION),
            keep: annotations.get(KEEP_ANNOTATION).is_some_and(|v| v == "true"),
            tooling: annotations.get(TOOLING_ANNOTATION).cloned(),
        })
    }

    fn config_maps(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        )
    }

    async fn write_parent(
        &self,
        bundle: &BundleName,
        id: &str,
        group_kinds: &BTreeSet<String>,
        namespaces: &BTreeSet<String>,
        keep_resources: bool,
    ) -> Result<()> {
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &self.namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
        );
        let others = self.others(namespaces);
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": parent_name(bundle), "namespace": self.namespace,
            "labels": {ID_LABEL: id, "app.kubernetes.io/managed-by": "drover"},
            "annotations": {
                TOOLING_ANNOTATION: TOOLING,
                GROUP_KINDS_ANNOTATION: group_kinds.iter().cloned().collect::<Vec<_>>().join(","),
                NAMESPACES_ANNOTATION: others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(","),
                KEEP_ANNOTATION: keep_resources.to_string(),
            }}});
        api.patch(
            &parent_name(bundle),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| kube_err(format!("ConfigMap {}", parent_name(bundle)), e))?;
        Ok(())
    }

    /// The objects of `group_kinds` labelled members of ApplySet `id`, anywhere.
    async fn members(&self, id: &str, group_kinds: &BTreeSet<String>) -> Result<Vec<Found>> {
        let mut found = Vec::new();
        for gk in group_kinds {
            let (kind, group) = gk.split_once('.').unwrap_or((gk.as_str(), ""));
            let Some((ar, caps)) = self
                .discovery
                .recommended(&self.client, group, kind)
                .await
                .map_err(|e| kube_err(gk.as_str(), e))?
            else {
                // Not served (its CRD was removed): nothing of it can be left.
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
            let list = match api
                .list(&ListParams::default().labels(&format!("{PART_OF_LABEL}={id}")))
                .await
            {
                Ok(list) => list,
                Err(e) if is_not_found(&e) => {
                    // Served when discovery was asked, gone since: none left.
                    self.discovery.forget(group, kind);
                    continue;
                }
                Err(e) => return Err(kube_err(gk.as_str(), e)),
            };
            found.extend(list.items.into_iter().map(|object| Found {
                ar: ar.clone(),
                caps: caps.clone(),
                object,
            }));
        }
        Ok(found)
    }

    /// Deletes the `members` whose key is not in `keep`, within `bounds`; returns how many
    /// were deleted and how many were left because they are not drover's to delete.
    async fn prune(
        &self,
        members: Vec<Found>,
        keep: &BTreeSet<String>,
        bounds: ownership::Bounds<'_>,
    ) -> Result<(usize, usize)> {
        let (mut deleted, mut left) = (0, 0);
        for Found { ar, caps, object } in members {
            let ns = object.metadata.namespace.clone();
            let name = object.metadata.name.clone().unwrap_or_default();
            let kind = ar.kind.as_str();
            let gvk = GroupVersionKind::gvk(&ar.group, &ar.version, &ar.kind);
            if keep.contains(&object_key(&gvk, ns.as_deref(), &name)) {
                continue;
            }
            let opted_out = object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PRUNE_ANNOTATION))
                .is_some_and(|v| v == "disabled");
            if opted_out {
                tracing::info!(object = %name, kind, "left its bundle; kept (drover.dev/prune: disabled)");
                continue;
            }
            let member = ownership::Member {
                group: &ar.group,
                kind,
                name: &name,
                namespace: ns.as_deref(),
                managers: object.metadata.managed_fields.as_deref().unwrap_or_default(),
            };
            if let Err(kept) = ownership::may_delete(member, bounds) {
                tracing::warn!(object = %name, namespace = ns.as_deref().unwrap_or(""), kind, "not pruned: {}", kept.why());
                left += 1;
                continue;
            }
            let api = self.api(&ar, &caps, ns.as_deref());
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {
                    tracing::info!(object = %name, kind, "pruned");
                    deleted += 1;
                }
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(kube_err(format!("{kind} {name}"), e)),
            }
        }
        Ok((deleted, left))
    }
}

/// The ApplySet parents in the agent's namespace as read at the start of a cycle, by name.
#[derive(Debug, Default)]
pub struct Parents(BTreeMap<String, DynamicObject>);

/// What an ApplySet parent records.
#[derive(Debug, Default)]
struct ParentRecord {
    /// Whether there is a parent at all.
    exists: bool,
    /// `contains-group-kinds`.
    kinds: BTreeSet<String>,
    /// `additional-namespaces`.
    namespaces: BTreeSet<String>,
    /// Keep the members when the bundle is removed.
    keep: bool,
    /// `applyset.kubernetes.io/tooling` (drover's, once refusals have been checked).
    tooling: Option<String>,
}

/// A member of an ApplySet as listed, with the resource it was listed from.
#[derive(Debug)]
struct Found {
    ar: ApiResource,
    caps: ApiCapabilities,
    object: DynamicObject,
}

impl Found {
    fn key(&self) -> String {
        let gvk = GroupVersionKind::gvk(&self.ar.group, &self.ar.version, &self.ar.kind);
        let name = self.object.metadata.name.as_deref().unwrap_or_default();
        object_key(&gvk, self.object.metadata.namespace.as_deref(), name)
    }
}

/// The listed member `object` will be applied over, if any (a namespaced object without a
/// namespace lands in the default one).
fn live_member<'a>(live: &BTreeMap<String, &'a DynamicObject>, object: &Object) -> Option<&'a DynamicObject> {
    let ns = object.namespace.as_deref();
    live.get(&object_key(&object.gvk, ns, &object.name))
        .or_else(|| {
            live.get(&object_key(
                &object.gvk,
                Some(ns.unwrap_or(OBJECT_DEFAULT_NAMESPACE)),
                &object.name,
            ))
        })
        .copied()
}

/// The key of `object` as its listed member `live` names it.
fn member_key(object: &Object, live: &DynamicObject) -> String {
    object_key(&object.gvk, live.metadata.namespace.as_deref(), &object.name)
}

/// `Kind namespace/name` of an object to apply, as refusals name it.
fn describe(object: &Object) -> String {
    match &object.namespace {
        Some(ns) => format!("{} {ns}/{}", object.gvk.kind, object.name),
        None => format!("{} {}", object.gvk.kind, object.name),
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// Name of the ApplySet parent ConfigMap of `bundle`.
pub fn parent_name(bundle: &BundleName) -> String {
    format!("{}{bundle}", ownership::PARENT_PREFIX)
}

/// `Kind.group` as ApplySet annotations write it (`Kind` alone for the core group).
fn group_kind(gvk: &GroupVersionKind) -> String {
    if gvk.group.is_empty() {
        gvk.kind.clone()
    } else {
        format!("{}.{}", gvk.kind, gvk.group)
    }
}

fn object_key(gvk: &GroupVersionKind, namespace: Option<&str>, name: &str) -> String {
    format!("{}/{}/{}", group_kind(gvk), namespace.unwrap_or(""), name)
}

/// The object to apply for a rendered one: the API names objects itself only on create,
/// which server-side apply never does, so each needs its `metadata.name`.
fn to_apply(rendered: &Rendered, what: &str) -> Result<Object> {
    let Some(name) = rendered.name.clone() else {
        return Err(Error::invalid(
            what,
            "an object without apiVersion, kind or metadata.name",
        ));
    };
    let body = serde_json::to_value(&rendered.body)
        .map_err(|e| Error::invalid(what, format!("{} {name}: not expressible as JSON: {e}", rendered.kind)))?;
    if !(body["metadata"]["labels"].is_null() || body["metadata"]["labels"].is_object()) {
        return Err(Error::invalid(
            what,
            format!("{} {name}: metadata.labels is not a mapping", rendered.kind),
        ));
    }
    let (group, version) = rendered
        .api_version
        .split_once('/')
        .unwrap_or(("", &rendered.api_version));
    Ok(Object {
        gvk: GroupVersionKind::gvk(group, version, &rendered.kind),
        namespace: rendered.namespace.clone(),
        name,
        body,
    })
}

fn condition_true(object: &DynamicObject, kind: &str) -> bool {
    object.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == kind && c["status"] == "True"))
}

/// `None` when `object` of `kind` is healthy, else why not.
fn unhealthy(kind: &str, object: &DynamicObject) -> Option<String> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let status = &object.data["status"];
    let spec = &object.data["spec"];
    let n = |v: &Value| v.as_i64().unwrap_or(0);
    let generation = object.metadata.generation.unwrap_or(0);
    let observed = n(&status["observedGeneration"]);
    match kind {
        "Deployment" | "StatefulSet" => {
            let want = spec["replicas"].as_i64().unwrap_or(1);
            let ready = if kind == "Deployment" {
                n(&status["availableReplicas"])
            } else {
                n(&status["readyReplicas"])
            };
            let updated = n(&status["updatedReplicas"]);
            (observed < generation || updated < want || ready < want).then(|| {
                format!("{kind} {name}: {ready}/{want} ready, {updated} updated (observed generation {observed} of {generation})")
            })
        }
        "DaemonSet" => {
            let want = n(&status["desiredNumberScheduled"]);
            let ready = n(&status["numberReady"]);
            let updated = n(&status["updatedNumberScheduled"]);
            (observed < generation || ready < want || updated < want)
                .then(|| format!("DaemonSet {name}: {ready}/{want} ready, {updated} updated"))
        }
        "Job" => {
            if condition_true(object, "Failed") {
                Some(format!("Job {name} failed"))
            } else if condition_true(object, "Complete") {
                None
            } else {
                Some(format!("Job {name} not complete"))
            }
        }
        _ => {
            let has_ready = status["conditions"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready"));
            (has_ready && !condition_true(object, "Ready")).then(|| format!("{kind} {name}: Ready is not True"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str, causes: &[&str]) -> kube::Error {
        let causes: Vec<Value> = causes
            .iter()
            .map(|m| json!({"reason": "FieldValueInvalid", "message": m}))
            .collect();
        let status = json!({"status": "Failure", "code": code, "message": message, "reason": "Invalid",
            "details": {"causes": causes}});
        kube::Error::Api(Box::new(serde_json::from_value(status).expect("a Status")))
    }

    #[test]
    fn an_immutable_field_change_is_told_from_other_refusals_by_its_causes() {
        let immutable = api_error(422, "Deployment.apps \"web\" is invalid", &["field is immutable"]);
        assert_eq!(api_refusal(&immutable), Some(ApiRefusal::ImmutableField));
        let invalid = api_error(422, "Deployment.apps \"web\" is invalid", &["Required value"]);
        assert_eq!(api_refusal(&invalid), Some(ApiRefusal::Invalid));
        let conflict = api_error(409, "Apply failed with 1 conflict", &[]);
        assert_eq!(api_refusal(&conflict), Some(ApiRefusal::Conflict));
        assert_eq!(api_refusal(&api_error(500, "oops", &[])), None);
    }

    #[test]
    fn kube_errors_keep_their_cause_and_explain_it_as_before() {
        let e = apply_err(
            "Deployment.apps/default/web".into(),
            api_error(409, "conflict with kubectl", &[]),
        );
        assert_eq!(
            e.to_string(),
            "Deployment.apps/default/web: conflict with another field manager: conflict with kubectl \
             (set `force: true` in the bundle's bundle.yaml to take them)"
        );
        assert!(std::error::Error::source(&e).is_some(), "the client's error is kept");
        let e = apply_err("x".into(), api_error(422, "bad", &["field is immutable"]));
        assert_eq!(
            e.to_string(),
            "x: refused: bad (an immutable field changed? force recreates)"
        );
        let waited = Error::KubeTimeout {
            what: "CustomResourceDefinition widgets.example.com".into(),
            wait: KubeWait::Established(CRD_TIMEOUT),
        };
        assert_eq!(
            waited.to_string(),
            "CustomResourceDefinition widgets.example.com: not Established after 60s"
        );
    }

    fn rendered(yaml: &str) -> Rendered {
        let body: serde_norway::Mapping = serde_norway::from_str(yaml).expect("a mapping");
        let meta = |k: &str| body["metadata"].get(k).and_then(|v| v.as_str()).map(str::to_string);
        Rendered {
            api_version: body["apiVersion"].as_str().expect("apiVersion").into(),
            kind: body["kind"].as_str().expect("kind").into(),
            name: meta("name"),
            generate_name: meta("generateName"),
            namespace: meta("namespace"),
            text: yaml.into(),
            body,
        }
    }

    #[test]
    fn a_rendered_object_is_applied_from_its_parsed_body_and_needs_a_name() {
        let web = rendered(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop}\nspec: {replicas: 2}\n",
        );
        let object = to_apply(&web, "bundle web").expect("applicable");
        assert_eq!(object.gvk, GroupVersionKind::gvk("apps", "v1", "Deployment"));
        assert_eq!(
            (object.name.as_str(), object.namespace.as_deref()),
            ("web", Some("shop"))
        );
        assert_eq!(object.body["spec"]["replicas"], json!(2));
        let generated = rendered("apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: web-}\n");
        let err = to_apply(&generated, "bundle web").expect_err("no name").to_string();
        assert!(err.contains("without apiVersion, kind or metadata.name"), "{err}");
    }
}
