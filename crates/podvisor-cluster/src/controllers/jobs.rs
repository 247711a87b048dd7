//! The Job controller: runs pods until `completions` succeed (`parallelism` at a time),
//! recreates failed pods after the controller's back-off (10 s doubling, at most 6 minutes)
//! until `backoffLimit` failures (container restarts count too when the pods restart
//! `OnFailure`), judges failed pods by the `podFailurePolicy` (`FailJob`, `Ignore`, `Count`),
//! fails at `activeDeadlineSeconds`, and keeps the Job's status and conditions: first the
//! interim `SuccessCriteriaMet` or `FailureTarget`, then, once no pod of the Job is left
//! running, `Complete` or `Failed`; `ttlSecondsAfterFinished` removes a finished Job.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Ctx, Requeue, create_pod, delete_pod, owned};
use crate::delete::{DeleteOptions, Propagation, delete};
use crate::events::Involved;
use crate::store::{Key, StoreError};
use crate::values::{is_deleting, is_ready, is_terminal, stamp, time};

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

fn phase(p: &Value) -> &str {
    p.pointer("/status/phase").and_then(Value::as_str).unwrap_or("")
}

fn condition(job: &Value, ty: &str) -> bool {
    job.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == ty && c["status"] == "True"))
}

/// When a failed pod's last container ended (or now when unknown).
fn failed_at(p: &Value) -> Timestamp {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|l| p.pointer(l).and_then(Value::as_array))
        .flatten()
        .filter_map(|c| time(c, "/state/terminated/finishedAt"))
        .max()
        .unwrap_or_else(Timestamp::now)
}

fn restarts(p: &Value) -> u32 {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|l| p.pointer(l).and_then(Value::as_array))
        .flatten()
        .map(|c| u32::try_from(c["restartCount"].as_u64().unwrap_or(0)).unwrap_or(u32::MAX))
        .sum()
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
fn judge(policy: &Value, pod: &Value) -> Judgement {
    let name = format!("{}/{}", s(pod, "/metadata/namespace"), s(pod, "/metadata/name"));
    for (index, rule) in policy["rules"].as_array().into_iter().flatten().enumerate() {
        let action = s(rule, "/action");
        let matched = if let Some(codes) = rule.get("onExitCodes").filter(|c| !c.is_null()) {
            exit_code_match(pod, codes).map(|(c, code)| {
                format!(
                    "Container {c} for pod {name} failed with exit code {code} matching {action} rule at index {index}"
                )
            })
        } else if let Some(patterns) = rule["onPodConditions"].as_array() {
            pod.pointer("/status/conditions").and_then(Value::as_array).into_iter().flatten().find_map(|c| {
                // A pattern's status defaults to "True".
                let matches =
                    |p: &Value| p["type"] == c["type"] && p["status"].as_str().unwrap_or("True") == s(c, "/status");
                patterns.iter().any(matches).then(|| {
                    format!("Pod {name} has condition {} matching {action} rule at index {index}", s(c, "/type"))
                })
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

fn exit_code_match(pod: &Value, codes: &Value) -> Option<(String, i64)> {
    let only = codes["containerName"].as_str();
    let values: Vec<i64> = codes["values"].as_array().into_iter().flatten().filter_map(Value::as_i64).collect();
    let within = match s(codes, "/operator") {
        "In" => |v: &[i64], c: i64| v.contains(&c),
        "NotIn" => |v: &[i64], c: i64| !v.contains(&c),
        _ => return None,
    };
    ["/status/containerStatuses", "/status/initContainerStatuses"]
        .iter()
        .filter_map(|l| pod.pointer(l).and_then(Value::as_array))
        .flatten()
        .filter(|c| only.is_none_or(|n| c["name"] == n))
        .find_map(|c| {
            let code = c.pointer("/state/terminated/exitCode")?.as_i64()?;
            (code != 0 && within(&values, code)).then(|| (s(c, "/name").to_string(), code))
        })
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// The condition of `ty` that is true, if any.
fn true_condition<'a>(job: &'a Value, ty: &str) -> Option<&'a Value> {
    job.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == ty && c["status"] == "True")
}

/// Reconciles one Job.
pub(crate) fn reconcile(ctx: &Ctx, key: &Key, job: &Value) -> Requeue {
    let spec = &job["spec"];
    let uid = job.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let now = Timestamp::now();
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid);
    let about = Involved::of(Resource::Jobs, job);
    let finished = condition(job, "Complete") || condition(job, "Failed");
    if finished {
        let ttl = spec["ttlSecondsAfterFinished"].as_i64()?;
        let done = time(job, "/status/completionTime").or_else(|| {
            job.pointer("/status/conditions")?.as_array()?.iter().filter_map(|c| time(c, "/lastTransitionTime")).max()
        })?;
        let left = later(done, ttl).duration_since(now);
        if left.is_positive() {
            return Some(left.unsigned_abs());
        }
        let _ = delete(
            &ctx.store,
            key,
            &DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() },
        );
        return None;
    }
    let active: Vec<&Value> = pods.iter().map(|p| &**p).filter(|p| !is_terminal(p) && !is_deleting(p)).collect();
    let terminating = pods.iter().filter(|p| !is_terminal(p) && is_deleting(p)).count();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as u32;
    let policy = spec.get("podFailurePolicy").filter(|p| !p.is_null());
    let judged: Vec<(&Value, Judgement)> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| phase(p) == "Failed")
        .map(|p| (p, policy.map_or(Judgement::Count, |pol| judge(pol, p))))
        .collect();
    let failed_pods: Vec<&Value> = judged.iter().filter(|(_, j)| *j != Judgement::Ignore).map(|(p, _)| *p).collect();
    let fail_job = judged.iter().find_map(|(_, j)| match j {
        Judgement::FailJob(m) => Some(m.clone()),
        _ => None,
    });
    let on_failure = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str) == Some("OnFailure");
    let restarted: u32 = if on_failure { active.iter().map(|p| restarts(p)).sum() } else { 0 };
    let failed = failed_pods.len() as u32;
    let count = |v: i64| u32::try_from(v.max(0)).unwrap_or(u32::MAX);
    let parallelism = count(spec["parallelism"].as_i64().unwrap_or(1));
    let completions = spec["completions"].as_i64().map(count);
    let backoff_limit = count(spec["backoffLimit"].as_i64().unwrap_or(6));
    let start = time(job, "/status/startTime").unwrap_or(now);
    let mut conditions: Vec<Value> = Vec::new();
    let mut requeue: Requeue = None;
    // The outcome, once reached, stays: its interim condition holds it while pods stop.
    let interim = true_condition(job, "FailureTarget").or_else(|| true_condition(job, "SuccessCriteriaMet"));
    let mut outcome: Option<(&str, String, String)> = interim.map(|c| {
        let ty = if c["type"] == "FailureTarget" { "Failed" } else { "Complete" };
        (ty, s(c, "/reason").to_string(), s(c, "/message").to_string())
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
        && let Some(deadline) = spec["activeDeadlineSeconds"].as_i64()
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
    let mut created = 0;
    if outcome.is_none() {
        let wanted = match completions {
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        let not_before =
            failed_pods.iter().map(|p| failed_at(p)).max().map(|t| later(t, job_backoff(failed).as_secs() as i64));
        // With a podFailurePolicy, podReplacementPolicy defaults to Failed: a pod that is
        // still stopping is replaced only once it has failed.
        let replace_when_failed = match spec["podReplacementPolicy"].as_str() {
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
                None => {
                    created = (holding..wanted).filter(|_| create_pod(ctx, Resource::Jobs, job, COMPONENT)).count();
                }
            }
        }
    }
    let condition = |ty: &str, reason: &str, message: &str| {
        json!({"type": ty, "status": "True", "reason": reason, "message": message,
               "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now)})
    };
    let mut finished_now = false;
    if let Some((ty, reason, message)) = &outcome {
        if interim.is_none() {
            // The interim condition first; the Job's pods are stopped.
            let target = if *ty == "Failed" { "FailureTarget" } else { "SuccessCriteriaMet" };
            conditions.push(condition(target, reason, message));
        }
        for p in &active {
            delete_pod(ctx, Resource::Jobs, job, p, COMPONENT);
        }
        // The terminal condition once no pod of the Job is left running.
        if active.is_empty() && terminating == 0 {
            finished_now = true;
            conditions.push(condition(ty, reason, message));
            if *ty == "Complete" {
                ctx.recorder.record(&about, "Normal", "Completed", "Job completed", COMPONENT);
            } else {
                ctx.recorder.record(&about, "Warning", reason, message, COMPONENT);
            }
            requeue = spec["ttlSecondsAfterFinished"].as_i64().map(|ttl| Duration::from_secs(ttl.max(0) as u64));
        } else {
            requeue = None;
        }
    }
    let ready = active.iter().filter(|p| is_ready(p)).count();
    let _ = ctx.store.update::<StoreError>(key, |v| {
        let st = &mut v["status"];
        if st.get("startTime").is_none() {
            st["startTime"] = json!(stamp(start));
        }
        let set = |st: &mut Value, field: &str, n: usize| {
            if n > 0 {
                st[field] = json!(n);
            } else if let Some(m) = st.as_object_mut() {
                m.remove(field);
            }
        };
        let still_active = if outcome.is_some() { 0 } else { active.len() + created };
        set(st, "active", still_active);
        set(st, "succeeded", succeeded as usize);
        set(st, "failed", failed as usize);
        let stopping = if outcome.is_some() && !finished_now { terminating + active.len() } else { terminating };
        st["terminating"] = json!(stopping);
        st["ready"] = json!(if outcome.is_some() { 0 } else { ready });
        st["uncountedTerminatedPods"] = json!({});
        if !conditions.is_empty() {
            let mut all = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            all.extend(conditions.iter().cloned());
            st["conditions"] = Value::Array(all);
            if finished_now && outcome.as_ref().is_some_and(|o| o.0 == "Complete") {
                st["completionTime"] = json!(stamp(now));
            }
        }
        Ok(())
    });
    requeue
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::events::Recorder;
    use crate::store::Store;

    fn failed_pod(codes: &[(&str, i64)], sidecar: (&str, i64)) -> Value {
        let st = |(n, c): (&str, i64)| json!({"name": n, "state": {"terminated": {"exitCode": c}}});
        json!({"metadata": {"name": "p", "namespace": "ns"},
               "status": {"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True"}],
                          "containerStatuses": codes.iter().map(|c| st(*c)).collect::<Vec<_>>(),
                          "initContainerStatuses": [st(sidecar)]}})
    }

    #[test]
    fn the_first_matching_rule_judges_a_failed_pod() {
        let policy = json!({"rules": [
            {"action": "Ignore", "onExitCodes": {"containerName": "main", "operator": "In", "values": [3]}},
            {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [0, 1]}},
            {"action": "Count", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]});
        assert_eq!(judge(&policy, &failed_pod(&[("main", 3)], ("proxy", 0))), Judgement::Ignore);
        assert_eq!(
            judge(&policy, &failed_pod(&[("main", 1)], ("proxy", 0))),
            Judgement::Count,
            "exit 1 is in NotIn's values; exit 0 never matches"
        );
        // Without a containerName, a sidecar stopped with SIGTERM (143) matches too: a pitfall
        // of exit code rules in pods with sidecars.
        assert_eq!(
            judge(&policy, &failed_pod(&[("main", 1)], ("proxy", 143))),
            Judgement::FailJob(
                "Container proxy for pod ns/p failed with exit code 143 matching FailJob rule at index 1".into()
            )
        );
        let on_condition = json!({"rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]});
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
            .map(|c| format!("{}/{}", s(c, "/type"), s(c, "/reason")))
            .collect()
    }

    #[test]
    fn a_failed_job_says_failure_target_first_and_failed_once_its_pods_are_gone() {
        let store = Store::in_memory();
        let ctx = Ctx {
            store: store.clone(),
            recorder: Recorder::new(store.clone(), "node".into()),
            bursts: Default::default(),
        };
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "default", "uid": "u-1"},
            "spec": {"parallelism": 2, "completions": 2, "backoffLimit": 0,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}});
        let job = store.create(Resource::Jobs, job).unwrap();
        let key = Key::of(Resource::Jobs, &job);
        reconcile(&ctx, &key, &job);
        let pods = owned(&store, Resource::Pods, "default", "u-1");
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
        reconcile(&ctx, &key, &store.get(&key).unwrap());
        assert_eq!(
            conditions(&store, &key),
            ["FailureTarget/BackoffLimitExceeded"],
            "the running pod is still stopping"
        );
        let running =
            owned(&store, Resource::Pods, "default", "u-1").into_iter().find(|p| phase(p) == "Running").unwrap();
        assert!(is_deleting(&running), "the Job's pods are stopped");
        assert_eq!(store.get(&key).unwrap()["status"]["terminating"], 1);
        store
            .update::<StoreError>(&Key::of(Resource::Pods, &running), |v| {
                v["status"]["phase"] = json!("Failed");
                Ok(())
            })
            .unwrap();
        reconcile(&ctx, &key, &store.get(&key).unwrap());
        assert_eq!(conditions(&store, &key), ["FailureTarget/BackoffLimitExceeded", "Failed/BackoffLimitExceeded"]);
    }

    /// Issue: `activeDeadlineSeconds: 9223372036854775807` panicked the controller, and every
    /// other controller with it. Every int64 a user may write is now an instant or a count.
    mod extremes {
        use super::*;
        use proptest::prelude::*;

        fn extreme() -> impl Strategy<Value = Option<i64>> {
            proptest::option::of(prop_oneof![
                Just(i64::MAX),
                Just(i64::MIN),
                Just(0i64),
                Just(-1i64),
                0..10i64,
                any::<i64>()
            ])
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
            #[test]
            fn every_int64_in_a_job_spec_is_reconciled_without_a_panic(
                deadline in extreme(), ttl in extreme(), parallelism in extreme(),
                completions in extreme(), backoff in extreme(),
                phases in proptest::collection::vec(prop::sample::select(vec!["Pending", "Running", "Succeeded", "Failed"]), 0..4),
            ) {
                let store = Store::in_memory();
                let ctx = Ctx { store: store.clone(), recorder: Recorder::new(store.clone(), "node".into()), bursts: Default::default() };
                let mut spec = json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}});
                for (field, v) in [("activeDeadlineSeconds", deadline), ("ttlSecondsAfterFinished", ttl),
                                   ("parallelism", parallelism.map(|p| p % 4)), ("completions", completions),
                                   ("backoffLimit", backoff)] {
                    if let Some(v) = v {
                        spec[field] = json!(v);
                    }
                }
                let job = json!({"apiVersion": "batch/v1", "kind": "Job",
                    "metadata": {"name": "j", "namespace": "default", "uid": "u-1",
                                 "creationTimestamp": "2026-01-01T00:00:00Z"},
                    "spec": spec, "status": {"startTime": "2026-01-01T00:00:00Z"}});
                let job = store.create(Resource::Jobs, job).unwrap();
                let key = Key::of(Resource::Jobs, &job);
                let _ = reconcile(&ctx, &key, &job);
                for (p, phase) in owned(&store, Resource::Pods, "default", "u-1").iter().zip(&phases) {
                    let _ = store.update::<StoreError>(&Key::of(Resource::Pods, p), |v| {
                        v["spec"]["nodeName"] = json!("node");
                        v["status"] = json!({"phase": phase, "containerStatuses": [{"name": "c", "restartCount": i64::MAX}]});
                        Ok(())
                    });
                }
                // A finished Job with a TTL may be gone already.
                for _ in 0..2 {
                    if let Some(j) = store.get(&key) {
                        let _ = reconcile(&ctx, &key, &j);
                    }
                }
            }
        }
    }

    #[test]
    fn job_backoff_doubles_from_ten_seconds_to_six_minutes() {
        let secs: Vec<u64> = (1..=8).map(|f| job_backoff(f).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
