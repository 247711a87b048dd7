//! `podvisor run --context CTX FILE…`: the same run on a cluster. The manifests are checked here
//! as the local run checks them, applied with server-side apply (field manager `podvisor`), and
//! followed through watches: the same lifecycle lines, prefixed logs, pod table, timeline and
//! exit code as a local run, as far as the API shows them. Ctrl-C deletes what the run applied,
//! with the pods' grace; a second Ctrl-C deletes the pods at once.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use podvisor_kube::apply::Applied;
use podvisor_kube::follow::Step;
use podvisor_kube::live::Update;
use podvisor_manifest::Manifest;
use podvisor_node::{NodeEvent, What};
use tokio::signal::unix::{SignalKind, signal};

use crate::printer::{Pods, Printer};
use crate::run::Outcome;

/// Options of `podvisor run --context`.
pub struct Options {
    /// The cluster.
    pub target: podvisor_kube::Target,
    /// The namespace of objects that name none (else the context's).
    pub namespace: Option<String>,
    /// Where to write the timeline.
    pub timeline: Option<PathBuf>,
    /// When to colour the output.
    pub colour: crate::lint::Colour,
    /// Stop at the first failed pull or failed workload.
    pub fail_fast: bool,
}

/// The pods the run follows, by UID, as the printer reads them.
#[derive(Clone, Default)]
struct Followed(Arc<Mutex<BTreeMap<String, Pod>>>);

impl Pods for Followed {
    fn snapshot(&self) -> Vec<(String, String, Pod)> {
        let Ok(pods) = self.0.lock() else { return Vec::new() };
        pods.iter()
            .map(|(uid, p)| {
                let key = format!(
                    "{}/{}",
                    p.metadata.namespace.as_deref().unwrap_or("default"),
                    p.metadata.name.as_deref().unwrap_or("")
                );
                (key, uid.clone(), p.clone())
            })
            .collect()
    }
}

/// Runs `manifests` on the cluster `opts.target` names until they end or the user interrupts.
pub fn run(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(out, manifests, opts))
}

async fn run_async(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let c = podvisor_kube::connect(&opts.target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let namespace = opts.namespace.clone().unwrap_or_else(|| c.namespace.clone());
    writeln!(out, "podvisor: cluster {} (context {}), namespace {namespace}", c.server, c.context)?;
    let mut applied: Vec<Applied> = Vec::new();
    for m in &manifests {
        let json = m.object.to_json()?;
        // A Pod or Job that ran to its end before runs again only once it is gone.
        let ended = podvisor_kube::apply::has_ended(&c.client, &namespace, &json).await;
        if ended.as_ref().is_ok_and(|e| *e) {
            let what = format!("{}/{}", m.object.kind().to_lowercase(), m.object.name());
            writeln!(out, "podvisor: {what} exists and has ended: deleting it to run it again")?;
            podvisor_kube::apply::delete_and_wait(&c.client, &namespace, &json)
                .await
                .map_err(|e| anyhow::anyhow!("{}: {}", m.source, c.say(&e)))?;
        }
        match podvisor_kube::apply::apply_one(&c.client, &namespace, &json).await {
            Ok(a) => {
                writeln!(out, "podvisor: applied {} (server-side, field manager podvisor)", a.display())?;
                applied.push(a);
            }
            Err(e) => {
                // What this run applied before goes again: a run starts whole or not at all.
                for a in applied.iter().rev() {
                    let _ = podvisor_kube::apply::delete(&c.client, a, None).await;
                }
                let undone = if applied.is_empty() { String::new() } else { "; what was applied is deleted".into() };
                anyhow::bail!("{}: {}{undone}", m.source, c.say(&e));
            }
        }
    }
    let tty = std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let (colour, tty) = match opts.colour {
        crate::lint::Colour::Always => (true, tty),
        crate::lint::Colour::Never => (false, false),
        crate::lint::Colour::Auto => (tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()), tty),
    };
    let followed = Followed::default();
    let mut printer = Printer::new(Box::new(followed.clone()), None, colour, tty, opts.timeline.is_some());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let follower = podvisor_kube::live::follow(c.client.clone(), applied.clone(), tx);
    // Pods and Jobs end; the other workloads run until interrupted.
    let mut pending: BTreeMap<usize, String> =
        applied.iter().enumerate().filter(|(_, a)| a.is_pod() || a.is_job()).map(|(i, a)| (i, a.display())).collect();
    let long_running = applied
        .iter()
        .any(|a| matches!(a.resource.kind.as_str(), "Deployment" | "StatefulSet" | "DaemonSet" | "CronJob"));
    if long_running {
        writeln!(out, "podvisor: Deployments, StatefulSets, DaemonSets and CronJobs run until interrupted (Ctrl-C)")?;
    }
    let mut results: Vec<(String, bool, String)> = Vec::new();
    let mut troubles = std::collections::BTreeSet::new();
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut interrupts = 0;
    let mut failed_fast: Option<String> = None;
    // The containers sent their stop signal, by pod UID.
    let mut stopping = std::collections::BTreeSet::new();
    // What each followed container is, for the timeline.
    let mut kinds = crate::timeline::Kinds::new();
    loop {
        let all_finished = followed.snapshot().iter().all(|(_, _, p)| podvisor_kube::follow::is_finished(p));
        let gone = followed.snapshot().is_empty();
        // Interrupted, the run ends once the pods it followed are gone.
        let done = if interrupts > 0 { gone } else { pending.is_empty() && !long_running && all_finished };
        if done {
            // What already arrived (the last log lines) is printed before the end.
            while let Ok(Update::Log { pod, uid, container, line }) = rx.try_recv() {
                let what = What::Log { container, stream: "stdout", line };
                printer.print(out, NodeEvent { at: Timestamp::now(), pod, uid, what })?;
            }
            break;
        }
        tokio::select! {
            update = rx.recv() => {
                let Some(update) = update else { break };
                let at = Timestamp::now();
                let mut emit = |printer: &mut Printer, pod: String, uid: String, what: What| {
                    printer.print(out, NodeEvent { at, pod, uid, what })
                };
                match update {
                    Update::Pod(p) => {
                        if let Some(spec) = &p.spec {
                            let key = format!("{}/{}", p.metadata.namespace.as_deref().unwrap_or("default"), p.metadata.name.as_deref().unwrap_or(""));
                            crate::timeline::add_kinds(&mut kinds, &key, spec);
                        }
                        if let (Some(uid), Ok(mut pods)) = (p.metadata.uid.clone(), followed.0.lock()) {
                            pods.insert(uid, *p);
                        }
                    }
                    Update::Step { pod, uid, step } => {
                        if opts.fail_fast && failed_fast.is_none()
                            && let Step::Event { reason, message, .. } = &step
                            && reason == "Failed" && message.starts_with("Failed to pull image")
                        {
                            failed_fast = Some(format!("pod/{}: {message}", crate::printer::short(&pod)));
                        }
                        // The API does not show the SIGKILL at the end of a grace period; a
                        // container told to stop that then exits 137 got it.
                        match &step {
                            Step::Stopping { container, .. } => {
                                stopping.insert((uid.clone(), container.clone()));
                            }
                            Step::Exited { container, exit_code: 137, reason, .. }
                                if reason != "OOMKilled" && stopping.remove(&(uid.clone(), container.clone())) =>
                            {
                                let why = "exited 137 after SIGTERM: the grace period was over".to_string();
                                let what = What::Signalled { container: container.clone(), signal: "SIGKILL".into(), why, kill_in: None };
                                emit(&mut printer, pod.clone(), uid.clone(), what)?;
                            }
                            Step::Exited { container, .. } => {
                                stopping.remove(&(uid.clone(), container.clone()));
                            }
                            _ => {}
                        }
                        for what in crate::printer::whats(step) {
                            emit(&mut printer, pod.clone(), uid.clone(), what)?;
                        }
                    }
                    Update::Log { pod, uid, container, line } => {
                        emit(&mut printer, pod, uid, What::Log { container, stream: "stdout", line })?;
                    }
                    Update::Finished { pod, uid, phase } => {
                        if let Some((&i, _)) = pending.iter().find(|(i, _)| applied[**i].is_pod() && applied[**i].uid == uid) {
                            let name = pending.remove(&i).unwrap_or_default();
                            if opts.fail_fast && phase == "Failed" && failed_fast.is_none() {
                                failed_fast = Some(format!("{name} Failed"));
                            }
                            results.push((name, phase == "Succeeded", phase.clone()));
                        }
                        emit(&mut printer, pod, uid, What::Finished { phase })?;
                    }
                    Update::Gone { uid } => {
                        if let Ok(mut pods) = followed.0.lock() {
                            pods.remove(&uid);
                        }
                    }
                    Update::Outcome { index, ok, what } => {
                        if let Some(name) = pending.remove(&index) {
                            if opts.fail_fast && !ok && failed_fast.is_none() {
                                failed_fast = Some(format!("{name} {what}"));
                            }
                            results.push((name, ok, what));
                        }
                    }
                    Update::Trouble(message) => {
                        if troubles.insert(message.clone()) {
                            printer.erase(out)?;
                            writeln!(out, "podvisor: context {:?}: {message}", c.context)?;
                        }
                    }
                }
            }
            _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
                interrupts += 1;
                printer.interrupted = true;
                printer.erase(out)?;
                if interrupts == 1 {
                    writeln!(out, "podvisor: interrupted: deleting what this run applied, the pods with their grace period (interrupt again to delete them at once)")?;
                    for a in applied.iter().rev() {
                        if let Err(e) = podvisor_kube::apply::delete(&c.client, a, None).await {
                            writeln!(out, "podvisor: deleting {}: {}", a.display(), c.say(&e))?;
                        }
                    }
                } else {
                    writeln!(out, "podvisor: deleting every pod now")?;
                    delete_pods_now(&c, &followed).await;
                }
            }
        }
        if let Some(why) = failed_fast.as_ref().filter(|_| interrupts == 0) {
            interrupts = 1;
            printer.erase(out)?;
            writeln!(out, "podvisor: --fail-fast: {why}: deleting what this run applied, with grace")?;
            for a in applied.iter().rev() {
                let _ = podvisor_kube::apply::delete(&c.client, a, None).await;
            }
        }
    }
    follower.abort();
    printer.erase(out)?;
    printer.drop_table();
    for (_, name) in pending {
        results.push((name, false, "stopped".into()));
    }
    if failed_fast.is_some() {
        results.push(("podvisor".into(), false, "stopped by --fail-fast".into()));
    }
    results.sort();
    let mut ok = interrupts == 0 || failed_fast.is_some();
    for (name, good, what) in &results {
        ok &= *good;
        writeln!(out, "{name}: {what}")?;
    }
    let elapsed = Timestamp::now().duration_since(printer.start).as_secs_f64();
    writeln!(out, "podvisor: done in {elapsed:.3}s")?;
    if let (Some(path), Some(tl)) = (&opts.timeline, &printer.timeline) {
        let title = format!("podvisor run --context {}, {}", c.context, printer.start);
        crate::timeline::save(path, &title, tl, &kinds)?;
    }
    Ok(if interrupts > 0 && failed_fast.is_none() { Outcome::Interrupted } else { Outcome::Done(ok) })
}

/// The second Ctrl-C: every followed pod is deleted with no grace.
async fn delete_pods_now(c: &podvisor_kube::Connection, followed: &Followed) {
    for (key, _, _) in followed.snapshot() {
        let (ns, name) = key.split_once('/').unwrap_or(("default", &key));
        let pods: podvisor_kube::kube::Api<Pod> = podvisor_kube::kube::Api::namespaced(c.client.clone(), ns);
        let params = podvisor_kube::kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
        let _ = pods.delete(name, &params).await;
    }
}
