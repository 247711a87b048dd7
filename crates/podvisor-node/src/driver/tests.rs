//! The driver on a scripted machine, in tokio's virtual time: no root, no runtime, no sleeps.
//! What is tested is the driver's own work: feeding the engine what the machine reports, the
//! moment it reports it, carrying out its actions in order, the one dispatch of probes and
//! hooks, and the pod's end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio::sync::mpsc;

use super::*;
use crate::handlers::Target;
use crate::machine::{SandboxFailure, StartOrder};

/// How a scripted container behaves.
#[derive(Clone, Copy)]
struct Script {
    /// Exits on its own after this long with `code`; runs forever when `None`.
    runs_for: Option<Duration>,
    code: i32,
    /// Exits 0 this long after SIGTERM; ignores SIGTERM when `None`.
    on_term: Option<Duration>,
}

const FOREVER: Script = Script { runs_for: None, code: 0, on_term: Some(Duration::from_millis(500)) };

#[derive(Default)]
struct Books {
    scripts: HashMap<String, Script>,
    /// Per container, the results of successive `exec`s (the last one repeats).
    execs: HashMap<String, Vec<bool>>,
    /// The signal senders of running instances.
    running: HashMap<ContainerRef, mpsc::UnboundedSender<String>>,
    /// What happened, in order, with the virtual time since the start.
    log: Vec<(Duration, String)>,
    origin: Option<Instant>,
    sandbox_fails: bool,
    /// The containers the driver asked to have created ahead of their starts.
    ahead: Vec<String>,
}

/// A machine whose containers follow scripts.
#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Books>>);

impl Scripted {
    fn new(scripts: &[(&str, Script)]) -> Self {
        let m = Scripted::default();
        {
            let mut b = m.0.lock().unwrap();
            b.scripts = scripts.iter().map(|(n, s)| (n.to_string(), *s)).collect();
            b.origin = Some(Instant::now());
        }
        m
    }

    fn note(&self, what: String) {
        let mut b = self.0.lock().unwrap();
        let at = b.origin.map_or(Duration::ZERO, |o| o.elapsed());
        b.log.push((at, what));
    }

    fn log(&self) -> Vec<(Duration, String)> {
        self.0.lock().unwrap().log.clone()
    }

    /// When `what` first happened.
    fn when(&self, what: &str) -> Option<Duration> {
        self.log().into_iter().find(|(_, w)| w == what).map(|(t, _)| t)
    }
}

impl Machine for Scripted {
    type Held = ();

    fn host_ip(&self) -> String {
        "10.0.0.1".into()
    }

    fn leftover(&self, _pod: &Pod) -> Leftover<()> {
        Leftover::Nothing
    }

    async fn take_over(&self, _pod: &Arc<Pod>, _held: (), _report: &Report, _publish: &Publish) -> Sandboxed {
        unreachable!("nothing is left over")
    }

    async fn clear_dead(&self, _pod: &Pod) {}

    async fn create_sandbox(&self, _pod: &Pod, _publish: &Publish) -> Result<Sandboxed, SandboxFailure> {
        if self.0.lock().unwrap().sandbox_fails {
            self.note("sandbox failed".into());
            return Err(SandboxFailure { reason: "FailedCreatePodSandBox", message: "no namespaces".into() });
        }
        self.note("sandbox".into());
        Ok(Sandboxed { pod_ip: Some("10.0.0.2".into()), ctx: Arc::default(), volumes: HashMap::new() })
    }

    fn create_ahead(&self, _pod: &Arc<Pod>, _ctx: &Arc<PodContext>, spec: &Container) {
        self.0.lock().unwrap().ahead.push(spec.name.clone());
    }

    fn start(&self, order: StartOrder) {
        let r = order.r.clone();
        let script = self.0.lock().unwrap().scripts.get(&r.name).copied().unwrap_or(FOREVER);
        let (tx, mut signals) = mpsc::unbounded_channel();
        self.0.lock().unwrap().running.insert(r.clone(), tx);
        let me = self.clone();
        let report = order.report;
        tokio::spawn(async move {
            _ = report.send(Input::ImageReady { container: r.clone(), pulled: false });
            _ = report.send(Input::Created { container: r.clone(), id: format!("{}-{}", r.name, r.attempt) });
            me.note(format!("start {}", r.name));
            _ = report.send(Input::Started { container: r.clone() });
            let ends = async {
                match script.runs_for {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(ends);
            let code = loop {
                tokio::select! {
                    () = &mut ends => break script.code,
                    Some(sig) = signals.recv() => {
                        me.note(format!("{sig} {}", r.name));
                        match (sig.as_str(), script.on_term) {
                            ("SIGKILL", _) => break 137,
                            (_, Some(d)) => {
                                tokio::time::sleep(d).await;
                                break 0;
                            }
                            (_, None) => {}
                        }
                    }
                }
            };
            me.note(format!("exit {} {code}", r.name));
            me.0.lock().unwrap().running.remove(&r);
            _ = report.send(Input::Exited {
                container: r,
                exit_code: code,
                cause: podvisor_engine::ExitCause::Exited,
                message: None,
            });
        });
    }

    fn pid_namespace(&self, _pod: &Pod, _id: &str) -> Option<PathBuf> {
        None
    }

    fn image_stop_signal(&self, _image: &str) -> Option<String> {
        None
    }

    fn signal(&self, _pod: &Pod, r: &ContainerRef, signal: String) {
        if let Some(tx) = self.0.lock().unwrap().running.get(r) {
            _ = tx.send(signal);
        }
    }

    async fn exec(&self, _pod: &Pod, r: &ContainerRef, argv: Vec<String>, _timeout: Duration) -> Outcome {
        let passed = {
            let mut b = self.0.lock().unwrap();
            let results = b.execs.entry(r.name.clone()).or_default();
            if results.len() > 1 { results.remove(0) } else { results.first().copied().unwrap_or(true) }
        };
        self.note(format!("exec {} {} {}", r.name, argv.join(" "), if passed { "ok" } else { "failed" }));
        if passed { Outcome::Ok } else { Outcome::Failed("not yet".into()) }
    }

    fn target(&self, _pod: &Pod) -> Target {
        Target { netns: None, ip: "127.0.0.1".into() }
    }

    async fn remove_sandbox(&self, _pod: &Pod) {
        self.note("sandbox removed".into());
    }
}

/// Whether `got` is `want`, give or take the timer wheel's millisecond (the monotonic origin the
/// driver reads is the process's, shared by tests whose paused clocks differ by under a
/// millisecond).
fn about(got: Duration, want: Duration) -> bool {
    got.abs_diff(want) <= Duration::from_millis(2)
}

/// A driven pod: its input channel, its published status, what it published.
struct Driven {
    input: mpsc::UnboundedSender<Input>,
    snapshot: watch::Receiver<PodSnapshot>,
    published: Arc<Mutex<Vec<What>>>,
    task: tokio::task::JoinHandle<()>,
}

fn drive(machine: &Scripted, pod: serde_json::Value) -> Driven {
    let pod: Pod = serde_json::from_value(pod).expect("a pod");
    let (tx, rx) = mpsc::unbounded_channel();
    let (snap_tx, snapshot) = watch::channel(PodSnapshot::default());
    let published = Arc::new(Mutex::new(Vec::new()));
    let sink = published.clone();
    let publish: Publish = Arc::new(move |w| sink.lock().unwrap().push(w));
    let driver = Driver::new(machine.clone(), Arc::new(pod), rx, tx.clone(), publish, Arc::new(snap_tx));
    Driven { input: tx, snapshot, published, task: tokio::spawn(driver.run()) }
}

fn pod(policy: &str, grace: i64, init: serde_json::Value, containers: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
        "spec": {"restartPolicy": policy, "terminationGracePeriodSeconds": grace,
                 "initContainers": init, "containers": containers}
    })
}

fn ctr(name: &str) -> serde_json::Value {
    json!({"name": name, "image": "busybox"})
}

/// R16, R43: the sidecar is started before the app, signalled only after the app exited, and
/// the pod (a Job's pod, `Never`) succeeds; the sandbox goes last.
#[tokio::test(start_paused = true)]
async fn r16_r43_a_sidecar_runs_around_the_app_and_the_pod_succeeds() {
    let machine = Scripted::new(&[("app", Script { runs_for: Some(Duration::from_secs(2)), code: 0, on_term: None })]);
    let mut sidecar = ctr("proxy");
    sidecar["restartPolicy"] = json!("Always");
    let d = drive(&machine, pod("Never", 30, json!([sidecar]), json!([ctr("app")])));
    tokio::time::timeout(Duration::from_secs(60), d.task).await.expect("the pod ends").expect("no panic");
    let order: Vec<String> = machine.log().into_iter().map(|(_, w)| w).collect();
    assert_eq!(
        order,
        ["sandbox", "start proxy", "start app", "exit app 0", "SIGTERM proxy", "exit proxy 0", "sandbox removed"],
    );
    let snap = d.snapshot.borrow().clone();
    assert!(snap.finished);
    assert_eq!(snap.status.phase.as_deref(), Some("Succeeded"));
    // The exit is acted on at once: the sidecar is signalled the moment the app exits.
    assert_eq!(machine.when("SIGTERM proxy"), machine.when("exit app 0"));
}

/// R16: containers that wait only for sidecars are created ahead of their starts, all but the first
/// container (which starts at once); behind a regular init container, none is (it runs to its
/// end first). The order of starts is the engine's either way.
#[tokio::test(start_paused = true)]
async fn r16_only_containers_behind_sidecars_alone_are_created_ahead_and_start_in_order() {
    let sidecar = |name: &str| {
        let mut c = ctr(name);
        c["restartPolicy"] = json!("Always");
        c
    };
    let app = Script { runs_for: Some(Duration::from_secs(1)), code: 0, on_term: None };
    let machine = Scripted::new(&[("app", app)]);
    let d = drive(&machine, pod("Never", 30, json!([sidecar("a"), sidecar("b")]), json!([ctr("app"), ctr("web")])));
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.input.send(Input::Delete { grace_seconds: Some(1) }).unwrap();
    tokio::time::timeout(Duration::from_secs(60), d.task).await.expect("the pod ends").expect("no panic");
    assert_eq!(machine.0.lock().unwrap().ahead, ["b", "app", "web"]);
    let order: Vec<String> = machine.log().into_iter().map(|(_, w)| w).collect();
    assert_eq!(order[..5], ["sandbox", "start a", "start b", "start app", "start web"], "{order:?}");

    let (first, machine) = (ctr("setup"), Scripted::new(&[("setup", app), ("app", app)]));
    let d = drive(&machine, pod("Never", 30, json!([first, sidecar("b")]), json!([ctr("app")])));
    tokio::time::timeout(Duration::from_secs(60), d.task).await.expect("the pod ends").expect("no panic");
    assert_eq!(machine.0.lock().unwrap().ahead, Vec::<String>::new(), "behind a regular init container");
    assert!(machine.when("start app").is_some(), "{:?}", machine.log());
}

/// R42: a container that ignores SIGTERM is killed when the grace runs out, measured from the
/// deletion, and the driver says why.
#[tokio::test(start_paused = true)]
async fn r42_sigkill_comes_when_the_grace_of_a_deletion_runs_out() {
    let machine = Scripted::new(&[("app", Script { runs_for: None, code: 0, on_term: None })]);
    let d = drive(&machine, pod("Always", 30, json!([]), json!([ctr("app")])));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let deleted = Instant::now();
    d.input.send(Input::Delete { grace_seconds: Some(5) }).unwrap();
    tokio::time::timeout(Duration::from_secs(60), d.task).await.expect("the pod ends").expect("no panic");
    let (term, kill) = (machine.when("SIGTERM app").unwrap(), machine.when("SIGKILL app").unwrap());
    assert!(about(kill - term, Duration::from_secs(5)), "{:?}", machine.log());
    assert!(deleted.elapsed() >= Duration::from_secs(5));
    let published = d.published.lock().unwrap();
    assert!(
        published.iter().any(|w| matches!(w, What::Signalled { signal, why, .. }
            if signal == "SIGKILL" && why.contains("after SIGTERM: the grace period is over"))),
        "{published:?}"
    );
}

/// R16: a sidecar with an exec startup probe gates the app until the probe passes; the probe
/// goes through the same dispatch as hooks, and a postStart hook of the app runs after its
/// start.
#[tokio::test(start_paused = true)]
async fn r16_the_startup_probe_gates_the_app_and_hooks_share_the_dispatch() {
    let machine = Scripted::new(&[("app", Script { runs_for: Some(Duration::from_secs(1)), code: 0, on_term: None })]);
    machine.0.lock().unwrap().execs.insert("proxy".into(), vec![false, false, true]);
    let mut sidecar = ctr("proxy");
    sidecar["restartPolicy"] = json!("Always");
    sidecar["startupProbe"] = json!({"exec": {"command": ["ready"]}, "periodSeconds": 2, "failureThreshold": 10});
    let mut app = ctr("app");
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["hello"]}}});
    let d = drive(&machine, pod("Never", 30, json!([sidecar]), json!([app])));
    tokio::time::timeout(Duration::from_secs(60), d.task).await.expect("the pod ends").expect("no panic");
    let order: Vec<String> = machine.log().into_iter().map(|(_, w)| w).collect();
    let at = |w: &str| order.iter().position(|x| x == w).unwrap_or_else(|| panic!("{w} in {order:?}"));
    assert!(at("exec proxy ready ok") < at("start app"), "{order:?}");
    assert!(at("start app") < at("exec app hello ok"), "{order:?}");
    // Two failures two seconds apart, then the pass: the app starts 4 s in.
    let started = machine.when("start app").unwrap() - machine.when("start proxy").unwrap();
    assert!(about(started, Duration::from_secs(4)), "{:?}", machine.log());
    assert_eq!(d.snapshot.borrow().status.phase.as_deref(), Some("Succeeded"));
}

/// A sandbox that cannot be made is retried after the back-off, with the kubelet's event.
#[tokio::test(start_paused = true)]
async fn a_failed_sandbox_is_retried_after_the_back_off() {
    let machine = Scripted::new(&[]);
    machine.0.lock().unwrap().sandbox_fails = true;
    let d = drive(&machine, pod("Always", 30, json!([]), json!([ctr("app")])));
    tokio::time::sleep(Duration::from_secs(5)).await;
    machine.0.lock().unwrap().sandbox_fails = false;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let log = machine.log();
    assert_eq!(log.iter().filter(|(_, w)| w == "sandbox failed").count(), 1, "{log:?}");
    assert!(machine.when("sandbox").is_some_and(|t| about(t, Duration::from_secs(10))), "{log:?}");
    assert!(machine.when("start app").is_some());
    let published = d.published.lock().unwrap();
    assert!(published.iter().any(|w| matches!(w, What::Event { reason, .. } if reason == "FailedCreatePodSandBox")));
    d.task.abort();
}
