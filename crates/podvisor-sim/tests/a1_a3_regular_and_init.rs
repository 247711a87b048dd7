//! Scenarios A1–A3 of the e2e catalogue: regular and regular-init containers.

mod common;

use common::*;
use podvisor_engine::ProbeKind;
use podvisor_sim::order::*;
use podvisor_sim::*;

const POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];

/// A1-IMG-UPDATE: an image change restarts only that container, under every policy (R70).
#[test]
fn a1_img_update_restarts_only_that_container_r70() {
    for policy in POLICIES {
        let mut sim = PodBuilder::new(policy)
            .container(Ctr::new("regular-1").run(60))
            .container(Ctr::new("regular-2").run(60))
            .sim();
        assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"), "{policy}");
        sim.set_image("regular-1", "alpine:3");
        sim.run_for(secs(20));
        assert_eq!(state(&sim, "regular-1"), "running", "{policy}");
        assert_eq!(image(&sim, "regular-1"), "alpine:3", "{policy}");
        assert!(rc(&sim, "regular-1") > 0, "{policy}");
        assert_eq!(rc(&sim, "regular-2"), 0, "{policy}");
        assert!(has_event(&sim, "Killing", "Container regular-1 definition changed, will be restarted"));
    }
}

/// A1-IMG-UPDATE-DURING-INIT: a changed regular container starts later with its new image (R70).
#[test]
fn a1_img_update_during_init_r70() {
    for policy in POLICIES {
        let mut sim = PodBuilder::new(policy)
            .init(Ctr::new("init-1").run(60))
            .container(Ctr::new("regular-1").run(10).term(1))
            .container(Ctr::new("regular-2").run(10).term(1))
            .sim();
        assert!(sim.run_while_not(secs(5), |s| is_started(s, "init-1") && s.phase() == "Pending"));
        assert_eq!(state(&sim, "init-1"), "running", "a running regular init container is started (R54)");
        sim.set_image("regular-1", "alpine:3");
        sim.run_for(secs(50));
        assert_eq!(sim.phase(), "Pending", "{policy}");
        assert_eq!(starts(sim.timeline(), "regular-1"), 0);
        assert!(sim.run_while_not(secs(120), |s| s.phase() == "Running"), "{policy}");
        assert_eq!(state(&sim, "regular-1"), "running");
        assert_eq!(state(&sim, "regular-2"), "running");
        assert_eq!((rc(&sim, "regular-1"), rc(&sim, "regular-2")), (0, 0));
        assert_eq!(image(&sim, "regular-1"), "alpine:3");
    }
}

/// A1-IMG-UPDATE-AFTER-FAILED-STARTUP / -LIVENESS: a restarted container picks up the new image.
#[test]
fn a1_img_update_after_failed_probe_r34_r70() {
    for kind in [ProbeKind::Startup, ProbeKind::Liveness] {
        for policy in ["Always", "OnFailure"] {
            let t = Timing { initial_delay: Some(20), failure_threshold: Some(1), ..Default::default() };
            let mut sim = PodBuilder::new(policy)
                .container(Ctr::new("regular-1").run(600).probe(kind, t, ProbeScript::Fail))
                .sim();
            assert!(sim.run_while_not(secs(120), |s| rc(s, "regular-1") >= 1), "{kind:?} {policy}");
            sim.set_image("regular-1", "alpine:3");
            let deadline = sim.elapsed() + secs(60);
            assert!(sim.run_while_not(deadline, |s| image(s, "regular-1") == "alpine:3" && rc(s, "regular-1") > 1));
        }
    }
}

/// A1-IMG-UPDATE-DURING-TERMINATION: nothing restarts once termination began (R41, R72).
#[test]
fn a1_img_update_during_termination_r41_r72() {
    for policy in POLICIES {
        let mut sim = PodBuilder::new(policy).container(Ctr::new("regular-1").run(10).term(60).exit(1)).sim();
        sim.run_for(secs(2));
        sim.delete(Some(120));
        sim.set_image("regular-1", "alpine:3");
        sim.run_for(secs(50));
        assert_eq!(rc(&sim, "regular-1"), 0, "{policy}");
        assert!(sim.run_to_end(secs(62)), "gone within the 60 s SIGTERM handler, not the 120 s grace");
        assert_eq!(starts(sim.timeline(), "regular-1"), 1);
    }
}

/// A2-INIT-SERIAL: init containers run one after another, then the regular container (R13, R14).
#[test]
fn a2_init_serial_r13_r14() {
    let t = Timing { period: Some(1), ..Default::default() };
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1))
        .init(Ctr::new("init-2").run(1))
        .init(Ctr::new("init-3").run(1))
        .container(Ctr::new("regular-1").start_delay(5).run(1).probe(ProbeKind::Startup, t, ProbeScript::WhenStarted))
        .sim();
    assert!(sim.run_to_end(secs(60)));
    let tl = sim.timeline();
    for (a, b) in [("init-1", "init-2"), ("init-2", "init-3"), ("init-3", "regular-1")] {
        assert!(starts_before(tl, a, b) && exits_before(tl, a, b), "{a} before {b}");
    }
    assert_eq!(sim.phase(), "Succeeded");
}

/// A2-INIT-FAIL-NEVER: a failed init container fails a Never pod; nothing after it starts (R20).
#[test]
fn a2_init_fail_never_r20() {
    let mut sim =
        PodBuilder::new("Never").init(Ctr::new("init-1").run(1).exit(1)).container(Ctr::new("regular-1").run(1)).sim();
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(times(sim.timeline(), "init-1", |m| matches!(m, Mark::Exiting(1))), [1.0], "init-1 ran once and failed");
    assert_eq!(starts(sim.timeline(), "regular-1"), 0);
}

/// A2-INIT-BEFORE-POSTSTART and A2-POSTSTART-BLOCKS-NEXT: postStart blocks the next start (R19, R24).
#[test]
fn a2_poststart_blocks_next_r19_r24() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1))
        .container(Ctr::new("regular-1").run(10).post_start(Some(1), false))
        .container(Ctr::new("regular-2").run(1))
        .sim();
    assert!(sim.run_to_end(secs(60)));
    let tl = sim.timeline();
    let hook_start = times(tl, "regular-1", |m| *m == Mark::HookStart(podvisor_engine::Hook::PostStart));
    let hook_end = times(tl, "regular-1", |m| *m == Mark::HookEnd(podvisor_engine::Hook::PostStart));
    let init_exit = times(tl, "init-1", |m| matches!(m, Mark::Exiting(_)));
    let r2_start = times(tl, "regular-2", |m| *m == Mark::Starting);
    assert!(init_exit[0] <= hook_start[0], "init-1 exits before the postStart hook");
    assert!(hook_end[0] <= r2_start[0], "postStart of regular-1 ends before regular-2 starts");
    assert!(r2_start[0] >= 2.0);
}

/// A2-REGULAR-RESTART-ALWAYS: an exiting container restarts with back-off (R26, R33).
#[test]
fn a2_regular_restart_always_r26_r33() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("regular-1").run(1).exit(1)).sim();
    assert!(sim.run_while_not(secs(120), |s| rc(s, "regular-1") >= 3));
    sim.run_for(secs(1));
    let tl = sim.timeline();
    assert!(starts_before(tl, "regular-1", "regular-1") && exits_before(tl, "regular-1", "regular-1"));
    // 0 s, 10 s, 20 s waits: starts at 0, 1, 12, 33 (R26: the first restart is immediate).
    assert_eq!(times(tl, "regular-1", |m| *m == Mark::Starting), [0.0, 1.0, 12.0, 33.0]);
    assert!(has_event(&sim, "BackOff", "Back-off restarting failed container regular-1 in pod pod_default(uid-pod)"));
}

/// A2-INIT-BAD-IMAGE: an unpullable init image leaves the pod Pending; nothing starts (R22).
#[test]
fn a2_init_bad_image_r22() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init1-1").image("registry.invalid/nope:1"))
        .container(Ctr::new("regular-1"))
        .sim();
    sim.unpullable("registry.invalid/nope:1");
    sim.run_for(secs(120));
    assert_eq!(state(&sim, "init1-1"), "waiting:ImagePullBackOff");
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(starts(sim.timeline(), "init1-1") + starts(sim.timeline(), "regular-1"), 0);
    assert!(has_event(&sim, "Failed", "Error: ErrImagePull"));
}

/// A2-INIT-NOT-RERUN-ON-REGULAR-RESTART: completed init containers are never re-run (R35).
#[test]
fn a2_init_not_rerun_on_regular_restart_r35() {
    let mut sim = PodBuilder::new("Always")
        .init(Ctr::new("init-1").run(1))
        .init(Ctr::new("init-2").run(1))
        .init(Ctr::new("init-3").run(1))
        .container(Ctr::new("regular-1").run(10).exit(255))
        .sim();
    assert!(sim.run_while_not(secs(120), |s| rc(s, "regular-1") >= 3));
    for init in ["init-1", "init-2", "init-3"] {
        assert_eq!(starts(sim.timeline(), init), 1, "{init} ran once");
    }
    assert!(starts_before(sim.timeline(), "regular-1", "regular-1"));
}

/// A2-GRACE-PLAIN and A2-GRACE-LONG-PRESTOP: deletion ends within grace, a never-ending preStop
/// is cut at the grace and the container killed 2 s later (R42, R44).
#[test]
fn a2_grace_plain_and_long_prestop_r42_r44() {
    let mut sim = PodBuilder::new("Always").grace(30).container(Ctr::new("regular1").ignores_term()).sim();
    sim.run_for(secs(1));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(times(sim.timeline(), "regular1", |m| *m == Mark::Killed), [31.0]);

    let mut sim =
        PodBuilder::new("Always").grace(30).container(Ctr::new("regular1").ignores_term().pre_stop(None, false)).sim();
    sim.run_for(secs(1));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(times(sim.timeline(), "regular1", |m| *m == Mark::Killed), [33.0], "30 s for the hook, then 2 s");
}

/// A2-PRESTOP-ON-STARTUP-FAIL / -LIVENESS-FAIL: a probe-triggered kill runs preStop, then SIGTERM (R48).
#[test]
fn a2_prestop_on_probe_failure_r48() {
    for kind in [ProbeKind::Startup, ProbeKind::Liveness] {
        let t = Timing { initial_delay: Some(10), failure_threshold: Some(1), ..Default::default() };
        let mut sim = PodBuilder::new("Never")
            .container(
                Ctr::new("regular-1").run(100).term(15).probe(kind, t, ProbeScript::Fail).pre_stop(Some(1), false),
            )
            .sim();
        assert!(sim.run_to_end(secs(120)), "{kind:?}");
        let tl = sim.timeline();
        let pre = times(tl, "regular-1", |m| *m == Mark::HookStart(podvisor_engine::Hook::PreStop));
        let term = times(tl, "regular-1", |m| *m == Mark::Signalled("SIGTERM".into()));
        assert_eq!((pre, term), (vec![10.0], vec![11.0]), "{kind:?}: preStop at the failure, SIGTERM after it");
        assert_eq!(state(&sim, "regular-1"), "terminated:0:Completed");
        assert_eq!(starts(tl, "regular-1"), 1, "Never: not restarted");
    }
}

/// A2-TERMINATING-READINESS-NOT-LIVENESS: during the kill, readiness keeps probing, liveness does not (R40).
#[test]
fn a2_terminating_readiness_not_liveness_r40() {
    let live = Timing { initial_delay: Some(10), period: Some(1), failure_threshold: Some(1), ..Default::default() };
    let ready = Timing { initial_delay: Some(1), period: Some(1), ..Default::default() };
    let mut sim = PodBuilder::new("Never")
        .grace(100)
        .container(
            Ctr::new("regular-1")
                .run(100)
                .term(15)
                .probe(ProbeKind::Liveness, live, ProbeScript::Fail)
                .probe(ProbeKind::Readiness, ready, ProbeScript::Pass)
                .pre_stop(Some(10), false),
        )
        .sim();
    sim.run_for(secs(11));
    sim.delete(None);
    sim.run_for(secs(20));
    let tl = sim.timeline();
    let liveness = times(tl, "regular-1", |m| matches!(m, Mark::Probe(ProbeKind::Liveness, _)));
    let readiness = times(tl, "regular-1", |m| matches!(m, Mark::Probe(ProbeKind::Readiness, _)));
    assert_eq!(liveness, [10.0], "liveness ran once, failed, and stopped");
    assert!(readiness.iter().any(|t| *t > 12.0 && *t < 20.0), "readiness runs during preStop: {readiness:?}");
}

/// A2-SIDECAR-NO-LIVENESS-NO-RESTART-IN-PRESTOP: once termination began, the sidecar's liveness
/// probe stops and the sidecar is not restarted (R40, R41, R49).
#[test]
fn a2_sidecar_no_liveness_no_restart_in_prestop_r40_r41_r49() {
    let sidecar_live =
        Timing { initial_delay: Some(1), period: Some(1), failure_threshold: Some(1), ..Default::default() };
    let regular_live =
        Timing { initial_delay: Some(10), period: Some(1), failure_threshold: Some(1), ..Default::default() };
    let mut sim = PodBuilder::new("Never")
        .grace(100)
        .sidecar(Ctr::new("restartable-init-1").run(100).term(1).probe(
            ProbeKind::Liveness,
            sidecar_live,
            ProbeScript::FailAfter(secs(1000)),
        ))
        .container(
            Ctr::new("regular-1")
                .run(100)
                .term(15)
                .probe(ProbeKind::Liveness, regular_live, ProbeScript::Fail)
                .pre_stop(Some(40), false),
        )
        .sim();
    // regular-1 fails liveness at 10 s; under Never that ends the pod: its preStop runs, then
    // the sidecar is stopped after regular-1 and never restarted.
    assert!(sim.run_to_end(secs(200)));
    let tl = sim.timeline();
    let pre_stop = times(tl, "regular-1", |m| *m == Mark::HookStart(podvisor_engine::Hook::PreStop))[0];
    let sidecar_probes_after = times(tl, "restartable-init-1", |m| matches!(m, Mark::Probe(ProbeKind::Liveness, _)))
        .into_iter()
        .filter(|t| *t > pre_stop)
        .count();
    assert_eq!(sidecar_probes_after, 0, "(a) no sidecar liveness probe after termination began");
    assert_eq!(starts(tl, "restartable-init-1"), 1, "(b) the sidecar is not restarted during termination");
}

/// A3-INIT-IMG-UPDATE-AFTER-DONE / -INVALID: a completed init container ignores image changes (R71).
#[test]
fn a3_init_img_update_after_done_r71() {
    for new_image in ["alpine:3", "registry.invalid/nope:1"] {
        let mut sim = PodBuilder::new("Always")
            .init(Ctr::new("init-1").run(1))
            .container(Ctr::new("regular-1").run(20).exit(255))
            .sim();
        sim.unpullable("registry.invalid/nope:1");
        assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
        sim.set_image("init-1", new_image);
        sim.run_for(secs(30));
        assert_eq!(state(&sim, "init-1"), "terminated:0:Completed");
        assert_eq!(image(&sim, "init-1"), "busybox:1.36");
        assert_eq!(rc(&sim, "init-1"), 0);
        assert_eq!(starts(sim.timeline(), "init-1"), 1);
    }
}

/// A3-INIT-IMG-UPDATE-DURING-TERMINATION: no init container re-runs while the pod terminates (R41, R72).
#[test]
fn a3_init_img_update_during_termination_r72() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1))
        .container(Ctr::new("regular-1").run(20).term(20).exit(1))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
    sim.delete(None);
    sim.set_image("init-1", "alpine:3");
    sim.run_for(secs(15));
    assert_eq!(rc(&sim, "init-1"), 0);
    assert_eq!(image(&sim, "init-1"), "busybox:1.36");
}

/// A regular init container killed by the OOM killer counts as failed even with exit 0 (R14, HLP).
#[test]
fn init_oom_killed_fails_the_pod_r14() {
    let mut sim = PodBuilder::new("Never").init(Ctr::new("init-1").oom_after(1)).container(Ctr::new("regular-1")).sim();
    assert!(sim.run_to_end(secs(30)));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(state(&sim, "init-1"), "terminated:137:OOMKilled");
}
