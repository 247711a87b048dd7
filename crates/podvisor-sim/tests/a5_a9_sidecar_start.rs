//! Scenarios A5, A6 and A9 of the e2e catalogue: sidecar start ordering, sidecars in `Never`
//! pods, and sidecars with startup probes.

mod common;

use common::*;
use podvisor_engine::{Hook, ProbeKind};
use podvisor_sim::order::*;
use podvisor_sim::*;

/// A5-SC-SERIAL-MIXED: sidecars start at their own position; later init containers wait for
/// them to be started; sidecars are stopped when the regular container finishes (R13–R16, R36).
#[test]
fn a5_sc_serial_mixed_r13_r14_r16_r36() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1))
        .sidecar(Ctr::new("restartable-init-1").run(600))
        .init(Ctr::new("init-2").run(1))
        .sidecar(Ctr::new("restartable-init-2").run(600))
        .init(Ctr::new("init-3").run(1))
        .container(Ctr::new("regular-1").run(1))
        .sim();
    assert!(sim.run_to_end(secs(300)));
    assert_eq!(sim.phase(), "Succeeded");
    let tl = sim.timeline();
    let (ri1, ri2) = ("restartable-init-1", "restartable-init-2");
    assert!(exits_before_start(tl, "init-1", ri1), "init-1 starts and exits before RI-1 starts");
    assert!(starts_before(tl, ri1, "init-2") && run_together(tl, ri1, "init-2"));
    assert!(exits_before_start(tl, "init-2", ri2), "init-2 starts and exits before RI-2 starts");
    assert!(starts_before(tl, ri2, "init-3"));
    assert!(run_together(tl, ri1, ri2) && run_together(tl, ri1, "init-3") && run_together(tl, ri2, "init-3"));
    assert!(exits_before_start(tl, "init-3", "regular-1"), "init-3 starts and exits before regular-1");
    assert!(run_together(tl, ri1, "regular-1") && run_together(tl, ri2, "regular-1"));
    assert_eq!(state(&sim, ri1), "terminated:0:Completed", "stopped on SIGTERM after regular-1 finished");
}

/// A5-SC-IMG-UPDATE-DURING-INIT: a sidecar's image change restarts it alone, even while later
/// init containers run, under every policy (R69).
#[test]
fn a5_sc_img_update_during_init_r69() {
    for policy in ["Always", "OnFailure"] {
        let mut sim = PodBuilder::new(policy)
            .init(Ctr::new("init-1").run(1))
            .sidecar(Ctr::new("restartable-init-1").run(600).term(5))
            .init(Ctr::new("init-2").run(600))
            .sidecar(Ctr::new("restartable-init-2").run(1).term(1))
            .container(Ctr::new("regular-1").run(1).term(1))
            .sim();
        assert!(sim.run_while_not(secs(10), |s| is_started(s, "init-2")));
        assert_eq!(sim.phase(), "Pending");
        sim.set_image("restartable-init-1", "alpine:3");
        let limit = sim.elapsed() + secs(60);
        assert!(
            sim.run_while_not(limit, |s| rc(s, "restartable-init-1") > 0
                && state(s, "restartable-init-1") == "running")
        );
        assert_eq!(image(&sim, "restartable-init-1"), "alpine:3");
        assert!(has_event(&sim, "Killing", "Init container restartable-init-1 definition changed"));
        sim.run_for(secs(30));
        assert_eq!(sim.phase(), "Pending", "{policy}");
        let tl = sim.timeline();
        assert_eq!((starts(tl, "restartable-init-2"), starts(tl, "regular-1")), (0, 0));
        assert_eq!((starts(tl, "init-1"), starts(tl, "init-2")), (1, 1));
    }
}

/// A5-SC-IMG-UPDATE-DURING-INIT-NEVER: the same under Never; then the failing init container
/// fails the pod and the sidecar is killed after it (R69, R20, R36).
#[test]
fn a5_sc_img_update_during_init_never_r69_r20() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1))
        .sidecar(Ctr::new("restartable-init-1").run(600).term(5))
        .init(Ctr::new("init-2").run(30).exit(1))
        .sidecar(Ctr::new("restartable-init-2").run(1).term(1))
        .container(Ctr::new("regular-1").run(1).term(1))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| is_started(s, "init-2")));
    sim.set_image("restartable-init-1", "alpine:3");
    let limit = sim.elapsed() + secs(60);
    assert!(
        sim.run_while_not(limit, |s| rc(s, "restartable-init-1") == 1 && state(s, "restartable-init-1") == "running")
    );
    assert_eq!(image(&sim, "restartable-init-1"), "alpine:3");
    assert!(sim.run_to_end(secs(120)));
    assert_eq!(sim.phase(), "Failed");
    assert!(exits_before(sim.timeline(), "init-2", "restartable-init-1"));
}

/// A6-NEVER-CONTINUOUS: a Never pod with a sidecar succeeds; the sidecar is not restarted (R36–R38).
#[test]
fn a6_never_continuous_r36_r38() {
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("restartable-init-1").run(600))
        .container(Ctr::new("regular-1").run(1))
        .sim();
    assert!(sim.run_to_end(secs(300)));
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(starts(sim.timeline(), "restartable-init-1"), 1);
}

/// A6-NEVER-IMG-UPDATE: the changed sidecar restarts alone under Never (R69).
#[test]
fn a6_never_img_update_r69() {
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("restartable-init-1").run(600))
        .sidecar(Ctr::new("restartable-init-2").run(600))
        .container(Ctr::new("regular-1").run(60))
        .sim();
    assert!(sim.run_while_not(secs(5), |s| s.phase() == "Running"));
    sim.set_image("restartable-init-1", "alpine:3");
    sim.run_for(secs(5));
    assert_eq!(state(&sim, "restartable-init-1"), "running");
    assert_eq!(image(&sim, "restartable-init-1"), "alpine:3");
    let tl = sim.timeline();
    assert_eq!(
        (starts(tl, "restartable-init-1"), starts(tl, "restartable-init-2"), starts(tl, "regular-1")),
        (2, 1, 1)
    );
}

/// A6-NEVER-BAD-IMAGE: an unpullable sidecar leaves the pod Pending under Never (R22).
#[test]
fn a6_never_bad_image_r22() {
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("restartable-init-1").image("registry.invalid/nope:1"))
        .container(Ctr::new("regular-1"))
        .sim();
    sim.unpullable("registry.invalid/nope:1");
    sim.run_for(secs(60));
    assert_eq!(state(&sim, "restartable-init-1"), "waiting:ImagePullBackOff");
    assert_eq!(sim.phase(), "Pending");
    assert_eq!(starts(sim.timeline(), "regular-1"), 0);
}

/// A6-NEVER-EXIT0-LOOP / -EXIT1-LOOP: a sidecar restarts after exiting, whatever its code,
/// although the pod is Never; its exit codes never fail the pod (R21, R25, R38).
#[test]
fn a6_never_exit_loop_r21_r25_r38() {
    for code in [0, 1] {
        let mut sim = PodBuilder::new("Never")
            .sidecar(Ctr::new("restartable-init-1").run(5).exit(code))
            .init(Ctr::new("init-1").run(5))
            .container(Ctr::new("regular-1").run(60))
            .sim();
        assert!(sim.run_to_end(secs(300)), "exit {code}");
        assert_eq!(sim.phase(), "Succeeded", "exit {code}");
        let tl = sim.timeline();
        assert!(starts_before(tl, "restartable-init-1", "regular-1"));
        assert!(starts_before(tl, "regular-1", "restartable-init-1"), "restarted after regular-1 started");
        assert!(rc(&sim, "restartable-init-1") >= 2);
    }
}

/// A6-NEVER-INIT-BEFORE-SC-FAILS: a failed init container before the sidecar fails the pod; the
/// sidecar never starts (R20).
#[test]
fn a6_never_init_before_sc_fails_r20() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("init-1").run(1).exit(1))
        .sidecar(Ctr::new("restartable-init-1").run(600))
        .container(Ctr::new("regular-1").run(600))
        .sim();
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(starts(sim.timeline(), "restartable-init-1"), 0);
}

/// A6-NEVER-INIT-AFTER-SC-FAILS: the running sidecar is killed when the init container after it
/// fails; the pod fails (R20, R36).
#[test]
fn a6_never_init_after_sc_fails_r20_r36() {
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("restartable-init-1").run(5).exit(1))
        .init(Ctr::new("init-1").run(1).exit(1))
        .container(Ctr::new("regular-1").run(600))
        .sim();
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.phase(), "Failed");
    assert!(run_together(sim.timeline(), "restartable-init-1", "init-1"));
    assert_eq!(starts(sim.timeline(), "regular-1"), 0);
}

/// A9-STARTUP-SERIAL: the next container waits for the sidecar's startup probe (R16).
#[test]
fn a9_startup_serial_r16() {
    let t = Timing::default();
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("restartable-init-1").start_delay(10).run(600).probe(
            ProbeKind::Startup,
            t,
            ProbeScript::WhenStarted,
        ))
        .sidecar(Ctr::new("restartable-init-2").start_delay(10).run(600).probe(
            ProbeKind::Startup,
            t,
            ProbeScript::WhenStarted,
        ))
        .container(Ctr::new("regular-1").run(1))
        .sim();
    assert!(sim.run_to_end(secs(300)));
    let tl = sim.timeline();
    assert!(starts_before(tl, "restartable-init-1", "restartable-init-2"));
    assert!(starts_before(tl, "restartable-init-2", "regular-1"));
    // Probes at 0 s (fails) and 10 s (passes) for each sidecar: the app starts the moment the
    // second one passes, with no relist gap.
    assert_eq!(times(tl, "regular-1", |m| *m == Mark::Starting), [20.0]);
}

/// A9-STARTUP-FAIL-IMG-UPDATE: a sidecar failing its startup probe restarts under every policy,
/// keeps the pod Pending, and an image change restarts it with the new image (R18, R69).
#[test]
fn a9_startup_fail_img_update_r18_r69() {
    for policy in ["Never", "OnFailure", "Always"] {
        let t = Timing { initial_delay: Some(20), failure_threshold: Some(1), ..Default::default() };
        let mut sim = PodBuilder::new(policy)
            .sidecar(Ctr::new("restartable-init-1").run(600))
            .sidecar(Ctr::new("restartable-init-2").run(600).probe(ProbeKind::Startup, t, ProbeScript::Fail))
            .container(Ctr::new("regular-1").run(1))
            .sim();
        assert!(sim.run_while_not(secs(120), |s| rc(s, "restartable-init-2") >= 1), "{policy}");
        sim.set_image("restartable-init-2", "alpine:3");
        let limit = sim.elapsed() + secs(30);
        assert!(sim.run_while_not(limit, |s| image(s, "restartable-init-2") == "alpine:3"
            && rc(s, "restartable-init-2") >= 2));
        assert_eq!(sim.phase(), "Pending", "{policy}");
        let tl = sim.timeline();
        assert_eq!(starts(tl, "regular-1"), 0);
        assert_eq!(starts(tl, "restartable-init-1"), 1);
        assert!(has_event(&sim, "Killing", "Init container restartable-init-2 failed startup probe"));
    }
}

/// A9-STARTUP-FAIL-PRESTOP: the startup-probe kill runs preStop; the pod stays Pending (R18, R48, R57).
#[test]
fn a9_startup_fail_prestop_r18_r48_r57() {
    let t = Timing { initial_delay: Some(5), failure_threshold: Some(1), ..Default::default() };
    let mut sim = PodBuilder::new("Always")
        .sidecar(
            Ctr::new("restartable-init-1")
                .run(600)
                .term(15)
                .probe(ProbeKind::Startup, t, ProbeScript::Fail)
                .pre_stop(Some(1), false),
        )
        .container(Ctr::new("regular-1").run(1))
        .sim();
    assert!(sim.run_while_not(secs(120), |s| rc(s, "restartable-init-1") >= 2));
    assert_eq!(sim.phase(), "Pending");
    let tl = sim.timeline();
    assert!(!times(tl, "restartable-init-1", |m| *m == Mark::HookStart(Hook::PreStop)).is_empty());
    assert!(!times(tl, "restartable-init-1", |m| *m == Mark::Exiting(0)).is_empty(), "exits gracefully on SIGTERM");
    assert_eq!(starts(tl, "regular-1"), 0);
}

/// A9-STARTUP-RECOVERS: a sidecar that fails its first run and then passes its startup probe
/// lets the regular container start (R18, R21).
#[test]
fn a9_startup_recovers_r18_r21() {
    let sidecar_t =
        Timing { initial_delay: Some(3), period: Some(2), failure_threshold: Some(10), ..Default::default() };
    let regular_t = Timing { initial_delay: Some(5), period: Some(5), ..Default::default() };
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("buggy-restartable-init").run(0).exit(1).then().run(120).probe(
            ProbeKind::Startup,
            sidecar_t,
            ProbeScript::Pass,
        ))
        .container(Ctr::new("regular-container").probe(ProbeKind::Startup, regular_t, ProbeScript::Pass))
        .sim();
    assert!(sim.run_while_not(secs(90), |s| rc(s, "buggy-restartable-init") > 0));
    assert!(sim.run_while_not(secs(90), |s| state(s, "buggy-restartable-init") == "running"));
    assert!(sim.run_while_not(secs(120), |s| state(s, "regular-container") == "running"));
}

/// R28: a sidecar restarting after initialization does not re-gate running regular containers.
#[test]
fn sidecar_restart_after_init_does_not_touch_regular_r27_r28_r53() {
    let t = Timing { period: Some(1), failure_threshold: Some(10), ..Default::default() };
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("proxy").start_delay(3).run(5).exit(1).probe(ProbeKind::Startup, t, ProbeScript::WhenStarted))
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(120));
    assert!(rc(&sim, "proxy") >= 3);
    assert_eq!(rc(&sim, "app"), 0);
    assert_eq!(starts(sim.timeline(), "app"), 1);
    assert_eq!(sim.phase(), "Running", "a crash-looping sidecar after initialization keeps the pod Running (R57)");
}
