//! `podvisor simulate`: the lifecycle of each pod in the files, in virtual time, against
//! simulated containers whose behaviour is guessed from their commands (or given).

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::api::core::v1::PodSpec;
use podvisor_engine::{EventType, ProbeKind};
use podvisor_manifest::{Manifest, Object};
use podvisor_sim::infer::{guess, parse_override};
use podvisor_sim::{Mark, Sim};

/// How long the simulated runtime takes to start a container: runc's median on this kind of
/// machine (see the runtime notes), so that start order shows in the timestamps.
const RUNTIME_START: Duration = Duration::from_millis(40);

/// The same note `run` prints when a container starts while a sidecar before it has a
/// readinessProbe that has not passed: readiness never holds the next container back.
fn readiness_note(spec: &PodSpec, container: &str, ready: &std::collections::HashSet<String>) -> Option<String> {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let before = match inits.iter().position(|c| c.name == container) {
        Some(i) => &inits[..i],
        None => inits,
    };
    let waiting: Vec<&str> = before
        .iter()
        .filter(|c| {
            c.restart_policy.as_deref() == Some("Always") && c.readiness_probe.is_some() && !ready.contains(&c.name)
        })
        .map(|c| c.name.as_str())
        .collect();
    (!waiting.is_empty()).then(|| {
        format!(
            "note: started before sidecar {} passed its readinessProbe; readiness never holds back the next container, \
             only a startupProbe (or postStart hook) does",
            waiting.join(", ")
        )
    })
}

/// Why a container was killed at the end of its grace period, when its command says: a shell
/// as PID 1 without a trap ignores SIGTERM.
fn pid1_hint(spec: &PodSpec, e: &podvisor_sim::Entry) -> &'static str {
    if e.mark != Mark::Signalled("SIGKILL".into()) {
        return "";
    }
    let c = spec.init_containers.iter().flatten().chain(spec.containers.iter()).find(|c| c.name == e.container);
    if c.is_some_and(podvisor_lint::shell_ignores_sigterm) {
        " (its PID 1 is a shell without a trap, which ignores SIGTERM: lint PV004)"
    } else {
        " (a PID 1 without a handler for the stop signal ignores it)"
    }
}

/// What a pod did in virtual time: its phase at the end, whether it ended, when, and the
/// order its containers started and stopped in.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The pod's name.
    pub name: String,
    /// Its phase at the end.
    pub phase: String,
    /// Whether it ended (its sandbox removed) within the limit.
    pub ended: bool,
    /// Virtual seconds until it ended, or the limit.
    pub seconds: f64,
    /// Containers in the order they first started.
    pub started: Vec<String>,
    /// Containers in the order they last stopped.
    pub stopped: Vec<String>,
}

/// Simulates the pod of `m` (if it runs one) with guessed behaviours and `overrides`.
pub fn outcome(m: &Manifest, overrides: &[String], limit: Duration) -> anyhow::Result<Option<Outcome>> {
    let Some((name, mut sim)) = sim_of(m, overrides)? else { return Ok(None) };
    let ended = sim.run_to_end(limit);
    let mut started = Vec::new();
    let mut stopped: Vec<String> = Vec::new();
    for e in sim.timeline() {
        match e.mark {
            Mark::Starting if !started.contains(&e.container) => started.push(e.container.clone()),
            Mark::Exiting(_) | Mark::Killed => {
                stopped.retain(|c| *c != e.container);
                stopped.push(e.container.clone());
            }
            _ => {}
        }
    }
    let seconds = if ended { sim.elapsed().as_secs_f64() } else { limit.as_secs_f64() };
    Ok(Some(Outcome { name, phase: sim.phase().to_string(), ended, seconds, started, stopped }))
}

/// The simulation of the pod of `m` (if it runs one): its name, and the simulation with each
/// container's guessed behaviour, or the one `overrides` give.
fn sim_of(m: &Manifest, overrides: &[String]) -> anyhow::Result<Option<(String, Sim)>> {
    let Some((name, spec)) = pod_of(m) else { return Ok(None) };
    let mut behaviours = HashMap::new();
    for c in spec.init_containers.iter().flatten().chain(spec.containers.iter()) {
        let mut g = guess(c);
        g.behaviour.runtime_start = RUNTIME_START;
        behaviours.insert(c.name.clone(), vec![g.behaviour]);
    }
    for o in overrides {
        let (cname, b) = parse_override(o, |n| behaviours.get(n).and_then(|v| v.first().cloned()).unwrap_or_default())?;
        if behaviours.contains_key(&cname) {
            behaviours.insert(cname, vec![b]);
        }
    }
    let sim = Sim::new(&name, spec, behaviours);
    Ok(Some((name, sim)))
}

/// The simulated lifecycle of the pod of `m` (if it runs one), with guessed behaviours, until
/// it ends or `limit`.
pub fn entries(m: &Manifest, limit: Duration) -> anyhow::Result<Option<Vec<podvisor_sim::Entry>>> {
    let Some((_, mut sim)) = sim_of(m, &[])? else { return Ok(None) };
    sim.run_to_end(limit);
    Ok(Some(sim.timeline().to_vec()))
}

/// The pod a manifest runs, if it runs one: its name and spec.
pub(crate) fn pod_of(m: &Manifest) -> Option<(String, PodSpec)> {
    match &m.object {
        Object::Pod(p) => Some((m.object.name().to_string(), p.spec.clone()?)),
        Object::Job(j) => Some((m.object.name().to_string(), j.spec.as_ref()?.template.spec.clone()?)),
        Object::Deployment(d) => Some((m.object.name().to_string(), d.spec.as_ref()?.template.spec.clone()?)),
        Object::CronJob(c) => {
            Some((m.object.name().to_string(), c.spec.as_ref()?.job_template.spec.as_ref()?.template.spec.clone()?))
        }
        Object::StatefulSet(o) => Some((m.object.name().to_string(), o.spec.as_ref()?.template.spec.clone()?)),
        Object::DaemonSet(o) => Some((m.object.name().to_string(), o.spec.as_ref()?.template.spec.clone()?)),
        Object::ConfigMap(_) | Object::Secret(_) | Object::Service(_) | Object::PersistentVolumeClaim(_) => None,
    }
}

fn describe(mark: &Mark) -> Option<String> {
    Some(match mark {
        Mark::Starting => "started".into(),
        Mark::Exiting(code) => format!("exited {code}"),
        Mark::Killed => "killed (exit 137)".into(),
        Mark::Signalled(sig) if sig == "SIGKILL" => "sent SIGKILL: the grace period is over".into(),
        Mark::Signalled(sig) => format!("sent {sig}"),
        Mark::HookStart(h) => format!("{h:?} hook started"),
        Mark::HookEnd(h) => format!("{h:?} hook finished"),
        Mark::Probe(kind, ok) if *kind != ProbeKind::Readiness || !ok => {
            format!("{} probe {}", kind.title().to_lowercase(), if *ok { "passed" } else { "failed" })
        }
        Mark::Event(e) if e.kind == EventType::Warning || e.reason == "Killing" => {
            format!("event {}: {}", e.reason, e.message)
        }
        Mark::Phase(p) => format!("phase {p}"),
        Mark::SandboxRemoved => "pod finished".into(),
        Mark::NodeRestarted => "node restarted, sandbox intact".into(),
        _ => return None,
    })
}

/// Simulates every pod in `manifests`; returns whether each pod that runs to completion
/// succeeded.
pub fn run(
    out: &mut impl Write,
    manifests: &[Manifest],
    overrides: &[String],
    limit: Duration,
    picture: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    if let Some(p) = picture
        && crate::timeline::picture(p).is_none()
    {
        anyhow::bail!("{}: a timeline picture is written as .html or .svg", p.display());
    }
    let title = manifests.iter().map(|m| m.source.as_str()).collect::<Vec<_>>().join(", ");
    let mut recorder = podvisor_timeline::Recorder::new(&format!("{title} (simulated)"));
    // A --behave for a container no manifest has is a mistake, not something to ignore.
    for o in overrides {
        let name = o.split_once('=').map(|(n, _)| n).unwrap_or(o);
        let known = manifests.iter().filter_map(pod_of).any(|(_, spec)| {
            spec.init_containers.iter().flatten().chain(spec.containers.iter()).any(|c| c.name == name)
        });
        if !known {
            anyhow::bail!("--behave {o}: no container is named {name:?} in the manifests");
        }
    }
    let mut all_ok = true;
    for m in manifests {
        let Some((name, spec)) = pod_of(m) else { continue };
        let containers: Vec<_> = spec.init_containers.iter().flatten().chain(spec.containers.iter()).collect();
        let mut behaviours = HashMap::new();
        let mut summaries = Vec::new();
        for c in &containers {
            let mut g = guess(c);
            g.behaviour.runtime_start = RUNTIME_START;
            summaries.push(format!("  {:<16} {}", c.name, g.summary));
            behaviours.insert(c.name.clone(), vec![g.behaviour]);
        }
        for o in overrides {
            let (cname, b) =
                parse_override(o, |n| behaviours.get(n).and_then(|v| v.first().cloned()).unwrap_or_default())?;
            if !containers.iter().any(|c| c.name == cname) {
                continue;
            }
            summaries.push(format!("  {cname:<16} overridden: {o}"));
            behaviours.insert(cname, vec![b]);
        }
        writeln!(out, "{} {name}: simulated in virtual time", m.object.kind())?;
        writeln!(out, "assumed behaviour (each container takes {} ms to start):", RUNTIME_START.as_millis())?;
        for s in &summaries {
            writeln!(out, "{s}")?;
        }
        if let Object::Job(job) = &m.object {
            let run = crate::simulate_job::run(&name, job, &spec, &behaviours, limit)?;
            let several = run.pods.len() > 1;
            let entries: Vec<(String, Vec<podvisor_sim::Entry>)> =
                run.pods.iter().map(|p| (p.name.clone(), p.entries())).collect();
            // All the pods' marks in one order of time.
            let mut merged: Vec<(Option<&str>, &podvisor_sim::Entry)> =
                entries.iter().flat_map(|(n, es)| es.iter().map(move |e| (several.then_some(n.as_str()), e))).collect();
            merged.sort_by_key(|(_, e)| e.at);
            // The controller's steps come first at their time.
            let mut steps = run.steps.iter().peekable();
            let mut start = 0;
            for (i, (_, e)) in merged.iter().enumerate() {
                while let Some((at, step)) = steps.next_if(|(at, _)| *at <= e.at) {
                    print_entries(out, &spec, &merged[start..i])?;
                    start = i;
                    writeln!(out, "[{:>8.3}s] {:<16} {step}", at.as_secs_f64(), "job")?;
                }
            }
            print_entries(out, &spec, &merged[start..])?;
            for (at, step) in steps {
                writeln!(out, "[{:>8.3}s] {:<16} {step}", at.as_secs_f64(), "job")?;
            }
            for (pod, es) in &entries {
                crate::timeline::record_sim(&mut recorder, pod, &spec, es);
            }
            let status = |phase: &str| run.pods.iter().filter(|p| p.sim.phase() == phase).count();
            let counts = format!("{} pod(s) succeeded, {} failed", status("Succeeded"), status("Failed"));
            match &run.outcome {
                Some(o) => {
                    writeln!(out, "{name}: {o} after {:.3}s of virtual time ({counts})", run.elapsed.as_secs_f64())?;
                    all_ok &= o == "Complete";
                }
                None => {
                    writeln!(out, "{name}: not finished after {:.0}s of virtual time ({counts})", limit.as_secs_f64())?
                }
            }
            writeln!(out)?;
            continue;
        }
        let mut sim = Sim::new(&name, spec.clone(), behaviours);
        let finished = sim.run_to_end(limit);
        let marks: Vec<(Option<&str>, &podvisor_sim::Entry)> = sim.timeline().iter().map(|e| (None, e)).collect();
        print_entries(out, &spec, &marks)?;
        crate::timeline::record_sim(&mut recorder, &name, &spec, sim.timeline());
        let phase = sim.phase().to_string();
        if finished {
            writeln!(out, "{name}: {phase} after {:.3}s of virtual time", sim.elapsed().as_secs_f64())?;
            all_ok &= phase == "Succeeded";
        } else {
            writeln!(
                out,
                "{name}: still {phase} after {:.0}s of virtual time (runs until deleted)",
                limit.as_secs_f64()
            )?;
        }
        writeln!(out)?;
    }
    if let Some(p) = picture {
        crate::timeline::write(p, &recorder.finish())?;
        writeln!(out, "timeline: {}", p.display())?;
    }
    Ok(all_ok)
}

/// Prints a pod's marks, one line each with its time, and the notes `run` prints; each
/// container named by `pod/container` when `pod` is given (a Job with several pods).
fn print_entries(
    out: &mut impl Write,
    spec: &PodSpec,
    entries: &[(Option<&str>, &podvisor_sim::Entry)],
) -> anyhow::Result<()> {
    {
        let mut ready: std::collections::HashMap<Option<&str>, std::collections::HashSet<String>> = Default::default();
        let mut seen: std::collections::HashSet<(Option<&str>, String)> = std::collections::HashSet::new();
        for &(pod, e) in entries {
            let ready = ready.entry(pod).or_default();
            if let Mark::Probe(ProbeKind::Readiness, true) = e.mark {
                ready.insert(e.container.clone());
            }
            if let Some(text) = describe(&e.mark) {
                let who = match (pod, e.container.is_empty()) {
                    (Some(p), true) => p.to_string(),
                    (Some(p), false) => format!("{p}/{}", e.container),
                    (None, true) => "pod".to_string(),
                    (None, false) => e.container.clone(),
                };
                let at = e.at.as_secs_f64();
                writeln!(out, "[{at:>8.3}s] {who:<16} {text}{}", pid1_hint(spec, e))?;
                if e.mark == Mark::Starting
                    && seen.insert((pod, e.container.clone()))
                    && let Some(note) = readiness_note(spec, &e.container, ready)
                {
                    writeln!(out, "[{at:>8.3}s] {who:<16} {note}")?;
                }
            }
        }
    }
    Ok(())
}
