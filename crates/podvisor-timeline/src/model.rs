//! What a timeline holds, and the recorder that builds it from events in time order.

/// What a container is in its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular init container: runs to completion before the next one.
    Init,
    /// An init container with `restartPolicy: Always`.
    Sidecar,
    /// A regular container.
    App,
}

impl Kind {
    /// The word shown beside the container's name.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Init => "init",
            Kind::Sidecar => "sidecar",
            Kind::App => "app",
        }
    }
}

/// A state a container is in for a while.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Its process runs; not started yet (a startup probe or postStart pending).
    Running,
    /// Started (R54): what comes after it may go.
    Started,
    /// Asked to stop (SIGTERM sent), not gone yet.
    Terminating,
}

/// A bar: a state from a time to a time (open while it lasts).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bar {
    pub from: f64,
    pub to: Option<f64>,
    pub state: State,
}

/// What a mark shows.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum MarkKind {
    ProbeOk,
    ProbeFailed,
    Hook,
    Sigterm,
    Sigkill,
    Exit(i32),
    Event,
    Warning,
}

/// A mark at a time, with its tooltip.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Mark {
    pub at: f64,
    pub kind: MarkKind,
    pub text: String,
}

/// One container's row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub name: String,
    pub kind: Kind,
    pub bars: Vec<Bar>,
    pub marks: Vec<Mark>,
    pub restarts: u32,
}

/// One pod's part of the picture.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pod {
    pub name: String,
    pub rows: Vec<Row>,
    pub phases: Vec<(f64, String)>,
    pub marks: Vec<Mark>,
    /// When the first SIGTERM of the pod's stop was sent, and its grace period in seconds.
    pub grace: Option<(f64, Option<f64>)>,
    pub end: f64,
}

/// A timeline: pods with their containers' rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// The title (a file name, a manifest).
    pub title: String,
    pub(crate) pods: Vec<Pod>,
}

impl Timeline {
    /// The last time anything happened, in seconds from the start.
    pub fn end(&self) -> f64 {
        self.pods.iter().map(|p| p.end).fold(0.0, f64::max)
    }

    /// The containers of `pod` in row order, with their kinds.
    pub fn rows(&self, pod: &str) -> Vec<(&str, Kind)> {
        self.pods
            .iter()
            .filter(|p| p.name == pod)
            .flat_map(|p| p.rows.iter().map(|r| (r.name.as_str(), r.kind)))
            .collect()
    }
}

/// Builds a [`Timeline`] from events given in time order, in seconds from the start.
#[derive(Debug, Clone)]
pub struct Recorder {
    timeline: Timeline,
}

impl Recorder {
    /// An empty timeline titled `title`.
    pub fn new(title: &str) -> Recorder {
        Recorder { timeline: Timeline { title: title.to_string(), pods: Vec::new() } }
    }

    fn pod(&mut self, pod: &str) -> &mut Pod {
        if let Some(i) = self.timeline.pods.iter().position(|p| p.name == pod) {
            return &mut self.timeline.pods[i];
        }
        self.timeline.pods.push(Pod {
            name: pod.to_string(),
            rows: Vec::new(),
            phases: Vec::new(),
            marks: Vec::new(),
            grace: None,
            end: 0.0,
        });
        self.timeline.pods.last_mut().expect("just pushed")
    }

    fn row(&mut self, pod: &str, container: &str, at: f64) -> &mut Row {
        let p = self.pod(pod);
        p.end = p.end.max(at);
        if let Some(i) = p.rows.iter().position(|r| r.name == container) {
            return &mut p.rows[i];
        }
        p.rows.push(Row {
            name: container.to_string(),
            kind: Kind::App,
            bars: Vec::new(),
            marks: Vec::new(),
            restarts: 0,
        });
        p.rows.last_mut().expect("just pushed")
    }

    /// Declares `container` of `pod` with its kind; rows keep the order they are declared in
    /// (declare them in start order before the events for the usual picture).
    pub fn container(&mut self, pod: &str, container: &str, kind: Kind) {
        self.row(pod, container, 0.0).kind = kind;
    }

    fn close(row: &mut Row, at: f64) {
        if let Some(b) = row.bars.last_mut()
            && b.to.is_none()
        {
            b.to = Some(at.max(b.from));
        }
    }

    fn switch(row: &mut Row, at: f64, state: State) {
        Self::close(row, at);
        row.bars.push(Bar { from: at, to: None, state });
    }

    fn mark(row: &mut Row, at: f64, kind: MarkKind, text: String) {
        row.marks.push(Mark { at, kind, text });
    }

    /// The container's process started (`attempt` from 0; more is a restart). A `gated`
    /// container (a startup probe or a postStart hook) counts as started only once
    /// [`Recorder::became_started`] says so; another one at once.
    pub fn started(&mut self, pod: &str, container: &str, at: f64, attempt: u32, gated: bool) {
        let row = self.row(pod, container, at);
        row.restarts = row.restarts.max(attempt);
        Self::switch(row, at, if gated { State::Running } else { State::Started });
        let what = if attempt == 0 { "started".to_string() } else { format!("restarted (restart {attempt})") };
        Self::mark(row, at, MarkKind::Event, format!("{container} {what} at {at:.3} s"));
    }

    /// The container counts as started (its startup probe passed, its postStart hook ended).
    pub fn became_started(&mut self, pod: &str, container: &str, at: f64, why: &str) {
        let row = self.row(pod, container, at);
        if row.bars.last().is_some_and(|b| b.to.is_none() && b.state == State::Running) {
            Self::switch(row, at, State::Started);
        }
        Self::mark(row, at, MarkKind::ProbeOk, format!("{container}: {why} at {at:.3} s"));
    }

    /// A probe ran on the container.
    pub fn probe(&mut self, pod: &str, container: &str, at: f64, kind: &str, ok: bool, detail: &str) {
        let row = self.row(pod, container, at);
        let result = if ok { "passed" } else { "failed" };
        let text = format!(
            "{container}: {kind} probe {result} at {at:.3} s{}",
            if detail.is_empty() { String::new() } else { format!(": {detail}") }
        );
        Self::mark(row, at, if ok { MarkKind::ProbeOk } else { MarkKind::ProbeFailed }, text);
    }

    /// A hook ran (`postStart`, `preStop`).
    pub fn hook(&mut self, pod: &str, container: &str, at: f64, hook: &str, result: &str) {
        let row = self.row(pod, container, at);
        Self::mark(row, at, MarkKind::Hook, format!("{container}: {hook} hook {result} at {at:.3} s"));
    }

    /// A signal was sent to the container: SIGTERM (or its stop signal) starts its
    /// termination; SIGKILL ends the grace period. `grace` is the pod's grace in seconds, if
    /// known.
    pub fn signalled(&mut self, pod: &str, container: &str, at: f64, signal: &str, why: &str, grace: Option<f64>) {
        let p = self.pod(pod);
        if signal != "SIGKILL" && p.grace.is_none() {
            p.grace = Some((at, grace));
        }
        let row = self.row(pod, container, at);
        let text = format!(
            "{container}: {signal} at {at:.3} s{}",
            if why.is_empty() { String::new() } else { format!(" ({why})") }
        );
        if signal == "SIGKILL" {
            Self::mark(row, at, MarkKind::Sigkill, text);
        } else {
            if row.bars.last().is_some_and(|b| b.to.is_none()) {
                Self::switch(row, at, State::Terminating);
            }
            Self::mark(row, at, MarkKind::Sigterm, text);
        }
    }

    /// The container's process exited.
    pub fn exited(&mut self, pod: &str, container: &str, at: f64, code: i32, reason: &str) {
        let row = self.row(pod, container, at);
        Self::close(row, at);
        Self::mark(row, at, MarkKind::Exit(code), format!("{container} exited {code} ({reason}) at {at:.3} s"));
    }

    /// An event about the container (or the pod, with `container` none); `warning` for the
    /// kubelet's Warning events.
    pub fn event(&mut self, pod: &str, container: Option<&str>, at: f64, text: &str, warning: bool) {
        let kind = if warning { MarkKind::Warning } else { MarkKind::Event };
        let text = format!("{text} at {at:.3} s");
        match container {
            Some(c) => {
                let row = self.row(pod, c, at);
                Self::mark(row, at, kind, text);
            }
            None => {
                let p = self.pod(pod);
                p.end = p.end.max(at);
                p.marks.push(Mark { at, kind, text });
            }
        }
    }

    /// The pod's phase changed.
    pub fn phase(&mut self, pod: &str, at: f64, phase: &str) {
        let p = self.pod(pod);
        p.end = p.end.max(at);
        if p.phases.last().is_none_or(|(_, last)| last != phase) {
            p.phases.push((at, phase.to_string()));
        }
    }

    /// The pod is gone (or the picture ends): open bars end here.
    pub fn finished(&mut self, pod: &str, at: f64) {
        let p = self.pod(pod);
        p.end = p.end.max(at);
        for r in &mut p.rows {
            Self::close(r, at);
        }
    }

    /// The timeline; bars still open end at the last time seen.
    pub fn finish(mut self) -> Timeline {
        for p in &mut self.timeline.pods {
            let end = p.end;
            for r in &mut p.rows {
                Self::close(r, end);
            }
        }
        self.timeline
    }
}
