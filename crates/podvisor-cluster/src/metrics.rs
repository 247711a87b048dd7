//! The resource metrics API (`metrics.k8s.io/v1beta1`) as metrics-server serves it, so that
//! `kubectl top pod [--containers]` and `kubectl top node` work: each running container's CPU
//! rate and memory working set from its cgroup, the machine's from `/proc`. A request samples
//! twice, a quarter of a second apart, for the CPU rate; memory is read once.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use podvisor_objects::kinds::Resource;
use podvisor_runtime::cgroup::{Usage, machine_usage, usage};
use serde_json::{Value, json};

use crate::store::Store;
use crate::values::stamp;

/// How long the CPU is watched for a rate.
const WINDOW: Duration = Duration::from_millis(250);

/// The running containers of a stored pod: `(name, cgroupsPath)`.
fn containers(pod: &Value) -> Vec<(String, String)> {
    let uid = pod.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or("");
    ["/status/initContainerStatuses", "/status/containerStatuses"]
        .iter()
        .filter_map(|p| pod.pointer(p).and_then(Value::as_array))
        .flatten()
        .filter(|c| c.pointer("/state/running").is_some())
        .filter_map(|c| {
            let id = c.get("containerID")?.as_str()?.strip_prefix("runc://")?;
            Some((c.get("name")?.as_str()?.to_string(), podvisor_node::Node::container_cgroup(uid, id)))
        })
        .collect()
}

fn cpu(before: Usage, after: Usage, elapsed: Duration) -> String {
    let ns = after.cpu_ns.saturating_sub(before.cpu_ns) as u128;
    let nanocores = ns.saturating_mul(1_000_000_000) / elapsed.as_nanos().max(1);
    format!("{nanocores}n")
}

fn memory(u: Usage) -> String {
    format!("{}Ki", u.memory / 1024)
}

/// The PodMetrics of the running pods of `namespace` (all with `None`), or of pod `name` only.
pub async fn pods(store: &Arc<Store>, namespace: Option<&str>, name: Option<&str>) -> Vec<Value> {
    let pods: Vec<Arc<Value>> = store
        .list(Resource::Pods, namespace)
        .0
        .into_iter()
        .filter(|p| name.is_none_or(|n| p.pointer("/metadata/name").and_then(Value::as_str) == Some(n)))
        .filter(|p| p.pointer("/status/phase").and_then(Value::as_str) == Some("Running"))
        .collect();
    let sampled: Vec<Vec<(String, String, Option<Usage>)>> = pods
        .iter()
        .map(|p| containers(p).into_iter().map(|(n, path)| (n, path.clone(), usage(&path))).collect())
        .collect();
    let start = std::time::Instant::now();
    tokio::time::sleep(WINDOW).await;
    let elapsed = start.elapsed();
    let now = stamp(Timestamp::now());
    pods.iter()
        .zip(sampled)
        .map(|(p, cs)| {
            let containers: Vec<Value> = cs
                .into_iter()
                .filter_map(|(name, path, before)| {
                    let (before, after) = (before?, usage(&path)?);
                    Some(json!({"name": name, "usage": {"cpu": cpu(before, after, elapsed), "memory": memory(after)}}))
                })
                .collect();
            json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                   "metadata": {"name": p.pointer("/metadata/name"), "namespace": p.pointer("/metadata/namespace"),
                                "labels": p.pointer("/metadata/labels"), "creationTimestamp": now},
                   "timestamp": now, "window": format!("{}ms", elapsed.as_millis()), "containers": containers})
        })
        .collect()
}

/// The NodeMetrics of this machine, as node `node_name`.
pub async fn node(node_name: &str) -> Option<Value> {
    let before = machine_usage()?;
    let start = std::time::Instant::now();
    tokio::time::sleep(WINDOW).await;
    let (after, elapsed) = (machine_usage()?, start.elapsed());
    let now = stamp(Timestamp::now());
    Some(json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": node_name, "creationTimestamp": now},
                "timestamp": now, "window": format!("{}ms", elapsed.as_millis()),
                "usage": {"cpu": cpu(before, after, elapsed), "memory": memory(after)}}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_sizes_are_written_as_metrics_server_writes_them() {
        let a = Usage { cpu_ns: 1_000_000_000, memory: 0 };
        let b = Usage { cpu_ns: 1_250_000_000, memory: 10 * 1024 * 1024 };
        assert_eq!(cpu(a, b, Duration::from_millis(500)), "500000000n", "half a core");
        assert_eq!(memory(b), "10240Ki");
        let pod = json!({"metadata": {"uid": "u"}, "status": {"containerStatuses": [
            {"name": "app", "containerID": "runc://podvisor-u-app-0", "state": {"running": {}}},
            {"name": "done", "containerID": "runc://podvisor-u-done-0", "state": {"terminated": {}}}]}});
        assert_eq!(containers(&pod), [("app".to_string(), "/podvisor/u/podvisor-u-app-0".to_string())]);
    }
}
