//! CronJobs: the API server's defaults and validation of a `batch/v1` CronJob.

use k8s_openapi::api::batch::v1::{CronJob, Job};

use crate::field::{FieldError, Path};
use crate::validation::validate_metadata;

const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

/// The longest CronJob name: its Jobs add 11 characters (`-<minutes>`) and must fit 63.
const MAX_NAME: usize = 52;

/// The API server's defaults (`SetDefaults_CronJob`), and the pod defaults of its template.
pub fn defaults(cj: &mut CronJob) {
    let spec = cj.spec.get_or_insert_with(Default::default);
    spec.concurrency_policy.get_or_insert_with(|| "Allow".into());
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(3);
    spec.failed_jobs_history_limit.get_or_insert(1);
    if let Some(ps) = spec.job_template.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        crate::defaults::pod_spec(ps);
    }
}

/// The API server's validation of a CronJob on create.
pub fn validate(cj: &CronJob) -> Vec<FieldError> {
    let meta = Path::new("metadata");
    let mut errs = validate_metadata(&cj.metadata, &meta);
    if let Some(name) = cj.metadata.name.as_deref()
        && name.len() > MAX_NAME
    {
        errs.push(meta.child("name").invalid(name, &format!("must be no more than {MAX_NAME} characters")));
    }
    let path = Path::new("spec");
    let Some(spec) = &cj.spec else {
        errs.push(path.required(""));
        return errs;
    };
    if spec.schedule.is_empty() {
        errs.push(path.child("schedule").required(""));
    } else if spec.schedule.contains("TZ") {
        errs.push(
            path.child("schedule")
                .invalid(&spec.schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"),
        );
    } else if let Err(e) = crate::cron::parse(&spec.schedule) {
        errs.push(path.child("schedule").invalid(&spec.schedule, &e));
    }
    if let Some(tz) = spec.time_zone.as_deref()
        && jiff::tz::TimeZone::get(tz).is_err()
    {
        errs.push(path.child("timeZone").invalid(tz, &format!("unknown time zone {tz}")));
    }
    if let Some(p) = spec.concurrency_policy.as_deref()
        && !POLICIES.contains(&p)
    {
        errs.push(path.child("concurrencyPolicy").not_supported(p, POLICIES));
    }
    for (name, v) in [
        ("startingDeadlineSeconds", spec.starting_deadline_seconds),
        ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit.map(i64::from)),
        ("failedJobsHistoryLimit", spec.failed_jobs_history_limit.map(i64::from)),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(path.child(name).invalid_num(v, "must be greater than or equal to 0"));
        }
    }
    // The Job template is validated as a Job's spec, under `spec.jobTemplate.spec`.
    let job = Job { spec: spec.job_template.spec.clone(), ..Default::default() };
    for mut e in crate::objects::job(&job).into_iter().filter(|e| !e.field.starts_with("metadata")) {
        e.field = e.field.replacen("spec", "spec.jobTemplate.spec", 1);
        errs.push(e);
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cronjob(spec: serde_json::Value) -> CronJob {
        serde_json::from_value(json!({"metadata": {"name": "nightly", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn template(restart: &str) -> serde_json::Value {
        json!({"spec": {"template": {"spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn defaults_and_errors_as_the_api_server_has_them() {
        let mut ok = cronjob(json!({"schedule": "*/5 * * * *", "jobTemplate": template("OnFailure")}));
        defaults(&mut ok);
        let spec = ok.spec.as_ref().unwrap();
        assert_eq!(
            (
                spec.concurrency_policy.as_deref(),
                spec.suspend,
                spec.successful_jobs_history_limit,
                spec.failed_jobs_history_limit
            ),
            (Some("Allow"), Some(false), Some(3), Some(1))
        );
        assert!(validate(&ok).is_empty(), "{:?}", validate(&ok));
        let bad = cronjob(json!({"schedule": "* * *", "timeZone": "Mars/Olympus", "concurrencyPolicy": "Sometimes",
            "startingDeadlineSeconds": -1, "jobTemplate": template("Always")}));
        let shown: Vec<String> = validate(&bad).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "spec.schedule: Invalid value: \"* * *\": expected exactly 5 fields, found 3: [* * *]",
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
                "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0",
                "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"",
            ]
        );
        let tz = cronjob(json!({"schedule": "TZ=UTC 0 * * * *", "jobTemplate": template("Never")}));
        assert!(
            validate(&tz)[0].to_string().ends_with("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        );
    }
}
