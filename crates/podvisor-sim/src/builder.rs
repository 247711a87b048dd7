//! A compact way to write a pod and its containers' behaviour together, in the shape of the
//! e2e scenario catalogue.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, ExecAction, Lifecycle, LifecycleHandler, PodSpec, Probe};
use podvisor_engine::ProbeKind;

use crate::behaviour::{Behaviour, HookScript, ProbeScript};
use crate::sim::Sim;

/// Seconds as a [`Duration`].
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Probe timing as in a manifest; unset fields take the API defaults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    /// `initialDelaySeconds`.
    pub initial_delay: Option<i32>,
    /// `periodSeconds`.
    pub period: Option<i32>,
    /// `timeoutSeconds`.
    pub timeout: Option<i32>,
    /// `failureThreshold`.
    pub failure_threshold: Option<i32>,
    /// `successThreshold`.
    pub success_threshold: Option<i32>,
    /// Probe-level `terminationGracePeriodSeconds`.
    pub termination_grace: Option<i64>,
}

/// One container: its API spec and its simulated behaviour.
#[derive(Debug, Clone)]
pub struct Ctr {
    spec: Container,
    behaviour: Vec<Behaviour>,
}

impl Ctr {
    /// A container that runs forever and exits 0 at once on SIGTERM.
    pub fn new(name: &str) -> Self {
        let spec = Container { name: name.into(), image: Some("busybox:1.36".into()), ..Default::default() };
        Ctr { spec, behaviour: vec![Behaviour::default()] }
    }

    fn b(&mut self) -> &mut Behaviour {
        let last = self.behaviour.len() - 1;
        &mut self.behaviour[last]
    }

    /// Sleeps this long before logging `Started` (the e2e `startDelay`).
    pub fn start_delay(mut self, s: u64) -> Self {
        self.b().start_delay = secs(s);
        self
    }

    /// Exits this long after `Started` (the e2e `run`).
    pub fn run(mut self, s: u64) -> Self {
        self.b().run = Some(secs(s));
        self
    }

    /// Exits with this code (normally and from the SIGTERM handler).
    pub fn exit(mut self, code: i32) -> Self {
        self.b().exit_code = code;
        self
    }

    /// Traps SIGTERM and exits this long after it.
    pub fn term(mut self, s: u64) -> Self {
        self.b().term = Some(secs(s));
        self
    }

    /// Ignores SIGTERM, like a shell as PID 1: only SIGKILL ends it.
    pub fn ignores_term(mut self) -> Self {
        self.b().term = None;
        self
    }

    /// The runtime takes this long to start the process.
    pub fn runtime_start(mut self, d: Duration) -> Self {
        self.b().runtime_start = d;
        self
    }

    /// The runtime fails to create it (`CreateContainerError`).
    pub fn create_fails(mut self) -> Self {
        self.b().create_fails = true;
        self
    }

    /// The runtime creates it but fails to start it (`StartError`, exit 128).
    pub fn start_fails(mut self) -> Self {
        self.b().start_fails = true;
        self
    }

    /// Gets OOM-killed this long after starting.
    pub fn oom_after(mut self, s: u64) -> Self {
        self.b().oom_after = Some(secs(s));
        self
    }

    /// Sets the container's image.
    pub fn image(mut self, image: &str) -> Self {
        self.spec.image = Some(image.into());
        self
    }

    /// The next instance (after a restart) behaves as configured from here on.
    pub fn then(mut self) -> Self {
        let next = self.b().clone();
        self.behaviour.push(next);
        self
    }

    /// Adds a probe with this timing and scripted answers.
    pub fn probe(mut self, kind: ProbeKind, t: Timing, script: ProbeScript) -> Self {
        let probe = Probe {
            exec: Some(ExecAction { command: Some(vec!["probe".into()]) }),
            initial_delay_seconds: t.initial_delay,
            period_seconds: t.period,
            timeout_seconds: t.timeout,
            failure_threshold: t.failure_threshold,
            success_threshold: t.success_threshold,
            termination_grace_period_seconds: t.termination_grace,
            ..Default::default()
        };
        match kind {
            ProbeKind::Startup => self.spec.startup_probe = Some(probe),
            ProbeKind::Liveness => self.spec.liveness_probe = Some(probe),
            ProbeKind::Readiness => self.spec.readiness_probe = Some(probe),
        }
        for b in &mut self.behaviour {
            b.probes.insert(kind, script.clone());
        }
        self
    }

    fn hook(mut self, post: bool, duration: Option<u64>, fails: bool) -> Self {
        let handler =
            LifecycleHandler { exec: Some(ExecAction { command: Some(vec!["hook".into()]) }), ..Default::default() };
        let lc = self.spec.lifecycle.get_or_insert_with(Lifecycle::default);
        let script = HookScript { duration: duration.map(secs), fails };
        if post {
            lc.post_start = Some(handler);
        } else {
            lc.pre_stop = Some(handler);
        }
        for b in &mut self.behaviour {
            if post {
                b.post_start = Some(script.clone());
            } else {
                b.pre_stop = Some(script.clone());
            }
        }
        self
    }

    /// A postStart hook running this long (`None`: until the container dies).
    pub fn post_start(self, duration: Option<u64>, fails: bool) -> Self {
        self.hook(true, duration, fails)
    }

    /// A preStop hook running this long (`None`: until the container dies).
    pub fn pre_stop(self, duration: Option<u64>, fails: bool) -> Self {
        self.hook(false, duration, fails)
    }
}

/// A pod under construction.
#[derive(Debug, Clone, Default)]
pub struct PodBuilder {
    spec: PodSpec,
    behaviours: HashMap<String, Vec<Behaviour>>,
}

impl PodBuilder {
    /// A pod with the given `restartPolicy` (`Always`, `OnFailure`, `Never`).
    pub fn new(policy: &str) -> Self {
        let spec = PodSpec { restart_policy: Some(policy.into()), ..Default::default() };
        PodBuilder { spec, behaviours: HashMap::new() }
    }

    /// Adds a readiness gate (a pod condition the kubelet does not set).
    pub fn readiness_gate(mut self, condition: &str) -> Self {
        let gate = k8s_openapi::api::core::v1::PodReadinessGate { condition_type: condition.into() };
        self.spec.readiness_gates.get_or_insert_with(Vec::new).push(gate);
        self
    }

    /// Sets `terminationGracePeriodSeconds`.
    pub fn grace(mut self, s: i64) -> Self {
        self.spec.termination_grace_period_seconds = Some(s);
        self
    }

    /// Sets `activeDeadlineSeconds`.
    pub fn active_deadline(mut self, s: i64) -> Self {
        self.spec.active_deadline_seconds = Some(s);
        self
    }

    fn add(&mut self, c: Ctr) -> Container {
        self.behaviours.insert(c.spec.name.clone(), c.behaviour);
        c.spec
    }

    /// Adds a regular init container.
    pub fn init(mut self, c: Ctr) -> Self {
        let spec = self.add(c);
        self.spec.init_containers.get_or_insert_with(Vec::new).push(spec);
        self
    }

    /// Adds a sidecar (an init container with `restartPolicy: Always`).
    pub fn sidecar(mut self, c: Ctr) -> Self {
        let mut spec = self.add(c);
        spec.restart_policy = Some("Always".into());
        self.spec.init_containers.get_or_insert_with(Vec::new).push(spec);
        self
    }

    /// Adds a regular container.
    pub fn container(mut self, c: Ctr) -> Self {
        let spec = self.add(c);
        self.spec.containers.push(spec);
        self
    }

    /// The pod spec built so far.
    pub fn spec(&self) -> &PodSpec {
        &self.spec
    }

    /// Starts a simulation of this pod.
    pub fn sim(self) -> Sim {
        Sim::new("pod", self.spec, self.behaviours)
    }

    /// The simulation of this pod resumed after its sandbox was lost, from the status `prior`
    /// another simulation of it reported (R73, R74).
    pub fn resumed(self, prior: &k8s_openapi::api::core::v1::PodStatus) -> Sim {
        Sim::resumed("pod", self.spec, self.behaviours, prior)
    }
}
