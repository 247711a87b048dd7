//! Taint-based eviction, as the control plane's taint eviction controller does it: a pod on the
//! node that does not tolerate one of its `NoExecute` taints is deleted at once; one that
//! tolerates them all for a while (`tolerationSeconds`) is deleted when the shortest of those
//! runs out, unless the taints go first; one that tolerates them for ever stays. A deleted pod
//! gets the `DisruptionTarget` condition first, and `TaintManagerEviction` events say what is
//! planned and what is called off.
//!
//! [`decide`] is the pure part; [`run`] drives it from the store's changes and a timer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use podvisor_objects::kinds::Resource;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::delete::{DeleteOptions, delete};
use crate::events::{Involved, Recorder};
use crate::store::{Key, Store, StoreError, said};
use crate::values::{is_deleting, is_terminal};

/// What the taints of a node mean for one pod on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No `NoExecute` taint, or all of them tolerated for ever.
    Stay,
    /// Deleted when the given time has passed since the taints were seen.
    After(Duration),
    /// A `NoExecute` taint it does not tolerate: deleted at once.
    Now,
}

/// Whether the toleration `t` tolerates the taint `taint` (key, value, effect), as the API's
/// `ToleratesTaint`: the same effect (or none named), and the same key with `Exists` or the same
/// value with `Equal` (an empty key with `Exists` tolerates every taint).
fn tolerates(t: &Value, taint: &Value) -> bool {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let effect = s(t, "effect").is_empty() || s(t, "effect") == s(taint, "effect");
    let key = match s(t, "operator").as_str() {
        "Exists" => s(t, "key").is_empty() || s(t, "key") == s(taint, "key"),
        "" | "Equal" => s(t, "key") == s(taint, "key") && s(t, "value") == s(taint, "value"),
        _ => false,
    };
    effect && key
}

/// Whether `pod` leaves one of the node's `NoExecute` taints untolerated (the kubelet refuses to
/// admit such a pod bound to it).
pub fn untolerated(pod: &Value, taints: &[Value]) -> bool {
    let tolerations: Vec<&Value> =
        pod.pointer("/spec/tolerations").and_then(Value::as_array).into_iter().flatten().collect();
    taints
        .iter()
        .filter(|t| t.get("effect").and_then(Value::as_str) == Some("NoExecute"))
        .any(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// What the node's `taints` mean for `pod`: every `NoExecute` taint must be tolerated, and the
/// pod stays as long as the shortest `tolerationSeconds` among the tolerations used (none given:
/// for ever; a negative one counts as zero).
pub fn decide(pod: &Value, taints: &[Value]) -> Verdict {
    let tolerations: Vec<&Value> =
        pod.pointer("/spec/tolerations").and_then(Value::as_array).into_iter().flatten().collect();
    let mut shortest: Option<i64> = None;
    for taint in taints.iter().filter(|t| t.get("effect").and_then(Value::as_str) == Some("NoExecute")) {
        let used: Vec<&&Value> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if used.is_empty() {
            return Verdict::Now;
        }
        for t in used {
            if let Some(seconds) = t.get("tolerationSeconds").and_then(Value::as_i64) {
                let seconds = seconds.max(0);
                shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
            }
        }
    }
    match shortest {
        None => Verdict::Stay,
        Some(0) => Verdict::Now,
        Some(s) => Verdict::After(Duration::from_secs(s.unsigned_abs())),
    }
}

/// Evicts the pods of the node `node_name` that its `NoExecute` taints ask to go, until
/// `stopping`.
pub(crate) async fn run(store: Arc<Store>, node_name: String, recorder: Recorder, mut stopping: watch::Receiver<bool>) {
    let mut rx = store.subscribe();
    // The evictions planned, by pod UID: the pod and when.
    let mut planned: HashMap<String, (Key, Instant)> = HashMap::new();
    loop {
        let node = store.get(&Key::new(Resource::Nodes, "", &node_name));
        let taints: Vec<Value> = node
            .as_deref()
            .and_then(|n| n.pointer("/spec/taints"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let now = Instant::now();
        let mut seen = std::collections::HashSet::new();
        // Without a NoExecute taint and nothing planned, no pod has anything to do here: the
        // pods' own changes (their status, many per start) cost no scan.
        let no_execute = taints.iter().any(|t| t.get("effect").and_then(Value::as_str) == Some("NoExecute"));
        let pods = if no_execute || !planned.is_empty() { store.list(Resource::Pods, None).0 } else { Vec::new() };
        for pod in pods {
            let on_node = pod.pointer("/spec/nodeName").and_then(Value::as_str) == Some(node_name.as_str());
            if !on_node || is_terminal(&pod) || is_deleting(&pod) {
                continue;
            }
            let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("").to_string();
            seen.insert(uid.clone());
            let key = Key::of(Resource::Pods, &pod);
            match decide(&pod, &taints) {
                Verdict::Stay => {
                    if planned.remove(&uid).is_some() {
                        tell(&recorder, &pod, &key, "Cancelling deletion of");
                    }
                }
                Verdict::Now => evict(&store, &recorder, &key, &pod),
                // A wait past what the clock can hold is for ever.
                Verdict::After(wait) if now.checked_add(wait).is_none() => {
                    planned.remove(&uid);
                }
                Verdict::After(wait) => {
                    // A plan made earlier stands if it is sooner.
                    let at = now + wait;
                    let sooner = planned.get(&uid).is_some_and(|(_, t)| *t <= at);
                    if !sooner {
                        if !planned.contains_key(&uid) {
                            tell(&recorder, &pod, &key, "Marking for deletion");
                        }
                        planned.insert(uid, (key, at));
                    }
                }
            }
        }
        // Pods gone, ended or being deleted have no eviction left to wait for.
        planned.retain(|uid, _| seen.contains(uid));
        // Those due now go.
        let due: Vec<String> = planned.iter().filter(|(_, (_, at))| *at <= now).map(|(u, _)| u.clone()).collect();
        for uid in due {
            if let Some((key, _)) = planned.remove(&uid)
                && let Some(pod) = store.get(&key)
            {
                evict(&store, &recorder, &key, &pod);
            }
        }
        let next = planned.values().map(|(_, at)| *at).min();
        let wake = async {
            loop {
                match rx.recv().await {
                    Ok(c) if matches!(c.key.resource, Resource::Nodes | Resource::Pods) => return true,
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => return true,
                    Err(RecvError::Closed) => return false,
                }
            }
        };
        tokio::select! {
            go = wake => if !go { return },
            _ = tokio::time::sleep_until(next.unwrap_or(now + Duration::from_secs(3600))), if next.is_some() => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
        // Take the changes already queued with the one that woke the task.
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {}
    }
}

/// The controller's `TaintManagerEviction` event about `pod`: `what` (`Marking for deletion`,
/// `Cancelling deletion of`) it does.
fn tell(recorder: &Recorder, pod: &Value, key: &Key, what: &str) {
    let message = format!("{what} Pod {}/{}", key.namespace, key.name);
    let about = Involved::of(Resource::Pods, pod);
    recorder.record(&about, "Normal", "TaintManagerEviction", &message, "taint-eviction-controller");
}

/// Deletes `pod` as the taint eviction controller does: the `DisruptionTarget` condition, then a
/// deletion with the pod's own grace period.
fn evict(store: &Store, recorder: &Recorder, key: &Key, pod: &Value) {
    tell(recorder, pod, key, "Marking for deletion");
    let now = crate::values::stamp(jiff::Timestamp::now());
    let marked = store.update::<StoreError>(key, |v| {
        let message = "Taint manager: deleting due to NoExecute taint";
        crate::values::mark_disruption(v, "DeletionByTaintManager", message, &now);
        Ok(())
    });
    said(format_args!("the DisruptionTarget condition of pod {}/{}", key.namespace, key.name), marked);
    said(
        format_args!("the taint eviction of pod {}/{}", key.namespace, key.name),
        delete(store, key, &DeleteOptions::default()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(tolerations: Value) -> Value {
        json!({"spec": {"tolerations": tolerations}})
    }

    #[test]
    fn untolerated_no_execute_taints_evict_at_once_tolerated_ones_after_the_shortest_wait() {
        let taint = json!({"key": "maintenance", "value": "yes", "effect": "NoExecute"});
        let schedule_only = json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"});
        assert_eq!(decide(&pod(json!([])), &[]), Verdict::Stay);
        assert_eq!(
            decide(&pod(json!([])), std::slice::from_ref(&schedule_only)),
            Verdict::Stay,
            "NoSchedule evicts nothing"
        );
        assert_eq!(decide(&pod(json!([])), std::slice::from_ref(&taint)), Verdict::Now);
        let forever = json!([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]);
        assert_eq!(decide(&pod(forever), std::slice::from_ref(&taint)), Verdict::Stay);
        let wrong_value = json!([{"key": "maintenance", "operator": "Equal", "value": "no"}]);
        assert_eq!(decide(&pod(wrong_value), std::slice::from_ref(&taint)), Verdict::Now);
        let everything = json!([{"operator": "Exists"}]);
        assert_eq!(decide(&pod(everything), std::slice::from_ref(&taint)), Verdict::Stay);
        let two = json!([
            {"key": "maintenance", "operator": "Equal", "value": "yes", "effect": "NoExecute", "tolerationSeconds": 25},
            {"key": "maintenance", "operator": "Exists", "tolerationSeconds": 5},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]);
        assert_eq!(
            decide(&pod(two), std::slice::from_ref(&taint)),
            Verdict::After(Duration::from_secs(5)),
            "the shortest of those used"
        );
        let negative = json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": -3}]);
        assert_eq!(decide(&pod(negative), std::slice::from_ref(&taint)), Verdict::Now);
        let huge = json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": i64::MAX}]);
        assert_eq!(
            decide(&pod(huge), std::slice::from_ref(&taint)),
            Verdict::After(Duration::from_secs(i64::MAX as u64))
        );
        assert!(untolerated(&pod(json!([])), std::slice::from_ref(&taint)));
        assert!(!untolerated(
            &pod(json!([{"key": "maintenance", "operator": "Exists", "tolerationSeconds": 0}])),
            std::slice::from_ref(&taint)
        ));
        let other = json!({"key": "other", "effect": "NoExecute"});
        let one = json!([{"key": "maintenance", "operator": "Exists", "effect": "NoExecute"}]);
        assert_eq!(decide(&pod(one), &[taint, other]), Verdict::Now, "every NoExecute taint must be tolerated");
    }
}
