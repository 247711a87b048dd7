//! R23: ephemeral containers (`kubectl debug`) start once when added, even while the pod
//! initializes, are never restarted, keep nothing alive, and are stopped with the pod.

mod common;

use std::time::Duration;

use common::*;
use podvisor_sim::order::*;
use podvisor_sim::*;

fn debugger(run: Option<u64>, exit_code: i32) -> Behaviour {
    Behaviour { run: run.map(Duration::from_secs), exit_code, ..Behaviour::default() }
}

/// An ephemeral container added to a running pod starts at once, and is not restarted when
/// it exits, whatever the pod's policy; its status is an ephemeral one.
#[test]
fn an_ephemeral_container_starts_once_and_is_never_restarted_r23() {
    let mut sim = PodBuilder::new("Always").sidecar(Ctr::new("proxy")).container(Ctr::new("app")).sim();
    assert!(sim.run_while_not(secs(10), |s| s.phase() == "Running"));
    sim.add_ephemeral("debugger", Some("app"), debugger(Some(3), 1));
    sim.run_for(secs(1));
    assert_eq!(state(&sim, "debugger"), "running");
    sim.run_for(secs(60));
    assert_eq!(starts(sim.timeline(), "debugger"), 1, "never restarted");
    assert_eq!(state(&sim, "debugger"), "terminated:1:Error");
    assert_eq!(rc(&sim, "debugger"), 0);
    let st = sim.engine().status();
    assert_eq!(st.ephemeral_container_statuses.as_ref().map(Vec::len), Some(1));
    assert!(st.container_statuses.iter().flatten().all(|c| c.name != "debugger"));
    assert_eq!(sim.phase(), "Running");
    assert_eq!(condition(&sim, "Ready"), "True", "an ephemeral container is no part of readiness");
}

/// Added while an init container still runs, it starts without waiting for initialization.
#[test]
fn an_ephemeral_container_starts_during_initialization_r23() {
    let mut sim = PodBuilder::new("Never").init(Ctr::new("setup").run(20)).container(Ctr::new("app").run(5)).sim();
    sim.run_for(secs(2));
    sim.add_ephemeral("debugger", None, debugger(None, 0));
    sim.run_for(secs(1));
    assert_eq!(state(&sim, "debugger"), "running");
    assert!(!started(sim.timeline(), "app"), "the app still waits for its init container");
}

/// A running debugger keeps no pod alive: the Job-like pod completes when its app does, and
/// the debugger is stopped with it.
#[test]
fn a_running_ephemeral_container_does_not_hold_a_completing_pod_r23() {
    let mut sim = PodBuilder::new("Never").sidecar(Ctr::new("proxy")).container(Ctr::new("app").run(5)).sim();
    sim.run_for(secs(1));
    sim.add_ephemeral("debugger", Some("app"), debugger(None, 0));
    assert!(sim.run_to_end(secs(60)), "the pod ends");
    assert_eq!(sim.phase(), "Succeeded");
    assert_eq!(starts(sim.timeline(), "debugger"), 1);
    assert!(state(&sim, "debugger").starts_with("terminated:"), "{}", state(&sim, "debugger"));
}

/// Deleted, the pod stops its debugger with the app containers, not after the sidecars.
#[test]
fn an_ephemeral_container_is_stopped_with_the_app_containers_r23() {
    let mut sim =
        PodBuilder::new("Always").grace(10).sidecar(Ctr::new("proxy").term(2)).container(Ctr::new("app").term(1)).sim();
    sim.run_for(secs(1));
    sim.add_ephemeral("debugger", None, debugger(None, 0));
    sim.run_for(secs(1));
    sim.delete(None);
    assert!(sim.run_to_end(secs(60)));
    let tl = sim.timeline();
    let term = |n: &str| times(tl, n, |m| *m == Mark::Signalled("SIGTERM".into()));
    assert_eq!(term("debugger"), term("app"), "signalled together");
    assert!(term("proxy")[0] > term("app")[0], "the sidecar after the app");
}

/// A node process started again takes a running debugger over as it is (R75), and one that
/// ended stays ended.
#[test]
fn a_node_restart_takes_an_ephemeral_container_over_without_restarting_it_r23_r75() {
    let mut sim = PodBuilder::new("Always").sidecar(Ctr::new("proxy")).container(Ctr::new("app")).sim();
    sim.run_for(secs(1));
    sim.add_ephemeral("debugger", Some("app"), debugger(None, 0));
    sim.add_ephemeral("quick", None, debugger(Some(1), 0));
    sim.run_for(secs(3));
    sim.restart_node(secs(2), &[]);
    sim.run_for(secs(30));
    assert_eq!(state(&sim, "debugger"), "running");
    assert_eq!(state(&sim, "quick"), "terminated:0:Completed");
    assert_eq!((starts(sim.timeline(), "debugger"), starts(sim.timeline(), "quick")), (1, 1));
}

/// After a reboot the pod starts over in a new sandbox, but its ephemeral containers do not:
/// what they were is their end (R23, R73).
#[test]
fn after_a_reboot_an_ephemeral_container_does_not_run_again_r23_r73() {
    let mut sim = PodBuilder::new("Always").container(Ctr::new("app")).sim();
    sim.run_for(secs(1));
    sim.add_ephemeral("debugger", None, debugger(None, 0));
    sim.run_for(secs(2));
    let prior = sim.engine().status().clone();
    let mut spec = sim.engine().spec().clone();
    assert_eq!(spec.ephemeral_containers.as_ref().map(Vec::len), Some(1));
    spec.restart_policy = Some("Always".into());
    let mut again = Sim::resumed("p", spec, std::collections::HashMap::new(), &prior);
    again.run_for(secs(10));
    assert_eq!(starts(again.timeline(), "debugger"), 0, "not started again");
    assert_eq!(state(&again, "debugger"), "terminated:137:ContainerStatusUnknown");
    assert_eq!(state(&again, "app"), "running");
}

/// Nothing starts in a pod being deleted (R41), an ephemeral container added then included;
/// and a pod that has ended takes none: its status stays as it ended.
#[test]
fn no_ephemeral_container_starts_in_a_terminating_or_finished_pod_r23_r41() {
    let mut sim = PodBuilder::new("Always").grace(30).container(Ctr::new("app").ignores_term()).sim();
    sim.run_for(secs(1));
    sim.delete(None);
    sim.add_ephemeral("debugger", None, debugger(None, 0));
    sim.run_for(secs(5));
    assert_eq!(starts(sim.timeline(), "debugger"), 0);
    let mut done = PodBuilder::new("Never").container(Ctr::new("app").run(1)).sim();
    assert!(done.run_to_end(secs(30)));
    let before = done.engine().status().clone();
    done.add_ephemeral("late", None, debugger(None, 0));
    done.run_for(secs(5));
    assert_eq!(starts(done.timeline(), "late"), 0);
    assert_eq!(done.engine().status(), &before);
}
