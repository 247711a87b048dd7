//! Killing containers: the per-container kill procedure (R42, R44, R48) and the termination
//! turn order (R43: regular containers first, then sidecars in reverse spec order).

use std::collections::HashSet;

use jiff::Timestamp;

use crate::io::ContainerRef;
use crate::model::{PodModel, Role};

/// The minimum time between the stop signal and SIGKILL (R42 step 3).
pub const MIN_GRACE_SECONDS: i64 = 2;

/// Where a kill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The preStop hook runs; the engine waits for it at most the remaining grace.
    PreStop,
    /// Waiting for this container's turn (termination with sidecars only).
    WaitTurn,
    /// The stop signal was sent; SIGKILL follows at the deadline.
    Stopping,
    /// SIGKILL was sent; waiting for the exit.
    Killed,
}

/// One container being killed.
#[derive(Debug, Clone)]
pub struct KillTask {
    /// The instance.
    pub r: ContainerRef,
    /// Whether it waits for its turn (pod termination of a pod with sidecars).
    pub ordered: bool,
    /// The remaining grace `g`, whole seconds.
    pub grace: i64,
    /// Its stage.
    pub stage: Stage,
    /// When the stage began.
    pub since: Timestamp,
    /// When the stage ends at the latest.
    pub deadline: Option<Timestamp>,
}

/// Whole seconds between two instants, truncated, as the kubelet subtracts them.
pub fn whole_seconds(from: Timestamp, to: Timestamp) -> i64 {
    to.duration_since(from).as_secs().max(0)
}

/// The instant `secs` seconds after `t`.
pub fn after_secs(t: Timestamp, secs: i64) -> Timestamp {
    t + jiff::SignedDuration::from_secs(secs.max(0))
}

/// The termination turn rules (R43), built from the spec and the containers running when the
/// kill began. Containers not running then count as terminated from the start.
#[derive(Debug, Clone, Default)]
pub struct Ordering {
    running_at_start: HashSet<String>,
    terminated: HashSet<String>,
}

impl Ordering {
    /// Ordering for a kill that began with these containers running.
    pub fn new(running: impl IntoIterator<Item = String>) -> Self {
        Ordering { running_at_start: running.into_iter().collect(), terminated: HashSet::new() }
    }

    /// Records that a container has terminated.
    pub fn terminated(&mut self, name: &str) {
        self.terminated.insert(name.to_string());
    }

    fn done(&self, name: &str) -> bool {
        !self.running_at_start.contains(name) || self.terminated.contains(name)
    }

    /// Whether `name` may receive its stop signal: regular and regular init containers wait for
    /// nobody; a sidecar waits for every regular container and for the next sidecar after it in
    /// spec order.
    pub fn turn_has_come(&self, model: &PodModel, name: &str) -> bool {
        let Some(pos) = model.init.iter().position(|c| c.name == name && c.role == Role::Sidecar) else {
            return true;
        };
        if !model.regular.iter().all(|c| self.done(&c.name)) {
            return false;
        }
        match model.init[pos + 1..].iter().find(|c| c.role == Role::Sidecar) {
            Some(next) => self.done(&next.name),
            None => true,
        }
    }
}
