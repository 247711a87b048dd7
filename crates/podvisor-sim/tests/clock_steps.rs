//! A step of the wall clock (NTP, a resumed laptop, `date -s`) moves no deadline: grace
//! periods, back-offs, probe periods and `activeDeadlineSeconds` are measured on the monotonic
//! clock, as the kubelet measures them on Go's monotonic readings. Only the status stamps
//! follow the wall clock.

mod common;

use common::*;
use jiff::SignedDuration;
use podvisor_sim::order::*;
use podvisor_sim::*;

const HOUR: SignedDuration = SignedDuration::from_secs(3600);

/// R42: SIGKILL comes at the end of the grace whichever way the wall clock steps meanwhile.
#[test]
fn r42_the_grace_period_survives_a_wall_clock_step() {
    for step in [HOUR, -HOUR] {
        let mut sim = PodBuilder::new("Always").grace(10).container(Ctr::new("app").run(600).ignores_term()).sim();
        assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
        let deleted = sim.elapsed().as_secs_f64();
        sim.delete(None);
        sim.run_for(secs(3));
        sim.step_wall_clock(step);
        assert!(sim.run_to_end(secs(120)), "step {step:?}");
        let killed = times(sim.timeline(), "app", |m| matches!(m, Mark::Killed));
        assert_eq!(killed, [deleted + 10.0], "step {step:?}");
    }
}

/// R26: a crashed container is restarted after its 10 s back-off (the second restart: the
/// first is immediate), not an hour early or late.
#[test]
fn r26_the_crash_loop_back_off_survives_a_wall_clock_step() {
    for step in [HOUR, -HOUR] {
        let mut sim = PodBuilder::new("Always").container(Ctr::new("app").run(1).exit(1)).sim();
        assert!(sim.run_while_not(secs(30), |s| rc(s, "app") == 1 && state(s, "app").contains("CrashLoopBackOff")));
        sim.step_wall_clock(step);
        sim.run_for(secs(9));
        assert_eq!(times(sim.timeline(), "app", |m| matches!(m, Mark::Starting)).len(), 2, "step {step:?}");
        sim.run_for(secs(2));
        let starts = times(sim.timeline(), "app", |m| matches!(m, Mark::Starting));
        assert_eq!(starts.len(), 3, "step {step:?}: {starts:?}");
        assert!((starts[2] - starts[1] - 11.0).abs() < 0.5, "1 s run + 10 s back-off: {starts:?}");
    }
}

/// The kubelet's active deadline handler: a forward step of an hour does not end a pod whose
/// 20 s have not passed, and the deadline still comes 20 s after the start.
#[test]
fn the_active_deadline_survives_a_wall_clock_step() {
    let mut sim = PodBuilder::new("Always").active_deadline(20).container(Ctr::new("app").run(600)).sim();
    sim.run_for(secs(5));
    sim.step_wall_clock(HOUR);
    sim.run_for(secs(10));
    assert!(!has_event(&sim, "DeadlineExceeded", ""), "15 s after the start");
    sim.run_for(secs(6));
    assert!(has_event(&sim, "DeadlineExceeded", ""), "past 20 s after the start");
}

/// The status says what the wall clock read: a container that ends after a step has the
/// stepped clock's `finishedAt`.
#[test]
fn status_stamps_follow_the_wall_clock() {
    let mut sim = PodBuilder::new("Never").container(Ctr::new("app").run(5)).sim();
    sim.run_for(secs(2));
    sim.step_wall_clock(HOUR);
    assert!(sim.run_to_end(secs(60)));
    let term = sim.container("app").and_then(|c| c.state.clone()).and_then(|s| s.terminated).expect("terminated");
    let (started, finished) = (term.started_at.expect("startedAt").0, term.finished_at.expect("finishedAt").0);
    let apart = finished.duration_since(started);
    assert!(apart >= HOUR && apart < HOUR + SignedDuration::from_secs(10), "{apart:?}");
}
