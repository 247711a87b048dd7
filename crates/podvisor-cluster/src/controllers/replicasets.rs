//! The ReplicaSet controller: keeps `replicas` live pods (not finished, not being deleted). A
//! pod being deleted is replaced at once, as the real controller does, so on one machine the
//! replacement starts while the old pod terminates. Surplus pods go not-ready first, newest
//! first.

use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Ctx, Requeue, create_pod, delete_pod, owned};
use crate::store::{Key, StoreError};
use crate::values::{is_deleting, is_ready, is_terminal};

const COMPONENT: &str = "replicaset-controller";

/// The most pods one sync creates or deletes (the controller's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The least time between two bursts of creations of one ReplicaSet.
const BURST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Creates up to `n` pods in slow-start batches (1, 2, 4, …), stopping after a batch in which
/// a create failed, as the controller's `slowStartBatch`; returns how many were made.
fn slow_start(n: usize, mut create: impl FnMut() -> bool) -> usize {
    let (mut made, mut batch) = (0, 1);
    while made < n {
        let size = batch.min(n - made);
        let ok = (0..size).filter(|_| create()).count();
        made += ok;
        if ok < size {
            break;
        }
        batch *= 2;
    }
    made
}

fn live(p: &Value) -> bool {
    !is_deleting(p) && !is_terminal(p)
}

/// Reconciles one ReplicaSet.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, rs: &Value) -> Requeue {
    let uid = rs.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let want = rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize;
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid);
    let mut alive: Vec<&Value> = pods.iter().map(|p| &**p).filter(|p| live(p)).collect();
    let mut count = alive.len();
    let mut requeue = None;
    if count < want {
        let now = tokio::time::Instant::now();
        let last = ctx.bursts.lock().ok().and_then(|b| b.get(key).copied());
        match last.map(|t| now.duration_since(t)).filter(|d| *d < BURST_INTERVAL) {
            Some(since) => requeue = Some(BURST_INTERVAL - since),
            None => {
                let diff = (want - count).min(BURST_REPLICAS);
                count += slow_start(diff, || create_pod(ctx, Resource::ReplicaSets, rs, COMPONENT));
                if let Ok(mut b) = ctx.bursts.lock() {
                    b.insert(key.clone(), now);
                }
                if count < want {
                    requeue = Some(BURST_INTERVAL);
                }
            }
        }
    } else if count > want {
        // Not ready first, then the newest.
        alive.sort_by_key(|p| {
            let created = p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("");
            (is_ready(p), std::cmp::Reverse(created.to_string()))
        });
        let surplus = (count - want).min(BURST_REPLICAS);
        count -= alive[..surplus].iter().filter(|p| delete_pod(ctx, Resource::ReplicaSets, rs, p, COMPONENT)).count();
        if count > want {
            requeue = Some(BURST_INTERVAL);
        }
    }
    if count >= want
        && let Ok(mut b) = ctx.bursts.lock()
    {
        b.remove(key);
    }
    let ready = pods.iter().filter(|p| live(p) && is_ready(p)).count();
    let generation = rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    let _ = ctx.store.update::<StoreError>(key, |v| {
        v["status"] = json!({
            "replicas": count,
            "fullyLabeledReplicas": count,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "observedGeneration": generation,
        });
        Ok(())
    });
    requeue
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_come_in_slow_start_batches_that_stop_at_a_failure() {
        let mut calls = 0;
        assert_eq!(
            slow_start(10, || {
                calls += 1;
                true
            }),
            10
        );
        assert_eq!(calls, 10, "1 + 2 + 4 + 3");
        let mut n = 0;
        // The fourth create fails: the batch of 4 (creates 4 to 7) ends the run.
        let made = slow_start(100, || {
            n += 1;
            n != 4
        });
        assert_eq!((made, n), (6, 7), "batches 1, 2, then 4 with one failure: no batch of 8");
    }
}
