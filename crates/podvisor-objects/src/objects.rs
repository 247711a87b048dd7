//! Validation of whole objects: the pod spec at its place in each kind, plus each kind's own
//! rules. Errors come worded as the API server's `… is invalid` response.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use podvisor_manifest::Object;

use crate::field::{FieldError, Invalid, Path};
use crate::validation::{validate_metadata, validate_pod_spec};

fn pod(p: &Pod) -> Vec<FieldError> {
    let mut errs = validate_metadata(&p.metadata, &Path::new("metadata"));
    match &p.spec {
        Some(spec) => {
            errs.extend(validate_pod_spec(spec, &Path::new("spec")));
            // Pods only: templates may hold a blank image another tool fills in.
            let lists = [
                ("initContainers", spec.init_containers.as_deref().unwrap_or_default()),
                ("containers", &spec.containers),
            ];
            for (list, containers) in lists {
                for (i, c) in containers.iter().enumerate() {
                    if let Some(image) = c.image.as_deref().filter(|im| !im.is_empty() && im.trim() != *im) {
                        let at = Path::new("spec").child(list).index(i).child("image");
                        errs.push(at.invalid(image, "must not have leading or trailing whitespace"));
                    }
                }
            }
        }
        None => errs.push(Path::new("spec").required("")),
    }
    errs
}

/// The labels of a pod template, at `spec.template.labels` as the API server names them.
fn template_labels(t: &k8s_openapi::api::core::v1::PodTemplateSpec, errs: &mut Vec<FieldError>) {
    if let Some(l) = t.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        crate::validation::validate_labels(l, &Path::new("spec").child("template").child("labels"), errs);
    }
}

fn job(j: &Job) -> Vec<FieldError> {
    let mut errs = validate_metadata(&j.metadata, &Path::new("metadata"));
    let Some(spec) = &j.spec else {
        errs.push(Path::new("spec").required(""));
        return errs;
    };
    let tp = Path::new("spec").child("template").child("spec");
    match &spec.template.spec {
        Some(ps) => {
            errs.extend(validate_pod_spec(ps, &tp));
            errs.extend(no_ephemeral_in_template(ps, &tp));
            match ps.restart_policy.as_deref() {
                Some("OnFailure" | "Never") => {}
                None | Some("" | "Always") => {
                    errs.push(tp.child("restartPolicy").required(r#"valid values: "OnFailure", "Never""#))
                }
                Some(other) => errs.push(tp.child("restartPolicy").not_supported(other, &["OnFailure", "Never"])),
            }
        }
        None => errs.push(tp.required("")),
    }
    template_labels(&spec.template, &mut errs);
    for (name, v) in [
        ("parallelism", spec.parallelism.map(i64::from)),
        ("completions", spec.completions.map(i64::from)),
        ("backoffLimit", spec.backoff_limit.map(i64::from)),
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished.map(i64::from)),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(Path::new("spec").child(name).invalid_num(v, "must be greater than or equal to 0"));
        }
    }
    match spec.completion_mode.as_deref() {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.completions.is_none() {
                errs.push(Path::new("spec").child("completions").required("when completion mode is Indexed"));
            }
        }
        Some(other) => {
            errs.push(Path::new("spec").child("completionMode").not_supported(other, &["NonIndexed", "Indexed"]))
        }
    }
    if let Some(policy) = &spec.pod_failure_policy {
        let restart = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("");
        if restart != "Never" {
            errs.push(
                tp.child("restartPolicy")
                    .invalid(restart, r#"only "Never" is supported when podFailurePolicy is specified"#),
            );
        }
        let rules = Path::new("spec").child("podFailurePolicy").child("rules");
        for (i, rule) in policy.rules.iter().enumerate() {
            let at = rules.index(i);
            if !matches!(rule.action.as_str(), "Count" | "FailJob" | "Ignore") {
                errs.push(at.child("action").not_supported(&rule.action, &["Count", "FailJob", "Ignore"]));
            }
            match (&rule.on_exit_codes, &rule.on_pod_conditions) {
                (Some(_), Some(_)) => {
                    errs.push(at.invalid("", "specifying both OnExitCodes and OnPodConditions is not supported"))
                }
                (None, None) => {
                    errs.push(at.invalid("", "specifying one of OnExitCodes and OnPodConditions is required"))
                }
                _ => {}
            }
            if let Some(codes) = &rule.on_exit_codes {
                let cp = at.child("onExitCodes");
                if !matches!(codes.operator.as_str(), "In" | "NotIn") {
                    errs.push(cp.child("operator").not_supported(&codes.operator, &["In", "NotIn"]));
                }
                if codes.values.is_empty() {
                    errs.push(cp.child("values").required("at least one value is required"));
                }
                for (j, v) in codes.values.iter().enumerate() {
                    if *v == 0 && codes.operator == "In" {
                        errs.push(cp.child("values").index(j).invalid_num(0, "must not be 0 for the In operator"));
                    }
                }
            }
        }
    }
    errs
}

/// The rules a controller's selector and pod template share (Deployment, StatefulSet,
/// DaemonSet): a selector that matches the template's labels, a valid template whose pods
/// restart `Always`, no deadline, no ephemeral containers, and replicas not below zero.
fn workload(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    replicas: Option<i32>,
    errs: &mut Vec<FieldError>,
) {
    let labels = template.metadata.as_ref().and_then(|m| m.labels.clone()).unwrap_or_default();
    let matching = selector.match_labels.clone().unwrap_or_default();
    if matching.is_empty() && selector.match_expressions.as_ref().is_none_or(Vec::is_empty) {
        errs.push(Path::new("spec").child("selector").required(""));
    } else if !matching.iter().all(|(k, v)| labels.get(k) == Some(v)) {
        let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
        errs.push(crate::field::FieldError {
            field: "spec.template.metadata.labels".into(),
            kind: crate::field::ErrorType::Invalid(format!("{{{}}}", shown.join(","))),
            detail: "`selector` does not match template `labels`".into(),
        });
    }
    let tp = Path::new("spec").child("template").child("spec");
    match &template.spec {
        Some(ps) => {
            errs.extend(validate_pod_spec(ps, &tp));
            errs.extend(no_ephemeral_in_template(ps, &tp));
            if let Some(p) = ps.restart_policy.as_deref().filter(|p| *p != "Always") {
                errs.push(tp.child("restartPolicy").not_supported(p, &["Always"]));
            }
        }
        None => errs.push(tp.required("")),
    }
    if let Some(r) = replicas.filter(|r| *r < 0) {
        errs.push(Path::new("spec").child("replicas").invalid_num(r.into(), "must be greater than or equal to 0"));
    }
    template_labels(template, errs);
    if template.spec.as_ref().is_some_and(|s| s.active_deadline_seconds.is_some()) {
        errs.push(tp.child("activeDeadlineSeconds").forbidden("activeDeadlineSeconds in ReplicaSet is not Supported"));
    }
}

fn statefulset(o: &k8s_openapi::api::apps::v1::StatefulSet) -> Vec<FieldError> {
    let mut errs = validate_metadata(&o.metadata, &Path::new("metadata"));
    let Some(spec) = &o.spec else {
        errs.push(Path::new("spec").required(""));
        return errs;
    };
    // The pods get a volume per claim template: the template's mounts may name them.
    let mut template = spec.template.clone();
    if let Some(ps) = &mut template.spec {
        let volumes = ps.volumes.get_or_insert_default();
        for t in spec.volume_claim_templates.iter().flatten() {
            let name = t.metadata.name.clone().unwrap_or_default();
            if !volumes.iter().any(|v| v.name == name) {
                volumes.push(k8s_openapi::api::core::v1::Volume {
                    name: name.clone(),
                    persistent_volume_claim: Some(k8s_openapi::api::core::v1::PersistentVolumeClaimVolumeSource {
                        claim_name: name,
                        read_only: None,
                    }),
                    ..Default::default()
                });
            }
        }
    }
    workload(&spec.selector, &template, spec.replicas, &mut errs);
    let sp = Path::new("spec");
    if let Some(p) = spec.pod_management_policy.as_deref().filter(|p| !matches!(*p, "OrderedReady" | "Parallel")) {
        errs.push(sp.child("podManagementPolicy").not_supported(p, &["OrderedReady", "Parallel"]));
    }
    if let Some(t) = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref())
        && !matches!(t, "RollingUpdate" | "OnDelete")
    {
        errs.push(sp.child("updateStrategy").child("type").not_supported(t, &["OnDelete", "RollingUpdate"]));
    }
    for (i, claim) in spec.volume_claim_templates.iter().flatten().enumerate() {
        let cp = sp.child("volumeClaimTemplates").index(i);
        match claim.metadata.name.as_deref() {
            Some(n) if crate::validation::is_dns1123_subdomain(n) => {}
            Some(n) if !n.is_empty() => errs.push(cp.child("metadata").child("name").invalid(
                n,
                "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            )),
            _ => errs.push(cp.child("metadata").child("name").required("name or generateName is required")),
        }
        if let Some(c) = &claim.spec {
            claim_spec(c, &cp.child("spec"), &mut errs);
        }
    }
    errs
}

fn daemonset(o: &k8s_openapi::api::apps::v1::DaemonSet) -> Vec<FieldError> {
    let mut errs = validate_metadata(&o.metadata, &Path::new("metadata"));
    let Some(spec) = &o.spec else {
        errs.push(Path::new("spec").required(""));
        return errs;
    };
    workload(&spec.selector, &spec.template, None, &mut errs);
    if let Some(t) = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref())
        && !matches!(t, "RollingUpdate" | "OnDelete")
    {
        errs.push(
            Path::new("spec").child("updateStrategy").child("type").not_supported(t, &["OnDelete", "RollingUpdate"]),
        );
    }
    errs
}

/// A claim's spec: at least one supported access mode, and a storage request.
fn claim_spec(spec: &k8s_openapi::api::core::v1::PersistentVolumeClaimSpec, sp: &Path, errs: &mut Vec<FieldError>) {
    const MODES: [&str; 4] = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"];
    let modes = spec.access_modes.as_deref().unwrap_or_default();
    if modes.is_empty() {
        errs.push(sp.child("accessModes").required("at least 1 access mode is required"));
    }
    for m in modes.iter().filter(|m| !MODES.contains(&m.as_str())) {
        errs.push(sp.child("accessModes").not_supported(m, &MODES));
    }
    let storage = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage"));
    match storage {
        None => errs.push(sp.child("resources").key("storage").required("")),
        Some(q) if crate::resources::parse_milli(&q.0).is_ok_and(|v| v <= 0) => {
            errs.push(sp.child("resources").child("requests").key("storage").invalid(&q.0, "must be greater than zero"))
        }
        Some(q) if crate::resources::parse_milli(&q.0).is_err() => errs.push(
            sp.child("resources")
                .child("requests")
                .key("storage")
                .invalid(&q.0, "must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"),
        ),
        Some(_) => {}
    }
}

fn deployment(d: &Deployment) -> Vec<FieldError> {
    let mut errs = validate_metadata(&d.metadata, &Path::new("metadata"));
    let Some(spec) = &d.spec else {
        errs.push(Path::new("spec").required(""));
        return errs;
    };
    workload(&spec.selector, &spec.template, spec.replicas, &mut errs);
    if let Some(s) = &spec.strategy {
        strategy(s, &mut errs);
    }
    errs
}

/// A Deployment's `strategy`, with the API server's rules and words.
fn strategy(s: &k8s_openapi::api::apps::v1::DeploymentStrategy, errs: &mut Vec<FieldError>) {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let sp = Path::new("spec").child("strategy");
    let rp = sp.child("rollingUpdate");
    match s.type_.as_deref() {
        None | Some("RollingUpdate") => {}
        Some("Recreate") => {
            if s.rolling_update.is_some() {
                errs.push(rp.forbidden("may not be specified when strategy `type` is 'Recreate'"));
            }
            return;
        }
        Some(other) => {
            errs.push(crate::field::FieldError {
                field: sp.as_str().to_string(),
                kind: crate::field::ErrorType::NotSupported(
                    format!("{{\"Type\":{},\"RollingUpdate\":null}}", crate::field::quote(other)),
                    vec!["Recreate", "RollingUpdate"],
                ),
                detail: String::new(),
            });
            return;
        }
    }
    let Some(ru) = &s.rolling_update else { return };
    // The value as a number of percent or pods; `None` when it is neither.
    let check = |name: &str, v: &Option<IntOrString>, errs: &mut Vec<FieldError>| -> Option<(i64, bool)> {
        let at = rp.child(name);
        match v.as_ref()? {
            IntOrString::Int(n) => {
                if *n < 0 {
                    errs.push(at.invalid_num((*n).into(), "must be greater than or equal to 0"));
                }
                Some((i64::from(*n), false))
            }
            IntOrString::String(t) => {
                match t.strip_suffix('%').filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())) {
                    Some(d) => Some((d.parse().unwrap_or(i64::MAX), true)),
                    None => {
                        errs.push(at.invalid(
                        t,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                        Some((0, true))
                    }
                }
            }
        }
    };
    let unavailable = check("maxUnavailable", &ru.max_unavailable, errs);
    let surge = check("maxSurge", &ru.max_surge, errs);
    let shown = |v: &Option<IntOrString>| match v {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => crate::field::quote(s),
        None => "null".into(),
    };
    if unavailable.is_some_and(|(n, _)| n == 0) && surge.is_some_and(|(n, _)| n == 0) {
        errs.push(crate::field::FieldError {
            field: rp.child("maxUnavailable").as_str().to_string(),
            kind: crate::field::ErrorType::Invalid(shown(&ru.max_unavailable)),
            detail: "may not be 0 when `maxSurge` is 0".into(),
        });
    }
    if unavailable.is_some_and(|(n, percent)| percent && n > 100) {
        errs.push(crate::field::FieldError {
            field: rp.child("maxUnavailable").as_str().to_string(),
            kind: crate::field::ErrorType::Invalid(shown(&ru.max_unavailable)),
            detail: "must not be greater than 100%".into(),
        });
    }
}

const CONCURRENCY_POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];

/// The longest CronJob name: its Jobs add 11 characters (`-<minutes>`) and must fit 63.
const MAX_CRONJOB_NAME: usize = 52;

/// The API server's validation of a CronJob on create.
fn cronjob(cj: &CronJob) -> Vec<FieldError> {
    let meta = Path::new("metadata");
    let mut errs = validate_metadata(&cj.metadata, &meta);
    if let Some(name) = cj.metadata.name.as_deref()
        && name.len() > MAX_CRONJOB_NAME
    {
        errs.push(meta.child("name").invalid(name, &format!("must be no more than {MAX_CRONJOB_NAME} characters")));
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
        && !CONCURRENCY_POLICIES.contains(&p)
    {
        errs.push(path.child("concurrencyPolicy").not_supported(p, CONCURRENCY_POLICIES));
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
    let template = Job { spec: spec.job_template.spec.clone(), ..Default::default() };
    for mut e in job(&template).into_iter().filter(|e| !e.field.starts_with("metadata")) {
        e.field = e.field.replacen("spec", "spec.jobTemplate.spec", 1);
        errs.push(e);
    }
    errs
}

/// The keys of a ConfigMap's or Secret's data, as the API server checks them (they become
/// file names in volumes): `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`, and
/// not starting with `..`.
fn config_keys<'a>(keys: impl Iterator<Item = (&'a str, &'a String)>, errs: &mut Vec<FieldError>) {
    const FMT: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. \
        'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
    for (field, key) in keys {
        let at = Path::new(field).key(key);
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
            errs.push(at.invalid(key, FMT));
        } else if key.len() > 253 {
            errs.push(at.invalid(key, "must be no more than 253 characters"));
        } else if key == "." || key == ".." {
            errs.push(at.invalid(key, "must not be '.' or '..'"));
        } else if key.starts_with("..") {
            errs.push(at.invalid(key, "must not start with '..'"));
        }
    }
}

/// Validates an object as the API server would on create. `Ok` when valid.
pub fn validate(object: &Object) -> Result<(), Invalid> {
    let errors = match object {
        Object::Pod(p) => pod(p),
        Object::Job(j) => job(j),
        Object::Deployment(d) => deployment(d),
        Object::ConfigMap(c) => {
            let mut errs = validate_metadata(&c.metadata, &Path::new("metadata"));
            let keys = c.data.iter().flat_map(|d| d.keys()).map(|k| ("data", k));
            config_keys(keys.chain(c.binary_data.iter().flat_map(|d| d.keys()).map(|k| ("binaryData", k))), &mut errs);
            errs
        }
        Object::Secret(s) => {
            let mut errs = validate_metadata(&s.metadata, &Path::new("metadata"));
            let keys = s.data.iter().flat_map(|d| d.keys()).map(|k| ("data", k));
            config_keys(keys.chain(s.string_data.iter().flat_map(|d| d.keys()).map(|k| ("stringData", k))), &mut errs);
            errs
        }
        Object::Service(s) => crate::service::validate(s),
        Object::CronJob(c) => cronjob(c),
        Object::StatefulSet(o) => statefulset(o),
        Object::DaemonSet(o) => daemonset(o),
        Object::PersistentVolumeClaim(o) => {
            let mut errs = validate_metadata(&o.metadata, &Path::new("metadata"));
            match &o.spec {
                Some(spec) => claim_spec(spec, &Path::new("spec"), &mut errs),
                None => errs.push(Path::new("spec").required("")),
            }
            errs
        }
    };
    if errors.is_empty() {
        Ok(())
    } else {
        // The API server names kinds with their group: `Job.batch`, `Deployment.apps`.
        let kind = match object {
            Object::Job(_) => "Job.batch",
            Object::Deployment(_) => "Deployment.apps",
            Object::CronJob(_) => "CronJob.batch",
            Object::StatefulSet(_) => "StatefulSet.apps",
            Object::DaemonSet(_) => "DaemonSet.apps",
            other => other.kind(),
        };
        Err(Invalid { kind: kind.to_string(), name: object.name().to_string(), errors })
    }
}

/// A pod template may not carry ephemeral containers (only a running pod gets them).
fn no_ephemeral_in_template(spec: &k8s_openapi::api::core::v1::PodSpec, path: &Path) -> Option<FieldError> {
    spec.ephemeral_containers
        .as_ref()
        .filter(|e| !e.is_empty())
        .map(|_| path.child("ephemeralContainers").forbidden("ephemeral containers not allowed in pod template"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cronjob_of(spec: serde_json::Value) -> CronJob {
        serde_json::from_value(json!({"metadata": {"name": "nightly", "namespace": "default"}, "spec": spec})).unwrap()
    }

    fn template(restart: &str) -> serde_json::Value {
        json!({"spec": {"template": {"spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "busybox"}]}}}})
    }

    #[test]
    fn defaults_and_errors_as_the_api_server_has_them() {
        let mut o = Object::CronJob(Box::new(cronjob_of(
            json!({"schedule": "*/5 * * * *", "jobTemplate": template("OnFailure")}),
        )));
        crate::defaults::apply(&mut o);
        let Object::CronJob(ok) = o else { panic!("a CronJob") };
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
        assert!(cronjob(&ok).is_empty(), "{:?}", cronjob(&ok));
        let bad = cronjob_of(json!({"schedule": "* * *", "timeZone": "Mars/Olympus", "concurrencyPolicy": "Sometimes",
            "startingDeadlineSeconds": -1, "jobTemplate": template("Always")}));
        let shown: Vec<String> = cronjob(&bad).iter().map(ToString::to_string).collect();
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
        let tz = cronjob_of(json!({"schedule": "TZ=UTC 0 * * * *", "jobTemplate": template("Never")}));
        assert!(
            cronjob(&tz)[0].to_string().ends_with("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
        );
    }

    /// Review: ConfigMap keys become file names; one that climbs out of the volume, or names
    /// the atomic writer's own `..data`, is refused as the API server refuses it.
    #[test]
    fn config_keys_are_file_names() {
        let cm = |key: &str| {
            let v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {key: "x"}});
            Object::ConfigMap(Box::new(serde_json::from_value(v).unwrap()))
        };
        assert!(validate(&cm("key.name_1-a")).is_ok());
        for bad in ["../../etc/hostname", "..data", ".."] {
            let e = validate(&cm(bad)).unwrap_err().to_string();
            assert!(e.contains(&format!("data[{bad}]: Invalid value")), "{e}");
        }
    }
}
