//! Jobs and Deployments: the controllers that turn a template into pods on the node.
//!
//! A Job runs pods until `completions` of them succeed (`parallelism` at a time), retrying failed
//! pods with the Job controller's back-off (10 s doubling, at most 6 minutes) until
//! `backoffLimit` failures; `activeDeadlineSeconds` bounds the whole Job. A Deployment keeps
//! `replicas` pods running and replaces a pod that finishes.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use tokio::task::JoinSet;

use crate::{Node, PodHandle, new_uid};

/// How a Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// `completions` pods succeeded (condition `Complete`).
    Complete,
    /// The Job failed (condition `Failed`) with this reason and message.
    Failed {
        /// `BackoffLimitExceeded` or `DeadlineExceeded`.
        reason: String,
        /// The controller's message.
        message: String,
    },
    /// The node shut down first.
    Stopped,
}

/// The characters Kubernetes uses for generated name suffixes.
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random `len`-character suffix, as `generateName` makes.
pub fn suffix(len: usize) -> String {
    new_uid()
        .bytes()
        .filter(u8::is_ascii_hexdigit)
        .collect::<Vec<u8>>()
        .chunks(2)
        .take(len)
        .map(|c| {
            let n = c.iter().fold(0usize, |a, b| a * 16 + (*b as char).to_digit(16).unwrap_or(0) as usize);
            ALPHABET[n % ALPHABET.len()] as char
        })
        .collect()
}

fn pod_from(
    template: &PodTemplateSpec,
    name: String,
    namespace: &str,
    labels: BTreeMap<String, String>,
    owner: OwnerReference,
) -> Pod {
    let mut meta: ObjectMeta = template.metadata.clone().unwrap_or_default();
    let mut all = meta.labels.take().unwrap_or_default();
    all.extend(labels);
    meta.labels = Some(all);
    meta.name = Some(name);
    meta.namespace = Some(namespace.to_string());
    meta.owner_references = Some(vec![owner]);
    Pod { metadata: meta, spec: template.spec.clone(), status: None }
}

fn owner(kind: &str, api_version: &str, meta: &ObjectMeta, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: meta.name.clone().unwrap_or_default(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The Job controller's delay before recreating a pod after `failures` failures.
pub fn job_backoff(failures: u32) -> Duration {
    let secs = 10u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(360))
}

/// Runs a Job to its end on `node`.
pub async fn run_job(node: &Node, job: &Job) -> JobOutcome {
    let spec = job.spec.clone().unwrap_or_default();
    let name = job.metadata.name.clone().unwrap_or_default();
    let ns = job.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    // A fresh UID, as the API server assigns one on create.
    let uid = new_uid();
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as u32;
    let completions = spec.completions.map(|c| c.max(0) as u32);
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0) as u32;
    let deadline =
        spec.active_deadline_seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s.max(0) as u64));
    let labels = BTreeMap::from([
        ("batch.kubernetes.io/controller-uid".to_string(), uid.clone()),
        ("batch.kubernetes.io/job-name".to_string(), name.clone()),
        ("controller-uid".to_string(), uid.clone()),
        ("job-name".to_string(), name.clone()),
    ]);
    let owner = owner("Job", "batch/v1", &job.metadata, &uid);
    let (mut succeeded, mut failed) = (0u32, 0u32);
    let mut active: Vec<PodHandle> = Vec::new();
    let mut running: JoinSet<(String, String)> = JoinSet::new();
    let mut not_before = tokio::time::Instant::now();
    let fail = |active: &[PodHandle], reason: &str, message: &str| {
        for p in active {
            p.delete(None);
        }
        JobOutcome::Failed { reason: reason.into(), message: message.into() }
    };
    loop {
        let done = match completions {
            Some(c) => succeeded >= c,
            // Without completions, the Job is done when one pod succeeded and none runs.
            None => succeeded > 0 && active.is_empty(),
        };
        if done {
            return JobOutcome::Complete;
        }
        if node.is_stopping() {
            return JobOutcome::Stopped;
        }
        let wanted = match completions {
            Some(c) => parallelism.min(c - succeeded),
            None if succeeded > 0 => 0,
            None => parallelism,
        };
        let now = tokio::time::Instant::now();
        if (active.len() as u32) < wanted && now >= not_before {
            let pod_name = format!("{name}-{}", suffix(5));
            let pod = pod_from(&spec.template, pod_name, &ns, labels.clone(), owner.clone());
            let handle = node.run_pod(pod);
            let h = handle.clone();
            running.spawn(async move {
                let status = h.finished().await;
                (h.key(), status.phase.unwrap_or_default())
            });
            active.push(handle);
            continue;
        }
        let retry_at = ((active.len() as u32) < wanted).then_some(not_before);
        tokio::select! {
            Some(Ok((key, phase))) = running.join_next(), if !running.is_empty() => {
                active.retain(|p| p.key() != key);
                if phase == "Succeeded" {
                    succeeded += 1;
                } else {
                    failed += 1;
                    if failed > backoff_limit {
                        return fail(&active, "BackoffLimitExceeded", "Job has reached the specified backoff limit");
                    }
                    not_before = tokio::time::Instant::now() + job_backoff(failed);
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or(now)), if retry_at.is_some() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or(now)), if deadline.is_some() => {
                return fail(&active, "DeadlineExceeded", "Job was active longer than specified deadline");
            }
            _ = node.stopped() => return JobOutcome::Stopped,
        }
    }
}

/// Keeps a Deployment's `replicas` pods running until the node shuts down.
pub async fn run_deployment(node: &Node, d: &Deployment) {
    let spec = d.spec.clone().unwrap_or_default();
    let name = d.metadata.name.clone().unwrap_or_default();
    let ns = d.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let replicas = spec.replicas.unwrap_or(1).max(0) as usize;
    let hash = suffix(10);
    let rs_uid = new_uid();
    let labels = BTreeMap::from([("pod-template-hash".to_string(), hash.clone())]);
    let rs_meta = ObjectMeta { name: Some(format!("{name}-{hash}")), ..Default::default() };
    let owner = owner("ReplicaSet", "apps/v1", &rs_meta, &rs_uid);
    let mut running: JoinSet<()> = JoinSet::new();
    loop {
        if node.is_stopping() {
            return;
        }
        if running.len() < replicas {
            let pod =
                pod_from(&spec.template, format!("{name}-{hash}-{}", suffix(5)), &ns, labels.clone(), owner.clone());
            let h = node.run_pod(pod);
            running.spawn(async move {
                h.finished().await;
            });
            continue;
        }
        tokio::select! {
            _ = running.join_next(), if !running.is_empty() => {}
            _ = node.stopped() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_use_the_kubernetes_alphabet() {
        let s = suffix(5);
        assert_eq!(s.len(), 5);
        assert!(s.bytes().all(|b| ALPHABET.contains(&b)), "{s}");
    }

    #[test]
    fn job_backoff_doubles_from_ten_seconds_to_six_minutes() {
        let secs: Vec<u64> = (1..=8).map(|f| job_backoff(f).as_secs()).collect();
        assert_eq!(secs, [10, 20, 40, 80, 160, 320, 360, 360]);
    }
}
