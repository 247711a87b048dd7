//! The pod garbage collector's rule for orphans, as kube-controller-manager's PodGC has it: a
//! pod bound to a node that does not exist is removed once the node has been missing for
//! [`QUARANTINE`] (a node that comes back in time, as this node registers again after a
//! delete, keeps its pods). A pod not yet ended is marked `Failed` with the `DisruptionTarget`
//! condition (`DeletionByPodGC`) first; the removal is at once, without a grace period, since
//! no node is there to stop its containers.

use std::time::Duration;

use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{Action, Ctx, Error};
use crate::delete::{DeleteOptions, delete};
use crate::store::{Change, ChangeKind, Key, Store, StoreError};
use crate::values::is_terminal;

/// How long a node must be missing before its pods are collected.
pub(crate) const QUARANTINE: Duration = Duration::from_secs(40);

/// The node `pod` is bound to, if it is bound to one that does not exist.
fn missing_node(store: &Store, pod: &Value) -> Option<String> {
    let node = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty())?;
    store.get(&Key::new(Resource::Nodes, "", node)).is_none().then(|| node.to_string())
}

/// The pods a change may have orphaned: a pod written bound to a missing node, or every pod
/// of a node just deleted.
pub(crate) fn affected(c: &Change, store: &Store, keys: &mut Vec<Key>) {
    match (c.key.resource, c.kind) {
        (Resource::Pods, ChangeKind::Added | ChangeKind::Modified) if missing_node(store, &c.object).is_some() => {
            keys.push(c.key.clone());
        }
        (Resource::Nodes, ChangeKind::Deleted) => {
            let pods = store.list(Resource::Pods, None).0;
            let bound =
                pods.iter().filter(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(&c.key.name));
            keys.extend(bound.map(|p| Key::of(Resource::Pods, p)));
        }
        _ => {}
    }
}

/// Every pod bound to a node that does not exist: looked at when the controllers start, and
/// when they fell behind the store's changes.
pub(crate) fn orphans(store: &Store) -> Vec<Key> {
    let pods = store.list(Resource::Pods, None).0;
    pods.iter().filter(|p| missing_node(store, p).is_some()).map(|p| Key::of(Resource::Pods, p)).collect()
}

/// What to do about a pod whose node has been missing since `since`: wait for the rest of the
/// quarantine, or collect it now.
fn verdict(since: Instant, now: Instant) -> Option<Duration> {
    let waited = now.saturating_duration_since(since);
    (waited < QUARANTINE).then(|| QUARANTINE - waited)
}

/// Collects `pod` if its node has been missing for the quarantine; otherwise says when to look
/// again.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, pod: &Value) -> Result<Action, Error> {
    let Some(node) = missing_node(&ctx.store, pod) else {
        if let Some(node) = pod.pointer("/spec/nodeName").and_then(Value::as_str)
            && let Ok(mut missing) = ctx.missing_nodes.lock()
        {
            missing.remove(node);
        }
        return Ok(Action::await_change());
    };
    let now = Instant::now();
    let since = match ctx.missing_nodes.lock() {
        Ok(mut missing) => *missing.entry(node.clone()).or_insert(now),
        Err(_) => now,
    };
    if let Some(wait) = verdict(since, now) {
        return Ok(Action::requeue(wait));
    }
    if !is_terminal(pod) {
        let stamp = crate::values::stamp(jiff::Timestamp::now());
        let marked = ctx.store.update::<StoreError>(key, |v| {
            crate::values::mark_disruption(v, "DeletionByPodGC", "PodGC: node no longer exists", &stamp);
            v["status"]["phase"] = json!("Failed");
            Ok(())
        });
        match marked {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(Error::store("failing the orphaned pod", key, e)),
        }
    }
    match delete(&ctx.store, key, &DeleteOptions { grace_seconds: Some(0), ..Default::default() }) {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(Error::store("deleting the orphaned pod", key, e)),
    }
    // The node's quarantine ends with its last pod: a pod bound to that name later waits anew.
    let pods = ctx.store.list(Resource::Pods, None).0;
    if !pods.iter().any(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(&node))
        && let Ok(mut missing) = ctx.missing_nodes.lock()
    {
        missing.remove(&node);
    }
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn pod(ctx: &Ctx, node: &str) -> Key {
        let p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lost", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Pending"}});
        Key::of(Resource::Pods, &ctx.store.create(Resource::Pods, p).unwrap())
    }

    #[test]
    fn the_quarantine_is_waited_out_then_the_pod_is_collected() {
        let start = Instant::now();
        assert_eq!(verdict(start, start), Some(QUARANTINE));
        assert_eq!(verdict(start, start + Duration::from_secs(30)), Some(Duration::from_secs(10)));
        assert_eq!(verdict(start, start + QUARANTINE), None);
    }

    #[tokio::test]
    async fn a_pod_bound_to_a_missing_node_is_failed_and_removed_after_the_quarantine() {
        let ctx = super::super::test_ctx(&Store::in_memory());
        let key = pod(&ctx, "worker-7");
        let obj = ctx.store.get(&key).unwrap();
        let mut keys = Vec::new();
        let change = Change { kind: ChangeKind::Added, key: key.clone(), object: obj.clone(), rv: 1, previous: None };
        affected(&change, &ctx.store, &mut keys);
        assert_eq!(keys, std::slice::from_ref(&key));
        let first = reconcile(&ctx, &key, &obj).unwrap();
        assert!(first.requeue_after.is_some_and(|d| d <= QUARANTINE && d > QUARANTINE - Duration::from_secs(5)));
        assert!(ctx.store.get(&key).is_some(), "kept during the quarantine");
        // The node has been missing long enough.
        ctx.missing_nodes.lock().unwrap().insert("worker-7".into(), Instant::now() - QUARANTINE);
        let mut seen = ctx.store.subscribe();
        reconcile(&ctx, &key, &obj).unwrap();
        assert!(ctx.store.get(&key).is_none(), "removed at once");
        assert!(ctx.missing_nodes.lock().unwrap().is_empty(), "the quarantine ends with the node's last pod");
        let marked = seen.recv().await.unwrap().object.clone();
        assert_eq!(marked["status"]["phase"], "Failed");
        assert_eq!(marked["status"]["conditions"][0]["reason"], "DeletionByPodGC");
        assert_eq!(marked["status"]["conditions"][0]["message"], "PodGC: node no longer exists");
    }

    #[test]
    fn a_pod_on_a_node_that_exists_is_left_alone() {
        let ctx = super::super::test_ctx(&Store::in_memory());
        ctx.store
            .create(Resource::Nodes, json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "here"}}))
            .unwrap();
        let key = pod(&ctx, "here");
        let obj = ctx.store.get(&key).unwrap();
        let mut keys = Vec::new();
        let change = Change { kind: ChangeKind::Added, key: key.clone(), object: obj.clone(), rv: 1, previous: None };
        affected(&change, &ctx.store, &mut keys);
        assert!(keys.is_empty());
        assert_eq!(reconcile(&ctx, &key, &obj).unwrap(), Action::await_change());
        assert!(ctx.store.get(&key).is_some());
    }
}
