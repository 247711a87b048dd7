//! The simulated runtime and the virtual-time loop that drives a [`PodEngine`] with it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStatus, PodSpec};
use podvisor_engine::{
    Action, ContainerRef, ExitCause, Found, FoundExit, Hook, Input, NodeFacts, PodEngine, PodEvent, PodIdentity, Prior,
    ProbeKind, ProbeOutcome, Signal,
};
use podvisor_engine::{Instant, Now};

use crate::behaviour::{Behaviour, HookScript, ProbeScript};

/// The address the simulated sandbox gives its pod.
pub const SIM_POD_IP: &str = "10.244.0.2";

/// What happened, as the merged log of all containers would show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The process started (the runtime reported it running).
    Starting,
    /// The `Started` line: the start delay is over.
    Started,
    /// The `Exiting` line: a normal or SIGTERM-handled exit, with its code.
    Exiting(i32),
    /// Killed by SIGKILL (exit 137), or by the OOM killer.
    Killed,
    /// A signal was delivered.
    Signalled(String),
    /// A hook began.
    HookStart(Hook),
    /// A hook ended.
    HookEnd(Hook),
    /// A probe ran, with its result.
    Probe(ProbeKind, bool),
    /// An event the engine recorded.
    Event(PodEvent),
    /// The pod's phase changed.
    Phase(String),
    /// The sandbox was removed: the pod is done.
    SandboxRemoved,
    /// The node process stopped and started again, the sandbox intact (R75).
    NodeRestarted,
}

/// One timeline entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Virtual time since the simulation began.
    pub at: Duration,
    /// The container it concerns (empty for the pod).
    pub container: String,
    /// What happened.
    pub mark: Mark,
}

#[derive(Debug, Clone)]
enum Due {
    Input(Input),
    StartedLine(ContainerRef),
    Exit(ContainerRef, i32, ExitCause),
    HookEnd(ContainerRef, Hook, bool),
}

#[derive(Debug, Clone)]
struct Proc {
    behaviour: Behaviour,
    started_at: Option<Timestamp>,
    alive: bool,
    hooks: Vec<Hook>,
    stop_signalled: bool,
}

/// A pod run in virtual time against simulated containers.
pub struct Sim {
    engine: PodEngine,
    t0: Timestamp,
    /// Virtual time: the simulation's monotonic clock, read as a timestamp.
    now: Timestamp,
    /// How far the wall clock the engine reads is off virtual time (see
    /// [`Sim::step_wall_clock`]).
    wall_offset: SignedDuration,
    seq: u64,
    queue: BTreeMap<(Timestamp, u64), Due>,
    procs: HashMap<ContainerRef, Proc>,
    behaviours: HashMap<String, Vec<Behaviour>>,
    unpullable: HashSet<String>,
    timeline: Vec<Entry>,
    events: Vec<PodEvent>,
    phase: String,
    /// The conditions others set on the pod (see [`Sim::set_condition`]).
    conditions: BTreeMap<String, String>,
}

/// The virtual epoch: every simulation starts at this instant.
pub fn epoch() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap_or(Timestamp::UNIX_EPOCH)
}

impl Sim {
    /// A simulation of a pod. `behaviours` lists, per container, the behaviour of each
    /// successive instance (the last one repeats); containers not listed run forever and exit
    /// at once on SIGTERM.
    pub fn new(name: &str, spec: PodSpec, behaviours: HashMap<String, Vec<Behaviour>>) -> Self {
        Self::start(name, spec, behaviours, None)
    }

    /// A simulation of a pod that already ran in a sandbox now gone, whose last reported
    /// status was `prior` ([`PodEngine::resume`]: R73, R74).
    pub fn resumed(
        name: &str,
        spec: PodSpec,
        behaviours: HashMap<String, Vec<Behaviour>>,
        prior: &k8s_openapi::api::core::v1::PodStatus,
    ) -> Self {
        Self::start(name, spec, behaviours, Some(prior))
    }

    fn start(
        name: &str,
        spec: PodSpec,
        behaviours: HashMap<String, Vec<Behaviour>>,
        prior: Option<&k8s_openapi::api::core::v1::PodStatus>,
    ) -> Self {
        let t0 = epoch();
        let id = PodIdentity { name: name.into(), namespace: "default".into(), uid: format!("uid-{name}") };
        let node = NodeFacts::default();
        // Virtual time starts at the monotonic clock's origin.
        let start = Now::new(Instant::ORIGIN, t0);
        let engine = match prior {
            Some(status) => PodEngine::resumed(id, spec, &node, start, Prior { status, deleting: None }),
            None => PodEngine::new(id, spec, &node, start),
        };
        let mut sim = Sim {
            engine,
            t0,
            now: t0,
            wall_offset: SignedDuration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            procs: HashMap::new(),
            behaviours,
            unpullable: HashSet::new(),
            timeline: Vec::new(),
            events: Vec::new(),
            phase: String::new(),
            conditions: BTreeMap::new(),
        };
        sim.observe_phase();
        sim.apply_actions();
        sim
    }

    /// Makes an image impossible to pull (`ErrImagePull`).
    pub fn unpullable(&mut self, image: &str) {
        self.unpullable.insert(image.to_string());
    }

    /// The engine under test.
    pub fn engine(&self) -> &PodEngine {
        &self.engine
    }

    /// Virtual time elapsed.
    pub fn elapsed(&self) -> Duration {
        self.now.duration_since(self.t0).unsigned_abs()
    }

    /// The merged timeline so far.
    pub fn timeline(&self) -> &[Entry] {
        &self.timeline
    }

    /// The events the engine recorded so far.
    pub fn events(&self) -> &[PodEvent] {
        &self.events
    }

    /// The pod phase.
    pub fn phase(&self) -> &str {
        &self.phase
    }

    /// The status of a container (init or regular) by name.
    pub fn container(&self, name: &str) -> Option<&ContainerStatus> {
        let st = self.engine.status();
        st.init_container_statuses
            .iter()
            .flatten()
            .chain(st.container_statuses.iter().flatten())
            .chain(st.ephemeral_container_statuses.iter().flatten())
            .find(|c| c.name == name)
    }

    /// Deletes the pod now, as `kubectl delete` with an optional grace period.
    pub fn delete(&mut self, grace_seconds: Option<i64>) {
        self.feed(Input::Delete { grace_seconds });
    }

    /// Evicts the pod now, as the node does when an `emptyDir` passes its `sizeLimit`.
    pub fn evict(&mut self, message: &str) {
        self.feed(Input::Evict { message: message.into() });
    }

    /// Rejects the pod now, as the node's admission does (`SysctlForbidden`, `OutOfpods`).
    pub fn reject(&mut self, reason: &str, message: &str) {
        self.feed(Input::Reject { reason: reason.into(), message: message.into() });
    }

    /// Adds an ephemeral container now (`kubectl debug`), behaving as `behaviour`, targeting
    /// `target`'s processes if given (a spec update of `pods/ephemeralcontainers`).
    pub fn add_ephemeral(&mut self, name: &str, target: Option<&str>, behaviour: Behaviour) {
        let mut spec = self.engine.spec().clone();
        spec.ephemeral_containers.get_or_insert_with(Vec::new).push(k8s_openapi::api::core::v1::EphemeralContainer {
            name: name.into(),
            image: Some("busybox:1.36".into()),
            target_container_name: target.map(str::to_string),
            ..Default::default()
        });
        self.behaviours.insert(name.to_string(), vec![behaviour]);
        self.feed(Input::UpdateSpec(Box::new(spec)));
    }

    /// Changes a container's image now (a spec update).
    pub fn set_image(&mut self, container: &str, image: &str) {
        let mut spec = self.engine.spec().clone();
        for c in spec.init_containers.iter_mut().flatten().chain(spec.containers.iter_mut()) {
            if c.name == container {
                c.image = Some(image.to_string());
            }
        }
        self.feed(Input::UpdateSpec(Box::new(spec)));
    }

    /// Sets the condition `type_` of the pod to `status` now, as a controller does through the
    /// API (a readiness gate's condition).
    pub fn set_condition(&mut self, type_: &str, status: &str) {
        self.conditions.insert(type_.to_string(), status.to_string());
        self.feed(Input::Conditions(self.conditions.clone()));
    }

    /// Sets or shortens the pod's `activeDeadlineSeconds` now (a spec update).
    pub fn set_active_deadline(&mut self, seconds: Option<i64>) {
        let mut spec = self.engine.spec().clone();
        spec.active_deadline_seconds = seconds;
        self.feed(Input::UpdateSpec(Box::new(spec)));
    }

    /// The node process stops for `down` of virtual time and starts again while the pod's
    /// sandbox and containers are intact (R75): a new engine takes over from the last reported
    /// status and what the runtime still holds ([`PodEngine::adopt`]). What the old process
    /// had in flight (probes, hooks, starts not yet reported) is lost with it; containers keep
    /// running, and those that exit meanwhile are found ended. The running instances of `lost`
    /// vanish from the runtime while the node is down.
    pub fn restart_node(&mut self, down: Duration, lost: &[&str]) {
        // The status as the API holds it: the node's, with the conditions others set.
        let mut prior = self.engine.status().clone();
        let others = self.conditions.iter().map(|(t, s)| k8s_openapi::api::core::v1::PodCondition {
            type_: t.clone(),
            status: s.clone(),
            ..Default::default()
        });
        prior.conditions.get_or_insert_with(Vec::new).extend(others);
        self.queue.retain(|_, due| matches!(due, Due::Exit(..) | Due::StartedLine(_)));
        let back = self.now + down;
        let mut ended: HashMap<ContainerRef, FoundExit> = HashMap::new();
        while let Some(((at, _), _)) = self.queue.first_key_value() {
            if *at > back {
                break;
            }
            let Some(((at, _), due)) = self.queue.pop_first() else { break };
            self.now = at;
            match due {
                Due::Exit(r, code, cause) => {
                    if let Some(p) = self.procs.get_mut(&r).filter(|p| p.alive) {
                        p.alive = false;
                        let mark = if code == 137 { Mark::Killed } else { Mark::Exiting(code) };
                        self.mark(&r.name, mark);
                        let finished_at = self.wall_at(at);
                        let exit = FoundExit { exit_code: code, cause, finished_at, message: None };
                        ended.insert(r, exit);
                    }
                }
                other => self.fire(other),
            }
        }
        self.now = back;
        let mut found = Vec::new();
        for (r, p) in &mut self.procs {
            p.hooks.clear();
            if lost.contains(&r.name.as_str()) {
                p.alive = false;
                continue;
            }
            let id = format!("sim://{}-{}", r.name, r.attempt);
            if p.alive {
                found.push(Found { container: r.clone(), id, ended: None });
            } else if let Some(e) = ended.remove(r) {
                found.push(Found { container: r.clone(), id, ended: Some(e) });
            }
        }
        found.sort_by(|a, b| a.container.cmp(&b.container));
        self.mark("", Mark::NodeRestarted);
        // The pod object says it is being deleted: the new node process knows it from the start.
        let prior = Prior { status: &prior, deleting: self.engine.deletion().map(Some) };
        let (id, spec) = (self.engine.identity().clone(), self.engine.spec().clone());
        self.engine = PodEngine::adopted(id, spec, &NodeFacts::default(), self.engine_now(), prior, found);
        self.after_engine();
    }

    /// Steps the wall clock the engine reads by `by` (backwards when negative), as NTP or a
    /// user's `date -s` steps a machine's: virtual time, and so the monotonic clock, goes on
    /// undisturbed.
    pub fn step_wall_clock(&mut self, by: SignedDuration) {
        self.wall_offset = self.wall_offset.saturating_add(by);
    }

    /// The wall clock's reading at virtual time `t`.
    fn wall_at(&self, t: Timestamp) -> Timestamp {
        t.checked_add(self.wall_offset).unwrap_or(t)
    }

    /// The moment the engine is told it is: virtual time since the start on its monotonic
    /// clock, and the wall clock's reading.
    fn engine_now(&self) -> Now {
        let mono = Instant::ORIGIN.after(self.now.duration_since(self.t0).unsigned_abs());
        Now::new(mono, self.wall_at(self.now))
    }

    /// The virtual time at which the engine's monotonic clock reads `t`.
    fn virtual_at(&self, t: Instant) -> Timestamp {
        self.t0.checked_add(t.since_origin()).unwrap_or(if t < Instant::ORIGIN { self.t0 } else { Timestamp::MAX })
    }

    /// How long after the start the next thing is due (a simulated process's step, or a timer
    /// of the engine's), if anything is: a driver of several simulations steps to the earliest.
    pub fn next_event(&self) -> Option<Duration> {
        let next_due = self.queue.keys().next().map(|(t, _)| *t);
        let timeout = self.engine.poll_timeout().map(|t| self.virtual_at(t));
        let next = [next_due, timeout].into_iter().flatten().min()?;
        Some(next.duration_since(self.t0).unsigned_abs())
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.run_until(limit, |_| false);
    }

    /// Runs until the pod is finished or `limit` of virtual time has passed since the start.
    /// Returns whether it finished.
    pub fn run_to_end(&mut self, limit: Duration) -> bool {
        let limit = self.t0 + limit;
        self.run_until(limit, |s| s.engine.is_finished());
        self.engine.is_finished()
    }

    /// Runs until `done` holds or `limit` of virtual time has passed since the start. Returns
    /// whether `done` held.
    pub fn run_while_not(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        let limit = self.t0 + limit;
        self.run_until(limit, &done);
        done(self)
    }

    fn run_until(&mut self, limit: Timestamp, done: impl Fn(&Sim) -> bool) {
        loop {
            if done(self) {
                return;
            }
            let next_due = self.queue.keys().next().map(|(t, _)| *t);
            let timeout = self.engine.poll_timeout().map(|t| self.virtual_at(t));
            let next = [next_due, timeout].into_iter().flatten().min();
            let Some(next) = next.filter(|t| *t <= limit) else {
                self.now = self.now.max(limit);
                return;
            };
            self.now = self.now.max(next);
            if next_due == Some(next) {
                let Some(((_, _), due)) = self.queue.pop_first() else { continue };
                self.fire(due);
            } else {
                self.engine.handle_timeout(self.engine_now());
                self.after_engine();
            }
        }
    }

    fn feed(&mut self, input: Input) {
        self.engine.handle(self.engine_now(), input);
        self.after_engine();
    }

    fn after_engine(&mut self) {
        self.apply_actions();
        self.observe_phase();
    }

    fn observe_phase(&mut self) {
        let phase = self.engine.status().phase.clone().unwrap_or_default();
        if phase != self.phase {
            self.phase = phase.clone();
            self.mark("", Mark::Phase(phase));
        }
    }

    fn mark(&mut self, container: &str, mark: Mark) {
        self.timeline.push(Entry { at: self.elapsed(), container: container.to_string(), mark });
    }

    fn schedule(&mut self, after: Duration, due: Due) {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), due);
    }

    fn behaviour(&self, r: &ContainerRef) -> Behaviour {
        self.behaviours.get(&r.name).and_then(|v| v.get(r.attempt as usize).or(v.last())).cloned().unwrap_or_default()
    }

    fn fire(&mut self, due: Due) {
        match due {
            Due::Input(input) => {
                if let Input::Started { container } = &input {
                    self.on_process_start(container);
                }
                self.feed(input);
            }
            Due::StartedLine(r) => {
                if self.procs.get(&r).is_some_and(|p| p.alive) {
                    self.mark(&r.name, Mark::Started);
                }
            }
            Due::Exit(r, code, cause) => self.exit(&r, code, cause),
            Due::HookEnd(r, hook, fails) => {
                let Some(p) = self.procs.get_mut(&r) else { return };
                if !p.alive || !p.hooks.contains(&hook) {
                    return;
                }
                p.hooks.retain(|h| *h != hook);
                self.mark(&r.name, Mark::HookEnd(hook));
                let result = if fails { Err(format!("{hook:?} hook exited 1")) } else { Ok(()) };
                self.feed(Input::HookDone { container: r, hook, result });
            }
        }
    }

    fn on_process_start(&mut self, r: &ContainerRef) {
        let b = self.behaviour(r);
        self.procs.insert(
            r.clone(),
            Proc {
                behaviour: b.clone(),
                started_at: Some(self.now),
                alive: true,
                hooks: Vec::new(),
                stop_signalled: false,
            },
        );
        self.mark(&r.name, Mark::Starting);
        self.schedule(b.start_delay, Due::StartedLine(r.clone()));
        if let Some(run) = b.run {
            self.schedule(b.start_delay + run, Due::Exit(r.clone(), b.exit_code, ExitCause::Exited));
        }
        if let Some(oom) = b.oom_after {
            self.schedule(oom, Due::Exit(r.clone(), 137, ExitCause::OomKilled));
        }
    }

    fn exit(&mut self, r: &ContainerRef, code: i32, cause: ExitCause) {
        let Some(p) = self.procs.get_mut(r) else { return };
        if !p.alive {
            return;
        }
        p.alive = false;
        let hooks = std::mem::take(&mut p.hooks);
        let mark = if code == 137 { Mark::Killed } else { Mark::Exiting(code) };
        self.mark(&r.name, mark);
        self.feed(Input::Exited { container: r.clone(), exit_code: code, cause, message: None });
        for hook in hooks {
            // A hook still running dies with its container.
            self.feed(Input::HookDone { container: r.clone(), hook, result: Err("container exited".into()) });
        }
    }

    fn apply_actions(&mut self) {
        while let Some(action) = self.engine.poll_action() {
            self.apply(action);
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::CreateSandbox => {
                self.schedule(Duration::ZERO, Due::Input(Input::SandboxReady { pod_ip: Some(SIM_POD_IP.into()) }))
            }
            Action::StartContainer { container, spec, .. } => {
                let image = spec.image.unwrap_or_default();
                if self.unpullable.contains(&image) {
                    let message = format!("rpc error: manifest for {image} not found");
                    self.schedule(Duration::ZERO, Due::Input(Input::ImagePullFailed { container, message }));
                    return;
                }
                let b = self.behaviour(&container);
                let id = format!("sim://{}-{}", container.name, container.attempt);
                self.schedule(
                    Duration::ZERO,
                    Due::Input(Input::ImageReady { container: container.clone(), pulled: false }),
                );
                let failed = |reason: &str| Input::StartFailed {
                    container: container.clone(),
                    reason: reason.into(),
                    message: format!("simulated {reason}"),
                };
                if b.create_fails {
                    self.schedule(Duration::ZERO, Due::Input(failed("CreateContainerError")));
                    return;
                }
                self.schedule(Duration::ZERO, Due::Input(Input::Created { container: container.clone(), id }));
                if b.start_fails {
                    self.schedule(b.runtime_start, Due::Input(failed("RunContainerError")));
                    return;
                }
                self.schedule(b.runtime_start, Due::Input(Input::Started { container }));
            }
            Action::RunHook { container, hook, .. } => {
                let script = self.procs.get(&container).and_then(|p| match hook {
                    Hook::PostStart => p.behaviour.post_start.clone(),
                    Hook::PreStop => p.behaviour.pre_stop.clone(),
                });
                let script = script.unwrap_or(HookScript { duration: Some(Duration::ZERO), fails: false });
                let Some(p) = self.procs.get_mut(&container) else { return };
                if !p.alive {
                    return;
                }
                p.hooks.push(hook);
                self.mark(&container.name, Mark::HookStart(hook));
                if let Some(d) = script.duration {
                    self.schedule(d, Due::HookEnd(container, hook, script.fails));
                }
            }
            Action::RunProbe { container, probe, timeout } => {
                let Some(p) = self.procs.get(&container).filter(|p| p.alive) else { return };
                let ran = p.started_at.map_or(Duration::ZERO, |s| self.now.duration_since(s).unsigned_abs());
                let script = p.behaviour.probes.get(&probe).cloned().unwrap_or(ProbeScript::Pass);
                let (ok, after) = match &script {
                    ProbeScript::Pass => (true, Duration::ZERO),
                    ProbeScript::Fail => (false, Duration::ZERO),
                    ProbeScript::PassAfter(d) => (ran >= *d, Duration::ZERO),
                    ProbeScript::FailAfter(d) => (ran < *d, Duration::ZERO),
                    ProbeScript::WhenStarted => (ran >= p.behaviour.start_delay, Duration::ZERO),
                    ProbeScript::Hang => (false, timeout),
                    ProbeScript::UntilStopSignal => (!p.stop_signalled, Duration::ZERO),
                    ProbeScript::Warn(_) => (true, Duration::ZERO),
                };
                self.mark(&container.name, Mark::Probe(probe, ok));
                let outcome = if let ProbeScript::Warn(w) = script {
                    ProbeOutcome::Warning(w)
                } else if ok {
                    ProbeOutcome::Success
                } else if after > Duration::ZERO {
                    ProbeOutcome::Failure(format!("command timed out after {}s", timeout.as_secs()))
                } else {
                    ProbeOutcome::Failure("exit status 1".into())
                };
                self.schedule(after, Due::Input(Input::ProbeDone { container, probe, outcome }));
            }
            Action::Signal { container, signal } => {
                let Some(p) = self.procs.get(&container).filter(|p| p.alive) else { return };
                let term = p.behaviour.term;
                let code = p.behaviour.exit_code;
                match signal {
                    Signal::Stop => {
                        if let Some(p) = self.procs.get_mut(&container) {
                            p.stop_signalled = true;
                        }
                        self.mark(&container.name, Mark::Signalled("SIGTERM".into()));
                        if let Some(t) = term {
                            self.schedule(t, Due::Exit(container, code, ExitCause::Exited));
                        }
                    }
                    Signal::Kill => {
                        self.mark(&container.name, Mark::Signalled("SIGKILL".into()));
                        self.exit(&container, 137, ExitCause::Exited);
                    }
                }
            }
            Action::CancelStart { container } => {
                // The runtime abandons the pull or create and says so; the process never runs.
                self.queue.retain(|_, due| {
                    !matches!(due, Due::Input(
                    Input::ImageReady { container: c, .. }
                    | Input::ImagePullFailed { container: c, .. }
                    | Input::Created { container: c, .. }
                    | Input::Started { container: c }
                ) if *c == container)
                });
                let abandoned = Input::StartFailed {
                    container,
                    reason: "Cancelled".into(),
                    message: "the start was abandoned: the pod is terminating".into(),
                };
                self.schedule(Duration::ZERO, Due::Input(abandoned));
            }
            Action::RemoveSandbox => self.mark("", Mark::SandboxRemoved),
            Action::Record(ev) => {
                let name = ev.container.as_ref().map(|c| c.name.clone()).unwrap_or_default();
                self.events.push(ev.clone());
                self.mark(&name, Mark::Event(ev));
            }
        }
    }
}
