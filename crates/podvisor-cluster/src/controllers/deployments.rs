//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash, the
//! `pod-template-hash` label), rolled out with `RollingUpdate` (`maxSurge`, `maxUnavailable`,
//! where available means Ready, which includes sidecars' readiness) or `Recreate` (old pods gone
//! before new ones start), and the Deployment's status and conditions.

use jiff::Timestamp;
use podvisor_objects::kinds::Resource;
use serde_json::{Map, Value, json};

use super::{Ctx, Requeue, from_template, owned, owner_ref, safe_encode};
use crate::events::Involved;
use crate::store::{Key, Obj, StoreError};
use crate::values::stamp;

const COMPONENT: &str = "deployment-controller";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// FNV-1a over the template's JSON: the `pod-template-hash`.
fn template_hash(template: &Value) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in template.to_string().bytes() {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    safe_encode(h as u64)
}

/// Resolves an int-or-percent against `total`, rounding up or down.
fn resolve(v: Option<&Value>, default: &str, total: i64, up: bool) -> i64 {
    let v = v.cloned().unwrap_or_else(|| json!(default));
    if let Some(n) = v.as_i64() {
        return n.max(0);
    }
    let pct = v.as_str().and_then(|s| s.strip_suffix('%')).and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
    let x = total * pct;
    if up { (x + 99) / 100 } else { x / 100 }
}

fn int(v: &Value, p: &str) -> i64 {
    v.pointer(p).and_then(Value::as_i64).unwrap_or(0)
}

fn revision(rs: &Value) -> i64 {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(REVISION))
        .and_then(Value::as_str)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn scale(ctx: &Ctx, about: &Involved, rs: &Value, to: i64) {
    let from = int(rs, "/spec/replicas");
    if from == to {
        return;
    }
    let key = Key::of(Resource::ReplicaSets, rs);
    if ctx
        .store
        .update::<StoreError>(&key, |v| {
            v["spec"]["replicas"] = json!(to);
            Ok(())
        })
        .is_ok()
    {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {} from {from} to {to}", key.name);
        ctx.recorder.record(about, "Normal", "ScalingReplicaSet", &msg, COMPONENT);
    }
}

/// Reconciles one Deployment.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, d: &Value) -> Requeue {
    let uid = d.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let name = d.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    let desired = d.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1).max(0);
    let about = Involved::of(Resource::Deployments, d);
    let template = &d["spec"]["template"];
    let hash = template_hash(template);
    let mut rss: Vec<Obj> = owned(&ctx.store, Resource::ReplicaSets, &key.namespace, uid);
    rss.sort_by_key(|r| revision(r));
    let is_new =
        |r: &Value| r.pointer("/metadata/labels/pod-template-hash").and_then(Value::as_str) == Some(hash.as_str());
    let recreate = d.pointer("/spec/strategy/type").and_then(Value::as_str) == Some("Recreate");
    let old: Vec<Obj> = rss.iter().filter(|r| !is_new(r)).cloned().collect();
    let old_pods = |ctx: &Ctx| {
        old.iter()
            .map(|r| {
                owned(&ctx.store, Resource::Pods, &key.namespace, r["metadata"]["uid"].as_str().unwrap_or("")).len()
            })
            .sum::<usize>()
    };
    let new = match rss.iter().find(|r| is_new(r)) {
        Some(r) => r.clone(),
        None => {
            let mut labels: Map<String, Value> = Map::new();
            labels.insert("pod-template-hash".into(), json!(hash));
            let rs_name = format!("{name}-{hash}");
            let mut rs = from_template(
                "apps/v1",
                "ReplicaSet",
                &json!({"metadata": template.get("metadata").cloned().unwrap_or(json!({}))}),
                &rs_name,
                &key.namespace,
                &labels,
                owner_ref(Resource::Deployments, d),
            );
            let mut tpl = template.clone();
            tpl["metadata"]["labels"]["pod-template-hash"] = json!(hash);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"]["pod-template-hash"] = json!(hash);
            let start = if old.is_empty() && !recreate { desired } else { 0 };
            rs["spec"] = json!({"replicas": start, "selector": selector, "template": tpl});
            let rev = rss.iter().map(|r| revision(r)).max().unwrap_or(0) + 1;
            rs["metadata"]["annotations"] = json!({REVISION: rev.to_string()});
            match ctx.store.create(Resource::ReplicaSets, rs) {
                Ok(rs) => {
                    if start > 0 {
                        let msg = format!("Scaled up replica set {rs_name} from 0 to {start}");
                        ctx.recorder.record(&about, "Normal", "ScalingReplicaSet", &msg, COMPONENT);
                    }
                    rs
                }
                Err(_) => return None,
            }
        }
    };
    if recreate {
        for r in &old {
            scale(ctx, &about, r, 0);
        }
        if old_pods(ctx) == 0 {
            scale(ctx, &about, &new, desired);
        }
    } else {
        let strategy = d.pointer("/spec/strategy/rollingUpdate");
        let surge = resolve(strategy.and_then(|s| s.get("maxSurge")), "25%", desired, true);
        let mut unavailable = resolve(strategy.and_then(|s| s.get("maxUnavailable")), "25%", desired, false);
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let all: i64 = rss.iter().map(|r| int(r, "/spec/replicas")).sum::<i64>()
            + if rss.iter().any(|r| is_new(r)) { 0 } else { int(&new, "/spec/replicas") };
        let cur = int(&new, "/spec/replicas");
        let target = if cur > desired { desired } else { desired.min(cur + (desired + surge - all).max(0)) };
        scale(ctx, &about, &new, target);
        let available: i64 = rss.iter().map(|r| int(r, "/status/availableReplicas")).sum();
        let mut can_remove = (available - (desired - unavailable)).max(0);
        for r in &old {
            let replicas = int(r, "/spec/replicas");
            let unhealthy = (replicas - int(r, "/status/availableReplicas")).max(0);
            let cut = replicas.min(unhealthy + can_remove);
            can_remove -= (cut - unhealthy).max(0);
            scale(ctx, &about, r, replicas - cut);
        }
    }
    // Status from the ReplicaSets as they are now.
    let rss: Vec<Obj> = owned(&ctx.store, Resource::ReplicaSets, &key.namespace, uid);
    let sum = |p: &str| rss.iter().map(|r| int(r, p)).sum::<i64>();
    let new_now = rss.iter().find(|r| is_new(r)).cloned().unwrap_or(new);
    let available = sum("/status/availableReplicas");
    let strategy = d.pointer("/spec/strategy/rollingUpdate");
    let max_unavailable =
        if recreate { 0 } else { resolve(strategy.and_then(|s| s.get("maxUnavailable")), "25%", desired, false) };
    let has_min = available >= desired - max_unavailable;
    let old_left = rss.iter().filter(|r| !is_new(r)).map(|r| int(r, "/status/replicas")).sum::<i64>();
    let complete = int(&new_now, "/status/availableReplicas") >= desired && old_left == 0;
    let rs_name = new_now.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    let now = stamp(Timestamp::now());
    let rev = revision(&new_now).to_string();
    let _ = ctx.store.update::<StoreError>(key, |v| {
        v["metadata"]["annotations"][REVISION] = json!(rev);
        let prev = v["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let cond = |ty: &str, ok: bool, reason: &str, message: String| {
            let status = if ok { "True" } else { "False" };
            let old = prev.iter().find(|c| c["type"] == ty);
            let since = old
                .filter(|c| c["status"] == status)
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
            let same = old.is_some_and(|c| c["status"] == status && c["reason"] == reason);
            let updated = if same {
                old.and_then(|c| c.get("lastUpdateTime").cloned()).unwrap_or(json!(now))
            } else {
                json!(now)
            };
            json!({"type": ty, "status": status, "reason": reason, "message": message,
                   "lastTransitionTime": since, "lastUpdateTime": updated})
        };
        let available_cond = if has_min {
            cond("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
        } else {
            cond(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            )
        };
        let progressing = if complete {
            cond(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                format!("ReplicaSet {rs_name:?} has successfully progressed."),
            )
        } else {
            cond("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet {rs_name:?} is progressing."))
        };
        let mut st = json!({
            "observedGeneration": v["metadata"]["generation"].clone(),
            "replicas": sum("/status/replicas"),
            "updatedReplicas": int(&new_now, "/status/replicas"),
            "readyReplicas": sum("/status/readyReplicas"),
            "availableReplicas": available,
            "conditions": [available_cond, progressing],
        });
        let unavailable = (desired - available).max(0);
        if unavailable > 0 {
            st["unavailableReplicas"] = json!(unavailable);
        }
        v["status"] = st;
        Ok(())
    });
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_round_as_the_controller_does() {
        assert_eq!(resolve(None, "25%", 3, true), 1);
        assert_eq!(resolve(None, "25%", 3, false), 0);
        assert_eq!(resolve(Some(&json!(2)), "25%", 3, false), 2);
        assert_eq!(resolve(Some(&json!("50%")), "25%", 5, true), 3);
        assert_ne!(template_hash(&json!({"a": 1})), template_hash(&json!({"a": 2})));
    }
}
