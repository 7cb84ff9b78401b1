//! API discovery, asked once and kept for the agent's life: which resource serves a kind,
//! and whether it is namespaced. Only what the server answered is kept, never an absence,
//! so a kind that appears (a CRD applied in this cycle) is found by asking again; a kind
//! that disappears (a CRD removed by someone else) is forgotten when a request about it
//! answers 404 ([`Discovery::forget`]), and the next lookup asks again.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kube::api::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource};

/// A resource and what it supports.
pub(crate) type Resolved = (ApiResource, ApiCapabilities);

/// What discovery answered so far (shared by clones of the sink).
#[derive(Debug, Clone, Default)]
pub(crate) struct Discovery {
    known: Arc<Mutex<Known>>,
}

#[derive(Debug, Default)]
struct Known {
    /// (group, version, kind) → resource.
    pinned: BTreeMap<(String, String, String), Resolved>,
    /// (group, kind) → the resource of the group's preferred version serving it.
    recommended: BTreeMap<(String, String), Resolved>,
}

fn pinned_key(gvk: &GroupVersionKind) -> (String, String, String) {
    (gvk.group.clone(), gvk.version.clone(), gvk.kind.clone())
}

impl Discovery {
    fn known(&self) -> std::sync::MutexGuard<'_, Known> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The resource serving `gvk`, asking the server only when it is not known.
    pub(crate) async fn pinned(&self, client: &kube::Client, gvk: &GroupVersionKind) -> kube::Result<Resolved> {
        if let Some(found) = self.known().pinned.get(&pinned_key(gvk)) {
            return Ok(found.clone());
        }
        let found = kube::discovery::pinned_kind(client, gvk).await?;
        self.known().pinned.insert(pinned_key(gvk), found.clone());
        Ok(found)
    }

    /// The resource serving `kind` of `group` in its preferred version, or `None` when the
    /// server serves no such kind (not remembered); asks only when it is not known.
    pub(crate) async fn recommended(
        &self,
        client: &kube::Client,
        group: &str,
        kind: &str,
    ) -> kube::Result<Option<Resolved>> {
        let key = (group.to_string(), kind.to_string());
        if let Some(found) = self.known().recommended.get(&key) {
            return Ok(Some(found.clone()));
        }
        let apigroup = match kube::discovery::group(client, group).await {
            Ok(g) => g,
            // The group is gone (its CRD was removed).
            Err(kube::Error::Discovery(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let found = apigroup.recommended_kind(kind);
        if let Some(found) = &found {
            self.known().recommended.insert(key, found.clone());
        }
        Ok(found)
    }

    /// Forgets what is known of `kind` of `group` (a request about it answered 404: the
    /// kind may be gone or served in another version now).
    pub(crate) fn forget(&self, group: &str, kind: &str) {
        let mut known = self.known();
        known.pinned.retain(|(g, _, k), _| !(g == group && k == kind));
        known.recommended.remove(&(group.to_string(), kind.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(group: &str, version: &str, kind: &str) -> Resolved {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk(&gvk);
        let caps = ApiCapabilities {
            scope: kube::discovery::Scope::Namespaced,
            subresources: Vec::new(),
            operations: Vec::new(),
        };
        (ar, caps)
    }

    #[test]
    fn forgetting_a_kind_drops_every_version_of_it_and_nothing_else() {
        let discovery = Discovery::default();
        {
            let mut known = discovery.known();
            for (g, v, k) in [
                ("example.com", "v1", "Widget"),
                ("example.com", "v2", "Widget"),
                ("example.com", "v1", "Gear"),
            ] {
                known.pinned.insert((g.into(), v.into(), k.into()), resolved(g, v, k));
            }
            known.recommended.insert(
                ("example.com".into(), "Widget".into()),
                resolved("example.com", "v2", "Widget"),
            );
        }
        discovery.forget("example.com", "Widget");
        let known = discovery.known();
        let left: Vec<_> = known.pinned.keys().map(|(_, v, k)| format!("{k}/{v}")).collect();
        assert_eq!(left, ["Gear/v1"]);
        assert!(known.recommended.is_empty());
    }
}
