//! A Job in virtual time: the Job controller's own decisions (`podvisor_cluster`'s `decide`,
//! the one `serve` and `run` use) drive simulated pods, so completions, parallelism,
//! backoffLimit with its back-off, podFailurePolicy and the deadlines play out as they would.

use std::collections::HashMap;
use std::time::Duration;

use jiff::SignedDuration;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use podvisor_cluster::controllers::jobs::{Observed, Plan, decide, write_status};
use podvisor_sim::{Behaviour, Entry, Sim, epoch};
use serde_json::{Value, json};

/// The most pods a simulated Job makes: past it, the run stops and says so.
const MAX_PODS: usize = 1000;

/// One pod of the Job.
pub struct JobPod {
    /// Its name.
    pub name: String,
    /// Its simulation.
    pub sim: Sim,
    /// When the controller made it.
    pub created: Duration,
    /// When it ended (Succeeded or Failed), at the Job's time.
    pub ended: Option<Duration>,
    deleted: bool,
}

impl JobPod {
    fn as_pod(&self, spec: &PodSpec, labels: &Value) -> Pod {
        let at = |d: Duration| Time(epoch().checked_add(d).unwrap_or(epoch()));
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some("default".into()),
                uid: Some(format!("uid-{}", self.name)),
                creation_timestamp: Some(at(self.created)),
                deletion_timestamp: self.deleted.then(|| at(self.created + self.sim.elapsed())),
                labels: serde_json::from_value(labels.clone()).ok(),
                ..Default::default()
            },
            spec: Some(spec.clone()),
            status: Some(self.sim.engine().status().clone()),
        }
    }

    /// The pod's marks at the Job's time.
    pub fn entries(&self) -> Vec<Entry> {
        self.sim.timeline().iter().map(|e| Entry { at: e.at + self.created, ..e.clone() }).collect()
    }
}

/// What the Job came to.
pub struct JobRun {
    /// Its pods, in creation order.
    pub pods: Vec<JobPod>,
    /// `Complete`, `Failed: <reason>`, or none when it had not finished within the limit.
    pub outcome: Option<String>,
    /// When it finished, or the limit.
    pub elapsed: Duration,
    /// The controller's steps (pods made and deleted, events), with their times.
    pub steps: Vec<(Duration, String)>,
}

/// Runs `job` (`name`, its pod template `spec`) for at most `limit` of virtual time, its pods'
/// containers behaving as `behaviours` say.
pub fn run(
    name: &str,
    job: &Job,
    spec: &PodSpec,
    behaviours: &HashMap<String, Vec<Behaviour>>,
    limit: Duration,
) -> anyhow::Result<JobRun> {
    let mut stored = serde_json::to_value(job)?;
    stored["metadata"]["uid"] = json!("uid-job");
    stored["metadata"]["namespace"] = json!("default");
    stored["status"] = json!({});
    let labels = json!({"batch.kubernetes.io/job-name": name, "job-name": name});
    let mut pods: Vec<JobPod> = Vec::new();
    let mut t = Duration::ZERO;
    let mut seq = 0;
    let mut steps = Vec::new();
    // Whether a pod ended in the last step: the controller has not looked since.
    let mut ended = false;
    let outcome = loop {
        let typed: Job = serde_json::from_value(stored.clone())?;
        if let Some(c) = typed
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True")
        {
            let what = if c.type_ == "Complete" {
                "Complete".to_string()
            } else {
                format!("Failed: {}", c.reason.as_deref().unwrap_or(""))
            };
            // The pods still stopping run on.
            if pods.iter().all(|p| p.sim.engine().is_finished()) || t >= limit {
                break Some(what);
            }
        }
        let observed = Observed { pods: pods.iter().map(|p| p.as_pod(spec, &labels)).collect() };
        let now = epoch().checked_add(t).unwrap_or(epoch());
        let mut requeue = None;
        let mut changed = false;
        if let Plan::Sync { create, delete, events, status, requeue: again } = decide(&typed, &observed, now) {
            requeue = again;
            changed = create > 0 || !delete.is_empty() || !events.is_empty();
            for key in &delete {
                if let Some(p) = pods.iter_mut().find(|p| p.name == key.name && !p.deleted) {
                    p.sim.delete(None);
                    p.deleted = true;
                    steps.push((t, format!("deleted pod {}", p.name)));
                }
            }
            for _ in 0..create {
                seq += 1;
                let pod = format!("{name}-{seq}");
                let mut sim = Sim::new(&pod, spec.clone(), behaviours.clone());
                sim.step_wall_clock(SignedDuration::try_from(t).unwrap_or(SignedDuration::ZERO));
                steps.push((t, format!("created pod {pod}")));
                pods.push(JobPod { name: pod, sim, created: t, ended: None, deleted: false });
            }
            steps.extend(events.iter().map(|e| (t, format!("event {}: {}", e.reason, e.message))));
            let conditions: Vec<Value> =
                status.conditions.iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
            write_status(&mut stored["status"], &status, create, &conditions);
        }
        if t >= limit {
            break None;
        }
        if pods.len() > MAX_PODS {
            steps.push((t, format!("stopped: more than {MAX_PODS} pods")));
            break None;
        }
        // On to the next thing due: a pod's step or timer, or the controller's requeue. With
        // nothing due, nothing will change.
        let next = pods
            .iter()
            .filter(|p| !p.sim.engine().is_finished())
            .filter_map(|p| p.sim.next_event().map(|d| p.created + d))
            .chain(requeue.map(|r| t + r))
            .min();
        let step = match next {
            Some(next) => next.saturating_sub(t).max(Duration::from_micros(1)).min(limit.saturating_sub(t)),
            // Nothing due: the controller looks once more after a change, then all is still.
            None if changed || ended => Duration::ZERO,
            None => break None,
        };
        t += step;
        ended = false;
        for p in &mut pods {
            p.sim.run_for(step);
            if p.ended.is_none() && p.sim.engine().is_finished() {
                ended = true;
                // The moment its sandbox went, from its own marks.
                let end = p.sim.timeline().last().map(|e| e.at).unwrap_or_default();
                p.ended = Some(p.created + end);
            }
        }
    };
    let elapsed = if outcome.is_some() { pods.iter().filter_map(|p| p.ended).max().unwrap_or(t) } else { t };
    Ok(JobRun { pods, outcome, elapsed, steps })
}
