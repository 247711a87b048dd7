//! The pods a manifest object makes: its pod spec, where that spec is in the object, and what
//! the pods are for (to run to completion, or to keep running).

use k8s_openapi::api::batch::v1::JobSpec;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use podvisor_manifest::Object;

/// One pod spec of an object, with what the rules need around it.
pub(crate) struct Workload<'a> {
    /// The pod spec.
    pub spec: &'a PodSpec,
    /// Its field path in the object (`spec`, `spec.template.spec`).
    pub base: &'static str,
    /// Whether its pods are meant to end (a Job's, or a pod that does not restart).
    pub completes: bool,
    /// The Job around it, if any.
    pub job: Option<(&'a JobSpec, &'static str)>,
}

/// The pod specs of `object` (none for a kind without pods).
pub(crate) fn of(object: &Object) -> Vec<Workload<'_>> {
    fn spec(s: Option<&PodSpec>) -> std::option::IntoIter<&PodSpec> {
        s.into_iter()
    }
    match object {
        Object::Pod(p) => spec(p.spec.as_ref())
            .map(|s| Workload {
                spec: s,
                base: "spec",
                completes: s.restart_policy.as_deref() != Some("Always"),
                job: None,
            })
            .collect(),
        Object::Job(j) => j
            .spec
            .iter()
            .flat_map(|js| {
                spec(js.template.spec.as_ref()).map(move |s| Workload {
                    spec: s,
                    base: "spec.template.spec",
                    completes: true,
                    job: Some((js, "spec")),
                })
            })
            .collect(),
        Object::CronJob(c) => c
            .spec
            .iter()
            .flat_map(|cs| cs.job_template.spec.iter())
            .flat_map(|js| {
                spec(js.template.spec.as_ref()).map(move |s| Workload {
                    spec: s,
                    base: "spec.jobTemplate.spec.template.spec",
                    completes: true,
                    job: Some((js, "spec.jobTemplate.spec")),
                })
            })
            .collect(),
        Object::Deployment(d) => d
            .spec
            .iter()
            .flat_map(|s| spec(s.template.spec.as_ref()))
            .map(|s| Workload { spec: s, base: "spec.template.spec", completes: false, job: None })
            .collect(),
        Object::StatefulSet(d) => d
            .spec
            .iter()
            .flat_map(|s| spec(s.template.spec.as_ref()))
            .map(|s| Workload { spec: s, base: "spec.template.spec", completes: false, job: None })
            .collect(),
        Object::DaemonSet(d) => d
            .spec
            .iter()
            .flat_map(|s| spec(s.template.spec.as_ref()))
            .map(|s| Workload { spec: s, base: "spec.template.spec", completes: false, job: None })
            .collect(),
        Object::ConfigMap(_) | Object::Secret(_) | Object::Service(_) | Object::PersistentVolumeClaim(_) => Vec::new(),
    }
}

/// A container of a pod spec with its list and index.
pub(crate) struct Slot<'a> {
    /// The container.
    pub c: &'a Container,
    /// `initContainers` or `containers`.
    pub list: &'static str,
    /// Its index in the list.
    pub index: usize,
}

impl Slot<'_> {
    /// Whether it is a sidecar (an init container with `restartPolicy: Always`).
    pub fn is_sidecar(&self) -> bool {
        self.list == "initContainers" && self.c.restart_policy.as_deref() == Some("Always")
    }

    /// Its field path under `base`.
    pub fn path(&self, base: &str) -> String {
        format!("{base}.{}[{}]", self.list, self.index)
    }
}

impl Workload<'_> {
    /// Every container in start order: init containers (sidecars among them), then regular.
    pub fn slots(&self) -> Vec<Slot<'_>> {
        let init = self.spec.init_containers.iter().flatten().enumerate().map(|(index, c)| Slot {
            c,
            list: "initContainers",
            index,
        });
        let regular = self.spec.containers.iter().enumerate().map(|(index, c)| Slot { c, list: "containers", index });
        init.chain(regular).collect()
    }

    /// The grace period of its pods, in seconds (30 unless set).
    pub fn grace(&self) -> i64 {
        self.spec.termination_grace_period_seconds.unwrap_or(30)
    }
}
