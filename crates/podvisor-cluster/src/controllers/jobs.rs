//! The Job controller: runs pods until `completions` succeed (`parallelism` at a time),
//! recreates failed pods after the controller's back-off (10 s doubling, at most 6 minutes)
//! until `backoffLimit` failures (container restarts count too when the pods restart
//! `OnFailure`), fails at `activeDeadlineSeconds`, and keeps the Job's status and its
//! `Complete`/`Failed` conditions; `ttlSecondsAfterFinished` removes a finished Job.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use podvisor_api::kinds::Resource;
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
        .map(|c| c["restartCount"].as_u64().unwrap_or(0) as u32)
        .sum()
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
        let left = (done + SignedDuration::from_secs(ttl)).duration_since(now);
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
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as u32;
    let failed_pods: Vec<&Value> = pods.iter().map(|p| &**p).filter(|p| phase(p) == "Failed").collect();
    let on_failure = spec.pointer("/template/spec/restartPolicy").and_then(Value::as_str) == Some("OnFailure");
    let restarted: u32 = if on_failure { active.iter().map(|p| restarts(p)).sum() } else { 0 };
    let failed = failed_pods.len() as u32;
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0) as u32;
    let completions = spec["completions"].as_i64().map(|c| c.max(0) as u32);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6).max(0) as u32;
    let start = time(job, "/status/startTime").unwrap_or(now);
    let mut conditions: Vec<Value> = Vec::new();
    let mut outcome: Option<(&str, &str, &str)> = None;
    let mut requeue: Requeue = None;
    if let Some(deadline) = spec["activeDeadlineSeconds"].as_i64() {
        let left = (start + SignedDuration::from_secs(deadline)).duration_since(now);
        if left.is_positive() {
            requeue = Some(left.unsigned_abs());
        } else {
            outcome = Some(("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"));
        }
    }
    if outcome.is_none() && failed + restarted > backoff_limit {
        outcome = Some(("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"));
    }
    let complete = match completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    if outcome.is_none() && complete && active.is_empty() {
        outcome = Some(("Complete", "CompletionsReached", "Reached expected number of succeeded pods"));
    }
    let mut created = 0;
    if outcome.is_none() {
        let wanted = match completions {
            Some(c) => parallelism.min(c.saturating_sub(succeeded)),
            None if succeeded > 0 => 0,
            None => parallelism,
        } as usize;
        let not_before = failed_pods.iter().map(|p| failed_at(p)).max().map(|t| t + job_backoff(failed));
        if active.len() < wanted {
            match not_before.map(|t| t.duration_since(now)).filter(|d| d.is_positive()) {
                Some(wait) => {
                    let wait = wait.unsigned_abs();
                    requeue = Some(requeue.map_or(wait, |r| r.min(wait)));
                }
                None => {
                    created =
                        (active.len()..wanted).filter(|_| create_pod(ctx, Resource::Jobs, job, COMPONENT)).count();
                }
            }
        }
    }
    if let Some((ty, reason, message)) = outcome {
        for p in &active {
            delete_pod(ctx, Resource::Jobs, job, p, COMPONENT);
        }
        conditions.push(json!({
            "type": ty, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": stamp(now), "lastTransitionTime": stamp(now),
        }));
        if ty == "Complete" {
            ctx.recorder.record(&about, "Normal", "Completed", "Job completed", COMPONENT);
        } else {
            ctx.recorder.record(&about, "Warning", reason, message, COMPONENT);
        }
        if let Some(ttl) = spec["ttlSecondsAfterFinished"].as_i64() {
            requeue = Some(Duration::from_secs(ttl.max(0) as u64));
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
        st["ready"] = json!(if outcome.is_some() { 0 } else { ready });
        st["uncountedTerminatedPods"] = json!({});
        if !conditions.is_empty() {
            let mut all = st.get("conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            all.extend(conditions.iter().cloned());
            st["conditions"] = Value::Array(all);
            if outcome.is_some_and(|o| o.0 == "Complete") {
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

    #[test]
    fn job_backoff_doubles_from_ten_seconds_to_six_minutes() {
        let secs: Vec<u64> = (1..=8).map(|f| job_backoff(f).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
