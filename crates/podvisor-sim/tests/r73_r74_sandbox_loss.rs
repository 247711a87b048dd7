//! A pod whose sandbox was lost with every container in it (the node stopped while it ran), resumed
//! from the status it last reported: R73 (start over at init container 0 in a new sandbox; a
//! `restartPolicy: Never` pod is not run again) and R74 (restart counts continue; Pending until a
//! regular container of the new sandbox started). A4-NODE-REBOOT-ORDER in short.

mod common;

use common::*;
use podvisor_sim::order::*;
use podvisor_sim::*;

fn pod(policy: &str) -> PodBuilder {
    PodBuilder::new(policy)
        .grace(5)
        .init(Ctr::new("init-1").run(1))
        .sidecar(Ctr::new("proxy"))
        .container(Ctr::new("app"))
}

#[test]
fn a4_node_reboot_order_the_pod_starts_over_and_counts_continue_r73_r74() {
    let mut before = pod("Always").sim();
    before.run_for(secs(10));
    assert_eq!((state(&before, "app"), rc(&before, "app")), ("running".into(), 0));
    let prior = before.engine().status().clone();

    let mut after = pod("Always").resumed(&prior);
    assert_eq!(after.phase(), "Pending", "R74: Pending until a regular container of the new sandbox started");
    assert_eq!(rc(&after, "app"), 0, "the count shown is the last one reported until a new instance exists");
    after.run_for(secs(10));
    let t = after.timeline();
    assert!(starts_before(t, "init-1", "proxy") && starts_before(t, "proxy", "app"), "R73: from init 0");
    assert_eq!((rc(&after, "init-1"), rc(&after, "proxy"), rc(&after, "app")), (1, 1, 1), "R74");
    assert_eq!(after.phase(), "Running");
}

#[test]
fn a_crash_looping_apps_count_goes_on_from_where_it_was_r74() {
    let mut before = PodBuilder::new("Always").container(Ctr::new("app").run(1).exit(1)).sim();
    before.run_for(secs(40));
    let prior = before.engine().status().clone();
    let was = rc(&before, "app");
    assert!(was >= 2, "{was}");
    let mut after = PodBuilder::new("Always").container(Ctr::new("app").run(1).exit(1)).resumed(&prior);
    after.run_for(secs(0));
    assert_eq!(rc(&after, "app"), was + 1, "the new sandbox's first instance is the next attempt");
}

#[test]
fn a_never_pod_that_ran_is_not_run_again_and_what_ran_is_unknown_r73() {
    let mut before = pod("Never").sim();
    before.run_for(secs(10));
    let prior = before.engine().status().clone();

    let after = pod("Never").resumed(&prior);
    assert!(after.engine().is_finished(), "no new sandbox: the pod ends where it was");
    assert!(after.timeline().iter().all(|e| !matches!(e.mark, Mark::Starting)), "nothing starts again");
    assert_eq!(state(&after, "app"), "terminated:137:ContainerStatusUnknown");
    assert_eq!(state(&after, "proxy"), "terminated:137:ContainerStatusUnknown");
    assert_eq!(state(&after, "init-1"), "terminated:0:Completed", "what had ended keeps its end");
    assert_eq!((rc(&after, "app"), after.phase()), (0, "Failed"));
}

#[test]
fn a_never_pod_that_never_created_a_container_just_runs_r73() {
    let mut before = PodBuilder::new("Never").container(Ctr::new("app").image("missing:1")).sim();
    before.unpullable("missing:1");
    before.run_for(secs(5));
    let prior = before.engine().status().clone();
    assert_eq!(state(&before, "app"), "waiting:ImagePullBackOff");

    let mut after = PodBuilder::new("Never").container(Ctr::new("app").run(1)).resumed(&prior);
    assert!(after.run_to_end(secs(30)));
    assert_eq!((state(&after, "app"), after.phase()), ("terminated:0:Completed".into(), "Succeeded"));
}
