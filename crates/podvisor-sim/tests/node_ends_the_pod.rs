//! The node ends a pod on its own: an eviction (an `emptyDir` past its `sizeLimit`, the
//! kubelet's eviction manager: a Warning `Evicted` event and a 1 s grace) and the pod's
//! `activeDeadlineSeconds` (the kubelet's active deadline handler: a Normal `DeadlineExceeded`
//! event and the pod's own grace). Either way nothing restarts, the kill keeps the sidecar order
//! (R43), and the pod is `Failed` with that reason and message once no container can still be
//! running: the kubelet's status manager holds a terminal phase back until then. A pod the
//! node's admission rejects (`SysctlForbidden`, `OutOfpods`) never starts at all.

mod common;

use common::*;
use podvisor_sim::order::*;
use podvisor_sim::*;

const EVICTED: &str = "Usage of EmptyDir volume \"cache\" exceeds the limit \"1Mi\". ";
const DEADLINE: &str = "Pod was active on the node longer than the specified deadline";

fn pod(policy: &str) -> PodBuilder {
    PodBuilder::new(policy).grace(10).sidecar(Ctr::new("proxy").term(1)).container(Ctr::new("app").term(1))
}

fn reason_and_message(sim: &Sim) -> (String, String) {
    let st = sim.engine().status();
    (st.reason.clone().unwrap_or_default(), st.message.clone().unwrap_or_default())
}

#[test]
fn an_evicted_pod_is_failed_at_once_stops_in_order_and_never_restarts() {
    let mut sim = pod("Always").sim();
    sim.run_for(secs(5));
    assert_eq!(sim.phase(), "Running");
    sim.evict(EVICTED);
    assert_eq!(sim.phase(), "Running", "not terminal while containers may still run");
    assert_eq!(reason_and_message(&sim), (String::new(), String::new()));
    assert!(has_event(&sim, "Evicted", "exceeds the limit \"1Mi\""));
    assert!(sim.run_to_end(secs(30)));
    assert_eq!(sim.phase(), "Failed");
    let t = sim.timeline();
    assert!(exits_before(t, "app", "proxy"), "R43: the sidecar after the app");
    assert_eq!((starts(t, "app"), starts(t, "proxy")), (1, 1), "nothing restarts, whatever the restart policy");
    assert_eq!(state(&sim, "app"), "terminated:0:Completed", "the app handled SIGTERM");
    assert_eq!(reason_and_message(&sim), ("Evicted".into(), EVICTED.into()), "the reason stays once finished");
}

#[test]
fn an_eviction_grants_a_second_and_the_two_second_minimum_r42() {
    let ignores = |name: &str| Ctr::new(name).ignores_term();
    let mut sim = PodBuilder::new("Always").grace(30).sidecar(ignores("proxy")).container(ignores("app")).sim();
    sim.run_for(secs(5));
    sim.evict(EVICTED);
    assert!(sim.run_to_end(secs(60)));
    let killed = |name| times(sim.timeline(), name, |m| *m == Mark::Killed);
    // The pod's 30 s grace is overridden by the eviction's 1 s; step 3 of the kill still
    // grants the app 2 s. The sidecar waits for its turn at most the 1 s of grace, then gets
    // the same 2 s minimum (R42, R45).
    assert_eq!(killed("app"), vec![7.0]);
    assert_eq!(killed("proxy"), vec![8.0]);
    assert_eq!(sim.phase(), "Failed");
}

#[test]
fn an_eviction_of_a_pod_already_stopping_only_shortens_its_grace() {
    let mut sim = PodBuilder::new("Never").grace(30).container(Ctr::new("app").ignores_term()).sim();
    sim.run_for(secs(2));
    sim.delete(None);
    sim.run_for(secs(1));
    sim.evict(EVICTED);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(times(sim.timeline(), "app", |m| *m == Mark::Killed), vec![5.0], "killed 2 s after the eviction");
    assert_eq!(reason_and_message(&sim), (String::new(), String::new()), "a deletion keeps its own outcome");
}

#[test]
fn an_active_deadline_fails_the_pod_with_its_own_grace() {
    let mut sim = pod("Always").active_deadline(20).sim();
    sim.run_for(secs(19));
    assert_eq!((sim.phase(), reason_and_message(&sim).0.as_str()), ("Running", ""));
    sim.run_for(secs(1));
    let e = sim.events().iter().find(|e| e.reason == "DeadlineExceeded").expect("the event at 20 s");
    assert_eq!((e.kind, e.message.as_str()), (podvisor_engine::EventType::Normal, DEADLINE));
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(reason_and_message(&sim), ("DeadlineExceeded".into(), DEADLINE.into()));
    let t = sim.timeline();
    assert!(exits_before(t, "app", "proxy"));
    assert_eq!(times(t, "app", |m| matches!(m, Mark::Exiting(_))), vec![21.0], "SIGTERM at 20 s, handled in 1 s");
}

#[test]
fn a_pod_that_ends_before_its_deadline_is_not_failed_by_it() {
    let mut sim = PodBuilder::new("Never").active_deadline(20).container(Ctr::new("app").run(3)).sim();
    assert!(sim.run_to_end(secs(60)));
    sim.run_for(secs(30));
    assert_eq!(sim.phase(), "Succeeded");
    assert!(sim.events().iter().all(|e| e.reason != "DeadlineExceeded"));
}

#[test]
fn the_active_deadline_counts_from_the_start_time_kept_across_a_node_restart() {
    let mut before = pod("Always").active_deadline(20).sim();
    before.run_for(secs(15));
    let mut prior = before.engine().status().clone();
    // Every simulation starts at the same instant: the node restarts 15 s after the pod began.
    let started = prior.start_time.as_ref().expect("a start time").0;
    prior.start_time =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(started - jiff::SignedDuration::from_secs(15)));
    let mut after = pod("Always").active_deadline(20).resumed(&prior);
    after.run_for(secs(4));
    assert!(after.events().iter().all(|e| e.reason != "DeadlineExceeded"));
    after.run_for(secs(1));
    assert!(
        after.events().iter().any(|e| e.reason == "DeadlineExceeded"),
        "20 s after the first start, not after the restart"
    );
}

#[test]
fn an_active_deadline_set_on_a_running_pod_counts_from_its_start_time() {
    let mut sim = pod("Always").sim();
    sim.run_for(secs(10));
    sim.set_active_deadline(Some(30));
    sim.run_for(secs(19));
    assert!(sim.events().iter().all(|e| e.reason != "DeadlineExceeded"), "29 s since the start");
    sim.run_for(secs(1));
    let e = sim.events().iter().find(|e| e.reason == "DeadlineExceeded").expect("the event at 30 s");
    assert_eq!(e.message, DEADLINE);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(reason_and_message(&sim), ("DeadlineExceeded".into(), DEADLINE.into()));
}

#[test]
fn a_deadline_shortened_below_the_pod_age_ends_it_at_once() {
    let mut sim = pod("Always").active_deadline(600).sim();
    sim.run_for(secs(10));
    sim.set_active_deadline(Some(5));
    let e = sim.events().iter().find(|e| e.reason == "DeadlineExceeded").expect("the event on the update");
    assert_eq!(e.message, DEADLINE);
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(sim.phase(), "Failed");
    // Nothing else of a spec update changes a running pod: no container restarted.
    for name in ["proxy", "app"] {
        assert_eq!(starts(sim.timeline(), name), 1, "{name} started once");
    }
}

#[test]
fn a_rejected_pod_never_starts_and_fails_with_the_admission_reason() {
    let mut sim = pod("Always").sim();
    sim.reject("SysctlForbidden", "forbidden sysctl: \"kernel.msgmax\" not allowlisted");
    assert!(sim.run_to_end(secs(5)));
    assert_eq!(sim.phase(), "Failed");
    assert_eq!(
        reason_and_message(&sim),
        ("SysctlForbidden".into(), "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted".into())
    );
    assert!(has_event(&sim, "SysctlForbidden", "kernel.msgmax"));
    let t = sim.timeline();
    assert_eq!((starts(t, "app"), starts(t, "proxy")), (0, 0), "nothing of a rejected pod runs");
}

#[test]
fn a_running_pod_is_not_rejected() {
    let mut sim = pod("Always").sim();
    sim.run_for(secs(5));
    sim.reject("OutOfpods", "Node didn't have enough resource: pods");
    sim.run_for(secs(5));
    assert_eq!(sim.phase(), "Running", "admission is over once the sandbox exists");
}
