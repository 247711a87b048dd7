//! Timeline pictures on the command line: `podvisor timeline RUN.json -o out.html|out.svg`, and
//! `--timeline out.html|out.svg` on `run` and `simulate` (`.json` keeps the raw events).

use std::collections::HashMap;
use std::path::Path;

use k8s_openapi::api::core::v1::PodSpec;
use podvisor_engine::{EventType, Hook, ProbeKind};
use podvisor_sim::{Entry, Mark};
use podvisor_timeline::{Kind, Recorder, Timeline};

/// The picture format a path asks for by its extension, if it asks for one.
pub fn picture(path: &Path) -> Option<&'static str> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html" | "htm") => Some("html"),
        Some("svg") => Some("svg"),
        _ => None,
    }
}

/// Writes `t` to `path` as the picture its extension names.
pub fn write(path: &Path, t: &Timeline) -> anyhow::Result<()> {
    let text = match picture(path) {
        Some("svg") => podvisor_timeline::svg(t),
        Some(_) => podvisor_timeline::html(t),
        None => anyhow::bail!("{}: a timeline picture is written as .html or .svg", path.display()),
    };
    std::fs::write(path, text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What each container of each pod (`namespace/name`) is: init, sidecar or app.
pub type Kinds = HashMap<(String, String), Kind>;

/// Adds the containers of the pod `key` with `spec` to `kinds`.
pub fn add_kinds(kinds: &mut Kinds, key: &str, spec: &PodSpec) {
    for c in spec.init_containers.iter().flatten() {
        let kind = if c.restart_policy.as_deref() == Some("Always") { Kind::Sidecar } else { Kind::Init };
        kinds.insert((key.to_string(), c.name.clone()), kind);
    }
    for c in &spec.containers {
        kinds.insert((key.to_string(), c.name.clone()), Kind::App);
    }
}

/// Writes a run's events to `path`: as JSON (for `podvisor timeline`), or drawn as the picture
/// its extension asks for, titled `title`.
pub fn save(path: &Path, title: &str, events: &[podvisor_node::NodeEvent], kinds: &Kinds) -> anyhow::Result<()> {
    if picture(path).is_some() {
        let events: Vec<serde_json::Value> = events.iter().filter_map(|e| serde_json::to_value(e).ok()).collect();
        return write(path, &podvisor_timeline::from_run_events(title, &events, kinds));
    }
    std::fs::write(path, serde_json::to_vec_pretty(events)?).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// `podvisor timeline POD|job/NAME --context C -o OUT`: the picture of what pods on a cluster
/// went through, read from their status and events.
pub fn from_cluster(
    target: &podvisor_kube::Target,
    namespace: Option<&str>,
    what: &str,
    output: &Path,
) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (events, title, kinds) = rt.block_on(async {
        let c = podvisor_kube::connect(target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let say = |e: podvisor_kube::ClientError| anyhow::anyhow!(c.say(&e));
        let ns = namespace.map(str::to_string).unwrap_or_else(|| c.namespace.clone());
        let mut out = Vec::new();
        let mut kinds = Kinds::new();
        for pod in podvisor_kube::pods_of(&c.client, &ns, what).await.map_err(say)? {
            let events = podvisor_kube::pod_events(&c.client, &ns, &pod).await.map_err(say)?;
            let key = format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or(""));
            if let Some(spec) = &pod.spec {
                add_kinds(&mut kinds, &key, spec);
            }
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            for (at, step) in podvisor_kube::follow::history(&pod, &events) {
                for what in crate::printer::whats(step) {
                    out.push(podvisor_node::NodeEvent { at, pod: key.clone(), uid: uid.clone(), what });
                }
            }
        }
        Ok::<_, anyhow::Error>((out, format!("{what} on context {}", c.context), kinds))
    })?;
    if events.is_empty() {
        anyhow::bail!("{what}: no pod has run yet");
    }
    save(output, &title, &events, &kinds)?;
    Ok(true)
}

/// The largest events file read back: hours of a run's events, and a bound on what a mistaken
/// path (a disk image, a log) may cost.
const MAX_EVENTS_FILE: u64 = 64 * 1024 * 1024;

/// `podvisor timeline RUN.json -o OUT`: the picture of a run's events.
pub fn from_file(input: &Path, output: &Path) -> anyhow::Result<bool> {
    use std::io::Read;
    let failed = |e: std::io::Error| anyhow::anyhow!("{}: {e}", input.display());
    let mut text = Vec::new();
    std::fs::File::open(input).and_then(|f| f.take(MAX_EVENTS_FILE + 1).read_to_end(&mut text)).map_err(failed)?;
    if text.len() as u64 > MAX_EVENTS_FILE {
        anyhow::bail!(
            "{}: larger than {} MiB; not the events of `podvisor run --timeline FILE.json`",
            input.display(),
            MAX_EVENTS_FILE >> 20
        );
    }
    let events: Vec<serde_json::Value> = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!("{}: not the events of `podvisor run --timeline FILE.json`: {e}", input.display())
    })?;
    let title = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    write(output, &podvisor_timeline::from_run_events(&title, &events, &HashMap::new()))?;
    Ok(true)
}

/// The kind of each container of `spec`, in start order.
pub fn kinds(spec: &PodSpec) -> Vec<(String, Kind)> {
    let init = spec.init_containers.iter().flatten().map(|c| {
        let kind = if c.restart_policy.as_deref() == Some("Always") { Kind::Sidecar } else { Kind::Init };
        (c.name.clone(), kind)
    });
    init.chain(spec.containers.iter().map(|c| (c.name.clone(), Kind::App))).collect()
}

/// Records a simulated pod's marks (`pod` named, `spec` its spec) into `r`.
pub fn record_sim(r: &mut Recorder, pod: &str, spec: &PodSpec, entries: &[Entry]) {
    for (name, kind) in kinds(spec) {
        r.container(pod, &name, kind);
    }
    let gated = |name: &str| {
        spec.init_containers.iter().flatten().chain(&spec.containers).find(|c| c.name == name).is_some_and(|c| {
            c.startup_probe.is_some() || c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()).is_some()
        })
    };
    let grace = spec.termination_grace_period_seconds.map(|g| g as f64).or(Some(30.0));
    let mut attempts: HashMap<String, u32> = HashMap::new();
    for e in entries {
        let (at, c) = (e.at.as_secs_f64(), e.container.as_str());
        match &e.mark {
            Mark::Starting => {
                let n = attempts.entry(c.to_string()).or_insert(0);
                r.started(pod, c, at, *n, gated(c));
                *n += 1;
            }
            Mark::Exiting(code) => r.exited(pod, c, at, *code, if *code == 0 { "Completed" } else { "Error" }),
            Mark::Killed => r.exited(pod, c, at, 137, "Error: killed"),
            Mark::Signalled(sig) => r.signalled(pod, c, at, sig, "", grace),
            Mark::HookStart(h) => r.hook(pod, c, at, hook_name(*h), "started"),
            Mark::HookEnd(h) => {
                r.hook(pod, c, at, hook_name(*h), "finished");
                if *h == Hook::PostStart {
                    r.became_started(pod, c, at, "postStart hook returned");
                }
            }
            Mark::Probe(kind, ok) => {
                r.probe(pod, c, at, &kind.title().to_lowercase(), *ok, "");
                if *kind == ProbeKind::Startup && *ok {
                    r.became_started(pod, c, at, "startup probe passed");
                }
            }
            Mark::Event(ev) if ev.kind == EventType::Warning || ev.reason == "BackOff" => {
                let who = ev.container.as_ref().map(|c| c.name.as_str());
                r.event(pod, who, at, &format!("{}: {}", ev.reason, ev.message), ev.kind == EventType::Warning);
            }
            Mark::Phase(p) => r.phase(pod, at, p),
            Mark::SandboxRemoved => r.finished(pod, at),
            _ => {}
        }
    }
}

fn hook_name(h: Hook) -> &'static str {
    match h {
        Hook::PostStart => "postStart",
        Hook::PreStop => "preStop",
    }
}
