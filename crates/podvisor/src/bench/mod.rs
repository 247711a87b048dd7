//! `podvisor bench`: how fast podvisor runs pods on this machine, next to the floor (the same
//! containers started directly with the OCI runtime) and the alternatives, printed as a table
//! and written as JSON.
//!
//! Every figure is measured on real containers (busybox:1.36 from the data directory) in the
//! same run, except the engine's, which runs in virtual time. Nothing here asserts a timing:
//! the targets are reported as met or missed, by how much.

mod admission;
mod api;
mod client;
mod engine;
mod floor;
mod foreground;
mod podman;
mod rollout;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// Options of `podvisor bench`.
pub struct Options {
    /// The data directory (with busybox:1.36 loaded).
    pub data_dir: PathBuf,
    /// The OCI runtime binary.
    pub runtime: PathBuf,
    /// Other runtimes whose pod start and handoff are measured in the same run, next to their
    /// own floor.
    pub also: Vec<PathBuf>,
    /// Runs per latency figure.
    pub iterations: usize,
    /// Pods created at once for the scale figure.
    pub pods: usize,
    /// Where the JSON goes.
    pub out: PathBuf,
    /// The test image's OCI archive, for podman's baseline (measured when podman is installed).
    pub podman_archive: Option<PathBuf>,
}

/// Samples of one latency, in milliseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Samples(pub Vec<f64>);

impl Samples {
    fn sorted(&self) -> Vec<f64> {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (NaN when empty).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The 95th percentile, nearest rank (NaN when empty).
    pub fn p95(&self) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((v.len() as f64) * 0.95).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    /// The 99th percentile, nearest rank (NaN when empty), as the pod-startup SLO reports it.
    pub fn p99(&self) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((v.len() as f64) * 0.99).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    fn json(&self) -> Value {
        json!({ "median_ms": round(self.median()), "p95_ms": round(self.p95()), "p99_ms": round(self.p99()), "runs": self.0.len() })
    }
}

fn round(x: f64) -> Value {
    if x.is_finite() { json!((x * 1000.0).round() / 1000.0) } else { Value::Null }
}

/// One row of the table.
struct Row {
    metric: String,
    podvisor: String,
    baseline: String,
    target: String,
    verdict: String,
}

/// Whether `value` meets `limit` (lower is better), in words.
fn verdict(value: f64, limit: f64, unit: &str) -> String {
    if !value.is_finite() || !limit.is_finite() {
        "n/a".into()
    } else if value <= limit {
        "met".into()
    } else {
        format!("missed by {:.1} {unit}", value - limit)
    }
}

fn ms(s: &Samples) -> String {
    format!("{:.1} / {:.1} / {:.1} ms", s.median(), s.p95(), s.p99())
}

/// Runs the suite and prints the table; the JSON goes to `opts.out`.
pub fn run(out: &mut impl Write, opts: Options) -> anyhow::Result<bool> {
    let exe = std::env::current_exe()?;
    let image =
        podvisor_runtime::image::ImageStore::open(&opts.data_dir)?.resolve("busybox:1.36").ok_or_else(|| {
            anyhow::anyhow!("busybox:1.36 is not in {}: run scripts/load-test-image", opts.data_dir.display())
        })?;
    let n = opts.iterations.max(1);
    writeln!(out, "podvisor bench: {n} runs per figure, {} pods at once; busybox:1.36", opts.pods)?;

    writeln!(out, "- the floor: {} create + start of a prepared bundle", opts.runtime.display())?;
    let floor = floor::measure(&opts.runtime, &image.rootfs, n)?;
    writeln!(out, "- podvisor run: pod start, handoff, job completion")?;
    let fg = foreground::measure(&exe, &opts.runtime, &opts.data_dir, n)?;
    writeln!(out, "- podvisor serve: pod start over the API, a rolling update, {} pods at once", opts.pods)?;
    let served = api::measure(&exe, &opts.runtime, &opts.data_dir, n, opts.pods, true)?;
    let mut others = Vec::new();
    for runtime in &opts.also {
        writeln!(out, "- {}: the floor, pod start through run and serve, handoff", runtime.display())?;
        let floor = floor::measure(runtime, &image.rootfs, n)?;
        let fg = foreground::measure(&exe, runtime, &opts.data_dir, n)?;
        let served = api::measure(&exe, runtime, &opts.data_dir, n, 0, false)?;
        others.push((runtime.clone(), floor, fg, served));
    }
    writeln!(out, "- admission of a Pod body, in process")?;
    let adm = admission::measure(n.max(200));
    writeln!(out, "- the engine in virtual time")?;
    let eng = engine::measure(Duration::from_secs(1));
    let podman = which("podman");
    let podman_play = match (&podman, &opts.podman_archive) {
        (Some(p), Some(archive)) => {
            writeln!(out, "- podman kube play of the same pod")?;
            Some(podman::measure(p, archive, n).map_err(|e| e.to_string()))
        }
        _ => None,
    };

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) as f64;
    let per_container = floor.container.median();
    let scale_floor = per_container * 2.0 * opts.pods as f64 / cores;
    // The steps are in microseconds.
    let sandbox = Samples(
        fg.steps
            .iter()
            .find(|(k, _)| k == "sandbox: namespaces")
            .map(|(_, s)| s.0.iter().map(|us| us / 1000.0).collect())
            .unwrap_or_default(),
    );
    let mut rows = start_rows(&opts.runtime, &floor, &fg, &served);
    for (runtime, floor, fg, served) in &others {
        rows.extend(start_rows(runtime, floor, fg, served));
    }
    rows.extend(vec![
        Row {
            metric: "sandbox step (namespaces, hostname, links, address)".into(),
            podvisor: ms(&sandbox),
            baseline: "-".into(),
            target: "≤ 2 ms".into(),
            verdict: verdict(sandbox.median(), 2.0, "ms"),
        },
        Row {
            metric: "handoff, startupProbe (probe passed → app started)".into(),
            podvisor: ms(&fg.handoff_probe),
            baseline: format!("runtime start {per_container:.1} ms; kubelet: up to 1 s (relist)"),
            target: format!("≤ runtime + 2 = {:.1} ms", per_container + 2.0),
            verdict: verdict(fg.handoff_probe.median(), per_container + 2.0, "ms"),
        },
        Row {
            metric: "job completion (sidecar exited → pod Succeeded)".into(),
            podvisor: ms(&fg.completion),
            baseline: "kubelet: up to 1 s (relist)".into(),
            target: "≤ 50 ms".into(),
            verdict: verdict(fg.completion.median(), 50.0, "ms"),
        },
        Row {
            metric: "job completion (app exited → pod Succeeded)".into(),
            podvisor: ms(&fg.completion_from_app),
            baseline: "includes the sidecar's own SIGTERM handling".into(),
            target: "-".into(),
            verdict: "-".into(),
        },
        Row {
            metric: "seed002-1 end to end, prompt sidecar (`podvisor run`)".into(),
            podvisor: ms(&fg.seed),
            baseline: "the app sleeps 5 s".into(),
            target: "-".into(),
            verdict: "-".into(),
        },
        Row {
            metric: format!("{} pods at once through serve: all Running", opts.pods),
            podvisor: format!("{:.0} ms", served.scale_ms),
            baseline: format!("floor work / {cores} cores = {scale_floor:.0} ms"),
            target: format!("≤ 1.5 × = {:.0} ms", 1.5 * scale_floor),
            verdict: verdict(served.scale_ms, 1.5 * scale_floor, "ms"),
        },
        Row {
            metric: "host memory per running pod (PSS: daemon growth + container holders)".into(),
            podvisor: format!("{:.0} KiB", served.pss_per_pod_kib),
            baseline: "conmon: about 1 MiB RSS per container".into(),
            target: "≤ 1536 KiB".into(),
            verdict: verdict(served.pss_per_pod_kib, 1536.0, "KiB"),
        },
        Row {
            metric: "daemon RSS per running pod".into(),
            podvisor: format!("{:.0} KiB", served.rss_per_pod_kib),
            baseline: "-".into(),
            target: "< 1024 KiB".into(),
            verdict: verdict(served.rss_per_pod_kib, 1024.0, "KiB"),
        },
        Row {
            metric: "host processes per pod beyond its containers".into(),
            podvisor: format!("{:.2}", served.helpers_per_pod),
            baseline: "podman: conmon per container".into(),
            target: "≤ 1 per container = 2".into(),
            verdict: verdict(served.helpers_per_pod, 2.0, ""),
        },
        Row {
            metric: "idle daemon RSS".into(),
            podvisor: format!("{:.1} MiB", served.idle_rss_kib / 1024.0),
            baseline: "-".into(),
            target: "< 20 MiB".into(),
            verdict: verdict(served.idle_rss_kib / 1024.0, 20.0, "MiB"),
        },
        Row {
            metric: format!("Deployment of {} replicas with sidecars: created → all available", rollout::REPLICAS),
            podvisor: served.rollout.as_ref().map_or("-".into(), |r| format!("{:.0} ms", r.create_ms)),
            baseline: format!("{} pods; the kubelet's relist alone: up to 1 s per pod", rollout::REPLICAS),
            target: "-".into(),
            verdict: "-".into(),
        },
        Row {
            metric: "its rolling update (template changed → all new available, none old)".into(),
            podvisor: served.rollout.as_ref().map_or("-".into(), |r| format!("{:.0} ms", r.update_ms)),
            baseline: "25 % surge, 25 % unavailable, 2 s grace (the sidecars end at SIGTERM)".into(),
            target: "-".into(),
            verdict: "-".into(),
        },
        Row {
            metric: "admission of a Pod body (JSON → typed → stored form)".into(),
            podvisor: format!("{:.0} µs / {:.0} µs", adm.direct.median(), adm.direct.p95()),
            baseline: format!("text + YAML round trip {:.0} µs", adm.round_trip.median()),
            target: "< the round trip".into(),
            verdict: verdict(adm.direct.median(), adm.round_trip.median(), "µs"),
        },
        Row {
            metric: "engine: lifecycle scenarios per second (virtual time)".into(),
            podvisor: format!("{:.0}/s", eng.per_second),
            baseline: format!("{} runs of seed002-1", eng.runs),
            target: "-".into(),
            verdict: "-".into(),
        },
        match &podman_play {
            Some(Ok(play)) => {
                let ours = fg.start.median().max(served.start.median());
                let times = play.median() / ours;
                Row {
                    metric: "`podman kube play` of the same pod (command → both running)".into(),
                    podvisor: format!("podvisor {ours:.1} ms (the slower of run and serve)"),
                    baseline: format!("podman {}", ms(play)),
                    target: "podman ≥ 5 × slower".into(),
                    verdict: if times >= 5.0 {
                        format!("met ({times:.1} ×)")
                    } else {
                        format!("missed ({times:.1} ×)")
                    },
                }
            }
            other => Row {
                metric: "`podman kube play` of the same pod".into(),
                podvisor: "-".into(),
                baseline: match (other, &podman) {
                    (Some(Err(e)), _) => format!("podman failed: {e}"),
                    (_, Some(_)) => "podman present; give --podman-archive to measure it".into(),
                    (_, None) => "podman is not installed here".into(),
                },
                target: "-".into(),
                verdict: "-".into(),
            },
        },
    ]);
    writeln!(out)?;
    table(out, &rows)?;
    writeln!(out, "\nwhere a pod's start goes (median per step, `podvisor run`'s pods):")?;
    for (step, us) in &fg.steps {
        writeln!(out, "  {step:<32} {:>8.0} µs", us.median())?;
    }
    let doc = json!({
        "machine": machine(),
        "iterations": n,
        "floor": { "pod": floor.pod.json(), "container": floor.container.json() },
        "run": {
            "pod_start": fg.start.json(),
            "handoff": fg.handoff.json(),
            "handoff_startup_probe": fg.handoff_probe.json(),
            "job_completion_from_sidecar_exit": fg.completion.json(),
            "job_completion_from_app_exit": fg.completion_from_app.json(),
            "seed002_1_end_to_end": fg.seed.json(),
            "start_steps_median_us": fg.steps.iter().map(|(s, us)| (s.clone(), round(us.median()))).collect::<serde_json::Map<_, _>>(),
        },
        "serve": {
            "pod_start": served.start.json(),
            "scale_pods": opts.pods,
            "scale_all_running_ms": round(served.scale_ms),
            "rss_per_pod_kib": round(served.rss_per_pod_kib),
            "pss_per_pod_kib": round(served.pss_per_pod_kib),
            "helper_processes_per_pod": round(served.helpers_per_pod),
            "idle_rss_kib": round(served.idle_rss_kib),
        },
        "admission": {
            "direct_median_us": round(adm.direct.median()),
            "direct_p95_us": round(adm.direct.p95()),
            "yaml_round_trip_median_us": round(adm.round_trip.median()),
            "runs": adm.direct.0.len(),
        },
        "engine": { "scenarios_per_second": round(eng.per_second), "runs": eng.runs },
        "podman": podman.map(|p| p.display().to_string()),
        "podman_kube_play": match &podman_play {
            Some(Ok(play)) => play.json(),
            Some(Err(e)) => json!({ "error": e }),
            None => serde_json::Value::Null,
        },
        "rollout": served.rollout.as_ref().map(|r| json!({
            "replicas": rollout::REPLICAS,
            "create_all_available_ms": round(r.create_ms),
            "update_complete_ms": round(r.update_ms),
        })),
        "sandbox_step": sandbox.json(),
        "other_runtimes": others.iter().map(|(runtime, floor, fg, served)| json!({
            "runtime": runtime.display().to_string(),
            "floor": { "pod": floor.pod.json(), "container": floor.container.json() },
            "run_pod_start": fg.start.json(),
            "serve_pod_start": served.start.json(),
            "handoff": fg.handoff.json(),
        })).collect::<Vec<_>>(),
        "kubelet_reference": { "relist_period_ms": 1000 },
    });
    std::fs::write(&opts.out, serde_json::to_vec_pretty(&doc)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", opts.out.display()))?;
    writeln!(out, "\nwritten to {}", opts.out.display())?;
    Ok(true)
}

/// The rows every runtime gets: pod start through `run` and through `serve` against its floor,
/// and the handoff against its own container start.
fn start_rows(
    runtime: &std::path::Path,
    floor: &floor::Floor,
    fg: &foreground::Foreground,
    served: &api::Served,
) -> Vec<Row> {
    let name = runtime.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let pod_floor = floor.pod.median();
    let per_container = floor.container.median();
    vec![
        Row {
            metric: format!("pod start, `podvisor run` (CLI → both running), {name}"),
            podvisor: ms(&fg.start),
            baseline: format!("floor {pod_floor:.1} ms (2 × {name} create+start)"),
            target: format!("≤ 1.25 × floor = {:.1} ms", 1.25 * pod_floor),
            verdict: verdict(fg.start.median(), 1.25 * pod_floor, "ms"),
        },
        Row {
            metric: format!("pod start, `serve` (POST → both running), {name}"),
            podvisor: ms(&served.start),
            baseline: format!("floor {pod_floor:.1} ms"),
            target: format!("≤ 1.25 × floor = {:.1} ms", 1.25 * pod_floor),
            verdict: verdict(served.start.median(), 1.25 * pod_floor, "ms"),
        },
        Row {
            metric: format!("handoff, no probe (sidecar started → app started), {name}"),
            podvisor: ms(&fg.handoff),
            baseline: format!("{name} start {per_container:.1} ms; kubelet: up to 1 s (relist)"),
            target: format!("≤ runtime + 2 = {:.1} ms", per_container + 2.0),
            verdict: verdict(fg.handoff.median(), per_container + 2.0, "ms"),
        },
    ]
}

fn table(out: &mut impl Write, rows: &[Row]) -> std::io::Result<()> {
    let head = ["figure", "podvisor (p50 / p95 / p99)", "baseline", "target", "verdict"];
    let cells =
        |r: &Row| [r.metric.clone(), r.podvisor.clone(), r.baseline.clone(), r.target.clone(), r.verdict.clone()];
    let mut widths = head.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(cells(r)) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: [String; 5]| {
        let padded: Vec<String> =
            cols.iter().zip(widths).map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count()))).collect();
        format!("| {} |", padded.join(" | "))
    };
    writeln!(out, "{}", line(head.map(String::from)))?;
    writeln!(out, "|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"))?;
    for r in rows {
        writeln!(out, "{}", line(cells(r)))?;
    }
    Ok(())
}

/// The machine, in words: CPU model and count, memory, kernel, runtime.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model =
        cpuinfo.lines().find_map(|l| l.strip_prefix("model name")).map(|l| l.trim_start_matches([' ', '\t', ':']));
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().find_map(|l| l.strip_prefix("MemTotal:")).map(|l| l.trim());
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "memory": mem,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(name)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_percentiles_by_nearest_rank() {
        let s = Samples((1..=20).map(f64::from).collect());
        assert_eq!(s.median(), 10.5);
        assert_eq!(s.p95(), 19.0);
        assert_eq!(Samples(vec![3.0]).p95(), 3.0);
        let hundred = Samples((1..=100).map(f64::from).collect());
        assert_eq!((hundred.median(), hundred.p95(), hundred.p99()), (50.5, 95.0, 99.0));
        assert!(Samples::default().median().is_nan());
        assert_eq!(verdict(1.0, 2.0, "ms"), "met");
        assert_eq!(verdict(3.0, 2.0, "ms"), "missed by 1.0 ms");
    }
}
