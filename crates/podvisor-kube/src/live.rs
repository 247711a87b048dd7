//! Following on a cluster what `podvisor run --context` applied: the pods of each object (a
//! Pod by its name, a workload's by its selector), each reading of their status turned into
//! lifecycle steps ([`crate::follow::diff`]), their events, each container's log from its start,
//! and how each Pod and Job ended. Everything arrives as [`Update`]s on a channel, as it
//! happens: watches, never polling.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures_util::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, LogParams, WatchEvent, WatchParams};
use tokio::sync::mpsc::UnboundedSender;

use crate::apply::Applied;
use crate::follow::{Step, diff, event_step, is_finished};

/// What the follower saw.
#[derive(Debug, Clone)]
pub enum Update {
    /// The latest reading of a followed pod (for the pod table).
    Pod(Box<Pod>),
    /// A lifecycle step of a followed pod.
    Step {
        /// `namespace/name`.
        pod: String,
        /// Its UID.
        uid: String,
        /// The step.
        step: Step,
    },
    /// A line a container of a followed pod wrote.
    Log {
        /// `namespace/name`.
        pod: String,
        /// Its UID.
        uid: String,
        /// The container.
        container: String,
        /// The line.
        line: String,
    },
    /// A followed pod ended (`Succeeded` or `Failed`).
    Finished {
        /// `namespace/name`.
        pod: String,
        /// Its UID.
        uid: String,
        /// Its phase.
        phase: String,
    },
    /// A followed pod is gone from the API.
    Gone {
        /// Its UID.
        uid: String,
    },
    /// How an applied Pod or Job ended: its index among the applied, whether it succeeded,
    /// and in words (`Complete`, `Failed: BackoffLimitExceeded: …`).
    Outcome {
        /// Which applied object.
        index: usize,
        /// Whether it succeeded.
        ok: bool,
        /// In words.
        what: String,
    },
    /// The API could not be watched (the follower goes on trying).
    Trouble(String),
}

/// `namespace/name` of an object.
fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    format!("{}/{}", meta.namespace.as_deref().unwrap_or("default"), meta.name.as_deref().unwrap_or(""))
}

/// Watches `api` for ever: a list, then a watch from its resource version, listed again when
/// the version has expired; each object is passed to `seen` as `(object, deleted)`.
async fn watch_all<K>(api: Api<K>, params: ListParams, tx: UnboundedSender<Update>, mut seen: impl FnMut(K, bool))
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut backoff = std::time::Duration::from_millis(200);
    'relist: loop {
        let listed = match api.list(&params).await {
            Ok(l) => l,
            Err(e) => {
                let _ = tx.send(Update::Trouble(crate::one_line(&e)));
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(10));
                continue;
            }
        };
        backoff = std::time::Duration::from_millis(200);
        let mut version = listed.metadata.resource_version.clone().unwrap_or_default();
        for o in listed.items {
            seen(o, false);
        }
        loop {
            let mut wp = WatchParams::default().timeout(290);
            if let Some(l) = &params.label_selector {
                wp = wp.labels(l);
            }
            if let Some(f) = &params.field_selector {
                wp = wp.fields(f);
            }
            let stream = match api.watch(&wp, &version).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Update::Trouble(crate::one_line(&e)));
                    tokio::time::sleep(backoff).await;
                    continue 'relist;
                }
            };
            let mut stream = Box::pin(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        version = o.meta().resource_version.clone().unwrap_or(version);
                        seen(o, false);
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        version = o.meta().resource_version.clone().unwrap_or(version);
                        seen(o, true);
                    }
                    Ok(WatchEvent::Bookmark(b)) => version = b.metadata.resource_version,
                    // 410 Gone: the version has expired; anything else, start over too.
                    Ok(WatchEvent::Error(_)) | Err(_) => continue 'relist,
                }
            }
        }
    }
}

/// Whether `pod` belongs to `applied`: the Pod itself, or a pod its selector selects.
fn belongs(pod: &Pod, applied: &Applied) -> bool {
    let meta = &pod.metadata;
    if meta.namespace.as_deref().unwrap_or("default") != applied.namespace {
        return false;
    }
    if applied.is_pod() {
        return meta.name.as_deref() == Some(applied.name.as_str());
    }
    let labels = meta.labels.clone().unwrap_or_default();
    applied.selector.as_ref().is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The pods followed, by UID: the last reading, and the log streams started (container,
/// restart count).
#[derive(Default)]
struct Followed {
    pods: HashMap<String, Pod>,
    logs: HashSet<(String, String, u32)>,
    /// Events held back until the pod's status catches up with them, by pod UID.
    held: HashMap<String, Vec<Update>>,
}

/// Whether a regular container of `pod` still runs, by its last reading.
fn app_running(pod: &Pod) -> bool {
    let regular = pod.status.as_ref().and_then(|s| s.container_statuses.as_deref()).unwrap_or_default();
    regular.iter().any(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
}

/// Whether `container` is an init container of `pod` (a sidecar, when it is being stopped).
fn is_init(pod: &Pod, container: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.init_containers.as_ref()).is_some_and(|cs| cs.iter().any(|c| c.name == container))
}

/// How long an event may wait for the status that explains it.
const HOLD: std::time::Duration = std::time::Duration::from_millis(500);

/// Follows the pods of `applied` on `client` until the returned task is aborted; everything
/// goes to `tx`.
pub fn follow(client: kube::Client, applied: Vec<Applied>, tx: UnboundedSender<Update>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let namespaces: std::collections::BTreeSet<String> = applied.iter().map(|a| a.namespace.clone()).collect();
        let state = std::sync::Arc::new(std::sync::Mutex::new(Followed::default()));
        let mut tasks = Vec::new();
        for ns in namespaces {
            // Pods.
            let (client2, tx2, applied2, state2) = (client.clone(), tx.clone(), applied.clone(), state.clone());
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            tasks.push(tokio::spawn(watch_all(pods, ListParams::default(), tx.clone(), move |pod, deleted| {
                if !applied2.iter().any(|a| belongs(&pod, a)) {
                    return;
                }
                on_pod(&client2, &tx2, &state2, pod, deleted);
            })));
            // Their events.
            let (tx3, state3) = (tx.clone(), state.clone());
            let events: Api<Event> = Api::namespaced(client.clone(), &ns);
            let fields = ListParams::default().fields("involvedObject.kind=Pod");
            tasks.push(tokio::spawn(watch_all(events, fields, tx.clone(), move |e: Event, deleted| {
                if deleted {
                    return;
                }
                let uid = e.involved_object.uid.clone().unwrap_or_default();
                // Only the followed pods' own (an earlier pod of the same name has another UID).
                if !state3.lock().is_ok_and(|s| s.pods.contains_key(&uid)) {
                    return;
                }
                let pod = format!(
                    "{}/{}",
                    e.involved_object.namespace.as_deref().unwrap_or("default"),
                    e.involved_object.name.as_deref().unwrap_or("")
                );
                let step = event_step(&e);
                // A sidecar is stopped because the app ended; the event may come before the
                // status that says so, and is held until it does (or for HOLD at most).
                if let Step::Stopping { container, .. } = &step
                    && let Ok(mut s) = state3.lock()
                    && s.pods.get(&uid).is_some_and(|p| is_init(p, container) && app_running(p))
                {
                    s.held.entry(uid.clone()).or_default().push(Update::Step { pod, uid: uid.clone(), step });
                    let (state, tx) = (state3.clone(), tx3.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(HOLD).await;
                        let held = state.lock().ok().and_then(|mut s| s.held.remove(&uid)).unwrap_or_default();
                        for u in held {
                            let _ = tx.send(u);
                        }
                    });
                    return;
                }
                let _ = tx3.send(Update::Step { pod, uid, step });
            })));
            // How the Jobs end.
            let jobs_here: Vec<(usize, Applied)> =
                applied.iter().cloned().enumerate().filter(|(_, a)| a.is_job() && a.namespace == ns).collect();
            if !jobs_here.is_empty() {
                let tx4 = tx.clone();
                let mut said = HashSet::new();
                let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
                tasks.push(tokio::spawn(watch_all(jobs, ListParams::default(), tx.clone(), move |job: Job, _| {
                    let uid = job.metadata.uid.clone().unwrap_or_default();
                    let Some((index, _)) = jobs_here.iter().find(|(_, a)| a.uid == uid) else { return };
                    if let Some((ok, what)) = job_outcome(&job)
                        && said.insert(*index)
                    {
                        let _ = tx4.send(Update::Outcome { index: *index, ok, what });
                    }
                })));
            }
        }
        // The Pods' own outcomes come from their phase (`Update::Finished`).
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// How a Job ended, from its conditions: `Complete`, or `Failed: REASON: MESSAGE`.
pub fn job_outcome(job: &Job) -> Option<(bool, String)> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    let c = conditions.iter().find(|c| c.status == "True" && (c.type_ == "Complete" || c.type_ == "Failed"))?;
    if c.type_ == "Complete" {
        return Some((true, "Complete".into()));
    }
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    Some((false, format!("Failed: {}: {}", s(&c.reason), s(&c.message))))
}

fn on_pod(
    client: &kube::Client,
    tx: &UnboundedSender<Update>,
    state: &std::sync::Arc<std::sync::Mutex<Followed>>,
    pod: Pod,
    deleted: bool,
) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = key(&pod.metadata);
    let Ok(mut s) = state.lock() else { return };
    let before = s.pods.get(&uid).cloned();
    let steps = diff(before.as_ref(), &pod);
    let was_finished = before.as_ref().is_some_and(is_finished);
    s.pods.insert(uid.clone(), pod.clone());
    for step in steps {
        let log = match &step {
            Step::Started { container, attempt } => Some((container.clone(), *attempt, true)),
            Step::Exited { container, attempt, .. } => Some((container.clone(), *attempt, false)),
            _ => None,
        };
        if let Some((container, attempt, follow)) = log
            && s.logs.insert((uid.clone(), container.clone(), attempt))
        {
            let current = restart_count(&pod, &container) == attempt;
            stream_log(client, tx, &pod, &container, follow && current, !current);
        }
        let _ = tx.send(Update::Step { pod: name.clone(), uid: uid.clone(), step });
    }
    if !app_running(&pod) {
        for u in s.held.remove(&uid).unwrap_or_default() {
            let _ = tx.send(u);
        }
    }
    if is_finished(&pod) && !was_finished {
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        let _ = tx.send(Update::Finished { pod: name.clone(), uid: uid.clone(), phase });
    }
    // The reading comes after the steps it brought: whoever ends on it has seen them.
    let _ = tx.send(Update::Pod(Box::new(pod.clone())));
    if deleted {
        s.pods.remove(&uid);
        let _ = tx.send(Update::Gone { uid });
    }
}

fn restart_count(pod: &Pod, container: &str) -> u32 {
    let status = pod.status.as_ref();
    let all = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .into_iter()
        .flatten()
        .chain(status.and_then(|s| s.container_statuses.as_ref()).into_iter().flatten());
    all.into_iter().find(|c| c.name == container).map(|c| u32::try_from(c.restart_count).unwrap_or(0)).unwrap_or(0)
}

/// Streams the log of `container` (its current instance, or with `previous` the one before)
/// to `tx`, following it while it runs when `follow`.
fn stream_log(
    client: &kube::Client,
    tx: &UnboundedSender<Update>,
    pod: &Pod,
    container: &str,
    follow: bool,
    previous: bool,
) {
    let ns = pod.metadata.namespace.clone().unwrap_or_else(|| "default".into());
    let name = pod.metadata.name.clone().unwrap_or_default();
    let (uid, key) = (pod.metadata.uid.clone().unwrap_or_default(), key(&pod.metadata));
    let (api, tx, container): (Api<Pod>, _, String) =
        (Api::namespaced(client.clone(), &ns), tx.clone(), container.into());
    tokio::spawn(async move {
        let params = LogParams { container: Some(container.clone()), follow, previous, ..Default::default() };
        let stream = match api.log_stream(&name, &params).await {
            Ok(s) => s,
            Err(e) => {
                let _ = tx.send(Update::Trouble(format!("logs of {key} {container}: {}", crate::one_line(&e))));
                return;
            }
        };
        let _ = crate::each_line(stream, |line| {
            tx.send(Update::Log { pod: key.clone(), uid: uid.clone(), container: container.clone(), line }).is_ok()
        })
        .await;
    });
}

/// The labels of `applied` as a selector string (`a=b,c=d`), for kubectl-like messages.
pub fn selector_text(labels: &BTreeMap<String, String>) -> String {
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}
