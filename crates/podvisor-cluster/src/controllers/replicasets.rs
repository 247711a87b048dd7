//! The ReplicaSet controller: keeps `replicas` live pods (not finished, not being deleted). A
//! pod being deleted is replaced at once, as the real controller does, so on one machine the
//! replacement starts while the old pod terminates. Surplus pods go not-ready first, newest
//! first.

use podvisor_api::kinds::Resource;
use serde_json::{Value, json};

use super::{Ctx, Requeue, create_pod, delete_pod, owned};
use crate::store::{Key, StoreError};
use crate::values::{is_deleting, is_ready, is_terminal};

const COMPONENT: &str = "replicaset-controller";

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
    if count < want {
        count += (count..want).filter(|_| create_pod(ctx, Resource::ReplicaSets, rs, COMPONENT)).count();
    } else if count > want {
        // Not ready first, then the newest.
        alive.sort_by_key(|p| {
            let created = p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("");
            (is_ready(p), std::cmp::Reverse(created.to_string()))
        });
        count -=
            alive[..count - want].iter().filter(|p| delete_pod(ctx, Resource::ReplicaSets, rs, p, COMPONENT)).count();
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
    None
}
