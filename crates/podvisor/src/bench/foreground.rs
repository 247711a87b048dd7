//! Figures from `podvisor run`, the way a user starts it: a fresh process per run, its
//! `--timeline` read afterwards. The timestamps are the node's own.

use std::path::Path;
use std::process::{Command, Stdio};

use jiff::Timestamp;
use serde_json::Value;

use super::Samples;

/// A sidecar that ends at once on SIGTERM (the shell's `wait` is interrupted by the trap).
const PROMPT_SIDECAR: &str = r#"[sh, -c, "trap 'exit 0' TERM; sleep 1000 & wait"]"#;

fn pod(name: &str, sidecar_extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: sidecar
    image: busybox:1.36
    restartPolicy: Always
    command: {PROMPT_SIDECAR}
{sidecar_extra}  containers:
  - name: app
    image: busybox:1.36
    command: ["true"]
"#
    )
}

fn job() -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata: {{name: bench-job}}
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: sidecar
        image: busybox:1.36
        restartPolicy: Always
        command: {PROMPT_SIDECAR}
      containers:
      - name: app
        image: busybox:1.36
        command: [sh, -c, "echo task done"]
"#
    )
}

/// seed002-1 with its log shipper made to end on SIGTERM (the seed's own ignores it).
fn seed() -> String {
    let ignoring = "while true; do echo 'shipping logs...'; sleep 2; done";
    let prompt = "trap 'exit 0' TERM; while true; do echo 'shipping logs...'; sleep 2 & wait; done";
    super::engine::SEED.replace(ignoring, prompt)
}

/// What the foreground runs measured, in milliseconds.
pub(crate) struct Foreground {
    pub start: Samples,
    pub handoff: Samples,
    pub handoff_probe: Samples,
    pub completion: Samples,
    pub completion_from_app: Samples,
    pub seed: Samples,
    /// Where a pod's start goes: each step of the sandbox and of a container, in microseconds.
    pub steps: Vec<(String, Samples)>,
}

/// One event of a timeline.
struct Event {
    at: Timestamp,
    what: Value,
}

fn ms(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

/// The longest one measured run may take.
const RUN_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `manifest` with `podvisor run`; the time it was launched, how long it took, its events.
fn run_once(
    exe: &Path,
    runtime: &Path,
    data: &Path,
    dir: &Path,
    manifest: &str,
) -> anyhow::Result<(Timestamp, f64, Vec<Event>)> {
    let (file, timeline) = (dir.join("manifest.yaml"), dir.join("timeline.json"));
    std::fs::write(&file, manifest)?;
    let launched = Timestamp::now();
    let mut child = Command::new(exe)
        .env("PODVISOR_RUNTIME", runtime)
        .arg("run")
        .arg(&file)
        .arg("--data-dir")
        .arg(data)
        .arg("--timeline")
        .arg(&timeline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()?;
    // A run that never ends is a failure to report, not a benchmark that waits forever. The
    // wait is on its own thread, so the end is seen the moment it comes.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(RUN_LIMIT) {
        Ok(s) => s?,
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            anyhow::bail!("podvisor run did not end within {RUN_LIMIT:?} on:\n{manifest}");
        }
    };
    let took = ms(launched, Timestamp::now());
    if !status.success() {
        anyhow::bail!("podvisor run failed ({status}) on:\n{manifest}");
    }
    let events: Vec<Value> = serde_json::from_slice(&std::fs::read(&timeline)?)?;
    let events =
        events.into_iter().filter_map(|e| Some(Event { at: e["at"].as_str()?.parse().ok()?, what: e })).collect();
    Ok((launched, took, events))
}

/// When the first event of `kind` about `container` (if given) came.
fn when(events: &[Event], kind: &str, container: Option<&str>, f: impl Fn(&Value) -> bool) -> Option<Timestamp> {
    events
        .iter()
        .find(|e| e.what["type"] == kind && container.is_none_or(|c| e.what["container"] == c) && f(&e.what))
        .map(|e| e.at)
}

/// Runs each shape `n` times (the seed, which takes 5 s, at most 3 times).
pub(crate) fn measure(exe: &Path, runtime: &Path, data: &Path, n: usize) -> anyhow::Result<Foreground> {
    let dir = std::env::temp_dir().join(format!("podvisor-bench-run-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut f = Foreground {
        start: Samples::default(),
        handoff: Samples::default(),
        handoff_probe: Samples::default(),
        completion: Samples::default(),
        completion_from_app: Samples::default(),
        seed: Samples::default(),
        steps: Vec::new(),
    };
    let any = |_: &Value| true;
    let plain = pod("bench-pod", "");
    let probed = pod("bench-probe", "    startupProbe: {exec: {command: [\"true\"]}, periodSeconds: 1}\n");
    let missing = |what: &str| anyhow::anyhow!("a run's timeline has no {what}");
    for _ in 0..n {
        let (launched, _, ev) = run_once(exe, runtime, data, &dir, &plain)?;
        let sidecar = when(&ev, "started", Some("sidecar"), any).ok_or_else(|| missing("sidecar start"))?;
        let app = when(&ev, "started", Some("app"), any).ok_or_else(|| missing("app start"))?;
        f.start.0.push(ms(launched, app));
        f.handoff.0.push(ms(sidecar, app));
        for e in ev.iter().filter(|e| e.what["type"] == "timing") {
            let of = if e.what["container"].is_null() { "sandbox" } else { "container" };
            for step in e.what["steps"].as_array().into_iter().flatten() {
                let (Some(name), Some(us)) = (step[0].as_str(), step[1].as_f64()) else { continue };
                let key = format!("{of}: {name}");
                match f.steps.iter_mut().find(|(k, _)| *k == key) {
                    Some((_, s)) => s.0.push(us),
                    None => f.steps.push((key, Samples(vec![us]))),
                }
            }
        }

        let (_, _, ev) = run_once(exe, runtime, data, &dir, &probed)?;
        let passed = when(&ev, "handler", Some("sidecar"), |e| e["handler"] == "startupProbe")
            .ok_or_else(|| missing("startup probe"))?;
        let app = when(&ev, "started", Some("app"), any).ok_or_else(|| missing("app start"))?;
        f.handoff_probe.0.push(ms(passed, app));

        let (_, _, ev) = run_once(exe, runtime, data, &dir, &job())?;
        let app_exit = when(&ev, "exited", Some("app"), any).ok_or_else(|| missing("app exit"))?;
        let sidecar_exit = when(&ev, "exited", Some("sidecar"), any).ok_or_else(|| missing("sidecar exit"))?;
        let done = when(&ev, "phase", None, |e| e["phase"] == "Succeeded").ok_or_else(|| missing("Succeeded"))?;
        f.completion.0.push(ms(sidecar_exit, done));
        f.completion_from_app.0.push(ms(app_exit, done));
    }
    for _ in 0..n.min(3) {
        let (_, took, _) = run_once(exe, runtime, data, &dir, &seed())?;
        f.seed.0.push(took);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_seed_is_run_with_a_sidecar_that_ends_on_sigterm() {
        let seed = super::seed();
        assert!(seed.contains("trap 'exit 0' TERM") && seed.contains("name: main-task"), "{seed}");
    }
}
