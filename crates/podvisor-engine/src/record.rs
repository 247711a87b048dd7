//! What the runtime has told the engine about each container instance: the kubelet's
//! "runtime records", newest last.

use std::collections::HashMap;

use jiff::Timestamp;

use crate::clock::Instant;
use crate::io::{ContainerRef, ExitCause};

/// The runtime state of one container instance.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// Created but not (yet) running; a start that failed leaves it here.
    Created,
    /// The process is running.
    Running {
        /// When it started, as the status says it.
        started_at: Timestamp,
        /// When it started, on the monotonic clock: probe delays are measured from it.
        since: Instant,
    },
    /// The process ended.
    Exited(Exit),
}

/// How an instance ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// When it started, if it ever ran.
    pub started_at: Option<Timestamp>,
    /// When it ended, as the status says it.
    pub finished_at: Timestamp,
    /// When it ended, on the monotonic clock: the crash-loop back-off is measured from it.
    pub ended: Instant,
    /// The exit code.
    pub exit_code: i32,
    /// What ended it.
    pub cause: ExitCause,
    /// The termination message.
    pub message: Option<String>,
}

impl Exit {
    /// The API's `reason`: `OOMKilled`, `Completed` (exit 0) or `Error`.
    pub fn reason(&self) -> &'static str {
        self.cause.reason(self.exit_code)
    }

    /// Whether a regular init container ending like this failed (non-zero, or OOM-killed even
    /// with exit 0).
    pub fn failed(&self) -> bool {
        self.exit_code != 0 || self.cause == ExitCause::OomKilled
    }
}

/// One container instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Which instance.
    pub r: ContainerRef,
    /// The image it was created from (the kubelet's spec hash covers name and image, R68).
    pub image: String,
    /// The runtime's ID.
    pub id: String,
    /// Its state.
    pub state: State,
}

impl Instance {
    /// Whether the process is running.
    pub fn running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// How it ended, if it has.
    pub fn exit(&self) -> Option<&Exit> {
        match &self.state {
            State::Exited(e) => Some(e),
            _ => None,
        }
    }
}

/// Every instance of every container, by name, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Records {
    by_name: HashMap<String, Vec<Instance>>,
    /// Attempts made in an earlier sandbox (R74): the next attempt number of a container that
    /// has no instance in this one.
    carried: HashMap<String, u32>,
}

impl Records {
    /// The newest instance of a container.
    pub fn latest(&self, name: &str) -> Option<&Instance> {
        self.by_name.get(name).and_then(|v| v.last())
    }

    /// The instance before the newest one.
    pub fn previous(&self, name: &str) -> Option<&Instance> {
        self.by_name.get(name).and_then(|v| v.len().checked_sub(2).and_then(|i| v.get(i)))
    }

    /// A given instance.
    pub fn get(&self, r: &ContainerRef) -> Option<&Instance> {
        self.by_name.get(&r.name)?.iter().rev().find(|i| i.r.attempt == r.attempt)
    }

    /// A given instance, mutably.
    pub fn get_mut(&mut self, r: &ContainerRef) -> Option<&mut Instance> {
        self.by_name.get_mut(&r.name)?.iter_mut().rev().find(|i| i.r.attempt == r.attempt)
    }

    /// The attempt number the next instance of `name` gets.
    pub fn next_attempt(&self, name: &str) -> u32 {
        self.latest(name).map_or_else(|| self.carried(name), |i| i.r.attempt + 1)
    }

    /// How many instances of `name` earlier sandboxes had.
    pub fn carried(&self, name: &str) -> u32 {
        self.carried.get(name).copied().unwrap_or(0)
    }

    /// Records that earlier sandboxes had `attempts` instances of `name` (R74).
    pub fn carry(&mut self, name: &str, attempts: u32) {
        self.carried.insert(name.to_string(), attempts);
    }

    /// Adds a new instance.
    pub fn push(&mut self, instance: Instance) {
        self.by_name.entry(instance.r.name.clone()).or_default().push(instance);
    }

    /// When the newest exited instance of `name` ended (its `finishedAt`, on the monotonic
    /// clock): the back-off reference (R26).
    pub fn last_finished(&self, name: &str) -> Option<Instant> {
        self.by_name.get(name)?.iter().rev().find_map(|i| i.exit().map(|e| e.ended))
    }

    /// Every running instance.
    pub fn running(&self) -> impl Iterator<Item = &Instance> {
        self.by_name.values().filter_map(|v| v.last()).filter(|i| i.running())
    }

    /// Whether the container has any record (it was created in this sandbox).
    pub fn has_record(&self, name: &str) -> bool {
        self.by_name.get(name).is_some_and(|v| !v.is_empty())
    }
}
