//! Runtime reports in unusual orders: the engine neither hangs nor acts on stale reports.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, ExecAction, PodSpec, Probe};
use podvisor_engine::Now;
use podvisor_engine::{
    Action, ContainerRef, ExitCause, Input, NodeFacts, PodEngine, PodIdentity, ProbeKind, ProbeOutcome,
};

fn t(s: i64) -> Now {
    Now::steady(Timestamp::from_second(1_767_225_600 + s).unwrap())
}

fn engine(spec: PodSpec) -> PodEngine {
    let id = PodIdentity { name: "p".into(), namespace: "default".into(), uid: "u".into() };
    let mut e = PodEngine::new(id, spec, &NodeFacts::default(), t(0));
    e.handle(t(0), Input::SandboxReady { pod_ip: None });
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

/// A failed sandbox creation is retried with back-off (10 s, then 20 s) and the pod stays
/// Pending with a warning event; a deletion meanwhile ends the pod without another attempt.
/// (The spec does not cover sandbox failures; this follows the kubelet's pod worker, which
/// requeues a failed sync.)
#[test]
fn a_failed_sandbox_is_retried_with_back_off_and_deletion_still_ends_the_pod() {
    let id = PodIdentity { name: "p".into(), namespace: "default".into(), uid: "u".into() };
    let mut e = PodEngine::new(id, app("Always"), &NodeFacts::default(), t(0));
    assert_eq!(drain(&mut e), [Action::CreateSandbox]);
    let fail = |e: &mut PodEngine, at| {
        e.handle(t(at), Input::SandboxFailed { reason: "FailedMount".into(), message: "no such configmap".into() })
    };
    fail(&mut e, 0);
    let actions = drain(&mut e);
    assert!(
        matches!(&actions[..], [Action::Record(ev)] if ev.reason == "FailedMount" && ev.message == "no such configmap"),
        "{actions:?}"
    );
    assert_eq!(e.status().phase.as_deref(), Some("Pending"));
    assert_eq!(e.poll_timeout(), Some(t(10).mono));
    e.handle_timeout(t(10));
    assert_eq!(drain(&mut e), [Action::CreateSandbox]);
    fail(&mut e, 10);
    drain(&mut e);
    assert_eq!(e.poll_timeout(), Some(t(30).mono), "the second wait doubles");
    e.handle(t(15), Input::Delete { grace_seconds: None });
    assert!(e.is_finished());
    assert_eq!(drain(&mut e), [Action::RemoveSandbox]);
    assert_eq!(e.poll_timeout(), None);
    e.handle_timeout(t(30));
    assert_eq!(drain(&mut e), [], "no sandbox is asked for after the deletion");
}

/// R41, R42: a start abandoned by the deletion that the runtime completed anyway is stopped
/// gracefully (stop signal, then SIGKILL at the end of the grace), not killed at once.
#[test]
fn r41_r42_a_container_that_starts_after_the_deletion_is_stopped_gracefully() {
    let mut e = engine(app("Always"));
    let r = ContainerRef::new("app", 0);
    assert!(drain(&mut e).iter().any(|a| matches!(a, Action::StartContainer { .. })));
    e.handle(t(1), Input::Created { container: r.clone(), id: "x".into() });
    e.handle(t(1), Input::Delete { grace_seconds: Some(5) });
    let actions = drain(&mut e);
    assert!(actions.contains(&Action::CancelStart { container: r.clone() }), "{actions:?}");
    assert!(!e.is_finished(), "the abandoned start still owes its outcome");
    e.handle(t(2), Input::Started { container: r.clone() });
    let actions = drain(&mut e);
    assert!(
        actions.contains(&Action::Signal { container: r.clone(), signal: podvisor_engine::Signal::Stop }),
        "{actions:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Signal { signal: podvisor_engine::Signal::Kill, .. })));
    assert_eq!(e.poll_timeout(), Some(t(7).mono), "SIGKILL only at the end of the 5 s grace");
    e.handle(t(3), Input::Exited { container: r, exit_code: 143, cause: ExitCause::Exited, message: None });
    assert!(e.is_finished());
}

/// R41: an abandoned start that the runtime reports as never run ends the pod at once.
#[test]
fn r41_an_abandoned_start_that_never_ran_lets_the_pod_finish() {
    let mut e = engine(app("Always"));
    let r = ContainerRef::new("app", 0);
    drain(&mut e);
    e.handle(t(1), Input::Delete { grace_seconds: None });
    assert!(!e.is_finished());
    drain(&mut e);
    let abandoned = Input::StartFailed { container: r, reason: "Cancelled".into(), message: "abandoned".into() };
    e.handle(t(1), abandoned);
    assert!(e.is_finished());
    assert_eq!(drain(&mut e), [Action::RemoveSandbox], "no event and no retry for an abandoned start");
}
