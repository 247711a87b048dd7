//! How the node's status of a pod is written over the stored one, as the kubelet's status
//! manager does it: the node owns its conditions and the container statuses; what others set
//! stays (the QoS class the API server computed, a readiness gate's condition a controller
//! set, the `DisruptionTarget` of an eviction). `Ready` is the node's: its engine is told the
//! readiness gates' conditions and decides it (R61).

use serde_json::{Value, json};

/// The condition types the kubelet writes whole: any other in the stored status is kept.
const KUBELET_CONDITIONS: [&str; 5] =
    ["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers"];

/// Writes the node's `status` over the stored `pod`'s, keeping what is not the node's.
pub fn merge(pod: &mut Value, mut status: Value) {
    let old = pod.get("status").cloned().unwrap_or(Value::Null);
    if let Some(qos) = old.get("qosClass").filter(|q| !q.is_null()) {
        status["qosClass"] = qos.clone();
    }
    let ours = status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
    let theirs: Vec<Value> = old
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| !KUBELET_CONDITIONS.contains(&c["type"].as_str().unwrap_or("")))
        .filter(|c| !ours.iter().any(|n| n["type"] == c["type"]))
        .cloned()
        .collect();
    if !theirs.is_empty() {
        match status["conditions"].as_array_mut() {
            Some(list) => list.extend(theirs),
            None => status["conditions"] = json!(theirs),
        }
    }
    pod["status"] = status;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_status() -> Value {
        json!({"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady", "message": "from the node"},
            {"type": "ContainersReady", "status": "True"}]})
    }

    #[test]
    fn the_nodes_status_keeps_what_others_set() {
        let mut pod = json!({"spec": {"readinessGates": [{"conditionType": "example.com/a"}]},
            "status": {"qosClass": "Burstable", "conditions": [
                {"type": "example.com/a", "status": "True"},
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"},
                {"type": "Ready", "status": "True"}]}});
        merge(&mut pod, node_status());
        assert_eq!(pod["status"]["qosClass"], "Burstable");
        let types: Vec<&str> =
            pod["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["Initialized", "Ready", "ContainersReady", "example.com/a", "DisruptionTarget"]);
        assert_eq!(pod["status"]["conditions"][1]["message"], "from the node", "Ready is the node's");
    }

    #[test]
    fn without_others_conditions_the_nodes_are_written_as_they_are() {
        let mut pod = json!({"spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut pod, node_status());
        assert_eq!(pod["status"], node_status());
    }
}
