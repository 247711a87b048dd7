//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), a stable host name
//! under the governing Service (`hostname`, `subdomain`), and a claim per pod from each
//! `volumeClaimTemplates` entry (`<template>-<set>-<ordinal>`), made before the pod and kept
//! after it (unless the retention policy says otherwise).
//!
//! With `OrderedReady` (the default) pods are made one at a time in ordinal order, each once
//! every one before it is Running and Ready, and removed from the highest ordinal down, one at
//! a time; a rolling update replaces them from the highest ordinal down to the partition, one
//! at a time, each once all are Ready. `Parallel` makes and removes them all at once (updates
//! stay one at a time). A failed pod is deleted and made again under the same name.
//!
//! A reconcile [`observe`]s the set's pods and claims, [`decide`]s a [`Plan`] (pure) and
//! [`act`]s on it. The revision of a pod is its template's hash (`controller-revision-hash`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, Volume};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::{Action, Ctx, Error, create_pod_as, involved, key_of, owned, owner_ref, template_hash, write_status};
use crate::store::{Key, StoreError};
use crate::values::{meta_is_deleting, pod_is_ready, pod_is_terminal, pod_phase};

const COMPONENT: &str = "statefulset-controller";

/// The label naming a pod's revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";

/// What the store says about one StatefulSet besides the set itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// Its pods.
    pub pods: Vec<Pod>,
    /// The names of the claims that exist in its namespace.
    pub claims: Vec<String>,
}

/// Reads the pods `set` controls and the claims of its namespace.
pub(crate) fn observe(set: &StatefulSet, ctx: &Ctx) -> Result<Observed, Error> {
    let key = key_of(Resource::StatefulSets, &set.metadata);
    let uid = set.metadata.uid.as_deref().unwrap_or("");
    let pods = owned(&ctx.store, Resource::Pods, &key.namespace, uid)?;
    let claims = ctx
        .store
        .list(Resource::PersistentVolumeClaims, Some(&key.namespace))
        .0
        .iter()
        .filter_map(|c| c.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
        .collect();
    Ok(Observed { pods, claims })
}

/// One step a plan takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Make the claim (from the template named) for the pod of this ordinal.
    CreateClaim { template: String, ordinal: i64 },
    /// Make the pod of this ordinal.
    CreatePod(i64),
    /// Delete the pod of this name (failed, condemned, or of an old revision); with its claims
    /// when the set's `whenScaled` policy is Delete and it is condemned.
    DeletePod { name: String, claims: bool },
}

/// What one reconcile of a StatefulSet does.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The status to write.
    pub status: StatefulSetStatus,
}

/// A pod's ordinal, if its name is `<set>-<n>`.
fn ordinal(set: &str, pod: &Pod) -> Option<i64> {
    pod.metadata.name.as_deref()?.strip_prefix(set)?.strip_prefix('-')?.parse().ok().filter(|n: &i64| *n >= 0)
}

fn revision_of(pod: &Pod) -> &str {
    pod.metadata.labels.as_ref().and_then(|l| l.get(REVISION_LABEL)).map(String::as_str).unwrap_or("")
}

/// The revision name of `set`'s current template: `<set>-<hash>`.
pub(crate) fn update_revision(set: &StatefulSet) -> String {
    let template = set.spec.as_ref().map(|s| serde_json::to_value(&s.template).unwrap_or(Value::Null));
    format!("{}-{}", set.metadata.name.as_deref().unwrap_or(""), template_hash(&template.unwrap_or(Value::Null)))
}

/// The claim name of `template` for the pod of `ordinal`.
pub(crate) fn claim_name(template: &str, set: &str, ordinal: i64) -> String {
    format!("{template}-{set}-{ordinal}")
}

fn running_and_ready(p: &Pod) -> bool {
    pod_phase(p) == "Running" && pod_is_ready(p) && !meta_is_deleting(&p.metadata)
}

/// Decides what to do with `set`, given its pods and claims: a pure function.
pub(crate) fn decide(set: &StatefulSet, observed: &Observed) -> Plan {
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let replicas = i64::from(spec.replicas.unwrap_or(1).max(0));
    let start = i64::from(spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0).max(0));
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let update = update_revision(set);
    let by_ordinal: BTreeMap<i64, &Pod> = observed.pods.iter().filter_map(|p| Some((ordinal(&name, p)?, p))).collect();
    let in_range = |o: i64| o >= start && o < start.saturating_add(replicas);
    let mut steps = Vec::new();
    // Make or mend the pods in range, in order; in OrderedReady, stop at the first step and at
    // the first pod not yet Running and Ready (one being deleted included).
    for o in start..start.saturating_add(replicas) {
        match by_ordinal.get(&o) {
            None => {
                for t in spec.volume_claim_templates.iter().flatten() {
                    let template = t.metadata.name.clone().unwrap_or_default();
                    if !observed.claims.contains(&claim_name(&template, &name, o)) {
                        steps.push(Step::CreateClaim { template, ordinal: o });
                    }
                }
                steps.push(Step::CreatePod(o));
                // One at a time in order; in Parallel, at most a burst per sync (the pods made
                // bring the next one).
                let made = steps.iter().filter(|s| matches!(s, Step::CreatePod(_))).count();
                if !parallel || made >= super::replicasets::BURST_REPLICAS {
                    break;
                }
            }
            Some(p) if pod_is_terminal(p) && !meta_is_deleting(&p.metadata) => {
                steps.push(Step::DeletePod { name: p.metadata.name.clone().unwrap_or_default(), claims: false });
                if !parallel {
                    break;
                }
            }
            Some(p) if !parallel && !running_and_ready(p) => break,
            Some(_) => {}
        }
    }
    let all_ready =
        (start..start.saturating_add(replicas)).all(|o| by_ordinal.get(&o).is_some_and(|p| running_and_ready(p)));
    // The condemned (beyond the replicas), highest first: once the rest are Running and Ready,
    // one at a time (all at once in Parallel).
    let condemned: Vec<&Pod> = {
        let mut c: Vec<&Pod> =
            observed.pods.iter().filter(|p| ordinal(&name, p).is_none_or(|o| !in_range(o))).collect();
        c.sort_by_key(|p| std::cmp::Reverse(ordinal(&name, p).unwrap_or(i64::MAX)));
        c
    };
    let scaled_delete =
        spec.persistent_volume_claim_retention_policy.as_ref().and_then(|r| r.when_scaled.as_deref()) == Some("Delete");
    if steps.is_empty() && (parallel || all_ready) {
        for p in &condemned {
            if meta_is_deleting(&p.metadata) {
                if !parallel {
                    break;
                }
                continue;
            }
            steps.push(Step::DeletePod { name: p.metadata.name.clone().unwrap_or_default(), claims: scaled_delete });
            if !parallel {
                break;
            }
        }
    }
    // A rolling update: the highest pod of an old revision, down to the partition, once all
    // are Ready and none is going.
    let rolling =
        spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = i64::from(
        spec.update_strategy.as_ref().and_then(|u| u.rolling_update.as_ref()).and_then(|r| r.partition).unwrap_or(0),
    );
    if rolling && steps.is_empty() && condemned.is_empty() && all_ready {
        let old = (start..start.saturating_add(replicas))
            .rev()
            .filter(|o| *o >= start.saturating_add(partition))
            .filter_map(|o| by_ordinal.get(&o))
            .find(|p| revision_of(p) != update);
        if let Some(p) = old {
            steps.push(Step::DeletePod { name: p.metadata.name.clone().unwrap_or_default(), claims: false });
        }
    }
    let counted: Vec<&Pod> = observed.pods.iter().filter(|p| !pod_is_terminal(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| i32::try_from(counted.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let updated = count(&|p| revision_of(p) == update);
    let ready = count(&|p| running_and_ready(p));
    let previous = set.status.as_ref().and_then(|s| s.current_revision.clone()).unwrap_or_else(|| update.clone());
    // Every pod at the update revision and ready: it becomes the current one.
    let done = updated == i32::try_from(replicas).unwrap_or(i32::MAX) && condemned.is_empty() && all_ready;
    let current = if done { update.clone() } else { previous };
    let status = StatefulSetStatus {
        replicas: count(&|_| true),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        current_replicas: Some(count(&|p| revision_of(p) == current)),
        updated_replicas: Some(updated),
        current_revision: Some(current),
        update_revision: Some(update),
        observed_generation: Some(set.metadata.generation.unwrap_or(1)),
        collision_count: Some(0),
        ..Default::default()
    };
    Plan { steps, status }
}

/// Makes the pod of `o`: the template's, named `<set>-<o>`, with its identity and claims.
fn make_pod(set: &StatefulSet, o: i64, ctx: &Ctx) -> Result<(), String> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let pod_name = format!("{name}-{o}");
    let revision = update_revision(set);
    create_pod_as(ctx, Resource::StatefulSets, &set.metadata, &spec.template, &pod_name, None, |pod| {
        let labels = pod.metadata.labels.get_or_insert_default();
        labels.insert("statefulset.kubernetes.io/pod-name".into(), pod_name.clone());
        labels.insert("apps.kubernetes.io/pod-index".into(), o.to_string());
        labels.insert(REVISION_LABEL.into(), revision.clone());
        let ps = pod.spec.get_or_insert_default();
        ps.hostname = Some(pod_name.clone());
        if let Some(svc) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
            ps.subdomain = Some(svc.to_string());
        }
        for t in spec.volume_claim_templates.iter().flatten() {
            let template = t.metadata.name.clone().unwrap_or_default();
            let volume = Volume {
                name: template.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&template, &name, o),
                    read_only: None,
                }),
                ..Default::default()
            };
            let volumes = ps.volumes.get_or_insert_default();
            volumes.retain(|v| v.name != template);
            volumes.push(volume);
        }
    })
}

/// Makes the claim of `template` for the pod of `o`, labelled with the set's selector.
fn make_claim(set: &StatefulSet, template: &str, o: i64, ctx: &Ctx) -> Result<(), String> {
    let name = set.metadata.name.clone().unwrap_or_default();
    let namespace = set.metadata.namespace.clone().unwrap_or_default();
    let spec = set.spec.clone().unwrap_or_default();
    let Some(t) = spec.volume_claim_templates.iter().flatten().find(|t| t.metadata.name.as_deref() == Some(template))
    else {
        return Ok(());
    };
    let mut claim = serde_json::to_value(t).map_err(|e| e.to_string())?;
    claim["apiVersion"] = json!("v1");
    claim["kind"] = json!("PersistentVolumeClaim");
    claim["metadata"]["name"] = json!(claim_name(template, &name, o));
    claim["metadata"]["namespace"] = json!(namespace);
    if let Some(Value::Object(m)) = claim.get_mut("metadata") {
        m.remove("creationTimestamp");
    }
    for (k, v) in spec.selector.match_labels.iter().flatten() {
        claim["metadata"]["labels"][k] = json!(v);
    }
    claim["status"] = json!({"phase": "Pending"});
    if spec.persistent_volume_claim_retention_policy.as_ref().and_then(|r| r.when_deleted.as_deref()) == Some("Delete")
    {
        let mut owner = owner_ref(Resource::StatefulSets, &set.metadata);
        owner.controller = None;
        claim["metadata"]["ownerReferences"] = json!([owner]);
    }
    let admitted = podvisor_apiserver::admission::admit(
        Resource::PersistentVolumeClaims,
        claim,
        Some(&namespace),
        podvisor_apiserver::admission::FieldValidation::Strict,
    )
    .map_err(|e| e.to_string())?;
    let mut claim = admitted.object;
    podvisor_apiserver::admission::on_create(Resource::PersistentVolumeClaims, &mut claim);
    crate::admission::admit_create(&ctx.store, None, Resource::PersistentVolumeClaims, &mut claim)
        .map_err(|e| e.to_string())?;
    match ctx.store.create(Resource::PersistentVolumeClaims, claim) {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Applies `plan` to `set`: makes and deletes, and writes the status.
pub(crate) fn act(set: &StatefulSet, plan: Plan, ctx: &Ctx) -> Result<Action, Error> {
    let key = key_of(Resource::StatefulSets, &set.metadata);
    let name = key.name.clone();
    let about = involved(Resource::StatefulSets, &set.metadata);
    let event = |kind: &'static str, reason: &str, message: String| {
        ctx.recorder.record(&about, kind, reason, &message, COMPONENT)
    };
    for step in &plan.steps {
        match step {
            Step::CreateClaim { template, ordinal } => {
                let claim = claim_name(template, &name, *ordinal);
                match make_claim(set, template, *ordinal, ctx) {
                    Ok(()) => event(
                        "Normal",
                        "SuccessfulCreate",
                        format!("create Claim {claim} Pod {name}-{ordinal} in StatefulSet {name} success"),
                    ),
                    Err(e) => {
                        event(
                            "Warning",
                            "FailedCreate",
                            format!(
                                "create Claim {claim} for Pod {name}-{ordinal} in StatefulSet {name} failed error: {e}"
                            ),
                        );
                        return Ok(Action::requeue(std::time::Duration::from_secs(5)));
                    }
                }
            }
            Step::CreatePod(o) => match make_pod(set, *o, ctx) {
                Ok(()) => event(
                    "Normal",
                    "SuccessfulCreate",
                    format!("create Pod {name}-{o} in StatefulSet {name} successful"),
                ),
                Err(e) => {
                    event(
                        "Warning",
                        "FailedCreate",
                        format!("create Pod {name}-{o} in StatefulSet {name} failed error: {e}"),
                    );
                    return Ok(Action::requeue(std::time::Duration::from_secs(5)));
                }
            },
            Step::DeletePod { name: pod, claims } => {
                let pk = Key::new(Resource::Pods, &key.namespace, pod);
                match crate::delete::delete(&ctx.store, &pk, &crate::delete::DeleteOptions::default()) {
                    Ok(_) => event(
                        "Normal",
                        "SuccessfulDelete",
                        format!("delete Pod {pod} in StatefulSet {name} successful"),
                    ),
                    Err(StoreError::NotFound(_)) => {}
                    Err(e) => return Err(Error::store("deleting", &pk, e)),
                }
                if *claims && let Some(o) = pod.strip_prefix(&format!("{name}-")) {
                    for t in set.spec.iter().flat_map(|s| s.volume_claim_templates.iter().flatten()) {
                        let claim = format!("{}-{name}-{o}", t.metadata.name.as_deref().unwrap_or(""));
                        let ck = Key::new(Resource::PersistentVolumeClaims, &key.namespace, &claim);
                        match crate::delete::delete(&ctx.store, &ck, &crate::delete::DeleteOptions::default()) {
                            Ok(_) | Err(StoreError::NotFound(_)) => {}
                            Err(e) => return Err(Error::store("deleting", &ck, e)),
                        }
                    }
                }
            }
        }
    }
    write_status(ctx, &key, &plan.status)?;
    Ok(Action::await_change())
}

/// Reconciles one StatefulSet: [`observe`], [`decide`], [`act`].
pub(crate) fn reconcile(set: &StatefulSet, ctx: &Ctx) -> Result<Action, Error> {
    let observed = observe(set, ctx)?;
    let plan = decide(set, &observed);
    act(set, plan, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(replicas: i32, extra: Value) -> StatefulSet {
        let mut v = json!({"metadata": {"name": "db", "namespace": "default", "uid": "u", "generation": 2},
            "spec": {"replicas": replicas, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {}}]}});
        if let (Some(spec), Value::Object(more)) = (v["spec"].as_object_mut(), extra) {
            spec.extend(more);
        }
        serde_json::from_value(v).unwrap()
    }

    fn pod(s: &StatefulSet, o: i64, phase: &str, ready: bool, revision: Option<&str>) -> Pod {
        let rev = revision.map(str::to_string).unwrap_or_else(|| update_revision(s));
        serde_json::from_value(json!({"metadata": {"name": format!("db-{o}"), "namespace": "default",
            "labels": {REVISION_LABEL: rev}},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
        .unwrap()
    }

    fn observed(pods: Vec<Pod>, claims: &[&str]) -> Observed {
        Observed { pods, claims: claims.iter().map(|c| c.to_string()).collect() }
    }

    #[test]
    fn ordered_ready_makes_one_pod_at_a_time_after_its_claim_and_the_ones_before_it() {
        let s = set(3, json!({}));
        assert_eq!(
            decide(&s, &observed(vec![], &[])).steps,
            [Step::CreateClaim { template: "data".into(), ordinal: 0 }, Step::CreatePod(0)]
        );
        let starting = observed(vec![pod(&s, 0, "Pending", false, None)], &["data-db-0"]);
        assert_eq!(decide(&s, &starting).steps, [], "db-1 waits for db-0 to be Running and Ready");
        let up = observed(vec![pod(&s, 0, "Running", true, None)], &["data-db-0", "data-db-1"]);
        assert_eq!(decide(&s, &up).steps, [Step::CreatePod(1)], "the claim is kept from before");
        let parallel = set(3, json!({"podManagementPolicy": "Parallel"}));
        assert_eq!(
            decide(&parallel, &observed(vec![], &["data-db-0", "data-db-1", "data-db-2"])).steps,
            [Step::CreatePod(0), Step::CreatePod(1), Step::CreatePod(2)]
        );
        let huge = set(i32::MAX, json!({"podManagementPolicy": "Parallel", "volumeClaimTemplates": []}));
        let steps = decide(&huge, &observed(vec![], &[])).steps;
        assert_eq!(steps.len(), crate::controllers::replicasets::BURST_REPLICAS, "a burst per sync, not int32 max");
    }

    #[test]
    fn scale_down_goes_from_the_highest_ordinal_one_at_a_time_and_failed_pods_are_remade() {
        let s = set(1, json!({}));
        let three = observed(
            vec![
                pod(&s, 0, "Running", true, None),
                pod(&s, 1, "Running", true, None),
                pod(&s, 2, "Running", true, None),
            ],
            &[],
        );
        assert_eq!(decide(&s, &three).steps, [Step::DeletePod { name: "db-2".into(), claims: false }]);
        let mut going = pod(&s, 2, "Running", true, None);
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH));
        let waiting = observed(vec![pod(&s, 0, "Running", true, None), pod(&s, 1, "Running", true, None), going], &[]);
        assert_eq!(decide(&s, &waiting).steps, [], "db-1 waits for db-2 to be gone");
        let failed = observed(vec![pod(&s, 0, "Failed", false, None)], &["data-db-0"]);
        assert_eq!(decide(&s, &failed).steps, [Step::DeletePod { name: "db-0".into(), claims: false }]);
        let scaled =
            set(0, json!({"persistentVolumeClaimRetentionPolicy": {"whenScaled": "Delete", "whenDeleted": "Retain"}}));
        let one = observed(vec![pod(&scaled, 0, "Running", true, None)], &["data-db-0"]);
        assert_eq!(decide(&scaled, &one).steps, [Step::DeletePod { name: "db-0".into(), claims: true }]);
    }

    #[test]
    fn a_rolling_update_replaces_the_highest_old_pod_down_to_the_partition() {
        let s = set(3, json!({}));
        let old = |o| pod(&s, o, "Running", true, Some("db-old"));
        let plan = decide(&s, &observed(vec![old(0), old(1), old(2)], &[]));
        assert_eq!(plan.steps, [Step::DeletePod { name: "db-2".into(), claims: false }]);
        assert_eq!(
            plan.status.current_revision.as_deref(),
            Some(update_revision(&s).as_str()),
            "first sync: none before"
        );
        let partial = set(3, json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}));
        let old = |o| pod(&partial, o, "Running", true, Some("db-old"));
        let new = pod(&partial, 2, "Running", true, None);
        assert_eq!(decide(&partial, &observed(vec![old(0), old(1), new], &[])).steps, [], "below the partition stays");
        let on_delete = set(3, json!({"updateStrategy": {"type": "OnDelete"}}));
        let old = |o| pod(&on_delete, o, "Running", true, Some("db-old"));
        assert_eq!(decide(&on_delete, &observed(vec![old(0), old(1), old(2)], &[])).steps, []);
        let s = set(2, json!({}));
        let done =
            decide(&s, &observed(vec![pod(&s, 0, "Running", true, None), pod(&s, 1, "Running", true, None)], &[]));
        assert_eq!(done.status.updated_replicas, Some(2));
        assert_eq!(done.status.current_revision, done.status.update_revision);
        assert_eq!((done.status.replicas, done.status.ready_replicas), (2, Some(2)));
    }
}
