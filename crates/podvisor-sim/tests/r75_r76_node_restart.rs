//! The node process stops and starts again while the pod's sandbox and containers are intact (a
//! kubelet restart, not a reboot): R75 (no regular init container runs again, sidecars keep
//! running, a sidecar whose instance vanished is recreated) and R76 (`started`, `ready` and the
//! phase stay as they were). A4-KUBELET-RESTART-* in short.

mod common;

use common::*;
use podvisor_engine::ProbeKind;
use podvisor_sim::order::*;
use podvisor_sim::*;

/// Entries after the node restart.
fn after_restart(t: &[Entry]) -> &[Entry] {
    let at = t.iter().position(|e| e.mark == Mark::NodeRestarted).expect("the node restarted");
    &t[at..]
}

#[test]
fn a4_kubelet_restart_no_rerun_completed_init_containers_stay_done_r75() {
    let mut sim = PodBuilder::new("Always")
        .init(Ctr::new("init-1").run(1))
        .init(Ctr::new("init-2").run(1))
        .init(Ctr::new("init-3").run(1))
        .container(Ctr::new("regular-1").run(300))
        .sim();
    sim.run_for(secs(10));
    assert_eq!(state(&sim, "regular-1"), "running");
    sim.restart_node(secs(2), &[]);
    sim.run_for(secs(60));
    let t = sim.timeline();
    assert_eq!(starts(after_restart(t), "init-1") + starts(after_restart(t), "regular-1"), 0, "nothing starts again");
    assert!(starts_before(t, "init-1", "init-2") && starts_before(t, "init-2", "init-3"), "init order kept");
    for name in ["init-1", "init-2", "init-3"] {
        assert_eq!((state(&sim, name), rc(&sim, name)), ("terminated:0:Completed".into(), 0), "{name}");
    }
    assert_eq!((state(&sim, "regular-1"), rc(&sim, "regular-1"), sim.phase()), ("running".into(), 0, "Running"));
}

#[test]
fn a4_kubelet_restart_long_init_a_running_init_container_is_taken_over_r75() {
    let mut sim = PodBuilder::new("Always")
        .init(Ctr::new("init-1").run(1))
        .init(Ctr::new("init-2").run(1))
        .init(Ctr::new("long-init-3").run(20))
        .container(Ctr::new("regular-1").run(300))
        .sim();
    sim.run_for(secs(5));
    assert_eq!(state(&sim, "long-init-3"), "running");
    sim.restart_node(secs(1), &[]);
    assert_eq!(sim.phase(), "Pending", "R76: the phase stays");
    sim.run_for(secs(60));
    let t = after_restart(sim.timeline());
    assert_eq!(starts(t, "init-1") + starts(t, "init-2") + starts(t, "long-init-3"), 0, "no init runs again");
    assert_eq!(starts(t, "regular-1"), 1, "the app starts once the running init container completes");
    assert!(exits_before_start(sim.timeline(), "long-init-3", "regular-1"));
    assert_eq!((rc(&sim, "long-init-3"), rc(&sim, "regular-1")), (0, 0));
}

#[test]
fn a_sidecar_keeps_running_started_and_ready_across_the_restart_r75_r76() {
    let t = Timing { period: Some(5), ..Timing::default() };
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("proxy").probe(ProbeKind::Startup, t, ProbeScript::Pass).probe(
            ProbeKind::Readiness,
            t,
            ProbeScript::Pass,
        ))
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(20));
    assert_eq!(condition(&sim, "Ready"), "True");
    sim.restart_node(secs(1), &[]);
    assert!(is_started(&sim, "proxy"), "R76: started is kept, the startup probe does not run again");
    assert_eq!(sim.container("proxy").map(|c| c.ready), Some(true), "R76: ready until a new result");
    assert_eq!((condition(&sim, "Ready"), sim.phase()), ("True".into(), "Running"));
    sim.run_for(secs(30));
    let after = after_restart(sim.timeline());
    assert_eq!(starts(after, "proxy") + starts(after, "app"), 0);
    assert!(!after.iter().any(|e| e.container == "proxy" && e.mark == Mark::Probe(ProbeKind::Startup, true)));
    assert!(after.iter().any(|e| e.container == "proxy" && e.mark == Mark::Probe(ProbeKind::Readiness, true)));
}

#[test]
fn a_sidecar_whose_instance_vanished_is_recreated_and_the_app_goes_on_r75() {
    let mut sim = PodBuilder::new("Always").sidecar(Ctr::new("proxy")).container(Ctr::new("app")).sim();
    sim.run_for(secs(10));
    sim.restart_node(secs(1), &["proxy"]);
    sim.run_for(secs(10));
    let after = after_restart(sim.timeline());
    assert_eq!((starts(after, "proxy"), starts(after, "app")), (1, 0), "only the vanished sidecar starts");
    assert_eq!((state(&sim, "proxy"), rc(&sim, "proxy")), ("running".into(), 1));
    assert_eq!((state(&sim, "app"), rc(&sim, "app")), ("running".into(), 0));
}

#[test]
fn an_exit_while_the_node_was_down_is_found_and_acted_on_r75() {
    let mut sim = PodBuilder::new("OnFailure")
        .sidecar(Ctr::new("proxy"))
        .container(Ctr::new("app").run(12).exit(3).then().run(1).exit(0))
        .sim();
    sim.run_for(secs(10));
    sim.restart_node(secs(5), &[]);
    let app = sim.container("app").cloned().expect("app");
    let ended = app.state.and_then(|s| s.terminated).expect("found ended");
    assert_eq!(ended.exit_code, 3);
    assert_eq!(ended.finished_at.map(|t| t.0), Some(epoch() + secs(12)), "it ended while the node was down");
    assert!(sim.run_to_end(secs(60)));
    assert_eq!((rc(&sim, "app"), state(&sim, "app"), sim.phase()), (1, "terminated:0:Completed".into(), "Succeeded"));
    assert_eq!(rc(&sim, "proxy"), 0, "the sidecar ran on through the restart");
}

#[test]
fn a_pod_deleted_after_the_restart_stops_in_order_r75() {
    let mut sim =
        PodBuilder::new("Always").grace(5).sidecar(Ctr::new("proxy")).container(Ctr::new("app").term(2)).sim();
    sim.run_for(secs(5));
    sim.restart_node(secs(1), &[]);
    sim.delete(None);
    assert!(sim.run_to_end(secs(30)));
    assert!(exits_before(sim.timeline(), "app", "proxy"), "the taken-over sidecar still stops last");
}

#[test]
fn a_container_in_back_off_goes_on_from_its_attempt_after_the_restart_r75() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app").run(1).exit(1)).sim();
    sim.run_while_not(secs(60), |s| state(s, "app") == "waiting:CrashLoopBackOff" && rc(s, "app") == 1);
    assert_eq!((state(&sim, "app"), rc(&sim, "app")), ("waiting:CrashLoopBackOff".into(), 1));
    sim.restart_node(secs(0), &[]);
    assert_eq!(rc(&sim, "app"), 1, "the count stays");
    sim.run_for(secs(0));
    let last = sim.container("app").and_then(|c| c.last_state.clone()).and_then(|l| l.terminated);
    assert_eq!(last.map(|t| t.exit_code), Some(1), "the last state is kept");
    sim.run_for(secs(30));
    assert!(rc(&sim, "app") >= 2, "the next instance is the next attempt: {}", rc(&sim, "app"));
}

#[test]
fn a_running_container_gone_from_the_runtime_ended_unseen_and_its_attempt_is_not_reused_r75() {
    let mut sim = PodBuilder::new("Always").sidecar(Ctr::new("proxy")).container(Ctr::new("app")).sim();
    sim.run_for(secs(5));
    sim.restart_node(secs(0), &["app"]);
    sim.run_for(secs(1));
    let app = sim.container("app").cloned().expect("app");
    let last = app.last_state.and_then(|l| l.terminated).expect("the lost instance");
    assert_eq!((last.exit_code, last.reason.as_deref()), (137, Some("ContainerStatusUnknown")));
    assert_eq!((state(&sim, "app"), app.restart_count), ("running".into(), 1));
}

/// A condition that stays as it was keeps its `lastTransitionTime` across a node restart, as
/// the kubelet's status manager keeps it.
#[test]
fn conditions_keep_their_transition_times_across_a_node_restart_r76() {
    let mut sim =
        PodBuilder::new("Always").sidecar(Ctr::new("proxy").run(600)).container(Ctr::new("app").run(600)).sim();
    sim.run_for(secs(10));
    let times = |sim: &Sim| -> Vec<(String, String, String)> {
        sim.engine()
            .status()
            .conditions
            .iter()
            .flatten()
            .map(|c| (c.type_.clone(), c.status.clone(), format!("{:?}", c.last_transition_time)))
            .collect()
    };
    let before = times(&sim);
    sim.restart_node(secs(5), &[]);
    sim.run_for(secs(10));
    assert_eq!(times(&sim), before);
}

/// Issue: a pod terminating when the node process crashed, whose sidecar exited meanwhile, had
/// the sidecar started again after the restart before it was stopped a second time. A pod that
/// was terminating stays terminating: nothing of it starts again.
#[test]
fn a_pod_terminating_across_a_node_restart_starts_nothing_again_r75() {
    let mut sim = PodBuilder::new("Always")
        .grace(30)
        .sidecar(Ctr::new("shipper").run(600).term(3))
        .container(Ctr::new("app").run(600).term(1))
        .sim();
    sim.run_for(secs(5));
    sim.delete(None);
    sim.run_for(secs(2));
    // The sidecar got its SIGTERM and exits (3 s) while the node process is down.
    sim.restart_node(secs(5), &[]);
    assert!(sim.run_to_end(secs(60)));
    let t = sim.timeline();
    let restarted = t.iter().position(|e| e.mark == Mark::NodeRestarted).unwrap();
    assert_eq!(starts(&t[restarted..], "shipper") + starts(&t[restarted..], "app"), 0, "nothing starts again");
}
