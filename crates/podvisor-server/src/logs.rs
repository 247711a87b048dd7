//! `GET …/pods/NAME/log`: a container's output from its CRI log file, with `container`,
//! `previous`, `timestamps`, `tailLines`, `sinceSeconds`/`sinceTime`, `limitBytes`, and `follow`
//! (inotify on the file until the pod stops, or the client goes).

use std::collections::HashMap;

use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use podvisor_cluster::{Key, StoreError};
use podvisor_node::pod_logs::{PodLogs, Tail, follow};
use podvisor_objects::kinds::Resource;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::status::ApiError;
use crate::{Reply, State};

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| cs.iter().filter_map(|c| c["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// Why a container has no log yet: its waiting reason.
fn waiting_reason(pod: &Value, container: &str) -> String {
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .find(|c| c["name"] == container)
        .and_then(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| "ContainerCreating".into())
}

/// Serves a pod's log.
pub fn logs(state: &State, namespace: &str, name: &str, q: &HashMap<String, String>) -> Result<Reply, ApiError> {
    let key = Key::new(Resource::Pods, namespace, name);
    let pod = state.store().get(&key).ok_or_else(|| StoreError::NotFound(key.clone()))?;
    let q = |k: &str| q.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let (init, regular) = (container_names(&pod, "initContainers"), container_names(&pod, "containers"));
    let container = match q("container") {
        Some(c) if init.iter().chain(&regular).any(|n| n == c) => c.to_string(),
        Some(c) => {
            return Err(ApiError::bad_request(format!("container {c} is not valid for pod {name}")));
        }
        None if regular.len() == 1 && init.is_empty() => regular[0].clone(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}] or one of the init containers: [{}]",
                regular.join(" "),
                init.join(" ")
            )));
        }
    };
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    let data = state.cluster.node().data_dir().to_path_buf();
    let logs = PodLogs::of(&data, namespace, name, uid);
    let previous = q("previous") == Some("true");
    let file = match logs.file(&container, previous) {
        Ok(f) => f,
        Err(_) if previous => {
            return Err(ApiError::bad_request(format!(
                "previous terminated container {container:?} in pod {name:?} not found"
            )));
        }
        Err(_) => {
            return Err(ApiError::bad_request(format!(
                "container {container:?} in pod {name:?} is waiting to start: {}",
                waiting_reason(&pod, &container)
            )));
        }
    };
    let tail_lines = q("tailLines").and_then(|n| n.parse::<usize>().ok());
    let opened = match tail_lines {
        // Read from the end: `--tail=3` of a large log reads only its end.
        Some(n) => Tail::open_last(&file, n),
        None => Tail::open(&file).map(|t| (t, Vec::new())),
    };
    let (mut tail, last) = opened.map_err(|e| ApiError::bad_request(format!("{}: {e}", file.display())))?;
    let timestamps = q("timestamps") == Some("true");
    let since = q("sinceTime").and_then(|t| t.parse::<Timestamp>().ok()).or_else(|| {
        q("sinceSeconds")
            .and_then(|s| s.parse::<i64>().ok())
            .map(|s| Timestamp::now().checked_sub(SignedDuration::from_secs(s)).unwrap_or(Timestamp::MIN))
    });
    let render = move |(t, _, line): (Timestamp, podvisor_node::pod_logs::Stream, String)| {
        if since.is_some_and(|s| t < s) {
            return None;
        }
        Some(if timestamps {
            format!("{} {line}\n", t.strftime("%Y-%m-%dT%H:%M:%S.%9fZ"))
        } else {
            format!("{line}\n")
        })
    };
    let first = if tail_lines.is_some() { last } else { tail.read_new().unwrap_or_default() };
    let lines: Vec<String> = first.into_iter().filter_map(render).collect();
    let mut budget = q("limitBytes").and_then(|n| n.parse::<usize>().ok()).unwrap_or(usize::MAX);
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut send = move |line: String| -> bool {
        if budget == 0 {
            return false;
        }
        let mut b = line.into_bytes();
        b.truncate(budget);
        budget -= b.len();
        tx.blocking_send(Bytes::from(b)).is_ok() && budget > 0
    };
    let follow_on = q("follow") == Some("true") && !previous && logs.running(&data);
    tokio::task::spawn_blocking(move || {
        for l in lines {
            if !send(l) {
                return;
            }
        }
        if follow_on {
            let _ = follow(&logs, &data, &file, &mut || {
                for l in tail.read_new()?.into_iter().filter_map(render) {
                    if !send(l) {
                        return Ok(false);
                    }
                }
                Ok(true)
            });
        }
    });
    Ok(Reply::stream("text/plain", rx))
}
