//! The Deployment controller: one ReplicaSet per pod template (named by the template's hash, the
//! `pod-template-hash` label), rolled out with `RollingUpdate` (`maxSurge`, `maxUnavailable`,
//! where available means Ready, which includes sidecars' readiness) or `Recreate` (old pods gone
//! before new ones start), and the Deployment's status and conditions.
//!
//! A reconcile [`observe`]s the Deployment's ReplicaSets, [`decide`]s a [`Plan`] (a pure
//! function of the Deployment, its ReplicaSets and the time) and [`act`]s on it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use podvisor_objects::kinds::Resource;
use serde_json::json;

use super::{
    Action, Ctx, Error, encode, from_template, involved, key_of, owned, owned_count, owner_ref, template_hash,
};
use crate::store::{Key, StoreError};

const COMPONENT: &str = "deployment-controller";
const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";

/// Resolves an int-or-percent (`default` when absent) against `total`, rounding a percentage
/// up or down; an integer below 0 is 0, and a string that is not a percentage is 0%.
fn resolve(v: Option<&IntOrString>, default: &str, total: i64, up: bool) -> i64 {
    let percent = |s: &str| s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()).unwrap_or(0);
    let pct = match v {
        Some(IntOrString::Int(n)) => return i64::from(*n).max(0),
        Some(IntOrString::String(s)) => percent(s),
        None => percent(default),
    };
    let x = total.saturating_mul(pct);
    if up { x.saturating_add(99) / 100 } else { x / 100 }
}

/// A ReplicaSet's revision (its `deployment.kubernetes.io/revision` annotation; 0 without one).
fn revision(rs: &ReplicaSet) -> i64 {
    let annotations = rs.metadata.annotations.as_ref();
    annotations.and_then(|a| a.get(REVISION)).and_then(|r| r.parse().ok()).unwrap_or(0)
}

/// What the Deployment controller reads of one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rs {
    /// Its name.
    name: String,
    /// `spec.replicas` (0 when absent).
    replicas: i64,
    /// `status.replicas`.
    current: i64,
    /// `status.readyReplicas`.
    ready: i64,
    /// `status.availableReplicas`.
    available: i64,
    /// Its revision.
    revision: i64,
    /// Whether its `pod-template-hash` is the Deployment's template's.
    new: bool,
}

impl Rs {
    /// What is read of `rs`, for a Deployment whose template has `hash`.
    fn of(rs: &ReplicaSet, hash: &str) -> Rs {
        let status = rs.status.as_ref();
        let labels = rs.metadata.labels.as_ref();
        Rs {
            name: rs.metadata.name.clone().unwrap_or_default(),
            replicas: i64::from(rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)),
            current: i64::from(status.map_or(0, |s| s.replicas)),
            ready: i64::from(status.and_then(|s| s.ready_replicas).unwrap_or(0)),
            available: i64::from(status.and_then(|s| s.available_replicas).unwrap_or(0)),
            revision: revision(rs),
            new: labels.and_then(|l| l.get(HASH_LABEL)).is_some_and(|h| h == hash),
        }
    }
}

/// What the store says about one Deployment besides the Deployment itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observed {
    /// The `pod-template-hash` of the Deployment's template.
    pub hash: String,
    /// The ReplicaSets it controls, in the store's order (by name).
    pub replica_sets: Vec<ReplicaSet>,
    /// How many pods its ReplicaSets of other templates still control (read for `Recreate`
    /// only).
    pub old_pods: usize,
}

/// Hashes the template of `d` and reads the ReplicaSets it controls and, for `Recreate`, the
/// pods of its old ones.
pub(crate) fn observe(d: &Deployment, ctx: &Ctx) -> Result<Observed, Error> {
    let namespace = d.metadata.namespace.as_deref().unwrap_or("");
    let uid = d.metadata.uid.as_deref().unwrap_or("");
    let key = key_of(Resource::Deployments, &d.metadata);
    let hash = template_hash(&d.spec.as_ref().map(|s| encode(&key, &s.template)).transpose()?.unwrap_or_default());
    let replica_sets: Vec<ReplicaSet> = owned(&ctx.store, Resource::ReplicaSets, namespace, uid)?;
    let mut old_pods = 0;
    if is_recreate(d.spec.as_ref()) {
        for rs in replica_sets.iter().filter(|r| !Rs::of(r, &hash).new) {
            let rs_uid = rs.metadata.uid.as_deref().unwrap_or("");
            old_pods += owned_count(&ctx.store, Resource::Pods, namespace, rs_uid);
        }
    }
    Ok(Observed { hash, replica_sets, old_pods })
}

/// Whether the Deployment's strategy is `Recreate`.
fn is_recreate(spec: Option<&DeploymentSpec>) -> bool {
    spec.and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref()) == Some("Recreate")
}

/// A ReplicaSet a plan creates.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NewReplicaSet {
    /// Its name, `<deployment>-<hash>`.
    pub name: String,
    /// Its `spec.replicas` at creation.
    pub replicas: i64,
    /// The object.
    pub object: ReplicaSet,
}

/// A change of one ReplicaSet's `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scale {
    /// The ReplicaSet.
    pub name: String,
    /// Its replicas now.
    pub from: i64,
    /// Its replicas after.
    pub to: i64,
}

/// What one reconcile of a Deployment does, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// The ReplicaSet of the current template, when there is none yet.
    pub create: Option<NewReplicaSet>,
    /// The ReplicaSets scaled (each with a `ScalingReplicaSet` event).
    pub scales: Vec<Scale>,
    /// The revision annotation of the Deployment (its new ReplicaSet's).
    pub revision: String,
    /// An older ReplicaSet of the current template that is new again (`kubectl rollout
    /// undo`): it takes this revision, after every other.
    pub promote: Option<(String, i64)>,
    /// The Deployment's status.
    pub status: DeploymentStatus,
}

/// A condition of the Deployment, keeping the times of the one it replaces: the transition
/// time while the status is the same, the update time while the reason is too.
fn condition(
    previous: &[DeploymentCondition],
    now: Timestamp,
    ty: &str,
    ok: bool,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    condition_of(previous, now, ty, if ok { "True" } else { "False" }, reason, message)
}

/// [`condition`] with any status (`Unknown` for a paused rollout).
fn condition_of(
    previous: &[DeploymentCondition],
    now: Timestamp,
    ty: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let old = previous.iter().find(|c| c.type_ == ty);
    let since = old.filter(|c| c.status == status).and_then(|c| c.last_transition_time.clone());
    let same = old.is_some_and(|c| c.status == status && c.reason.as_deref() == Some(reason));
    let updated = if same { old.and_then(|c| c.last_update_time.clone()) } else { None };
    DeploymentCondition {
        type_: ty.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_transition_time: Some(since.unwrap_or(Time(now))),
        last_update_time: Some(updated.unwrap_or(Time(now))),
    }
}

/// A count as the status holds it (an int32), saturating.
fn int32(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

/// Decides what to do with `d`, given what [`observe`] read (its template's hash, its
/// ReplicaSets) and the time: a pure function.
pub(crate) fn decide(d: &Deployment, observed: &Observed, now: Timestamp) -> Plan {
    let name = d.metadata.name.as_deref().unwrap_or("");
    let namespace = d.metadata.namespace.as_deref().unwrap_or("");
    let default_spec = DeploymentSpec::default();
    let spec = d.spec.as_ref().unwrap_or(&default_spec);
    let desired = i64::from(spec.replicas.unwrap_or(1).max(0));
    let hash = &observed.hash;
    let by_name: Vec<Rs> = observed.replica_sets.iter().map(|r| Rs::of(r, hash)).collect();
    let mut rss = by_name.clone();
    rss.sort_by_key(|r| r.revision);
    let recreate = is_recreate(Some(spec));
    let paused = spec.paused == Some(true);
    let old: Vec<&Rs> = rss.iter().filter(|r| !r.new).collect();
    let mut create = None;
    let newest = rss.iter().map(|r| r.revision).max().unwrap_or(0);
    let mut promote = None;
    let new = match rss.iter().find(|r| r.new) {
        Some(r) if !paused && r.revision < newest => {
            // The template went back to an older ReplicaSet's: it is the newest revision again.
            let rev = newest.saturating_add(1);
            promote = Some((r.name.clone(), rev));
            Rs { revision: rev, ..r.clone() }
        }
        Some(r) => r.clone(),
        // A paused Deployment makes no new ReplicaSet: its rollout waits for the resume.
        None if paused => rss.last().cloned().unwrap_or(Rs {
            name: String::new(),
            replicas: 0,
            current: 0,
            ready: 0,
            available: 0,
            revision: 0,
            new: true,
        }),
        None => {
            let rs_name = format!("{name}-{hash}");
            let start = if old.is_empty() && !recreate { desired } else { 0 };
            let rev = rss.iter().map(|r| r.revision).max().unwrap_or(0).saturating_add(1);
            let object = new_replica_set(d, spec, hash, &rs_name, namespace, start, rev);
            create = Some(NewReplicaSet { name: rs_name.clone(), replicas: start, object });
            Rs { name: rs_name, replicas: start, current: 0, ready: 0, available: 0, revision: rev, new: true }
        }
    };
    let mut scales = Vec::new();
    let mut scale = |r: &Rs, to: i64| {
        if r.replicas != to {
            scales.push(Scale { name: r.name.clone(), from: r.replicas, to });
        }
    };
    let strategy = spec.strategy.as_ref().and_then(|s| s.rolling_update.as_ref());
    let max_unavailable = resolve(strategy.and_then(|s| s.max_unavailable.as_ref()), "25%", desired, false);
    if paused {
        // Only scaling goes on while paused: the difference goes to the newest ReplicaSet that
        // runs pods (the controller's proportional scaling, for the usual single one).
        let total = rss.iter().map(|r| r.replicas).fold(0, i64::saturating_add);
        let target = rss.iter().rev().find(|r| r.replicas > 0).or(rss.last());
        if let Some(r) = target.filter(|_| total != desired) {
            scale(r, r.replicas.saturating_add(desired.saturating_sub(total)).max(0));
        }
    } else if recreate {
        for r in &old {
            scale(r, 0);
        }
        if observed.old_pods == 0 {
            scale(&new, desired);
        }
    } else {
        let surge = resolve(strategy.and_then(|s| s.max_surge.as_ref()), "25%", desired, true);
        let mut unavailable = max_unavailable;
        if surge == 0 && unavailable == 0 {
            unavailable = 1;
        }
        let all = rss.iter().map(|r| r.replicas).fold(0, i64::saturating_add)
            + if create.is_some() { new.replicas } else { 0 };
        let cur = new.replicas;
        let room = desired.saturating_add(surge).saturating_sub(all).max(0);
        let target = if cur > desired { desired } else { desired.min(cur.saturating_add(room)) };
        scale(&new, target);
        let available = rss.iter().map(|r| r.available).fold(0, i64::saturating_add);
        let mut can_remove = available.saturating_sub(desired.saturating_sub(unavailable)).max(0);
        for r in &old {
            let unhealthy = r.replicas.saturating_sub(r.available).max(0);
            let cut = r.replicas.min(unhealthy.saturating_add(can_remove));
            can_remove -= cut.saturating_sub(unhealthy).max(0);
            scale(r, r.replicas - cut);
        }
    }
    // The status from the ReplicaSets as the plan leaves them: scaling changes no status.
    let mut after = by_name;
    if create.is_some() {
        after.push(new.clone());
        after.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let sum = |f: fn(&Rs) -> i64| after.iter().map(f).fold(0, i64::saturating_add);
    let new_now = after.iter().find(|r| r.new).unwrap_or(&new);
    let available = sum(|r| r.available);
    let max_unavailable = if recreate { 0 } else { max_unavailable };
    let has_min = available >= desired.saturating_sub(max_unavailable);
    let old_left = after.iter().filter(|r| !r.new).map(|r| r.current).fold(0, i64::saturating_add);
    let complete = new_now.available >= desired && old_left == 0;
    let rs_name = &new_now.name;
    let previous = d.status.as_ref().and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let cond = |ty: &str, ok: bool, reason: &str, message: String| condition(previous, now, ty, ok, reason, message);
    let available_cond = if has_min {
        cond("Available", true, "MinimumReplicasAvailable", "Deployment has minimum availability.".into())
    } else {
        cond("Available", false, "MinimumReplicasUnavailable", "Deployment does not have minimum availability.".into())
    };
    let progressing = if paused {
        condition_of(previous, now, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused".into())
    } else if complete {
        cond(
            "Progressing",
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet {rs_name:?} has successfully progressed."),
        )
    } else {
        cond("Progressing", true, "ReplicaSetUpdated", format!("ReplicaSet {rs_name:?} is progressing."))
    };
    let unavailable = desired.saturating_sub(available).max(0);
    let status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(int32(sum(|r| r.current))),
        updated_replicas: Some(int32(new_now.current)),
        ready_replicas: Some(int32(sum(|r| r.ready))),
        available_replicas: Some(int32(available)),
        unavailable_replicas: (unavailable > 0).then(|| int32(unavailable)),
        conditions: Some(vec![available_cond, progressing]),
        ..Default::default()
    };
    let revision = match &promote {
        Some((_, rev)) => *rev,
        None if paused => newest.max(new_now.revision),
        None => new_now.revision,
    };
    Plan { create, scales, revision: revision.to_string(), promote, status }
}

/// The ReplicaSet of the Deployment's template: its metadata, labels and selector with the
/// template's hash, `start` replicas, and revision `rev`.
fn new_replica_set(
    d: &Deployment,
    spec: &DeploymentSpec,
    hash: &str,
    rs_name: &str,
    namespace: &str,
    start: i64,
    rev: i64,
) -> ReplicaSet {
    let labels = BTreeMap::from([(HASH_LABEL.to_string(), hash.to_string())]);
    let mut metadata = from_template(
        spec.template.metadata.as_ref(),
        rs_name,
        namespace,
        &labels,
        owner_ref(Resource::Deployments, &d.metadata),
    );
    metadata.annotations = Some(replica_set_annotations(d, rev));
    let mut template = spec.template.clone();
    let template_labels = template.metadata.get_or_insert_default().labels.get_or_insert_default();
    template_labels.insert(HASH_LABEL.into(), hash.into());
    let mut selector = spec.selector.clone();
    selector.match_labels.get_or_insert_default().insert(HASH_LABEL.into(), hash.into());
    ReplicaSet {
        metadata,
        spec: Some(ReplicaSetSpec {
            replicas: Some(int32(start)),
            selector,
            template: Some(template),
            ..Default::default()
        }),
        status: None,
    }
}

/// The annotations a Deployment gives its new ReplicaSet: its own (`kubernetes.io/change-cause`
/// among them, which `kubectl rollout history` shows) but what only the Deployment has, and
/// the revision.
fn replica_set_annotations(d: &Deployment, rev: i64) -> BTreeMap<String, String> {
    let mut a = d.metadata.annotations.clone().unwrap_or_default();
    a.retain(|k, _| {
        k != "kubectl.kubernetes.io/last-applied-configuration" && !k.starts_with("deployment.kubernetes.io/")
    });
    a.insert(REVISION.to_string(), rev.to_string());
    a
}

/// Applies `plan` to `d`: creates its new ReplicaSet, scales its ReplicaSets (recording
/// `ScalingReplicaSet`) and writes its revision and status.
pub(crate) fn act(d: &Deployment, plan: Plan, ctx: &Ctx) -> Result<Action, Error> {
    let key = key_of(Resource::Deployments, &d.metadata);
    let about = involved(Resource::Deployments, &d.metadata);
    let namespace = key.namespace.as_str();
    let scaled = |name: &str, from: i64, to: i64| {
        let dir = if to > from { "up" } else { "down" };
        let msg = format!("Scaled {dir} replica set {name} from {from} to {to}");
        ctx.recorder.record(&about, "Normal", "ScalingReplicaSet", &msg, COMPONENT);
    };
    if let Some(new) = plan.create {
        let rs_key = Key::new(Resource::ReplicaSets, namespace, &new.name);
        let created = serde_json::to_value(&new.object)
            .map_err(|e| e.to_string())
            .and_then(|rs| ctx.store.create(Resource::ReplicaSets, rs).map_err(|e| e.to_string()));
        match created {
            Ok(_) if new.replicas > 0 => scaled(&new.name, 0, new.replicas),
            Ok(_) => {}
            // Nothing else is done before the new ReplicaSet is there.
            Err(message) => return Err(Error::Create { key: rs_key, message }),
        }
    }
    let mut first_error = Ok(());
    if let Some((name, rev)) = &plan.promote {
        let rs_key = Key::new(Resource::ReplicaSets, namespace, name);
        let annotations = json!(replica_set_annotations(d, *rev));
        let promoted = ctx.store.update::<StoreError>(&rs_key, |v| {
            for (k, value) in annotations.as_object().into_iter().flatten() {
                v["metadata"]["annotations"][k] = value.clone();
            }
            Ok(())
        });
        match promoted {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => first_error = Err(Error::store("setting the revision of", &rs_key, e)),
        }
    }
    for s in &plan.scales {
        let rs_key = Key::new(Resource::ReplicaSets, namespace, &s.name);
        let updated = ctx.store.update::<StoreError>(&rs_key, |v| {
            v["spec"]["replicas"] = json!(s.to);
            Ok(())
        });
        match updated {
            Ok(_) => scaled(&s.name, s.from, s.to),
            // Gone meanwhile: its removal reconciles the Deployment again.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => first_error = first_error.and(Err(Error::store("scaling", &rs_key, e))),
        }
    }
    let status = encode(&key, &plan.status)?;
    let written = ctx.store.update::<StoreError>(&key, |v| {
        v["metadata"]["annotations"][REVISION] = json!(plan.revision);
        v["status"] = status;
        Ok(())
    });
    match written {
        Ok(_) | Err(StoreError::NotFound(_)) => {}
        Err(e) => first_error = first_error.and(Err(Error::store("writing the status of", &key, e))),
    }
    first_error.map(|()| Action::await_change())
}

/// Reconciles one Deployment: [`observe`], [`decide`], [`act`].
pub(crate) fn reconcile(d: &Deployment, ctx: &Ctx) -> Result<Action, Error> {
    let observed = observe(d, ctx)?;
    let plan = decide(d, &observed, Timestamp::now());
    act(d, plan, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn percentages_round_as_the_controller_does() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(resolve(None, "25%", 3, true), 1);
        assert_eq!(resolve(None, "25%", 3, false), 0);
        assert_eq!(resolve(Some(&IntOrString::Int(2)), "25%", 3, false), 2);
        assert_eq!(resolve(Some(&pct("50%")), "25%", 5, true), 3);
        assert_eq!(resolve(Some(&pct("5")), "25%", 5, true), 0, "a string without % is 0%");
        assert_eq!(resolve(Some(&IntOrString::Int(-3)), "25%", 5, true), 0);
        assert_eq!(resolve(Some(&pct("9223372036854775807%")), "25%", i64::from(i32::MAX), true), i64::MAX / 100);
        assert_ne!(template_hash(&json!({"a": 1})), template_hash(&json!({"a": 2})));
    }

    fn deployment(replicas: i64, strategy: Value, image: &str) -> Deployment {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "default", "uid": "d-1", "generation": 7},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}}, "strategy": strategy,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}),
        )
        .unwrap()
    }

    fn hash_of(d: &Deployment) -> String {
        template_hash(&serde_json::to_value(&d.spec.as_ref().unwrap().template).unwrap())
    }

    /// What `observe` reads for `d`: its hash, these ReplicaSets and old pods.
    fn seen(d: &Deployment, replica_sets: Vec<ReplicaSet>, old_pods: usize) -> Observed {
        Observed { hash: hash_of(d), replica_sets, old_pods }
    }

    /// A ReplicaSet of the Deployment: its hash, revision, `spec.replicas` and available (and
    /// ready, and current) replicas.
    fn rs(hash: &str, revision: i64, replicas: i64, available: i64) -> ReplicaSet {
        serde_json::from_value(json!({"metadata": {"name": format!("web-{hash}"), "namespace": "default",
                "labels": {"app": "web", "pod-template-hash": hash},
                "annotations": {REVISION: revision.to_string()}},
            "spec": {"replicas": replicas, "selector": {}},
            "status": {"replicas": replicas, "readyReplicas": available, "availableReplicas": available}}))
        .unwrap()
    }

    fn scales(plan: &Plan) -> Vec<(String, i64, i64)> {
        plan.scales.iter().map(|s| (s.name.clone(), s.from, s.to)).collect()
    }

    fn conditions(plan: &Plan) -> Vec<(String, String, String, String)> {
        let all = plan.status.conditions.iter().flatten();
        let text = |s: &Option<String>| s.clone().unwrap_or_default();
        all.map(|c| (c.type_.clone(), c.status.clone(), text(&c.reason), text(&c.message))).collect()
    }

    /// A new template rolls out within maxSurge 1 and maxUnavailable 1 of 4 replicas: the new
    /// ReplicaSet is created with the next revision and scaled up by the surge while the old
    /// one is scaled down by what may be unavailable; then step by step as pods become
    /// available, until the old one is gone and the rollout is complete.
    #[test]
    fn a_rolling_update_scales_the_new_replicaset_up_and_the_old_down_within_surge_and_unavailability() {
        let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
        let before = deployment(4, rolling.clone(), "busybox:1");
        let d = deployment(4, rolling, "busybox:2");
        let (old, new) = (hash_of(&before), hash_of(&d));
        assert_ne!(old, new);
        let now = Timestamp::now();
        let observed = seen(&d, vec![rs(&old, 1, 4, 4)], 4);
        let plan = decide(&d, &observed, now);
        let created = plan.create.as_ref().expect("the new template's ReplicaSet");
        assert_eq!((created.name.as_str(), created.replicas), (format!("web-{new}").as_str(), 0));
        let object = serde_json::to_value(&created.object).unwrap();
        assert_eq!(object["metadata"]["annotations"], json!({REVISION: "2"}));
        assert_eq!(object["metadata"]["labels"], json!({"app": "web", "pod-template-hash": new}));
        assert_eq!(object["spec"]["selector"]["matchLabels"], json!({"app": "web", "pod-template-hash": new}));
        assert_eq!(object["spec"]["template"]["metadata"]["labels"]["pod-template-hash"], json!(new));
        assert_eq!(object["metadata"]["ownerReferences"][0]["uid"], "d-1");
        assert_eq!(scales(&plan), [(format!("web-{new}"), 0, 1), (format!("web-{old}"), 4, 3)]);
        assert_eq!(plan.revision, "2");
        assert_eq!(plan.status.observed_generation, Some(7));
        assert_eq!(
            (plan.status.replicas, plan.status.updated_replicas, plan.status.available_replicas),
            (Some(4), Some(0), Some(4))
        );
        assert_eq!(plan.status.unavailable_replicas, None);
        assert_eq!(conditions(&plan)[1].2, "ReplicaSetUpdated");
        assert_eq!(conditions(&plan)[1].3, format!("ReplicaSet \"web-{new}\" is progressing."));

        // The new pod is not available yet: 3 old + 1 new = 4, one more may surge; none of the
        // 3 available old pods may go (4 - 1 must stay available).
        let observed = seen(&d, vec![rs(&old, 1, 3, 3), rs(&new, 2, 1, 0)], 3);
        let plan = decide(&d, &observed, now);
        assert!(plan.create.is_none());
        assert_eq!(scales(&plan), [(format!("web-{new}"), 1, 2)]);
        assert_eq!(plan.status.unavailable_replicas, Some(1));
        assert_eq!(conditions(&plan)[0].2, "MinimumReplicasAvailable", "3 of 4 available is the minimum");

        // Both new pods available: 2 of the old may go.
        let observed = seen(&d, vec![rs(&old, 1, 3, 3), rs(&new, 2, 2, 2)], 3);
        assert_eq!(scales(&decide(&d, &observed, now)), [(format!("web-{old}"), 3, 1)]);

        // All new pods available and no old pod left: complete.
        let observed = seen(&d, vec![rs(&old, 1, 0, 0), rs(&new, 2, 4, 4)], 0);
        let plan = decide(&d, &observed, now);
        assert!(plan.scales.is_empty());
        assert_eq!(
            conditions(&plan),
            [
                (
                    "Available".into(),
                    "True".into(),
                    "MinimumReplicasAvailable".into(),
                    "Deployment has minimum availability.".into()
                ),
                (
                    "Progressing".into(),
                    "True".into(),
                    "NewReplicaSetAvailable".into(),
                    format!("ReplicaSet \"web-{new}\" has successfully progressed.")
                ),
            ]
        );
    }

    /// The first ReplicaSet starts at the full count; without any surge or unavailability
    /// allowed, one pod may still be unavailable.
    #[test]
    fn the_first_replicaset_starts_full_and_zero_surge_and_unavailability_still_move() {
        let d = deployment(
            3,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}),
            "busybox:1",
        );
        let plan = decide(&d, &seen(&d, vec![], 0), Timestamp::now());
        assert_eq!(plan.create.as_ref().map(|c| c.replicas), Some(3));
        assert!(plan.scales.is_empty());
        assert_eq!(plan.revision, "1");
        assert_eq!(plan.status.unavailable_replicas, Some(3));
        assert_eq!(conditions(&plan)[0].2, "MinimumReplicasUnavailable");

        let old = hash_of(&deployment(3, Value::Null, "busybox:0"));
        let new = hash_of(&d);
        let observed = seen(&d, vec![rs(&old, 4, 3, 3), rs(&new, 5, 0, 0)], 3);
        assert_eq!(scales(&decide(&d, &observed, Timestamp::now())), [(format!("web-{old}"), 3, 2)]);
    }

    /// `Recreate`: the old ReplicaSets go to 0 first; the new one is scaled up once their pods
    /// are gone.
    #[test]
    fn recreate_scales_the_new_replicaset_up_once_the_old_pods_are_gone() {
        let d = deployment(2, json!({"type": "Recreate"}), "busybox:2");
        let old = hash_of(&deployment(2, json!({"type": "Recreate"}), "busybox:1"));
        let new = hash_of(&d);
        let now = Timestamp::now();
        let observed = seen(&d, vec![rs(&old, 1, 2, 2)], 2);
        let plan = decide(&d, &observed, now);
        assert_eq!(plan.create.as_ref().map(|c| c.replicas), Some(0));
        assert_eq!(scales(&plan), [(format!("web-{old}"), 2, 0)]);
        let observed = seen(&d, vec![rs(&old, 1, 0, 0), rs(&new, 2, 0, 0)], 1);
        assert!(decide(&d, &observed, now).scales.is_empty(), "an old pod is still there");
        let observed = seen(&d, vec![rs(&old, 1, 0, 0), rs(&new, 2, 0, 0)], 0);
        assert_eq!(scales(&decide(&d, &observed, now)), [(format!("web-{new}"), 0, 2)]);
    }

    /// A condition keeps its transition time while its status stays, and its update time while
    /// its reason does too.
    #[test]
    fn conditions_keep_their_times_while_they_hold() {
        let mut d = deployment(1, Value::Null, "busybox:1");
        let hash = hash_of(&d);
        let then: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        d.status = Some(
            serde_json::from_value(json!({"conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"},
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"}]}))
            .unwrap(),
        );
        let now: Timestamp = "2026-01-01T00:05:00Z".parse().unwrap();
        let observed = seen(&d, vec![rs(&hash, 1, 1, 1)], 0);
        let plan = decide(&d, &observed, now);
        let cs = plan.status.conditions.unwrap();
        let times = |c: &DeploymentCondition| {
            (c.last_transition_time.clone().unwrap().0, c.last_update_time.clone().unwrap().0)
        };
        assert_eq!(times(&cs[0]), (then, then), "Available: same status, same reason");
        assert_eq!(times(&cs[1]), (then, now), "Progressing: same status, new reason");
        assert_eq!(cs[1].reason.as_deref(), Some("NewReplicaSetAvailable"));
    }

    /// The hash is taken over the template as the typed Deployment writes it, which is the
    /// stored form of every Deployment admission let in: a Deployment keeps its hash (and so
    /// its ReplicaSet) whether its template is read from the store or from the typed object.
    #[test]
    fn the_template_hash_of_an_admitted_deployment_is_its_stored_templates() {
        use podvisor_apiserver::admission::{self, FieldValidation};
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}, "creationTimestamp": null},
                    "spec": {"initContainers": [{"name": "proxy", "image": "envoy:1", "restartPolicy": "Always",
                                                 "startupProbe": {"tcpSocket": {"port": 9901}}}],
                             "containers": [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c", "sleep 1d"],
                                             "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                             "ports": [{"containerPort": 8080, "name": "http"}],
                                             "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                                             "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
                                             "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                             "volumes": [{"name": "data", "emptyDir": {}}],
                             "terminationGracePeriodSeconds": 5}}}});
        let stored =
            admission::admit(Resource::Deployments, d, Some("default"), FieldValidation::Strict).unwrap().object;
        let typed: Deployment = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(hash_of(&typed), template_hash(&stored["spec"]["template"]));
    }

    /// `kubectl rollout pause`: a changed template makes no new ReplicaSet and moves no pod,
    /// scaling still applies, and Progressing says the Deployment is paused.
    #[test]
    fn a_paused_deployment_scales_but_does_not_roll_out() {
        let mut d = deployment(3, json!({"type": "RollingUpdate"}), "busybox:2");
        d.spec.as_mut().unwrap().paused = Some(true);
        let plan = decide(&d, &seen(&d, vec![rs("old", 1, 2, 2)], 2), Timestamp::now());
        assert!(plan.create.is_none());
        assert_eq!(scales(&plan), [("web-old".to_string(), 2, 3)]);
        let progressing = conditions(&plan).into_iter().find(|c| c.0 == "Progressing").unwrap();
        assert_eq!((progressing.1.as_str(), progressing.2.as_str()), ("Unknown", "DeploymentPaused"));
        d.spec.as_mut().unwrap().paused = Some(false);
        assert!(decide(&d, &seen(&d, vec![rs("old", 1, 3, 3)], 3), Timestamp::now()).create.is_some(), "resumed");
    }

    /// `kubectl rollout undo`: the template of an older ReplicaSet makes it new again, with the
    /// next revision, and no ReplicaSet is created.
    #[test]
    fn an_undone_template_reuses_its_replicaset_with_the_next_revision() {
        let d = deployment(2, json!({"type": "RollingUpdate"}), "busybox:1");
        let hash = hash_of(&d);
        let plan = decide(&d, &seen(&d, vec![rs(&hash, 1, 0, 0), rs("newer", 2, 2, 2)], 2), Timestamp::now());
        assert!(plan.create.is_none());
        assert_eq!(plan.promote, Some((format!("web-{hash}"), 3)));
        assert_eq!(plan.revision, "3");
        assert!(scales(&plan).iter().any(|(n, from, to)| *n == format!("web-{hash}") && to > from));
    }
}
