//! Runtime reports in unusual orders: the engine neither hangs nor acts on stale reports.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ExecAction, PodSpec, Probe};
use podvisor_engine::{Action, ContainerRef, ExitCause, Input, PodEngine, PodIdentity, ProbeKind, ProbeOutcome};

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_767_225_600 + s).unwrap()
}

fn engine(spec: PodSpec) -> PodEngine {
    let id = PodIdentity { name: "p".into(), namespace: "default".into(), uid: "u".into() };
    let mut e = PodEngine::new(id, spec, t(0));
    e.handle(t(0), Input::SandboxReady);
    e
}

fn drain(e: &mut PodEngine) -> Vec<Action> {
    std::iter::from_fn(|| e.poll_action()).collect()
}

fn app(policy: &str) -> PodSpec {
    PodSpec {
        restart_policy: Some(policy.into()),
        containers: vec![Container { name: "app".into(), image: Some("img".into()), ..Default::default() }],
        ..Default::default()
    }
}

#[test]
fn an_exit_reported_before_the_creation_is_not_lost() {
    let mut e = engine(app("Never"));
    let r = ContainerRef::new("app", 0);
    assert!(drain(&mut e).iter().any(|a| matches!(a, Action::StartContainer { .. })));
    e.handle(t(1), Input::Exited { container: r.clone(), exit_code: 0, cause: ExitCause::Exited, message: None });
    e.handle(t(1), Input::Created { container: r.clone(), id: "x".into() });
    e.handle(t(1), Input::Started { container: r });
    assert!(e.is_finished(), "the pod completed instead of waiting for a container that is gone");
    assert_eq!(e.status().phase.as_deref(), Some("Succeeded"));
}

#[test]
fn a_duplicate_failure_report_does_not_end_a_newer_start() {
    let mut e = engine(app("Always"));
    let r = ContainerRef::new("app", 0);
    drain(&mut e);
    e.handle(t(0), Input::ImagePullFailed { container: r.clone(), message: "no".into() });
    let before = drain(&mut e);
    e.handle(t(0), Input::ImagePullFailed { container: r, message: "no".into() });
    let after = drain(&mut e);
    assert!(before.iter().any(|a| matches!(a, Action::Record(ev) if ev.message == "Error: ErrImagePull")));
    assert!(after.is_empty(), "a repeated report changes nothing: {after:?}");
}

#[test]
fn r31_a_late_startup_result_after_success_changes_nothing() {
    let probe = Probe {
        exec: Some(ExecAction { command: Some(vec!["x".into()]) }),
        failure_threshold: Some(1),
        ..Default::default()
    };
    let mut spec = app("Always");
    spec.containers[0].startup_probe = Some(probe);
    let mut e = engine(spec);
    let r = ContainerRef::new("app", 0);
    drain(&mut e);
    e.handle(t(0), Input::Created { container: r.clone(), id: "x".into() });
    e.handle(t(0), Input::Started { container: r.clone() });
    drain(&mut e);
    e.handle(
        t(1),
        Input::ProbeDone { container: r.clone(), probe: ProbeKind::Startup, outcome: ProbeOutcome::Success },
    );
    e.handle(
        t(2),
        Input::ProbeDone { container: r, probe: ProbeKind::Startup, outcome: ProbeOutcome::Failure("late".into()) },
    );
    let actions = drain(&mut e);
    assert!(!actions.iter().any(|a| matches!(a, Action::Signal { .. })), "{actions:?}");
    assert_eq!(e.status().container_statuses.as_ref().unwrap()[0].started, Some(true));
}
