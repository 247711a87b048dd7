//! The decision function (R14, R17, R21, R33–R37) as a table, in the manner of the kubelet's
//! `TestComputePodActionsWithRestartableInitContainers`.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ExecAction, PodSpec, Probe};
use podvisor_engine::decide::{Decision, KillReason, ProbeResults, decide};
use podvisor_engine::model::PodModel;
use podvisor_engine::probe::Cached;
use podvisor_engine::record::{Exit, Instance, Records, State};
use podvisor_engine::{ContainerRef, ExitCause, ProbeKind};

fn probe() -> Option<Probe> {
    Some(Probe { exec: Some(ExecAction { command: Some(vec!["true".into()]) }), ..Default::default() })
}

fn ctr(name: &str, sidecar: bool) -> Container {
    Container {
        name: name.into(),
        image: Some("img".into()),
        restart_policy: sidecar.then(|| "Always".into()),
        ..Default::default()
    }
}

/// Pod: init [sc-1 (sidecar), init-2, sc-3 (sidecar)], containers [app].
fn model(policy: &str, tweak: impl Fn(&mut PodSpec)) -> PodModel {
    let mut spec = PodSpec {
        restart_policy: Some(policy.into()),
        init_containers: Some(vec![ctr("sc-1", true), ctr("init-2", false), ctr("sc-3", true)]),
        containers: vec![ctr("app", false)],
        ..Default::default()
    };
    tweak(&mut spec);
    PodModel::new(&spec)
}

fn t0() -> Timestamp {
    Timestamp::from_second(1_767_225_600).unwrap()
}

#[derive(Default)]
struct World {
    records: Records,
    probes: HashMap<(ContainerRef, ProbeKind), Cached>,
}

impl ProbeResults for World {
    fn cached(&self, r: &ContainerRef, kind: ProbeKind) -> Option<Cached> {
        self.probes.get(&(r.clone(), kind)).copied()
    }
}

impl World {
    fn running(mut self, name: &str) -> Self {
        let attempt = self.records.next_attempt(name);
        let r = ContainerRef::new(name, attempt);
        self.records.push(Instance {
            r,
            image: "img".into(),
            id: String::new(),
            state: State::Running { started_at: t0(), since: podvisor_engine::Now::steady(t0()).mono },
        });
        self
    }
    fn exited(mut self, name: &str, code: i32) -> Self {
        let attempt = self.records.next_attempt(name);
        let r = ContainerRef::new(name, attempt);
        let exit = Exit {
            started_at: Some(t0()),
            finished_at: t0(),
            ended: podvisor_engine::Now::steady(t0()).mono,
            exit_code: code,
            cause: ExitCause::Exited,
            message: None,
        };
        self.records.push(Instance { r, image: "img".into(), id: String::new(), state: State::Exited(exit) });
        self
    }
    fn probe(mut self, name: &str, kind: ProbeKind, c: Cached) -> Self {
        let attempt = self.records.latest(name).map_or(0, |i| i.r.attempt);
        self.probes.insert((ContainerRef::new(name, attempt), kind), c);
        self
    }
    fn decide(&self, m: &PodModel) -> Decision {
        decide(m, &self.records, self)
    }
}

fn kills(d: &Decision) -> Vec<(String, KillReason)> {
    d.kills.iter().map(|k| (k.r.name.clone(), k.reason)).collect()
}

#[test]
fn r14_nothing_ran_starts_the_first_init_container() {
    let d = World::default().decide(&model("Always", |_| {}));
    assert_eq!((d.init_starts, d.regular_starts, d.kill_pod), (vec![0], vec![], false));
}

#[test]
fn r16_a_running_sidecar_without_startup_probe_lets_the_next_start() {
    let d = World::default().running("sc-1").decide(&model("Always", |_| {}));
    assert_eq!(d.init_starts, [1]);
}

#[test]
fn r15_last_sidecar_running_starts_the_regular_containers_in_the_same_pass() {
    let w = World::default().running("sc-1").exited("init-2", 0).running("sc-3");
    let d = w.decide(&model("Never", |_| {}));
    assert_eq!((d.init_starts, d.regular_starts), (vec![], vec![0]));
}

#[test]
fn r18_startup_probe_gates_the_next_and_a_failure_restarts_under_never() {
    let m = model("Never", |s| s.init_containers.as_mut().unwrap()[0].startup_probe = probe());
    let d = World::default().running("sc-1").decide(&m);
    assert!(d.init_starts.is_empty(), "no startup result yet: wait");
    let d = World::default().running("sc-1").probe("sc-1", ProbeKind::Startup, Cached::Unknown).decide(&m);
    assert!(d.init_starts.is_empty(), "Unknown: wait");
    let d = World::default().running("sc-1").probe("sc-1", ProbeKind::Startup, Cached::Failure).decide(&m);
    assert_eq!((d.init_starts.clone(), kills(&d)), (vec![0], vec![("sc-1".into(), KillReason::StartupProbe)]));
    let d = World::default().running("sc-1").probe("sc-1", ProbeKind::Startup, Cached::Success).decide(&m);
    assert_eq!(d.init_starts, [1]);
}

#[test]
fn r17_liveness_never_gates_the_next_container() {
    let m = model("Always", |s| s.init_containers.as_mut().unwrap()[0].liveness_probe = probe());
    let d = World::default().running("sc-1").decide(&m);
    assert_eq!(d.init_starts, [1], "an unrecorded liveness result does not block the next");
    let d = World::default().running("sc-1").probe("sc-1", ProbeKind::Liveness, Cached::Failure).decide(&m);
    assert_eq!(d.init_starts, [0, 1], "liveness failure restarts the sidecar and still starts the next");
    assert_eq!(kills(&d), [("sc-1".into(), KillReason::LivenessProbe)]);
}

#[test]
fn r21_an_exited_sidecar_restarts_under_every_policy() {
    for policy in ["Never", "OnFailure", "Always"] {
        let w = World::default().exited("sc-1", 1).running("init-2");
        assert_eq!(w.decide(&model(policy, |_| {})).init_starts, [0], "{policy}");
    }
}

#[test]
fn r20_a_failed_regular_init_container_kills_a_never_pod_and_retries_otherwise() {
    let w = || World::default().running("sc-1").exited("init-2", 1);
    let d = w().decide(&model("Never", |_| {}));
    assert!(d.kill_pod && d.init_starts.is_empty() && d.regular_starts.is_empty());
    let d = w().decide(&model("OnFailure", |_| {}));
    assert_eq!((d.kill_pod, d.init_starts), (false, vec![1]));
}

#[test]
fn r14_completed_init_containers_are_skipped_once_later_ones_have_records() {
    let w = World::default().exited("sc-1", 0).exited("init-2", 0).running("sc-3");
    let d = w.decide(&model("Always", |_| {}));
    assert_eq!(d.init_starts, [0], "the exited sidecar restarts; init-2 is not re-run");
}

#[test]
fn r75_a_sidecar_record_lost_after_initialization_is_recreated() {
    let w = World::default().exited("init-2", 0).running("sc-3").running("app");
    let d = w.decide(&model("Always", |_| {}));
    assert_eq!(d.init_starts, [0]);
}

#[test]
fn r36_r37_completion_kills_the_pod_without_restarting_sidecars() {
    let base = || World::default().exited("sc-1", 1).exited("init-2", 0).running("sc-3");
    let d = base().exited("app", 1).decide(&model("Never", |_| {}));
    assert!(d.kill_pod && d.init_starts.is_empty(), "Never: any exit completes");
    let d = base().exited("app", 1).decide(&model("OnFailure", |_| {}));
    assert_eq!((d.kill_pod, d.regular_starts), (false, vec![0]), "OnFailure: a failure restarts first");
    let d = base().exited("app", 0).decide(&model("OnFailure", |_| {}));
    assert!(d.kill_pod, "OnFailure: all succeeded");
    let d = base().exited("app", 0).decide(&model("Always", |_| {}));
    assert_eq!((d.kill_pod, d.regular_starts), (false, vec![0]), "Always: never completes on its own");
}

#[test]
fn r69_r70_changed_images_restart_the_changed_container_only() {
    let w = World::default().running("sc-1").exited("init-2", 0).running("sc-3").running("app");
    let m = model("Never", |s| s.init_containers.as_mut().unwrap()[0].image = Some("new".into()));
    let d = w.decide(&m);
    assert_eq!((d.init_starts.clone(), kills(&d)), (vec![0], vec![("sc-1".into(), KillReason::Changed)]));
    let w = World::default().running("sc-1").exited("init-2", 0).running("sc-3").running("app");
    let m = model("Never", |s| s.containers[0].image = Some("new".into()));
    let d = w.decide(&m);
    assert_eq!((d.regular_starts.clone(), kills(&d)), (vec![0], vec![("app".into(), KillReason::Changed)]));
    assert_eq!(d.kills[0].message, "Container app definition changed, will be restarted");
}

#[test]
fn r71_a_completed_init_container_ignores_its_new_image() {
    let w = World::default().running("sc-1").exited("init-2", 0).running("sc-3").running("app");
    let m = model("Always", |s| s.init_containers.as_mut().unwrap()[1].image = Some("new".into()));
    assert_eq!(w.decide(&m), Decision::default());
}

#[test]
fn r34_regular_liveness_failure_restarts_unless_never() {
    let m = |p: &str| model(p, |s| s.containers[0].liveness_probe = probe());
    let w = || {
        World::default().running("sc-1").exited("init-2", 0).running("sc-3").running("app").probe(
            "app",
            ProbeKind::Liveness,
            Cached::Failure,
        )
    };
    let d = w().decide(&m("Always"));
    assert_eq!((d.regular_starts.clone(), kills(&d)), (vec![0], vec![("app".into(), KillReason::LivenessProbe)]));
    let d = w().decide(&m("Never"));
    assert_eq!((d.regular_starts.len(), d.kills.len(), d.kill_pod), (0, 1, true));
    assert_eq!(d.kills[0].message, "Container app failed liveness probe");
}
