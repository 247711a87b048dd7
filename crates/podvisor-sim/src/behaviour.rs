//! Scripted container behaviour: what a simulated container does over time.

use std::collections::HashMap;
use std::time::Duration;

use podvisor_engine::ProbeKind;

/// How a probe of a simulated container answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeScript {
    /// Always passes.
    Pass,
    /// Always fails.
    Fail,
    /// Passes once the instance has run this long, fails before.
    PassAfter(Duration),
    /// Passes until the instance has run this long, fails after.
    FailAfter(Duration),
    /// Passes once the container's start delay is over (`test -f started`).
    WhenStarted,
    /// Never answers in time: fails at its timeout.
    Hang,
    /// Passes until the container receives its stop signal, fails after.
    UntilStopSignal,
    /// Passes with a warning (e.g. a redirect to another host that was not followed).
    Warn(String),
}

/// How a lifecycle hook of a simulated container behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookScript {
    /// How long it runs; `None` runs until the container dies.
    pub duration: Option<Duration>,
    /// Whether it fails when it ends.
    pub fails: bool,
}

/// What one instance of a simulated container does, after the e2e tests' `ExecCommand`
/// script: wait `start_delay`, log `Started`, run for `run`, then exit with `exit_code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behaviour {
    /// Time from process start to the `Started` log line.
    pub start_delay: Duration,
    /// Time from `Started` to a normal exit; `None` runs forever.
    pub run: Option<Duration>,
    /// The exit code, for normal exits and for the SIGTERM handler.
    pub exit_code: i32,
    /// `Some(t)`: SIGTERM is trapped, the process exits `t` later with `exit_code`.
    /// `None`: SIGTERM is ignored (a PID 1 without a handler), only SIGKILL ends it.
    pub term: Option<Duration>,
    /// OOM-killed this long after starting.
    pub oom_after: Option<Duration>,
    /// Time the runtime takes from the start request to the running process.
    pub runtime_start: Duration,
    /// Probe answers by kind.
    pub probes: HashMap<ProbeKind, ProbeScript>,
    /// The runtime fails to create the container (`CreateContainerError`).
    pub create_fails: bool,
    /// The runtime creates the container but fails to start it (exit 128, `StartError`).
    pub start_fails: bool,
    /// The postStart hook.
    pub post_start: Option<HookScript>,
    /// The preStop hook.
    pub pre_stop: Option<HookScript>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            start_delay: Duration::ZERO,
            run: None,
            exit_code: 0,
            term: Some(Duration::ZERO),
            oom_after: None,
            runtime_start: Duration::ZERO,
            probes: HashMap::new(),
            create_fails: false,
            start_fails: false,
            post_start: None,
            pre_stop: None,
        }
    }
}
