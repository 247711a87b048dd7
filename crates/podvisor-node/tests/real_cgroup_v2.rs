//! Containers on a cgroup v2 host (one unified hierarchy at /sys/fs/cgroup), on real containers:
//! the files the kubelet's resources become, a private cgroup namespace, the OOM killer taking a
//! container as a group, and no cgroup left behind. This host kind is hybrid (v1), so these are
//! ignored here and `scripts/vm-pass` runs them inside a cgroup-v2-only VM, on every runtime.

mod common;

use std::time::Duration;

use common::{fixture, pod, terminated};

const LIMIT: Duration = Duration::from_secs(60);

/// Fails (rather than passing vacuously) when run on a host without the unified hierarchy.
fn require_v2() {
    assert!(
        podvisor_runtime::cgroup::is_v2(),
        "these tests need a cgroup v2 host; scripts/vm-pass runs them in a cgroup-v2-only VM"
    );
}

/// `key=value` lines a container printed, as pairs.
fn values(lines: &[String]) -> Vec<(String, String)> {
    lines.iter().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The cgroup v2 CPU weight `runtime` gives `shares`: youki's map is the later one (see the test).
fn weight_of_shares(runtime: &str, shares: u64) -> u64 {
    if runtime.ends_with("youki") {
        let l = (shares as f64).log2();
        10f64.powf((l * l + 125.0 * l) / 612.0 - 7.0 / 34.0).ceil() as u64
    } else {
        1 + (shares - 2) * 9999 / 262_142
    }
}

fn value<'a>(values: &'a [(String, String)], key: &str) -> Option<&'a str> {
    values.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cgroup v2 host: scripts/vm-pass runs it in a cgroup-v2-only VM"]
async fn requests_and_limits_become_the_containers_own_cgroup_v2_files_and_nothing_is_left() {
    require_v2();
    let mut f = fixture("cgroup-v2-files").await;
    let show = "cd /sys/fs/cgroup; for f in cpu.max cpu.weight memory.max memory.swap.max memory.oom.group pids.max; \
                do echo $f=$(cat $f); done; echo self=$(cat /proc/self/cgroup)";
    let p = f.node.run_pod(pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: limits}}
spec:
  restartPolicy: Never
  containers:
  - name: limited
    image: busybox:1.36
    command: [sh, -c, "{show}"]
    resources: {{requests: {{cpu: 250m, memory: 16Mi}}, limits: {{cpu: 500m, memory: 32Mi}}}}
  - name: best-effort
    image: busybox:1.36
    command: [sh, -c, "{show}"]
"#
    )));
    let cgroup = std::path::Path::new("/sys/fs/cgroup/podvisor").join(p.uid());
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());

    let limited = values(&f.lines("limited"));
    // The kubelet's translation: a 500m limit is a 50 ms quota per 100 ms period; a 250m
    // request is 256 CPU shares. The runtime turns shares into a weight, by the linear map of
    // runc 1.1 and crun 1.8 (1 + (256 - 2) × 9999 / 262142 = 10) or the later one of youki (and
    // of newer runc and crun), 10^((l² + 125 l) / 612 − 7/34) with l = log2(shares), rounded
    // up: 35. Both give 1 for the 2 shares of a container without a request.
    assert_eq!(value(&limited, "cpu.max"), Some("50000 100000"), "{limited:?}");
    let weight = value(&limited, "cpu.weight");
    let runtime = common::runtime();
    assert_eq!(weight, Some(weight_of_shares(&runtime, 256).to_string()).as_deref(), "{runtime}: {limited:?}");
    assert_eq!(value(&limited, "memory.max"), Some("33554432"), "{limited:?}");
    assert_eq!(value(&limited, "memory.swap.max"), Some("0"), "no swap beyond the limit: {limited:?}");
    assert_eq!(value(&limited, "memory.oom.group"), Some("1"), "the container is one OOM unit: {limited:?}");
    assert_eq!(value(&limited, "pids.max"), Some("4096"), "{limited:?}");
    // A private cgroup namespace: the container sees its own cgroup as the root.
    assert_eq!(value(&limited, "self"), Some("0::/"), "{limited:?}");

    let best_effort = values(&f.lines("best-effort"));
    assert_eq!(value(&best_effort, "cpu.max"), Some("max 100000"), "no limit: {best_effort:?}");
    assert_eq!(value(&best_effort, "cpu.weight"), Some("1"), "no request: 2 shares, the least weight");
    assert_eq!(value(&best_effort, "memory.max"), Some("max"), "{best_effort:?}");

    assert!(!cgroup.exists(), "the pod's cgroup {} is removed with the pod", cgroup.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cgroup v2 host: scripts/vm-pass runs it in a cgroup-v2-only VM"]
async fn the_oom_killer_takes_the_whole_container_and_memory_events_say_oom_killed() {
    require_v2();
    let mut f = fixture("cgroup-v2-oom").await;
    // Only awk outgrows the limit; the shell that is the container's first process sleeps. A
    // kill of awk alone would leave the container running for ten minutes.
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: group}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox:1.36
    command: [sh, -c, "awk 'BEGIN { s = \"x\"; while (1) s = s s }' & sleep 600"]
    resources: {limits: {memory: 16Mi}}
"#));
    let status = f.finish(&p, LIMIT).await;
    let t = terminated(&status, "hog");
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")), "{}", f.dump());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cgroup v2 host: scripts/vm-pass runs it in a cgroup-v2-only VM"]
async fn a_privileged_container_shares_the_hosts_cgroup_namespace() {
    require_v2();
    let mut f = fixture("cgroup-v2-privileged").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: privileged}
spec:
  restartPolicy: Never
  containers:
  - name: show
    image: busybox:1.36
    command: [sh, -c, "cat /proc/self/cgroup"]
    securityContext: {privileged: true}
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    let line = f.lines("show").join("\n");
    let expected = format!("0::/podvisor/{}/", p.uid());
    assert!(line.starts_with(&expected), "the host's view of the cgroup, {expected}…: {line}");
    // The path the container itself saw is the pod's cgroup: it is gone with the pod.
    let pod_cgroup = std::path::Path::new("/sys/fs/cgroup/podvisor").join(p.uid());
    assert!(!pod_cgroup.exists(), "{} is removed with the pod", pod_cgroup.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a cgroup v2 host: scripts/vm-pass runs it in a cgroup-v2-only VM"]
async fn an_exec_probe_runs_in_the_containers_cgroup_and_cgroup_namespace() {
    require_v2();
    let mut f = fixture("cgroup-v2-exec").await;
    // The startup probe passes only where the exec'd process sees its container's cgroup as the
    // root, and the container's memory limit there; the app waits for it (R18).
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: exec}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: sidecar
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
    resources: {limits: {memory: 24Mi}}
    startupProbe:
      exec: {command: [sh, -c, "grep -qx 0::/ /proc/self/cgroup && grep -qx 25165824 /sys/fs/cgroup/memory.max"]}
      periodSeconds: 1
      failureThreshold: 30
  containers:
  - name: app
    image: busybox:1.36
    command: [echo, done]
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("app"), ["done"], "the app ran after the exec startup probe passed: {}", f.dump());
}
