//! The API server's defaults for the objects podvisor runs (R12 and the usual pod defaults).

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_manifest::Object;

fn probe(p: &mut Probe) {
    p.period_seconds.get_or_insert(10);
    p.timeout_seconds.get_or_insert(1);
    p.success_threshold.get_or_insert(1);
    p.failure_threshold.get_or_insert(3);
    if let Some(h) = &mut p.http_get {
        h.scheme.get_or_insert_with(|| "HTTP".into());
    }
}

/// `imagePullPolicy` default: `Always` for `:latest` or untagged images, else `IfNotPresent`.
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Container) {
    // The API server's stored form always has `resources` (`{}` when empty), as its Go type
    // is a struct: a template sent with it and one sent without are the same template.
    c.resources.get_or_insert_with(Default::default);
    c.termination_message_path.get_or_insert_with(|| "/dev/termination-log".into());
    c.termination_message_policy.get_or_insert_with(|| "File".into());
    if c.image_pull_policy.is_none() {
        let policy = default_pull_policy(c.image.as_deref().unwrap_or(""));
        c.image_pull_policy = Some(policy.into());
    }
    for port in c.ports.iter_mut().flatten() {
        port.protocol.get_or_insert_with(|| "TCP".into());
    }
    for p in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe].into_iter().flatten() {
        probe(p);
    }
}

/// Applies the pod spec defaults in place.
pub fn pod_spec(spec: &mut PodSpec) {
    // An empty policy is defaulted as a missing one, as the API server's defaulting does.
    if spec.restart_policy.as_deref().is_none_or(str::is_empty) {
        spec.restart_policy = Some("Always".into());
    }
    // A negative grace is treated as 1 (the API server says so in a warning).
    let grace = spec.termination_grace_period_seconds.get_or_insert(30);
    if *grace < 0 {
        *grace = 1;
    }
    if spec.dns_policy.as_deref().is_none_or(str::is_empty) {
        spec.dns_policy = Some("ClusterFirst".into());
    }
    spec.scheduler_name.get_or_insert_with(|| "default-scheduler".into());
    spec.security_context.get_or_insert_with(Default::default);
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        if let Some(cm) = &mut v.config_map {
            cm.default_mode.get_or_insert(0o644);
        }
        if let Some(s) = &mut v.secret {
            s.default_mode.get_or_insert(0o644);
        }
    }
}

/// The defaults the API server gives a Pod and not a pod template (its `SetDefaults_Pod`): a
/// resource with a limit and no request is requested at its limit (the scheduler and the
/// kubelet then count what the limit reserves), and Service links are on.
fn pod_only(spec: &mut PodSpec) {
    for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
        let Some(resources) = &mut c.resources else { continue };
        if let Some(limits) = &resources.limits {
            let requests = resources.requests.get_or_insert_with(Default::default);
            for (name, q) in limits {
                requests.entry(name.clone()).or_insert_with(|| q.clone());
            }
        }
    }
    spec.enable_service_links.get_or_insert(true);
}

/// A claim's defaults: a filesystem volume.
fn claim_spec(spec: &mut k8s_openapi::api::core::v1::PersistentVolumeClaimSpec) {
    spec.volume_mode.get_or_insert_with(|| "Filesystem".into());
}

/// Applies an object's defaults in place, including those of the pod template it carries.
pub fn apply(object: &mut Object) {
    let meta = match object {
        Object::Pod(o) => &mut o.metadata,
        Object::Job(o) => &mut o.metadata,
        Object::Deployment(o) => &mut o.metadata,
        Object::ConfigMap(o) => &mut o.metadata,
        Object::Secret(o) => &mut o.metadata,
        Object::Service(o) => &mut o.metadata,
        Object::CronJob(o) => &mut o.metadata,
        Object::StatefulSet(o) => &mut o.metadata,
        Object::DaemonSet(o) => &mut o.metadata,
        Object::PersistentVolumeClaim(o) => &mut o.metadata,
    };
    meta.namespace.get_or_insert_with(|| "default".into());
    match object {
        Object::Pod(p) => {
            if let Some(spec) = &mut p.spec {
                pod_spec(spec);
                pod_only(spec);
            }
        }
        Object::Job(j) => {
            if let Some(spec) = &mut j.spec {
                // Completions default to 1 only with parallelism unset too: a Job that sets only
                // parallelism is a work queue, done when one pod succeeds and all have ended.
                if spec.completions.is_none() && spec.parallelism.is_none() {
                    spec.completions = Some(1);
                }
                spec.parallelism.get_or_insert(1);
                spec.backoff_limit.get_or_insert(6);
                spec.completion_mode.get_or_insert_with(|| "NonIndexed".into());
                spec.suspend.get_or_insert(false);
                if let Some(ps) = &mut spec.template.spec {
                    // The template's restart policy has no default that a Job accepts; an unset
                    // one becomes "Always" and is refused by validation, as in Kubernetes.
                    pod_spec(ps);
                }
            }
        }
        Object::Deployment(d) => {
            if let Some(spec) = &mut d.spec {
                spec.replicas.get_or_insert(1);
                spec.revision_history_limit.get_or_insert(10);
                spec.progress_deadline_seconds.get_or_insert(600);
                let strategy = spec.strategy.get_or_insert_with(Default::default);
                strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if strategy.type_.as_deref() == Some("RollingUpdate") {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_surge.get_or_insert(IntOrString::String("25%".into()));
                    ru.max_unavailable.get_or_insert(IntOrString::String("25%".into()));
                }
                if let Some(ps) = &mut spec.template.spec {
                    pod_spec(ps);
                }
            }
        }
        // The API server's `SetDefaults_StatefulSet`.
        Object::StatefulSet(o) => {
            if let Some(spec) = &mut o.spec {
                spec.replicas.get_or_insert(1);
                spec.pod_management_policy.get_or_insert_with(|| "OrderedReady".into());
                spec.revision_history_limit.get_or_insert(10);
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if strategy.type_.as_deref() == Some("RollingUpdate") {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.partition.get_or_insert(0);
                    ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                }
                let retention = spec.persistent_volume_claim_retention_policy.get_or_insert_with(Default::default);
                retention.when_deleted.get_or_insert_with(|| "Retain".into());
                retention.when_scaled.get_or_insert_with(|| "Retain".into());
                for claim in spec.volume_claim_templates.iter_mut().flatten() {
                    claim_spec(claim.spec.get_or_insert_with(Default::default));
                    claim.status.get_or_insert_with(Default::default).phase.get_or_insert_with(|| "Pending".into());
                }
                if let Some(ps) = &mut spec.template.spec {
                    pod_spec(ps);
                }
            }
        }
        // `SetDefaults_DaemonSet`.
        Object::DaemonSet(o) => {
            if let Some(spec) = &mut o.spec {
                spec.revision_history_limit.get_or_insert(10);
                let strategy = spec.update_strategy.get_or_insert_with(Default::default);
                strategy.type_.get_or_insert_with(|| "RollingUpdate".into());
                if strategy.type_.as_deref() == Some("RollingUpdate") {
                    let ru = strategy.rolling_update.get_or_insert_with(Default::default);
                    ru.max_unavailable.get_or_insert(IntOrString::Int(1));
                    ru.max_surge.get_or_insert(IntOrString::Int(0));
                }
                if let Some(ps) = &mut spec.template.spec {
                    pod_spec(ps);
                }
            }
        }
        Object::PersistentVolumeClaim(o) => {
            claim_spec(o.spec.get_or_insert_with(Default::default));
            o.status.get_or_insert_with(Default::default).phase.get_or_insert_with(|| "Pending".into());
        }
        Object::ConfigMap(_) => {}
        // The API server's default type of a Secret.
        Object::Secret(s) => {
            s.type_.get_or_insert_with(|| "Opaque".into());
        }
        Object::Service(s) => crate::service::defaults(s),
        // The API server's defaults (`SetDefaults_CronJob`), and the pod defaults of its template.
        Object::CronJob(c) => {
            let spec = c.spec.get_or_insert_with(Default::default);
            spec.concurrency_policy.get_or_insert_with(|| "Allow".into());
            spec.suspend.get_or_insert(false);
            spec.successful_jobs_history_limit.get_or_insert(3);
            spec.failed_jobs_history_limit.get_or_insert(1);
            if let Some(ps) = spec.job_template.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
                pod_spec(ps);
            }
        }
    }
}
