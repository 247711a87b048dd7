//! `podvisor serve` driven by the real kubectl, end to end on real containers: the seed Job
//! flow (apply, wait, get, describe, logs, delete), a sidecar image change (R69), a Deployment,
//! a refused manifest, a wrong token, a daemon killed with SIGKILL and started again, and the
//! typed commands that send protobuf (`kubectl create configmap|secret|deployment|job`, `run`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    dir: PathBuf,
    /// The options of `serve` beyond the data directory and address.
    options: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGINT: the server stops its containers before it exits.
        let _ = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A data directory with busybox:1.36 and alpine:latest loaded.
fn data_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podvisor-kubectl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/load-test-image");
    let out = Command::new(script).arg(dir.join("data")).output().expect("runs the script");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// Starts `podvisor serve` on a free port; returns once it is listening.
fn serve(dir: &Path) -> Server {
    serve_with(dir, &[])
}

/// The same, with more options.
fn serve_with(dir: &Path, options: &[&str]) -> Server {
    serve_under(dir, options, Command::new(env!("CARGO_BIN_EXE_podvisor")))
}

/// The same, started by `command` (podvisor itself, or a wrapper such as `prlimit` that runs it).
fn serve_under(dir: &Path, options: &[&str], mut command: Command) -> Server {
    let mut child = command
        .args(["--data-dir", dir.join("data").to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .args(options)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("serve starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("reads");
    assert!(first.starts_with("podvisor: serving the Kubernetes API at https://127.0.0.1:"), "{first}");
    std::thread::spawn(move || for _ in lines {});
    Server { child, dir: dir.to_path_buf(), options: options.iter().map(|o| o.to_string()).collect() }
}

impl Server {
    /// Stops the server with SIGINT (it stops its containers) and starts it again on the same
    /// data directory.
    fn restart(self) -> Server {
        self.signal_and_start("-INT")
    }

    /// Stops a server started with `--leave-pods-running` with SIGTERM, as a service manager
    /// stops it, and starts it again. Its containers live on.
    fn leave(self) -> Server {
        self.signal_and_start("-TERM")
    }

    fn signal_and_start(self, signal: &str) -> Server {
        let (dir, options) = self.stop_with(signal);
        serve_with(&dir, &options.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Stops the server with `signal`, keeping its data directory; returns it and the options
    /// to start the server again with.
    fn stop_with(mut self, signal: &str) -> (PathBuf, Vec<String>) {
        let _ = Command::new("kill").args([signal, &self.child.id().to_string()]).status();
        let status = self.child.wait().expect("the server ends");
        assert!(status.success(), "the server stops cleanly: {status}");
        let kept = (self.dir.clone(), self.options.clone());
        std::mem::forget(self);
        kept
    }

    /// Kills the server with SIGKILL, as a crash would, and starts it again on the same data
    /// directory. Its containers live on.
    fn crash(mut self) -> Server {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.start_again()
    }

    fn start_again(self) -> Server {
        let (dir, options) = (self.dir.clone(), self.options.clone());
        std::mem::forget(self);
        serve_with(&dir, &options.iter().map(String::as_str).collect::<Vec<_>>())
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.dir.join("data/serve/kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.join("kube-cache"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(text) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("writes");
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("waits");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    }

    /// kubectl that must succeed; its standard output.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (code, out, err) = self.kubectl(args, stdin);
        assert_eq!(code, 0, "kubectl {args:?}: {out}{err}");
        out
    }
}

/// seed002-1 with a 2 s grace instead of 30 s, so that the test is quick.
fn seed_job() -> String {
    let seed = include_str!("../../../../shared/seed-manifests/seed002-1.yaml");
    seed.replace("      restartPolicy: Never\n", "      restartPolicy: Never\n      terminationGracePeriodSeconds: 2\n")
}

const SIDECAR_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: side
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
"#;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: myapp}
spec:
  replicas: 2
  selector: {matchLabels: {app: myapp}}
  template:
    metadata: {labels: {app: myapp}}
    spec:
      terminationGracePeriodSeconds: 2
      initContainers:
      - name: logshipper
        image: alpine:latest
        restartPolicy: Always
        command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
      containers:
      - name: myapp
        image: alpine:latest
        command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
"#;

fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().collect()).unwrap_or_default()
}

#[test]
fn the_seed_job_flow_through_the_real_kubectl() {
    let dir = data_dir("seed");
    let server = serve(&dir);
    let job = seed_job();
    assert_eq!(server.ok(&["apply", "-f", "-"], Some(&job)).trim(), "job.batch/sidecar-job created");
    let out = server.ok(&["wait", "--for=condition=complete", "job/sidecar-job", "--timeout=60s"], None);
    assert_eq!(out.trim(), "job.batch/sidecar-job condition met");
    let pods = server.ok(&["get", "pods"], None);
    let r = row(&pods, "sidecar-job-");
    assert_eq!(&r[1..4], ["0/2", "Completed", "0"], "{pods}");
    let jobs = server.ok(&["get", "jobs"], None);
    assert_eq!(&row(&jobs, "sidecar-job")[1..3], ["Complete", "1/1"], "{jobs}");
    let described = server.ok(&["describe", "pod", "-l", "job-name=sidecar-job"], None);
    let init = described.find("Init Containers:").expect("init containers listed");
    let shipper = described.find("  log-shipper:").expect("the sidecar is listed");
    let containers = described.find("\nContainers:").expect("containers listed");
    assert!(init < shipper && shipper < containers, "{described}");
    assert!(described.contains("Exit Code:    137"), "the shell sidecar ignored SIGTERM: {described}");
    assert!(described.contains("Started container log-shipper"), "{described}");
    assert!(described.contains("Stopping container log-shipper"), "{described}");
    let sidecar = server.ok(
        &[
            "get",
            "pod",
            "-l",
            "job-name=sidecar-job",
            "-o",
            "jsonpath={.items[0].spec.initContainers[0].restartPolicy}",
        ],
        None,
    );
    assert_eq!(sidecar, "Always");
    let logs = server.ok(&["logs", "job/sidecar-job"], None);
    assert_eq!(logs, "task done\n");

    // Killed without a chance to clean up, the daemon comes back with every object and event.
    let events_before = server.ok(&["get", "events", "-o", "name"], None);
    let mut server = server;
    let _ = Command::new("kill").args(["-KILL", &server.child.id().to_string()]).status();
    let _ = server.child.wait();
    std::mem::forget(server);
    let server = serve(&dir);
    assert_eq!(server.ok(&["get", "events", "-o", "name"], None), events_before);
    assert_eq!(&row(&server.ok(&["get", "jobs"], None), "sidecar-job")[1..3], ["Complete", "1/1"]);

    let out = server.ok(&["delete", "job", "sidecar-job"], None);
    assert!(out.starts_with("job.batch \"sidecar-job\" deleted"), "{out}");
    let mut gone = false;
    for _ in 0..50 {
        let (_, out, err) = server.kubectl(&["get", "pods,jobs"], None);
        if out.is_empty() && err.contains("No resources found") {
            gone = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(gone, "the job's pod is garbage-collected with it");

    // A refused manifest: the API server's message, and nothing created.
    let bad = "apiVersion: v1\nkind: Pod\nmetadata: {name: bad}\nspec:\n  initContainers:\n  - {name: s, image: busybox, restartPolicy: Never}\n  containers:\n  - {name: a, image: busybox}\n";
    let (code, _, err) = server.kubectl(&["apply", "-f", "-"], Some(bad));
    assert_eq!(code, 1);
    assert!(
        err.contains(r#"The Pod "bad" is invalid: spec.initContainers[0].restartPolicy: Unsupported value: "Never": supported values: "Always""#),
        "{err}"
    );
    assert_eq!(server.kubectl(&["get", "pod", "bad"], None).0, 1);

    // No token, no API.
    let (code, _, err) = server.kubectl(&["--token", "wrong", "get", "pods"], None);
    assert_eq!(code, 1);
    assert!(err.contains("You must be logged in to the server"), "{err}");
}

#[test]
fn r69_a_changed_sidecar_image_restarts_only_the_sidecar_and_deployments_run_2_of_2() {
    let dir = data_dir("r69");
    let server = serve(&dir);
    // `get pods -w` streams every transition from here on.
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", dir.join("data/serve/kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kube-cache-watch"))
        .args(["get", "pods", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let changed = SIDECAR_POD.replacen("image: busybox:1.36", "image: alpine:latest", 1);
    assert_eq!(server.ok(&["apply", "-f", "-"], Some(&changed)).trim(), "pod/web configured");
    assert_eq!(server.ok(&["apply", "-f", "-"], Some(&changed)).trim(), "pod/web unchanged");
    let statuses = "{range .status.initContainerStatuses[*]}{.name}={.image}/{.restartCount} {end}{range .status.containerStatuses[*]}{.name}={.image}/{.restartCount}{end}";
    let mut last = String::new();
    for _ in 0..100 {
        last = server.ok(&["get", "pod", "web", "-o", &format!("jsonpath={statuses}")], None);
        if last == "side=alpine:latest/1 app=busybox:1.36/0" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(last, "side=alpine:latest/1 app=busybox:1.36/0");

    server.ok(&["apply", "-f", "-"], Some(DEPLOYMENT));
    server.ok(&["wait", "--for=condition=Available", "deployment/myapp", "--timeout=30s"], None);
    let mut pods = String::new();
    for _ in 0..100 {
        pods = server.ok(&["get", "pods", "-l", "app=myapp"], None);
        if pods.lines().filter(|l| l.contains(" 2/2 ") && l.contains("Running")).count() == 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(pods.lines().filter(|l| l.contains(" 2/2 ") && l.contains("Running")).count(), 2, "{pods}");
    // `alpine:latest` is pulled at every start (Always); offline, the local copy runs, said once.
    let messages = server.ok(&["get", "events", "-o", "jsonpath={.items[*].message}"], None);
    assert!(messages.matches("running the copy in the local image store").count() <= 1, "{messages}");
    // A deleted pod is replaced while it terminates.
    let victim = row(&pods, "myapp-")[0].to_string();
    server.ok(&["delete", "pod", &victim], None);
    let after = server.ok(&["get", "pods", "-l", "app=myapp", "-o", "name"], None);
    assert_eq!(after.lines().count(), 2, "{after}");
    assert!(!after.contains(&victim), "{after}");
    server.ok(&["delete", "deployment", "myapp"], None);
    server.ok(&["delete", "pod", "web"], None);
    let _ = watch.kill();
    let streamed = String::from_utf8_lossy(&watch.wait_with_output().expect("waits").stdout).into_owned();
    let rows = streamed.lines().filter(|l| !l.starts_with("NAME"));
    assert!(rows.clone().all(|l| l.split_whitespace().count() >= 5), "every row has a STATUS: {streamed}");
    let web: Vec<Vec<&str>> =
        streamed.lines().filter(|l| l.starts_with("web ")).map(|l| l.split_whitespace().collect()).collect();
    let states: Vec<String> = web.iter().map(|r| format!("{} {}", r[1], r[2])).collect();
    let at = |s: &str| states.iter().position(|x| x == s).unwrap_or_else(|| panic!("no {s:?} in {streamed}"));
    // The watch may begin after the pod did; from its first row on, every change is streamed.
    assert!(at("2/2 Running") > 0, "{streamed}");
    let terminating = states.iter().position(|x| x.ends_with("Terminating"));
    assert!(terminating.is_some_and(|t| t > at("2/2 Running")), "{streamed}");
}

/// The node's containers stop with the server, so its pods lost their sandbox: R73 and R74 as
/// after a reboot. An `Always` pod starts over from its sidecar with its restart counts going
/// on; a `Never` pod that ran is not run again and ends Failed, its container unknown.
#[test]
fn pods_stopped_with_the_server_resume_as_after_a_reboot_r73_r74() {
    let dir = data_dir("restart");
    let server = serve(&dir);
    let once = SIDECAR_POD
        .replace("name: web", "name: once")
        .replace("  terminationGracePeriodSeconds", "  restartPolicy: Never\n  terminationGracePeriodSeconds");
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["apply", "-f", "-"], Some(&once));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "pod/once", "--timeout=30s"], None);
    let server = server.restart();
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let counts = "{range .status.initContainerStatuses[*]}{.name}/{.restartCount} {end}{range .status.containerStatuses[*]}{.name}/{.restartCount}{end}";
    let web = server.ok(&["get", "pod", "web", "-o", &format!("jsonpath={counts}")], None);
    assert_eq!(web, "side/1 app/1", "R74: the counts go on");
    let pods = server.ok(&["get", "pods"], None);
    assert_eq!(&row(&pods, "web")[1..4], ["2/2", "Running", "2"], "{pods}");
    server.ok(&["wait", "--for=jsonpath={.status.phase}=Failed", "pod/once", "--timeout=30s"], None);
    let app = "{.status.containerStatuses[0].state.terminated.exitCode}/{.status.containerStatuses[0].state.terminated.reason}/{.status.containerStatuses[0].restartCount}";
    let once = server.ok(&["get", "pod", "once", "-o", &format!("jsonpath={app}")], None);
    assert_eq!(once, "137/ContainerStatusUnknown/0", "R73: a Never pod is not run again");
    server.ok(&["delete", "pod", "web", "once"], None);
}

/// R75: a server killed with SIGKILL loses no object and no event, and its pods' containers,
/// which outlived it, are taken over when it starts again: the same container IDs, no restart,
/// the log going on without a gap, and a deletion that stops them in order. A server asked to
/// leave its pods running does the same when stopped with SIGTERM, as a kubelet restarts.
#[test]
fn a_server_killed_with_sigkill_takes_its_running_containers_over_r75() {
    let dir = data_dir("crash");
    let server = serve_with(&dir, &["--leave-pods-running"]);
    let ticker = SIDECAR_POD.replace("name: web", "name: ticker").replace(
        "command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']\n  containers:",
        "command: [sh, -c, 'trap \"exit 0\" TERM; i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.2; done']\n  containers:",
    );
    assert!(ticker.contains("echo tick"), "{ticker}");
    server.ok(&["apply", "-f", "-"], Some(&ticker));
    server.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=30s"], None);
    let ids = "{range .status.initContainerStatuses[*]}{.name}={.containerID}/{.restartCount} {end}{range .status.containerStatuses[*]}{.name}={.containerID}/{.restartCount}{end}";
    let ids = format!("jsonpath={ids}");
    let before = server.ok(&["get", "pod", "ticker", "-o", &ids], None);
    let ip = server.ok(&["get", "pod", "ticker", "-o", "jsonpath={.status.podIP}"], None);
    assert!(ip.starts_with("10.244."), "an address on the pod network: {ip}");
    let events = |s: &Server| {
        let out = s.ok(&["get", "events", "-o", "jsonpath={range .items[*]}{.metadata.name}{\"\\n\"}{end}"], None);
        out.lines().map(str::to_string).collect::<std::collections::BTreeSet<_>>()
    };
    let events_before = events(&server);
    assert!(!events_before.is_empty());

    let server = server.crash();
    server.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=30s"], None);
    assert_eq!(server.ok(&["get", "pod", "ticker", "-o", &ids], None), before, "taken over, not restarted");
    let pods = server.ok(&["get", "pods"], None);
    assert_eq!(&row(&pods, "ticker")[1..4], ["2/2", "Running", "0"], "{pods}");
    let wide = server.ok(&["get", "pods", "-o", "wide"], None);
    assert_eq!(row(&wide, "ticker")[5], ip, "the address stays with the sandbox: {wide}");
    assert!(events(&server).is_superset(&events_before), "no event is lost");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let log = server.ok(&["logs", "ticker", "-c", "side"], None);
    let ticks: Vec<u32> = log.lines().filter_map(|l| l.strip_prefix("tick ")?.parse().ok()).collect();
    assert!(ticks.len() > 3 && ticks.iter().enumerate().all(|(i, n)| *n == i as u32 + 1), "one run, no gap: {log}");

    let server = server.leave();
    server.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=30s"], None);
    assert_eq!(server.ok(&["get", "pod", "ticker", "-o", &ids], None), before, "taken over again, not restarted");

    // #24: `podvisor down` stops what a leaving server left running, app first, then the
    // sidecar, each with its signal; the store keeps the pod, so the next server runs it again.
    let (kept, options) = server.stop_with("-TERM");
    let down = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["--data-dir", kept.join("data").to_str().unwrap(), "down"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&down.stdout).into_owned();
    assert!(down.status.success(), "{text}{}", String::from_utf8_lossy(&down.stderr));
    let pos = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle:?} missing from:\n{text}"));
    assert!(text.contains("stopping 1 pod(s) in order"), "{text}");
    assert!(pos("ticker: app sent SIGTERM") < pos("ticker: app exited 0"));
    assert!(pos("ticker: app exited 0") < pos("ticker: side sent SIGTERM"), "the sidecar stops last");
    let listed = Command::new("runc").arg("--root").arg(kept.join("data/runc")).args(["list", "-q"]).output();
    assert!(!String::from_utf8_lossy(&listed.unwrap().stdout).contains("podvisor-"), "nothing runs after down");
    let server = serve_with(&kept, &options.iter().map(String::as_str).collect::<Vec<_>>());
    server.ok(&["wait", "--for=condition=Ready", "pod/ticker", "--timeout=30s"], None);
    server.ok(&["delete", "pod", "ticker"], None);
    let listed = Command::new("runc").arg("--root").arg(dir.join("data/runc")).args(["list", "-q"]).output();
    let listed = String::from_utf8_lossy(&listed.expect("runc lists").stdout).to_string();
    assert!(!listed.contains("podvisor-"), "the taken-over containers are gone: {listed}");
}

/// The request forms kubectl has beyond apply: a JSON patch (`--type=json`), each
/// `--validate` mode for an unknown field, and a watch with a label selector that sees an
/// object leave the selection as `DELETED`.
#[test]
fn json_patches_field_validation_and_watches_that_an_object_leaves() {
    let dir = data_dir("surface");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {a: '1'}\n"));
    let mut watch = Command::new("kubectl")
        .env("KUBECONFIG", dir.join("data/serve/kubeconfig"))
        .arg("--cache-dir")
        .arg(dir.join("kube-cache-watch"))
        .args(["get", "configmaps", "-l", "team=a", "-w", "--output-watch-events", "--no-headers"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl runs");
    let (tx, rx) = std::sync::mpsc::channel();
    let out = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || rx.recv_timeout(std::time::Duration::from_secs(10)).expect("a watch event");
    server.ok(&["label", "configmap", "c", "team=a"], None);
    assert_eq!(next().split_whitespace().take(2).collect::<Vec<_>>(), ["ADDED", "c"]);

    let patch = r#"[{"op": "replace", "path": "/data/a", "value": "2"},
                    {"op": "replace", "path": "/metadata/labels/team", "value": "b"}]"#;
    assert_eq!(server.ok(&["patch", "configmap", "c", "--type=json", "-p", patch], None).trim(), "configmap/c patched");
    assert_eq!(next().split_whitespace().take(2).collect::<Vec<_>>(), ["DELETED", "c"], "it left the selection");
    assert_eq!(server.ok(&["get", "configmap", "c", "-o", "jsonpath={.data.a}"], None), "2");
    let test = r#"[{"op": "test", "path": "/data/a", "value": "9"}, {"op": "remove", "path": "/data/a"}]"#;
    let (code, _, err) = server.kubectl(&["patch", "configmap", "c", "--type=json", "-p", test], None);
    assert_eq!(code, 1);
    // The API server's generic 422, whose one cause (with no field) kubectl prints.
    assert_eq!(err.trim(), "The request is invalid: : testing value /data/a failed: test failed");
    assert_eq!(server.ok(&["get", "configmap", "c", "-o", "jsonpath={.data.a}"], None), "2", "all or nothing");

    let bogus =
        |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}}}\ndata: {{k: v}}\nbogus: 1\n");
    let (code, _, err) = server.kubectl(&["apply", "-f", "-"], Some(&bogus("strict")));
    assert_eq!(code, 1, "kubectl asks for Strict by default");
    assert!(err.contains(r#"strict decoding error: unknown field "bogus""#), "{err}");
    let (code, out, err) = server.kubectl(&["apply", "--validate=warn", "-f", "-"], Some(&bogus("warned")));
    assert_eq!((code, out.trim(), err.trim()), (0, "configmap/warned created", r#"Warning: unknown field "bogus""#));
    let (code, out, err) = server.kubectl(&["apply", "--validate=false", "-f", "-"], Some(&bogus("ignored")));
    assert_eq!((code, out.trim(), err.trim()), (0, "configmap/ignored created", ""));
    assert_eq!(server.ok(&["get", "configmap", "ignored", "-o", "jsonpath={.data.k}"], None), "v");
    assert!(server.kubectl(&["get", "configmap", "strict"], None).0 != 0, "nothing was created");
    let _ = watch.kill();
    let _ = watch.wait();
}

#[test]
fn typed_create_commands_send_protobuf_and_are_understood() {
    let dir = data_dir("typed");
    let server = serve(&dir);
    assert_eq!(
        server.ok(&["create", "configmap", "settings", "--from-literal=mode=fast"], None).trim(),
        "configmap/settings created"
    );
    assert_eq!(server.ok(&["get", "configmap", "settings", "-o", "jsonpath={.data.mode}"], None), "fast");
    server.ok(&["create", "secret", "generic", "token", "--from-literal=key=hunter2", "--from-literal=empty="], None);
    assert_eq!(
        server.ok(&["get", "secret", "token", "-o", "jsonpath={.data}"], None),
        r#"{"empty":"","key":"aHVudGVyMg=="}"#
    );
    server.ok(&["create", "namespace", "team"], None);
    assert_eq!(server.ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"], None), "Active");

    // replicas is a pointer: an explicit 0 is kept, not defaulted to 1.
    server.ok(&["create", "deployment", "idle", "--image=busybox:1.36", "--replicas=0"], None);
    assert_eq!(server.ok(&["get", "deployment", "idle", "-o", "jsonpath={.spec.replicas}"], None), "0");

    let run = ["run", "once", "--image=busybox:1.36", "--restart=Never", "--env=GREETING=hello", "--labels=tier=batch"];
    server.ok(&[&run[..], &["--", "sh", "-c", "echo $GREETING from run"]].concat(), None);
    server.ok(&["create", "job", "task", "--image=busybox:1.36", "--", "sh", "-c", "echo job done"], None);
    server.ok(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/once", "--timeout=30s"], None);
    server.ok(&["wait", "--for=condition=complete", "job/task", "--timeout=30s"], None);
    assert_eq!(server.ok(&["logs", "once"], None), "hello from run\n");
    assert_eq!(server.ok(&["logs", "job/task"], None), "job done\n");
    assert_eq!(server.ok(&["get", "pods", "-l", "tier=batch", "-o", "name"], None), "pod/once\n");
    assert_eq!(server.ok(&["get", "pods", "-l", "app=idle", "-o", "name"], None), "", "no replica was started");

    let (code, _, err) = server.kubectl(&["run", "Bad_Name", "--image=busybox:1.36"], None);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("The Pod \"Bad_Name\" is invalid: \n* metadata.name: Invalid value: \"Bad_Name\""),
        "{err}"
    );
}

#[test]
fn an_active_deadline_shortened_on_a_running_pod_ends_it_and_may_not_grow() {
    let dir = data_dir("deadline");
    let server = serve(&dir);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: long}
spec:
  activeDeadlineSeconds: 600
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, 'trap "exit 0" TERM; while true; do sleep 1; done']
"#;
    server.ok(&["apply", "-f", "-"], Some(pod));
    server.ok(&["wait", "--for=condition=Ready", "pod/long", "--timeout=30s"], None);
    let patch = |p: &str| server.kubectl(&["patch", "pod", "long", "--type=merge", "-p", p], None);
    let (code, _, err) = patch(r#"{"spec":{"activeDeadlineSeconds":900}}"#);
    assert_eq!(code, 1);
    assert!(
        err.contains("spec.activeDeadlineSeconds: Invalid value: 900: must be less than or equal to previous value"),
        "{err}"
    );
    let (code, _, err) = patch(r#"{"spec":{"activeDeadlineSeconds":null}}"#);
    assert_eq!(code, 1);
    assert!(err.contains("must not update from a positive integer to nil value"), "{err}");
    let (code, out, err) = patch(r#"{"spec":{"activeDeadlineSeconds":1}}"#);
    assert_eq!(code, 0, "{out}{err}");
    server.ok(&["wait", "--for=jsonpath={.status.phase}=Failed", "pod/long", "--timeout=30s"], None);
    assert_eq!(server.ok(&["get", "pod", "long", "-o", "jsonpath={.status.reason}"], None), "DeadlineExceeded");
    let events = server.ok(
        &["get", "events", "--field-selector", "involvedObject.name=long", "-o", "jsonpath={.items[*].reason}"],
        None,
    );
    assert!(events.contains("DeadlineExceeded"), "{events}");
}

#[test]
fn server_side_apply_owns_its_fields_removes_what_it_no_longer_applies_and_reports_conflicts() {
    let dir = data_dir("ssa");
    let server = serve(&dir);
    let cm = |name: &str, labels: &str, data: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, labels: {{{labels}}}}}\ndata: {{{data}}}\n")
    };
    let ssa = ["apply", "--server-side", "-f", "-"];
    let get = |name: &str, path: &str| server.ok(&["get", "configmap", name, "-o", &format!("jsonpath={path}")], None);
    server.ok(&ssa, Some(&cm("s", "a: '1', b: '2'", "one: '1', two: '2'")));
    server.ok(&ssa, Some(&cm("s", "a: '1'", "one: '3'")));
    assert_eq!(get("s", "{.data}"), r#"{"one":"3"}"#, "two is no longer applied");
    assert_eq!(get("s", "{.metadata.labels}"), r#"{"a":"1"}"#);
    assert_eq!(
        get("s", "{.metadata.managedFields[0].manager}/{.metadata.managedFields[0].operation}"),
        "kubectl/Apply"
    );

    server.ok(&["patch", "configmap", "s", "-p", r#"{"data":{"one":"9"}}"#], None);
    let (code, _, err) = server.kubectl(&ssa, Some(&cm("s", "a: '1'", "one: '3'")));
    assert_eq!(code, 1);
    assert!(
        err.starts_with(r#"error: Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.one"#),
        "{err}"
    );
    assert_eq!(get("s", "{.data.one}"), "9", "nothing changed");
    server.ok(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&cm("s", "a: '1'", "one: '3'")));
    assert_eq!(get("s", "{.data.one}"), "3");
    assert_eq!(get("s", "{.metadata.managedFields[*].manager}"), "kubectl", "the patcher owned only .data.one");

    // From client-side to server-side apply: kubectl takes its fields over without a conflict,
    // and what the new configuration leaves out goes.
    server.ok(&["apply", "-f", "-"], Some(&cm("c", "a: '1', b: '2'", "one: '1', two: '2'")));
    server.ok(&ssa, Some(&cm("c", "a: '1'", "one: '3'")));
    assert_eq!(get("c", "{.data}"), r#"{"one":"3"}"#);
    assert_eq!(get("c", "{.metadata.labels}"), r#"{"a":"1"}"#);
}

/// Issue: any local user became root through the kubeconfig, and read Secrets in the store,
/// in Secret volumes and in logs. The data directory is now root's alone, and the files that
/// hold secrets are private even inside it.
#[test]
fn no_other_user_reads_or_writes_the_data_directory() {
    use std::os::unix::fs::MetadataExt;
    let dir = data_dir("private");
    let server = serve(&dir);
    let pod = r#"
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {token: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: holder}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: sec, secret: {secretName: creds}}, {name: scratch, emptyDir: {}}]
  containers:
  - name: c
    image: busybox:1.36
    command: [sh, -c, 'cat /sec/token; echo; (echo x > /sec/token) 2>/dev/null && echo wrote || echo read-only; trap "exit 0" TERM; while true; do sleep 1; done']
    volumeMounts: [{name: sec, mountPath: /sec}, {name: scratch, mountPath: /scratch}]
"#;
    server.ok(&["apply", "-f", "-"], Some(pod));
    server.ok(&["wait", "--for=condition=Ready", "pod/holder", "--timeout=60s"], None);
    let mut logs = String::new();
    for _ in 0..50 {
        logs = server.ok(&["logs", "holder"], None);
        if logs.lines().count() >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs, "s3cret\nread-only\n", "a Secret volume is mounted read-only");
    let data = dir.join("data");
    let mode = |p: &Path| std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).mode() & 0o7777;
    assert_eq!(mode(&data), 0o700);
    for secret in ["serve/kubeconfig", "serve/token", "serve/server.key", "store.redb"] {
        assert_eq!(mode(&data.join(secret)), 0o600, "{secret}");
    }
    let logs_dir = data.join("logs");
    let mut log_files = 0;
    let mut stack = vec![logs_dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.path().extension().is_some_and(|x| x == "log") {
                log_files += 1;
                assert_eq!(mode(&e.path()) & 0o037, 0, "{} is 0640 or tighter", e.path().display());
            }
        }
    }
    assert!(log_files > 0);
    // As nobody: nothing under the data directory can be read, listed or written.
    let as_nobody = |script: &str| {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script])
            .arg("sh")
            .arg(&data)
            .output()
            .expect("setpriv runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let reachable = as_nobody(
        r#"cat "$1/serve/kubeconfig" "$1/serve/token" "$1/store.redb" 2>/dev/null | head -c 100; ls "$1" 2>/dev/null; touch "$1/planted" 2>/dev/null && echo planted; echo done"#,
    );
    assert_eq!(reachable, "done\n");
    assert!(!data.join("planted").exists());
    server.ok(&["delete", "pod", "holder", "--wait=true"], None);
    // A deleted pod's logs go with it, as the kubelet removes them.
    let left = || {
        std::fs::read_dir(data.join("logs"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("default_holder_")))
            .unwrap_or(false)
    };
    for _ in 0..50 {
        if !left() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!left(), "the logs of the deleted pod are removed");
}

/// Issue: a 1.5 GB body was read whole, idle and slow clients were held forever, the `default`
/// namespace and the node could be deleted, and a namespace named `../../x` was created. Now
/// the API server's limits and refusals apply, in its words.
#[test]
fn the_api_refuses_what_the_api_server_refuses_and_drops_idle_clients() {
    let dir = data_dir("limits");
    let server = serve(&dir);
    // 3 MiB is the most a request may carry.
    let big = dir.join("big");
    std::fs::write(&big, vec![b'x'; 4 * 1024 * 1024]).unwrap();
    let (code, _, err) =
        server.kubectl(&["create", "configmap", "big", &format!("--from-file={}", big.display())], None);
    assert_eq!(code, 1);
    assert!(err.contains("Request entity too large: limit is 3145728"), "{err}");
    let (code, _, err) = server.kubectl(&["delete", "namespace", "default"], None);
    assert_eq!(
        (code, err.trim()),
        (1, "Error from server (Forbidden): namespaces \"default\" is forbidden: this namespace may not be deleted")
    );
    // Nothing is created in a namespace that does not exist.
    let (code, _, err) =
        server.kubectl(&["create", "configmap", "settings", "-n", "ghost", "--from-literal=a=b"], None);
    assert_eq!((code, err.trim()), (1, "error: failed to create configmap: namespaces \"ghost\" not found"));
    // A namespace deleted is Terminating while what it holds goes (a pod with its grace),
    // takes nothing new, and goes once it is empty.
    server.ok(&["create", "namespace", "team"], None);
    server.ok(&["create", "configmap", "settings", "-n", "team", "--from-literal=a=b"], None);
    let slow = "apiVersion: v1\nkind: Pod\nmetadata: {name: slow, namespace: team}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers: [{name: c, image: busybox:1.36, command: [sh, -c, 'trap \"\" TERM; sleep 600']}]\n";
    server.ok(&["apply", "-f", "-"], Some(slow));
    server.ok(&["wait", "--for=condition=Ready", "pod/slow", "-n", "team", "--timeout=60s"], None);
    server.ok(&["delete", "namespace", "team", "--wait=false"], None);
    let phase = server.ok(&["get", "namespace", "team", "-o", "jsonpath={.status.phase}"], None);
    assert_eq!(phase, "Terminating");
    let (code, _, err) = server.kubectl(&["create", "configmap", "more", "-n", "team", "--from-literal=a=b"], None);
    assert_eq!(code, 1);
    assert!(err.contains("because it is being terminated"), "{err}");
    server.ok(&["wait", "--for=delete", "namespace/team", "--timeout=60s"], None);
    let (code, _, err) = server.kubectl(&["get", "configmap", "settings", "-n", "team"], None);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = server.kubectl(&["create", "namespace", "Bad_Name"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "Namespace \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        ),
        "{err}"
    );
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: ../../x}\nspec: {containers: [{name: c, image: busybox:1.36}]}\n";
    let (code, _, err) = server.kubectl(&["create", "-f", "-"], Some(pod));
    assert_eq!(code, 1, "{err}");
    // The node, deleted, registers again, as a kubelet does.
    let node = server.ok(&["get", "nodes", "-o", "name"], None);
    server.ok(&["delete", node.trim()], None);
    assert_eq!(server.ok(&["get", "nodes", "-o", "name"], None), node);
    // A client without the token is answered 401 and holds no connection.
    let address = std::fs::read_to_string(dir.join("data/serve/address")).unwrap();
    let head = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-D",
            "-",
            "-H",
            "Authorization: Bearer wrong",
            &format!("{}/api", address.trim()),
        ])
        .output()
        .expect("curl runs");
    let head = String::from_utf8_lossy(&head.stdout).to_lowercase();
    assert!(head.starts_with("http/1.1 401") && head.contains("connection: close"), "{head}");
    // The health endpoints answer anyone, as the API server's do; nothing else does.
    let anonymous = |path: &str| {
        let out = Command::new("curl").args(["-sk", &format!("{}{path}", address.trim())]).output().expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(anonymous("/healthz"), "ok");
    assert_eq!(anonymous("/livez/ping"), "ok");
    assert_eq!(anonymous("/readyz?verbose"), "[+]ping ok\n[+]log ok\n[+]etcd ok\nreadyz check passed\n");
    assert!(anonymous("/api").contains("Unauthorized"));
    assert_eq!(server.ok(&["get", "--raw", "/livez"], None), "ok");
    // Clients that connect and send nothing are dropped after the API server's 32 s, however
    // many there are, and the server answers others meanwhile and after.
    let address = std::fs::read_to_string(dir.join("data/serve/address")).unwrap();
    let addr = address.trim().trim_start_matches("https://").to_string();
    // And one that completes its handshake but never finishes its headers (`-quiet` ignores
    // the end of its input: only the server can end it).
    let mut slow = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl runs");
    {
        use std::io::Write;
        let stdin = slow.stdin.as_mut().expect("stdin");
        stdin.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n").expect("writes");
    }
    let idle: Vec<std::net::TcpStream> = (0..300).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert_eq!(idle.len(), 300);
    let started = std::time::Instant::now();
    let closed = idle
        .iter()
        .filter(|c| {
            use std::io::Read;
            c.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
            // 0 bytes or a reset: the server closed it; a time-out: it held it.
            !matches!((&mut &**c).read(&mut [0u8; 16]), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
        })
        .count();
    assert_eq!(closed, 300, "every idle client was dropped");
    assert!(started.elapsed() < std::time::Duration::from_secs(45), "{:?}", started.elapsed());
    let mut ended = None;
    for _ in 0..100 {
        ended = slow.try_wait().expect("waits");
        if ended.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if ended.is_none() {
        let _ = slow.kill();
    }
    let answer = slow.wait_with_output().expect("openssl ends").stdout;
    assert!(ended.is_some(), "the client with unfinished headers was dropped");
    assert!(answer.is_empty(), "and never answered: {}", String::from_utf8_lossy(&answer));
    assert_eq!(server.ok(&["get", "nodes", "-o", "name"], None), node, "the server still answers");
}

/// CPU time (user and system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process lives");
    // Fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Issue: at the file-descriptor limit the accept loop spun at full CPU. Now it backs off, and
/// serves again once connections close.
#[test]
fn out_of_descriptors_the_server_waits_instead_of_spinning() {
    let dir = data_dir("emfile");
    let mut prlimit = Command::new("prlimit");
    prlimit.args(["--nofile=256:256", "--", env!("CARGO_BIN_EXE_podvisor")]);
    let server = serve_under(&dir, &[], prlimit);
    let address = std::fs::read_to_string(dir.join("data/serve/address")).unwrap();
    let addr = address.trim().trim_start_matches("https://").to_string();
    let held: Vec<std::net::TcpStream> = (0..300).filter_map(|_| std::net::TcpStream::connect(&addr).ok()).collect();
    assert_eq!(held.len(), 300, "the kernel's backlog takes what the server cannot");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let before = cpu_ticks(server.child.id());
    std::thread::sleep(std::time::Duration::from_secs(2));
    let used = cpu_ticks(server.child.id()) - before;
    // A spinning loop burns a whole core: 200 ticks in 2 s.
    assert!(used < 40, "the server used {used} ticks of CPU in 2 s while out of descriptors");
    drop(held);
    assert!(server.ok(&["get", "nodes", "-o", "name"], None).starts_with("node/"), "it serves again");
}

/// Issue: `replicas: 1000000` made 161,839 pods in 10 s. The node runs at most `--max-pods`;
/// the others stay Pending with the scheduler's words and start as room comes; a pod bound to
/// the node beyond it is rejected as the kubelet rejects it.
#[test]
fn at_most_max_pods_run_and_the_rest_wait_as_the_scheduler_leaves_them() {
    let dir = data_dir("maxpods");
    let server = serve_with(&dir, &["--max-pods", "2"]);
    let pod = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: busybox:1.36, command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 1; done']}}\n"
        )
    };
    // The node says what it offers, as a kubelet does (describe node read 0 of nothing).
    assert_eq!(server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.allocatable.pods}"], None), "2");
    let described = server.ok(&["describe", "nodes"], None);
    assert!(!described.contains("-9223372036854775808"), "{described}");
    for name in ["a", "b"] {
        server.ok(&["apply", "-f", "-"], Some(&pod(name)));
    }
    server.ok(&["wait", "--for=condition=Ready", "pod/a", "pod/b", "--timeout=60s"], None);
    server.ok(&["apply", "-f", "-"], Some(&pod("c")));
    let mut reason = String::new();
    for _ in 0..50 {
        reason = server.ok(
            &["get", "pod", "c", "-o", "jsonpath={.status.conditions[0].reason}/{.status.conditions[0].message}"],
            None,
        );
        if !reason.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        reason,
        "Unschedulable/0/1 nodes are available: 1 Too many pods. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    let described = server.ok(&["describe", "pod", "c"], None);
    assert!(described.contains("FailedScheduling"), "{described}");
    assert_eq!(server.ok(&["get", "pod", "c", "-o", "jsonpath={.spec.nodeName}"], None), "", "not bound");
    // Bound to the node by its manifest: the kubelet's admission rejects it.
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    let bound = pod("d").replace("spec:\n", &format!("spec:\n  nodeName: {node}\n"));
    server.ok(&["apply", "-f", "-"], Some(&bound));
    let mut status = String::new();
    for _ in 0..50 {
        status =
            server.ok(&["get", "pod", "d", "-o", "jsonpath={.status.phase}/{.status.reason}/{.status.message}"], None);
        if status.starts_with("Failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        status,
        "Failed/OutOfpods/Pod was rejected: Node didn't have enough resource: pods, requested: 1, used: 2, capacity: 2"
    );
    // Room comes when a pod is deleted: the waiting pod runs.
    server.ok(&["delete", "pod", "a", "--wait=true"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/c", "--timeout=60s"], None);
    // And when a pod ends on its own, without being deleted.
    let ends = "apiVersion: v1\nkind: Pod\nmetadata: {name: e}\nspec:\n  restartPolicy: Never\n  containers:\n  - {name: c, image: busybox:1.36, command: [sh, -c, 'sleep 2']}\n";
    server.ok(&["apply", "-f", "-"], Some(&ends.replace("name: e", "name: f")));
    server.ok(&["apply", "-f", "-"], Some(ends));
    server.ok(&["delete", "pod", "b", "--wait=true"], None);
    server.ok(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/f", "--timeout=60s"], None);
    server.ok(&["wait", "--for=jsonpath={.status.phase}=Succeeded", "pod/e", "--timeout=60s"], None);
    server.ok(&["delete", "pod", "c", "d", "e", "f", "--wait=true"], None);
}

/// Issue: a pod with a finalizer was removed as soon as its containers stopped. The API server
/// keeps it, with its final status and a deletionTimestamp, until the finalizer is removed.
#[test]
fn a_pod_with_a_finalizer_stays_until_the_finalizer_is_removed() {
    let dir = data_dir("finalizer");
    let server = serve(&dir);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: kept, finalizers: [example.com/keep]}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {name: c, image: busybox:1.36, command: [sh, -c, 'trap \"exit 0\" TERM; sleep 600 & wait']}\n";
    server.ok(&["apply", "-f", "-"], Some(pod));
    server.ok(&["wait", "--for=condition=Ready", "pod/kept", "--timeout=60s"], None);
    server.ok(&["delete", "pod", "kept", "--wait=false"], None);
    let mut phase = String::new();
    for _ in 0..100 {
        phase = server.ok(&["get", "pod", "kept", "-o", "jsonpath={.status.phase}"], None);
        if phase == "Succeeded" || phase == "Failed" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(phase, "Succeeded", "the containers stopped and the final status is kept");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let deleting = server.ok(&["get", "pod", "kept", "-o", "jsonpath={.metadata.deletionTimestamp}"], None);
    assert!(!deleting.is_empty(), "still there, being deleted");
    server
        .ok(&["patch", "pod", "kept", "--type=json", "-p", r#"[{"op":"remove","path":"/metadata/finalizers"}]"#], None);
    let (code, _, err) = server.kubectl(&["get", "pod", "kept"], None);
    assert_eq!(code, 1, "gone once the finalizer is: {err}");
    assert!(err.contains("NotFound"), "{err}");
}

/// Issue: emptyDir contents were lost when pods resumed as after a reboot (R73, R74). The
/// kubelet keeps a pod's on-disk emptyDir across a reboot: the containers start over, the
/// files are still there.
#[test]
fn an_empty_dir_keeps_its_files_when_the_pod_resumes_as_after_a_reboot_r74() {
    let dir = data_dir("emptydir-reboot");
    let server = serve(&dir);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: keeper}\nspec:\n  terminationGracePeriodSeconds: 1\n  volumes: [{name: data, emptyDir: {}}]\n  containers:\n  - name: c\n    image: busybox:1.36\n    command: [sh, -c, 'echo run >> /data/runs; echo \"runs: $(wc -l < /data/runs)\"; trap \"exit 0\" TERM; while true; do sleep 1; done']\n    volumeMounts: [{name: data, mountPath: /data}]\n";
    server.ok(&["apply", "-f", "-"], Some(pod));
    server.ok(&["wait", "--for=condition=Ready", "pod/keeper", "--timeout=30s"], None);
    let server = server.restart();
    server.ok(&["wait", "--for=condition=Ready", "pod/keeper", "--timeout=30s"], None);
    let mut logs = String::new();
    for _ in 0..50 {
        logs = server.ok(&["logs", "keeper"], None);
        if !logs.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(logs.trim(), "runs: 2", "the second run finds the first one's file");
    server.ok(&["delete", "pod", "keeper"], None);
}

/// `kubectl exec` over WebSocket (v5.channel.k8s.io): output, an exit code as against a
/// cluster, standard input, `-c` into a sidecar, and the API server's words for a container
/// the pod does not have.
#[test]
fn kubectl_exec_runs_in_the_container_and_returns_its_exit_code() {
    let dir = data_dir("exec");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let (code, out, err) =
        server.kubectl(&["exec", "web", "-c", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 3"], None);
    assert_eq!((code, out.as_str()), (3, "out\n"), "{err}");
    assert!(err.contains("err\n") && err.contains("command terminated with exit code 3"), "{err}");
    let echoed =
        server.ok(&["exec", "-i", "web", "-c", "app", "--", "sh", "-c", "tr a-z A-Z"], Some("hello from stdin\n"));
    assert_eq!(echoed, "HELLO FROM STDIN\n");
    let host = server.ok(&["exec", "web", "-c", "side", "--", "cat", "/etc/hostname"], None);
    assert_eq!(host.trim(), "web", "the sidecar's namespaces");
    let (code, _, err) = server.kubectl(&["exec", "web", "-c", "nope", "--", "true"], None);
    assert_eq!(code, 1);
    assert!(err.contains("container nope is not valid for pod web"), "{err}");
    // A client that goes away ends its command in the container too.
    let mut left = Command::new("kubectl")
        .env("KUBECONFIG", dir.join("data/serve/kubeconfig"))
        .args(["exec", "web", "-c", "app", "--", "sleep", "611"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = || server.ok(&["exec", "web", "-c", "app", "--", "ps"], None).contains("sleep 611");
    for _ in 0..50 {
        if running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(running(), "the command runs");
    let _ = left.kill();
    let _ = left.wait();
    for _ in 0..50 {
        if !running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(!running(), "the command ended with its client");
    // kubectl cp is tar through exec, both ways.
    let local = dir.join("to-pod.txt");
    std::fs::write(&local, "copied in\n").unwrap();
    server.ok(&["cp", local.to_str().unwrap(), "web:/tmp/in.txt", "-c", "app"], None);
    assert_eq!(server.ok(&["exec", "web", "-c", "app", "--", "cat", "/tmp/in.txt"], None), "copied in\n");
    let back = dir.join("from-pod.txt");
    server.ok(&["cp", "web:/tmp/in.txt", back.to_str().unwrap(), "-c", "app"], None);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");
    // A subresource not served says so, in a Status kubectl can read (it used to panic on a
    // bare 404).
    let (code, _, err) = server.kubectl(&["get", "--raw", "/api/v1/namespaces/default/pods/web/binding"], None);
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("panic") && err.contains("podvisor does not serve pods/binding yet"), "{err}");
    server.ok(&["delete", "pod", "web"], None);
}

/// A pod whose web server listens on its loopback only: reachable through port-forward, which
/// connects from inside the pod's network namespace as the kubelet does.
const LOOPBACK_WEB: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: busybox:1.36
    command: [sh, -c, "mkdir -p /www && echo hello from the pod > /www/index.html && exec httpd -f -p 127.0.0.1:8080 -h /www"]
"#;

/// Starts `kubectl port-forward pod/web :PORT` (with `env`); returns it and the local port it
/// listens on.
fn port_forward(server: &Server, port: u16, env: &[(&str, &str)]) -> (Child, u16) {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", server.dir.join("data/serve/kubeconfig"))
        .envs(env.iter().copied())
        .args(["port-forward", "pod/web", &format!(":{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("reads");
    // Forwarding from 127.0.0.1:43127 -> 8080
    let local = first
        .strip_prefix("Forwarding from 127.0.0.1:")
        .and_then(|r| r.split_once(' '))
        .and_then(|(p, _)| p.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    std::thread::spawn(move || for _ in lines {});
    (child, local)
}

/// An HTTP GET of `/index.html` on the local port; the response's body, if any.
fn get(local: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", local)).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).ok()?;
    s.write_all(b"GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n").ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// `kubectl port-forward` to a server on the pod's loopback, over SPDY tunnelled in WebSocket
/// (kubectl 1.32's first choice) and over plain SPDY (its fallback): 20 connections at once,
/// and a refused port told in the kubelet's words.
#[test]
fn kubectl_port_forward_reaches_the_pods_loopback_over_both_protocols() {
    let dir = data_dir("port-forward");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some(LOOPBACK_WEB));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let (mut tunnelled, local) = port_forward(&server, 8080, &[]);
    let bodies: Vec<Option<String>> = (0..20)
        .map(|_| std::thread::spawn(move || get(local)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    assert!(bodies.iter().all(|b| b.as_deref() == Some("hello from the pod\n")), "{bodies:?}");
    let _ = tunnelled.kill();
    let _ = tunnelled.wait();

    let (mut plain, local) = port_forward(&server, 8080, &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")]);
    assert_eq!(get(local).as_deref(), Some("hello from the pod\n"), "over plain SPDY");
    let _ = plain.kill();
    let _ = plain.wait();

    let (refused, local) = port_forward(&server, 9999, &[]);
    assert_eq!(get(local).as_deref().unwrap_or(""), "", "nothing listens on 9999");
    let _ = Command::new("kill").arg(refused.id().to_string()).status();
    let out = refused.wait_with_output().expect("kubectl ends");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error forwarding port 9999 to pod web_default, uid : failed to connect to localhost:9999"),
        "{err}"
    );
    server.ok(&["delete", "pod", "web"], None);
}

/// `kubectl exec -it` under a pseudo-terminal (`script`), typing as a user types: the shell has
/// a TTY of the user's window size, Ctrl-C interrupts what runs in it, and its exit code comes
/// back as against a cluster.
#[test]
fn kubectl_exec_it_gives_a_terminal_where_ctrl_c_and_the_exit_code_work() {
    let dir = data_dir("exec-tty");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let kubeconfig = dir.join("data/serve/kubeconfig");
    let line = format!("stty cols 91 rows 17; KUBECONFIG={} kubectl exec -it web -c app -- sh", kubeconfig.display());
    let started = std::time::Instant::now();
    let keys =
        ["[ -t 0 ] && echo IS_A_TTY; stty -a | head -1\n", "sleep 60\n", "\u{3}", "echo after-$((6*7))\n", "exit 5\n"];
    let (text, code) = under_terminal(&line, &keys);
    assert!(text.contains("IS_A_TTY"), "{text}");
    assert!(text.contains("rows 17; columns 91"), "the window size reached the container's terminal: {text}");
    assert!(text.contains("after-42"), "Ctrl-C interrupted the sleep: {text}");
    assert!(started.elapsed() < std::time::Duration::from_secs(50), "the sleep did not run out");
    assert!(text.contains("command terminated with exit code 5"), "{text}");
    assert_eq!(code, Some(5), "{text}");
    server.ok(&["delete", "pod", "web"], None);
}

/// Types `keys` (each after a pause) into `command` run under a pseudo-terminal; its output
/// and exit code.
fn under_terminal(command: &str, keys: &[&str]) -> (String, Option<i32>) {
    use std::io::Write;
    let mut script = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    let mut typing = script.stdin.take().expect("stdin");
    for k in keys {
        std::thread::sleep(std::time::Duration::from_millis(2000));
        typing.write_all(k.as_bytes()).unwrap();
        typing.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1500));
    drop(typing);
    let out = script.wait_with_output().expect("script ends");
    (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code())
}

const ATTACHABLE: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: att}
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: shell
    image: busybox:1.36
    stdin: true
    tty: true
    command: [sh]
  - name: once
    image: busybox:1.36
    stdin: true
    stdinOnce: true
    command: [sh, -c, "cat; echo cat-saw-the-end"]
  - name: ticker
    image: busybox:1.36
    command: [sh, -c, "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.3; done"]
"#;

/// `kubectl run -it --rm` and `kubectl attach`: a shell on the container's own terminal (kept
/// open by its monitor, `stdin: true`, `tty: true`), its exit code and the pod's removal; the
/// output of a running container from now on; and `stdinOnce`, whose input ends with the first
/// client's.
#[test]
fn kubectl_run_it_and_attach_reach_the_containers_input_and_output() {
    let dir = data_dir("attach");
    let server = serve(&dir);
    let kubectl = format!("KUBECONFIG={} kubectl", dir.join("data/serve/kubeconfig").display());
    let (out, code) = under_terminal(
        &format!("{kubectl} run -it --rm x --image=busybox:1.36 --restart=Never -- sh"),
        &["echo in-$((6*7)); tty\n", "exit 3\n"],
    );
    assert!(out.contains("in-42") && out.contains("/dev/pts/"), "a shell on a terminal: {out}");
    assert!(out.contains("pod \"x\" deleted"), "{out}");
    assert_eq!(code, Some(3), "{out}");

    server.ok(&["apply", "-f", "-"], Some(ATTACHABLE));
    server.ok(&["wait", "--for=condition=Ready", "pod/att", "--timeout=30s"], None);
    let (out, _) = under_terminal(&format!("{kubectl} attach -it att -c shell"), &["echo attached-$((2+3))\n"]);
    assert!(out.contains("attached-5"), "{out}");
    // Output only: what the container writes from now on.
    let mut ticks = Command::new("sh")
        .args(["-c", &format!("{kubectl} attach att -c ticker")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(ticks.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a line").expect("reads");
    assert!(first.starts_with("tick "), "{first}");
    let _ = ticks.kill();
    let _ = ticks.wait();
    // stdinOnce: the input reaches cat, and its end with the client's ends cat.
    let echoed = server.ok(&["attach", "-i", "att", "-c", "once"], Some("through stdin\n"));
    assert!(echoed.contains("through stdin"), "{echoed}");
    let mut ended = String::new();
    for _ in 0..50 {
        ended = server.ok(&["logs", "att", "-c", "once"], None);
        if ended.contains("cat-saw-the-end") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(ended, "through stdin\ncat-saw-the-end\n");
    server.ok(&["delete", "pod", "att"], None);
}

/// SIGKILL of `serve` during an exec: the next server ends the command it had run (nothing
/// stays behind in the container), the pod keeps running, and a new exec works.
#[test]
fn a_command_exec_ran_for_a_killed_server_does_not_outlive_it() {
    let dir = data_dir("exec-crash");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let mut client = Command::new("kubectl")
        .env("KUBECONFIG", dir.join("data/serve/kubeconfig"))
        .args(["exec", "web", "-c", "app", "--", "sleep", "613"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let running = |s: &Server| s.ok(&["exec", "web", "-c", "app", "--", "ps"], None).contains("sleep 613");
    for _ in 0..50 {
        if running(&server) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(running(&server), "the command runs");
    let server = server.crash();
    let _ = client.kill();
    let _ = client.wait();
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    assert!(!running(&server), "the killed server's command is gone, and a new exec works");
    server.ok(&["delete", "pod", "web"], None);
}

/// `kubectl debug --target`: an ephemeral container added through `pods/ephemeralcontainers`,
/// in the target container's PID namespace (it sees the target's processes), attached with a
/// terminal, never restarted; and the API server's refusal of a target the pod does not have.
#[test]
fn kubectl_debug_adds_an_ephemeral_container_that_sees_its_targets_processes() {
    let dir = data_dir("debug");
    let server = serve(&dir);
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    server.ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"], None);
    let kubectl = format!("KUBECONFIG={} kubectl", dir.join("data/serve/kubeconfig").display());
    let (out, code) = under_terminal(
        &format!("{kubectl} debug web -it --image=busybox:1.36 --target=app -c dbg"),
        &["ps -o pid,args; echo seen-$((40+2))\n", "exit\n"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("seen-42"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep")),
        "the target's init as PID 1: {out}"
    );
    let statuses =
        "{range .status.ephemeralContainerStatuses[*]}{.name}={.restartCount}:{.state.terminated.reason}{end}";
    let mut seen = String::new();
    for _ in 0..50 {
        seen = server.ok(&["get", "pod", "web", "-o", &format!("jsonpath={statuses}")], None);
        if seen.ends_with("Completed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(seen, "dbg=0:Completed", "ended, not restarted");
    let pods = server.ok(&["get", "pods"], None);
    assert_eq!(&row(&pods, "web")[1..3], ["2/2", "Running"], "{pods}");
    let (code, _, err) = server.kubectl(&["debug", "web", "--image=busybox:1.36", "--target=nope"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\""), "{err}");
    // An update of the pod keeps its ephemeral containers; a create may not carry any.
    server.ok(&["apply", "-f", "-"], Some(SIDECAR_POD));
    let names = server.ok(&["get", "pod", "web", "-o", "jsonpath={.spec.ephemeralContainers[*].name}"], None);
    assert_eq!(names, "dbg");
    let with =
        SIDECAR_POD.replace("name: web", "name: other") + "  ephemeralContainers: [{name: d, image: busybox:1.36}]\n";
    let (code, _, err) = server.kubectl(&["create", "-f", "-"], Some(&with));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("spec.ephemeralContainers: Forbidden: cannot be set on create"), "{err}");
    server.ok(&["delete", "pod", "web"], None);
}

/// `kubectl scale` through the `scale` subresource (`autoscaling/v1` Scale, found in
/// discovery): a Deployment up and down, with `--current-replicas` as a precondition.
#[test]
fn kubectl_scale_changes_a_deployments_replicas_through_its_scale() {
    let dir = data_dir("scale");
    let server = serve(&dir);
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox:1.36, command: [sleep, "600"]}]
"#;
    server.ok(&["apply", "-f", "-"], Some(deployment));
    server.ok(&["scale", "deployment/web", "--replicas=3"], None);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    let scale = server.ok(&["get", "--raw", "/apis/apps/v1/namespaces/default/deployments/web/scale"], None);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!((scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()), (Some("Scale"), Some(3)));
    assert_eq!(scale["status"]["selector"], "app=web");
    let (code, _, err) = server.kubectl(&["scale", "deployment/web", "--replicas=1", "--current-replicas=2"], None);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("Expected replicas to be 2, was 3"), "{err}");
    server.ok(&["scale", "deployment/web", "--replicas=1", "--current-replicas=3"], None);
    let mut pods = String::new();
    for _ in 0..100 {
        pods = server.ok(&["get", "pods", "-l", "app=web", "-o", "name"], None);
        if pods.lines().count() == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(pods.lines().count(), 1, "{pods}");
    server.ok(&["delete", "deployment", "web"], None);
}

/// Polls `f` every 200 ms for up to 60 s until it returns `Some`.
fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..300 {
        if let Some(t) = f() {
            return t;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// #17: a Deployment and its Services applied from one directory. The Service's name resolves
/// in a pod through cluster DNS (the search path and the full name), its ClusterIP relays to
/// the ready pods from pods and from the host, and traffic moves to the new pods of a rolling
/// update; a pod whose sidecar fails readiness is listed not ready in the EndpointSlice; a
/// headless Service resolves to the pods' addresses; the ClusterIP leaves with the server.
#[test]
fn services_route_by_name_to_ready_pods_and_follow_a_rolling_update() {
    let dir = data_dir("services");
    let server = serve(&dir);
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let web = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: httpd
        image: busybox:1.36
        command: [sh, -c, 'mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
"#;
    let services = r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080}]
"#;
    std::fs::write(manifests.join("web.yaml"), web).unwrap();
    std::fs::write(manifests.join("services.yaml"), services).unwrap();
    let applied = server.ok(&["apply", "-f", manifests.to_str().unwrap()], None);
    assert!(applied.contains("service/web created") && applied.contains("deployment.apps/web created"), "{applied}");
    let lame = r#"
apiVersion: v1
kind: Pod
metadata: {name: lame, labels: {app: web}}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: busybox:1.36
    restartPolicy: Always
    command: [sleep, "600"]
    readinessProbe: {exec: {command: ["false"]}, periodSeconds: 1}
  containers:
  - {name: app, image: busybox:1.36, command: [sleep, "600"], ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: busybox:1.36, command: [sleep, "600"]}]
"#;
    server.ok(&["apply", "-f", "-"], Some(lame));
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/client", "--timeout=60s"], None);
    let svc = server.ok(&["get", "svc", "web"], None);
    let cluster_ip = row(&svc, "web")[2].to_string();
    assert_eq!(&row(&svc, "web")[..2], ["web", "ClusterIP"], "{svc}");
    assert!(cluster_ip.starts_with("10."), "{svc}");
    assert_eq!(row(&server.ok(&["get", "svc", "db"], None), "db")[2], "None");
    // The EndpointSlice: the two web pods ready, the pod whose sidecar is not ready listed
    // not ready.
    let pod_ips = |selector: &str| -> std::collections::BTreeMap<String, String> {
        let out = server.ok(
            &[
                "get",
                "pods",
                "-l",
                selector,
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
            ],
            None,
        );
        out.lines().filter_map(|l| l.split_once(' ')).map(|(n, ip)| (n.to_string(), ip.to_string())).collect()
    };
    let readiness = || -> Vec<(String, bool)> {
        let out = server.ok(&["get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let mut got: Vec<(String, bool)> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
            .map(|e| (e["targetRef"]["name"].as_str().unwrap_or("").to_string(), e["conditions"]["ready"] == true))
            .collect();
        got.sort();
        got
    };
    let web_pods: Vec<String> = pod_ips("app=web").into_keys().filter(|n| n != "lame").collect();
    eventually("the EndpointSlice", || {
        let got = readiness();
        let mut want: Vec<(String, bool)> = web_pods.iter().map(|n| (n.clone(), true)).collect();
        want.push(("lame".into(), false));
        want.sort();
        (got == want).then_some(())
    });
    // From a pod, by short name and by full name (the test image's static busybox wget
    // crashes, so nc speaks HTTP); from the host, by ClusterIP.
    for name in ["web", "web.default.svc.cluster.local"] {
        let ask = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {name} 80");
        let reply = server.ok(&["exec", "client", "--", "sh", "-c", &ask], None);
        let body = reply.lines().last().unwrap_or_default().to_string();
        assert!(web_pods.contains(&body), "{name}: {reply}");
    }
    let from_host = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect((cluster_ip.as_str(), 80)).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines().last().map(str::to_string)
    };
    assert!(web_pods.contains(&from_host().unwrap_or_default()), "the host reaches the ClusterIP");
    // The headless Service: the ready pods' addresses.
    let lookup = server.ok(&["exec", "client", "--", "nslookup", "db.default.svc.cluster.local"], None);
    for (name, ip) in pod_ips("app=web") {
        assert_eq!(lookup.contains(&ip), name != "lame", "{name} {ip}: {lookup}");
    }
    // A rolling update: the Service then answers from the new pods only.
    server.ok(&["set", "env", "deployment/web", "GENERATION=2"], None);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    let new_pods: Vec<String> = eventually("the old pods to go", || {
        let names: Vec<String> = pod_ips("app=web").into_keys().filter(|n| n != "lame").collect();
        (names.len() == 2 && names.iter().all(|n| !web_pods.contains(n))).then_some(names)
    });
    eventually("traffic on the new pods", || {
        let answers: Vec<String> = (0..4).filter_map(|_| from_host()).collect();
        (answers.len() == 4 && answers.iter().all(|a| new_pods.contains(a))).then_some(())
    });
    // The typed commands (protobuf bodies) and expose.
    server.ok(&["create", "service", "nodeport", "np", "--tcp=80:8080"], None);
    let np = server.ok(&["get", "svc", "np"], None);
    let ports = row(&np, "np")[4].to_string();
    assert!(ports.starts_with("80:3") && ports.ends_with("/TCP"), "{np}");
    server.ok(&["expose", "deployment", "web", "--name=web2", "--port=8081", "--target-port=http"], None);
    let selector = server.ok(&["get", "svc", "web2", "-o", "jsonpath={.spec.selector.app}"], None);
    assert_eq!(selector, "web");
    // A type change gets a nodePort, and gives it back.
    server.ok(&["patch", "svc", "web2", "-p", r#"{"spec":{"type":"NodePort"}}"#], None);
    let ports = row(&server.ok(&["get", "svc", "web2"], None), "web2")[4].to_string();
    assert!(ports.starts_with("8081:3") && ports.ends_with("/TCP"), "{ports}");
    server.ok(&["patch", "svc", "web2", "-p", r#"{"spec":{"type":"ClusterIP"}}"#], None);
    assert_eq!(row(&server.ok(&["get", "svc", "web2"], None), "web2")[4], "8081/TCP");
    drop(server);
    let addrs = Command::new("ip").args(["-br", "addr", "show", "podvisor0"]).output().unwrap();
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert!(!addrs.contains(&format!("{cluster_ip}/32")), "the ClusterIP left with the server: {addrs}");
}

/// #17: a CronJob whose Jobs have a sidecar runs on its schedule (`* * * * *`: within a
/// minute), `kubectl create job --from=cronjob/…` runs it at once, both complete (the sidecar
/// does not hold them), the history keeps one successful Job, and `get cronjobs` shows
/// kubectl's columns.
#[test]
fn a_cronjob_with_a_sidecar_runs_on_schedule_and_keeps_its_history() {
    let dir = data_dir("cronjob");
    let server = serve(&dir);
    let cronjob = r#"
apiVersion: batch/v1
kind: CronJob
metadata: {name: tick}
spec:
  schedule: "* * * * *"
  timeZone: UTC
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          initContainers:
          - {name: shipper, image: busybox:1.36, restartPolicy: Always, command: [sleep, "600"]}
          containers:
          - {name: work, image: busybox:1.36, command: [sh, -c, "echo tick"]}
"#;
    server.ok(&["apply", "-f", "-"], Some(cronjob));
    server.ok(&["create", "job", "manual", "--from=cronjob/tick"], None);
    server.ok(&["wait", "--for=condition=Complete", "job/manual", "--timeout=60s"], None);
    let scheduled = eventually("a scheduled Job", || {
        let names = server.ok(&["get", "jobs", "-o", "name"], None);
        names.lines().find(|n| n.starts_with("job.batch/tick-")).map(str::to_string)
    });
    server.ok(&["wait", "--for=condition=Complete", &scheduled, "--timeout=60s"], None);
    // One successful Job kept: the manual run, older, goes.
    eventually("the history pruned", || {
        let names = server.ok(&["get", "jobs", "-o", "name"], None);
        (names.trim() == scheduled).then_some(())
    });
    let table = server.ok(&["get", "cronjobs"], None);
    let r = row(&table, "tick");
    assert_eq!(&r[..4], ["tick", "*", "*", "*"], "{table}");
    assert!(table.contains("UTC") && table.contains("False"), "{table}");
    assert!(!r.contains(&"<none>"), "a last schedule: {table}");
    let events = server.ok(&["get", "events", "--field-selector", "involvedObject.kind=CronJob"], None);
    assert!(events.contains("SuccessfulCreate") && events.contains("SawCompletedJob"), "{events}");
    server.ok(&["delete", "cronjob", "tick"], None);
}

/// #17: `kubectl rollout pause` holds a template change back (no new ReplicaSet), `resume`
/// rolls it out, `rollout history` shows the change cause, and `rollout undo` goes back to
/// the first ReplicaSet itself, which takes the next revision.
#[test]
fn rollout_pause_resume_history_and_undo() {
    let dir = data_dir("rollout");
    let server = serve(&dir);
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations: {kubernetes.io/change-cause: first}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: busybox:1.36, command: [sleep, "600"]}]
"#;
    server.ok(&["apply", "-f", "-"], Some(deployment));
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    let replica_sets = || server.ok(&["get", "rs", "-l", "app=web", "-o", "name"], None).lines().count();
    server.ok(&["rollout", "pause", "deployment/web"], None);
    server.ok(&["set", "image", "deployment/web", "c=alpine:latest"], None);
    server.ok(&["annotate", "deployment/web", "kubernetes.io/change-cause=to alpine", "--overwrite"], None);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(replica_sets(), 1, "paused: no rollout");
    let progressing = server
        .ok(&["get", "deployment/web", "-o", "jsonpath={.status.conditions[?(@.type==\"Progressing\")].reason}"], None);
    assert_eq!(progressing, "DeploymentPaused");
    server.ok(&["rollout", "resume", "deployment/web"], None);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    assert_eq!(replica_sets(), 2);
    let history = server.ok(&["rollout", "history", "deployment/web"], None);
    assert!(history.contains("first") && history.contains("to alpine"), "{history}");
    server.ok(&["rollout", "undo", "deployment/web"], None);
    server.ok(&["rollout", "status", "deployment/web", "--timeout=60s"], None);
    assert_eq!(replica_sets(), 2, "the first ReplicaSet is reused");
    let image = server.ok(&["get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"], None);
    assert_eq!(image, "busybox:1.36");
    let revision = server.ok(
        &["get", "deployment/web", "-o", "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}"],
        None,
    );
    assert_eq!(revision, "3");
    eventually("one pod of the first template", || {
        let images =
            server.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].spec.containers[0].image}"], None);
        (images.trim() == "busybox:1.36").then_some(())
    });
}

/// #17: an edited ConfigMap reaches the pods that mount it (at once, as the kubelet's atomic
/// writer swaps `..data`), a subPath mount keeps its file as upstream, and an immutable
/// ConfigMap refuses edits in the API server's words.
#[test]
fn configmap_edits_reach_mounted_volumes_and_immutable_ones_refuse_them() {
    let dir = data_dir("cmupdate");
    let server = serve(&dir);
    let manifests = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: fast}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: frozen}
immutable: true
data: {mode: fast}
---
apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: busybox:1.36
    command: [sleep, "600"]
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: cfg, mountPath: /pinned, subPath: mode}
  volumes:
  - {name: cfg, configMap: {name: settings}}
"#;
    server.ok(&["apply", "-f", "-"], Some(manifests));
    server.ok(&["wait", "--for=condition=Ready", "pod/reader", "--timeout=60s"], None);
    assert_eq!(server.ok(&["exec", "reader", "--", "cat", "/cfg/mode"], None), "fast");
    server.ok(&["patch", "configmap", "settings", "-p", r#"{"data":{"mode":"slow","extra":"1"}}"#], None);
    eventually("the edit in the volume", || {
        let now = server.ok(&["exec", "reader", "--", "cat", "/cfg/mode"], None);
        (now == "slow").then_some(())
    });
    assert_eq!(server.ok(&["exec", "reader", "--", "cat", "/cfg/extra"], None), "1");
    assert_eq!(server.ok(&["exec", "reader", "--", "cat", "/pinned"], None), "fast", "subPath keeps its file");
    let (code, _, err) = server.kubectl(&["patch", "configmap", "frozen", "-p", r#"{"data":{"mode":"slow"}}"#], None);
    assert_eq!(code, 1);
    assert!(err.contains("data: Forbidden: field is immutable when `immutable` is set"), "{err}");
}

/// #17: a cordoned node, or one with a taint a pod does not tolerate, leaves new pods Pending
/// with the scheduler's `FailedScheduling` message until it is uncordoned or the taint goes; a
/// pod that tolerates the taint runs; `describe node` shows the node's renewed Lease and sane
/// figures.
#[test]
fn cordons_and_taints_hold_pods_back_and_the_node_has_a_lease() {
    let dir = data_dir("cordon");
    let server = serve(&dir);
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    // #24: the node and the API report one Kubernetes version, the one `--version` names.
    let kubelet = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.kubeletVersion}"], None);
    let version: serde_json::Value = serde_json::from_str(&server.ok(&["version", "-o", "json"], None)).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"].as_str(), Some(kubelet.as_str()));
    let own = Command::new(env!("CARGO_BIN_EXE_podvisor")).arg("--version").output().unwrap();
    let own = String::from_utf8_lossy(&own.stdout).into_owned();
    assert!(own.contains(&format!("Kubernetes {}", kubelet.trim_end_matches("-podvisor"))), "{own} / {kubelet}");
    let pod = |name: &str, tolerate: bool| {
        let tolerations = if tolerate {
            "\n  tolerations: [{key: dedicated, operator: Equal, value: gpu, effect: NoSchedule}]"
        } else {
            ""
        };
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1{tolerations}\n  containers: [{{name: c, image: busybox:1.36, command: [sleep, \"600\"]}}]\n"
        )
    };
    let scheduled_message = |name: &str| {
        server
            .ok(&["get", "pod", name, "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"], None)
    };
    server.ok(&["cordon", &node], None);
    server.ok(&["apply", "-f", "-"], Some(&pod("held", false)));
    let message = eventually("the scheduler's verdict", || Some(scheduled_message("held")).filter(|m| !m.is_empty()));
    assert!(message.starts_with("0/1 nodes are available: 1 node(s) were unschedulable."), "{message}");
    let events = server.ok(&["get", "events", "--field-selector", "involvedObject.name=held"], None);
    assert!(events.contains("FailedScheduling"), "{events}");
    server.ok(&["uncordon", &node], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/held", "--timeout=60s"], None);
    server.ok(&["taint", "nodes", &node, "dedicated=gpu:NoSchedule"], None);
    server.ok(&["apply", "-f", "-"], Some(&pod("plain", false)));
    server.ok(&["apply", "-f", "-"], Some(&pod("tolerant", true)));
    server.ok(&["wait", "--for=condition=Ready", "pod/tolerant", "--timeout=60s"], None);
    let message = eventually("the taint's verdict", || Some(scheduled_message("plain")).filter(|m| !m.is_empty()));
    assert!(message.contains("1 node(s) had untolerated taint {dedicated: gpu}"), "{message}");
    server.ok(&["taint", "nodes", &node, "dedicated-"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/plain", "--timeout=60s"], None);
    let lease =
        server.ok(&["get", "lease", "-n", "kube-node-lease", &node, "-o", "jsonpath={.spec.holderIdentity}"], None);
    assert_eq!(lease, node);
    let described = server.ok(&["describe", "node", &node], None);
    assert!(described.contains("HolderIdentity:") && !described.contains("Failed to get lease"), "{described}");
    assert!(!described.contains("-9223372036854775808"), "{described}");
    assert!(described.contains("KubeletHasSufficientMemory"), "{described}");
}

/// The scheduler's NodeAffinity filter: a pod whose node selector or required node affinity
/// the node does not match stays Pending with the scheduler's message until the node is
/// labelled; a pod bound to another node is never run here (and is collected once that node
/// has been missing for the pod garbage collector's quarantine); one bound here that the node
/// does not match is rejected by the kubelet's admission (Failed, `NodeAffinity`).
#[test]
fn node_selectors_and_affinity_place_pods_as_the_scheduler_and_kubelet_do() {
    let dir = data_dir("affinity");
    let server = serve(&dir);
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers: [{{name: c, image: busybox:1.36, command: [sleep, \"600\"]}}]\n"
        )
    };
    let jsonpath = |name: &str, path: &str| server.ok(&["get", "pod", name, "-o", &format!("jsonpath={path}")], None);
    server.ok(&["apply", "-f", "-"], Some(&pod("ssd", "  nodeSelector: {disk: ssd}\n")));
    let affinity = "  affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: cores, operator: Gt, values: [\"4\"]}]}]}}}\n";
    server.ok(&["apply", "-f", "-"], Some(&pod("big", affinity)));
    let expected = "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    for name in ["ssd", "big"] {
        let message = eventually("the scheduler's verdict", || {
            Some(jsonpath(name, "{.status.conditions[?(@.type==\"PodScheduled\")].message}")).filter(|m| !m.is_empty())
        });
        assert_eq!(message, expected);
        assert_eq!(jsonpath(name, "{.spec.nodeName}"), "", "{name} is not bound");
    }
    let events = server.ok(&["get", "events", "--field-selector", "involvedObject.name=ssd"], None);
    assert!(events.contains("FailedScheduling"), "{events}");
    // Labelled, the node fits both.
    server.ok(&["label", "node", &node, "disk=ssd", "cores=8"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/ssd", "pod/big", "--timeout=60s"], None);
    assert_eq!(jsonpath("ssd", "{.spec.nodeName}"), node);
    // Bound to a node that is not this one: that node's kubelet's, never run here.
    server.ok(&["apply", "-f", "-"], Some(&pod("elsewhere", "  nodeName: worker-7\n")));
    // Bound here against its selector: the kubelet's admission rejects it.
    let bound = format!("  nodeName: {node}\n  nodeSelector: {{disk: hdd}}\n");
    server.ok(&["apply", "-f", "-"], Some(&pod("rejected", &bound)));
    let phase = eventually("the kubelet's admission", || {
        Some(jsonpath("rejected", "{.status.phase}")).filter(|p| !p.is_empty())
    });
    assert_eq!(phase, "Failed");
    assert_eq!(jsonpath("rejected", "{.status.reason}"), "NodeAffinity");
    assert_eq!(
        jsonpath("rejected", "{.status.message}"),
        "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Pod's node affinity/selector"
    );
    let events = server.ok(&["get", "events", "--field-selector", "involvedObject.name=rejected"], None);
    assert!(events.contains("NodeAffinity"), "{events}");
    let elsewhere = server.ok(&["get", "pod", "elsewhere", "-o", "json"], None);
    let elsewhere: serde_json::Value = serde_json::from_str(&elsewhere).unwrap();
    assert!(elsewhere["status"].get("containerStatuses").is_none(), "{elsewhere}");
    assert!(elsewhere["status"]["phase"].as_str().is_none_or(|p| p == "Pending"), "{elsewhere}");
    // No node of that name exists: the pod garbage collector removes the pod once the node has
    // been missing for its 40 s quarantine, and not before.
    let since = std::time::Instant::now();
    let (code, _, err) = server.kubectl(&["wait", "--for=delete", "pod/elsewhere", "--timeout=30s"], None);
    assert_ne!(code, 0, "kept during the quarantine: {err}");
    server.ok(&["wait", "--for=delete", "pod/elsewhere", "--timeout=60s"], None);
    assert!(since.elapsed() >= std::time::Duration::from_secs(30));
}

/// The scheduler's NodeResourcesFit filter and the kubelet's admission: a pod whose requests
/// (its limits, where it names no request) exceed what the node's allocatable leaves after the
/// running pods stays Pending with `Insufficient cpu` until room is made; one bound here is
/// rejected (`OutOfcpu`) with the kubelet's figures.
#[test]
fn requests_beyond_the_nodes_allocatable_wait_for_room_as_the_scheduler_decides() {
    let dir = data_dir("fit");
    let server = serve(&dir);
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    let cpus: i64 =
        server.ok(&["get", "node", &node, "-o", "jsonpath={.status.allocatable.cpu}"], None).parse().unwrap();
    let storage = server.ok(&["get", "node", &node, "-o", "jsonpath={.status.allocatable.ephemeral-storage}"], None);
    assert!(storage.parse::<u64>().is_ok_and(|b| b > 0), "{storage}");
    let pod = |name: &str, extra: &str, resources: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers: [{{name: c, image: busybox:1.36, command: [sleep, \"600\"], resources: {resources}}}]\n"
        )
    };
    // Half a CPU less than the node has, given as a limit alone (the request defaults to it).
    let filler = format!("{{limits: {{cpu: {}m}}}}", cpus * 1000 - 500);
    server.ok(&["apply", "-f", "-"], Some(&pod("filler", "", &filler)));
    server.ok(&["wait", "--for=condition=Ready", "pod/filler", "--timeout=60s"], None);
    let requested =
        server.ok(&["get", "pod", "filler", "-o", "jsonpath={.spec.containers[0].resources.requests.cpu}"], None);
    assert_eq!(requested, format!("{}m", cpus * 1000 - 500), "requests default to limits");
    server.ok(&["apply", "-f", "-"], Some(&pod("late", "", "{requests: {cpu: \"1\"}}")));
    let message = eventually("the scheduler's verdict", || {
        Some(server.ok(
            &["get", "pod", "late", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"],
            None,
        ))
        .filter(|m| !m.is_empty())
    });
    assert_eq!(
        message,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    let bound = format!("  nodeName: {node}\n");
    server.ok(&["apply", "-f", "-"], Some(&pod("bound", &bound, "{requests: {cpu: \"1\"}}")));
    let reason = eventually("the kubelet's admission", || {
        Some(server.ok(&["get", "pod", "bound", "-o", "jsonpath={.status.reason}"], None)).filter(|r| !r.is_empty())
    });
    assert_eq!(reason, "OutOfcpu");
    let message = server.ok(&["get", "pod", "bound", "-o", "jsonpath={.status.message}"], None);
    assert_eq!(
        message,
        format!(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 1000, used: {}, capacity: {}",
            cpus * 1000 - 500,
            cpus * 1000
        )
    );
    // Room made, the waiting pod runs.
    server.ok(&["delete", "pod", "filler", "--wait=true"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/late", "--timeout=60s"], None);
    // The QoS class the API server sets at creation stays through the node's status writes.
    server.ok(&["apply", "-f", "-"], Some(&pod("exact", "", "{limits: {cpu: 100m, memory: 32Mi}}")));
    server.ok(&["wait", "--for=condition=Ready", "pod/exact", "--timeout=60s"], None);
    let qos = |name: &str| server.ok(&["get", "pod", name, "-o", "jsonpath={.status.qosClass}"], None);
    assert_eq!(
        (qos("exact"), qos("late"), qos("bound")),
        ("Guaranteed".into(), "Burstable".into(), "Burstable".into())
    );
    let described = server.ok(&["describe", "pod", "exact"], None);
    assert!(described.lines().any(|l| l.starts_with("QoS Class:") && l.ends_with("Guaranteed")), "{described}");
}

/// Host ports as the portmap plugin and the scheduler's NodePorts filter treat them: a pod's
/// `hostPort` answers on the machine's addresses and relays to the pod; a second pod asking for
/// the same port and protocol waits Pending (`didn't have free ports`), one bound here is
/// rejected (`NodePorts`), and the port is free again once the first pod is gone.
#[test]
fn host_ports_reach_the_pod_and_a_taken_port_holds_the_next_pod_back() {
    use std::io::{Read, Write};
    let dir = data_dir("hostport");
    let server = serve(&dir);
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - name: web\n    image: busybox:1.36\n    command: [sh, -c, \"mkdir -p /www && echo served-by-{name} > /www/index.html && exec httpd -f -p 8080 -h /www\"]\n    ports: [{{containerPort: 8080, hostPort: {port}}}]\n"
        )
    };
    server.ok(&["apply", "-f", "-"], Some(&pod("first", "")));
    server.ok(&["wait", "--for=condition=Ready", "pod/first", "--timeout=60s"], None);
    let fetch = || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        c.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        c.read_to_string(&mut body).ok()?;
        body.contains("served-by-").then_some(body)
    };
    let body = eventually("the host port to answer", fetch);
    assert!(body.contains("served-by-first"), "{body}");
    server.ok(&["apply", "-f", "-"], Some(&pod("second", "")));
    let message = eventually("the scheduler's verdict", || {
        Some(server.ok(
            &["get", "pod", "second", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"],
            None,
        ))
        .filter(|m| !m.is_empty())
    });
    assert_eq!(
        message,
        "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    server.ok(&["apply", "-f", "-"], Some(&pod("bound", &format!("  nodeName: {node}\n"))));
    let reason = eventually("the kubelet's admission", || {
        Some(server.ok(&["get", "pod", "bound", "-o", "jsonpath={.status.reason}"], None)).filter(|r| !r.is_empty())
    });
    assert_eq!(reason, "NodePorts");
    server.ok(&["delete", "pod", "first", "--wait=true"], None);
    server.ok(&["wait", "--for=condition=Ready", "pod/second", "--timeout=60s"], None);
    let body =
        eventually("the host port to reach the second pod", || fetch().filter(|b| b.contains("served-by-second")));
    assert!(body.contains("served-by-second"), "{body}");
}

/// The scheduler's InterPodAffinity filter on one node: of a Deployment whose replicas must not
/// share a host, one runs and the other waits Pending with the scheduler's message; a pod that
/// must run beside a database waits until one runs.
#[test]
fn inter_pod_anti_affinity_and_affinity_hold_pods_as_on_a_one_node_cluster() {
    let dir = data_dir("podaffinity");
    let server = serve(&dir);
    let spread = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      terminationGracePeriodSeconds: 1\n      affinity: {podAntiAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: web}}, topologyKey: kubernetes.io/hostname}]}}\n      containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n";
    server.ok(&["apply", "-f", "-"], Some(spread));
    let pending = eventually("one replica held back", || {
        let messages = server.ok(
            &[
                "get",
                "pods",
                "-l",
                "app=web",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type==\"PodScheduled\")].message}{\"\\n\"}{end}",
            ],
            None,
        );
        messages.lines().find(|m| !m.is_empty()).map(str::to_string)
    });
    assert_eq!(
        pending,
        "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.."
    );
    let phases = server.ok(&["get", "pods", "-l", "app=web", "-o", "jsonpath={.items[*].status.phase}"], None);
    let mut phases: Vec<&str> = phases.split_whitespace().collect();
    phases.sort();
    assert!(phases == ["Pending", "Running"] || phases == ["Pending", "Pending"], "{phases:?}");
    let near = "apiVersion: v1\nkind: Pod\nmetadata: {name: near, labels: {app: cache}}\nspec:\n  terminationGracePeriodSeconds: 1\n  affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: [{labelSelector: {matchLabels: {app: db}}, topologyKey: kubernetes.io/hostname}]}}\n  containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n";
    server.ok(&["apply", "-f", "-"], Some(near));
    let message = eventually("the affinity's verdict", || {
        Some(server.ok(
            &["get", "pod", "near", "-o", "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}"],
            None,
        ))
        .filter(|m| !m.is_empty())
    });
    assert!(message.starts_with("0/1 nodes are available: 1 node(s) didn't match pod affinity rules."), "{message}");
    let db = "apiVersion: v1\nkind: Pod\nmetadata: {name: db, labels: {app: db}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n";
    server.ok(&["apply", "-f", "-"], Some(db));
    server.ok(&["wait", "--for=condition=Ready", "pod/db", "pod/near", "--timeout=60s"], None);
}

/// Taint-based eviction: a `NoExecute` taint deletes at once the pods that do not tolerate it,
/// after their `tolerationSeconds` those that tolerate it for a while, never those that tolerate
/// it for ever; a pod deleted so carries the `DisruptionTarget` condition's event trail; the
/// taint's removal calls off a planned eviction.
#[test]
fn no_execute_taints_evict_pods_after_their_toleration_and_removal_cancels_it() {
    let dir = data_dir("noexecute");
    let server = serve(&dir);
    let node = server.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"], None);
    let pod = |name: &str, toleration: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  tolerations: [{toleration}]\n  containers: [{{name: c, image: busybox:1.36, command: [sh, -c, \"trap 'exit 0' TERM; sleep 600 & wait\"]}}]\n"
        )
    };
    server.ok(&["apply", "-f", "-"], Some(&pod("plain", "")));
    server.ok(
        &["apply", "-f", "-"],
        Some(&pod("brief", "{key: maintenance, operator: Exists, effect: NoExecute, tolerationSeconds: 3}")),
    );
    server.ok(&["apply", "-f", "-"], Some(&pod("patient", "{key: maintenance, operator: Exists, effect: NoExecute}")));
    server.ok(&["wait", "--for=condition=Ready", "pod/plain", "pod/brief", "pod/patient", "--timeout=60s"], None);
    let tainted = std::time::Instant::now();
    server.ok(&["taint", "nodes", &node, "maintenance=yes:NoExecute"], None);
    server.ok(&["wait", "--for=delete", "pod/plain", "--timeout=30s"], None);
    assert!(server.kubectl(&["get", "pod", "brief"], None).0 == 0, "brief tolerates it for 3 s");
    server.ok(&["wait", "--for=delete", "pod/brief", "--timeout=30s"], None);
    assert!(tainted.elapsed() >= std::time::Duration::from_secs(3), "not before its 3 s: {:?}", tainted.elapsed());
    let events = server.ok(
        &["get", "events", "--field-selector", "reason=TaintManagerEviction", "-o", "jsonpath={.items[*].message}"],
        None,
    );
    assert!(
        events.contains("Marking for deletion Pod default/plain")
            && events.contains("Marking for deletion Pod default/brief"),
        "{events}"
    );
    assert_eq!(server.ok(&["get", "pod", "patient", "-o", "jsonpath={.status.phase}"], None), "Running");
    // Bound here past the scheduler, without the toleration: it never runs. The kubelet's
    // admission refuses it (TaintToleration) and the eviction deletes it, whichever comes first,
    // as in a cluster.
    let bound = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: bound}}\nspec:\n  nodeName: {node}\n  containers: [{{name: c, image: busybox:1.36, command: [sleep, \"600\"]}}]\n"
    );
    server.ok(&["apply", "-f", "-"], Some(&bound));
    let reasons = eventually("the pod's refusal", || {
        let r = server.ok(
            &["get", "events", "--field-selector", "involvedObject.name=bound", "-o", "jsonpath={.items[*].reason}"],
            None,
        );
        (r.contains("TaintToleration") || r.contains("TaintManagerEviction")).then_some(r)
    });
    assert!(!reasons.contains("Started") && !reasons.contains("Pulled"), "it never ran: {reasons}");
    let phase = server.kubectl(&["get", "pod", "bound", "-o", "jsonpath={.status.phase}"], None);
    assert!(phase.0 != 0 || phase.1 == "Failed", "gone or Failed: {phase:?}");
    // A planned eviction is called off when the taint goes first.
    server.ok(
        &["apply", "-f", "-"],
        Some(&pod("reprieved", "{key: maintenance, operator: Exists, effect: NoExecute, tolerationSeconds: 4}")),
    );
    server.ok(&["wait", "--for=condition=Ready", "pod/reprieved", "--timeout=60s"], None);
    server.ok(&["taint", "nodes", &node, "maintenance-"], None);
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert_eq!(server.ok(&["get", "pod", "reprieved", "-o", "jsonpath={.status.phase}"], None), "Running");
    let events = server.ok(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=reprieved,reason=TaintManagerEviction",
            "-o",
            "jsonpath={.items[*].message}",
        ],
        None,
    );
    assert!(events.contains("Cancelling deletion of Pod default/reprieved"), "{events}");
}

/// R61 through the API: a pod with a readiness gate is Ready only once a controller sets the
/// gate's condition `True` in its status, and not Ready again when it turns `False`, in the
/// kubelet's words; the node's own status writes keep the condition.
#[test]
fn r61_readiness_gates_set_through_the_status_make_the_pod_ready() {
    let dir = data_dir("gates");
    let server = serve(&dir);
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: gated}\nspec:\n  terminationGracePeriodSeconds: 1\n  readinessGates: [{conditionType: example.com/feature-1}]\n  containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n";
    server.ok(&["apply", "-f", "-"], Some(pod));
    let ready = |what: &str| {
        server.ok(
            &["get", "pod", "gated", "-o", &format!("jsonpath={{.status.conditions[?(@.type==\"Ready\")].{what}}}")],
            None,
        )
    };
    let message = eventually("the gate's verdict", || Some(ready("message")).filter(|m| m.contains("readiness gate")));
    assert_eq!(message, "corresponding condition of pod readiness gate \"example.com/feature-1\" does not exist.");
    assert_eq!(ready("reason"), "ReadinessGatesNotReady");
    let set = |status: &str| {
        let patch = format!(
            "{{\"status\":{{\"conditions\":[{{\"type\":\"example.com/feature-1\",\"status\":\"{status}\"}}]}}}}"
        );
        server.ok(&["patch", "pod", "gated", "--subresource=status", "-p", &patch], None);
    };
    set("True");
    server.ok(&["wait", "--for=condition=Ready", "pod/gated", "--timeout=30s"], None);
    set("False");
    let message = eventually("the gate turned False", || Some(ready("message")).filter(|m| m.contains("is not")));
    assert_eq!(message, "the status of pod readiness gate \"example.com/feature-1\" is not \"True\", but False");
    assert_eq!(ready("status"), "False");
    let gate = server.ok(
        &["get", "pod", "gated", "-o", "jsonpath={.status.conditions[?(@.type==\"example.com/feature-1\")].status}"],
        None,
    );
    assert_eq!(gate, "False", "the controller's condition is kept");
}

/// PriorityClasses are served as the API server serves them: the system classes are there
/// from the start and may not be deleted; `kubectl create priorityclass` makes one; its value
/// and policy may not change, the rest may; one class at most is the global default; a pod
/// gets its class's value and policy, or the default class's name and value.
#[test]
fn priority_classes_give_pods_their_priority_as_the_api_server_does() {
    let dir = data_dir("priority");
    let server = serve(&dir);
    let listed = server.ok(&["get", "priorityclasses"], None);
    let header: Vec<&str> = listed.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"], "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("system-node-critical ") && l.contains(" 2000001000 ")), "{listed}");
    let (code, _, err) = server.kubectl(&["delete", "pc", "system-node-critical", "--dry-run=server"], None);
    assert_eq!(code, 1, "refused on a dry run too: {err}");
    let (code, _, err) = server.kubectl(&["delete", "pc", "system-node-critical"], None);
    assert_eq!(code, 1);
    assert!(
        err.contains("priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"),
        "{err}"
    );
    server.ok(&["create", "priorityclass", "batch", "--value=50", "--preemption-policy=Never"], None);
    let default = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata: {name: normal, labels: {team: a}}\nvalue: 10\nglobalDefault: true\n";
    server.ok(&["apply", "-f", "-"], Some(default));
    let (code, _, err) = server.kubectl(&["create", "priorityclass", "other", "--value=20", "--global-default"], None);
    assert_eq!(code, 1);
    assert!(err.contains("PriorityClass normal is already marked as default. Only one default can exist"), "{err}");
    let (code, _, err) = server.kubectl(&["create", "priorityclass", "huge", "--value=1000000001"], None);
    assert_eq!(code, 1);
    assert!(err.contains("value: Forbidden: maximum allowed value of a user defined priority is 1000000000"), "{err}");
    let (code, _, err) = server.kubectl(&["patch", "pc", "batch", "-p", "{\"value\": 60}"], None);
    assert_eq!(code, 1);
    assert!(err.contains("value: Forbidden: may not be changed in an update."), "{err}");
    server.ok(&["patch", "pc", "batch", "-p", "{\"description\": \"for batch work\"}"], None);
    assert_eq!(
        server.ok(&["get", "pc", "batch", "-o", "jsonpath={.description} {.preemptionPolicy}"], None),
        "for batch work Never"
    );
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: batch-pod}\nspec:\n  priorityClassName: batch\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: plain-pod}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers: [{name: c, image: busybox:1.36, command: [sleep, \"600\"]}]\n";
    server.ok(&["apply", "-f", "-"], Some(pods));
    let spec = |pod: &str| {
        server.ok(
            &["get", "pod", pod, "-o", "jsonpath={.spec.priorityClassName} {.spec.priority} {.spec.preemptionPolicy}"],
            None,
        )
    };
    assert_eq!(spec("batch-pod"), "batch 50 Never");
    assert_eq!(spec("plain-pod"), "normal 10 PreemptLowerPriority", "the default class names a pod without one");
    let never = "apiVersion: v1\nkind: Pod\nmetadata: {name: never}\nspec:\n  preemptionPolicy: Never\n  containers: [{name: c, image: busybox:1.36}]\n";
    let (code, _, err) = server.kubectl(&["apply", "-f", "-"], Some(never));
    assert_eq!(code, 1);
    assert!(err.contains("the string value of PreemptionPolicy (Never) must not be provided in pod spec"), "{err}");
    server.ok(&["delete", "pc", "-l", "team=a"], None);
    let left = server.ok(&["get", "pc", "-o", "name"], None);
    assert_eq!(
        left.lines().collect::<Vec<_>>(),
        [
            "priorityclass.scheduling.k8s.io/batch",
            "priorityclass.scheduling.k8s.io/system-cluster-critical",
            "priorityclass.scheduling.k8s.io/system-node-critical"
        ]
    );
}

/// #17: `kubectl apply -f dir/` with a `kind: List` and a kind podvisor does not serve
/// applies the List's items and names the other kind in kubectl's own words, instead of
/// stopping at `failed to download openapi`; `cluster-info` answers.
#[test]
fn apply_of_a_mixed_directory_applies_what_is_served_and_names_the_rest() {
    let dir = data_dir("mixed");
    let server = serve(&dir);
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let list = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}, data: {x: \"1\"}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n";
    let pdb = "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: db}\nspec:\n  minAvailable: 1\n  selector: {matchLabels: {app: db}}\n";
    std::fs::write(manifests.join("list.yaml"), list).unwrap();
    std::fs::write(manifests.join("pdb.yaml"), pdb).unwrap();
    let (code, out, err) = server.kubectl(&["apply", "-f", manifests.to_str().unwrap()], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("configmap/a created") && out.contains("configmap/b created"), "{out}");
    assert!(err.contains("no matches for kind \"PodDisruptionBudget\" in version \"policy/v1\""), "{err}");
    let info = server.ok(&["cluster-info"], None);
    assert!(info.contains("Kubernetes control plane is running at https://127.0.0.1:"), "{info}");
    // #24: the rest of what docs/kubectl.md marks working for everyday edits.
    let resources = server.ok(&["api-resources"], None);
    assert!(
        resources.lines().any(|l| l.starts_with("pods ") && l.contains(" po ") && l.ends_with("Pod")),
        "{resources}"
    );
    assert!(resources.lines().any(|l| l.starts_with("statefulsets ") && l.contains("apps/v1")), "{resources}");
    let editor = dir.join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/x: \"1\"/x: \"2\"/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut edit = Command::new("kubectl");
    edit.env("KUBECONFIG", dir.join("data/serve/kubeconfig"))
        .env("KUBE_EDITOR", &editor)
        .arg("--cache-dir")
        .arg(dir.join("kube-cache"))
        .args(["edit", "configmap", "a"]);
    let edited = edit.output().unwrap();
    assert!(edited.status.success(), "{}", String::from_utf8_lossy(&edited.stderr));
    assert_eq!(server.ok(&["get", "configmap", "a", "-o", "jsonpath={.data.x}"], None), "2");
    server.ok(&["label", "configmap", "a", "tier=web"], None);
    server.ok(&["annotate", "configmap", "a", "note=hi"], None);
    let meta = server
        .ok(&["get", "configmap", "-l", "tier=web", "-o", "jsonpath={.items[0].metadata.annotations.note}"], None);
    assert_eq!(meta, "hi");
}

/// #24: a second server on a data directory in use says so, as `run` does, instead of the
/// store's own words.
#[test]
fn a_second_server_on_the_same_data_directory_says_it_is_in_use() {
    let dir = data_dir("twice");
    let _first = serve(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["--data-dir", dir.join("data").to_str().unwrap(), "serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another podvisor is using this data directory (use --data-dir for a separate one)"), "{err}");
}

/// #17: `kubectl explain` reads the kinds' schemas from the OpenAPI v3 documents, down to a
/// sidecar's `restartPolicy`, in every served group; `--recursive` walks the references.
#[test]
fn kubectl_explain_reads_the_schemas_of_the_served_kinds() {
    let dir = data_dir("explain");
    let server = serve(&dir);
    let field = server.ok(&["explain", "pod.spec.initContainers.restartPolicy"], None);
    assert!(field.contains("KIND:       Pod") && field.contains("FIELD: restartPolicy <string>"), "{field}");
    assert!(field.contains("\"sidecar\" container"), "{field}");
    let strategy = server.ok(&["explain", "deploy.spec.strategy"], None);
    assert!(
        strategy.contains("GROUP:      apps") && strategy.contains("rollingUpdate\t<RollingUpdateDeployment>"),
        "{strategy}"
    );
    let cron = server.ok(&["explain", "cronjobs.spec.timeZone"], None);
    assert!(cron.contains("GROUP:      batch") && cron.contains("FIELD: timeZone <string>"), "{cron}");
    let tree = server.ok(&["explain", "svc.spec", "--recursive"], None);
    assert!(tree.contains("ports\t<[]ServicePort>") && tree.contains("targetPort\t<IntOrString>"), "{tree}");
    let (code, _, err) = server.kubectl(&["explain", "pod.spec.nosuch"], None);
    assert_ne!(code, 0);
    assert!(err.contains("field \"nosuch\" does not exist"), "{err}");
    // kubectl computes its apply patch from the schemas: a Service's ports merge by `port`.
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: 8080}\n  - {name: https, port: 443, targetPort: 8443}\n";
    server.ok(&["apply", "-f", "-"], Some(svc));
    server.ok(&["apply", "-f", "-"], Some(&svc.replace("8080", "9090")));
    let ports = server.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.ports[*].targetPort}"], None);
    assert_eq!(ports, "9090 8443");
}

/// #17: `kubectl top pod` (with `--containers`) and `kubectl top node` through the
/// `metrics.k8s.io` API: a container spinning shows most of a core, a sleeping sidecar next to
/// nothing; writes to the metrics API are refused.
#[test]
fn kubectl_top_shows_pods_containers_and_the_node() {
    let dir = data_dir("top");
    let server = serve(&dir);
    let pod = r#"
apiVersion: v1
kind: Pod
metadata: {name: busy}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - {name: idle, image: busybox:1.36, restartPolicy: Always, command: [sleep, "600"]}
  containers:
  - {name: spin, image: busybox:1.36, command: [sh, -c, "while :; do :; done"]}
"#;
    server.ok(&["apply", "-f", "-"], Some(pod));
    server.ok(&["wait", "--for=condition=Ready", "pod/busy", "--timeout=60s"], None);
    let millicores = |cell: &str| cell.strip_suffix('m').and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let top = server.ok(&["top", "pod", "busy"], None);
    assert!(millicores(row(&top, "busy")[1]) > 300, "{top}");
    let containers = server.ok(&["top", "pod", "busy", "--containers"], None);
    let spin = containers.lines().find(|l| l.contains(" spin ")).unwrap_or_default().to_string();
    let idle = containers.lines().find(|l| l.contains(" idle ")).unwrap_or_default().to_string();
    let cpu = |line: &str| millicores(line.split_whitespace().nth(2).unwrap_or(""));
    assert!(cpu(&spin) > 300 && cpu(&idle) < 50, "{containers}");
    let node = server.ok(&["top", "node"], None);
    assert!(node.lines().count() == 2 && node.contains('%'), "{node}");
    let (code, _, err) =
        server.kubectl(&["delete", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy"], None);
    assert_eq!(code, 1);
    assert!(err.contains("MethodNotAllowed") || err.contains("method"), "{err}");
}

/// #17: a pod runs as its ServiceAccount, with the kubelet's `kube-api-access-*` volume (token,
/// `ca.crt`, `namespace`) and the `KUBERNETES_SERVICE_*` variables; its token, used as an
/// in-pod client would (through the `kubernetes` Service with that CA), is allowed what its
/// RoleBinding grants and refused the rest in the API server's words; it stops working when
/// the pod is gone. A missing account is refused; `automountServiceAccountToken: false` is
/// honoured.
#[test]
fn service_account_tokens_reach_the_api_through_the_kubernetes_service_under_rbac() {
    let dir = data_dir("sa");
    let server = serve(&dir);
    let manifest = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader}
rules: [{apiGroups: [""], resources: [pods], verbs: [get, list, watch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: read-pods}
subjects: [{kind: ServiceAccount, name: reader, namespace: default}]
roleRef: {kind: Role, name: pod-reader, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: "busybox:1.36", command: [sh, -c, "sleep 3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers: [{name: c, image: "busybox:1.36", command: [sh, -c, "sleep 3600"]}]
"#;
    server.ok(&["apply", "-f", "-"], Some(manifest));
    server.ok(&["wait", "--for=condition=Ready", "pod/client", "pod/quiet", "--timeout=60s"], None);
    let bindings = server.ok(&["get", "rolebindings", "-o", "wide"], None);
    assert!(bindings.contains("Role/pod-reader") && bindings.contains("default/reader"), "{bindings}");
    let files = server.ok(&["exec", "client", "--", "ls", "/var/run/secrets/kubernetes.io/serviceaccount"], None);
    assert_eq!(files.split_whitespace().collect::<Vec<_>>(), ["ca.crt", "namespace", "token"]);
    // The `kubernetes` Service is at 10.96.0.1 unless another server on the machine has it.
    let svc = server.ok(&["get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}"], None);
    let env = server.ok(&["exec", "client", "--", "env"], None);
    assert!(env.contains(&format!("KUBERNETES_SERVICE_HOST={svc}\n")), "{env}");
    assert!(env.contains(&format!("KUBERNETES_PORT_443_TCP=tcp://{svc}:443")), "{env}");
    let (code, out, _) =
        server.kubectl(&["exec", "quiet", "--", "ls", "/var/run/secrets/kubernetes.io/serviceaccount"], None);
    assert_ne!(code, 0, "no token for a pod that asks for none: {out}");
    let cat = |f: &str| {
        server.ok(&["exec", "client", "--", "cat", &format!("/var/run/secrets/kubernetes.io/serviceaccount/{f}")], None)
    };
    let ca = dir.join("pod-ca.crt");
    std::fs::write(&ca, cat("ca.crt")).unwrap();
    let token = cat("token");
    let as_pod = |args: &[&str]| {
        let out = Command::new("kubectl")
            .args([
                "--kubeconfig=/dev/null",
                &format!("--server=https://{svc}"),
                &format!("--certificate-authority={}", ca.display()),
            ])
            .arg(format!("--token={token}"))
            .args(args)
            .output()
            .expect("kubectl runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, err) = as_pod(&["get", "pods"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("client"), "{out}");
    let (_, _, err) = as_pod(&["get", "secrets"]);
    assert!(err.contains(r#"Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:default:reader" cannot list resource "secrets" in API group "" in the namespace "default""#), "{err}");
    // `kubectl auth can-i`, as the pod and as the administrator acting as the account.
    assert_eq!(as_pod(&["auth", "can-i", "list", "pods"]).1.trim(), "yes");
    assert_eq!(as_pod(&["auth", "can-i", "get", "secrets"]).1.trim(), "no");
    let reader = "--as=system:serviceaccount:default:reader";
    assert_eq!(server.kubectl(&["auth", "can-i", "watch", "pods", reader], None).1.trim(), "yes");
    assert_eq!(server.kubectl(&["auth", "can-i", "list", "pods", "-n", "kube-system", reader], None).1.trim(), "no");
    assert_eq!(
        server.ok(&["auth", "can-i", "delete", "nodes"], None).trim(),
        "yes",
        "the administrator may do anything"
    );
    let (_, _, err) = server.kubectl(&["get", "secrets", reader], None);
    assert!(err.contains(r#"User "system:serviceaccount:default:reader" cannot list resource "secrets""#), "{err}");
    let (_, _, err) = as_pod(&["get", "pods", "--as=admin"]);
    assert!(
        err.contains(r#"users "admin" is forbidden: User "system:serviceaccount:default:reader" cannot impersonate"#),
        "{err}"
    );
    // `kubectl create token`: a token of the account, not bound to a pod, for this API.
    let minted = server.ok(&["create", "token", "reader"], None);
    let (code, out, err) =
        server.kubectl(&["auth", "can-i", "list", "pods", &format!("--token={}", minted.trim())], None);
    assert_eq!((code, out.trim()), (0, "yes"), "{err}");
    let (_, _, err) = server.kubectl(&["create", "token", "reader", "--duration=1m"], None);
    assert!(err.contains("may not specify a duration less than 10 minutes"), "{err}");
    let (_, _, err) = as_pod(&["delete", "pod", "quiet"]);
    assert!(
        err.contains(
            r#"pods "quiet" is forbidden: User "system:serviceaccount:default:reader" cannot delete resource "pods""#
        ),
        "{err}"
    );
    let (_, _, err) = server.kubectl(
        &["run", "ghost", "--image=busybox:1.36", "--overrides", r#"{"spec":{"serviceAccountName":"nobody"}}"#],
        None,
    );
    assert!(err.contains(r#"pods "ghost" is forbidden: error looking up service account default/nobody: serviceaccount "nobody" not found"#), "{err}");
    server.ok(&["delete", "pod", "client", "--wait=true"], None);
    let (code, _, err) = as_pod(&["get", "pods"]);
    assert_ne!(code, Some(0));
    assert!(err.contains("Unauthorized"), "a bound token ends with its pod: {err}");
}

/// #17: a StatefulSet gets stable pod names made in order, a claim per pod provisioned on the
/// local-path default class (data outlives the pod: a remade `db-0` finds what the first one
/// wrote), a stable DNS name under its headless Service, `kubectl scale` from the highest
/// ordinal down keeping the claims; a DaemonSet runs one pod on the node; a claim deleted goes
/// with its volume and directory once no pod uses it.
#[test]
fn statefulsets_keep_names_and_claims_daemonsets_run_on_the_node() {
    let dir = data_dir("sts");
    let server = serve(&dir);
    let manifest = r#"
apiVersion: v1
kind: Service
metadata: {name: db}
spec: {clusterIP: None, selector: {app: db}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: busybox:1.36
        command: [sh, -c, "hostname >> /data/log; trap 'exit 0' TERM; sleep 3600 & wait"]
        volumeMounts: [{name: data, mountPath: /data}]
        readinessProbe: {exec: {command: [test, -f, /data/log]}, periodSeconds: 1}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 100Mi}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: c, image: "busybox:1.36", command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]}]
"#;
    server.ok(&["apply", "-f", "-"], Some(manifest));
    server.ok(&["rollout", "status", "sts/db", "--timeout=90s"], None);
    server.ok(&["rollout", "status", "ds/agent", "--timeout=60s"], None);
    let sts = server.ok(&["get", "sts", "db"], None);
    assert!(row(&sts, "db").starts_with(&["db", "2/2"]), "{sts}");
    let ds = server.ok(&["get", "ds", "agent"], None);
    assert!(row(&ds, "agent").starts_with(&["agent", "1", "1", "1", "1", "1"]), "{ds}");
    let claims = server.ok(&["get", "pvc"], None);
    for c in ["data-db-0", "data-db-1"] {
        assert!(row(&claims, c).starts_with(&[c, "Bound"]) && row(&claims, c).contains(&"standard"), "{claims}");
    }
    // Made in order: db-0 was Ready before db-1 was created.
    let created = |p: &str| server.ok(&["get", "pod", p, "-o", "jsonpath={.metadata.creationTimestamp}"], None);
    assert!(created("db-0") <= created("db-1"));
    let resolved = server.ok(&["exec", "db-1", "--", "nslookup", "db-0.db.default.svc.cluster.local"], None);
    let ip0 = server.ok(&["get", "pod", "db-0", "-o", "jsonpath={.status.podIP}"], None);
    assert!(resolved.contains(&format!("Address: {ip0}")), "{resolved}");
    server.ok(&["delete", "pod", "db-0"], None);
    eventually("db-0 made again and Ready", || {
        let (code, _, _) = server.kubectl(&["wait", "--for=condition=Ready", "pod/db-0", "--timeout=2s"], None);
        (code == 0).then_some(())
    });
    let log = server.ok(&["exec", "db-0", "--", "cat", "/data/log"], None);
    assert_eq!(log, "db-0\ndb-0\n", "the claim kept what the first db-0 wrote");
    server.ok(&["scale", "sts", "db", "--replicas=1"], None);
    eventually("db-1 gone", || server.kubectl(&["get", "pod", "db-1"], None).0.ne(&0).then_some(()));
    assert!(server.ok(&["get", "pvc"], None).contains("data-db-1"), "claims outlive a scale down");
    server.ok(&["delete", "sts", "db"], None);
    eventually("db-0 gone", || server.kubectl(&["get", "pod", "db-0"], None).0.ne(&0).then_some(()));
    let volume = server.ok(&["get", "pvc", "data-db-1", "-o", "jsonpath={.spec.volumeName}"], None);
    let path = server.ok(&["get", "pv", &volume, "-o", "jsonpath={.spec.hostPath.path}"], None);
    assert!(Path::new(&path).starts_with(dir.join("data/local-path")), "{path}");
    assert!(Path::new(&path).join("log").exists());
    server.ok(&["delete", "pvc", "data-db-1"], None);
    eventually("the volume gone", || server.kubectl(&["get", "pv", &volume], None).0.ne(&0).then_some(()));
    assert!(!Path::new(&path).exists(), "a deleted provisioned volume takes its directory");
}

/// #18: `podvisor explain` through the API tells the truth on five stuck states: a sidecar's
/// failing startupProbe holding the app, an image that cannot be pulled, a sidecar crash-looping,
/// a pod terminating on a PID-1 shell, and a Job's pod stopping its sidecar after the work.
#[test]
fn explain_says_why_pods_are_stuck_and_what_happens_next() {
    let dir = data_dir("explain-pods");
    let server = serve(&dir);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata: {name: gated}
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: proxy
    image: busybox:1.36
    restartPolicy: Always
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    startupProbe: {tcpSocket: {port: 5432}, periodSeconds: 1, failureThreshold: 300}
  containers: [{name: app, image: "busybox:1.36", command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: nopull}
spec:
  containers: [{name: app, image: "nowhere.invalid/app:1"}]
---
apiVersion: v1
kind: Pod
metadata: {name: crashy}
spec:
  terminationGracePeriodSeconds: 1
  initContainers: [{name: agent, image: "busybox:1.36", restartPolicy: Always, command: [sh, -c, "exit 3"]}]
  containers: [{name: app, image: "busybox:1.36", command: [sleep, "3600"]}]
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 30
  containers: [{name: web, image: "busybox:1.36", command: [sh, -c, "while true; do sleep 1; done"]}]
---
apiVersion: batch/v1
kind: Job
metadata: {name: shipper}
spec:
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 30
      initContainers:
      - {name: log-shipper, image: "busybox:1.36", restartPolicy: Always, command: [sh, -c, "while true; do sleep 1; done"]}
      containers:
      - {name: main-task, image: "busybox:1.36", command: [sh, -c, "sleep 1"]}
"#;
    server.ok(&["apply", "-f", "-"], Some(manifest));
    server.ok(&["wait", "--for=condition=Ready", "pod/stubborn", "--timeout=60s"], None);
    server.ok(&["delete", "pod", "stubborn", "--wait=false"], None);
    let kubeconfig = dir.join("data/serve/kubeconfig");
    let explain = |what: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
            .args(["explain", what, "--kubeconfig", kubeconfig.to_str().unwrap()])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let (gated, failures) = eventually("the startup probe failed twice", || {
        let e = explain("gated");
        let n: u32 = e.split_once("(failed ")?.1.split_once(" times")?.0.parse().ok()?;
        (n >= 2).then_some((e, n))
    });
    assert!(
        gated.starts_with(
            "pod gated is Pending: app has not started: it waits for sidecar proxy's startupProbe (failed"
        ),
        "{gated}"
    );
    assert!(gated.contains(&format!("connection refused); after {} more failures", 300 - failures)), "{gated}");
    let nopull = eventually("the pull failed", || {
        let e = explain("nopull");
        e.contains("cannot be pulled").then_some(e)
    });
    assert!(
        nopull.starts_with(
            "pod nopull is Pending: container app cannot start: its image nowhere.invalid/app:1 cannot be pulled"
        ),
        "{nopull}"
    );
    let crashy = eventually("the sidecar crash-looping", || {
        let e = explain("crashy");
        e.contains("keeps crashing").then_some(e)
    });
    assert!(crashy.contains("sidecar agent keeps crashing") && crashy.contains("last exit code 3 (Error)"), "{crashy}");
    let stubborn = explain("stubborn");
    assert!(
        stubborn.starts_with("pod stubborn is terminating: web still running, killed at the latest in"),
        "{stubborn}"
    );
    assert!(stubborn.contains("its PID 1 is a shell without a trap, which ignores SIGTERM"), "{stubborn}");
    let job = eventually("the work done, the sidecar stopping", || {
        let e = explain("job/shipper");
        e.contains("its work is done").then_some(e)
    });
    assert!(job.starts_with("job shipper is running: 1 active"), "{job}");
    assert!(job.contains("its work is done (main-task exited 0 (Completed)); it is stopping its sidecars"), "{job}");
    assert!(job.contains("sidecar log-shipper got SIGTERM") && job.contains("lint PV004"), "{job}");
    // The same pitfalls, linted on the live objects.
    let out = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["lint", "--kubeconfig", kubeconfig.to_str().unwrap(), "-n", "default", "--color", "never"])
        .output()
        .expect("runs");
    let live = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "warnings only: {live}");
    assert!(
        live.contains(
            "warning  pid1-shell-ignores-sigterm (PV004)  Job/shipper  spec.template.spec.initContainers[0].command"
        ),
        "{live}"
    );
    assert!(!live.contains("Pod/shipper-"), "a Job's pods are linted through its template: {live}");
}

/// #24: `serve -v` logs each request (method, path, status, time) and each pod's lifecycle
/// steps on standard error, as a service manager's journal would keep them.
#[test]
fn serve_verbose_logs_requests_and_pod_steps() {
    let dir = data_dir("verbose");
    let log = dir.join("serve.err");
    let mut wrapper = Command::new("sh");
    wrapper.args(["-c", &format!("exec \"$0\" \"$@\" 2>>{}", log.display()), env!("CARGO_BIN_EXE_podvisor")]);
    let server = serve_under(&dir, &["-v"], wrapper);
    server.ok(&["run", "x", "--image=busybox:1.36", "--restart=Never", "--", "true"], None);
    let text = eventually("the pod's steps in the log", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("podvisor: pod default/x: x exited 0 (Completed)").then_some(text)
    });
    assert!(text.contains("podvisor: POST /api/v1/namespaces/default/pods"), "{text}");
    assert!(text.contains(" 201 "), "{text}");
    assert!(!text.contains("Unauthorized"), "{text}");
    drop(server);

    // #24: for service managers, the same as JSON lines with the fields apart.
    let dir = data_dir("verbose-json");
    let log = dir.join("serve.err");
    let mut wrapper = Command::new("sh");
    wrapper.args(["-c", &format!("exec \"$0\" \"$@\" 2>>{}", log.display()), env!("CARGO_BIN_EXE_podvisor")]);
    let server = serve_under(&dir, &["-v", "--log-format", "json"], wrapper);
    server.ok(&["run", "y", "--image=busybox:1.36", "--restart=Never", "--", "true"], None);
    let lines: Vec<serde_json::Value> = eventually("the pod's steps as JSON", || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
        lines.iter().any(|l| l["message"] == "pod default/y: y exited 0 (Completed)").then_some(lines)
    });
    let post = lines
        .iter()
        .find(|l| l["method"] == "POST" && l["uri"] == "/api/v1/namespaces/default/pods?fieldManager=kubectl-run")
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert_eq!(post["status"], 201);
    assert_eq!(post["level"], "INFO");
    assert!(post["timestamp"].as_str().is_some_and(|t| t.starts_with("20")), "{post}");
    let step = lines.iter().find(|l| l["target"] == "podvisor::pod").unwrap();
    assert_eq!(step["pod"], "default/y");
}

/// The lifecycle lines of a run: `(container, step)` for each start, exit and stop signal, in
/// order.
fn lifecycle(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.split_once("] pod/")?.1;
            let (_, rest) = rest.split_once(' ')?;
            let (container, what) = rest.split_once(": ")?;
            let step =
                ["started", "exited", "sent SIGTERM", "sent SIGKILL"].into_iter().find(|s| what.starts_with(s))?;
            let step = if step == "exited" { what.split(" (").next()?.to_string() } else { step.to_string() };
            Some((container.to_string(), step))
        })
        .collect()
}

/// #20: `podvisor run --kubeconfig` runs the seed Job on a cluster (here `serve`, through the
/// same client a real cluster gets) and prints the same ordered lifecycle as a local run, exits
/// 0 when the Job completes, writes the timeline, reads logs through `logs --kubeconfig`, and on
/// Ctrl-C deletes what it applied. A wrong token is one line naming the context; an exec
/// credential plugin is honoured.
#[test]
fn run_on_a_cluster_follows_the_seed_job_as_a_local_run_does() {
    let dir = data_dir("remote");
    let server = serve(&dir);
    let kubeconfig = dir.join("data/serve/kubeconfig");
    let manifest = dir.join("seed.yaml");
    std::fs::write(&manifest, seed_job()).unwrap();
    let podvisor = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_podvisor")).args(args).output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
    };
    let local_dir = data_dir("remote-local");
    let (code, local, err) =
        podvisor(&["run", manifest.to_str().unwrap(), "--data-dir", local_dir.join("data").to_str().unwrap()]);
    assert_eq!(code, 0, "{local}{err}");
    let timeline = dir.join("remote.json");
    let args = ["run", manifest.to_str().unwrap(), "--kubeconfig", kubeconfig.to_str().unwrap(), "--timeline"];
    let (code, remote, err) = podvisor(&[&args[..], &[timeline.to_str().unwrap()]].concat());
    assert_eq!(code, 0, "{remote}{err}");
    assert!(remote.contains("podvisor: applied job/sidecar-job (server-side, field manager podvisor)"), "{remote}");
    assert!(remote.contains("job/sidecar-job: Complete"), "{remote}");
    assert!(remote.contains("/main-task | task done"), "the containers' output: {remote}");
    let steps = lifecycle(&remote);
    assert!(steps.len() >= 5, "{remote}");
    assert_eq!(steps, lifecycle(&local), "the same lifecycle on the cluster as here:\n{remote}\n---\n{local}");
    let events: serde_json::Value = serde_json::from_slice(&std::fs::read(&timeline).unwrap()).unwrap();
    assert!(events.as_array().unwrap().iter().any(|e| e["type"] == "exited" && e["container"] == "main-task"));
    let (code, logs, _) =
        podvisor(&["logs", "job/sidecar-job", "-c", "main-task", "--kubeconfig", kubeconfig.to_str().unwrap()]);
    assert_eq!((code, logs.as_str()), (0, "task done\n"));
    // The picture of the Job, read from the cluster: the sidecar's row, its SIGTERM and 137.
    let svg = dir.join("job.svg");
    let (code, _, err) = podvisor(&[
        "timeline",
        "job/sidecar-job",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.contains("log-shipper") && svg.contains("sidecar") && svg.contains("main-task"), "{svg}");
    assert!(svg.contains("SIGTERM") && svg.contains("137"), "{svg}");

    // Ctrl-C deletes what the run applied.
    let long = dir.join("long.yaml");
    std::fs::write(&long, SIDECAR_POD).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_podvisor"))
        .args(["run", long.to_str().unwrap(), "--kubeconfig", kubeconfig.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().contains("app: started")), "the pod starts on the cluster");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert_eq!(child.wait().unwrap().code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|l| l.contains("app: sent SIGTERM")), "{rest:?}");
    let (code, _, err) = server.kubectl(&["get", "pod", "web"], None);
    assert_eq!(code, 1, "the pod is gone: {err}");

    // A wrong token: one line that names the context.
    let good = std::fs::read_to_string(&kubeconfig).unwrap();
    let token = good.lines().find_map(|l| l.trim().strip_prefix("token: ")).unwrap().to_string();
    let bad = dir.join("bad.kubeconfig");
    std::fs::write(&bad, good.replace(&token, "wrong")).unwrap();
    let (code, _, err) = podvisor(&["explain", "job/sidecar-job", "--kubeconfig", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("context \"podvisor\"") && err.contains("Unauthorized"), "{err}");

    // An exec credential plugin gives the token.
    let plugin = dir.join("credential.sh");
    std::fs::write(
        &plugin,
        format!("#!/bin/sh\necho '{{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\",\"status\":{{\"token\":\"{token}\"}}}}'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let exec = format!(
        "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      interactiveMode: Never\n",
        plugin.display()
    );
    let with_plugin = dir.join("plugin.kubeconfig");
    std::fs::write(&with_plugin, good.replace(&format!("    token: {token}\n"), &exec)).unwrap();
    let (code, out, err) = podvisor(&["explain", "job/sidecar-job", "--kubeconfig", with_plugin.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("job sidecar-job is Complete"), "{out}");

    // `compare`: the seed Job here and on the cluster agree; a longer grace on the cluster
    // side is the one difference, explained by the grace rules, and both go in one picture.
    let data = local_dir.join("data");
    let (code, out, err) = podvisor(&[
        "compare",
        manifest.to_str().unwrap(),
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("  start order         log-shipper, main-task"), "{out}");
    assert!(out.ends_with("\nno difference\n"), "{out}");
    let longer = dir.join("longer.yaml");
    std::fs::write(&longer, seed_job().replace("terminationGracePeriodSeconds: 2", "terminationGracePeriodSeconds: 4"))
        .unwrap();
    let picture = dir.join("both.html");
    let (code, out, err) = podvisor(&[
        "compare",
        manifest.to_str().unwrap(),
        "--against",
        longer.to_str().unwrap(),
        "--simulate",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--timeline",
        picture.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{out}{err}");
    let differing: Vec<&str> = out.lines().filter(|l| l.contains('≠')).collect();
    assert_eq!(differing.len(), 1, "{out}");
    assert!(
        differing[0].starts_with("  SIGTERM to SIGKILL  log-shipper 2.0 s")
            && differing[0].contains("log-shipper 4.0 s"),
        "{out}"
    );
    assert!(differing[0].contains("R42, R45"), "{out}");
    assert!(out.ends_with("\n1 difference(s)\n"), "{out}");
    let html = std::fs::read_to_string(&picture).unwrap();
    assert!(html.contains("cluster: default/sidecar-job-"), "both sides in the picture");
    drop(server);
    std::fs::remove_dir_all(&local_dir).ok();
}
