//! The CronJob controller, as kube-controller-manager's (v2): at each scheduled time in the
//! CronJob's time zone it creates a Job from the template, named `<cronjob>-<minutes since the
//! epoch>`; `concurrencyPolicy` Forbid skips a run while one is active, Replace deletes the
//! active ones first; a run later than `startingDeadlineSeconds` is missed; `suspend` stops new
//! runs; finished Jobs beyond the history limits are deleted, oldest first. The status keeps the
//! active Jobs and the last schedule and success times. It wakes at the next scheduled time.

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use podvisor_apiserver::admission::{self, FieldValidation};
use podvisor_objects::cron::{self, Schedule};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, involved, key_of, owned, owner_ref};
use crate::delete::{DeleteOptions, Propagation, delete};
use crate::store::{Key, StoreError};
use crate::values::stamp;

const COMPONENT: &str = "cronjob-controller";

/// More missed runs than this are reported (`TooManyMissedTimes`), as upstream.
const MISSED_CAP: usize = 100;

/// The annotation that names the scheduled time of a Job a CronJob made.
pub const SCHEDULED_TIMESTAMP: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

/// How a Job of the CronJob ended, if it did.
fn finished(job: &Job) -> Option<&'static str> {
    job.status.as_ref()?.conditions.as_ref()?.iter().find_map(|c| match (c.type_.as_str(), c.status.as_str()) {
        ("Complete", "True") => Some("Complete"),
        ("Failed", "True") => Some("Failed"),
        _ => None,
    })
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

/// The name of the Job for the run scheduled at `at`.
pub fn job_name(cronjob: &str, at: Timestamp) -> String {
    format!("{cronjob}-{}", at.as_second().div_euclid(60))
}

/// Keeps the CronJob's runs and status.
pub(crate) fn reconcile(cj: &CronJob, ctx: &Ctx) -> Result<Action, Error> {
    let now = Timestamp::now();
    let meta = &cj.metadata;
    let (namespace, uid) = (meta.namespace.clone().unwrap_or_default(), meta.uid.clone().unwrap_or_default());
    let key = key_of(Resource::CronJobs, meta);
    let about = involved(Resource::CronJobs, meta);
    let spec = cj.spec.clone().unwrap_or_default();
    let jobs: Vec<Job> = owned(&ctx.store, Resource::Jobs, &namespace, &uid)?;
    let status = cj.status.clone().unwrap_or_default();
    let mut last_schedule = time(&status.last_schedule_time);
    let mut last_success = time(&status.last_successful_time);
    // Jobs that finished since the last pass: said once, and the last success kept.
    let was_active: Vec<String> = status.active.iter().flatten().filter_map(|r| r.name.clone()).collect();
    for job in &jobs {
        let name = job.metadata.name.clone().unwrap_or_default();
        if let Some(how) = finished(job)
            && was_active.contains(&name)
        {
            ctx.recorder.record(
                &about,
                "Normal",
                "SawCompletedJob",
                &format!("Saw completed job: {name}, condition: {how}"),
                COMPONENT,
            );
            if how == "Complete" {
                let done = job.status.as_ref().and_then(|s| time(&s.completion_time)).unwrap_or(now);
                last_success = Some(last_success.map_or(done, |t| t.max(done)));
            }
        }
    }
    let mut active: Vec<&Job> =
        jobs.iter().filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none()).collect();
    let tz = match spec.time_zone.as_deref() {
        None => TimeZone::system(),
        Some(name) => match TimeZone::get(name) {
            Ok(tz) => tz,
            Err(_) => {
                ctx.recorder.record(
                    &about,
                    "Warning",
                    "UnknownTimeZone",
                    &format!("invalid timeZone: {name:?}"),
                    COMPONENT,
                );
                write_status(ctx, &key, &active, last_schedule, last_success)?;
                return Ok(Action::await_change());
            }
        },
    };
    let schedule = match cron::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            let message = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            ctx.recorder.record(&about, "Warning", "UnparseableSchedule", &message, COMPONENT);
            write_status(ctx, &key, &active, last_schedule, last_success)?;
            return Ok(Action::await_change());
        }
    };
    if spec.suspend == Some(true) {
        write_status(ctx, &key, &active, last_schedule, last_success)?;
        cleanup(ctx, cj, &jobs)?;
        return Ok(Action::await_change());
    }
    let mut earliest = last_schedule.or(time(&meta.creation_timestamp)).unwrap_or(now);
    if let Some(deadline) = spec.starting_deadline_seconds {
        let limit = now.checked_sub(jiff::SignedDuration::from_secs(deadline.max(0))).unwrap_or(Timestamp::MIN);
        earliest = earliest.max(limit);
    }
    let (due, too_many) = schedule.latest(earliest, now, &tz, MISSED_CAP);
    if too_many {
        let message = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew";
        ctx.recorder.record(&about, "Warning", "TooManyMissedTimes", message, COMPONENT);
    }
    if let Some(at) = due.filter(|at| Some(*at) != last_schedule) {
        let name = job_name(meta.name.as_deref().unwrap_or(""), at);
        let too_late = spec
            .starting_deadline_seconds
            .is_some_and(|d| at.checked_add(jiff::SignedDuration::from_secs(d.max(0))).is_ok_and(|end| end < now));
        if too_late {
            let when = at.strftime("%a, %d %b %Y %H:%M:%S %z");
            ctx.recorder.record(
                &about,
                "Warning",
                "MissSchedule",
                &format!("Missed scheduled time to start a job: {when}"),
                COMPONENT,
            );
        } else if jobs.iter().any(|j| j.metadata.name.as_deref() == Some(name.as_str())) {
            // Made by an earlier pass: nothing to do for this run.
            last_schedule = Some(at);
        } else if spec.concurrency_policy.as_deref() == Some("Forbid") && !active.is_empty() {
            let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
            ctx.recorder.record(&about, "Normal", "JobAlreadyActive", message, COMPONENT);
            write_status(ctx, &key, &active, last_schedule, last_success)?;
            return Ok(wake_at(&schedule, &tz, now, last_schedule));
        } else {
            if spec.concurrency_policy.as_deref() == Some("Replace") {
                for job in active.drain(..) {
                    let jk = key_of(Resource::Jobs, &job.metadata);
                    let opts = DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() };
                    match delete(&ctx.store, &jk, &opts) {
                        Ok(_) | Err(StoreError::NotFound(_)) => ctx.recorder.record(
                            &about,
                            "Normal",
                            "SuccessfulDelete",
                            &format!("Deleted job {}", jk.name),
                            COMPONENT,
                        ),
                        Err(e) => return Err(Error::store("deleting", &jk, e)),
                    }
                }
            }
            create_job(ctx, cj, &name, at, &tz)?;
            last_schedule = Some(at);
        }
    }
    // The Jobs as they are now, the new one included.
    let jobs: Vec<Job> = owned(&ctx.store, Resource::Jobs, &namespace, &uid)?;
    let active: Vec<&Job> =
        jobs.iter().filter(|j| finished(j).is_none() && j.metadata.deletion_timestamp.is_none()).collect();
    write_status(ctx, &key, &active, last_schedule, last_success)?;
    cleanup(ctx, cj, &jobs)?;
    Ok(wake_at(&schedule, &tz, now, last_schedule))
}

/// When to reconcile again: at the next scheduled time after `now` (a little after, so that
/// the clock has passed it), or never if the schedule has none within five years.
fn wake_at(schedule: &Schedule, tz: &TimeZone, now: Timestamp, last: Option<Timestamp>) -> Action {
    // `@every` counts from the last run, not from this reconcile (upstream likewise).
    let from = match schedule {
        Schedule::Every(_) => last.filter(|l| *l <= now).unwrap_or(now),
        Schedule::Cron(_) => now,
    };
    match schedule.next_after(from, tz).filter(|n| *n > now).or_else(|| schedule.next_after(now, tz)) {
        Some(next) => {
            let wait = next.duration_since(now).unsigned_abs() + Duration::from_millis(100);
            Action::requeue(wait)
        }
        None => Action::await_change(),
    }
}

/// Creates the Job of the run at `at`, admitted as a kubectl's would be.
fn create_job(ctx: &Ctx, cj: &CronJob, name: &str, at: Timestamp, tz: &TimeZone) -> Result<(), Error> {
    let meta = &cj.metadata;
    let namespace = meta.namespace.clone().unwrap_or_default();
    let template = cj.spec.as_ref().map(|s| s.job_template.clone()).unwrap_or_default();
    let mut tmeta = template.metadata.clone().unwrap_or_default();
    let annotations = tmeta.annotations.get_or_insert_default();
    annotations
        .insert(SCHEDULED_TIMESTAMP.into(), at.to_zoned(tz.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
    tmeta.name = Some(name.to_string());
    tmeta.namespace = Some(namespace.clone());
    tmeta.owner_references = Some(vec![owner_ref(Resource::CronJobs, meta)]);
    let job = Job { metadata: tmeta, spec: template.spec, status: None };
    let key = Key::new(Resource::Jobs, &namespace, name);
    let about = involved(Resource::CronJobs, meta);
    let admitted = serde_json::to_value(&job).map_err(|e| e.to_string()).and_then(|v| {
        admission::admit(Resource::Jobs, v, Some(&namespace), FieldValidation::Strict).map_err(|e| e.to_string())
    });
    let mut obj = match admitted {
        Ok(a) => a.object,
        Err(e) => {
            ctx.recorder.record(&about, "Warning", "FailedCreate", &format!("Error creating job: {e}"), COMPONENT);
            return Err(Error::Create { key, message: e });
        }
    };
    admission::on_create(Resource::Jobs, &mut obj);
    match ctx.store.create(Resource::Jobs, obj) {
        Ok(_) => {
            ctx.recorder.record(&about, "Normal", "SuccessfulCreate", &format!("Created job {name}"), COMPONENT);
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => {
            ctx.recorder.record(&about, "Warning", "FailedCreate", &format!("Error creating job: {e}"), COMPONENT);
            Err(Error::store("creating", &key, e))
        }
    }
}

/// Writes `status.active`, `lastScheduleTime` and `lastSuccessfulTime`.
fn write_status(
    ctx: &Ctx,
    key: &Key,
    active: &[&Job],
    last_schedule: Option<Timestamp>,
    last_success: Option<Timestamp>,
) -> Result<(), Error> {
    let refs: Vec<Value> = active
        .iter()
        .map(|j| {
            json!({"kind": "Job", "apiVersion": "batch/v1", "namespace": j.metadata.namespace, "name": j.metadata.name,
                   "uid": j.metadata.uid, "resourceVersion": j.metadata.resource_version})
        })
        .collect();
    let written = ctx.store.update::<StoreError>(key, |v| {
        let mut status = json!({});
        if !refs.is_empty() {
            status["active"] = json!(refs);
        }
        if let Some(t) = last_schedule {
            status["lastScheduleTime"] = json!(stamp(t));
        }
        if let Some(t) = last_success {
            status["lastSuccessfulTime"] = json!(stamp(t));
        }
        v["status"] = status;
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => Ok(()),
        Err(e) => Err(Error::store("writing the status of", key, e)),
    }
}

/// Deletes finished Jobs beyond the history limits, oldest first.
fn cleanup(ctx: &Ctx, cj: &CronJob, jobs: &[Job]) -> Result<(), Error> {
    let spec = cj.spec.clone().unwrap_or_default();
    let about = involved(Resource::CronJobs, &cj.metadata);
    for (how, limit) in [("Complete", spec.successful_jobs_history_limit), ("Failed", spec.failed_jobs_history_limit)] {
        let Some(limit) = limit.map(|l| usize::try_from(l).unwrap_or(0)) else { continue };
        let mut done: Vec<&Job> = jobs.iter().filter(|j| finished(j) == Some(how)).collect();
        done.sort_by_key(|j| {
            (j.status.as_ref().and_then(|s| time(&s.start_time)), time(&j.metadata.creation_timestamp))
        });
        let surplus = done.len().saturating_sub(limit);
        for job in done.into_iter().take(surplus) {
            let jk = key_of(Resource::Jobs, &job.metadata);
            let opts = DeleteOptions { propagation: Some(Propagation::Background), ..Default::default() };
            match delete(&ctx.store, &jk, &opts) {
                Ok(_) => ctx.recorder.record(
                    &about,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted job {}", jk.name),
                    COMPONENT,
                ),
                Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(Error::store("deleting", &jk, e)),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use std::sync::Arc;

    fn ctx() -> Ctx {
        crate::controllers::test_ctx(&Store::in_memory())
    }

    fn cronjob(ctx: &Ctx, policy: &str, minutes_ago: i64) -> Key {
        let cj = json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "uid": "cj-uid"},
            "spec": {"schedule": "* * * * *", "timeZone": "UTC", "concurrencyPolicy": policy,
                     "successfulJobsHistoryLimit": 1, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"team": "a"}}, "spec": {"template": {"spec": {
                         "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        let created = ctx.store.create(Resource::CronJobs, cj).unwrap();
        let key = Key::of(Resource::CronJobs, &created);
        let since = Timestamp::now() - jiff::SignedDuration::from_mins(minutes_ago);
        ctx.store
            .update::<StoreError>(&key, |v| {
                v["status"] = json!({"lastScheduleTime": stamp(since)});
                Ok(())
            })
            .unwrap();
        key
    }

    fn pass(ctx: &Ctx, key: &Key) -> Action {
        let obj = ctx.store.get(key).unwrap();
        reconcile(&super::super::decode(&ctx.store, Resource::CronJobs, &obj).unwrap(), ctx).unwrap()
    }

    fn jobs(ctx: &Ctx) -> Vec<Arc<Value>> {
        ctx.store.list(Resource::Jobs, Some("default")).0
    }

    fn finish(ctx: &Ctx, job: &Value, how: &str) {
        ctx.store
            .update::<StoreError>(&Key::of(Resource::Jobs, job), |v| {
                v["status"] = json!({"conditions": [{"type": how, "status": "True"}], "startTime": stamp(Timestamp::now()),
                                     "completionTime": stamp(Timestamp::now())});
                Ok(())
            })
            .unwrap();
    }

    fn events(ctx: &Ctx, reason: &str) -> usize {
        ctx.store.list(Resource::Events, Some("default")).0.iter().filter(|e| e["reason"] == reason).count()
    }

    /// A missed minute makes one Job, named by the scheduled minute, owned by the CronJob and
    /// annotated with its time; another pass makes none; the CronJob wakes before the next
    /// minute.
    #[test]
    fn the_latest_missed_run_makes_one_job() {
        let ctx = ctx();
        let key = cronjob(&ctx, "Allow", 3);
        let before = Timestamp::now().as_second().div_euclid(60);
        let action = pass(&ctx, &key);
        let after = Timestamp::now().as_second().div_euclid(60);
        let made = jobs(&ctx);
        assert_eq!(made.len(), 1);
        let name = made[0]["metadata"]["name"].as_str().unwrap();
        assert!([format!("tick-{before}"), format!("tick-{after}")].iter().any(|n| n == name), "{name}");
        assert_eq!(made[0]["metadata"]["labels"]["team"], "a");
        assert_eq!(made[0]["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert!(made[0]["metadata"]["annotations"][SCHEDULED_TIMESTAMP].as_str().unwrap().ends_with("+00:00"));
        let cj = ctx.store.get(&key).unwrap();
        assert_eq!(cj["status"]["active"][0]["name"], made[0]["metadata"]["name"]);
        assert!(action.requeue_after().is_some_and(|d| d <= Duration::from_secs(61)));
        pass(&ctx, &key);
        assert_eq!(jobs(&ctx).len(), 1, "the same run is not made twice");
        assert_eq!(events(&ctx, "SuccessfulCreate"), 1);
    }

    /// A finished run is seen once, sets `lastSuccessfulTime`, leaves `active`; the history
    /// keeps one successful Job.
    #[test]
    fn finished_runs_are_seen_and_the_history_is_pruned() {
        let ctx = ctx();
        let key = cronjob(&ctx, "Allow", 3);
        pass(&ctx, &key);
        finish(&ctx, &jobs(&ctx)[0], "Complete");
        let first = jobs(&ctx)[0].clone();
        // An older successful run beyond the history limit of 1.
        let mut old = (*first).clone();
        old["metadata"]["name"] = json!("tick-1");
        old["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        old["status"]["startTime"] = json!("2020-01-01T00:00:00Z");
        ctx.store.create(Resource::Jobs, old).unwrap();
        pass(&ctx, &key);
        let cj = ctx.store.get(&key).unwrap();
        assert!(cj.pointer("/status/active").is_none(), "{cj}");
        assert!(cj.pointer("/status/lastSuccessfulTime").is_some());
        assert_eq!(events(&ctx, "SawCompletedJob"), 1);
        let names: Vec<String> =
            jobs(&ctx).iter().map(|j| j["metadata"]["name"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, [first["metadata"]["name"].as_str().unwrap().to_string()], "the older run is deleted");
    }

    /// Forbid: a run due while one is active is skipped with `JobAlreadyActive`; Replace: the
    /// active one is deleted and the new run made.
    #[test]
    fn concurrency_policies() {
        for (policy, replaced, reason) in [("Forbid", false, "JobAlreadyActive"), ("Replace", true, "SuccessfulDelete")]
        {
            let ctx = ctx();
            let key = cronjob(&ctx, policy, 3);
            // An active run from two minutes ago, still running.
            let earlier = Timestamp::now() - jiff::SignedDuration::from_mins(2);
            ctx.store
                .update::<StoreError>(&key, |v| {
                    v["status"]["lastScheduleTime"] = json!(stamp(earlier));
                    Ok(())
                })
                .unwrap();
            let cj = ctx.store.get(&key).unwrap();
            let cj: CronJob = super::super::decode(&ctx.store, Resource::CronJobs, &cj).unwrap();
            create_job(&ctx, &cj, &job_name("tick", earlier), earlier, &TimeZone::UTC).unwrap();
            pass(&ctx, &key);
            let names: Vec<String> =
                jobs(&ctx).iter().map(|j| j["metadata"]["name"].as_str().unwrap().to_string()).collect();
            let old = job_name("tick", earlier);
            // Forbid keeps the running one alone; Replace deletes it and makes the new run.
            assert_eq!(names.len(), 1, "{policy}: {names:?}");
            assert_eq!(names[0] != old, replaced, "{policy}: {names:?}");
            assert_eq!(events(&ctx, reason), 1, "{policy}");
        }
    }
}
