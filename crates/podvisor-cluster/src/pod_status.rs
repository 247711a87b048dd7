//! How the node's status of a pod is written over the stored one, as the kubelet's status
//! manager does it: the node owns its conditions and the container statuses; what others set
//! stays (the QoS class the API server computed, a readiness gate's condition a controller
//! set, the `DisruptionTarget` of an eviction); and `Ready` waits for every readiness gate's
//! condition to be `True` once the containers are ready.

use serde_json::{Value, json};

/// The condition types the kubelet writes whole: any other in the stored status is kept.
const KUBELET_CONDITIONS: [&str; 5] =
    ["PodScheduled", "Ready", "Initialized", "ContainersReady", "PodReadyToStartContainers"];

/// The reason of a `Ready` condition held back by readiness gates.
const GATES_NOT_READY: &str = "ReadinessGatesNotReady";

/// Writes the node's `status` over the stored `pod`'s, keeping what is not the node's, and
/// decides `Ready` by the pod's readiness gates (`now` stamps a transition).
pub fn merge(pod: &mut Value, mut status: Value, now: &str) {
    let old = pod.get("status").cloned().unwrap_or(Value::Null);
    if let Some(qos) = old.get("qosClass").filter(|q| !q.is_null()) {
        status["qosClass"] = qos.clone();
    }
    let ours = conditions(&status);
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
    gate(pod.pointer("/spec/readinessGates"), &mut status, &old, now);
    pod["status"] = status;
}

fn conditions(status: &Value) -> Vec<Value> {
    status.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// `Ready` with readiness gates: when the containers are ready, `True` only if every gate's
/// condition is `True`, else `False` with the kubelet's reason and words for each gate not met.
fn gate(gates: Option<&Value>, status: &mut Value, old: &Value, now: &str) {
    let gates: Vec<&str> = gates
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
        .collect();
    if gates.is_empty() {
        return;
    }
    let all = conditions(status);
    let containers_ready = all.iter().any(|c| c["type"] == "ContainersReady" && c["status"] == "True");
    if !containers_ready {
        return;
    }
    let unmet: Vec<String> = gates
        .iter()
        .filter_map(|g| match all.iter().find(|c| c["type"] == *g) {
            None => Some(format!("corresponding condition of pod readiness gate \"{g}\" does not exist.")),
            Some(c) if c["status"] != "True" => Some(format!(
                "the status of pod readiness gate \"{g}\" is not \"True\", but {}",
                c["status"].as_str().unwrap_or("")
            )),
            Some(_) => None,
        })
        .collect();
    let ready = unmet.is_empty();
    let was = |value: &str| {
        old.get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == value)
            .and_then(|c| c.get("lastTransitionTime").cloned())
    };
    let status_text = if ready { "True" } else { "False" };
    let since = was(status_text).unwrap_or_else(|| json!(now));
    let mut condition =
        json!({"type": "Ready", "status": status_text, "lastProbeTime": null, "lastTransitionTime": since});
    if !ready {
        condition["reason"] = json!(GATES_NOT_READY);
        condition["message"] = json!(unmet.join(", "));
    }
    if let Some(list) = status["conditions"].as_array_mut() {
        match list.iter_mut().find(|c| c["type"] == "Ready") {
            Some(c) => *c = condition,
            None => list.push(condition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_status(containers_ready: bool) -> Value {
        let ready = if containers_ready { "True" } else { "False" };
        json!({"phase": "Running", "conditions": [
            {"type": "Initialized", "status": "True"},
            {"type": "Ready", "status": "False", "reason": GATES_NOT_READY, "message": "from the node",
             "lastTransitionTime": "t0"},
            {"type": "ContainersReady", "status": ready}]})
    }

    fn ready(pod: &Value) -> Value {
        pod["status"]["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "Ready").cloned().unwrap()
    }

    #[test]
    fn the_nodes_status_keeps_what_others_set_and_ready_waits_for_every_readiness_gate() {
        let mut pod = json!({"spec": {"readinessGates": [{"conditionType": "example.com/a"}, {"conditionType": "example.com/b"}]},
            "status": {"qosClass": "Burstable", "conditions": [
                {"type": "example.com/a", "status": "True"},
                {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"},
                {"type": "Ready", "status": "False"}]}});
        merge(&mut pod, node_status(true), "t1");
        assert_eq!(pod["status"]["qosClass"], "Burstable");
        let types: Vec<&str> =
            pod["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["Initialized", "Ready", "ContainersReady", "example.com/a", "DisruptionTarget"]);
        let r = ready(&pod);
        assert_eq!((r["status"].as_str(), r["reason"].as_str()), (Some("False"), Some(GATES_NOT_READY)));
        assert_eq!(r["message"], "corresponding condition of pod readiness gate \"example.com/b\" does not exist.");
        // A controller sets the second gate False, then True: Ready follows, stamped when it turns.
        pod["status"]["conditions"].as_array_mut().unwrap().push(json!({"type": "example.com/b", "status": "False"}));
        let status = pod["status"].clone();
        merge(&mut pod, status, "t2");
        assert_eq!(
            ready(&pod)["message"],
            "the status of pod readiness gate \"example.com/b\" is not \"True\", but False"
        );
        for c in pod["status"]["conditions"].as_array_mut().unwrap() {
            if c["type"] == "example.com/b" {
                c["status"] = json!("True");
            }
        }
        let status = pod["status"].clone();
        merge(&mut pod, status, "t3");
        assert_eq!(
            ready(&pod),
            json!({"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "t3"})
        );
        // The node's next status keeps Ready True, and its time.
        merge(&mut pod, node_status(true), "t4");
        assert_eq!(ready(&pod)["lastTransitionTime"], "t3");
        // Containers not ready: the node's own verdict stands.
        merge(&mut pod, node_status(false), "t5");
        assert_eq!(ready(&pod)["message"], "from the node");
    }

    #[test]
    fn without_readiness_gates_the_nodes_conditions_are_written_as_they_are() {
        let mut pod = json!({"spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut pod, node_status(true), "t1");
        assert_eq!(pod["status"], node_status(true));
    }
}
