//! kubectl's READY / STATUS / RESTARTS (R63–R65) on statuses the engine produces.

mod common;

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use podvisor_engine::ProbeKind::{Readiness, Startup};
use podvisor_objects::{human_duration, pod_columns};
use podvisor_sim::*;

fn columns(sim: &Sim, spec: &k8s_openapi::api::core::v1::PodSpec, deleting: bool) -> (String, String) {
    let pod = Pod {
        metadata: ObjectMeta { deletion_timestamp: deleting.then(|| Time(epoch())), ..Default::default() },
        spec: Some(spec.clone()),
        status: Some(sim.engine().status().clone()),
    };
    let c = pod_columns(&pod, epoch() + sim.elapsed());
    (c.ready, c.status)
}

/// The R65 table: pod `initContainers: [proxy (sidecar), migrate (regular)]`, `containers: [app]`.
#[test]
fn r65_worked_examples() {
    let t = Timing { period: Some(1), failure_threshold: Some(100), ..Default::default() };
    let build = |proxy: Ctr, migrate: Ctr, policy: &str| {
        let b = PodBuilder::new(policy).sidecar(proxy).init(migrate).container(Ctr::new("app"));
        let spec = b.spec().clone();
        (b.sim(), spec)
    };
    let ready_probe = |c: Ctr, ok: bool| c.probe(Readiness, t, if ok { ProbeScript::Pass } else { ProbeScript::Fail });

    // proxy Running, not yet started.
    let (mut sim, spec) = build(Ctr::new("proxy").probe(Startup, t, ProbeScript::Fail), Ctr::new("migrate"), "Always");
    sim.run_for(secs(1));
    assert_eq!(columns(&sim, &spec, false), ("0/2".into(), "Init:0/2".into()));

    // proxy started and ready / not ready, migrate running.
    for (ok, ready) in [(true, "1/2"), (false, "0/2")] {
        let (mut sim, spec) = build(ready_probe(Ctr::new("proxy"), ok), Ctr::new("migrate").run(60), "Always");
        sim.run_for(secs(2));
        assert_eq!(columns(&sim, &spec, false), (ready.into(), "Init:1/2".into()));
    }

    // migrate failed, backing off.
    let (mut sim, spec) = build(Ctr::new("proxy"), Ctr::new("migrate").run(1).exit(1), "Always");
    sim.run_for(secs(3));
    assert_eq!(columns(&sim, &spec, false), ("1/2".into(), "Init:CrashLoopBackOff".into()));

    // all running and ready.
    let (mut sim, spec) = build(Ctr::new("proxy"), Ctr::new("migrate").run(1), "Always");
    sim.run_for(secs(2));
    assert_eq!(columns(&sim, &spec, false), ("2/2".into(), "Running".into()));

    // proxy crash-looping, app running (Initialized True).
    let (mut sim, spec) = build(Ctr::new("proxy").then().run(1).exit(1), Ctr::new("migrate").run(1), "Always");
    sim.run_for(secs(2));
    sim.set_image("proxy", "busybox:1.37");
    sim.run_for(secs(5));
    assert_eq!(columns(&sim, &spec, false), ("1/2".into(), "Init:CrashLoopBackOff".into()));

    // pod being deleted.
    let (mut sim, spec) = build(Ctr::new("proxy").term(5), Ctr::new("migrate").run(1), "Always");
    sim.run_for(secs(2));
    sim.delete(None);
    sim.run_for(secs(1));
    assert_eq!(columns(&sim, &spec, true).1, "Terminating");

    // Never pod finished, proxy killed (137).
    let b = PodBuilder::new("Never")
        .grace(2)
        .sidecar(Ctr::new("proxy").ignores_term())
        .init(Ctr::new("migrate").run(1))
        .container(Ctr::new("app").run(1));
    let spec = b.spec().clone();
    let mut sim = b.sim();
    assert!(sim.run_to_end(secs(60)));
    assert_eq!(common::state(&sim, "proxy"), "terminated:137:Error");
    assert_eq!(columns(&sim, &spec, false), ("0/2".into(), "Completed".into()));
}

/// RESTARTS shows the newest restart's age; R63: sidecar restarts count, regular init restarts
/// are dropped once initialized.
#[test]
fn restarts_column_r63_r64() {
    let b = PodBuilder::new("Always").sidecar(Ctr::new("proxy").run(5).exit(1)).container(Ctr::new("app"));
    let spec = b.spec().clone();
    let mut sim = b.sim();
    sim.run_for(secs(20));
    let pod = Pod { spec: Some(spec), status: Some(sim.engine().status().clone()), ..Default::default() };
    let c = pod_columns(&pod, epoch() + secs(80));
    assert_eq!(c.restarts, "2 (70s ago)", "exits at 5 s and 10 s, restart at 20 s; the last exit 70 s before 80 s");
    assert_eq!(human_duration(SignedDuration::from_secs(3 * 3600 + 120)), "3h2m");
    assert_eq!(human_duration(SignedDuration::from_secs(150)), "2m30s");
    assert_eq!(human_duration(SignedDuration::from_secs(50 * 3600)), "2d2h");
}
