//! Killing containers: the per-container kill procedure (R42, R44, R48) and the termination
//! turn order (R43: regular containers first, then sidecars in reverse spec order).

use std::collections::HashSet;

use crate::clock::Instant;
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
    pub since: Instant,
    /// When the stage ends at the latest.
    pub deadline: Option<Instant>,
}

/// Whole seconds between two instants, truncated, as the kubelet subtracts them.
pub fn whole_seconds(from: Instant, to: Instant) -> i64 {
    i64::try_from(to.saturating_since(from).as_secs()).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, PodSpec};

    use super::*;

    fn model() -> PodModel {
        let c = |n: &str, sidecar: bool| Container {
            name: n.into(),
            restart_policy: sidecar.then(|| "Always".into()),
            ..Default::default()
        };
        PodModel::new(&PodSpec {
            init_containers: Some(vec![c("a", true), c("init", false), c("b", true), c("c", true)]),
            containers: vec![c("app", false)],
            ..Default::default()
        })
    }

    #[test]
    fn r43_regular_first_then_sidecars_in_reverse_order() {
        let m = model();
        let mut o = Ordering::new(["a", "b", "c", "app"].map(String::from));
        assert!(o.turn_has_come(&m, "app"));
        assert!(!o.turn_has_come(&m, "c"), "sidecars wait for the regular containers");
        o.terminated("app");
        assert!(o.turn_has_come(&m, "c"));
        assert!(!o.turn_has_come(&m, "b") && !o.turn_has_come(&m, "a"));
        o.terminated("c");
        assert!(o.turn_has_come(&m, "b") && !o.turn_has_come(&m, "a"));
        o.terminated("b");
        assert!(o.turn_has_come(&m, "a"));
    }

    #[test]
    fn r43_containers_not_running_at_kill_start_block_nobody() {
        let m = model();
        // b was not running: a waits only for b (done) and app, not for c.
        let mut o = Ordering::new(["a", "c", "app"].map(String::from));
        o.terminated("app");
        assert!(o.turn_has_come(&m, "a") && o.turn_has_come(&m, "c"));
        assert!(o.turn_has_come(&m, "init"), "regular init containers wait for nobody");
    }

    #[test]
    fn r42_whole_seconds_truncate() {
        let t = Instant::from_origin(std::time::Duration::from_secs(100));
        assert_eq!(whole_seconds(t, t.after(std::time::Duration::from_millis(2999))), 2);
        assert_eq!(whole_seconds(t.after_secs(3), t), 0);
    }
}
