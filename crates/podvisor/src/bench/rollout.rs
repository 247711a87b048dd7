//! A rolling update through `serve`, end to end: a Deployment of ten replicas, each a pod with a
//! native sidecar, made available, then its template changed and rolled out as the Deployment
//! controller does it (25 % surge, 25 % unavailable), until `kubectl rollout status` would say
//! done.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::client::{Client, Server, Watch};

/// The replicas of the Deployment.
pub(crate) const REPLICAS: u64 = 10;

const NAME: &str = "bench-rollout";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

/// What the rollout measured, in milliseconds.
pub(crate) struct Rollout {
    /// POST of the Deployment → all replicas available.
    pub create_ms: f64,
    /// The template changed (PUT) → every replica new and available, no old one left.
    pub update_ms: f64,
}

fn deployment() -> Value {
    let trap = ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": NAME, "labels": { "app": "podvisor-bench" } },
        "spec": {
            "replicas": REPLICAS,
            "selector": { "matchLabels": { "app": NAME } },
            "template": {
                "metadata": { "labels": { "app": NAME } },
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "initContainers": [{ "name": "sidecar", "image": "busybox:1.36", "restartPolicy": "Always", "command": trap }],
                    "containers": [{ "name": "app", "image": "busybox:1.36", "command": trap }],
                },
            },
        },
    })
}

/// Whether a Deployment's status says its rollout is complete, as `kubectl rollout status`
/// judges it: the spec observed, every replica updated and available, none old.
fn complete(d: &Value) -> bool {
    let status = &d["status"];
    let n = |field: &str| status[field].as_u64().unwrap_or(0);
    status["observedGeneration"].as_u64() >= d["metadata"]["generation"].as_u64()
        && n("updatedReplicas") == REPLICAS
        && n("replicas") == REPLICAS
        && n("availableReplicas") == REPLICAS
}

/// Reads the Deployment's watch until its rollout is complete (at most `limit`).
fn until_complete(watch: &mut Watch, limit: Duration, generation: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        anyhow::ensure!(Instant::now() < deadline, "the rollout of {NAME} did not complete within {limit:?}");
        let e = watch.next()?;
        let d = &e["object"];
        if d["metadata"]["generation"].as_u64().unwrap_or(0) >= generation && complete(d) {
            return Ok(());
        }
    }
}

/// Creates the Deployment, waits for it, rolls a new template out, and deletes it.
pub(crate) fn measure(server: &Server, client: &mut Client) -> anyhow::Result<Rollout> {
    let one = format!("{DEPLOYMENTS}/{NAME}");
    client.call("DELETE", &one, None)?;
    let (_, list) = client.call("GET", DEPLOYMENTS, None)?;
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let mut watch =
        Watch::open(server, &format!("{DEPLOYMENTS}?fieldSelector=metadata.name%3D{NAME}&resourceVersion={rv}"))?;

    let t = Instant::now();
    let (code, body) = client.call("POST", DEPLOYMENTS, Some(&deployment()))?;
    anyhow::ensure!(code == 201, "POST {NAME}: HTTP {code}: {body}");
    until_complete(&mut watch, Duration::from_secs(120), 1)?;
    let create_ms = t.elapsed().as_secs_f64() * 1000.0;

    let (code, mut d) = client.call("GET", &one, None)?;
    anyhow::ensure!(code == 200, "GET {NAME}: HTTP {code}: {d}");
    d["spec"]["template"]["metadata"]["annotations"] = json!({ "podvisor.dev/bench-revision": "2" });
    let generation = d["metadata"]["generation"].as_u64().unwrap_or(1) + 1;
    let t = Instant::now();
    let (code, body) = client.call("PUT", &one, Some(&d))?;
    anyhow::ensure!(code == 200, "PUT {NAME}: HTTP {code}: {body}");
    until_complete(&mut watch, Duration::from_secs(180), generation)?;
    let update_ms = t.elapsed().as_secs_f64() * 1000.0;

    // Gone before the next figure: the Deployment (its ReplicaSets and pods follow, by the
    // garbage collector), and every pod it had.
    let pods = format!("/api/v1/namespaces/default/pods?labelSelector=app%3D{NAME}");
    let (_, list) = client.call("GET", &pods, None)?;
    let mut present: std::collections::HashSet<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
    let mut gone = Watch::open(server, &format!("{pods}&resourceVersion={rv}"))?;
    client.call("DELETE", &one, None)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !present.is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the pods of {NAME} were not gone within 120 s");
        let e = gone.next()?;
        let name = e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if e["type"] == "DELETED" {
            present.remove(&name);
        } else {
            present.insert(name);
        }
    }
    Ok(Rollout { create_ms, update_ms })
}
