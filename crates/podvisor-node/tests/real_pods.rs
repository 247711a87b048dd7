//! Pods on real containers (runc, as root), with short timings: what the issue's "done when"
//! lists, each asserted with exit codes and the order of events.

mod common;

use std::time::Duration;

use common::{exited, fixture, fixture_with_network, lines_in, pod, signalled, started, terminated};
use podvisor_node::What;

const LIMIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_writes_and_the_app_reads_one_empty_dir() {
    let mut f = fixture("emptydir").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: shared, uid: ../../escape}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  volumes: [{name: data, emptyDir: {}}]
  initContainers:
  - name: writer
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; echo from-sidecar > /data/f; while :; do sleep 0.1; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  containers:
  - name: reader
    image: busybox:1.36
    command: [sh, -c, "for i in 1 2 3 4 5 6 7 8 9 10; do [ -f /data/f ] && break; sleep 0.1; done; cat /data/f; hostname"]
    volumeMounts: [{name: data, mountPath: /data}]
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    assert_eq!(f.lines("reader"), ["from-sidecar", "shared"], "the app read the sidecar's file; hostname = pod name");
    assert!(f.index(started("writer")) < f.index(started("reader")));
    assert!(f.index(exited("reader")) < f.index(signalled("writer", "SIGTERM")), "{}", f.dump());
    assert_eq!(terminated(&status, "reader").exit_code, 0);
    assert_eq!(terminated(&status, "writer").exit_code, 0, "the sidecar handled SIGTERM");
    let uid = p.pod().metadata.uid.clone().unwrap();
    assert_ne!(uid, "../../escape", "a manifest's uid is replaced, as the API server does, never used as a path");
    assert!(uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{uid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_pod_share_localhost_and_other_pods_cannot_reach_it() {
    let mut f = fixture("netns").await;
    let server = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: httpd
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "mkdir /www; echo hello-over-loopback > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www"]
  containers:
  - name: client
    image: busybox:1.36
    command: [sh, -c, "for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.2; done; exit 1"]
"#));
    // Wait until the server answers in its own pod, then try from another pod.
    let ok = f
        .until(LIMIT, |s| s.iter().any(|e| matches!(&e.what, What::Log { line, .. } if line == "hello-over-loopback")))
        .await;
    assert!(ok, "{}", f.dump());
    let outsider = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: outsider}
spec:
  restartPolicy: Never
  containers:
  - name: probe
    image: busybox:1.36
    command: [sh, -c, "wget -q -O - http://127.0.0.1:8080/"]
"#));
    let status = f.finish(&server, LIMIT).await;
    assert_eq!(terminated(&status, "client").exit_code, 0, "{}", f.dump());
    let status = f.finish(&outsider, LIMIT).await;
    // busybox wget exits 1 when the connection is refused (its -T option crashes this build).
    assert_eq!(terminated(&status, "probe").exit_code, 1, "another pod reached the server: {}", f.dump());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_reach_each_other_by_address_and_probes_go_to_the_pod_address_as_the_kubelets_do() {
    let mut f = fixture_with_network("podnet").await;
    let server = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: server}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: httpd
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "mkdir /www; echo hello-over-the-pod-network > /www/index.html; exec httpd -f -p 8080 -h /www"]
    readinessProbe: {tcpSocket: {port: 8080}, periodSeconds: 1}
  containers:
  - name: local-only
    image: busybox:1.36
    command: [sh, -c, "mkdir /www; exec httpd -f -p 127.0.0.1:9090 -h /www"]
    readinessProbe: {httpGet: {port: 9090}, periodSeconds: 1}
"#));
    let ip = {
        let ok = f.until(LIMIT, |_| server.status().pod_ip.is_some()).await;
        assert!(ok || server.status().pod_ip.is_some(), "{}", f.dump());
        server.status().pod_ip.unwrap()
    };
    assert!(ip.starts_with("10.244."), "{ip}");
    let claim = std::path::Path::new("/run/podvisor/networks/podvisor0").join(&ip);
    assert!(claim.exists(), "the address is claimed while the pod has it");
    // The kubelet probes the pod's address: a server on loopback only is never ready.
    let refused = format!("dial tcp {ip}:9090: connect: connection refused");
    let ok = f
        .until(LIMIT, |s| {
            s.iter().any(|e| matches!(&e.what, What::Event { message, .. } if message.contains(&refused)))
        })
        .await;
    assert!(ok, "{}", f.dump());
    let client = f.node.run_pod(pod(&format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: client}}
spec:
  restartPolicy: Never
  hostname: cli
  subdomain: sub
  containers:
  - name: wget
    image: busybox:1.36
    command: [sh, -c, "wget -q -O - http://{ip}:8080/ && tail -n 1 /etc/hosts && echo $MY_IP && wget -q -O - http://$NODE:8080/"]
    env:
    - {{name: MY_IP, valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}}}
    - {{name: NODE, valueFrom: {{fieldRef: {{fieldPath: status.hostIP}}}}}}
"#
    )));
    // The node's address reaches the host: a server there answers the pod.
    let node = std::net::TcpListener::bind(format!("{}:8080", f.node.host_ip())).expect("a server on the node");
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut s, _)) = node.accept() {
            let _ = s.read(&mut [0; 1024]);
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 13\r\n\r\nhello-node-1\n");
        }
    });
    let status = f.finish(&client, LIMIT).await;
    assert_eq!(terminated(&status, "wget").exit_code, 0, "{}", f.dump());
    let own = status.pod_ip.clone().expect("the client has an address");
    assert_ne!(own, ip);
    assert_eq!(status.pod_ips.as_ref().map(|v| v[0].ip.clone()), Some(own.clone()));
    let hosts = format!("{own}\tcli.sub.default.svc.cluster.local\tcli");
    let lines = ["hello-over-the-pod-network".to_string(), hosts, own.clone(), "hello-node-1".into()];
    assert_eq!(f.lines("wget"), lines);
    server.delete(Some(0));
    let status = f.finish(&server, LIMIT).await;
    assert_eq!(status.pod_ip.as_deref(), Some(ip.as_str()), "an ended pod keeps showing its address");
    assert!(!claim.exists(), "the address is released with the sandbox");
    let veth = format!("pv{:08x}", u32::from(ip.parse::<std::net::Ipv4Addr>().unwrap()));
    assert!(!std::path::Path::new("/sys/class/net").join(veth).exists(), "the veth pair is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_on_the_host_network_shares_the_hosts_network_and_hostname() {
    let mut f = fixture_with_network("hostnet").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: on-host}
spec:
  restartPolicy: Never
  hostNetwork: true
  containers:
  - name: look
    image: busybox:1.36
    command: [sh, -c, "readlink /proc/self/ns/net; readlink /proc/self/ns/uts; hostname; echo $MY_IP"]
    env: [{name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
"#));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(terminated(&status, "look").exit_code, 0, "{}", f.dump());
    let own = |ns: &str| std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap().display().to_string();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    assert_eq!(f.node.host_ip(), "10.244.0.1", "the node's address is the pod network's gateway");
    assert_eq!(f.lines("look"), [own("net"), own("uts"), host, f.node.host_ip()]);
    assert_eq!(status.pod_ip, Some(f.node.host_ip()), "podIP is the node's address");
    assert_eq!(status.host_ip, Some(f.node.host_ip()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_limit_gives_oom_killed() {
    let mut f = fixture("oom").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: busybox:1.36
    command: [sh, -c, "awk 'BEGIN { s = \"x\"; while (1) s = s s }'"]
    resources: {limits: {memory: 16Mi}}
"#));
    let status = f.finish(&p, LIMIT).await;
    let t = terminated(&status, "hog");
    assert_eq!((t.exit_code, t.reason.as_deref()), (137, Some("OOMKilled")), "{}", f.dump());
    assert_eq!(status.phase.as_deref(), Some("Failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// R42 step 4: the stop signal, the grace, then SIGKILL.
async fn r42_sigterm_handled_gives_143_and_ignored_gives_137_after_the_grace() {
    let mut f = fixture("sigterm").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: stopper}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: handles
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 143' TERM; echo up; while :; do sleep 0.1; done"]
  - name: ignores
    image: busybox:1.36
    command: [sh, -c, "echo up; while :; do sleep 0.1; done"]
"#));
    let ok = f
        .until(LIMIT, |s| s.iter().filter(|e| matches!(&e.what, What::Log { line, .. } if line == "up")).count() == 2)
        .await;
    assert!(ok, "{}", f.dump());
    let deleted = std::time::Instant::now();
    p.delete(None);
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(terminated(&status, "handles").exit_code, 143, "{}", f.dump());
    assert_eq!(terminated(&status, "ignores").exit_code, 137);
    let kill = f.index(signalled("ignores", "SIGKILL")).expect("SIGKILL after the grace");
    assert!(
        f.index(exited("handles")) < Some(kill),
        "the handler exited at once, long before the SIGKILL: {}",
        f.dump()
    );
    let took = deleted.elapsed();
    assert!(took >= Duration::from_secs(2), "SIGKILL came at the end of the 2 s grace, not before ({took:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// R25, R26, R27: a sidecar is restarted with back-off, and the app is left alone.
async fn r26_a_crash_looping_sidecar_restarts_with_back_off_while_the_app_runs() {
    let mut f = fixture("crashloop").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: flaky
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "echo crash; exit 1"]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; while :; do sleep 0.1; done"]
"#));
    // Three runs of the sidecar: the first restart is immediate, the next waits 10 s.
    let ok = f
        .until(LIMIT, |s| {
            s.iter().filter(|e| matches!(&e.what, What::Started { container, .. } if container == "flaky")).count() >= 3
        })
        .await;
    assert!(ok, "{}", f.dump());
    let starts: Vec<_> = f
        .seen
        .iter()
        .filter(|e| matches!(&e.what, What::Started { container, .. } if container == "flaky"))
        .map(|e| e.at)
        .collect();
    let gap = starts[2].duration_since(starts[1]);
    assert!(gap.as_secs_f64() >= 9.5, "the second restart waits out the 10 s back-off ({gap:?})");
    assert!(f.index(|w| matches!(w, What::Event { reason, .. } if reason == "BackOff")).is_some(), "{}", f.dump());
    assert!(f.index(exited("app")).is_none(), "the app kept running: {}", f.dump());
    let st = p.status();
    let app = st.container_statuses.iter().flatten().find(|c| c.name == "app").unwrap();
    assert!(app.state.as_ref().unwrap().running.is_some());
    p.delete(None);
    f.finish(&p, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// R42/R43 (A11-TERM-REVERSE-ORDER, A11-TERM-SIMULTANEOUS-PRESTOP): the preStop hooks all start
/// when termination starts; only the stop signals are ordered, last sidecar first.
async fn r43_three_sidecars_stop_in_reverse_order_while_pre_stop_hooks_start_together() {
    let mut f = fixture("reverse").await;
    // The last sidecar's hook takes a second: the others' hooks, started at the same time, end
    // long before its SIGTERM; had they waited for their turn, they would end after it.
    let sidecar = |name: &str| {
        let pause = if name == "third" { "sleep 1; " } else { "" };
        format!(
            r#"
  - name: {name}
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'echo {name}-term; exit 0' TERM; while :; do sleep 0.1; done"]
    lifecycle: {{preStop: {{exec: {{command: [sh, -c, "{pause}echo {name}-prestop > /proc/1/fd/1"]}}}}}}"#
        )
    };
    let yaml = format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: three}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 10
  initContainers:{}{}{}
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "sleep 0.5"]
"#,
        sidecar("first"),
        sidecar("second"),
        sidecar("third")
    );
    let p = f.node.run_pod(pod(&yaml));
    let status = f.finish(&p, LIMIT).await;
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{}", f.dump());
    let stop = |n: &str| f.index(signalled(n, "SIGTERM")).unwrap_or_else(|| panic!("{n} got no SIGTERM: {}", f.dump()));
    let exit = |n: &str| f.index(exited(n)).unwrap();
    let hook = |n: &str| {
        f.index(|w| matches!(w, What::Handler { container, handler, .. } if container == n && handler == "preStop"))
            .unwrap_or_else(|| panic!("{n} ran no preStop: {}", f.dump()))
    };
    for n in ["first", "second", "third"] {
        assert!(exit("app") < hook(n) && hook(n) < stop(n), "{n}: {}", f.dump());
    }
    assert!(hook("first") < stop("third") && hook("second") < stop("third"), "hooks start together: {}", f.dump());
    assert!(stop("third") < exit("third") && exit("third") < stop("second"), "{}", f.dump());
    assert!(stop("second") < exit("second") && exit("second") < stop("first"), "{}", f.dump());
    assert!(stop("first") < exit("first"));
    assert_eq!(f.lines("third"), ["third-prestop", "third-term"], "the hook ran in the container before SIGTERM");
    for n in ["first", "second", "third"] {
        assert_eq!(terminated(&status, n).exit_code, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
/// R22: the sidecar stays Waiting in ImagePullBackOff and gates everything after it.
async fn r22_a_missing_image_backs_off_and_nothing_after_it_starts() {
    let mut f = fixture("pullbackoff").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  initContainers:
  - name: proxy
    image: registry.invalid/nothing:1
    restartPolicy: Always
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "echo should-not-run"]
"#));
    let backoff = |s: &[podvisor_node::NodeEvent]| {
        s.iter().any(|e| matches!(&e.what, What::Event { reason, .. } if reason == "BackOff"))
    };
    assert!(f.until(Duration::from_secs(15), backoff).await, "{}", f.dump());
    // The status is published after the events of the same step: it is waited for.
    let reason = |st: &k8s_openapi::api::core::v1::PodStatus| {
        let proxy = st.init_container_statuses.iter().flatten().find(|c| c.name == "proxy")?;
        proxy.state.as_ref()?.waiting.as_ref()?.reason.clone()
    };
    let mut watch = p.watch();
    let seen = tokio::time::timeout(
        Duration::from_secs(5),
        watch.wait_for(|s| reason(&s.status).as_deref() == Some("ImagePullBackOff")),
    )
    .await;
    assert!(seen.is_ok_and(|r| r.is_ok()), "{:?}", reason(&p.status()));
    let failed = f
        .seen
        .iter()
        .find_map(|e| match &e.what {
            What::Event { reason, message, .. } if reason == "Failed" => Some(message.clone()),
            _ => None,
        })
        .expect("a Failed event for the pull");
    assert!(failed.contains("registry.invalid/nothing:1"), "{failed}");
    assert!(f.index(started("app")).is_none(), "the app started behind an unstarted sidecar");
    // The app is created ahead (the runtime's `create`: its process waits to be started) while
    // the sidecar cannot start; it never runs, and the pod's end removes it with its log file.
    let uid = p.pod().metadata.uid.clone().unwrap();
    let state = f.dir.join("data").join("runc");
    let in_runtime = || -> Vec<String> {
        let entries = std::fs::read_dir(&state).into_iter().flatten().flatten();
        entries.map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(&uid)).collect()
    };
    let made = format!("podvisor-{uid}-app-0");
    for _ in 0..50 {
        if in_runtime().contains(&made) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(in_runtime(), [made], "the app was made ahead, and nothing else");
    let logs = podvisor_node::log_dir(&f.dir.join("data"), p.pod());
    assert!(logs.join("app").exists(), "its log file exists once it is created");
    p.delete(Some(0));
    f.finish(&p, LIMIT).await;
    assert_eq!(in_runtime(), Vec::<String>::new(), "the container made ahead is gone from the runtime");
    assert!(!logs.join("app").exists(), "no log is left for a container that never started");
    assert!(f.index(started("app")).is_none() && lines_in(&f.seen, "app").is_empty(), "{}", f.dump());
}

/// R16/R18 on real probes: a sidecar's tcpSocket startupProbe gates the app; an httpGet
/// readinessProbe that fails (404) only keeps the pod not Ready, with the kubelet's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r18_a_tcp_startup_probe_gates_the_app_and_a_failing_http_readiness_probe_does_not() {
    let mut f = fixture("probes").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: web
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "sleep 1; mkdir /www; echo ok > /www/index.html; exec httpd -f -p 8080 -h /www"]
    startupProbe: {tcpSocket: {port: 8080}, periodSeconds: 1, failureThreshold: 10}
    readinessProbe: {httpGet: {path: /missing, port: 8080}, periodSeconds: 1}
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "wget -q -O - http://127.0.0.1:8080/index.html; trap 'exit 0' TERM; while :; do sleep 0.1; done"]
"#));
    let unhealthy = |s: &[podvisor_node::NodeEvent]| -> Vec<String> {
        s.iter()
            .filter_map(|e| match &e.what {
                What::Event { reason, message, .. } if reason == "Unhealthy" => Some(message.clone()),
                _ => None,
            })
            .collect()
    };
    let readiness_failed = "Readiness probe failed: HTTP probe failed with statuscode: 404".to_string();
    // The app's output may come before its start is reported (the process runs before runc
    // returns): both are waited for.
    let ok = f
        .until(LIMIT, |s| {
            unhealthy(s).contains(&readiness_failed)
                && lines_in(s, "app") == ["ok"]
                && s.iter().any(|e| started("app")(&e.what))
        })
        .await;
    assert!(ok, "{}", f.dump());
    assert_eq!(
        unhealthy(&f.seen)[0],
        "Startup probe failed: dial tcp 127.0.0.1:8080: connect: connection refused",
        "the server needs a second before it listens"
    );
    let first_pass = f.index(started("app")).unwrap();
    assert!(
        f.seen[..first_pass]
            .iter()
            .any(|e| matches!(&e.what, What::Event { message, .. } if message.starts_with("Startup probe failed"))),
        "the app waited through the startup probe's failures"
    );
    assert_eq!(f.lines("app"), ["ok"], "the app started only once the server accepted connections");
    let st = p.status();
    let ready = st.conditions.iter().flatten().find(|c| c.type_ == "Ready").map(|c| c.status.clone());
    assert_eq!(ready.as_deref(), Some("False"), "the failing readiness probe keeps the pod not Ready");
    assert!(f.index(exited("app")).is_none());
    p.delete(None);
    f.finish(&p, LIMIT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_dir_past_its_size_limit_evicts_the_pod() {
    let mut f = fixture("sizelimit").await;
    let p = f.node.run_pod(pod(r#"
apiVersion: v1
kind: Pod
metadata: {name: hoarder}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 30
  volumes: [{name: cache, emptyDir: {sizeLimit: 1Mi}}, {name: other, emptyDir: {}}]
  initContainers:
  - name: filler
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; dd if=/dev/zero of=/other/big bs=1k count=2048 2>/dev/null; dd if=/dev/zero of=/cache/a bs=1k count=512 2>/dev/null; sync; echo half; sleep 1; mkdir /cache/d; dd if=/dev/zero of=/cache/d/b bs=1k count=1024 2>/dev/null; sync; echo over; while :; do sleep 0.1; done"]
    volumeMounts: [{name: cache, mountPath: /cache}, {name: other, mountPath: /other}]
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap '' TERM; while :; do sleep 0.1; done"]
"#));
    // The app ignores SIGTERM: only the eviction's 1 s grace (and the 2 s minimum), not the
    // pod's 30 s, lets the pod end this soon.
    let status = f.finish(&p, Duration::from_secs(15)).await;
    let message = "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". ";
    assert_eq!(status.phase.as_deref(), Some("Failed"), "{}", f.dump());
    assert_eq!((status.reason.as_deref(), status.message.as_deref()), (Some("Evicted"), Some(message)));
    let evicted = |w: &What| matches!(w, What::Event { reason, message: m, .. } if reason == "Evicted" && m == message);
    assert!(f.index(evicted).is_some(), "{}", f.dump());
    assert_eq!(
        f.lines("filler"),
        ["half", "over"],
        "half the limit did not evict; an unlimited volume counts for nothing"
    );
    assert_eq!(terminated(&status, "app").exit_code, 137, "killed after the eviction's grace");
    assert_eq!(terminated(&status, "filler").exit_code, 0, "the sidecar handled SIGTERM");
    // The sidecar waits for the app at most the 1 s of grace (R42), so it is signalled before
    // the app, which ignores SIGTERM, is killed.
    let (app_term, filler_term) = (f.index(signalled("app", "SIGTERM")), f.index(signalled("filler", "SIGTERM")));
    assert!(app_term < filler_term && filler_term < f.index(exited("app")), "{}", f.dump());
    let restarts: Vec<i32> = status.container_statuses.iter().flatten().map(|c| c.restart_count).collect();
    assert_eq!(restarts, [0], "an evicted pod is not restarted, whatever its restart policy");
}
