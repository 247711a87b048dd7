//! Scenarios B of the e2e catalogue: probes on a sidecar (`restartPolicy: Always` pod, main
//! container running forever). Handlers are scripted; the real handlers are the runtime's.

mod common;

use common::*;
use podvisor_engine::ProbeKind::{self, Liveness, Readiness, Startup};
use podvisor_sim::*;

fn pod(sidecar: Ctr) -> Sim {
    PodBuilder::new("Always").sidecar(sidecar).container(Ctr::new("main")).sim()
}

fn t(initial: i32, period: i32, ft: i32) -> Timing {
    Timing { initial_delay: Some(initial), period: Some(period), failure_threshold: Some(ft), ..Default::default() }
}

/// Restarts of the sidecar over a window, checking they never decrease.
fn restarts_over(sim: &mut Sim, window: u64) -> i32 {
    let mut last = 0;
    for _ in 0..window {
        sim.run_for(secs(1));
        let now = rc(sim, "sidecar");
        assert!(now >= last, "restart count decreased");
        last = now;
    }
    last
}

/// B-READY-DELAY: the pod becomes Ready only after the readiness initial delay (R31, R61).
#[test]
fn b_ready_delay_r31_r61() {
    let mut sim = pod(Ctr::new("sidecar").probe(Readiness, t(15, 10, 3), ProbeScript::Pass));
    assert!(sim.run_while_not(secs(60), |s| condition(s, "Ready") == "True"));
    assert_eq!(sim.elapsed(), secs(15));
    assert_eq!(rc(&sim, "sidecar"), 0);
}

/// B-READY-FAILING: a failing readiness probe neither gates the main container nor restarts
/// anything; the pod stays not Ready (R17, R32, R60, R61).
#[test]
fn b_ready_failing_r17_r32() {
    let mut sim = pod(Ctr::new("sidecar").probe(Readiness, t(0, 10, 3), ProbeScript::Fail));
    sim.run_for(secs(60));
    assert_eq!(state(&sim, "main"), "running", "readiness does not gate the next container");
    assert_eq!(condition(&sim, "Ready"), "False");
    assert_eq!(condition(&sim, "ContainersReady"), "False");
    assert_eq!(rc(&sim, "sidecar"), 0);
    let ready = sim.engine().status().conditions.iter().flatten().find(|c| c.type_ == "Ready").cloned().unwrap();
    assert_eq!(ready.reason.as_deref(), Some("ContainersNotReady"));
    assert_eq!(ready.message.as_deref(), Some("containers with unready status: [sidecar]"));
    assert!(has_event(&sim, "Unhealthy", "Readiness probe failed: exit status 1"));
}

/// B-LIVE-EXEC-RESTART / -HTTP-RESTART / -LOCAL-REDIRECT / -EXEC-TIMEOUT(-FAIL) / -PROBE-TGPS
/// and B-STARTUP-FAIL / -STARTUP-PROBE-TGPS / -GRPC-FAIL: one failure restarts the sidecar
/// once (R29, R18, R48); B-LIVE-EXEC-OK / -TCP-OK / -HTTP-OK / -GRPC-OK: no restart.
#[test]
fn b_liveness_and_startup_restart_counts_r18_r29() {
    let cases: Vec<(&str, Ctr, i32)> = vec![
        (
            "B-LIVE-EXEC-RESTART",
            Ctr::new("sidecar").probe(
                Liveness,
                Timing { timeout: Some(5), ..t(15, 10, 1) },
                ProbeScript::FailAfter(secs(10)),
            ),
            1,
        ),
        ("B-LIVE-EXEC-OK", Ctr::new("sidecar").probe(Liveness, t(15, 10, 1), ProbeScript::Pass), 0),
        (
            "B-LIVE-EXEC-TIMEOUT",
            Ctr::new("sidecar").probe(Liveness, Timing { timeout: Some(1), ..t(0, 10, 1) }, ProbeScript::Hang),
            1,
        ),
        (
            "B-STARTUP-FAIL",
            Ctr::new("sidecar").probe(Startup, t(15, 10, 3), ProbeScript::Fail).probe(
                Liveness,
                t(0, 10, 3),
                ProbeScript::Pass,
            ),
            1,
        ),
        (
            "B-LIVE-HTTP-RESTART",
            Ctr::new("sidecar").probe(
                Liveness,
                Timing { timeout: Some(5), ..t(15, 10, 1) },
                ProbeScript::FailAfter(secs(10)),
            ),
            1,
        ),
        (
            "B-LIVE-LOCAL-REDIRECT",
            Ctr::new("sidecar").probe(Liveness, t(15, 10, 1), ProbeScript::FailAfter(secs(10))),
            1,
        ),
        ("B-LIVE-TCP-OK", Ctr::new("sidecar").probe(Liveness, t(15, 10, 1), ProbeScript::Pass), 0),
        ("B-LIVE-HTTP-OK", Ctr::new("sidecar").probe(Liveness, t(15, 10, 5), ProbeScript::Pass), 0),
        (
            "B-LIVE-EXEC-TIMEOUT-FAIL",
            Ctr::new("sidecar").probe(Liveness, Timing { timeout: Some(1), ..t(0, 10, 1) }, ProbeScript::Hang),
            1,
        ),
        ("B-GRPC-OK", Ctr::new("sidecar").probe(Liveness, t(0, 10, 3), ProbeScript::Pass), 0),
        ("B-GRPC-FAIL", Ctr::new("sidecar").probe(Liveness, t(60, 10, 1), ProbeScript::Fail), 1),
    ];
    for (id, sidecar, want) in cases {
        let mut sim = pod(sidecar);
        // Wait long enough for one restart, not for a second (the back-off and initial delays).
        let got = restarts_over(&mut sim, 65);
        assert_eq!(got.min(1), want, "{id}");
        if want == 0 {
            assert_eq!(got, 0, "{id}");
        }
        assert_eq!(rc(&sim, "main"), 0, "{id}: the main container is untouched (R27)");
    }
}

/// B-READY-EXEC-TIMEOUT: a readiness probe that times out keeps the pod not Ready (R32).
#[test]
fn b_ready_exec_timeout_r32() {
    let mut sim =
        pod(Ctr::new("sidecar").probe(Readiness, Timing { timeout: Some(1), ..t(0, 10, 3) }, ProbeScript::Hang));
    sim.run_for(secs(60));
    assert_eq!(condition(&sim, "Ready"), "False");
    assert_eq!(rc(&sim, "sidecar"), 0);
    assert!(has_event(&sim, "Unhealthy", "Readiness probe failed: command timed out after 1s"));
}

/// B-LIVE-MONOTONIC: repeated liveness failures restart the sidecar again and again with
/// growing back-off, the count never decreasing (R26, R29).
#[test]
fn b_live_monotonic_r26_r29() {
    let mut sim = pod(Ctr::new("sidecar").probe(Liveness, t(5, 10, 1), ProbeScript::Fail));
    let got = restarts_over(&mut sim, 14 * 60);
    assert!(got >= 5, "{got}");
    assert!(has_event(&sim, "Killing", "Init container sidecar failed liveness probe"));
}

/// B-LIVE-NONLOCAL-REDIRECT: a warning is an event, not a failure (R31).
#[test]
fn b_live_nonlocal_redirect_warning() {
    let body = "Probe terminated redirects, Response body: <a href=\"http://0.0.0.0/\">Found</a>.";
    let mut sim = pod(Ctr::new("sidecar").probe(Liveness, t(0, 10, 1), ProbeScript::Warn(body.into())));
    sim.run_for(secs(60));
    assert_eq!(rc(&sim, "sidecar"), 0);
    assert!(sim.events().iter().any(|e| e.reason == "ProbeWarning" && e.message.contains(body)));
}

/// B-STARTUP-DELAYS-LIVENESS: liveness does not run before startup succeeds (R31).
#[test]
fn b_startup_delays_liveness_r31() {
    let mut sim = pod(Ctr::new("sidecar").probe(Startup, t(0, 10, 60), ProbeScript::Fail).probe(
        Liveness,
        t(0, 10, 1),
        ProbeScript::Fail,
    ));
    assert_eq!(restarts_over(&mut sim, 240), 0);
    assert!(!sim.timeline().iter().any(|e| e.mark == Mark::Probe(ProbeKind::Liveness, false)));
    assert_eq!(state(&sim, "main"), "waiting:PodInitializing", "the main container waits for started (R16)");
}

/// B-LIVE-AFTER-STARTUP: once started, liveness runs (a period later) and a failure restarts
/// the sidecar (R31).
#[test]
fn b_live_after_startup_r31() {
    let mut sim = pod(Ctr::new("sidecar").probe(Startup, t(0, 10, 60), ProbeScript::PassAfter(secs(10))).probe(
        Liveness,
        t(0, 10, 1),
        ProbeScript::Fail,
    ));
    sim.run_for(secs(19));
    assert_eq!(rc(&sim, "sidecar"), 0, "started at 10 s; liveness waits its 10 s period");
    sim.run_for(secs(2));
    assert_eq!(rc(&sim, "sidecar"), 1);
}

/// B-READY-AFTER-STARTUP: readiness runs the moment startup succeeds, not a period later (R31).
#[test]
fn b_ready_after_startup_r31() {
    let mut sim = pod(Ctr::new("sidecar").probe(Startup, t(0, 5, 120), ProbeScript::PassAfter(secs(32))).probe(
        Readiness,
        t(0, 30, 3),
        ProbeScript::Pass,
    ));
    assert!(sim.run_while_not(secs(120), |s| is_started(s, "sidecar")));
    let started_at = sim.elapsed();
    assert!(sim.run_while_not(secs(120), |s| condition(s, "Ready") == "True"));
    assert!(sim.elapsed() - started_at <= secs(25), "ready {:?} after started", sim.elapsed() - started_at);
    assert_eq!(sim.elapsed(), started_at, "in the same instant");
}

/// B-LIVE-PROBE-TGPS: a liveness kill uses the probe-level grace, not the pod's 500 s (R48).
#[test]
fn b_live_probe_tgps_r48() {
    for kind in [Liveness, Startup] {
        let timing = Timing { termination_grace: Some(5), ..t(10, 10, 1) };
        let mut sim = PodBuilder::new("Always")
            .grace(500)
            .sidecar(Ctr::new("sidecar").ignores_term().probe(kind, timing, ProbeScript::Fail))
            .container(Ctr::new("main"))
            .sim();
        assert!(sim.run_while_not(secs(40), |s| rc(s, "sidecar") >= 1), "{kind:?}");
        let killed = podvisor_sim::order::times(sim.timeline(), "sidecar", |m| *m == Mark::Killed);
        assert_eq!(killed, [15.0], "{kind:?}: failure at 10 s + probe grace 5 s");
    }
}

/// B-UNREADY-ON-TERMINATION: readiness keeps running during termination, so the pod turns
/// NotReady (R40).
#[test]
fn b_unready_on_termination_r40() {
    let mut sim = PodBuilder::new("Always")
        .grace(30)
        .sidecar(Ctr::new("sidecar").term(30).probe(Readiness, t(5, 2, 1), ProbeScript::UntilStopSignal))
        .container(Ctr::new("main"))
        .sim();
    assert!(sim.run_while_not(secs(30), |s| condition(s, "Ready") == "True"));
    sim.delete(None);
    assert!(sim.run_while_not(secs(60), |s| condition(s, "Ready") == "False"));
}

/// B-NO-LIVENESS-ON-TERMINATION: no liveness failure is recorded once termination began (R40).
#[test]
fn b_no_liveness_on_termination_r40() {
    let mut sim = PodBuilder::new("Always")
        .grace(30)
        .sidecar(Ctr::new("sidecar").term(30).probe(Readiness, t(5, 2, 1), ProbeScript::UntilStopSignal).probe(
            Liveness,
            t(0, 1, 1),
            ProbeScript::UntilStopSignal,
        ))
        .container(Ctr::new("main"))
        .sim();
    assert!(sim.run_while_not(secs(30), |s| condition(s, "Ready") == "True"));
    sim.delete(None);
    assert!(sim.run_while_not(secs(60), |s| condition(s, "Ready") == "False"));
    sim.run_for(secs(60));
    assert!(!has_event(&sim, "Unhealthy", "Liveness probe failed"));
    assert!(!has_event(&sim, "Killing", "failed liveness probe"));
}
