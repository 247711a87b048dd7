//! [`PodEngine`]: one pod's lifecycle as a sans-IO state machine.
//!
//! The engine runs the kubelet's sync passes: on every input it computes what to do with
//! [`decide`], then executes the pass step by step as the kubelet's `SyncPod` does (kills one by
//! one, then starts in spec order, each start waiting for its postStart hook). Unlike the
//! kubelet, a pass runs the moment an input arrives: there is no relist interval.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

use crate::backoff::{Backoff, CRASH_LOOP_INITIAL, CRASH_LOOP_MAX};
use crate::decide::{KillReason, ProbeResults, decide};
use crate::duration::go_duration;
use crate::io::{
    Action, ContainerRef, EventType, ExitCause, Found, Hook, Input, PodEvent, ProbeKind, ProbeOutcome, Signal,
};
use crate::kill::{KillTask, MIN_GRACE_SECONDS, Ordering, Stage, after, after_secs, whole_seconds};
use crate::model::{ContainerModel, PodModel, RestartPolicy, Role};
use crate::probe::{Cached, Worker};
use crate::record::{Exit, Instance, Records, State};

mod adopt;
mod status;

pub use status::HOST_IP;

/// Facts of the node a pod runs on, given when its engine is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    /// The node's address, shown as `status.hostIP` ([`HOST_IP`] by default).
    pub host_ip: String,
}

impl Default for NodeFacts {
    fn default() -> Self {
        NodeFacts { host_ip: HOST_IP.to_string() }
    }
}

/// What a node process that ran a pod before knows of it, when a new one takes it on.
#[derive(Debug, Clone, Copy)]
pub struct Prior<'a> {
    /// The status last reported.
    pub status: &'a PodStatus,
    /// `Some(grace)` when the pod was being deleted (with that grace, if it had one) when the
    /// node process stopped: it stays terminating, and nothing of it starts again, not even a
    /// sidecar that exited meanwhile.
    pub deleting: Option<Option<i64>>,
}

/// The pod's identity, used in event messages and back-off keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodIdentity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
}

/// A reason a container shows as Waiting instead of its latest runtime state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Kill { r: ContainerRef, reason: KillReason, message: String },
    Start { name: String, backoff_since: Option<Timestamp> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Current {
    /// A container is being killed as a step of the pass.
    Killing(ContainerRef),
    /// A container is being started (pull, create, start, postStart).
    Starting(ContainerRef),
    /// A container whose postStart hook failed is being killed; the start then counts as failed.
    PostStartFailed(ContainerRef),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sandbox {
    Creating,
    Ready,
    Removed,
}

/// How the pod is being terminated.
#[derive(Debug, Clone)]
pub(crate) struct Termination {
    /// Whether the pod was deleted (API delete, Ctrl-C), as opposed to completing on its own.
    pub deleted: bool,
    /// The effective grace `G` in seconds.
    pub grace: i64,
    ordering: Ordering,
}

/// One pod's lifecycle engine. Feed it [`Input`]s with [`PodEngine::handle`] and the passing
/// of time with [`PodEngine::handle_timeout`]; take [`Action`]s from [`PodEngine::poll_action`]
/// and read the API status from [`PodEngine::status`].
#[derive(Debug)]
pub struct PodEngine {
    pub(crate) id: PodIdentity,
    pub(crate) model: PodModel,
    pub(crate) spec: PodSpec,
    pub(crate) start_time: Timestamp,
    sandbox: Sandbox,
    /// The address the sandbox gave the pod; kept once known, as the kubelet keeps it.
    pub(crate) pod_ip: Option<String>,
    /// The node's address (`status.hostIP`).
    pub(crate) host_ip: String,
    pub(crate) records: Records,
    pub(crate) waiting: HashMap<String, Waiting>,
    pub(crate) probes: BTreeMap<(ContainerRef, ProbeKind), Worker>,
    crash_backoff: Backoff,
    pull_backoff: Backoff,
    pull_failed_at: HashMap<String, Timestamp>,
    sandbox_backoff: Backoff,
    /// When to ask for the sandbox again after a failed creation.
    sandbox_retry: Option<Timestamp>,
    retries: BTreeSet<Timestamp>,
    queue: VecDeque<Op>,
    current: Option<Current>,
    dirty: bool,
    pub(crate) terminating: Option<Termination>,
    kills: BTreeMap<ContainerRef, KillTask>,
    /// Starts abandoned because the pod began terminating before they ran (R41).
    cancelled: BTreeSet<ContainerRef>,
    /// The image each start in flight was asked to run (a spec update may change the model
    /// before the runtime reports back, R68).
    starting_image: HashMap<ContainerRef, String>,
    finished: bool,
    /// Set by [`PodEngine::deleting`] before a take-over: the grace the deletion asked for.
    deleted_before: Option<Option<i64>>,
    out: VecDeque<Action>,
    pub(crate) status: PodStatus,
    /// Why the node ended the pod itself (`status.reason`, `status.message`): it is `Failed`.
    pub(crate) verdict: Option<(String, String)>,
}

/// The kubelet's grace for an eviction (`immediateEvictionGracePeriodSeconds`).
const EVICTION_GRACE_SECONDS: i64 = 1;

impl ProbeResults for BTreeMap<(ContainerRef, ProbeKind), Worker> {
    fn cached(&self, r: &ContainerRef, kind: ProbeKind) -> Option<Cached> {
        self.get(&(r.clone(), kind)).map(|w| w.cached)
    }
}

impl PodEngine {
    /// The engine of a pod new to the node, with this identity and (defaulted, validated) spec.
    /// Its first action is [`Action::CreateSandbox`]; poll it after construction, as after
    /// every call.
    #[must_use]
    pub fn new(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Timestamp) -> Self {
        let mut engine = Self::made(id, spec, node, now);
        engine.refresh_status(now);
        engine
    }

    /// R73/R74: the engine of a pod that already ran in a sandbox that is gone, with every
    /// container in it (the node stopped while it ran, or the machine rebooted). Restart counts
    /// continue from `prior`, and the pod starts over at its first init container in a new
    /// sandbox. A `restartPolicy: Never` pod that had created containers, or a pod being
    /// deleted, is not run again (no new sandbox): what had ended keeps its end, what was
    /// running ends as `ContainerStatusUnknown` (137), and the pod finishes.
    #[must_use]
    pub fn resumed(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Timestamp, prior: Prior<'_>) -> Self {
        let mut engine = Self::made(id, spec, node, now);
        engine.deleted_before = prior.deleting;
        engine.resume(now, prior.status);
        engine
    }

    /// R75: the engine of a pod whose node process stopped and started again while its sandbox
    /// stayed intact; `found` is what the runtime still holds of its containers. No sandbox is
    /// created: see [`adopt`](Self::adopt) for what becomes of each container.
    #[must_use]
    pub fn adopted(
        id: PodIdentity,
        spec: PodSpec,
        node: &NodeFacts,
        now: Timestamp,
        prior: Prior<'_>,
        found: Vec<Found>,
    ) -> Self {
        let mut engine = Self::made(id, spec, node, now);
        engine.deleted_before = prior.deleting;
        engine.adopt(now, prior.status, found);
        engine
    }

    /// The engine before its first status: a fresh pod asking for its sandbox.
    fn made(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Timestamp) -> Self {
        let mut engine = PodEngine {
            id,
            model: PodModel::new(&spec),
            spec,
            start_time: now,
            sandbox: Sandbox::Creating,
            pod_ip: None,
            host_ip: node.host_ip.clone(),
            records: Records::default(),
            waiting: HashMap::new(),
            probes: BTreeMap::new(),
            crash_backoff: Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX),
            pull_backoff: Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX),
            pull_failed_at: HashMap::new(),
            sandbox_backoff: Backoff::new(CRASH_LOOP_INITIAL, CRASH_LOOP_MAX),
            sandbox_retry: None,
            retries: BTreeSet::new(),
            queue: VecDeque::new(),
            current: None,
            dirty: false,
            terminating: None,
            kills: BTreeMap::new(),
            cancelled: BTreeSet::new(),
            starting_image: HashMap::new(),
            finished: false,
            out: VecDeque::new(),
            status: PodStatus::default(),
            deleted_before: None,
            verdict: None,
        };
        engine.status.host_ip = Some(node.host_ip.clone());
        engine.status.host_ips = Some(vec![k8s_openapi::api::core::v1::HostIP { ip: node.host_ip.clone() }]);
        engine.out.push_back(Action::CreateSandbox);
        engine
    }

    /// The next action to carry out, if any. Poll until `None` after construction and after
    /// every [`handle`](Self::handle) and [`handle_timeout`](Self::handle_timeout): actions
    /// are queued, in the order they must be carried out.
    #[must_use = "an action not carried out is lost"]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.out.pop_front()
    }

    /// When [`PodEngine::handle_timeout`] must be called next, if ever. Ask again after
    /// construction and after every call that takes `now`: any of them may move it.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.finished {
            return None;
        }
        let retry = self.retries.first().copied();
        let probe = self.probes.values().filter(|w| w.is_due_candidate()).filter_map(|w| w.next_at).min();
        let kill = self.kills.values().filter_map(|k| k.deadline).min();
        let deadline = self.active_deadline().filter(|_| self.terminating.is_none());
        [retry, probe, kill, self.sandbox_retry, deadline].into_iter().flatten().min()
    }

    /// The pod's API status as of the last input.
    pub fn status(&self) -> &PodStatus {
        &self.status
    }

    /// The pod's identity.
    pub fn identity(&self) -> &PodIdentity {
        &self.id
    }

    /// The spec the engine runs.
    pub fn spec(&self) -> &PodSpec {
        &self.spec
    }

    /// Whether the pod is done: every container stopped for good and the sandbox removed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What [`resumed`](Self::resumed) does after making the engine.
    fn resume(&mut self, now: Timestamp, prior: &PodStatus) {
        // The start time is the pod's, kept across node restarts (`activeDeadlineSeconds`
        // counts from it).
        if let Some(t) = &prior.start_time {
            self.start_time = t.0;
        }
        // A condition whose status does not change keeps its transition time.
        self.status.conditions = prior.conditions.clone();
        let statuses = prior.init_container_statuses.iter().flatten().chain(prior.container_statuses.iter().flatten());
        let mut had = Vec::new();
        for s in statuses {
            let created = s.restart_count > 0
                || s.state.as_ref().is_some_and(|st| st.waiting.is_none())
                || s.last_state.as_ref().is_some_and(|l| l.terminated.is_some());
            if created && self.model.get(&s.name).is_some() {
                let attempts = u32::try_from(s.restart_count).unwrap_or(0) + 1;
                self.records.carry(&s.name, attempts);
                had.push((s, attempts - 1));
            }
        }
        // An ephemeral container never runs again (R23): what it was in the lost sandbox is
        // its end.
        for s in prior.ephemeral_container_statuses.iter().flatten() {
            let created = s.state.as_ref().is_some_and(|st| st.waiting.is_none());
            if created && self.model.get(&s.name).is_some_and(|c| c.role == Role::Ephemeral) {
                self.records.push(Instance {
                    r: ContainerRef::new(s.name.clone(), 0),
                    image: s.image.clone(),
                    id: s.container_id.clone().unwrap_or_default(),
                    state: State::Exited(lost_end(s, now)),
                });
            }
        }
        // A pod being deleted when its sandbox was lost is not run again, whatever its policy.
        let deleted = self.deleted_before.take();
        if deleted.is_none() && (had.is_empty() || self.model.restart_policy != RestartPolicy::Never) {
            self.refresh_status(now);
            return;
        }
        for (s, attempt) in had {
            self.records.push(Instance {
                r: ContainerRef::new(s.name.clone(), attempt),
                image: s.image.clone(),
                id: s.container_id.clone().unwrap_or_default(),
                state: State::Exited(lost_end(s, now)),
            });
        }
        self.out.retain(|a| !matches!(a, Action::CreateSandbox));
        let grace = deleted.flatten().unwrap_or_else(|| self.model.grace_seconds()).max(1);
        self.begin_termination(now, deleted.is_some(), grace);
        self.maybe_finish();
        self.refresh_status(now);
    }

    /// Whether termination (deletion or completion) has begun.
    pub fn is_terminating(&self) -> bool {
        self.terminating.is_some()
    }

    /// The grace of the deletion under way, if the pod is terminating because it was deleted.
    pub fn deletion(&self) -> Option<i64> {
        self.terminating.as_ref().filter(|t| t.deleted).map(|t| t.grace)
    }

    /// Acts on the passing of time: due probes, back-off retries and kill deadlines.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.check_deadline(now);
        if self.sandbox_retry.is_some_and(|t| t <= now) {
            self.sandbox_retry = None;
            if self.sandbox == Sandbox::Creating && self.terminating.is_none() {
                self.out.push_back(Action::CreateSandbox);
            }
        }
        while self.retries.first().is_some_and(|t| *t <= now) {
            self.retries.pop_first();
            self.dirty = true;
        }
        let due: Vec<ContainerRef> =
            self.kills.values().filter(|k| k.deadline.is_some_and(|d| d <= now)).map(|k| k.r.clone()).collect();
        for r in due {
            self.kill_deadline(&r, now);
        }
        self.run_due_probes(now);
        self.drive(now);
        self.refresh_status(now);
    }

    /// Acts on one input at `now`.
    pub fn handle(&mut self, now: Timestamp, input: Input) {
        match input {
            Input::SandboxReady { pod_ip } => {
                if self.sandbox == Sandbox::Creating {
                    self.sandbox = Sandbox::Ready;
                    self.pod_ip = pod_ip;
                    self.dirty = true;
                }
            }
            Input::SandboxFailed { reason, message } => self.on_sandbox_failed(now, &reason, message),
            Input::ImageReady { container, pulled } => self.on_image_ready(&container, pulled),
            Input::ImagePullFailed { container, message } => self.on_pull_failed(now, &container, message),
            Input::Created { container, id } => self.on_created(&container, id),
            Input::StartFailed { container, reason, message } => self.on_start_failed(now, &container, reason, message),
            Input::Started { container } => self.on_started(now, &container),
            Input::Exited { container, exit_code, cause, message } => {
                self.on_exited(now, &container, exit_code, cause, message)
            }
            Input::HookDone { container, hook, result } => self.on_hook_done(now, &container, hook, result),
            Input::ProbeDone { container, probe, outcome } => self.on_probe_done(now, &container, probe, outcome),
            Input::Delete { grace_seconds } => self.on_delete(now, grace_seconds),
            Input::ForceKill => self.on_force_kill(now),
            Input::Evict { message } => self.on_evict(now, message),
            Input::Reject { reason, message } => self.on_reject(now, reason, message),
            Input::UpdateSpec(spec) => {
                self.on_update_spec(*spec);
                // A deadline set or shortened below the pod's age ends it on the update.
                self.check_deadline(now);
            }
        }
        self.drive(now);
        self.refresh_status(now);
    }

    // ----- passes -----

    /// Runs the current pass forward, and new passes while inputs are pending.
    fn drive(&mut self, now: Timestamp) {
        loop {
            if self.finished || self.current.is_some() {
                return;
            }
            if let Some(op) = self.queue.pop_front() {
                self.begin_op(now, op);
                continue;
            }
            if self.terminating.is_some() {
                self.maybe_finish();
                return;
            }
            if !self.dirty || self.sandbox != Sandbox::Ready {
                return;
            }
            self.dirty = false;
            let d = decide(&self.model, &self.records, &self.probes);
            if d.kill_pod {
                self.begin_termination(now, false, self.model.grace_seconds());
                continue;
            }
            self.queue.extend(d.kills.into_iter().map(|k| Op::Kill { r: k.r, reason: k.reason, message: k.message }));
            // The back-off reference is taken from the records as the pass began (R26).
            let start = |c: &ContainerModel| Op::Start {
                name: c.name.clone(),
                backoff_since: self.records.last_finished(&c.name),
            };
            let starts: Vec<Op> = d
                .ephemeral_starts
                .iter()
                .map(|i| start(&self.model.ephemeral[*i]))
                .chain(d.init_starts.iter().map(|i| start(&self.model.init[*i])))
                .chain(d.regular_starts.iter().map(|i| start(&self.model.regular[*i])))
                .collect();
            self.queue.extend(starts);
        }
    }

    fn begin_op(&mut self, now: Timestamp, op: Op) {
        match op {
            Op::Kill { r, reason, message } => {
                if self.records.get(&r).is_some_and(Instance::running) {
                    let grace = self.single_kill_grace(&r.name, reason);
                    self.start_kill(now, r.clone(), grace, false, Some(message));
                    self.current = Some(Current::Killing(r));
                }
            }
            Op::Start { name, backoff_since } => self.begin_start(now, &name, backoff_since),
        }
    }

    /// R48: the grace of a single-container kill.
    fn single_kill_grace(&self, name: &str, reason: KillReason) -> i64 {
        let probe = match reason {
            KillReason::LivenessProbe => Some(ProbeKind::Liveness),
            KillReason::StartupProbe => Some(ProbeKind::Startup),
            _ => None,
        };
        probe
            .and_then(|k| self.model.get(name).and_then(|c| c.probe(k)).and_then(|p| p.termination_grace))
            .unwrap_or_else(|| self.model.grace_seconds())
    }

    fn begin_start(&mut self, now: Timestamp, name: &str, backoff_since: Option<Timestamp>) {
        let Some(c) = self.model.get(name).cloned() else { return };
        let key = self.backoff_key(&c);
        if let Some(since) = backoff_since {
            if let Some(left) = self.crash_backoff.remaining(&key, since, now) {
                let total = self.crash_backoff.current(&key).unwrap_or(left);
                self.waiting.insert(
                    c.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: format!(
                            "back-off {} restarting failed container={} pod={}_{}({})",
                            go_duration(total),
                            c.name,
                            self.id.name,
                            self.id.namespace,
                            self.id.uid
                        ),
                    },
                );
                self.record(
                    EventType::Warning,
                    "BackOff",
                    format!(
                        "Back-off restarting failed container {} in pod {}_{}({})",
                        c.name, self.id.name, self.id.namespace, self.id.uid
                    ),
                    Some(&c),
                );
                self.retries.insert(after(now, left));
                self.start_refused(&c);
                return;
            }
            self.crash_backoff.next(&key, since, now);
        }
        let image = c.image().to_string();
        if let Some(failed_at) = self.pull_failed_at.get(&image).copied()
            && let Some(left) = self.pull_backoff.remaining(&image, failed_at, now)
        {
            self.waiting.insert(
                c.name.clone(),
                Waiting { reason: "ImagePullBackOff".into(), message: format!("Back-off pulling image \"{image}\"") },
            );
            self.record(EventType::Normal, "BackOff", format!("Back-off pulling image \"{image}\""), Some(&c));
            self.retries.insert(after(now, left));
            self.start_refused(&c);
            return;
        }
        let r = ContainerRef::new(c.name.clone(), self.records.next_attempt(&c.name));
        self.starting_image.insert(r.clone(), image);
        self.out.push_back(Action::StartContainer {
            container: r.clone(),
            spec: Box::new(c.spec.clone()),
            init: matches!(c.role, Role::Init | Role::Sidecar),
            target: c.target.clone(),
        });
        self.current = Some(Current::Starting(r));
    }

    /// A start that did not happen: a regular init container ends the pass (R13), others let
    /// it go on with the next start.
    fn start_refused(&mut self, c: &ContainerModel) {
        if c.role == Role::Init {
            self.queue.clear();
        }
    }

    fn start_done(&mut self, r: &ContainerRef, ok: bool) {
        if self
            .current
            .as_ref()
            .is_some_and(|cur| matches!(cur, Current::Starting(x) | Current::PostStartFailed(x) if x == r))
        {
            self.current = None;
            if !ok && let Some(c) = self.model.get(&r.name).cloned() {
                self.start_refused(&c);
            }
        }
    }

    /// The image instance `r` runs: the one its start asked for.
    fn instance_image(&self, r: &ContainerRef, c: &ContainerModel) -> String {
        self.starting_image.get(r).cloned().unwrap_or_else(|| c.image().to_string())
    }

    /// Whether an input about a start concerns the start in flight (duplicates and late
    /// reports about other starts change nothing).
    fn is_current_start(&self, r: &ContainerRef) -> bool {
        self.current == Some(Current::Starting(r.clone()))
    }

    fn backoff_key(&self, c: &ContainerModel) -> String {
        format!("{}_{}_{}_{}_{}", self.id.name, self.id.namespace, self.id.uid, c.name, c.image())
    }

    // ----- runtime inputs -----

    fn on_image_ready(&mut self, r: &ContainerRef, pulled: bool) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let image = c.image().to_string();
        self.pull_failed_at.remove(&image);
        let message = if pulled {
            format!("Successfully pulled image \"{image}\"")
        } else {
            format!("Container image \"{image}\" already present on machine")
        };
        self.record(EventType::Normal, "Pulled", message, Some(&c));
    }

    fn on_pull_failed(&mut self, now: Timestamp, r: &ContainerRef, message: String) {
        if self.cancelled.remove(r) {
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if !self.is_current_start(r) {
            return;
        }
        let image = c.image().to_string();
        self.record(EventType::Warning, "Failed", format!("Failed to pull image \"{image}\": {message}"), Some(&c));
        self.record(EventType::Warning, "Failed", "Error: ErrImagePull".into(), Some(&c));
        self.waiting.insert(c.name.clone(), Waiting { reason: "ErrImagePull".into(), message });
        let since = self.pull_failed_at.get(&image).copied().unwrap_or(now);
        self.pull_backoff.next(&image, since, now);
        self.pull_failed_at.insert(image, now);
        // The kubelet re-syncs after a failed start; here that happens at once.
        self.dirty = true;
        self.start_done(r, false);
    }

    fn on_created(&mut self, r: &ContainerRef, id: String) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if self.records.get(r).is_some() {
            return;
        }
        let image = self.instance_image(r, &c);
        self.records.push(Instance { r: r.clone(), image, id, state: State::Created });
        self.record(EventType::Normal, "Created", format!("Created container: {}", c.name), Some(&c));
    }

    fn on_start_failed(&mut self, now: Timestamp, r: &ContainerRef, reason: String, message: String) {
        if self.cancelled.remove(r) {
            // An abandoned start that never ran: nothing to show, nothing to retry.
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if !self.is_current_start(r) {
            return;
        }
        self.record(EventType::Warning, "Failed", format!("Error: {message}"), Some(&c));
        match self.records.get_mut(r) {
            // A created container that failed to start is reported exited with code 128, so the
            // crash-loop back-off applies to it as to any exit.
            Some(inst) => {
                inst.state = State::Exited(Exit {
                    started_at: None,
                    finished_at: now,
                    exit_code: 128,
                    cause: ExitCause::StartError,
                    message: Some(message),
                });
                self.waiting.remove(&r.name);
                // Exited: the next pass restarts it under the crash-loop back-off.
                self.dirty = true;
            }
            None => {
                self.waiting.insert(c.name.clone(), Waiting { reason, message });
                let key = format!("create/{}", self.backoff_key(&c));
                let since = now;
                self.crash_backoff.next(&key, since, now);
                let wait = self.crash_backoff.current(&key).unwrap_or(CRASH_LOOP_INITIAL);
                // Nothing exited, so the crash-loop back-off cannot hold the retry: the timer does.
                self.retries.insert(after(now, wait));
            }
        }
        self.start_done(r, false);
    }

    fn on_started(&mut self, now: Timestamp, r: &ContainerRef) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        if self.records.get(r).is_none() {
            let image = self.instance_image(r, &c);
            self.records.push(Instance { r: r.clone(), image, id: String::new(), state: State::Created });
        }
        if let Some(inst) = self.records.get_mut(r) {
            if inst.state != State::Created {
                return;
            }
            inst.state = State::Running { started_at: now };
        }
        self.waiting.remove(&r.name);
        self.starting_image.remove(r);
        if self.cancelled.remove(r) {
            // Its start was abandoned when the pod began terminating, but the runtime had already
            // started it: it is stopped like any running container of the terminating pod (R42),
            // with the pod's grace; it was not running when the kill began, so it waits for no
            // turn (R43).
            let grace = self.terminating.as_ref().map_or(MIN_GRACE_SECONDS, |t| t.grace);
            self.start_kill(now, r.clone(), grace, false, None);
            return;
        }
        self.record(EventType::Normal, "Started", format!("Started container {}", c.name), Some(&c));
        for spec in &c.probes {
            let mut w = Worker::new(spec.clone());
            w.next_at = Some(after(now, spec.initial_delay));
            if self.terminating.is_some() && spec.kind != ProbeKind::Readiness {
                w.stopped = true;
            }
            self.probes.insert((r.clone(), spec.kind), w);
        }
        self.dirty = true;
        if let Some(term) = &self.terminating {
            // Started while the pod terminates: stop it at once with what is left of the grace.
            let grace = term.grace;
            self.start_kill(now, r.clone(), grace, false, None);
            self.start_done(r, true);
            return;
        }
        if self.current == Some(Current::Starting(r.clone())) {
            if c.post_start {
                self.out.push_back(Action::RunHook { container: r.clone(), hook: Hook::PostStart, timeout: None });
            } else {
                self.start_done(r, true);
            }
        }
        self.run_due_probes(now);
    }

    fn on_exited(
        &mut self,
        now: Timestamp,
        r: &ContainerRef,
        exit_code: i32,
        cause: ExitCause,
        message: Option<String>,
    ) {
        if self.records.get(r).is_none() {
            // An exit reported before the creation: record the instance so it is not lost.
            let Some(c) = self.model.get(&r.name).cloned() else { return };
            let image = self.instance_image(r, &c);
            self.records.push(Instance { r: r.clone(), image, id: String::new(), state: State::Created });
        }
        self.starting_image.remove(r);
        self.cancelled.remove(r);
        let Some(inst) = self.records.get_mut(r) else { return };
        if inst.exit().is_some() {
            return;
        }
        let started_at = match inst.state {
            State::Running { started_at } => Some(started_at),
            _ => None,
        };
        inst.state = State::Exited(Exit { started_at, finished_at: now, exit_code, cause, message });
        self.probes.retain(|(pr, _), _| pr != r);
        self.dirty = true;
        self.kills.remove(r);
        // Whether it was being killed or died on its own, it no longer holds anyone's turn (R46).
        if let Some(term) = &mut self.terminating {
            term.ordering.terminated(&r.name);
            self.advance_waiting_kills(now);
        }
        match self.current.clone() {
            Some(Current::Killing(x)) if x == *r => self.current = None,
            Some(Current::PostStartFailed(x)) if x == *r => self.start_done(r, false),
            Some(Current::Starting(x)) if x == *r => self.start_done(r, false),
            _ => {}
        }
    }

    fn on_hook_done(&mut self, now: Timestamp, r: &ContainerRef, hook: Hook, result: Result<(), String>) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        match hook {
            Hook::PostStart => {
                if self.current != Some(Current::Starting(r.clone())) {
                    return;
                }
                match result {
                    Ok(()) => self.start_done(r, true),
                    Err(_) => {
                        self.record(EventType::Warning, "FailedPostStartHook", "PostStartHook failed".into(), Some(&c));
                        if self.records.get(r).is_some_and(Instance::running) {
                            let grace = self.model.grace_seconds();
                            self.start_kill(now, r.clone(), grace, false, Some("FailedPostStartHook".into()));
                            self.current = Some(Current::PostStartFailed(r.clone()));
                        } else {
                            self.start_done(r, false);
                        }
                    }
                }
            }
            Hook::PreStop => {
                if result.is_err() {
                    self.record(EventType::Warning, "FailedPreStopHook", "PreStopHook failed".into(), Some(&c));
                }
                if self.kills.get(r).is_some_and(|k| k.stage == Stage::PreStop) {
                    self.after_pre_stop(now, r);
                }
            }
        }
    }

    // ----- probes -----

    fn run_due_probes(&mut self, now: Timestamp) {
        let terminating = self.terminating.is_some();
        let keys: Vec<(ContainerRef, ProbeKind)> = self.probes.keys().cloned().collect();
        for key in keys {
            let started = self.is_started(&key.0);
            let running = self.records.get(&key.0).is_some_and(Instance::running);
            let Some(w) = self.probes.get_mut(&key) else { continue };
            if terminating && key.1 != ProbeKind::Readiness {
                // R40: liveness and startup stop when termination begins.
                w.stopped = true;
                continue;
            }
            if !w.is_due_candidate() || w.next_at.is_none_or(|t| t > now) || !running {
                continue;
            }
            let eligible = match key.1 {
                ProbeKind::Startup => !started,
                _ => started,
            };
            if !eligible {
                // Liveness and readiness wait for `started`; startup stops once started (R31).
                w.next_at = None;
                continue;
            }
            w.in_flight = true;
            w.next_at = Some(after(now, w.spec.period));
            let timeout = w.spec.timeout;
            self.out.push_back(Action::RunProbe { container: key.0.clone(), probe: key.1, timeout });
        }
    }

    pub(crate) fn is_started(&self, r: &ContainerRef) -> bool {
        let Some(inst) = self.records.get(r) else { return false };
        if !inst.running() {
            return false;
        }
        match self.probes.get(&(r.clone(), ProbeKind::Startup)) {
            Some(w) => w.cached == Cached::Success,
            None => self.model.get(&r.name).is_none_or(|c| c.probe(ProbeKind::Startup).is_none()),
        }
    }

    fn on_probe_done(&mut self, now: Timestamp, r: &ContainerRef, kind: ProbeKind, outcome: ProbeOutcome) {
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let Some(w) = self.probes.get_mut(&(r.clone(), kind)) else { return };
        w.in_flight = false;
        if w.stopped || w.on_hold {
            return;
        }
        let (changed, failure) = match &outcome {
            ProbeOutcome::Success | ProbeOutcome::Warning(_) => (w.record(true), None),
            ProbeOutcome::Failure(msg) => (w.record(false), Some(msg.clone())),
            ProbeOutcome::Unknown => (false, None),
        };
        let now_cached = w.cached;
        if let ProbeOutcome::Warning(msg) = outcome {
            self.record(EventType::Warning, "ProbeWarning", format!("{} probe warning: {msg}", kind.title()), Some(&c));
        }
        if let Some(msg) = failure {
            self.record(EventType::Warning, "Unhealthy", format!("{} probe failed: {msg}", kind.title()), Some(&c));
        }
        if !changed {
            return;
        }
        match (kind, now_cached) {
            (ProbeKind::Startup, Cached::Success) => {
                // Started: liveness and readiness may run now; readiness at once (R31).
                let started_at = self.records.get(r).and_then(|i| match i.state {
                    State::Running { started_at } => Some(started_at),
                    _ => None,
                });
                for other in [ProbeKind::Liveness, ProbeKind::Readiness] {
                    if let Some(o) = self.probes.get_mut(&(r.clone(), other)) {
                        // Readiness is probed at once; liveness at its next period.
                        let next = if other == ProbeKind::Readiness { now } else { after(now, o.spec.period) };
                        let earliest = started_at.map_or(next, |s| after(s, o.spec.initial_delay));
                        o.next_at = Some(earliest.max(next));
                    }
                }
                self.dirty = true;
                self.run_due_probes(now);
            }
            (ProbeKind::Startup | ProbeKind::Liveness, Cached::Failure) => self.dirty = true,
            _ => {}
        }
    }

    // ----- killing -----

    fn start_kill(&mut self, now: Timestamp, r: ContainerRef, grace: i64, ordered: bool, message: Option<String>) {
        if self.kills.contains_key(&r) {
            return;
        }
        let Some(c) = self.model.get(&r.name).cloned() else { return };
        let message = message.unwrap_or_else(|| format!("Stopping container {}", c.name));
        self.record(EventType::Normal, "Killing", message, Some(&c));
        let task = KillTask { r: r.clone(), ordered, grace, stage: Stage::PreStop, since: now, deadline: None };
        self.kills.insert(r.clone(), task);
        if c.pre_stop && grace > 0 {
            let deadline = after_secs(now, grace);
            if let Some(t) = self.kills.get_mut(&r) {
                t.deadline = Some(deadline);
            }
            self.out.push_back(Action::RunHook {
                container: r,
                hook: Hook::PreStop,
                timeout: Some(Duration::from_secs(grace as u64)),
            });
        } else {
            self.after_pre_stop(now, &r);
        }
    }

    /// R42 steps 1→2: the hook is done (or timed out); wait for the turn if ordered.
    fn after_pre_stop(&mut self, now: Timestamp, r: &ContainerRef) {
        let turn = match &self.terminating {
            Some(t) => t.ordering.turn_has_come(&self.model, &r.name),
            None => true,
        };
        let has_sidecar = self.model.has_sidecar();
        let Some(task) = self.kills.get_mut(r) else { return };
        if task.stage == Stage::PreStop {
            task.grace -= whole_seconds(task.since, now);
        }
        if task.ordered && has_sidecar && task.grace > 0 && !turn {
            task.stage = Stage::WaitTurn;
            task.since = now;
            task.deadline = Some(after_secs(now, task.grace));
            return;
        }
        self.send_stop(now, r);
    }

    /// R42 steps 3–4: the stop signal, then SIGKILL after at least 2 s.
    fn send_stop(&mut self, now: Timestamp, r: &ContainerRef) {
        let Some(task) = self.kills.get_mut(r) else { return };
        if task.stage == Stage::WaitTurn {
            task.grace -= whole_seconds(task.since, now);
        }
        let grace = task.grace.max(MIN_GRACE_SECONDS);
        task.stage = Stage::Stopping;
        task.since = now;
        task.deadline = Some(after_secs(now, grace));
        self.out.push_back(Action::Signal { container: r.clone(), signal: Signal::Stop });
    }

    fn kill_deadline(&mut self, r: &ContainerRef, now: Timestamp) {
        let Some(task) = self.kills.get(r) else { return };
        match task.stage {
            Stage::PreStop => self.after_pre_stop(now, r),
            Stage::WaitTurn => self.send_stop(now, r),
            Stage::Stopping => {
                if let Some(task) = self.kills.get_mut(r) {
                    task.stage = Stage::Killed;
                    task.deadline = None;
                }
                self.out.push_back(Action::Signal { container: r.clone(), signal: Signal::Kill });
            }
            Stage::Killed => {}
        }
    }

    fn advance_waiting_kills(&mut self, now: Timestamp) {
        let Some(term) = &self.terminating else { return };
        let ready: Vec<ContainerRef> = self
            .kills
            .values()
            .filter(|k| k.stage == Stage::WaitTurn && term.ordering.turn_has_come(&self.model, &k.r.name))
            .map(|k| k.r.clone())
            .collect();
        for r in ready {
            self.send_stop(now, &r);
        }
    }

    /// Begins pod termination (R36 completion, R39–R47 deletion).
    fn begin_termination(&mut self, now: Timestamp, deleted: bool, grace: i64) {
        // The pass in flight is abandoned, as the kubelet cancels its sync (R41).
        self.queue.clear();
        if let Some(Current::Starting(r)) = self.current.take()
            && !self.records.get(&r).is_some_and(Instance::running)
        {
            self.cancelled.insert(r.clone());
            self.starting_image.remove(&r);
            self.out.push_back(Action::CancelStart { container: r });
        }
        let running: Vec<ContainerRef> = self.records.running().map(|i| i.r.clone()).collect();
        let ordering = Ordering::new(running.iter().map(|r| r.name.clone()));
        self.terminating = Some(Termination { deleted, grace, ordering });
        for w in self.probes.values_mut() {
            if w.spec.kind != ProbeKind::Readiness {
                // R40: a worker that sees the deletion records Success and stops.
                if deleted {
                    w.cached = Cached::Success;
                }
                w.stopped = true;
            }
        }
        // Kills already under way (a probe failure, a changed image) join the termination with
        // its grace if that is shorter (R39).
        self.cap_kills(now, grace);
        let mut ordered: Vec<ContainerRef> = running;
        // Kill tasks start together; regular containers first so their events come first.
        ordered.sort_by_key(|r| match self.model.get(&r.name).map(|c| c.role) {
            Some(Role::Regular) => 0,
            _ => 1,
        });
        for r in ordered {
            self.start_kill(now, r, grace, true, None);
        }
        self.maybe_finish();
    }

    /// Caps every kill under way to a grace of `grace` seconds from `now`. A task's remaining
    /// grace counts from the start of its stage, so the time already spent there is added.
    fn cap_kills(&mut self, now: Timestamp, grace: i64) {
        for task in self.kills.values_mut() {
            match task.stage {
                Stage::PreStop | Stage::WaitTurn => {
                    task.grace = task.grace.min(whole_seconds(task.since, now).saturating_add(grace));
                    task.deadline = task.deadline.map(|d| d.min(after_secs(now, grace)));
                }
                Stage::Stopping => {
                    task.deadline = task.deadline.map(|d| d.min(after_secs(now, grace.max(MIN_GRACE_SECONDS))));
                }
                Stage::Killed => {}
            }
        }
    }

    fn maybe_finish(&mut self) {
        if self.terminating.is_none() || self.finished || self.current.is_some() {
            return;
        }
        // An abandoned start still owes its outcome: the runtime may have started it anyway.
        if self.records.running().next().is_some() || !self.kills.is_empty() || !self.cancelled.is_empty() {
            return;
        }
        self.finished = true;
        self.sandbox = Sandbox::Removed;
        self.sandbox_retry = None;
        self.probes.clear();
        self.retries.clear();
        self.out.push_back(Action::RemoveSandbox);
    }

    fn on_sandbox_failed(&mut self, now: Timestamp, reason: &str, message: String) {
        if self.sandbox != Sandbox::Creating {
            return;
        }
        self.record(EventType::Warning, reason, message, None);
        if self.terminating.is_none() {
            self.sandbox_backoff.next("sandbox", now, now);
            let wait = self.sandbox_backoff.current("sandbox").unwrap_or(CRASH_LOOP_INITIAL);
            self.sandbox_retry = Some(after(now, wait));
        }
    }

    fn on_delete(&mut self, now: Timestamp, grace_seconds: Option<i64>) {
        let grace = grace_seconds.unwrap_or_else(|| self.model.grace_seconds()).max(1);
        match &mut self.terminating {
            Some(term) => {
                term.deleted = true;
                if grace < term.grace {
                    // A grace can only shrink (R39): pull every deadline in.
                    term.grace = grace;
                    self.cap_kills(now, grace);
                }
            }
            None => self.begin_termination(now, true, grace),
        }
    }

    fn on_evict(&mut self, now: Timestamp, message: String) {
        if self.finished {
            return;
        }
        match &mut self.terminating {
            // A pod already stopping keeps its outcome; the eviction only shortens its grace.
            Some(term) => {
                if EVICTION_GRACE_SECONDS < term.grace {
                    term.grace = EVICTION_GRACE_SECONDS;
                    self.cap_kills(now, EVICTION_GRACE_SECONDS);
                }
            }
            None => {
                self.record(EventType::Warning, "Evicted", message.clone(), None);
                self.verdict = Some(("Evicted".into(), message));
                self.begin_termination(now, false, EVICTION_GRACE_SECONDS);
            }
        }
    }

    fn on_reject(&mut self, now: Timestamp, reason: String, message: String) {
        let before_sandbox = self.sandbox == Sandbox::Creating && self.records.running().next().is_none();
        if self.finished || self.terminating.is_some() || !before_sandbox {
            return;
        }
        self.record(EventType::Warning, &reason, message.clone(), None);
        self.verdict = Some((reason, format!("Pod was rejected: {message}")));
        self.out.retain(|a| *a != Action::CreateSandbox);
        self.begin_termination(now, false, 0);
    }

    /// The kubelet's active deadline handler: past the deadline, a Normal event, and the pod
    /// ends Failed after a kill with its own grace.
    fn check_deadline(&mut self, now: Timestamp) {
        if self.active_deadline().is_some_and(|t| t <= now) && self.terminating.is_none() && !self.finished {
            let message = "Pod was active on the node longer than the specified deadline".to_string();
            self.record(EventType::Normal, "DeadlineExceeded", message.clone(), None);
            self.verdict = Some(("DeadlineExceeded".into(), message));
            self.begin_termination(now, false, self.model.grace_seconds());
        }
    }

    /// When `activeDeadlineSeconds` runs out, counted from the pod's start time.
    fn active_deadline(&self) -> Option<Timestamp> {
        let seconds = self.spec.active_deadline_seconds.filter(|s| *s > 0)?;
        self.start_time.checked_add(jiff::SignedDuration::from_secs(seconds)).ok()
    }

    fn on_force_kill(&mut self, now: Timestamp) {
        if self.terminating.is_none() {
            self.begin_termination(now, true, 1);
        }
        let running: Vec<ContainerRef> = self.records.running().map(|i| i.r.clone()).collect();
        for r in running {
            if let Some(task) = self.kills.get_mut(&r) {
                if task.stage == Stage::Killed {
                    continue;
                }
                task.stage = Stage::Killed;
                task.deadline = None;
            }
            self.out.push_back(Action::Signal { container: r, signal: Signal::Kill });
        }
    }

    fn on_update_spec(&mut self, spec: PodSpec) {
        // Only images and the active deadline are mutable on a running pod (R11). The deadline is
        // read from the spec when it is due, so it needs no new model.
        self.spec.active_deadline_seconds = spec.active_deadline_seconds;
        let mut merged = self.spec.clone();
        let images = |list: &Option<Vec<k8s_openapi::api::core::v1::Container>>| {
            list.iter().flatten().map(|c| (c.name.clone(), c.image.clone())).collect::<HashMap<_, _>>()
        };
        let (init, regular) = (images(&spec.init_containers), images(&Some(spec.containers.clone())));
        for c in merged.init_containers.iter_mut().flatten() {
            if let Some(img) = init.get(&c.name) {
                c.image = img.clone();
            }
        }
        for c in &mut merged.containers {
            if let Some(img) = regular.get(&c.name) {
                c.image = img.clone();
            }
        }
        // Ephemeral containers may be added, never changed or removed (R23); a new one starts on
        // the next pass.
        for e in spec.ephemeral_containers.iter().flatten() {
            let list = merged.ephemeral_containers.get_or_insert_with(Vec::new);
            if !list.iter().any(|x| x.name == e.name) {
                list.push(e.clone());
            }
        }
        if merged == self.spec {
            return;
        }
        self.spec = merged;
        self.model = PodModel::new(&self.spec);
        // During termination nothing restarts, so a changed image changes nothing (R72).
        self.dirty = self.terminating.is_none();
    }

    // ----- helpers -----

    fn record(&mut self, kind: EventType, reason: &str, message: String, c: Option<&ContainerModel>) {
        self.out.push_back(Action::Record(PodEvent {
            kind,
            reason: reason.to_string(),
            message,
            container: c.map(ContainerModel::event_container),
        }));
    }

    fn refresh_status(&mut self, now: Timestamp) {
        // The kubelet's sync is inside the container's start while postStart runs: it publishes
        // nothing new until the hook returns.
        if self.in_post_start() {
            return;
        }
        let status = status::build(self, now);
        self.status = status;
    }

    /// Whether the pass waits on a started container's postStart hook.
    fn in_post_start(&self) -> bool {
        matches!(&self.current, Some(Current::Starting(r))
            if self.records.get(r).is_some_and(Instance::running)
                && self.model.get(&r.name).is_some_and(|c| c.post_start))
    }

    /// Whether the sandbox is up (condition `PodReadyToStartContainers`).
    pub(crate) fn sandbox_ready(&self) -> bool {
        self.sandbox == Sandbox::Ready
    }
}

/// How an instance reported in `s` ended when its sandbox was lost: as reported if it had
/// ended, else unknown (137, `ContainerStatusUnknown`).
fn lost_end(s: &k8s_openapi::api::core::v1::ContainerStatus, now: Timestamp) -> Exit {
    match s.state.as_ref().and_then(|st| st.terminated.as_ref()) {
        Some(t) => adopt::exit_from_status(t, now),
        None => Exit {
            started_at: s.state.as_ref().and_then(|st| st.running.as_ref()?.started_at.as_ref()).map(|x| x.0),
            finished_at: now,
            exit_code: 137,
            cause: ExitCause::Lost,
            message: Some("The container could not be located when the pod was terminated".into()),
        },
    }
}

impl Worker {
    /// Whether the worker may still be scheduled.
    fn is_due_candidate(&self) -> bool {
        !self.in_flight && !self.on_hold && !self.stopped
    }
}
