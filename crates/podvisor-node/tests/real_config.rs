//! What a container sees on real containers: ConfigMap, Secret and downward API volumes and env,
//! subPath, the security context, the termination message; and leftovers of a crashed run.

mod common;

use std::time::Duration;

use common::{fixture, pod, runtime, terminated};

const LIMIT: Duration = Duration::from_secs(30);

fn objects(objects: &podvisor_node::ObjectStore) {
    let docs = podvisor_manifest::load_str(
        "objects.yaml",
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast, greeting: hello}
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
"#,
    )
    .unwrap();
    for m in docs {
        match m.object {
            podvisor_manifest::Object::ConfigMap(c) => objects.put_config_map(*c),
            podvisor_manifest::Object::Secret(s) => objects.put_secret(*s),
            _ => unreachable!(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_maps_secrets_and_the_downward_api_reach_the_container() {
    let mut f = fixture("config").await;
    objects(&f.objects);
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: reader, labels: {app: demo}}
spec:
  restartPolicy: Never
  securityContext: {runAsUser: 65534, runAsGroup: 65534}
  volumes:
  - {name: cfg, configMap: {name: settings, items: [{key: greeting, path: sub/greet.txt, mode: 0444}]}}
  - {name: sec, secret: {secretName: creds}}
  - {name: info, downwardAPI: {items: [{path: labels, fieldRef: {fieldPath: metadata.labels}}]}}
  - {name: scratch, emptyDir: {}}
  containers:
  - name: show
    image: busybox:1.36
    command:
    - sh
    - -c
    - |
      echo "env $MODE $TOKEN $POD $CFG_greeting"
      cat /cfg/sub/greet.txt; echo
      cat /sec/token; echo
      cat /info/labels; echo
      echo "id $(id -u):$(id -g)"
      touch /readonly 2>/dev/null && echo "root writable" || echo "root read-only"
      ls -d /scratch-sub >/dev/null && ls /scratch-direct/
      echo "bye" > /dev/termination-log
      exit 3
    env:
    - {name: MODE, valueFrom: {configMapKeyRef: {name: settings, key: mode}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]
    securityContext: {readOnlyRootFilesystem: true}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec, readOnly: true}
    - {name: info, mountPath: /info}
    - {name: scratch, mountPath: /scratch-sub, subPath: deep/dir}
    - {name: scratch, mountPath: /scratch-direct}
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(
        f.lines("show"),
        ["env fast s3cret reader hello", "hello", "s3cret", "app=\"demo\"", "id 65534:65534", "root read-only", "deep",],
        "{}",
        f.dump()
    );
    let t = terminated(&status, "show");
    assert_eq!((t.exit_code, t.reason.as_deref(), t.message.as_deref()), (3, Some("Error"), Some("bye\n")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_map_is_a_create_container_config_error() {
    let mut f = fixture("configerror").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: broken}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "echo should-not-run"]
    env: [{name: X, valueFrom: {configMapKeyRef: {name: absent, key: k}}}]
"#));
    let ok = f
        .until(LIMIT, |_| {
            p.status().container_statuses.iter().flatten().any(|c| {
                c.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref())
                    == Some("CreateContainerConfigError")
            })
        })
        .await;
    let waiting = p.status().container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert!(ok, "{waiting:?}");
    assert_eq!(waiting.message.as_deref(), Some("configmap \"absent\" not found"));
    assert!(f.lines("c").is_empty());
    p.delete(Some(0));
    f.finish(&p, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_that_cannot_be_mounted_keeps_the_pod_pending_until_a_retry_succeeds() {
    let mut f = fixture("failedmount").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: waits}
spec:
  restartPolicy: Never
  volumes: [{name: cfg, configMap: {name: settings}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "cat /cfg/mode"]
    volumeMounts: [{name: cfg, mountPath: /cfg}]
"#));
    let mount_failed = |s: &[podvisor_node::NodeEvent]| {
        s.iter().any(|e| matches!(&e.what, podvisor_node::What::Event { reason, .. } if reason == "FailedMount"))
    };
    assert!(f.until(LIMIT, mount_failed).await, "{}", f.dump());
    let st = p.status();
    assert_eq!(st.phase.as_deref(), Some("Pending"));
    let waiting = st.container_statuses.unwrap()[0].state.clone().unwrap().waiting.unwrap();
    assert_eq!(waiting.reason.as_deref(), Some("ContainerCreating"));
    // The ConfigMap appears; the next attempt (10 s later) mounts it and the pod runs.
    objects(&f.objects);
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("c"), ["fast"]);
}

/// stdout and stderr are separate pipes, so lines written at the same instant on the two may be
/// logged in either order (as with any CRI runtime); the pause makes the order certain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallback_to_logs_on_error_takes_the_end_of_the_log() {
    let mut f = fixture("fallback").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: fallback}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "echo first; sleep 0.2; echo last words >&2; exit 2"]
    terminationMessagePolicy: FallbackToLogsOnError
"#));
    let status = f.finish(&p, LIMIT).await;
    let t = terminated(&status, "c");
    assert_eq!(t.message.as_deref(), Some("first\nlast words"), "{t:?}");
}

/// The first node runs on its own runtime, which is then dropped: its tasks vanish without
/// stopping anything, as in a crash.
#[test]
fn containers_left_by_a_crashed_run_are_removed_unless_taken_over() {
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let (f, uid) = crashed.block_on(async {
        let mut f = fixture("leftovers").await;
        let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: orphan}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, "while :; do sleep 1; done"]
"#));
        let mut rx = p.watch();
        let running = tokio::time::timeout(LIMIT, rx.wait_for(|s| s.status.phase.as_deref() == Some("Running"))).await;
        if !matches!(running, Ok(Ok(_))) {
            f.until(Duration::from_millis(200), |_| false).await;
            panic!("the pod does not run: {:?}\n{}", p.status(), f.dump());
        }
        (f, p.pod().metadata.uid.clone().unwrap())
    });
    let data = f.node.data_dir().to_path_buf();
    let runc = |args: &[&str]| {
        std::process::Command::new(runtime()).arg("--root").arg(data.join("runc")).args(args).output().unwrap()
    };
    let out = runc(&["list", "-q"]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(listed.contains("podvisor-"), "the container runs: {listed} {}", String::from_utf8_lossy(&out.stderr));
    let (dir, _) = common::crash(f, crashed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (node, _rx) = common::reopen(&data).await;
        node.remove_strays().await;
        let listed = String::from_utf8_lossy(&runc(&["list", "-q"]).stdout).to_string();
        assert!(!listed.contains("podvisor-"), "a leftover container survived: {listed}");
        assert!(!data.join("run").join(&uid).exists(), "the pod's mounts and files are gone");
        assert!(!std::path::Path::new("/sys/fs/cgroup/memory/podvisor").join(&uid).exists());
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// R75 on real containers: the node process that ran a pod vanishes (its runtime is dropped, as
/// in a crash) and a new one runs the pod again from its last status. The sandbox and the
/// containers outlived it, so they are taken over: same container IDs, no restart, the
/// completed init container not run again, the log followed on, and a deletion stopping the
/// taken-over containers in order.
#[test]
fn a_pod_run_again_after_a_crash_takes_over_its_running_containers_r75() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: kept}
spec:
  terminationGracePeriodSeconds: 5
  initContainers:
  - name: setup
    image: busybox:1.36
    command: [sh, -c, "echo setup done"]
  - name: side
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'echo side bye; exit 0' TERM; i=0; while :; do i=$((i+1)); echo tick $i; sleep 0.2; done"]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'echo app bye; exit 0' TERM; while :; do sleep 0.1; done"]
"#;
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let (f, before) = crashed.block_on(async {
        let f = fixture("takeover").await;
        let p = f.node.run_pod(pod(manifest));
        let mut rx = p.watch();
        let running = |s: &podvisor_node::PodSnapshot| {
            s.status.container_statuses.iter().flatten().all(|c| c.started == Some(true))
                && s.status.phase.as_deref() == Some("Running")
        };
        let _ = tokio::time::timeout(LIMIT, rx.wait_for(running)).await;
        let mut before = p.pod().clone();
        before.status = Some(p.status());
        (f, before)
    });
    let ids = |s: &k8s_openapi::api::core::v1::PodStatus| {
        let all = s.init_container_statuses.iter().flatten().chain(s.container_statuses.iter().flatten());
        all.map(|c| format!("{}={}/{}", c.name, c.container_id.clone().unwrap_or_default(), c.restart_count))
            .collect::<Vec<_>>()
    };
    let prior = before.status.clone().expect("a status");
    assert_eq!(prior.phase.as_deref(), Some("Running"), "{prior:?}");
    let (dir, data) = common::crash(f, crashed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (node, mut events) = common::reopen(&data).await;
        let p = node.run_pod(before.clone());
        node.remove_strays().await;
        let now = p.status();
        assert_eq!(ids(&now), ids(&prior), "the same instances, none restarted");
        assert_eq!(now.phase.as_deref(), Some("Running"));
        assert!(now.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"), "R76");
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + LIMIT;
        while common::lines_in(&seen, "side").len() < 3 {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(e)) => seen.push(e),
                _ => panic!("the taken-over sidecar's log is not followed: {seen:?}"),
            }
        }
        let ticks = common::lines_in(&seen, "side");
        assert!(ticks.iter().all(|l| l.starts_with("tick ")) && ticks[0] != "tick 1", "followed on: {ticks:?}");
        p.delete(None);
        let last = tokio::time::timeout(LIMIT, p.finished()).await.expect("the pod stops");
        let term = |name: &str| terminated(&last, name);
        assert_eq!((term("app").exit_code, term("side").exit_code), (0, 0), "both got SIGTERM and trapped it");
        assert!(term("app").finished_at <= term("side").finished_at, "the sidecar stops last (R43)");
        let setup = terminated(&last, "setup");
        assert_eq!((setup.exit_code, last.init_container_statuses.as_ref().map(|s| s[0].restart_count)), (0, Some(0)));
        let log =
            std::fs::read_to_string(podvisor_runtime::logs::path(&podvisor_node::log_dir(&data, &before), "app", 0))
                .expect("the app's log");
        assert!(log.contains("app bye"), "the monitor kept writing the log: {log}");
        let listed =
            std::process::Command::new(runtime()).arg("--root").arg(data.join("runc")).args(["list", "-q"]).output();
        let listed = String::from_utf8_lossy(&listed.expect("runc list").stdout).to_string();
        assert!(!listed.contains("podvisor-"), "nothing is left: {listed}");
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// An exit the node acted on (the container removed) just before it vanished, while the status
/// it had written still showed the container running: the end recorded beside the log is found
/// when the pod is taken over, so the exit code is kept instead of becoming an unknown end.
#[test]
fn an_exit_acted_on_just_before_a_crash_keeps_its_code_r75() {
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: ended}
spec:
  restartPolicy: Always
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "sleep 0.5; exit 3"]
"#;
    // A container has ended once: its last state is a termination.
    let ended = |s: &podvisor_node::PodSnapshot| {
        s.status
            .container_statuses
            .iter()
            .flatten()
            .any(|c| c.last_state.as_ref().is_some_and(|l| l.terminated.is_some()))
    };
    let crashed = tokio::runtime::Runtime::new().unwrap();
    let (f, before) = crashed.block_on(async {
        let f = fixture("recorded-end").await;
        let p = f.node.run_pod(pod(manifest));
        let mut rx = p.watch();
        let running = |s: &podvisor_node::PodSnapshot| s.status.phase.as_deref() == Some("Running");
        let _ = tokio::time::timeout(LIMIT, rx.wait_for(running)).await;
        let bundles = podvisor_node::bundles_dir(&f.node.data_dir().join("state"), p.uid());
        let bundle = bundles.join(format!("podvisor-{}-app-0", p.uid()));
        assert!(bundle.join("config.json").is_file(), "the running instance's bundle is where the node keeps it");
        // The status a store would still hold: written before the exit.
        let mut before = p.pod().clone();
        before.status = Some(p.status());
        let _ = tokio::time::timeout(LIMIT, rx.wait_for(ended)).await;
        // The ended instance is removed (its bundle last): only its recorded end is left.
        for _ in 0..100 {
            if !bundle.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!bundle.exists(), "the ended instance is removed");
        (f, before)
    });
    let app = |s: &k8s_openapi::api::core::v1::PodStatus| s.container_statuses.clone().unwrap_or_default().remove(0);
    let prior = before.status.clone().expect("a status");
    assert!(app(&prior).state.and_then(|s| s.running).is_some(), "{prior:?}");
    let (dir, data) = common::crash(f, crashed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (node, _events) = common::reopen(&data).await;
        let p = node.run_pod(before.clone());
        node.remove_strays().await;
        // The takeover is the pod's own task: on a loaded machine its status comes a little later.
        let mut rx = p.watch();
        let _ = tokio::time::timeout(LIMIT, rx.wait_for(ended)).await;
        let now = app(&p.status());
        let last = now.last_state.clone().and_then(|l| l.terminated).expect("the ended instance");
        assert_eq!((last.exit_code, last.reason.as_deref()), (3, Some("Error")), "{now:?}");
        p.delete(Some(0));
        let _ = tokio::time::timeout(LIMIT, p.finished()).await;
    });
    let _ = std::fs::remove_dir_all(dir);
}

/// An HTTPS postStart hook against a plain HTTP server: the kubelet sends it again over HTTP,
/// which succeeds, and records `LifecycleHTTPFallback` on the pod instead of failing the hook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_hook_answered_in_http_falls_back_to_http() {
    let mut f = fixture("hook-fallback").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: fallback}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: web
    image: busybox:1.36
    restartPolicy: Always
    command: [httpd, -f, -p, "8080", -h, /tmp]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "sleep 1; echo done"]
    lifecycle: {postStart: {httpGet: {scheme: HTTPS, port: 8080, path: /}}}
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("app"), ["done"], "the hook passed, the container was not killed");
    let fallback = f.seen.iter().find_map(|e| match &e.what {
        podvisor_node::What::Event { kind, reason, message, container, .. } if reason == "LifecycleHTTPFallback" => {
            Some((*kind, message.clone(), container.clone()))
        }
        _ => None,
    });
    let (kind, message, container) = fallback.unwrap_or_else(|| panic!("no fallback event:\n{}", f.dump()));
    assert_eq!((kind, container), ("Warning", None), "on the pod");
    assert!(
        message.starts_with("request to HTTPS lifecycle hook ")
            && message.ends_with(":8080 got HTTP response, retry with HTTP succeeded"),
        "{message}"
    );
}
