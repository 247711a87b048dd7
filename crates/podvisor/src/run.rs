//! `podvisor run`: the Pods, Jobs and Deployments of the manifests on real containers, in the
//! foreground. Container output is prefixed `pod/container | `, each lifecycle step gets a line,
//! Ctrl-C deletes everything with the ordered graceful shutdown (a second Ctrl-C kills at once),
//! and the exit code says whether every Pod and Job succeeded.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use jiff::Timestamp;
use podvisor_manifest::Manifest;

use podvisor_apiserver::admission;
use podvisor_cluster::{Cluster, Key, Store};
use podvisor_node::{NodeEvent, What};

use crate::printer::Printer;
use podvisor_objects::kinds::Resource;
use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// How a run ended.
pub enum Outcome {
    /// Everything ran to its end; `true` when every Pod and Job succeeded.
    Done(bool),
    /// Stopped by Ctrl-C (or SIGTERM).
    Interrupted,
}

/// Options of `podvisor run`.
pub struct Options {
    /// The node to run the pods on.
    pub node: podvisor_cluster::NodeOptions,
    /// Where to write the timeline JSON.
    pub timeline: Option<PathBuf>,
    /// Why the node's runtime was chosen.
    pub runtime_why: &'static str,
    /// The pull policy for every container, overriding the manifests' (`--pull`).
    pub pull: Option<PullPolicy>,
    /// When to colour the output (and keep the pod table under it).
    pub colour: crate::lint::Colour,
    /// Stop everything at the first image that cannot be pulled or the first Pod or Job that
    /// fails, instead of backing off and retrying as the kubelet and the Job controller do.
    pub fail_fast: bool,
}

/// `--pull`: when images are pulled, for every container of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PullPolicy {
    /// Never: only what the local store has (`imagePullPolicy: Never`).
    Never,
    /// When not in the local store (`IfNotPresent`).
    Missing,
    /// At every start (`Always`).
    Always,
}

/// The pod specs an object carries, to change.
fn pod_specs(object: &mut podvisor_manifest::Object) -> Vec<&mut k8s_openapi::api::core::v1::PodSpec> {
    use podvisor_manifest::Object as O;
    match object {
        O::Pod(p) => p.spec.iter_mut().collect(),
        O::Job(j) => j.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::CronJob(c) => c
            .spec
            .iter_mut()
            .filter_map(|s| s.job_template.spec.as_mut())
            .filter_map(|s| s.template.spec.as_mut())
            .collect(),
        O::Deployment(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::StatefulSet(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::DaemonSet(d) => d.spec.iter_mut().filter_map(|s| s.template.spec.as_mut()).collect(),
        O::ConfigMap(_) | O::Secret(_) | O::Service(_) | O::PersistentVolumeClaim(_) => Vec::new(),
    }
}

/// Applies `--pull` to every container, then names up front the images the local store lacks:
/// an error with `--pull never` (nothing starts), a line otherwise.
fn images_up_front(out: &mut impl Write, manifests: &mut [Manifest], opts: &Options) -> anyhow::Result<()> {
    let policy = opts.pull.map(|p| match p {
        PullPolicy::Never => "Never",
        PullPolicy::Missing => "IfNotPresent",
        PullPolicy::Always => "Always",
    });
    let mut images = std::collections::BTreeSet::new();
    let mut never = std::collections::BTreeSet::new();
    for m in manifests.iter_mut() {
        for spec in pod_specs(&mut m.object) {
            for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
                if let Some(p) = policy {
                    c.image_pull_policy = Some(p.to_string());
                }
                let image = c.image.clone().unwrap_or_default();
                if c.image_pull_policy.as_deref() == Some("Never") {
                    never.insert(image.clone());
                }
                images.insert(image);
            }
        }
    }
    let store = podvisor_runtime::image::ImageStore::open(&opts.node.data_dir)?;
    let missing: Vec<&String> = images.iter().filter(|i| store.resolve(i).is_none()).collect();
    let refused: Vec<&String> = missing.iter().copied().filter(|i| never.contains(*i)).collect();
    if !refused.is_empty() {
        let names: Vec<&str> = refused.iter().map(|s| s.as_str()).collect();
        anyhow::bail!(
            "not in the local image store, and not to be pulled (imagePullPolicy Never): {}; nothing was started (load one with `podvisor image load FILE --tag NAME`)",
            names.join(", ")
        );
    }
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        writeln!(out, "podvisor: to pull, not in the local image store: {}", names.join(", "))?;
    }
    Ok(())
}

/// Refuses, before anything starts, a workload whose pods this one node would never run: bound
/// to another node (`nodeName`), or excluded by their node selector or required node affinity.
/// The kubelet and the scheduler would leave such pods Pending for ever, and the run would never
/// end. A DaemonSet is not refused: it has no pod on a node it does not select.
fn placeable(manifests: &mut [Manifest], cluster: &Cluster) -> anyhow::Result<()> {
    use podvisor_objects::node_affinity;
    let node_name = cluster.node_name();
    let node = cluster.store().get(&Key::new(Resource::Nodes, "", node_name));
    let labels: std::collections::BTreeMap<String, String> = node
        .as_deref()
        .and_then(|n| n.pointer("/metadata/labels"))
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    let shown: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let allocatable = node.as_deref().map(podvisor_cluster::scheduling::allocatable).unwrap_or_default();
    for m in manifests.iter_mut() {
        let prefix = match &m.object {
            podvisor_manifest::Object::Pod(_) => "spec",
            podvisor_manifest::Object::CronJob(_) => "spec.jobTemplate.spec.template.spec",
            podvisor_manifest::Object::DaemonSet(_) => continue,
            _ => "spec.template.spec",
        };
        let view = node_affinity::NodeView { name: node_name, labels: &labels };
        let mut refused: Option<(String, String)> = None;
        for spec in pod_specs(&mut m.object) {
            if let Some(other) = spec.node_name.as_deref().filter(|n| !n.is_empty() && *n != node_name) {
                let why = format!("Invalid value: {other:?}: bound to another node (this node is {node_name:?})");
                refused = Some((format!("{prefix}.nodeName"), why));
            } else if !node_affinity::matches(spec, view) {
                let selector_only = k8s_openapi::api::core::v1::PodSpec {
                    node_selector: spec.node_selector.clone(),
                    ..Default::default()
                };
                let field = if node_affinity::matches(&selector_only, view) {
                    "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
                } else {
                    "nodeSelector"
                };
                let why = format!(
                    "0/1 nodes are available: 1 {} (node {node_name:?} has the labels {})",
                    node_affinity::MISMATCH,
                    shown.join(", ")
                );
                refused = Some((format!("{prefix}.{field}"), why));
            } else if let Some((field, why)) = too_big(spec, &allocatable) {
                refused = Some((format!("{prefix}.{field}"), why));
            }
        }
        if let Some((field, why)) = refused {
            let pos = m.locate(&field);
            anyhow::bail!(
                "{}:{}:{}: {} {:?} would never run on this node: {field}: {why}; nothing was started",
                m.source,
                pos.line,
                pos.column,
                m.object.kind(),
                m.object.name()
            );
        }
    }
    Ok(())
}

/// What makes `spec` too big for this node even alone: the first resource its requests need
/// more of than the node has for pods, as the field of the first container asking for it and
/// the scheduler's verdict with the figures.
fn too_big(
    spec: &k8s_openapi::api::core::v1::PodSpec,
    allocatable: &std::collections::BTreeMap<String, i128>,
) -> Option<(String, String)> {
    use podvisor_objects::resources::{effective, format_milli};
    let requested = effective(spec, false).ok()?;
    let short = podvisor_cluster::scheduling::shortfalls(&requested, &Default::default(), allocatable);
    let s = short.first()?;
    let asking = |list: &str, containers: &[k8s_openapi::api::core::v1::Container]| {
        containers.iter().enumerate().find_map(|(i, c)| {
            let r = c.resources.as_ref()?;
            let field = [("requests", &r.requests), ("limits", &r.limits)]
                .into_iter()
                .find_map(|(kind, m)| m.as_ref()?.contains_key(&s.resource).then_some(kind))?;
            Some(format!("{list}[{i}].resources.{field}.{}", s.resource))
        })
    };
    let field = asking("initContainers", spec.init_containers.as_deref().unwrap_or_default())
        .or_else(|| asking("containers", &spec.containers))
        .unwrap_or_else(|| "overhead".to_string());
    let why = format!(
        "0/1 nodes are available: 1 {} (the pod requests {} in all; the node has {} for pods)",
        s.reason(),
        format_milli(s.requested),
        format_milli(s.capacity)
    );
    Some((field, why))
}

/// A pod held back by the scheduler (`FailedScheduling`) or rejected by the kubelet's admission
/// (`OutOfcpu`, `NodePorts`, …) has no container to speak for it: the store's event, new, as a
/// line of the run's.
fn placement_event(change: &podvisor_cluster::store::Change) -> Option<NodeEvent> {
    use podvisor_cluster::store::ChangeKind;
    let e = &change.object;
    let text = |p: &str| e.pointer(p).and_then(Value::as_str).unwrap_or("");
    let reason = text("/reason");
    let placement = text("/source/component") == "default-scheduler"
        || reason.starts_with("OutOf")
        || matches!(reason, "NodeAffinity" | "NodePorts");
    if change.key.resource != Resource::Events || change.kind != ChangeKind::Added || !placement {
        return None;
    }
    Some(NodeEvent {
        at: Timestamp::now(),
        pod: format!("{}/{}", text("/involvedObject/namespace"), text("/involvedObject/name")),
        uid: text("/involvedObject/uid").to_string(),
        what: What::Event {
            kind: "Warning",
            reason: reason.to_string(),
            message: text("/message").to_string(),
            container: None,
            field_path: None,
        },
    })
}

/// How long a run that could end waits for the pods' last output still on its way.
const TOLD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether `e` says an image could not be pulled (the kubelet's `Failed` event for a pull).
fn is_pull_failure(e: &NodeEvent) -> bool {
    matches!(&e.what, What::Event { reason, message, .. } if reason == "Failed" && message.starts_with("Failed to pull image"))
}

/// How a Pod or Job ended: its name, whether it succeeded, and in words.
fn outcome(store: &Store, key: &Key) -> Option<(String, bool, String)> {
    let obj = store.get(key)?;
    let name = format!("{}/{}", key.resource.info().singular, key.name);
    if key.resource == Resource::Pods {
        let phase = obj.pointer("/status/phase").and_then(Value::as_str)?;
        return matches!(phase, "Succeeded" | "Failed").then(|| (name, phase == "Succeeded", phase.to_string()));
    }
    let conditions = obj.pointer("/status/conditions").and_then(Value::as_array)?;
    let c = conditions.iter().find(|c| c["status"] == "True" && (c["type"] == "Complete" || c["type"] == "Failed"))?;
    let s = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    if s("type") == "Complete" {
        Some((name, true, "Complete".into()))
    } else {
        Some((name, false, format!("Failed: {}: {}", s("reason"), s("message"))))
    }
}

/// Runs the workloads of `manifests` until they end or the user interrupts.
pub fn run(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(out, manifests, opts))
}

/// The run's output, which may go away under it (`podvisor run … | head`): from the first
/// write to a closed pipe on, what is written is dropped and [`Output::gone`] says so, so that
/// the run stops its pods in order instead of leaving them running without it.
struct Output<'a, W: Write> {
    inner: &'a mut W,
    gone: bool,
}

impl<W: Write> Output<'_, W> {
    fn gone(&self) -> bool {
        self.gone
    }
}

impl<W: Write> Write for Output<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.gone {
            return Ok(buf.len());
        }
        match self.inner.write(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(buf.len())
            }
            r => r,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.gone {
            return Ok(());
        }
        match self.inner.flush() {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                self.gone = true;
                Ok(())
            }
            r => r,
        }
    }
}

async fn run_async(out: &mut impl Write, manifests: Vec<Manifest>, opts: Options) -> anyhow::Result<Outcome> {
    let mut out = Output { inner: out, gone: false };
    let outcome = run_with(&mut out, manifests, opts).await;
    if out.gone() {
        // The output went away: the pods were stopped; a closed pipe is not an error.
        return Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe).into());
    }
    outcome
}

async fn run_with<W: Write>(
    out: &mut Output<'_, W>,
    mut manifests: Vec<Manifest>,
    opts: Options,
) -> anyhow::Result<Outcome> {
    // As the API server refuses a second create of one name, nothing starts when names repeat.
    let mut names = std::collections::BTreeSet::new();
    for m in &manifests {
        let ns = m.object.metadata().namespace.as_deref().unwrap_or("default");
        if !names.insert((m.object.kind(), ns.to_string(), m.object.name().to_string())) {
            anyhow::bail!(
                "{}: {}s {:?} already exists (in namespace {ns:?}); nothing was started",
                m.source,
                m.object.kind().to_lowercase(),
                m.object.name()
            );
        }
    }
    let store = Store::in_memory();
    let (tx, mut rx) = mpsc::channel(podvisor_cluster::relay::CAPACITY);
    let cluster = Cluster::open(store.clone(), opts.node.clone(), Some(tx)).await?;
    crate::node_args::remember_runtime(&opts.node.runtime, &opts.node.data_dir);
    writeln!(out, "podvisor: OCI runtime {} ({})", opts.node.runtime.display(), opts.runtime_why)?;
    placeable(&mut manifests, &cluster)?;
    images_up_front(out, &mut manifests, &opts)?;
    let node = cluster.node().clone();
    let mut changes = store.subscribe();
    // A terminal that can move the cursor keeps the pod table; colour unless NO_COLOR says no.
    let tty = std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |t| t != "dumb");
    let (colour, tty) = match opts.colour {
        crate::lint::Colour::Always => (true, tty),
        crate::lint::Colour::Never => (false, false),
        crate::lint::Colour::Auto => (tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()), tty),
    };
    let mut printer = Printer::new(Box::new(node.clone()), Some(store.clone()), colour, tty, opts.timeline.is_some());
    // The workloads whose outcome is the run's: Pods and Jobs end, Deployments run until
    // interrupted.
    let mut pending: Vec<Key> = Vec::new();
    let mut has_deployment = false;
    for m in manifests {
        let resource = Resource::of_kind(m.object.api_version(), m.object.kind())
            .ok_or_else(|| anyhow::anyhow!("{}: {} is not served", m.source, m.object.kind()))?;
        // The manifest went through admission's typed step when it was loaded (so that its
        // errors have lines and columns); what remains is the stored form and the create.
        let mut obj =
            admission::admit_prepared(resource, &m.object).map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        admission::on_create(resource, &mut obj);
        podvisor_cluster::admission::admit_create(&store, None, resource, &mut obj)
            .map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        let created = store
            .create_checked(resource, obj, |o, existing| {
                podvisor_apiserver::services::allocate_for(resource, o, existing).map_err(anyhow::Error::from)
            })
            .map_err(|e| anyhow::anyhow!("{}: {e}", m.source))?;
        match resource {
            Resource::Pods | Resource::Jobs => pending.push(Key::of(resource, &created)),
            Resource::Deployments | Resource::CronJobs => has_deployment = true,
            _ => {}
        }
    }
    if has_deployment {
        writeln!(out, "podvisor: Deployments and CronJobs run until interrupted (Ctrl-C)")?;
    }
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut interrupts = 0;
    // Why `--fail-fast` stopped the run, once it has.
    let mut failed_fast: Option<String> = None;
    let mut results = Vec::new();
    // The pods whose `Finished` event was printed, and since when the run could end.
    let mut finished_told = std::collections::HashSet::new();
    let mut ending_since: Option<std::time::Instant> = None;
    loop {
        pending.retain(|key| match outcome(&store, key) {
            Some(r) => {
                if opts.fail_fast && !r.1 && failed_fast.is_none() {
                    failed_fast = Some(format!("{} {}", r.0, r.2));
                }
                results.push(r);
                false
            }
            None => true,
        });
        if out.gone() && interrupts == 0 {
            // Nobody reads the run any more (its pipe closed): it stops its pods in order, as
            // an interrupt does, rather than leave them running without it.
            interrupts = 1;
            printer.interrupted = true;
            cluster.shut_down();
        }
        if failed_fast.is_some() && interrupts == 0 {
            interrupts = 1;
            printer.erase(out)?;
            let why = failed_fast.as_deref().unwrap_or_default();
            writeln!(out, "podvisor: --fail-fast: {why}: deleting every pod with its grace period")?;
            cluster.shut_down();
        }
        let idle = node.pods().iter().all(|p| p.is_finished());
        let ending = (pending.is_empty() && !has_deployment || interrupts > 0) && idle;
        // Every pod's last words come before its `Finished` event, through the same channel: the
        // run ends once each finished pod's has been printed (or, if the output fell so far
        // behind that it was skipped, a moment later), so that no line is cut off.
        let told = node.pods().iter().all(|p| finished_told.contains(p.uid()));
        if ending && (told || ending_since.get_or_insert_with(std::time::Instant::now).elapsed() > TOLD_WAIT) {
            while let Ok(e) = rx.try_recv() {
                printer.print(out, e)?;
            }
            break;
        }
        tokio::select! {
            Some(e) = rx.recv() => {
                if let What::Finished { .. } = &e.what {
                    finished_told.insert(e.uid.clone());
                }
                if opts.fail_fast
                    && failed_fast.is_none()
                    && is_pull_failure(&e)
                    && let What::Event { message, .. } = &e.what
                {
                    failed_fast = Some(format!("pod/{}: {message}", crate::printer::short(&e.pod)));
                }
                printer.print(out, e)?
            }
            // Every change (a lag too) has the outcomes checked again above.
            change = changes.recv() => {
                if let Some(e) = change.ok().and_then(|c| placement_event(&c)) {
                    printer.print(out, e)?;
                }
            }
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)), if printer.counting() => printer.redraw(out)?,
            _ = tokio::time::sleep(TOLD_WAIT / 10), if ending => {}
            _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
                interrupts += 1;
                printer.interrupted = true;
                printer.erase(out)?;
                if interrupts == 1 {
                    writeln!(out, "podvisor: interrupted: deleting every pod with its grace period (interrupt again to kill at once)")?;
                    cluster.shut_down();
                } else {
                    writeln!(out, "podvisor: killing every container now")?;
                    cluster.force_kill();
                }
            }
        }
    }
    for key in pending {
        results.push((format!("{}/{}", key.resource.info().singular, key.name), false, "stopped".into()));
    }
    // A run `--fail-fast` stopped ends as a failure, not as an interruption.
    if failed_fast.is_some() {
        interrupts = 0;
        results.push(("podvisor".into(), false, "stopped by --fail-fast".into()));
    }
    printer.erase(out)?;
    printer.drop_table();
    cluster.close_services().await;
    let elapsed = Timestamp::now().duration_since(printer.start).as_secs_f64();
    results.sort();
    let mut ok = interrupts == 0;
    for (name, good, what) in &results {
        ok &= *good;
        writeln!(out, "{name}: {what}")?;
    }
    writeln!(out, "podvisor: done in {elapsed:.3}s")?;
    if let (Some(path), Some(tl)) = (&opts.timeline, &printer.timeline) {
        let title = format!("podvisor run, {}", printer.start);
        crate::timeline::save(path, &title, tl, &crate::timeline::Kinds::new())?;
    }
    Ok(if interrupts > 0 { Outcome::Interrupted } else { Outcome::Done(ok) })
}
