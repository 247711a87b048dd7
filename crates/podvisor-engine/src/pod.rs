//! [`PodEngine`]: one pod's lifecycle as a sans-IO state machine.
//!
//! The engine runs the kubelet's sync passes: on every input it computes what to do with
//! [`decide`], then executes the pass step by step as the kubelet's `SyncPod` does (kills one by
//! one, then starts in spec order, each start waiting for its postStart hook). Unlike the
//! kubelet, a pass runs the moment an input arrives: there is no relist interval.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use jiff::Timestamp;

use crate::clock::{Instant, Now};
use k8s_openapi::api::core::v1::{PodSpec, PodStatus};

use crate::backoff::{Backoff, CRASH_LOOP_INITIAL, CRASH_LOOP_MAX};
use crate::decide::{KillReason, ProbeResults};
use crate::io::{Action, ContainerRef, EventType, ExitCause, Found, Input, PodEvent, ProbeKind};
use crate::kill::{KillTask, Ordering};
use crate::model::{ContainerModel, PodModel, RestartPolicy, Role};
use crate::probe::{Cached, Worker};
use crate::record::{Exit, Instance, Records, State};

mod adopt;
mod inputs;
mod killing;
mod passes;
mod probes;
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
    Start { name: String, backoff_since: Option<Instant> },
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

/// A wake-up the engine asked for, named by what it is for. Kill deadlines, probe periods and
/// the active deadline are kept with what they time (a kill, a probe worker, the spec).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// The sandbox is asked for again after a failed creation.
    SandboxRetry,
    /// A container held back by the crash-loop back-off (R26) may start.
    CrashLoopBackOff(String),
    /// A container whose image could not be pulled may try again.
    ImagePullBackOff(String),
    /// A container whose creation failed is created again.
    CreateRetry(String),
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
    /// `start_time` on the monotonic clock: `activeDeadlineSeconds` is measured from it.
    pub(crate) start_mono: Instant,
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
    pull_failed_at: HashMap<String, Instant>,
    sandbox_backoff: Backoff,
    /// The named wake-ups pending.
    timers: BTreeMap<Timer, Instant>,
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
    /// The conditions others set on the pod, by type: what readiness gates wait for (R61).
    pub(crate) others: BTreeMap<String, String>,
}

/// The conditions of `spec`'s readiness gates in a status found in the API (set there by
/// others): the engine's first status already waits on them as they are (R61).
fn gate_conditions(spec: &PodSpec, status: &PodStatus) -> BTreeMap<String, String> {
    let gates: Vec<&str> = spec.readiness_gates.iter().flatten().map(|g| g.condition_type.as_str()).collect();
    let conditions = status.conditions.iter().flatten();
    conditions.filter(|c| gates.contains(&c.type_.as_str())).map(|c| (c.type_.clone(), c.status.clone())).collect()
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
    pub fn new(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Now) -> Self {
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
    pub fn resumed(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Now, prior: Prior<'_>) -> Self {
        let mut engine = Self::made(id, spec, node, now);
        engine.deleted_before = prior.deleting;
        engine.others = gate_conditions(&engine.spec, prior.status);
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
        now: Now,
        prior: Prior<'_>,
        found: Vec<Found>,
    ) -> Self {
        let mut engine = Self::made(id, spec, node, now);
        engine.deleted_before = prior.deleting;
        engine.others = gate_conditions(&engine.spec, prior.status);
        engine.adopt(now, prior.status, found);
        engine
    }

    /// The engine before its first status: a fresh pod asking for its sandbox.
    fn made(id: PodIdentity, spec: PodSpec, node: &NodeFacts, now: Now) -> Self {
        let mut engine = PodEngine {
            id,
            model: PodModel::new(&spec),
            spec,
            start_time: now.wall,
            start_mono: now.mono,
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
            timers: BTreeMap::new(),
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
            others: BTreeMap::new(),
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
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.finished {
            return None;
        }
        let timer = self.timers.values().min().copied();
        let probe = self.probes.values().filter(|w| w.is_due_candidate()).filter_map(|w| w.next_at).min();
        let kill = self.kills.values().filter_map(|k| k.deadline).min();
        let deadline = self.active_deadline().filter(|_| self.terminating.is_none());
        [timer, probe, kill, deadline].into_iter().flatten().min()
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
    fn resume(&mut self, now: Now, prior: &PodStatus) {
        // The start time is the pod's, kept across node restarts (`activeDeadlineSeconds`
        // counts from it).
        if let Some(t) = &prior.start_time {
            self.start_time = t.0;
            self.start_mono = now.mono_of(t.0);
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

    /// When the instance `r`, sent its stop signal, is killed if it has not exited: the end of
    /// its grace period (`None` when it is not waiting out a stop signal).
    pub fn stop_deadline(&self, r: &ContainerRef) -> Option<Instant> {
        self.kills.get(r).filter(|t| t.stage == crate::kill::Stage::Stopping).and_then(|t| t.deadline)
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
    pub fn handle_timeout(&mut self, now: Now) {
        self.check_deadline(now);
        let due: Vec<Timer> = self.timers.iter().filter(|(_, at)| **at <= now.mono).map(|(t, _)| t.clone()).collect();
        for timer in due {
            self.timers.remove(&timer);
            match timer {
                Timer::SandboxRetry => {
                    if self.sandbox == Sandbox::Creating && self.terminating.is_none() {
                        self.out.push_back(Action::CreateSandbox);
                    }
                }
                // A held-back start: the next pass decides it again.
                Timer::CrashLoopBackOff(_) | Timer::ImagePullBackOff(_) | Timer::CreateRetry(_) => self.dirty = true,
            }
        }
        let due: Vec<ContainerRef> =
            self.kills.values().filter(|k| k.deadline.is_some_and(|d| d <= now.mono)).map(|k| k.r.clone()).collect();
        for r in due {
            self.kill_deadline(&r, now);
        }
        self.run_due_probes(now);
        self.drive(now);
        self.refresh_status(now);
    }

    /// Acts on one input at `now`.
    pub fn handle(&mut self, now: Now, input: Input) {
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
            Input::Conditions(conditions) => self.others = conditions,
        }
        self.drive(now);
        self.refresh_status(now);
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

    fn refresh_status(&mut self, now: Now) {
        // The kubelet's sync is inside the container's start while postStart runs: it publishes
        // nothing new until the hook returns.
        if self.in_post_start() {
            return;
        }
        let status = status::build(self, now.wall);
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
fn lost_end(s: &k8s_openapi::api::core::v1::ContainerStatus, now: Now) -> Exit {
    match s.state.as_ref().and_then(|st| st.terminated.as_ref()) {
        Some(t) => adopt::exit_from_status(t, now),
        None => Exit {
            started_at: s.state.as_ref().and_then(|st| st.running.as_ref()?.started_at.as_ref()).map(|x| x.0),
            finished_at: now.wall,
            ended: now.mono,
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
