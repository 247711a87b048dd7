//! The ReplicaSet controller: keeps `replicas` live pods (not finished, not being deleted). A
//! pod being deleted is replaced at once, as the real controller does, so on one machine the
//! replacement starts while the old pod terminates. Surplus pods go not-ready first, newest
//! first.
//!
//! A reconcile [`observe`]s the ReplicaSet's pods and its last burst, [`decide`]s a [`Plan`]
//! (a pure function of the ReplicaSet, its pods and the time) and [`act`]s on it.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use podvisor_objects::kinds::Resource;
use tokio::time::Instant;

use super::{Action, Ctx, Error, create_pod, delete_pod, encode, key_of, owned};
use crate::store::{Key, StoreError};
use crate::values::{meta_is_deleting, pod_is_ready, pod_is_terminal};

const COMPONENT: &str = "replicaset-controller";

/// The most pods one sync creates or deletes (the controller's `burstReplicas`).
pub const BURST_REPLICAS: usize = 500;

/// The least time between two bursts of creations of one ReplicaSet.
const BURST_INTERVAL: Duration = Duration::from_secs(1);

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

/// Whether a pod counts towards the replicas: not finished, not being deleted.
fn live(p: &Pod) -> bool {
    !meta_is_deleting(&p.metadata) && !pod_is_terminal(p)
}

/// What the store says about one ReplicaSet besides the ReplicaSet itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The pods it controls, in the store's order (by name).
    pub pods: Vec<Pod>,
    /// When it last created a burst of pods, if lately.
    pub last_burst: Option<Instant>,
}

/// Reads the pods `rs` controls and when it last created a burst of them.
pub(crate) fn observe(rs: &ReplicaSet, ctx: &Ctx) -> Result<Observed, Error> {
    let key = key_of(Resource::ReplicaSets, &rs.metadata);
    let uid = rs.metadata.uid.as_deref().unwrap_or("");
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid)?;
    let last_burst = ctx.bursts.lock().unwrap_or_else(|e| e.into_inner()).get(&key).copied();
    Ok(Observed { pods, last_burst })
}

/// How a plan changes the number of pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// As many as wanted.
    None,
    /// Too few, but the last burst was less than a second ago: look again after this.
    Wait(Duration),
    /// Create this many, in slow-start batches.
    Create(usize),
    /// Delete these (not ready first, then the newest).
    Delete(Vec<Key>),
}

/// What one reconcile of a ReplicaSet does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// `spec.replicas`.
    pub want: usize,
    /// The live pods before the change.
    pub live: usize,
    /// The change.
    pub change: Change,
    /// The live pods that are ready.
    pub ready: usize,
    /// The generation the status says was observed.
    pub generation: i64,
}

/// Decides what to do with `rs`, given its pods, its last burst and the time: a pure function.
pub(crate) fn decide(rs: &ReplicaSet, observed: &Observed, now: Instant) -> Plan {
    let replicas = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let want = usize::try_from(replicas).unwrap_or(0);
    let mut alive: Vec<&Pod> = observed.pods.iter().filter(|p| live(p)).collect();
    let count = alive.len();
    let change = if count < want {
        match observed.last_burst.map(|t| now.duration_since(t)).filter(|d| *d < BURST_INTERVAL) {
            Some(since) => Change::Wait(BURST_INTERVAL - since),
            None => Change::Create((want - count).min(BURST_REPLICAS)),
        }
    } else if count > want {
        // Not ready first, then the newest.
        alive.sort_by_key(|p| (pod_is_ready(p), std::cmp::Reverse(p.metadata.creation_timestamp.clone())));
        let surplus = (count - want).min(BURST_REPLICAS);
        Change::Delete(alive[..surplus].iter().map(|p| key_of(Resource::Pods, &p.metadata)).collect())
    } else {
        Change::None
    };
    let ready = observed.pods.iter().filter(|p| live(p) && pod_is_ready(p)).count();
    Plan { want, live: count, change, ready, generation: rs.metadata.generation.unwrap_or(1) }
}

/// Applies `plan` to `rs`: creates or deletes pods, keeps the burst pacing, and writes the
/// status.
pub(crate) fn act(rs: &ReplicaSet, plan: Plan, now: Instant, ctx: &Ctx) -> Result<Action, Error> {
    let key = key_of(Resource::ReplicaSets, &rs.metadata);
    let bursts = || ctx.bursts.lock().unwrap_or_else(|e| e.into_inner());
    let (want, mut count) = (plan.want, plan.live);
    let mut requeue = None;
    let mut first_error = Ok(());
    match &plan.change {
        Change::None => {}
        Change::Wait(after) => requeue = Some(*after),
        Change::Create(n) => {
            let template = rs.spec.as_ref().and_then(|s| s.template.as_ref());
            let default_template = Default::default();
            let template = template.unwrap_or(&default_template);
            count += slow_start(*n, || create_pod(ctx, Resource::ReplicaSets, &rs.metadata, template, COMPONENT));
            bursts().insert(key.clone(), now);
            if count < want {
                requeue = Some(BURST_INTERVAL);
            }
        }
        Change::Delete(pods) => {
            for pod in pods {
                match delete_pod(ctx, Resource::ReplicaSets, &rs.metadata, pod, COMPONENT) {
                    Ok(true) => count -= 1,
                    Ok(false) => {}
                    Err(e) => first_error = first_error.and(Err(e)),
                }
            }
            if count > want {
                requeue = Some(BURST_INTERVAL);
            }
        }
    }
    if count >= want {
        bursts().remove(&key);
    }
    let n = i32::try_from(count).unwrap_or(i32::MAX);
    let ready = i32::try_from(plan.ready).unwrap_or(i32::MAX);
    let status = ReplicaSetStatus {
        replicas: n,
        fully_labeled_replicas: Some(n),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        observed_generation: Some(plan.generation),
        ..Default::default()
    };
    let status = encode(&key, &status)?;
    let written = ctx.store.update::<StoreError>(&key, |v| {
        v["status"] = status;
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => first_error = first_error.and(Err(Error::store("writing the status of", &key, e))),
    }
    first_error.map(|()| Action::requeue_or_await(requeue))
}

/// Reconciles one ReplicaSet: [`observe`], [`decide`], [`act`].
pub(crate) fn reconcile(rs: &ReplicaSet, ctx: &Ctx) -> Result<Action, Error> {
    let observed = observe(rs, ctx)?;
    let now = Instant::now();
    let plan = decide(rs, &observed, now);
    act(rs, plan, now, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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

    fn rs(replicas: i64) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default", "uid": "u", "generation": 3},
            "spec": {"replicas": replicas, "selector": {}}}))
        .unwrap()
    }

    /// A pod of the ReplicaSet: created at `second`, ready or not, maybe finished or stopping.
    fn pod(name: &str, second: u32, ready: bool, phase: &str, deleting: bool) -> Pod {
        let mut p = json!({"metadata": {"name": name, "namespace": "default",
                                        "creationTimestamp": format!("2026-01-01T00:00:{second:02}Z")},
                           "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:01:00Z");
        }
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn too_few_pods_are_created_in_a_burst_at_most_once_a_second() {
        let now = Instant::now();
        let observed = Observed {
            pods: vec![
                pod("a", 1, true, "Running", false),
                pod("b", 2, false, "Failed", false),
                pod("c", 3, true, "Running", true),
            ],
            last_burst: None,
        };
        let plan = decide(&rs(4), &observed, now);
        assert_eq!(plan.change, Change::Create(3), "a finished pod and a pod stopping are replaced");
        assert_eq!((plan.want, plan.live, plan.ready, plan.generation), (4, 1, 1, 3));
        let lately = Observed { last_burst: Some(now - Duration::from_millis(300)), ..observed.clone() };
        assert_eq!(decide(&rs(4), &lately, now).change, Change::Wait(Duration::from_millis(700)));
        let long_ago = Observed { last_burst: Some(now - Duration::from_secs(2)), ..observed };
        assert_eq!(decide(&rs(4), &long_ago, now).change, Change::Create(3));
        assert_eq!(decide(&rs(i64::from(i32::MAX)), &Observed::default(), now).change, Change::Create(BURST_REPLICAS));
    }

    #[test]
    fn surplus_pods_go_not_ready_first_then_newest_first() {
        let observed = Observed {
            pods: vec![
                pod("old-ready", 1, true, "Running", false),
                pod("new-ready", 5, true, "Running", false),
                pod("old-waiting", 2, false, "Pending", false),
                pod("new-waiting", 4, false, "Pending", false),
                pod("done", 9, false, "Succeeded", false),
            ],
            last_burst: None,
        };
        let names = |n: i64| match decide(&rs(n), &observed, Instant::now()).change {
            Change::Delete(keys) => keys.into_iter().map(|k| k.name).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(names(3), ["new-waiting"]);
        assert_eq!(names(1), ["new-waiting", "old-waiting", "new-ready"]);
        assert_eq!(names(-1), ["new-waiting", "old-waiting", "new-ready", "old-ready"], "negative is none");
        assert_eq!(decide(&rs(4), &observed, Instant::now()).change, Change::None);
    }
}
