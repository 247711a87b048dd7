//! The Job controller: runs pods until `completions` succeed (`parallelism` at a time),
//! recreates failed pods after the controller's back-off (10 s doubling, at most 6 minutes)
//! until `backoffLimit` failures (container restarts count too when the pods restart
//! `OnFailure`), judges failed pods by the `podFailurePolicy` (`FailJob`, `Ignore`, `Count`),
//! fails at `activeDeadlineSeconds`, and keeps the Job's status and conditions: first the
//! interim `SuccessCriteriaMet` or `FailureTarget`, then, once no pod of the Job is left
//! running, `Complete` or `Failed`; `ttlSecondsAfterFinished` removes a finished Job.
//!
//! A reconcile [`observe`]s the Job's pods, [`decide`]s a [`Plan`] (a pure function of the Job,
//! its pods and the time) and [`act`]s on it.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, create_pod, delete_pod, encode, involved, key_of, owned};
use crate::delete::{DeleteOptions, Propagation, delete};
use crate::store::{Key, StoreError};
use crate::values::{meta_is_deleting, pod_is_ready, pod_is_terminal, pod_phase, stamp};

const COMPONENT: &str = "job-controller";

/// The Job controller's delay before recreating a pod after `failures` failures.
pub fn job_backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(360))
}

/// `secs` seconds after `t`, saturating at the end of time: every number of seconds a user
/// may write (int64 max included) gives an instant.
fn later(t: Timestamp, secs: i64) -> Timestamp {
    t.checked_add(SignedDuration::from_secs(secs)).unwrap_or(if secs < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// A count from the spec: negative is none.
fn count(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// A number of pods, as the status counts them.
fn count_of(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The condition of `ty` that is true, if any.
fn true_condition<'a>(conditions: &'a [JobCondition], ty: &str) -> Option<&'a JobCondition> {
    conditions.iter().find(|c| c.type_ == ty && c.status == "True")
}

/// A pod's init container statuses, then its regular ones.
fn init_then_regular(p: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let st = p.status.as_ref();
    let init = st.and_then(|s| s.init_container_statuses.as_ref());
    let regular = st.and_then(|s| s.container_statuses.as_ref());
    init.into_iter().flatten().chain(regular.into_iter().flatten())
}

/// When a failed pod's last container ended (or `now` when unknown).
fn failed_at(p: &Pod, now: Timestamp) -> Timestamp {
    init_then_regular(p)
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max()
        .unwrap_or(now)
}

/// How many times a pod's containers restarted.
fn restarts(p: &Pod) -> u32 {
    init_then_regular(p).map(|c| u32::try_from(c.restart_count).unwrap_or(0)).fold(0, u32::saturating_add)
}

/// What the `podFailurePolicy` makes of a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judgement {
    /// Counted towards `backoffLimit` (no rule matched, or a `Count` rule).
    Count,
    /// Not counted, and the pod is replaced.
    Ignore,
    /// The Job fails, with this message.
    FailJob(String),
}

/// Matches a failed pod against the policy's rules, first match wins, as the Job controller:
/// an exit code rule looks at terminated containers (regular ones first, then init containers
/// and sidecars) that exited non-zero; a condition rule at the pod's conditions.
fn judge(policy: &PodFailurePolicy, pod: &Pod) -> Judgement {
    let name =
        format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""));
    for (index, rule) in policy.rules.iter().enumerate() {
        let action = rule.action.as_str();
        let matched = if let Some(codes) = &rule.on_exit_codes {
            exit_code_match(pod, codes).map(|(c, code)| {
                format!(
                    "Container {c} for pod {name} failed with exit code {code} matching {action} rule at index {index}"
                )
            })
        } else if let Some(patterns) = &rule.on_pod_conditions {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.into_iter().flatten().find_map(|c| {
                // A pattern's status defaults to "True".
                let matches =
                    patterns.iter().any(|p| p.type_ == c.type_ && p.status.as_deref().unwrap_or("True") == c.status);
                matches.then(|| format!("Pod {name} has condition {} matching {action} rule at index {index}", c.type_))
            })
        } else {
            None
        };
        if let Some(message) = matched {
            match action {
                "Ignore" => return Judgement::Ignore,
                "FailJob" => return Judgement::FailJob(message),
                "Count" => return Judgement::Count,
                _ => {}
            }
        }
    }
    Judgement::Count
}

/// The first terminated container (regular ones first, then init containers) that exited
/// non-zero with a code the requirement matches: its name and exit code.
fn exit_code_match(pod: &Pod, codes: &PodFailurePolicyOnExitCodesRequirement) -> Option<(String, i32)> {
    let within = match codes.operator.as_str() {
        "In" => |v: &[i32], c: i32| v.contains(&c),
        "NotIn" => |v: &[i32], c: i32| !v.contains(&c),
        _ => return None,
    };
    let st = pod.status.as_ref();
    let regular = st.and_then(|s| s.container_statuses.as_ref());
    let init = st.and_then(|s| s.init_container_statuses.as_ref());
    regular
        .into_iter()
        .flatten()
        .chain(init.into_iter().flatten())
        .filter(|c| codes.container_name.as_ref().is_none_or(|n| c.name == *n))
        .find_map(|c| {
            let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
            (code != 0 && within(&codes.values, code)).then(|| (c.name.clone(), code))
        })
}

/// What the store says about one Job besides the Job itself: the pods it controls.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The Job's pods, in the store's order (by name).
    pub pods: Vec<Pod>,
}

/// Reads the pods `job` controls.
pub(crate) fn observe(job: &Job, ctx: &Ctx) -> Result<Observed, Error> {
    let namespace = job.metadata.namespace.as_deref().unwrap_or("");
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    Ok(Observed { pods: owned(&ctx.store, Resource::Pods, namespace, uid)? })
}

/// An event a plan records about the Job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// The status a [`Plan::Sync`] writes. Fields the plan does not name are kept as they are.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusPlan {
    /// `startTime`, when the Job has none yet.
    pub start_time: Option<Timestamp>,
    /// `active`, not counting the pods the plan creates (those created are added); absent when
    /// 0.
    pub active: usize,
    /// `succeeded`, absent when 0.
    pub succeeded: u32,
    /// `failed`, absent when 0.
    pub failed: u32,
    /// `terminating`.
    pub terminating: usize,
    /// `ready`.
    pub ready: usize,
    /// Conditions appended to the Job's.
    pub conditions: Vec<JobCondition>,
    /// `completionTime`, set when the Job completes.
    pub completion_time: Option<Timestamp>,
}

/// What one reconcile of a Job does.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The Job has finished: it waits for its `ttlSecondsAfterFinished` (`requeue`), or is
    /// removed with its pods (`remove`), or is left as it is.
    Finished {
        /// Whether the Job is removed now.
        remove: bool,
        /// When to look again.
        requeue: Option<Duration>,
    },
    /// The Job runs or is finishing.
    Sync {
        /// How many pods to create.
        create: usize,
        /// The pods to delete.
        delete: Vec<Key>,
        /// The events to record, after the pods are created and deleted.
        events: Vec<Event>,
        /// The status to write, last.
        status: StatusPlan,
        /// When to look again.
        requeue: Option<Duration>,
    },
}

/// The plan of a finished Job: removed `ttlSecondsAfterFinished` after it finished.
fn decide_finished(spec: &JobSpec, status: Option<&JobStatus>, now: Timestamp) -> Plan {
    let wait = Plan::Finished { remove: false, requeue: None };
    let Some(ttl) = spec.ttl_seconds_after_finished else { return wait };
    let last_transition = || {
        let conditions = status.and_then(|s| s.conditions.as_ref());
        conditions.into_iter().flatten().filter_map(|c| c.last_transition_time.as_ref()).map(|t| t.0).max()
    };
    let Some(done) = status.and_then(|s| s.completion_time.as_ref()).map(|t| t.0).or_else(last_transition) else {
        return wait;
    };
    let left = later(done, i64::from(ttl)).duration_since(now);
    if left.is_positive() {
        return Plan::Finished { remove: false, requeue: Some(left.unsigned_abs()) };
    }
    Plan::Finished { remove: true, requeue: None }
}

/// Decides what to do with `job`, given its pods and the time: a pure function.
pub fn decide(job: &Job, observed: &Observed, now: Timestamp) -> Plan {
    let default_spec = JobSpec::default();
    let spec = job.spec.as_ref().unwrap_or(&default_spec);
    let status = job.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    if true_condition(conditions, "Complete").is_some() || true_condition(conditions, "Failed").is_some() {
        return decide_finished(spec, status, now);
    }
    let pods = &observed.pods;
    let deleting = |p: &Pod| meta_is_deleting(&p.metadata);
    let active: Vec<&Pod> = pods.iter().filter(|p| !pod_is_terminal(p) && !deleting(p)).collect();
    let terminating = pods.iter().filter(|p| !pod_is_terminal(p) && deleting(p)).count();
    let succeeded = count_of(pods.iter().filter(|p| pod_phase(p) == "Succeeded").count());
    let policy = spec.pod_failure_policy.as_ref();
    let judged: Vec<(&Pod, Judgement)> = pods
        .iter()
        .filter(|p| pod_phase(p) == "Failed")
        .map(|p| (p, policy.map_or(Judgement::Count, |pol| judge(pol, p))))
        .collect();
    let failed_pods: Vec<&Pod> = judged.iter().filter(|(_, j)| *j != Judgement::Ignore).map(|(p, _)| *p).collect();
    let fail_job = judged.iter().find_map(|(_, j)| match j {
        Judgement::FailJob(m) => Some(m.clone()),
        _ => None,
    });
    let pod_spec = spec.template.spec.as_ref();
    let on_failure = pod_spec.and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure");
    let restarted: u32 = if on_failure { active.iter().map(|p| restarts(p)).fold(0, u32::saturating_add) } else { 0 };
    let failed = count_of(failed_pods.len());
    let parallelism = count(spec.parallelism.unwrap_or(1));
    let completions = spec.completions.map(count);
    let backoff_limit = count(spec.backoff_limit.unwrap_or(6));
    let start = status.and_then(|s| s.start_time.as_ref()).map_or(now, |t| t.0);
    let mut requeue: Option<Duration> = None;
    // The outcome, once reached, stays: its interim condition holds it while pods stop.
    let interim =
        true_condition(conditions, "FailureTarget").or_else(|| true_condition(conditions, "SuccessCriteriaMet"));
    let mut outcome: Option<(&str, String, String)> = interim.map(|c| {
        let ty = if c.type_ == "FailureTarget" { "Failed" } else { "Complete" };
        (ty, c.reason.clone().unwrap_or_default(), c.message.clone().unwrap_or_default())
    });
    if outcome.is_none()
        && let Some(message) = fail_job
    {
        outcome = Some(("Failed", "PodFailurePolicy".into(), message));
    }
    if outcome.is_none() && failed.saturating_add(restarted) > backoff_limit {
        outcome = Some(("Failed", "BackoffLimitExceeded".into(), "Job has reached the specified backoff limit".into()));
    }
    if outcome.is_none()
        && let Some(deadline) = spec.active_deadline_seconds
    {
        let left = later(start, deadline).duration_since(now);
        if left.is_positive() {
            requeue = Some(left.unsigned_abs());
        } else {
            outcome =
                Some(("Failed", "DeadlineExceeded".into(), "Job was active longer than specified deadline".into()));
        }
    }
    let complete = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    if outcome.is_none() && complete {
        outcome = Some(("Complete", "CompletionsReached".into(), "Reached expected number of succeeded pods".into()));
    }
    let mut create = 0;
    if outcome.is_none() {
        let wanted = match completions {
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        let not_before =
            failed_pods.iter().map(|p| failed_at(p, now)).max().map(|t| later(t, job_backoff(failed).as_secs() as i64));
        // With a podFailurePolicy, podReplacementPolicy defaults to Failed: a pod that is
        // still stopping is replaced only once it has failed.
        let replace_when_failed = match spec.pod_replacement_policy.as_deref() {
            Some(p) => p == "Failed",
            None => policy.is_some(),
        };
        let holding = active.len() + if replace_when_failed { terminating } else { 0 };
        if holding < wanted {
            match not_before.map(|t| t.duration_since(now)).filter(|d| d.is_positive()) {
                Some(wait) => {
                    let wait = wait.unsigned_abs();
                    requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                }
                // At most a burst per sync, as the controller's `MaxPodCreateDeletePerSync`:
                // the pods created are changes that bring the next sync.
                None => create = (wanted - holding).min(super::replicasets::BURST_REPLICAS),
            }
        }
    }
    let condition = |ty: &str, reason: &str, message: &str| JobCondition {
        type_: ty.to_string(),
        status: "True".into(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    };
    let mut new_conditions = Vec::new();
    let mut events = Vec::new();
    let mut delete = Vec::new();
    let mut finished_now = false;
    if let Some((ty, reason, message)) = &outcome {
        if interim.is_none() {
            // The interim condition first; the Job's pods are stopped.
            let target = if *ty == "Failed" { "FailureTarget" } else { "SuccessCriteriaMet" };
            new_conditions.push(condition(target, reason, message));
        }
        delete = active.iter().map(|p| key_of(Resource::Pods, &p.metadata)).collect();
        // The terminal condition once no pod of the Job is left running.
        if active.is_empty() && terminating == 0 {
            finished_now = true;
            new_conditions.push(condition(ty, reason, message));
            events.push(if *ty == "Complete" {
                Event { type_: "Normal", reason: "Completed".into(), message: "Job completed".into() }
            } else {
                Event { type_: "Warning", reason: reason.clone(), message: message.clone() }
            });
            requeue = spec.ttl_seconds_after_finished.map(|ttl| Duration::from_secs(u64::from(count(ttl))));
        } else {
            requeue = None;
        }
    }
    let ready = active.iter().filter(|p| pod_is_ready(p)).count();
    let ended = outcome.is_some();
    let status = StatusPlan {
        start_time: status.and_then(|s| s.start_time.as_ref()).is_none().then_some(start),
        active: if ended { 0 } else { active.len() },
        succeeded,
        failed,
        terminating: if ended && !finished_now { terminating + active.len() } else { terminating },
        ready: if ended { 0 } else { ready },
        conditions: new_conditions,
        completion_time: (finished_now && outcome.as_ref().is_some_and(|o| o.0 == "Complete")).then_some(now),
    };
    Plan::Sync { create, delete, events, status, requeue }
}

/// Applies `plan` to `job`: creates and deletes its pods, records the events and writes the
/// status (or removes the finished Job).
pub(crate) fn act(job: &Job, plan: Plan, ctx: &Ctx) -> Result<Action, Error> {
    let key = key_of(Resource::Jobs, &job.metadata);
    let (create, delete_pods, events, status, requeue) = match plan {
        Plan::Finished { remove: false, requeue } => return Ok(Action::requeue_or_await(requeue)),
        Plan::Finished { remove: true, .. } => {
            let opts = DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() };
            return match delete(&ctx.store, &key, &opts) {
                Ok(_) | Err(StoreError::NotFound(_)) => Ok(Action::await_change()),
                Err(e) => Err(Error::store("removing the finished", &key, e)),
            };
        }
        Plan::Sync { create, delete, events, status, requeue } => (create, delete, events, status, requeue),
    };
    let conditions = status.conditions.iter().map(|c| encode(&key, c)).collect::<Result<Vec<Value>, _>>()?;
    let template = job.spec.as_ref().map(|s| &s.template);
    let default_template = Default::default();
    let template = template.unwrap_or(&default_template);
    let created = (0..create).filter(|_| create_pod(ctx, Resource::Jobs, &job.metadata, template, COMPONENT)).count();
    let mut first_error = Ok(());
    for pod in &delete_pods {
        if let Err(e) = delete_pod(ctx, Resource::Jobs, &job.metadata, pod, COMPONENT) {
            first_error = first_error.and(Err(e));
        }
    }
    let about = involved(Resource::Jobs, &job.metadata);
    for e in &events {
        ctx.recorder.record(&about, e.type_, &e.reason, &e.message, COMPONENT);
    }
    let written = ctx.store.update::<StoreError>(&key, |v| {
        write_status(&mut v["status"], &status, created, &conditions);
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => first_error = first_error.and(Err(Error::store("writing the status of", &key, e))),
    }
    first_error.map(|()| Action::requeue_or_await(requeue))
}

/// Writes `status` (a plan's) into a Job's stored `status`, `created` pods counted active and
/// `conditions` (the plan's, encoded) appended: what [`act`] stores, and what a virtual-time
/// run of the Job controller keeps.
pub fn write_status(st: &mut Value, status: &StatusPlan, created: usize, conditions: &[Value]) {
    if let Some(start) = status.start_time {
        st["startTime"] = json!(stamp(start));
    }
    let set = |st: &mut Value, field: &str, n: usize| {
        if n > 0 {
            st[field] = json!(n);
        } else if let Some(m) = st.as_object_mut() {
            m.remove(field);
        }
    };
    set(st, "active", status.active + created);
    set(st, "succeeded", status.succeeded as usize);
    set(st, "failed", status.failed as usize);
    st["terminating"] = json!(status.terminating);
    st["ready"] = json!(status.ready);
    st["uncountedTerminatedPods"] = json!({});
    if !conditions.is_empty() {
        match st.get_mut("conditions").and_then(Value::as_array_mut) {
            Some(all) => all.extend(conditions.iter().cloned()),
            None => st["conditions"] = Value::Array(conditions.to_vec()),
        }
        if let Some(t) = status.completion_time {
            st["completionTime"] = json!(stamp(t));
        }
    }
}

/// Reconciles one Job: [`observe`], [`decide`], [`act`].
pub(crate) fn reconcile(job: &Job, ctx: &Ctx) -> Result<Action, Error> {
    let observed = observe(job, ctx)?;
    let plan = decide(job, &observed, Timestamp::now());
    act(job, plan, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::store::Store;
    use crate::values::is_deleting;

    fn ctx(store: &std::sync::Arc<Store>) -> Ctx {
        crate::controllers::test_ctx(store)
    }

    /// Reconciles the stored Job at `key` as the controllers do: decoded, then reconciled.
    fn sync(ctx: &Ctx, key: &Key) -> Result<Action, Error> {
        super::super::reconcile(ctx, key)
    }

    fn failed_pod(codes: &[(&str, i64)], sidecar: (&str, i64)) -> Pod {
        let st = |(n, c): (&str, i64)| json!({"name": n, "state": {"terminated": {"exitCode": c}}});
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
               "status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                          "containerStatuses": codes.iter().map(|c| st(*c)).collect::<Vec<_>>(),
                          "initContainerStatuses": [st(sidecar)]}}))
        .unwrap()
    }

    fn policy(v: Value) -> PodFailurePolicy {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_first_matching_rule_judges_a_failed_pod() {
        let policy_ = policy(json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0, 1]}},
            {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]}));
        assert_eq!(judge(&policy_, &failed_pod(&[("main", 3)], ("proxy", 0))), Judgement::Ignore);
        assert_eq!(
            judge(&policy_, &failed_pod(&[("main", 1)], ("proxy", 0))),
            Judgement::Count,
            "exit 1 is in NotIn's values; exit 0 never matches"
        );
        // Without a containerName, a sidecar stopped with SIGTERM (143) matches too: a pitfall
        // of exit code rules in pods with sidecars.
        assert_eq!(
            judge(&policy_, &failed_pod(&[("main", 1)], ("proxy", 143))),
            Judgement::FailJob(
                "Container proxy for pod ns/p failed with exit code 143 matching FailJob rule at index 1".into()
            )
        );
        let on_condition = policy(
            json!({"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]}),
        );
        assert_eq!(
            judge(&on_condition, &failed_pod(&[("main", 1)], ("proxy", 0))),
            Judgement::FailJob("Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0".into())
        );
    }

    fn conditions(store: &Store, key: &Key) -> Vec<String> {
        let job = store.get(key).unwrap();
        job["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{}/{}", c["type"].as_str().unwrap_or(""), c["reason"].as_str().unwrap_or("")))
            .collect()
    }

    fn stored_pods(store: &Store, uid: &str) -> Vec<crate::store::Obj> {
        store
            .list(Resource::Pods, Some("default"))
            .0
            .into_iter()
            .filter(|p| crate::values::controller_ref(p).is_some_and(|c| c.uid == uid))
            .collect()
    }

    #[test]
    fn a_failed_job_says_failure_target_first_and_failed_once_its_pods_are_gone() {
        let store = Store::in_memory();
        let ctx = ctx(&store);
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "uid": "u-1"},
            "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        let job = store.create(Resource::Jobs, job).unwrap();
        let key = Key::of(Resource::Jobs, &job);
        sync(&ctx, &key).unwrap();
        let pods = stored_pods(&store, "u-1");
        assert_eq!(pods.len(), 2);
        for (p, phase) in pods.iter().zip(["Failed", "Running"]) {
            store
                .update::<StoreError>(&Key::of(Resource::Pods, p), |v| {
                    v["spec"]["nodeName"] = json!("node");
                    v["status"] = json!({"phase": phase});
                    Ok(())
                })
                .unwrap();
        }
        sync(&ctx, &key).unwrap();
        assert_eq!(
            conditions(&store, &key),
            ["FailureTarget/BackoffLimitExceeded"],
            "the running pod is still stopping"
        );
        let running = stored_pods(&store, "u-1").into_iter().find(|p| p["status"]["phase"] == "Running").unwrap();
        assert!(is_deleting(&running), "the Job's pods are stopped");
        assert_eq!(store.get(&key).unwrap()["status"]["terminating"], 1);
        store
            .update::<StoreError>(&Key::of(Resource::Pods, &running), |v| {
                v["status"]["phase"] = json!("Failed");
                Ok(())
            })
            .unwrap();
        sync(&ctx, &key).unwrap();
        assert_eq!(conditions(&store, &key), ["FailureTarget/BackoffLimitExceeded", "Failed/BackoffLimitExceeded"]);
    }

    /// Issue: `activeDeadlineSeconds: 9223372036854775807` panicked the controller, and every
    /// other controller with it. Every int64 a user may write is now an instant or a count: a
    /// number the field's type holds (int32 max for the int32 fields, int64 max for
    /// `activeDeadlineSeconds`) is reconciled, and one it does not hold is a decode error
    /// naming the Job, never a panic.
    mod extremes {
        use super::*;
        use proptest::prelude::*;

        fn extreme() -> impl Strategy<Value = Option<i64>> {
            proptest::option::of(prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just(i64::from(i32::MAX)),
                Just(i64::from(i32::MIN)),
                Just(0i64),
                Just(-1i64),
                0..10i64,
                any::<i32>().prop_map(i64::from),
                any::<i64>()
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn every_int64_in_a_job_spec_is_reconciled_without_a_panic(
                deadline in extreme(), ttl in extreme(), parallelism in extreme(),
                completions in extreme(), backoff in extreme(),
                on_failure in any::<bool>(),
                phases in proptest::collection::vec(prop::sample::select(vec!["Pending", "Running", "Succeeded", "Failed"]), 0..4),
            ) {
                let store = Store::in_memory();
                let ctx = ctx(&store);
                let restart = if on_failure { "OnFailure" } else { "Never" };
                let mut spec = json!({"template": {"spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}});
                let mut fits = true;
                for (field, v, int32) in [("activeDeadlineSeconds", deadline, false), ("ttlSecondsAfterFinished", ttl, true),
                                   ("parallelism", parallelism.map(|p| p % 4), true), ("completions", completions, true),
                                   ("backoffLimit", backoff, true)] {
                    if let Some(v) = v {
                        spec[field] = json!(v);
                        fits &= !int32 || i32::try_from(v).is_ok();
                    }
                }
                let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "j", "namespace": "default", "uid": "u-1",
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": spec, "status": {"startTime": "2026-01-01T00:00:00Z"}});
                let job = store.create(Resource::Jobs, job).unwrap();
                let key = Key::of(Resource::Jobs, &job);
                let check = |r: Result<Action, Error>| -> Result<(), TestCaseError> {
                    match r {
                        Ok(_) => prop_assert!(fits, "a number beyond int32 read as a count"),
                        Err(Error::Decode { key: k, .. }) => prop_assert!(!fits && k == key),
                        Err(e) => prop_assert!(false, "{}", e),
                    }
                    Ok(())
                };
                check(sync(&ctx, &key))?;
                for (p, phase) in stored_pods(&store, "u-1").iter().zip(&phases) {
                    let _ = store.update::<StoreError>(&Key::of(Resource::Pods, p), |v| {
                        v["spec"]["nodeName"] = json!("node");
                        v["status"] = json!({"phase": phase, "containerStatuses": [{"name": "c", "restartCount": i32::MAX}]});
                        Ok(())
                    });
                }
                // A finished Job with a TTL may be gone already.
                for _ in 0..2 {
                    if store.get(&key).is_some() {
                        check(sync(&ctx, &key))?;
                    }
                }
            }
        }
    }

    fn job(spec: Value, status: Value) -> Job {
        let mut spec = spec;
        spec["template"] =
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}});
        serde_json::from_value(
            json!({"metadata": {"name": "j", "namespace": "ns", "uid": "u"}, "spec": spec, "status": status}),
        )
        .unwrap()
    }

    /// A pod of the Job named `name`: `phase`, its containers' statuses `containers` (JSON).
    fn pod(name: &str, phase: &str, containers: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "ns"},
            "status": {"phase": phase, "containerStatuses": containers}}))
        .unwrap()
    }

    fn exited(name: &str, code: i64, at: &str) -> Value {
        json!({"name": name, "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
               "state": {"terminated": {"exitCode": code, "finishedAt": at}}})
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn sync_plan(plan: Plan) -> (usize, Vec<String>, Vec<Event>, StatusPlan, Option<Duration>) {
        match plan {
            Plan::Sync { create, delete, events, status, requeue } => {
                (create, delete.into_iter().map(|k| k.name).collect(), events, status, requeue)
            }
            other => panic!("{other:?}"),
        }
    }

    fn conds(status: &StatusPlan) -> Vec<(String, String, String)> {
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        status.conditions.iter().map(|c| (c.type_.clone(), text(&c.reason), text(&c.message))).collect()
    }

    /// backoffLimit 1: two failed pods fail the Job. The running pod is stopped under
    /// `FailureTarget`; once it is gone, `Failed` follows, with the Warning event.
    #[test]
    fn reaching_the_backoff_limit_fails_the_job_once_its_pods_are_gone() {
        let now = at("2026-01-01T00:10:00Z");
        let j = job(
            json!({"parallelism": 2, "completions": 3, "backoffLimit": 1}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let failed = |n| pod(n, "Failed", json!([exited("main", 1, "2026-01-01T00:01:00Z")]));
        let one = Observed { pods: vec![failed("a"), pod("b", "Running", json!([]))] };
        let (create, delete, events, status, requeue) = sync_plan(decide(&j, &one, now));
        assert_eq!(
            (create, delete.len(), events.len(), requeue),
            (1, 0, 0, None),
            "1 failure is within the limit: replaced"
        );
        assert_eq!((status.active, status.failed, status.start_time), (1, 1, None));

        let two = Observed { pods: vec![failed("a"), failed("c"), pod("b", "Running", json!([]))] };
        let (create, delete, events, status, requeue) = sync_plan(decide(&j, &two, now));
        let target = (
            "FailureTarget".into(),
            "BackoffLimitExceeded".into(),
            "Job has reached the specified backoff limit".into(),
        );
        assert_eq!(conds(&status), std::slice::from_ref(&target));
        assert_eq!((create, delete, events, requeue), (0, vec!["b".to_string()], vec![], None));
        assert_eq!((status.active, status.terminating, status.ready, status.failed), (0, 1, 0, 2));

        let mut j = j;
        j.status.as_mut().unwrap().conditions = Some(status.conditions.clone());
        let gone = Observed { pods: vec![failed("a"), failed("c")] };
        let (_, delete, events, status, requeue) = sync_plan(decide(&j, &gone, now));
        assert!(delete.is_empty());
        assert_eq!(conds(&status), [("Failed".into(), target.1.clone(), target.2.clone())]);
        assert_eq!(events, [Event { type_: "Warning", reason: target.1, message: target.2 }]);
        assert_eq!((status.terminating, status.completion_time, requeue), (0, None, None));
    }

    /// With `OnFailure`, container restarts count towards the limit too.
    #[test]
    fn restarts_of_on_failure_pods_count_towards_the_backoff_limit() {
        let mut j = job(json!({"backoffLimit": 2}), json!({}));
        j.spec.as_mut().unwrap().template.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
        let restarted = |n: i32| {
            let mut c = exited("main", 1, "2026-01-01T00:01:00Z");
            c["restartCount"] = json!(n);
            pod("a", "Running", json!([c]))
        };
        let (_, _, _, status, _) = sync_plan(decide(&j, &Observed { pods: vec![restarted(2)] }, Timestamp::now()));
        assert!(status.conditions.is_empty());
        let (_, _, _, status, _) = sync_plan(decide(&j, &Observed { pods: vec![restarted(3)] }, Timestamp::now()));
        assert_eq!(conds(&status)[0].1, "BackoffLimitExceeded");
        let (_, _, _, status, _) =
            sync_plan(decide(&j, &Observed { pods: vec![restarted(i32::MAX), restarted(i32::MAX)] }, Timestamp::now()));
        assert_eq!(conds(&status)[0].1, "BackoffLimitExceeded", "restarts add up without overflowing");
    }

    #[test]
    fn a_huge_parallelism_creates_a_burst_per_sync() {
        let j = job(json!({"parallelism": i32::MAX, "completions": i32::MAX}), json!({}));
        let (create, ..) = sync_plan(decide(&j, &Observed { pods: vec![] }, Timestamp::now()));
        assert_eq!(create, crate::controllers::replicasets::BURST_REPLICAS);
    }

    /// A sidecar stopped with SIGTERM exits 143. A FailJob rule on exit codes that names the
    /// main container does not match it: the failed pod only counts, and is replaced after the
    /// back-off (10 s after the failure). The same rule without a container name fails the Job.
    #[test]
    fn a_sidecar_exit_143_does_not_match_a_rule_for_another_container() {
        let rule = |container: Option<&str>| {
            let mut codes = json!({"operator": "NotIn", "values": [0]});
            if let Some(c) = container {
                codes["containerName"] = json!(c);
            }
            json!({"backoffLimit": 3, "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": codes}]}})
        };
        let failed = pod("a", "Failed", json!([exited("main", 0, "2026-01-01T00:00:04Z")]));
        let mut failed = failed;
        let sidecar = serde_json::from_value(exited("proxy", 143, "2026-01-01T00:00:05Z")).unwrap();
        failed.status.as_mut().unwrap().init_container_statuses = Some(vec![sidecar]);
        let observed = Observed { pods: vec![failed] };
        let now = at("2026-01-01T00:00:08Z");

        let (create, _, events, status, requeue) =
            sync_plan(decide(&job(rule(Some("main")), json!({})), &observed, now));
        assert!(status.conditions.is_empty() && events.is_empty(), "{status:?}");
        assert_eq!((create, status.failed), (0, 1));
        assert_eq!(requeue, Some(Duration::from_secs(7)), "10 s after the last container ended, 3 s ago");
        let later_on = at("2026-01-01T00:00:15Z");
        let (create, _, _, _, requeue) = sync_plan(decide(&job(rule(Some("main")), json!({})), &observed, later_on));
        assert_eq!((create, requeue), (1, None), "replaced once the back-off is over");

        let (create, delete, _, status, _) = sync_plan(decide(&job(rule(None), json!({})), &observed, now));
        assert_eq!(create, 0);
        assert!(delete.is_empty());
        assert_eq!(
            conds(&status),
            [
                (
                    "FailureTarget".into(),
                    "PodFailurePolicy".into(),
                    "Container proxy for pod ns/a failed with exit code 143 matching FailJob rule at index 0".into()
                ),
                (
                    "Failed".into(),
                    "PodFailurePolicy".into(),
                    "Container proxy for pod ns/a failed with exit code 143 matching FailJob rule at index 0".into()
                ),
            ]
        );
    }

    /// `completions` reached: `SuccessCriteriaMet` while a pod still runs (it is stopped), then
    /// `Complete`, `completionTime` and the `Completed` event once none runs, and a look again
    /// at the TTL.
    #[test]
    fn reaching_the_completions_meets_the_success_criteria_then_completes() {
        let now = at("2026-01-01T00:10:00Z");
        let j = job(
            json!({"parallelism": 2, "completions": 1, "ttlSecondsAfterFinished": 30}),
            json!({"startTime": "2026-01-01T00:00:00Z"}),
        );
        let observed = Observed { pods: vec![pod("a", "Succeeded", json!([])), pod("b", "Running", json!([]))] };
        let (create, delete, events, status, requeue) = sync_plan(decide(&j, &observed, now));
        let met = (
            "SuccessCriteriaMet".to_string(),
            "CompletionsReached".to_string(),
            "Reached expected number of succeeded pods".to_string(),
        );
        assert_eq!(conds(&status), std::slice::from_ref(&met));
        assert_eq!((create, delete, events, requeue), (0, vec!["b".to_string()], vec![], None));
        assert_eq!((status.succeeded, status.terminating, status.completion_time), (1, 1, None));
        assert_eq!(status.conditions[0].last_transition_time, Some(Time(now)));

        let mut j = j;
        j.status.as_mut().unwrap().conditions = Some(status.conditions.clone());
        let mut stopping = pod("b", "Running", json!([]));
        stopping.metadata.deletion_timestamp = Some(Time(now));
        let still = Observed { pods: vec![pod("a", "Succeeded", json!([])), stopping] };
        let (_, delete, _, status, _) = sync_plan(decide(&j, &still, now));
        assert!(status.conditions.is_empty() && delete.is_empty(), "waits for the stopping pod");
        assert_eq!(status.terminating, 1);

        let done = Observed { pods: vec![pod("a", "Succeeded", json!([]))] };
        let (_, _, events, status, requeue) = sync_plan(decide(&j, &done, now));
        assert_eq!(conds(&status), [("Complete".into(), met.1, met.2)]);
        assert_eq!(events, [Event { type_: "Normal", reason: "Completed".into(), message: "Job completed".into() }]);
        assert_eq!((status.completion_time, requeue), (Some(now), Some(Duration::from_secs(30))));
    }

    /// Without `completions`, the first success completes the Job once no pod runs.
    #[test]
    fn without_completions_one_success_completes_once_no_pod_runs() {
        let j = job(json!({"parallelism": 2}), json!({}));
        let observed = Observed { pods: vec![pod("a", "Succeeded", json!([])), pod("b", "Running", json!([]))] };
        let (create, _, _, status, _) = sync_plan(decide(&j, &observed, Timestamp::now()));
        assert_eq!((create, status.conditions.len(), status.active), (0, 0, 1), "no new pod after a success");
        let (create, _, _, status, _) = sync_plan(decide(&j, &Observed::default(), Timestamp::now()));
        assert_eq!((create, status.conditions.len()), (2, 0));
        assert!(status.start_time.is_some(), "the first sync starts the Job");
    }

    /// `activeDeadlineSeconds` counts from `startTime`: a look again when it is due, then
    /// `DeadlineExceeded`; int64 max is far away, not a panic.
    #[test]
    fn the_active_deadline_is_awaited_then_fails_the_job() {
        let start = json!({"startTime": "2026-01-01T00:00:00Z"});
        let (create, _, _, _, requeue) = sync_plan(decide(
            &job(json!({"activeDeadlineSeconds": 60}), start.clone()),
            &Observed::default(),
            at("2026-01-01T00:00:45Z"),
        ));
        assert_eq!((create, requeue), (1, Some(Duration::from_secs(15))));
        let (_, _, events, status, _) = sync_plan(decide(
            &job(json!({"activeDeadlineSeconds": 60}), start.clone()),
            &Observed::default(),
            at("2026-01-01T00:01:00Z"),
        ));
        assert_eq!(conds(&status)[1].1, "DeadlineExceeded");
        assert_eq!(events[0].message, "Job was active longer than specified deadline");
        let (_, _, _, _, requeue) = sync_plan(decide(
            &job(json!({"activeDeadlineSeconds": i64::MAX}), start),
            &Observed::default(),
            at("2026-01-01T00:01:00Z"),
        ));
        assert!(requeue.is_some_and(|r| r > Duration::from_secs(86_400 * 365 * 1000)));
    }

    /// A finished Job is removed `ttlSecondsAfterFinished` after it finished.
    #[test]
    fn a_finished_job_is_removed_after_its_ttl() {
        let status = json!({"completionTime": "2026-01-01T00:00:00Z",
            "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]});
        let j = job(json!({"ttlSecondsAfterFinished": 100}), status.clone());
        assert_eq!(
            decide(&j, &Observed::default(), at("2026-01-01T00:01:00Z")),
            Plan::Finished { remove: false, requeue: Some(Duration::from_secs(40)) }
        );
        assert_eq!(
            decide(&j, &Observed::default(), at("2026-01-01T00:01:40Z")),
            Plan::Finished { remove: true, requeue: None }
        );
        let kept = job(json!({}), status);
        assert_eq!(
            decide(&kept, &Observed::default(), at("2026-01-01T00:01:40Z")),
            Plan::Finished { remove: false, requeue: None }
        );
        let max = job(
            json!({"ttlSecondsAfterFinished": i32::MAX}),
            json!({"conditions": [{"type": "Failed", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        );
        assert!(matches!(
            decide(&max, &Observed::default(), at("2026-01-01T00:01:40Z")),
            Plan::Finished { remove: false, requeue: Some(_) }
        ));
    }

    #[test]
    fn job_backoff_doubles_from_ten_seconds_to_six_minutes() {
        let secs: Vec<u64> = (1..=8).map(|f| job_backoff(f).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
