//! What a pod cannot do to the machine, on real containers: escape through a `subPath` raced by
//! another container, write its read-only volumes, keep capabilities it dropped or was never
//! given, or make syscalls the default seccomp profile refuses.

mod common;

use std::time::Duration;

use common::{exited, fixture, pod};
use podvisor_node::What;

const LIMIT: Duration = Duration::from_secs(60);

/// The pod of the subPath race (CVE-2017-1002101's class): a sidecar swaps the directory the
/// app's `subPath` names for a symlink to `/` as fast as it can while the app is created.
fn racer(n: usize) -> k8s_openapi::api::core::v1::Pod {
    pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: race-{n}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  volumes: [{{name: d, emptyDir: {{}}}}]
  initContainers:
  - name: racer
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "while true; do rm -rf /d/x; mkdir /d/x; rm -rf /d/x; ln -s / /d/x; done"]
    volumeMounts: [{{name: d, mountPath: /d}}]
  containers:
  - name: victim
    image: busybox:1.36
    command: [sh, -c, "echo seen $(ls -A /host | wc -l); touch /host/podvisor-escape-{n} 2>/dev/null; true"]
    volumeMounts: [{{name: d, mountPath: /host, subPath: x}}]
"#
    ))
}

/// The race, 20 times at once: the app either sees the empty directory of the volume or is
/// refused (`CreateContainerError`, the subPath resolving outside the volume); never the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subpath_raced_into_a_symlink_to_root_never_mounts_the_host() {
    const PODS: usize = 20;
    let mut f = fixture("subpath-race").await;
    let handles: Vec<_> = (0..PODS).map(|n| f.node.run_pod(racer(n))).collect();
    let keys: Vec<String> = handles.iter().map(|h| h.key()).collect();
    // Each victim ran once, or was refused once.
    let decided = |seen: &[podvisor_node::NodeEvent], key: &str| {
        seen.iter().any(|e| {
            e.pod == key
                && (exited("victim")(&e.what)
                    || matches!(&e.what, What::Event { reason, container: Some(c), .. } if reason == "Failed" && c == "victim"))
        })
    };
    let all = f.until(LIMIT, |seen| keys.iter().all(|k| decided(seen, k))).await;
    for h in &handles {
        h.delete(Some(0));
    }
    for h in &handles {
        f.finish(h, LIMIT).await;
    }
    assert!(all, "not every victim ran or was refused:\n{}", f.dump());
    let seen: Vec<String> = f.lines("victim");
    assert!(seen.iter().all(|l| l == "seen 0"), "a victim saw more than the empty volume: {seen:?}");
    for n in 0..PODS {
        let marker = std::path::Path::new("/").join(format!("podvisor-escape-{n}"));
        assert!(!marker.exists(), "pod race-{n} wrote {} on the host", marker.display());
    }
}
