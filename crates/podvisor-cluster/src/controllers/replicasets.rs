//! The ReplicaSet controller: keeps `replicas` live pods (not finished, not being deleted). A
//! pod being deleted is replaced at once, as the real controller does, so on one machine the
//! replacement starts while the old pod terminates. Surplus pods go not-ready first, newest
//! first.

use podvisor_api::kinds::Resource;
use serde_json::{Map, Value, json};

use super::{Ctx, Requeue, deleting, from_template, owned, owner_ref, suffix};
use crate::delete::{DeleteOptions, delete};
use crate::events::Involved;
use crate::store::{Key, StoreError};

const COMPONENT: &str = "replicaset-controller";

fn ready(p: &Value) -> bool {
    p.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

fn live(p: &Value) -> bool {
    !deleting(p) && !matches!(p.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"))
}

/// Reconciles one ReplicaSet.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, rs: &Value) -> Requeue {
    let uid = rs.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let name = rs.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let want = rs.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0) as usize;
    let about = Involved::of(Resource::ReplicaSets, rs);
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid);
    let mut alive: Vec<&Value> = pods.iter().map(|p| &**p).filter(|p| live(p)).collect();
    let mut count = alive.len();
    if alive.len() < want {
        let labels: Map<String, Value> =
            rs.pointer("/spec/template/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
        for _ in alive.len()..want {
            let pod_name = format!("{name}-{}", suffix(5));
            let mut pod = from_template(
                "v1",
                "Pod",
                &rs["spec"]["template"],
                &pod_name,
                &key.namespace,
                &labels,
                owner_ref(Resource::ReplicaSets, rs),
            );
            pod["metadata"]["generateName"] = json!(format!("{name}-"));
            crate::admit(Resource::Pods, &mut pod);
            if ctx.store.create(Resource::Pods, pod).is_ok() {
                count += 1;
                ctx.recorder.record(
                    &about,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {pod_name}"),
                    COMPONENT,
                );
            }
        }
    } else if alive.len() > want {
        // Not ready first, then the newest.
        alive.sort_by_key(|p| {
            (
                ready(p),
                std::cmp::Reverse(
                    p.pointer("/metadata/creationTimestamp").and_then(Value::as_str).unwrap_or("").to_string(),
                ),
            )
        });
        for p in alive.iter().take(alive.len() - want) {
            let pk = Key::of(Resource::Pods, p);
            if delete(&ctx.store, &pk, &DeleteOptions::default()).is_ok() {
                count -= 1;
                ctx.recorder.record(
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {}", pk.name),
                    COMPONENT,
                );
            }
        }
        alive.truncate(0);
    }
    let live_pods: Vec<&Value> = pods.iter().map(|p| &**p).filter(|p| live(p)).collect();
    let ready_n = live_pods.iter().filter(|p| ready(p)).count();
    let generation = rs.pointer("/metadata/generation").cloned().unwrap_or(json!(1));
    let _ = ctx.store.update::<StoreError>(key, |v| {
        v["status"] = json!({
            "replicas": count,
            "fullyLabeledReplicas": count,
            "readyReplicas": ready_n,
            "availableReplicas": ready_n,
            "observedGeneration": generation,
        });
        Ok(())
    });
    None
}
