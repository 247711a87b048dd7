//! Inputs in awkward orders and timings, each pinned to the rule it would otherwise break.

mod common;

use common::*;
use podvisor_engine::ProbeKind::{Liveness, Readiness};
use podvisor_sim::order::*;
use podvisor_sim::*;

/// A start still in flight when the pod is deleted is abandoned: the container never runs and
/// the pod is gone within its grace (R41, R47).
#[test]
fn delete_during_a_slow_start_abandons_it_r41_r47() {
    let mut sim = PodBuilder::new("Always")
        .grace(30)
        .sidecar(Ctr::new("sc").term(5))
        .container(Ctr::new("app").runtime_start(secs(20)).ignores_term())
        .sim();
    sim.run_for(secs(1));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(starts(sim.timeline(), "app"), 0, "the abandoned start never runs");
    assert_eq!(sim.elapsed(), secs(6), "only the sidecar's 5 s SIGTERM handler");
}

/// A container whose creation keeps failing is retried under back-off, not in a hot loop (R26).
#[test]
fn failing_creates_back_off_r26() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app").create_fails()).sim();
    sim.run_for(secs(60));
    let attempts = sim.events().iter().filter(|e| e.reason == "Failed").count();
    assert_eq!(attempts, 3, "at 0 s, 10 s and 30 s");
    assert_eq!(state(&sim, "app"), "waiting:CreateContainerError");
}

/// A container created but not started reports StartError (exit 128) and backs off (R26).
#[test]
fn failing_starts_report_start_error_r26() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app").start_fails()).sim();
    sim.run_for(secs(5));
    assert_eq!(state(&sim, "app"), "waiting:CrashLoopBackOff");
    let last = sim.container("app").and_then(|c| c.last_state.clone()).and_then(|l| l.terminated).unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (128, Some("StartError")));
}

/// An image changed while the container is still being started: the instance runs the old
/// image, so it is restarted with the new one (R68, R70).
#[test]
fn image_change_during_a_start_restarts_it_r70() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app").runtime_start(secs(5))).sim();
    sim.run_for(secs(1));
    sim.set_image("app", "alpine:3");
    sim.run_for(secs(10));
    assert_eq!(image(&sim, "app"), "alpine:3");
    assert_eq!(rc(&sim, "app"), 1);
    assert_eq!(state(&sim, "app"), "running");
}

/// A container waiting in back-off when the pod is deleted shows its last termination, and the
/// phase follows it (R33, R50).
#[test]
fn delete_while_backing_off_r33_r50() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app").run(1).exit(0)).sim();
    assert!(sim.run_while_not(secs(30), |s| state(s, "app") == "waiting:CrashLoopBackOff"));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(state(&sim, "app"), "terminated:0:Completed");
    assert_eq!(sim.phase(), "Succeeded");
}

/// A deletion during a probe-triggered kill brings the shorter grace to it (R39, R48).
#[test]
fn delete_during_a_probe_kill_shortens_it_r39() {
    let live = Timing {
        initial_delay: Some(5),
        failure_threshold: Some(1),
        termination_grace: Some(300),
        ..Default::default()
    };
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("sc").ignores_term().probe(Liveness, live, ProbeScript::Fail))
        .container(Ctr::new("app"))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| has_event(s, "Killing", "failed liveness probe")));
    sim.delete(Some(5));
    assert!(sim.run_to_end(secs(400)));
    assert_eq!(sim.elapsed(), secs(10), "SIGTERM went at 5 s; SIGKILL comes with the 5 s grace, not after 300 s");
}

/// A shorter second grace counts from the second delete, not twice (R39, R45).
#[test]
fn a_shorter_grace_is_not_subtracted_twice_r39() {
    let mut sim = PodBuilder::new("Always")
        .grace(30)
        .sidecar(Ctr::new("sc").ignores_term())
        .container(Ctr::new("app").term(12))
        .sim();
    sim.run_for(secs(1));
    sim.delete(None);
    sim.run_for(secs(8));
    sim.delete(Some(10));
    assert!(sim.run_to_end(secs(60)));
    let tl = sim.timeline();
    assert_eq!(times(tl, "sc", |m| *m == Mark::Signalled("SIGTERM".into())), [13.0], "after the app's 12 s");
    assert_eq!(times(tl, "sc", |m| *m == Mark::Killed), [19.0], "the second delete at 9 s + its 10 s grace");
}

/// Readiness gates keep the pod not Ready until a controller sets every gate's condition
/// `True`, in the kubelet's words for each gate not met; Ready follows the conditions both
/// ways (R61).
#[test]
fn readiness_gates_r61() {
    let mut sim = PodBuilder::new("Always")
        .readiness_gate("example.com/lb")
        .readiness_gate("example.com/dns")
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(1));
    assert_eq!(condition(&sim, "ContainersReady"), "True");
    let ready = |sim: &podvisor_sim::Sim| {
        let c = sim.engine().status().conditions.iter().flatten().find(|c| c.type_ == "Ready").cloned().unwrap();
        (c.status, c.reason, c.message)
    };
    let (status, reason, message) = ready(&sim);
    assert_eq!((status.as_str(), reason.as_deref()), ("False", Some("ReadinessGatesNotReady")));
    assert_eq!(
        message.as_deref(),
        Some(
            "corresponding condition of pod readiness gate \"example.com/lb\" does not exist., corresponding condition of pod readiness gate \"example.com/dns\" does not exist."
        )
    );
    sim.set_condition("example.com/lb", "True");
    sim.set_condition("example.com/dns", "False");
    assert_eq!(
        ready(&sim).2.as_deref(),
        Some("the status of pod readiness gate \"example.com/dns\" is not \"True\", but False")
    );
    sim.set_condition("example.com/dns", "True");
    assert_eq!(ready(&sim), ("True".to_string(), None, None));
    sim.set_condition("example.com/lb", "Unknown");
    assert_eq!(ready(&sim).0, "False", "Ready follows a gate back");
    sim.set_condition("example.com/lb", "True");
    // R75: a node process started again reads the gates' conditions from the pod as the API
    // holds it: the pod stays Ready from the new process's first status on.
    sim.restart_node(secs(1), &[]);
    assert_eq!(ready(&sim), ("True".to_string(), None, None), "no flap to not Ready on take-over");
}

/// A failed postStart hook kills the container with the kubelet's reason as message (R19).
#[test]
fn failed_poststart_kills_with_its_reason_r19() {
    let mut sim = PodBuilder::new("Never").container(Ctr::new("app").post_start(Some(1), true)).sim();
    assert!(sim.run_to_end(secs(60)));
    assert!(has_event(&sim, "FailedPostStartHook", "PostStartHook failed"));
    assert!(sim.events().iter().any(|e| e.reason == "Killing" && e.message == "FailedPostStartHook"));
}

/// R40: on deletion, a sidecar that never passed its startup probe counts as started, and its
/// readiness is probed while it terminates.
#[test]
fn deletion_records_startup_success_r40() {
    let never = Timing { failure_threshold: Some(100), ..Default::default() };
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("sc").term(5).probe(podvisor_engine::ProbeKind::Startup, never, ProbeScript::Fail).probe(
            Readiness,
            Timing::default(),
            ProbeScript::Pass,
        ))
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(3));
    assert!(!is_started(&sim, "sc"));
    sim.delete(None);
    assert!(is_started(&sim, "sc"));
}
