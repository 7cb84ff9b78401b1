//! The `--auto-ready` stand-in for kube-controller-manager: right after a workload is
//! written, it reports the status a healthy cluster would reach once its pods run.
//! No pods, ReplicaSets or rollouts exist; only the status fields health checks read.

use serde_json::{json, Value};

use crate::resources::ResourceType;

/// The manager name recorded for status written here, as on a real cluster.
pub const MANAGER: &str = "kube-controller-manager";

/// The ready/complete status for a workload, or `None` for kinds this controller does
/// not handle. Conditions keep their transition times from `old_status` when unchanged.
pub fn ready_status(rt: &ResourceType, obj: &Value, now: &str) -> Option<Value> {
    if rt.crd.is_some() {
        return None;
    }
    let old_status = &obj["status"];
    let generation = obj["metadata"]["generation"].as_u64().unwrap_or(1);
    let replicas = obj["spec"]["replicas"].as_u64().unwrap_or(1);
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let cond = |kind: &str, reason: &str, message: &str| {
        let since = old_status["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind && c["status"] == "True"))
            .and_then(|c| c["lastTransitionTime"].as_str())
            .unwrap_or(now);
        json!({"type": kind, "status": "True", "reason": reason, "message": message,
               "lastTransitionTime": since, "lastUpdateTime": since})
    };
    let status = match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                cond("Available", "MinimumReplicasAvailable", "Deployment has minimum availability."),
                cond("Progressing", "NewReplicaSetAvailable", &format!("ReplicaSet \"{name}\" has successfully progressed.")),
            ],
        }),
        ("apps", "statefulsets") => {
            let revision = format!("{name}-{generation:x}");
            json!({
                "observedGeneration": generation,
                "replicas": replicas,
                "readyReplicas": replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "availableReplicas": replicas,
                "currentRevision": revision,
                "updateRevision": revision,
                "collisionCount": 0,
            })
        }
        ("apps", "replicasets") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "fullyLabeledReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }),
        ("apps", "daemonsets") => json!({
            "observedGeneration": generation,
            "currentNumberScheduled": 1,
            "desiredNumberScheduled": 1,
            "numberAvailable": 1,
            "numberMisscheduled": 0,
            "numberReady": 1,
            "updatedNumberScheduled": 1,
        }),
        ("batch", "jobs") => {
            let completions = obj["spec"]["completions"].as_u64().unwrap_or(1);
            let start = old_status["startTime"].as_str().unwrap_or(now);
            let done = old_status["completionTime"].as_str().unwrap_or(now);
            json!({
                "startTime": start,
                "completionTime": done,
                "succeeded": completions,
                "ready": 0,
                "terminating": 0,
                "uncountedTerminatedPods": {},
                "conditions": [
                    cond("SuccessCriteriaMet", "CompletionsReached", "Reached expected number of succeeded pods"),
                    cond("Complete", "CompletionsReached", "Reached expected number of succeeded pods"),
                ],
            })
        }
        _ => return None,
    };
    Some(status)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is the test failure, with its message
mod tests {
    use super::*;
    use crate::resources::Registry;

    #[test]
    fn deployments_become_available() {
        let reg = Registry::builtin();
        let rt = reg.find("apps", "v1", "deployments").unwrap();
        let obj = json!({"metadata": {"name": "web", "generation": 3}, "spec": {"replicas": 2}});
        let s = ready_status(rt, &obj, "t0").unwrap();
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["availableReplicas"], 2);
        assert_eq!(s["conditions"][0]["type"], "Available");
        let mut later = obj.clone();
        later["status"] = s.clone();
        assert_eq!(ready_status(rt, &later, "t1").unwrap(), s, "stable across writes");
        assert!(ready_status(reg.find("", "v1", "configmaps").unwrap(), &obj, "t").is_none());
    }
}
