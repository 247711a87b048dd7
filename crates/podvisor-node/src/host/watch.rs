//! A container instance from its start (or take-over) to its end.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use podvisor_engine::{ContainerRef, ExitCause, FoundExit, Input};
use podvisor_runtime::logs;
use podvisor_runtime::monitor::Monitor;

use super::{Host, Publish, Report, message_budget, record_end};
use crate::events::What;

/// A container instance from its start (or its take-over by a node process started again) to its
/// end: its log lines are published as the monitor writes them, and its end is reported.
pub(crate) struct Watch {
    pub host: Arc<Host>,
    pub pod: Arc<Pod>,
    pub cgroup_parent: String,
    pub spec: Container,
    pub r: ContainerRef,
    pub id: String,
    pub dir: PathBuf,
    pub monitor: Monitor,
    /// Where in the log the lines not yet published begin.
    pub log_from: u64,
    /// Why the start failed, if it did (the process never ran).
    pub start_error: Option<String>,
    pub report: Report,
    pub publish: Publish,
}

impl Watch {
    /// Publishes the log lines until the container ends, then reports its end and removes it.
    pub async fn run(mut self) {
        let log = logs::path(&self.host.log_dir(&self.pod), &self.r.name, self.r.attempt);
        let (publish, name) = (self.publish.clone(), self.r.name.clone());
        let followed = logs::follow(&log, self.log_from, self.monitor.exited(), |stream, line| {
            publish(What::Log { container: name.clone(), stream: stream.as_str(), line: line.to_string() })
        })
        .await;
        if followed.is_err() {
            self.monitor.exited().await;
        }
        let end = match self.start_error {
            Some(message) => FoundExit {
                exit_code: 128,
                cause: ExitCause::StartError,
                finished_at: jiff::Timestamp::now(),
                message: Some(message),
            },
            None => {
                let budget = message_budget(&self.pod);
                self.host.end_of(&self.spec, &self.cgroup_parent, &self.id, &self.dir, &log, budget)
            }
        };
        // Recorded and told first, so that a node process stopped now finds the end, in the
        // record or in the pod's status, though the container is gone.
        record_end(&self.host.log_dir(&self.pod), &self.r, &end);
        let FoundExit { exit_code, cause, message, .. } = end;
        let _ = self.report.send(Input::Exited { container: self.r.clone(), exit_code, cause, message });
        self.host.remove_container(&self.id, &self.dir).await;
    }
}
