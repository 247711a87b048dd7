//! podvisor as a client of a Kubernetes API: its own `serve`, or any cluster a kubeconfig
//! reaches. [`connect`] makes the client as kubectl would (`KUBECONFIG`, `--kubeconfig`,
//! `--context`); [`explain`] says why a pod is where it is; [`explain_target`] reads what it
//! needs from the API.

#![warn(missing_docs)]

pub mod apply;
pub mod explain;
pub mod follow;
pub mod live;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams};

pub use explain::{Explanation, explain};
pub use kube;

/// Why the API could not be reached or read.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig could not be read or has no such context.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// The API answered with an error, or could not be reached.
    #[error("{0}")]
    Api(#[from] kube::Error),
    /// What was asked for does not exist.
    #[error("{0}")]
    NotFound(String),
}

/// An API error in one line, as kubectl says it: the server's message (`Unauthorized`,
/// `pods "x" is forbidden: …`), or why it could not be reached with the causes under it.
pub fn one_line(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        kube::Error::Api(s) => s.reason.clone(),
        e => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            for _ in 0..8 {
                let Some(c) = cause else { break };
                let line = c.to_string();
                if !text.contains(&line) {
                    text.push_str(": ");
                    text.push_str(&line);
                }
                cause = c.source();
            }
            text
        }
    }
}

/// The longest line of a container's log passed on whole; a longer one comes in pieces of this
/// size (a container may print without end, and a line is kept in memory until its end).
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// Calls `each` with every line of a log `stream` (without its newline; a line longer than
/// [`MAX_LOG_LINE`] in pieces), until the stream ends or `each` returns false.
pub async fn each_line(
    stream: impl futures_util::AsyncBufRead,
    mut each: impl FnMut(String) -> bool,
) -> std::io::Result<()> {
    use futures_util::AsyncBufReadExt;
    let mut stream = Box::pin(stream);
    let mut line: Vec<u8> = Vec::new();
    let mut give = |line: &mut Vec<u8>| each(String::from_utf8_lossy(&std::mem::take(line)).into_owned());
    loop {
        let buf = stream.fill_buf().await?;
        if buf.is_empty() {
            if !line.is_empty() {
                give(&mut line);
            }
            return Ok(());
        }
        let n = buf.len();
        for &b in buf.iter() {
            if b == b'\n' {
                if !give(&mut line) {
                    return Ok(());
                }
            } else {
                line.push(b);
                if line.len() >= MAX_LOG_LINE && !give(&mut line) {
                    return Ok(());
                }
            }
        }
        stream.consume_unpin(n);
    }
}

/// Where to find the API: a kubeconfig file (else `KUBECONFIG`, else `~/.kube/config`) and a
/// context in it (else its current one).
#[derive(Debug, Clone, Default)]
pub struct Target {
    /// The kubeconfig file.
    pub kubeconfig: Option<std::path::PathBuf>,
    /// The context.
    pub context: Option<String>,
}

/// A client for an API, and what it was made from, for messages.
#[derive(Clone)]
pub struct Connection {
    /// The client.
    pub client: kube::Client,
    /// The context's default namespace.
    pub namespace: String,
    /// The server's address.
    pub server: String,
    /// The context's name.
    pub context: String,
}

impl Connection {
    /// `e` in one line that names the context and the server, as a user needs it to tell
    /// which cluster refused what.
    pub fn say(&self, e: &ClientError) -> String {
        match e {
            ClientError::NotFound(m) => m.clone(),
            ClientError::Config(m) => format!("kubeconfig: {m}"),
            ClientError::Api(e @ kube::Error::Api(_)) => {
                format!("context {:?} ({}): {}", self.context, self.server, one_line(e))
            }
            ClientError::Api(e) => {
                format!("context {:?}: cannot reach the API at {}: {}", self.context, self.server, one_line(e))
            }
        }
    }
}

/// A client for the API `target` names, as kubectl would make it (`KUBECONFIG`, client
/// certificates, tokens, exec credential plugins, CA data).
pub async fn connect(target: &Target) -> Result<Connection, ClientError> {
    let options = kube::config::KubeConfigOptions { context: target.context.clone(), ..Default::default() };
    let kubeconfig = match &target.kubeconfig {
        Some(path) => kube::config::Kubeconfig::read_from(path)
            .map_err(|e| ClientError::Config(format!("{}: {e}", path.display())))?,
        None => kube::config::Kubeconfig::read().map_err(|e| ClientError::Config(e.to_string()))?,
    };
    let context = target.context.clone().or_else(|| kubeconfig.current_context.clone()).unwrap_or_default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| ClientError::Config(format!("context {context:?}: {e}")))?;
    let namespace = config.default_namespace.clone();
    let server = config.cluster_url.to_string();
    let client = kube::Client::try_from(config).map_err(ClientError::Api)?;
    Ok(Connection { client, namespace, server, context })
}

/// The events of `pod` (of this very pod: an earlier one of the same name is left out).
pub async fn pod_events(client: &kube::Client, namespace: &str, pod: &Pod) -> Result<Vec<Event>, ClientError> {
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.name={name}");
    let uid = pod.metadata.uid.clone();
    Ok(events
        .list(&ListParams::default().fields(&selector))
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("Pod") && (uid.is_none() || e.involved_object.uid == uid))
        .collect())
}

/// Explains `what` (`POD`, `pod/NAME` or `job/NAME`) in `namespace`: a pod, or a Job and each
/// of its pods that has not ended (its last pod when all have).
pub async fn explain_target(
    client: &kube::Client,
    namespace: &str,
    what: &str,
) -> Result<Vec<Explanation>, ClientError> {
    let now = jiff::Timestamp::now();
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let (kind, name) = what.split_once('/').unwrap_or(("pod", what));
    match kind {
        "pod" | "pods" | "po" => {
            let pod =
                pods.get_opt(name).await?.ok_or_else(|| ClientError::NotFound(format!("pods {name:?} not found")))?;
            let events = pod_events(client, namespace, &pod).await?;
            Ok(vec![explain(&pod, &events, now)])
        }
        "job" | "jobs" => {
            let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
            let job = jobs
                .get_opt(name)
                .await?
                .ok_or_else(|| ClientError::NotFound(format!("jobs.batch {name:?} not found")))?;
            let status = job.status.clone().unwrap_or_default();
            let done = status
                .conditions
                .iter()
                .flatten()
                .find(|c| matches!(c.type_.as_str(), "Complete" | "Failed") && c.status == "True");
            let headline = match done {
                Some(c) => format!(
                    "job {name} is {}{}.",
                    c.type_,
                    c.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
                ),
                None => format!(
                    "job {name} is running: {} active, {} succeeded, {} failed.",
                    status.active.unwrap_or(0),
                    status.succeeded.unwrap_or(0),
                    status.failed.unwrap_or(0)
                ),
            };
            let mut out = vec![Explanation { headline, details: Vec::new() }];
            let mut list =
                pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"))).await?.items;
            list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let live: Vec<&Pod> = list
                .iter()
                .filter(|p| {
                    !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
                        || p.metadata.deletion_timestamp.is_some()
                })
                .collect();
            let shown: Vec<&Pod> = if live.is_empty() { list.last().into_iter().collect() } else { live };
            for pod in shown {
                let events = pod_events(client, namespace, pod).await?;
                out.push(explain(pod, &events, now));
            }
            Ok(out)
        }
        other => Err(ClientError::NotFound(format!("explain works on pods and jobs, not {other:?}"))),
    }
}

/// The workloads of `namespace` (every namespace when none) as lint reads them: Deployments,
/// StatefulSets, DaemonSets, CronJobs, the Jobs no CronJob made, and the Pods no controller
/// made (a controller's pods are linted through its template). Each with its namespace.
pub async fn workloads(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<Vec<(String, podvisor_manifest::Object)>, ClientError> {
    use podvisor_manifest::Object;
    fn api<K>(client: &kube::Client, namespace: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let lp = ListParams::default();
    let ns_of =
        |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| m.namespace.clone().unwrap_or_default();
    let owned = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.owner_references.as_ref().is_some_and(|o| !o.is_empty())
    };
    let mut out = Vec::new();
    for o in api::<Deployment>(client, namespace).list(&lp).await?.items {
        out.push((ns_of(&o.metadata), Object::Deployment(Box::new(o))));
    }
    for o in api::<StatefulSet>(client, namespace).list(&lp).await?.items {
        out.push((ns_of(&o.metadata), Object::StatefulSet(Box::new(o))));
    }
    for o in api::<DaemonSet>(client, namespace).list(&lp).await?.items {
        out.push((ns_of(&o.metadata), Object::DaemonSet(Box::new(o))));
    }
    for o in api::<CronJob>(client, namespace).list(&lp).await?.items {
        out.push((ns_of(&o.metadata), Object::CronJob(Box::new(o))));
    }
    for o in api::<Job>(client, namespace).list(&lp).await?.items.into_iter().filter(|j| !owned(&j.metadata)) {
        out.push((ns_of(&o.metadata), Object::Job(Box::new(o))));
    }
    for o in api::<Pod>(client, namespace).list(&lp).await?.items.into_iter().filter(|p| !owned(&p.metadata)) {
        out.push((ns_of(&o.metadata), Object::Pod(Box::new(o))));
    }
    Ok(out)
}

/// The pod `what` names in `namespace`: `POD` or `pod/NAME`, or the newest pod of `job/NAME` or
/// `deploy/NAME`, as `kubectl logs` picks it.
pub async fn pod_of(client: &kube::Client, namespace: &str, what: &str) -> Result<Pod, ClientError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let (kind, name) = what.split_once('/').unwrap_or(("pod", what));
    let selector = match kind {
        "pod" | "pods" | "po" => {
            return pods.get_opt(name).await?.ok_or_else(|| ClientError::NotFound(format!("pods {name:?} not found")));
        }
        "job" | "jobs" => {
            let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
            jobs.get_opt(name).await?.ok_or_else(|| ClientError::NotFound(format!("jobs.batch {name:?} not found")))?;
            format!("batch.kubernetes.io/job-name={name}")
        }
        "deploy" | "deployment" | "deployments" => {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
            let d = deployments
                .get_opt(name)
                .await?
                .ok_or_else(|| ClientError::NotFound(format!("deployments.apps {name:?} not found")))?;
            let labels = d.spec.and_then(|s| s.selector.match_labels).unwrap_or_default();
            live::selector_text(&labels)
        }
        other => return Err(ClientError::NotFound(format!("logs of a {other}: name a pod, job/NAME or deploy/NAME"))),
    };
    let mut list = pods.list(&ListParams::default().labels(&selector)).await?.items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    list.pop().ok_or_else(|| ClientError::NotFound(format!("no pods found for {what}")))
}

/// The pods `what` names in `namespace`: `POD` or `pod/NAME`, or every pod of `job/NAME`,
/// oldest first.
pub async fn pods_of(client: &kube::Client, namespace: &str, what: &str) -> Result<Vec<Pod>, ClientError> {
    let (kind, name) = what.split_once('/').unwrap_or(("pod", what));
    if !matches!(kind, "job" | "jobs") {
        return Ok(vec![pod_of(client, namespace, what).await?]);
    }
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    jobs.get_opt(name).await?.ok_or_else(|| ClientError::NotFound(format!("jobs.batch {name:?} not found")))?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut list =
        pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"))).await?.items;
    list.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Ok(list)
}

#[cfg(test)]
mod line_tests {
    #[test]
    fn log_lines_are_split_and_a_line_without_end_comes_in_bounded_pieces() {
        let long = "x".repeat(super::MAX_LOG_LINE * 2 + 10);
        let text = format!("one\ntwo\n{long}");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut seen = Vec::new();
        rt.block_on(super::each_line(futures_util::io::Cursor::new(text.into_bytes()), |l| {
            seen.push(l);
            true
        }))
        .unwrap();
        let lens: Vec<usize> = seen.iter().map(String::len).collect();
        assert_eq!(seen[..2], ["one", "two"]);
        assert_eq!(lens[2..], [super::MAX_LOG_LINE, super::MAX_LOG_LINE, 10]);
        let mut first = Vec::new();
        rt.block_on(super::each_line(futures_util::io::Cursor::new(b"a\nb\nc\n".to_vec()), |l| {
            first.push(l);
            false
        }))
        .unwrap();
        assert_eq!(first, ["a"], "a false from the caller stops the reading");
    }
}
