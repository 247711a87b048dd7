//! Figures from `podvisor serve`, through its API as a client sees it: a pod's start from the
//! POST to the watch event showing both containers running, then many pods at once, the daemon's
//! memory and the processes it keeps.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Samples;
use super::client::{Client, Server, Watch};
use super::rollout::{self, Rollout};

/// What serve measured.
pub(crate) struct Served {
    /// POST → both containers running, in milliseconds.
    pub start: Samples,
    /// All pods of the scale test Running, from the first POST.
    pub scale_ms: f64,
    pub rss_per_pod_kib: f64,
    /// What each running pod costs the host in proportional memory: the daemon's growth and
    /// the holders (`podvisor monitor`) of its containers, as PSS.
    pub pss_per_pod_kib: f64,
    /// Processes the daemon keeps per pod that are not the pod's containers.
    pub helpers_per_pod: f64,
    pub idle_rss_kib: f64,
    /// The rolling update of a Deployment with sidecars, when asked for.
    pub rollout: Option<Rollout>,
}

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "podvisor-bench" } },
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "initContainers": [{
                "name": "sidecar", "image": "busybox:1.36", "restartPolicy": "Always",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
            }],
            "containers": [{
                "name": "app", "image": "busybox:1.36",
                "command": ["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"],
            }],
        },
    })
}

/// Whether the pod's sidecar and app are both running.
fn both_running(p: &Value) -> bool {
    let running = |list: &str, name: &str| {
        p["status"][list]
            .as_array()
            .is_some_and(|l| l.iter().any(|c| c["name"] == name && c["state"]["running"].is_object()))
    };
    running("initContainerStatuses", "sidecar") && running("containerStatuses", "app")
}

/// The pods seen through a watch: when each was first both running, and which are gone.
struct Pods {
    watch: Watch,
    running: HashMap<String, Instant>,
    present: HashSet<String>,
}

impl Pods {
    /// Reads events until `done` holds (at most `limit`).
    fn until(&mut self, limit: Duration, done: impl Fn(&Pods) -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while !done(self) {
            if Instant::now() > deadline {
                anyhow::bail!("serve: pods did not get there within {limit:?}");
            }
            let e = self.watch.next()?;
            let name = e["object"]["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if e["type"] == "DELETED" {
                self.present.remove(&name);
                continue;
            }
            self.present.insert(name.clone());
            if both_running(&e["object"]) {
                self.running.entry(name).or_insert_with(Instant::now);
            }
        }
        Ok(())
    }
}

fn rss_kib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .unwrap_or(f64::NAN)
}

/// The daemon's child processes that are not in a pod's cgroup (a container's init is the
/// daemon's child: it is the containers' subreaper).
/// A process's proportional set size (`Pss:` of `smaps_rollup`), in KiB.
fn pss_kib(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Pss:")?.trim().strip_suffix("kB")?.trim().parse().ok()))
        .unwrap_or(0.0)
}

/// The PSS of the container holders of `data` (their command line names its runtime root).
fn holders_pss_kib(data: &Path) -> f64 {
    let root = data.join("runc").display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())).map(str::to_string))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
                args.contains(&b"monitor".as_slice()) && args.contains(&root.as_bytes())
            })
        })
        .map(|pid| pss_kib(&pid))
        .sum()
}

fn helpers(pid: u32) -> usize {
    let tasks =
        std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let kids: Vec<String> = tasks
        .iter()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect();
    let in_pods = kids
        .iter()
        .filter(|k| std::fs::read_to_string(format!("/proc/{k}/cgroup")).is_ok_and(|c| c.contains("/podvisor/")))
        .count();
    kids.len() - in_pods
}

/// Starts serve on a free loopback port; the process and its address.
fn start(exe: &Path, runtime: &Path, data: &Path, pods: usize) -> anyhow::Result<(Child, String)> {
    // Room for the scale figure's pods beyond the kubelet's default of 110.
    let max_pods = (pods + rollout::REPLICAS as usize * 2 + 10).max(110);
    let mut child = Command::new(exe)
        .env("PODVISOR_RUNTIME", runtime)
        .args(["serve", "--listen", "127.0.0.1:0", "--max-pods", &max_pods.to_string(), "--data-dir"])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut lines = BufReader::new(child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?).lines();
    let addr = loop {
        let Some(line) = lines.next().transpose()? else { anyhow::bail!("serve ended before it listened") };
        if let Some(url) = line.split("API at https://").nth(1) {
            // The address, before the words on the runtime.
            break url.split_whitespace().next().unwrap_or("").to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Ok((child, addr))
}

/// Runs the serve figures: `n` single pods, the rolling update (with `rollout`), then `pods`
/// at once.
pub(crate) fn measure(
    exe: &Path,
    runtime: &Path,
    given: &Path,
    n: usize,
    pods: usize,
    with_rollout: bool,
) -> anyhow::Result<Served> {
    // A data directory of its own, with the image store copied in: the idle daemon and the
    // memory per pod are then the daemon's own, not the history of the directory it was given
    // (whose store keeps an hour of events: 4000 of them after two runs of this suite).
    let scratch = crate::scratch::Scratch::new("bench-serve")?;
    let data = &scratch.path().join("data");
    std::fs::create_dir(data)?;
    let copied = Command::new("cp").arg("-a").arg(given.join("images")).arg(data.join("images")).status()?;
    anyhow::ensure!(copied.success(), "copying the image store of {} failed", given.display());
    let (mut child, addr) = start(exe, runtime, data, pods)?;
    let result = (|| {
        let server = Server::new(&addr, &data.join("serve"))?;
        let mut client = Client::new(&server);
        let selector = "labelSelector=app%3Dpodvisor-bench";
        // Pods a run before left behind go first.
        client.call("DELETE", &format!("{PODS}?{selector}"), None)?;
        let (_, list) = client.call("GET", &format!("{PODS}?{selector}"), None)?;
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap_or("0").to_string();
        let watch = Watch::open(&server, &format!("{PODS}?{selector}&resourceVersion={rv}"))?;
        let mut seen = Pods { watch, running: HashMap::new(), present: HashSet::new() };
        for item in list["items"].as_array().into_iter().flatten() {
            seen.present.insert(item["metadata"]["name"].as_str().unwrap_or_default().into());
        }
        seen.until(Duration::from_secs(60), |p| p.present.is_empty())?;
        std::thread::sleep(Duration::from_secs(1));
        let idle_rss_kib = rss_kib(child.id());
        let idle_pss_kib = pss_kib(&child.id().to_string());

        let mut start = Samples::default();
        for i in 0..n {
            let name = format!("bench-start-{i}");
            let t = Instant::now();
            let (code, body) = client.call("POST", PODS, Some(&pod(&name)))?;
            anyhow::ensure!(code == 201, "POST {name}: HTTP {code}: {body}");
            seen.until(Duration::from_secs(30), |p| p.running.contains_key(&name))?;
            start.0.push(seen.running[&name].duration_since(t).as_secs_f64() * 1000.0);
            client.call("DELETE", &format!("{PODS}/{name}"), None)?;
            seen.until(Duration::from_secs(30), |p| !p.present.contains(&name))?;
        }

        let rollout = with_rollout.then(|| rollout::measure(&server, &mut client)).transpose()?;

        let names: Vec<String> = (0..pods).map(|i| format!("bench-scale-{i}")).collect();
        let t = Instant::now();
        for name in &names {
            let (code, body) = client.call("POST", PODS, Some(&pod(name)))?;
            anyhow::ensure!(code == 201, "POST {name}: HTTP {code}: {body}");
        }
        seen.until(Duration::from_secs(300), |p| names.iter().all(|n| p.running.contains_key(n)))?;
        let scale_ms =
            names.iter().map(|n| seen.running[n].duration_since(t)).max().unwrap_or_default().as_secs_f64() * 1000.0;
        std::thread::sleep(Duration::from_secs(2));
        let busy_rss = rss_kib(child.id());
        let busy_pss = pss_kib(&child.id().to_string()) + holders_pss_kib(data);
        let helpers = helpers(child.id());
        client.call("DELETE", &format!("{PODS}?{selector}"), None)?;
        seen.until(Duration::from_secs(120), |p| p.present.is_empty())?;
        Ok(Served {
            start,
            scale_ms,
            rss_per_pod_kib: (busy_rss - idle_rss_kib) / pods.max(1) as f64,
            pss_per_pod_kib: (busy_pss - idle_pss_kib) / pods.max(1) as f64,
            helpers_per_pod: helpers as f64 / pods.max(1) as f64,
            idle_rss_kib,
            rollout,
        })
    })();
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(child.id() as i32).ok_or_else(|| anyhow::anyhow!("no pid"))?,
        rustix::process::Signal::INT,
    );
    let _ = child.wait();
    result
}
