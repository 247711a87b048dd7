//! Every number a user may write, fed to the engine: graces, deadlines and probe timings at the
//! ends of their types (`terminationGracePeriodSeconds: 9223372036854775807` is legal), in
//! random orders of deletes and evictions. The engine never panics, never restarts a container
//! of a pod that is terminating, and a pod whose containers stop promptly ends once deleted.

use podvisor_engine::ProbeKind;
use podvisor_sim::order::*;
use podvisor_sim::*;
use proptest::prelude::*;

fn extreme_i64() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MAX),
        Just(i64::MIN),
        Just(0),
        Just(1),
        Just(-1),
        Just(i64::from(i32::MAX)),
        0..120i64,
        any::<i64>()
    ]
}

fn extreme_i32() -> impl Strategy<Value = Option<i32>> {
    proptest::option::of(prop_oneof![Just(i32::MAX), Just(i32::MIN), Just(0), Just(-1), 1..30i32, any::<i32>()])
}

fn timing() -> impl Strategy<Value = Timing> {
    (extreme_i32(), extreme_i32(), extreme_i32(), extreme_i32(), extreme_i32(), proptest::option::of(extreme_i64()))
        .prop_map(|(initial_delay, period, timeout, failure_threshold, success_threshold, termination_grace)| Timing {
            initial_delay,
            period,
            timeout,
            failure_threshold,
            success_threshold,
            termination_grace,
        })
}

fn script() -> impl Strategy<Value = ProbeScript> {
    prop_oneof![
        Just(ProbeScript::Pass),
        Just(ProbeScript::Fail),
        Just(ProbeScript::Hang),
        (0..30u64).prop_map(|s| ProbeScript::PassAfter(secs(s))),
        (0..30u64).prop_map(|s| ProbeScript::FailAfter(secs(s))),
    ]
}

/// One thing that happens to the pod, after some virtual seconds.
#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Delete(Option<i64>),
    Evict,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..60u64).prop_map(Step::Wait),
        proptest::option::of(extreme_i64()).prop_map(Step::Delete),
        Just(Step::Evict),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn legal_extremes_never_panic_and_terminating_pods_never_restart(
        grace in extreme_i64(),
        deadline in proptest::option::of(extreme_i64()),
        policy in prop::sample::select(vec!["Always", "OnFailure", "Never"]),
        probes in proptest::collection::vec((prop::sample::select(vec![ProbeKind::Startup, ProbeKind::Liveness, ProbeKind::Readiness]), timing(), script()), 0..3),
        run_secs in 0..20u64,
        exit in 0..3i32,
        steps in proptest::collection::vec(step(), 1..6),
    ) {
        let mut proxy = Ctr::new("proxy").term(1);
        for (kind, t, s) in probes {
            proxy = proxy.probe(kind, t, s);
        }
        let mut pod = PodBuilder::new(policy)
            .grace(grace)
            .sidecar(proxy)
            .container(Ctr::new("app").run(run_secs).exit(exit).term(1));
        if let Some(d) = deadline {
            pod = pod.active_deadline(d);
        }
        let mut sim = pod.sim();
        let mut deleted_with: Option<(usize, usize)> = None;
        for s in steps {
            match s {
                Step::Wait(n) => sim.run_for(secs(n)),
                Step::Delete(g) => {
                    sim.delete(g);
                    let t = sim.timeline();
                    deleted_with.get_or_insert((starts(t, "app"), starts(t, "proxy")));
                }
                Step::Evict => sim.evict("Usage of EmptyDir volume \"v\" exceeds the limit \"1Mi\". "),
            }
        }
        let phase = sim.phase();
        prop_assert!(["Pending", "Running", "Succeeded", "Failed"].contains(&phase), "{phase}");
        if let Some(before) = deleted_with {
            // Both containers answer SIGTERM within a second: whatever the numbers, the pod
            // ends (the kill's 2 s minimum and a probe's own grace bound it from below only).
            prop_assert!(sim.run_to_end(secs(100_000)), "a deleted pod whose containers stop at once ended");
            let t = sim.timeline();
            prop_assert_eq!((starts(t, "app"), starts(t, "proxy")), before, "nothing starts once deleted");
        }
    }
}

/// Issue: this grace made the engine panic ("adding signed duration to timestamp overflowed").
#[test]
fn the_largest_grace_is_a_grace_that_never_ends() {
    let mut sim = PodBuilder::new("Always")
        .grace(i64::MAX)
        .sidecar(Ctr::new("proxy").ignores_term())
        .container(Ctr::new("app").term(1))
        .sim();
    sim.run_for(secs(5));
    sim.delete(None);
    sim.run_for(secs(3600));
    assert!(!sim.engine().is_finished(), "the sidecar ignores SIGTERM and the grace is unbounded");
    sim.delete(Some(1));
    assert!(sim.run_to_end(secs(3700)), "a shorter grace still ends it");
}
