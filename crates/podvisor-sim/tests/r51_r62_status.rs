//! The status fields themselves (R51–R62): placement, waiting reasons, started/ready, the
//! conditions, their order and messages.

mod common;

use common::*;
use podvisor_engine::ProbeKind::{Readiness, Startup};
use podvisor_sim::*;

fn conditions(sim: &Sim) -> Vec<(String, String, Option<String>, Option<String>)> {
    let st = sim.engine().status();
    st.conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone()))
        .collect()
}

/// R51, R52, R58, R59, R62: during initialization.
#[test]
fn status_during_initialization_r51_r52_r56_r58_r59_r62() {
    let t = Timing { failure_threshold: Some(100), ..Default::default() };
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("proxy").probe(Startup, t, ProbeScript::Fail))
        .init(Ctr::new("migrate"))
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(1));
    let st = sim.engine().status();
    let init: Vec<&str> = st.init_container_statuses.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["proxy", "migrate"], "sidecars are init container statuses, in spec order (R51)");
    assert_eq!(st.container_statuses.as_ref().unwrap().len(), 1);
    assert_eq!(state(&sim, "proxy"), "running");
    assert!(!is_started(&sim, "proxy"), "running but its startup probe has not passed (R54)");
    assert_eq!(state(&sim, "migrate"), "waiting:PodInitializing", "R52: the pod has init containers");
    assert_eq!(state(&sim, "app"), "waiting:PodInitializing");
    assert_eq!(sim.phase(), "Pending", "R57: a sidecar running but not started keeps the pod Pending");
    let types: Vec<String> = conditions(&sim).into_iter().map(|c| c.0).collect();
    assert_eq!(types, ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"], "R58");
    let c = conditions(&sim);
    assert_eq!(c[0].1, "True", "R62: the sandbox is ready");
    assert_eq!(
        (c[1].1.as_str(), c[1].2.as_deref(), c[1].3.as_deref()),
        ("False", Some("ContainersNotInitialized"), Some("containers with incomplete status: [proxy migrate]"))
    );
    assert_eq!(c[3].3.as_deref(), Some("containers with unready status: [proxy app]"), "R60: sidecars count");
}

/// R52: without init containers, a container not yet created waits in ContainerCreating.
#[test]
fn container_creating_without_init_containers_r52() {
    let mut sim =
        PodBuilder::new("Always").container(Ctr::new("app").runtime_start(std::time::Duration::from_secs(5))).sim();
    sim.run_for(secs(1));
    assert_eq!(state(&sim, "app"), "waiting:ContainerCreating");
}

/// R55: a regular init container is ready once it exited 0; a sidecar with a readiness probe is
/// not ready until its first success (the seed is Failure).
#[test]
fn ready_r55() {
    let slow = Timing { initial_delay: Some(5), ..Default::default() };
    let mut sim = PodBuilder::new("Always")
        .init(Ctr::new("migrate").run(1))
        .sidecar(Ctr::new("proxy").probe(Readiness, slow, ProbeScript::Pass))
        .container(Ctr::new("app"))
        .sim();
    sim.run_for(secs(2));
    let ready = |s: &Sim, n: &str| s.container(n).is_some_and(|c| c.ready);
    assert!(ready(&sim, "migrate") && !ready(&sim, "proxy") && ready(&sim, "app"));
    sim.run_for(secs(5));
    assert!(ready(&sim, "proxy"));
    assert_eq!(condition(&sim, "Ready"), "True");
}

/// R62: once the pod is finished, its sandbox is gone.
#[test]
fn sandbox_condition_after_completion_r62() {
    let mut sim = PodBuilder::new("Never").container(Ctr::new("app").run(1)).sim();
    assert!(sim.run_to_end(secs(10)));
    assert_eq!(condition(&sim, "PodReadyToStartContainers"), "False");
    let c = conditions(&sim);
    assert_eq!((c[3].1.as_str(), c[3].2.as_deref()), ("False", Some("PodCompleted")), "R60 after success");
}

/// The pod's address comes with its sandbox, stays through a node restart that keeps the
/// sandbox, and is still shown once the pod has ended, as the kubelet keeps it.
#[test]
fn the_pod_ip_comes_with_the_sandbox_and_is_kept_to_the_end() {
    let mut sim = PodBuilder::new("Never").container(Ctr::new("app").run(5)).sim();
    let ips = |sim: &Sim| {
        let st = sim.engine().status();
        let list: Vec<String> = st.pod_ips.iter().flatten().map(|p| p.ip.clone()).collect();
        (st.pod_ip.clone(), list, st.host_ip.clone())
    };
    sim.run_for(secs(1));
    let ip = Some(SIM_POD_IP.to_string());
    assert_eq!(ips(&sim), (ip.clone(), vec![SIM_POD_IP.to_string()], Some(podvisor_engine::HOST_IP.into())));
    sim.restart_node(secs(1), &[]);
    assert_eq!(ips(&sim).0, ip, "taken over with the sandbox (R75)");
    assert!(sim.run_to_end(secs(30)));
    assert_eq!((sim.phase(), ips(&sim).0), ("Succeeded", ip));
}

/// Issue: while a sidecar's postStart hook ran, the pod already showed it ready (1/2). The
/// kubelet runs postStart inside the container's start and publishes no new status until the
/// hook returns.
#[test]
fn no_status_is_published_while_a_post_start_hook_runs() {
    let mut sim = PodBuilder::new("Always")
        .sidecar(Ctr::new("proxy").run(600).post_start(Some(5), false))
        .container(Ctr::new("app").run(600))
        .sim();
    sim.run_for(secs(2));
    let during = sim.engine().status().clone();
    assert_ne!(state(&sim, "proxy"), "running", "{during:#?}");
    assert!(!is_started(&sim, "proxy"));
    sim.run_for(secs(1));
    assert_eq!(sim.engine().status(), &during, "nothing new while the hook runs");
    sim.run_for(secs(5));
    assert_eq!(state(&sim, "proxy"), "running");
    assert!(is_started(&sim, "proxy"));
}
