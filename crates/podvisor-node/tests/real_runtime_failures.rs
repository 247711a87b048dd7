//! A runtime that fails in awkward ways never wedges a pod: a long error is read while the
//! runtime writes it (it would otherwise block on a full pipe), a create that fails after
//! making the container leaves nothing behind, and the pod gets the kubelet's event, its
//! back-off, and is deleted at once.

mod common;

use std::time::Duration;

use common::{fixture_configured, pod};
use podvisor_node::What;

/// A runtime that is runc, except that `create` makes the container, then writes 200 kB to
/// its standard error and exits 1.
fn failing_runtime(dir: &std::path::Path) -> std::path::PathBuf {
    let runc = std::process::Command::new("sh").args(["-c", "command -v runc"]).output().expect("sh runs");
    let runc = String::from_utf8_lossy(&runc.stdout).trim().to_string();
    assert!(!runc.is_empty(), "runc is installed");
    std::fs::create_dir_all(dir).unwrap();
    let script = dir.join("failing-runtime");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = create ] && creating=1; done\n\
             if [ -n \"$creating\" ]; then\n  {runc} \"$@\"\n  head -c 200000 /dev/zero | tr '\\0' x >&2\n  exit 1\nfi\n\
             exec {runc} \"$@\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_that_fails_after_making_the_container_is_cleaned_up_and_retried() {
    let scripts = std::env::temp_dir().join(format!("podvisor-failing-runtime-{}", std::process::id()));
    let runtime = failing_runtime(&scripts);
    let mut f = fixture_configured("failing-runtime", |c| c.runtime = runtime.clone()).await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: wedged}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: busybox:1.36, command: [sleep, "100"]}
"#));
    let failed = |seen: &[podvisor_node::NodeEvent]| {
        seen.iter().any(|e| matches!(&e.what, What::Event { reason, .. } if reason == "Failed"))
    };
    assert!(f.until(Duration::from_secs(30), failed).await, "the failure is an event:\n{}", f.dump());
    let message = f
        .seen
        .iter()
        .find_map(|e| match &e.what {
            What::Event { reason, message, .. } if reason == "Failed" => Some(message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(message.contains("more bytes)"), "the 200 kB error is cut: {} bytes", message.len());
    assert!(message.len() < 20_000, "{} bytes", message.len());
    // The status of a step is published after its events.
    let reason = || p.status().container_statuses.and_then(|s| s[0].state.clone()?.waiting?.reason).unwrap_or_default();
    for _ in 0..50 {
        if reason() == "CreateContainerError" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reason(), "CreateContainerError");
    // The container the runtime made was removed with it.
    let root = f.node.data_dir().join("runc");
    let list = std::process::Command::new("runc").arg("--root").arg(&root).args(["list", "-q"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout).trim(), "", "nothing is left in the runtime");
    p.delete(None);
    f.finish(&p, Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(&scripts);
}

/// Issue: a chatty container's log grew without bound. With a rotation of 8 KiB and 3 files,
/// its log never takes more than 3 files, and the current one ends with its last line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chatty_containers_log_is_rotated_and_bounded() {
    let rotation = podvisor_runtime::logs::Rotation { max_size: 8 * 1024, max_files: 3 };
    let mut f = fixture_configured("chatty", |c| c.log_rotation = rotation).await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  restartPolicy: Never
  containers:
  - {name: c, image: busybox:1.36, command: [sh, -c, "for i in $(seq 3000); do echo line $i; done"]}
"#));
    f.finish(&p, Duration::from_secs(60)).await;
    let dir = f.node.data_dir().join("logs");
    let pod_dir = std::fs::read_dir(&dir).unwrap().flatten().next().expect("the pod's logs").path();
    let files: Vec<String> = std::fs::read_dir(pod_dir.join("c"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let logs: Vec<&String> = files.iter().filter(|n| n.starts_with("0.log")).collect();
    assert!(logs.len() <= 3 && logs.len() >= 2, "rotated, and at most 3 files: {files:?}");
    let current = podvisor_runtime::logs::read_tail(&pod_dir.join("c/0.log"), 4096).unwrap();
    assert_eq!(current.last().map(|l| l.2.as_str()), Some("line 3000"));
}
