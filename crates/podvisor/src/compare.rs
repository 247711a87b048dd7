//! `podvisor compare FILE --context CTX`: the lifecycle a manifest gets here and the one it gets
//! on a cluster, side by side: start order, handoffs, restarts, stop order, the wait from the
//! stop signal to SIGKILL, exit codes and phase, each pod of one side against the pod of the same
//! rank on the other. Differences are marked, with the rules of the kubelet that explain them.
//! The same manifest runs on both sides unless `--against` gives the cluster another.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use podvisor_manifest::Manifest;
use serde_json::Value;

/// Options of `podvisor compare`.
pub struct Options {
    /// The manifests run here.
    pub here: Vec<Manifest>,
    /// The manifests run on the cluster.
    pub there: Vec<Manifest>,
    /// The cluster.
    pub target: podvisor_kube::Target,
    /// Its namespace for objects that name none.
    pub namespace: Option<String>,
    /// Simulate this side in virtual time instead of running real containers.
    pub simulate: bool,
    /// The node to run this side on.
    pub node: podvisor_cluster::NodeOptions,
    /// Draw both lifecycles in one picture.
    pub timeline: Option<PathBuf>,
}

/// One step of a container, as both sides can say it.
#[derive(Debug, Clone, PartialEq)]
enum Mark {
    Started(u32),
    Exited(i32),
    Stop,
    Kill,
    Phase(String),
}

/// The steps of one pod: seconds since its first step, container (empty for the pod), mark.
type Steps = Vec<(f64, String, Mark)>;

/// A run's events by pod, in the order the pods first appear.
fn by_pod(events: &[Value]) -> Vec<(String, Steps)> {
    let time = |v: &Value| v["at"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
    type Stamped = Vec<(jiff::Timestamp, String, Mark)>;
    let mut pods: Vec<(String, Stamped)> = Vec::new();
    for e in events {
        let (Some(at), Some(pod)) = (time(e), e["pod"].as_str()) else { continue };
        let container = e["container"].as_str().unwrap_or("").to_string();
        let mark = match e["type"].as_str() {
            Some("started") => Mark::Started(e["attempt"].as_u64().unwrap_or(0) as u32),
            Some("exited") => Mark::Exited(e["exitCode"].as_i64().unwrap_or(0) as i32),
            Some("signalled") if e["signal"] == "SIGKILL" => Mark::Kill,
            Some("signalled") => Mark::Stop,
            Some("phase") => Mark::Phase(e["phase"].as_str().unwrap_or("").to_string()),
            _ => continue,
        };
        match pods.iter_mut().find(|(p, _)| p == pod) {
            Some((_, steps)) => steps.push((at, container, mark)),
            None => pods.push((pod.to_string(), vec![(at, container, mark)])),
        }
    }
    pods.into_iter()
        .map(|(pod, steps)| {
            let start = steps.iter().map(|s| s.0).min();
            let steps = steps
                .into_iter()
                .map(|(at, c, m)| (start.map_or(0.0, |s| at.duration_since(s).as_secs_f64()), c, m))
                .collect();
            (pod, steps)
        })
        .collect()
}

/// The simulation's entries of each pod of `manifests`, as steps.
fn simulated(manifests: &[Manifest]) -> anyhow::Result<Vec<(String, Steps)>> {
    let mut out = Vec::new();
    for m in manifests {
        let Some(entries) = crate::simulate::entries(m, std::time::Duration::from_secs(3600))? else { continue };
        let steps = entries
            .into_iter()
            .filter_map(|e| {
                let mark = match e.mark {
                    podvisor_sim::Mark::Starting => Mark::Started(0),
                    podvisor_sim::Mark::Exiting(code) => Mark::Exited(code),
                    podvisor_sim::Mark::Killed => Mark::Exited(137),
                    podvisor_sim::Mark::Signalled(s) if s == "SIGKILL" => Mark::Kill,
                    podvisor_sim::Mark::Signalled(_) => Mark::Stop,
                    podvisor_sim::Mark::Phase(p) => Mark::Phase(p),
                    _ => return None,
                };
                Some((e.at.as_secs_f64(), e.container, mark))
            })
            .collect();
        out.push((m.object.name().to_string(), steps));
    }
    Ok(out)
}

/// What is compared, row by row: its name, the rules that explain a difference, and how far
/// apart two readings may be before they differ (seconds, for timings; exact otherwise).
struct Row {
    name: &'static str,
    rules: &'static str,
    tolerance: Option<f64>,
}

const ROWS: [Row; 7] = [
    Row {
        name: "start order",
        rules: "R14, R16, R24: init containers and sidecars start one by one, in order",
        tolerance: None,
    },
    Row {
        name: "handoffs",
        rules: "R16, R18: a sidecar holds the next container until it has started (its startupProbe passed)",
        tolerance: Some(1.0),
    },
    Row {
        name: "restarts",
        rules: "R21, R25, R26: sidecars are restarted, with back-off, whatever the pod's restartPolicy",
        tolerance: None,
    },
    Row {
        name: "stop order",
        rules: "R43: app containers stop first, then sidecars in reverse order",
        tolerance: None,
    },
    Row {
        name: "SIGTERM to SIGKILL",
        rules: "R42, R45: SIGKILL comes when the grace period, shared by the sidecars, is over",
        tolerance: Some(1.0),
    },
    Row { name: "exit codes", rules: "R42: a container killed at the end of its grace exits 137", tolerance: None },
    Row {
        name: "phase",
        rules: "R36, R37, R38: the pod ends once its app containers have, sidecars stopped after",
        tolerance: None,
    },
];

/// A row's reading on one side: the text, what is timed in it and the times (for the timing
/// rows; empty for the others).
struct Reading {
    text: String,
    timed: Vec<String>,
    times: Vec<f64>,
}

impl Reading {
    fn plain(text: String) -> Reading {
        Reading { text, timed: Vec::new(), times: Vec::new() }
    }

    fn timed(pairs: Vec<(String, f64)>) -> Reading {
        let text = pairs.iter().map(|(p, d)| format!("{p} {d:.1} s")).collect::<Vec<_>>().join(", ");
        let text = if text.is_empty() { "none".into() } else { text };
        Reading { text, timed: pairs.iter().map(|p| p.0.clone()).collect(), times: pairs.iter().map(|p| p.1).collect() }
    }
}

fn reading(row: &str, steps: &Steps) -> Reading {
    let mut started: Vec<(f64, &str)> = Vec::new();
    for (t, c, m) in steps {
        if matches!(m, Mark::Started(_)) && !started.iter().any(|(_, s)| s == c) {
            started.push((*t, c));
        }
    }
    match row {
        "start order" => Reading::plain(started.iter().map(|(_, c)| *c).collect::<Vec<_>>().join(", ")),
        "handoffs" => {
            Reading::timed(started.windows(2).map(|w| (format!("{}→{}", w[0].1, w[1].1), w[1].0 - w[0].0)).collect())
        }
        "restarts" => {
            let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
            for (_, c, m) in steps {
                if let Mark::Started(a) = m
                    && *a > 0
                {
                    *counts.entry(c).or_default() += 1;
                }
            }
            let text = counts.iter().map(|(c, n)| format!("{c} {n}")).collect::<Vec<_>>().join(", ");
            Reading::plain(if text.is_empty() { "none".into() } else { text })
        }
        "stop order" => {
            let mut order: Vec<&str> = Vec::new();
            for (_, c, m) in steps {
                if matches!(m, Mark::Exited(_)) {
                    order.retain(|o| o != c);
                    order.push(c);
                }
            }
            Reading::plain(order.join(", "))
        }
        "SIGTERM to SIGKILL" => {
            let mut waits: Vec<(String, f64)> = Vec::new();
            for (t, c, m) in steps {
                if *m == Mark::Kill
                    && let Some((s, _, _)) =
                        steps.iter().rev().find(|(s, sc, sm)| s <= t && sc == c && *sm == Mark::Stop)
                {
                    waits.push((c.clone(), t - s));
                }
            }
            Reading::timed(waits)
        }
        "exit codes" => {
            let mut last: BTreeMap<&str, i32> = BTreeMap::new();
            for (_, c, m) in steps {
                if let Mark::Exited(code) = m {
                    last.insert(c, *code);
                }
            }
            Reading::plain(last.iter().map(|(c, code)| format!("{c} {code}")).collect::<Vec<_>>().join(", "))
        }
        _ => {
            let phase = steps.iter().rev().find_map(|(_, _, m)| match m {
                Mark::Phase(p) => Some(p.clone()),
                _ => None,
            });
            Reading::plain(phase.unwrap_or_else(|| "-".into()))
        }
    }
}

/// Whether two readings of `row` differ: timings by more than the row's tolerance (what is
/// timed must be the same), the rest at all.
fn differ(row: &Row, a: &Reading, b: &Reading) -> bool {
    match row.tolerance {
        Some(tol) => a.timed != b.timed || a.times.iter().zip(&b.times).any(|(x, y)| (x - y).abs() > tol),
        None => a.text != b.text,
    }
}

/// The events of a local run of `manifests`, from its timeline.
fn run_here(manifests: Vec<Manifest>, node: podvisor_cluster::NodeOptions) -> anyhow::Result<Vec<Value>> {
    let scratch = crate::scratch::Scratch::new("compare")?;
    let file = scratch.path().join("here.json");
    let opts = crate::run::Options {
        node,
        timeline: Some(file.clone()),
        runtime_why: "",
        pull: None,
        colour: crate::lint::Colour::Never,
        fail_fast: false,
    };
    crate::run::run(&mut std::io::sink(), manifests, opts)?;
    read_events(&file)
}

/// The events of a run of `manifests` on the cluster.
fn run_there(
    manifests: Vec<Manifest>,
    target: podvisor_kube::Target,
    namespace: Option<String>,
) -> anyhow::Result<Vec<Value>> {
    let scratch = crate::scratch::Scratch::new("compare")?;
    let file = scratch.path().join("there.json");
    let opts = crate::run_remote::Options {
        target,
        namespace,
        timeline: Some(file.clone()),
        colour: crate::lint::Colour::Never,
        fail_fast: false,
    };
    crate::run_remote::run(&mut std::io::sink(), manifests, opts)?;
    read_events(&file)
}

fn read_events(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let text = std::fs::read(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    Ok(serde_json::from_slice(&text)?)
}

/// Runs both sides and prints the comparison; `Ok(true)` when they do not differ.
pub fn run(out: &mut impl Write, opts: Options) -> anyhow::Result<bool> {
    let specs: Vec<(String, k8s_openapi::api::core::v1::PodSpec)> =
        opts.here.iter().chain(&opts.there).filter_map(crate::simulate::pod_of).collect();
    writeln!(
        out,
        "podvisor: running here ({})…",
        if opts.simulate { "simulated, in virtual time" } else { "real containers" }
    )?;
    out.flush()?;
    let (here, here_events) = if opts.simulate {
        (simulated(&opts.here)?, Vec::new())
    } else {
        let events = run_here(opts.here, opts.node)?;
        (by_pod(&events), events)
    };
    let context = match &opts.target.context {
        Some(c) => format!("context {c}"),
        None => "the kubeconfig's current context".into(),
    };
    writeln!(out, "podvisor: running on {context}…")?;
    out.flush()?;
    let there_events = run_there(opts.there, opts.target, opts.namespace)?;
    let there = by_pod(&there_events);
    let mut differences = 0;
    let pods = here.len().max(there.len());
    for i in 0..pods {
        let empty = (String::from("-"), Steps::new());
        let (a, b) = (here.get(i).unwrap_or(&empty), there.get(i).unwrap_or(&empty));
        writeln!(out, "\npod {}: {} here, {} on the cluster", i + 1, a.0, b.0)?;
        let rows: Vec<(&Row, Reading, Reading)> =
            ROWS.iter().map(|r| (r, reading(r.name, &a.1), reading(r.name, &b.1))).collect();
        let w1 = rows.iter().map(|(_, x, _)| x.text.chars().count()).max().unwrap_or(0).max(4);
        let w2 = rows.iter().map(|(_, _, y)| y.text.chars().count()).max().unwrap_or(0).max(7);
        writeln!(out, "{}", format!("  {:<20}{:<w1$}   {:<w2$}", "", "here", "cluster").trim_end())?;
        for (row, x, y) in &rows {
            let mark = if differ(row, x, y) {
                differences += 1;
                format!("   ≠ {}", row.rules)
            } else {
                String::new()
            };
            let line = format!("  {:<20}{:<w1$}   {:<w2$}{mark}", row.name, x.text, y.text);
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    if differences == 0 {
        writeln!(out, "\nno difference")?;
    } else {
        writeln!(out, "\n{differences} difference(s)")?;
    }
    if let Some(path) = &opts.timeline {
        let mut events: Vec<Value> = Vec::new();
        let mut kinds = crate::timeline::Kinds::new();
        for (side, list) in [("here", &here_events), ("cluster", &there_events)] {
            for e in list.iter() {
                let mut e = e.clone();
                let pod = format!("{side}: {}", e["pod"].as_str().unwrap_or(""));
                if let Some((_, spec)) =
                    specs.iter().find(|(n, _)| pod.rsplit('/').next().is_some_and(|p| p.starts_with(n.as_str())))
                {
                    crate::timeline::add_kinds(&mut kinds, &pod, spec);
                }
                e["pod"] = Value::String(pod);
                events.push(e);
            }
        }
        let picture = podvisor_timeline::from_run_events("here and on the cluster", &events, &kinds);
        crate::timeline::write(path, &picture)?;
    }
    Ok(differences == 0)
}
