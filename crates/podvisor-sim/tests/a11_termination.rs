//! Scenarios A11 of the e2e catalogue: termination of pods with sidecars.

mod common;

use common::*;
use podvisor_engine::Hook;
use podvisor_sim::order::*;
use podvisor_sim::*;

fn three_sidecars(policy: &str, sidecar: impl Fn(&str) -> Ctr, regular: Ctr) -> PodBuilder {
    PodBuilder::new(policy)
        .sidecar(sidecar("restartable-init-1"))
        .sidecar(sidecar("restartable-init-2"))
        .sidecar(sidecar("restartable-init-3"))
        .container(regular)
}

const RI: [&str; 3] = ["restartable-init-1", "restartable-init-2", "restartable-init-3"];

/// A11-TERM-REVERSE-ORDER: regular container first, then sidecars in reverse spec order (R43).
#[test]
fn a11_term_reverse_order_r43() {
    let mut sim = three_sidecars("Never", |n| Ctr::new(n).run(60).term(5), Ctr::new("regular-1").run(5)).sim();
    assert!(sim.run_to_end(secs(300)));
    for ri in RI {
        assert_eq!(state(&sim, ri), "terminated:0:Completed");
    }
    let tl = sim.timeline();
    assert!(
        starts_before(tl, RI[0], RI[1]) && starts_before(tl, RI[1], RI[2]) && starts_before(tl, RI[2], "regular-1")
    );
    for ri in RI {
        assert!(exits_before(tl, "regular-1", ri));
    }
    assert!(exits_before(tl, RI[2], RI[1]) && exits_before(tl, RI[1], RI[0]));
    // Each sidecar takes 5 s on SIGTERM and the next waits for it: 10, 15, 20 s.
    let exits: Vec<f64> = RI.iter().map(|n| times(tl, n, |m| matches!(m, Mark::Exiting(_)))[0]).collect();
    assert_eq!(exits, [20.0, 15.0, 10.0]);
    assert_eq!(sim.phase(), "Succeeded");
}

/// A11-TERM-IMG-UPDATE-DURING-DELETE: nothing restarts during deletion, and sidecars are
/// signalled as soon as the regular container is gone, far within the 180 s grace (R41, R43, R72).
#[test]
fn a11_term_img_update_during_delete_r41_r72() {
    for policy in ["Always", "OnFailure", "Never"] {
        let mut sim = PodBuilder::new(policy)
            .grace(180)
            .init(Ctr::new("init-1").run(1).term(5))
            .sidecar(Ctr::new("restartable-init-2").run(600).term(10))
            .sidecar(Ctr::new("restartable-init-3").run(600).term(10))
            .container(Ctr::new("regular-1").run(600).term(10))
            .sim();
        assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
        let t0 = sim.elapsed();
        sim.delete(Some(180));
        sim.set_image("restartable-init-2", "alpine:3");
        sim.run_for(secs(20));
        for n in ["init-1", "restartable-init-2", "restartable-init-3"] {
            assert_eq!(rc(&sim, n), 0, "{policy}: {n}");
        }
        assert!(sim.run_to_end(t0 + secs(60)), "{policy}");
        assert_eq!(sim.elapsed() - t0, secs(30), "10 s each: regular, then ri-3, then ri-2");
    }
}

/// A11-TERM-PRESTOP-NEVER-EXITS: never-ending preStop hooks are cut at the 30 s grace, then
/// every sidecar gets the 2 s minimum: all die together at 32 s (R44, R45).
#[test]
fn a11_term_prestop_never_exits_r44_r45() {
    let mut sim =
        three_sidecars("Never", |n| Ctr::new(n).run(60).term(5).pre_stop(None, false), Ctr::new("regular-1").run(5))
            .sim();
    assert!(sim.run_to_end(secs(300)));
    let tl = sim.timeline();
    for ri in RI {
        assert_eq!(state(&sim, ri), "terminated:137:Error");
        let hook = times(tl, ri, |m| *m == Mark::HookStart(Hook::PreStop))[0];
        let killed = times(tl, ri, |m| *m == Mark::Killed)[0];
        assert_eq!(killed - hook, 32.0, "{ri}: 30 s grace consumed by the hook + 2 s");
    }
    assert_eq!(sim.phase(), "Succeeded", "sidecar exit codes do not matter (R38)");
}

/// A11-TERM-SIMULTANEOUS-PRESTOP: all preStop hooks start together; only the stop signal is
/// ordered (R42).
#[test]
fn a11_term_simultaneous_prestop_r42() {
    let mut sim =
        three_sidecars("Never", |n| Ctr::new(n).run(60).term(5).pre_stop(Some(1), false), Ctr::new("regular-1").run(5))
            .sim();
    assert!(sim.run_to_end(secs(300)));
    let tl = sim.timeline();
    let hooks: Vec<f64> = RI.iter().map(|n| times(tl, n, |m| *m == Mark::HookStart(Hook::PreStop))[0]).collect();
    assert_eq!(hooks, [5.0, 5.0, 5.0]);
    assert!(exits_before(tl, RI[2], RI[1]) && exits_before(tl, RI[1], RI[0]));
    for ri in RI {
        assert_eq!(state(&sim, ri), "terminated:0:Completed");
        assert!(exits_before(tl, "regular-1", ri));
    }
}

/// A11-TERM-DURING-INIT-NO-HANG: never-started sidecars do not hold termination (R47).
#[test]
fn a11_term_during_init_no_hang_r47() {
    let mut sim = PodBuilder::new("Never")
        .init(Ctr::new("start-init").run(300).term(0))
        .sidecar(Ctr::new("restartable-init-1").run(60).term(5).pre_stop(Some(1), false))
        .sidecar(Ctr::new("restartable-init-2").run(60).term(5).pre_stop(Some(1), false))
        .sidecar(Ctr::new("restartable-init-3").run(60).term(5).pre_stop(Some(1), false))
        .container(Ctr::new("regular-1").run(5))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| is_started(s, "start-init")));
    assert_eq!(sim.phase(), "Pending");
    let t0 = sim.elapsed();
    sim.delete(Some(3));
    assert!(sim.run_to_end(t0 + secs(6)));
    assert!(sim.elapsed() - t0 < secs(6));
}

/// A11-TERM-NONSTARTED-SIDECAR: a sidecar that never passed its startup probe does not hold
/// termination to its 180 s grace (R47).
#[test]
fn a11_term_nonstarted_sidecar_r47() {
    let t = Timing { failure_threshold: Some(600), ..Default::default() };
    let mut sim = PodBuilder::new("Never")
        .grace(180)
        .init(Ctr::new("init-1").run(1).term(5))
        .sidecar(Ctr::new("restartable-init-2").run(600).term(1).probe(
            podvisor_engine::ProbeKind::Startup,
            t,
            ProbeScript::Fail,
        ))
        .sidecar(Ctr::new("restartable-init-3").run(600).term(1))
        .container(Ctr::new("regular-1").run(600).term(1))
        .sim();
    sim.run_for(secs(5));
    assert_eq!(sim.phase(), "Pending");
    assert!(!is_started(&sim, "restartable-init-2"));
    assert_eq!(state(&sim, "restartable-init-2"), "running");
    let t0 = sim.elapsed();
    sim.delete(Some(180));
    assert!(sim.run_to_end(t0 + secs(61)));
    assert!(sim.elapsed() - t0 <= secs(2));
}

/// A11-TERM-SIDECAR-NONZERO: after a deletion the phase follows the regular containers only (R50).
#[test]
fn a11_term_sidecar_nonzero_r50() {
    let mut sim = PodBuilder::new("Never")
        .grace(30)
        .sidecar(Ctr::new("restartable-init-1").run(600).term(1).exit(0))
        .sidecar(Ctr::new("restartable-init-2").run(600).term(1).exit(1))
        .sidecar(Ctr::new("restartable-init-3").run(600).term(1).exit(0))
        .container(Ctr::new("regular-1").run(600).term(1).exit(0))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
    sim.delete(Some(30));
    assert!(sim.run_to_end(secs(120)));
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(state(&sim, "regular-1"), "terminated:0:Completed");
    assert_eq!(state(&sim, "restartable-init-1"), "terminated:0:Completed");
    assert_eq!(state(&sim, "restartable-init-2"), "terminated:1:Error");
    assert_eq!(state(&sim, "restartable-init-3"), "terminated:0:Completed");
}

/// A11-TERM-SIDECAR-PRESTOP-FAILS: a failing preStop hook changes no exit code (R44).
#[test]
fn a11_term_sidecar_prestop_fails_r44() {
    let mut sim = PodBuilder::new("Never")
        .grace(30)
        .sidecar(Ctr::new("restartable-init-1").run(600).term(1).pre_stop(Some(1), false))
        .sidecar(Ctr::new("restartable-init-2").run(600).term(1).pre_stop(Some(1), true))
        .sidecar(Ctr::new("restartable-init-3").run(600).term(1).pre_stop(Some(1), false))
        .container(Ctr::new("regular-1").run(600).term(1))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
    sim.delete(Some(30));
    assert!(sim.run_to_end(secs(120)));
    assert_eq!(sim.phase(), "Succeeded");
    for n in RI.iter().chain(&["regular-1"]) {
        assert_eq!(state(&sim, n), "terminated:0:Completed", "{n}");
    }
    assert!(has_event(&sim, "FailedPreStopHook", "PreStopHook failed"));
}

/// A11-TERM-REGULAR-EXCEEDS-GRACE: when the regular container uses the whole grace, waiting
/// sidecars get only the 2 s minimum (R45).
#[test]
fn a11_term_regular_exceeds_grace_r45() {
    let mut sim = PodBuilder::new("Never")
        .grace(5)
        .sidecar(Ctr::new("slow-1").run(600).term(20))
        .sidecar(Ctr::new("fast").run(600).term(1))
        .sidecar(Ctr::new("slow-2").run(600).term(20))
        .container(Ctr::new("regular-1").run(600).term(20))
        .sim();
    assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(state(&sim, "regular-1"), "terminated:137:Error");
    assert_eq!(state(&sim, "slow-1"), "terminated:137:Error");
    assert_eq!(state(&sim, "slow-2"), "terminated:137:Error");
    assert_eq!(state(&sim, "fast"), "terminated:0:Completed");
    assert_eq!(sim.phase(), "Failed", "the regular container got 137 (R50)");
    assert_eq!(sim.elapsed(), secs(7), "G + 2 s");
}

/// R46: a sidecar dying while it waits for its turn unblocks the one before it at once.
#[test]
fn sidecar_dying_while_waiting_unblocks_the_previous_r46() {
    let mut sim = PodBuilder::new("Never")
        .sidecar(Ctr::new("first").run(600).term(1))
        .sidecar(Ctr::new("second").run(12))
        .container(Ctr::new("regular-1").run(600).term(20))
        .sim();
    sim.run_for(secs(1));
    sim.delete(Some(30));
    assert!(sim.run_to_end(secs(60)));
    let tl = sim.timeline();
    assert_eq!(times(tl, "second", |m| matches!(m, Mark::Exiting(_))), [12.0]);
    assert_eq!(times(tl, "first", |m| *m == Mark::Signalled("SIGTERM".into())), [21.0]);
    assert_eq!(starts(tl, "second"), 1, "not restarted during termination (R41)");
}

/// R39: a second delete with a shorter grace pulls the deadlines in.
#[test]
fn shorter_grace_on_second_delete_r39() {
    let mut sim = PodBuilder::new("Always").grace(30).container(Ctr::new("app").ignores_term()).sim();
    sim.run_for(secs(1));
    sim.delete(None);
    sim.run_for(secs(3));
    sim.delete(Some(1));
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.elapsed(), secs(6), "killed 2 s after the second delete");
}

/// Once every regular container has ended for good, a sidecar that exited (crash-looping or
/// not) is not started again: the pod is finished (the kubelet's `getPhase` counts only
/// running sidecars, and `computePodActions` drops sidecar restarts when it kills the pod).
#[test]
fn a_crash_looping_sidecar_is_not_restarted_after_the_app_ends() {
    for policy in ["Never", "OnFailure"] {
        let mut sim = PodBuilder::new(policy)
            .sidecar(Ctr::new("proxy").run(1).exit(1).then().run(1).exit(1).then().run(1).exit(1).then().run(1).exit(1))
            .container(Ctr::new("app").run(25).exit(0))
            .sim();
        assert!(sim.run_to_end(secs(120)), "{policy}: the pod ends");
        let t = sim.timeline();
        let ended = times(t, "app", |m| matches!(m, Mark::Exiting(..)))[0];
        let later: Vec<f64> = times(t, "proxy", |m| *m == Mark::Starting).into_iter().filter(|s| *s > ended).collect();
        assert!(later.is_empty(), "{policy}: the sidecar started again at {later:?} after the app ended at {ended}");
        assert_eq!(sim.phase(), "Succeeded", "{policy}");
    }
}
