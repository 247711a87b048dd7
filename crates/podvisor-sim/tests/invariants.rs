//! The lifecycle's invariants under random pods and random input orders: sidecars (with and
//! without startup probes) and app containers that run, exit and answer SIGTERM at random
//! times, deleted at a random moment with a random grace, or left to complete, with the node
//! process restarting in between. Whatever the order:
//!
//! - no app container starts before every sidecar is started (running, and its startupProbe
//!   passed if it has one) (R8, R10);
//! - sidecars are sent SIGTERM only once the app containers have exited, in reverse order of
//!   their declaration, unless the grace ran out while they waited for their turn (R42, R43);
//! - a deleted pod ends within one grace, shared by all its containers, plus the 2 s a sidecar
//!   is given when the apps used it up (R45), counted from the delete or from the last restart
//!   of the node process since (a restarted kubelet grants the grace again);
//! - nothing starts again once the pod is terminating (R41).

use std::time::Duration;

use podvisor_engine::ProbeKind;
use podvisor_sim::*;
use proptest::prelude::*;

/// A sidecar: how long it takes to start, how long its startup probe fails, how long it takes
/// to stop on SIGTERM.
#[derive(Debug, Clone)]
struct Side {
    start_delay: u64,
    startup_probe: Option<u64>,
    term: u64,
}

/// An app container: how long it runs, its exit code, how long it takes to stop on SIGTERM.
#[derive(Debug, Clone)]
struct App {
    run: u64,
    exit: i32,
    term: u64,
}

/// What happens to the pod, in order.
#[derive(Debug, Clone)]
enum Step {
    Wait(u64),
    Delete(Option<i64>),
    RestartNode(u64),
}

/// What the deletes asked for.
#[derive(Debug)]
struct Deletion {
    /// How many times each container had started at the first delete.
    starts: Vec<usize>,
    /// The grace in force (the shortest asked for).
    grace: i64,
    /// Until when a sidecar waits for its turn to stop (R43), from each moment on: a delete sets
    /// it (or brings it forward), a node restart sets it anew.
    turn_until: Vec<(f64, f64)>,
    /// By when every container has ended.
    end_by: f64,
}

impl Deletion {
    /// How long a pod may take to end after a delete with grace `g`: the grace, at least the
    /// 2 s minimum of a kill, and the 2 s a sidecar gets when the apps used it up (R45).
    fn budget(g: i64) -> f64 {
        g.max(2) as f64 + 2.0
    }
}

fn side() -> impl Strategy<Value = Side> {
    (0..4u64, proptest::option::of(0..6u64), 0..40u64).prop_map(|(start_delay, startup_probe, term)| Side {
        start_delay,
        startup_probe,
        term,
    })
}

fn app() -> impl Strategy<Value = App> {
    (0..30u64, 0..3i32, 0..40u64).prop_map(|(run, exit, term)| App { run, exit, term })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..20u64).prop_map(Step::Wait),
        1 => proptest::option::of(0..40i64).prop_map(Step::Delete),
        1 => (1..5u64).prop_map(Step::RestartNode),
    ]
}

fn startup(pass_after: u64) -> (ProbeKind, Timing, ProbeScript) {
    let timing = Timing {
        initial_delay: Some(0),
        period: Some(1),
        timeout: Some(1),
        failure_threshold: Some(60),
        success_threshold: Some(1),
        termination_grace: None,
    };
    (ProbeKind::Startup, timing, ProbeScript::PassAfter(secs(pass_after)))
}

fn at(e: &Entry) -> f64 {
    e.at.as_secs_f64()
}

fn first(tl: &[Entry], name: &str, pred: impl Fn(&Mark) -> bool) -> Option<f64> {
    tl.iter().find(|e| e.container == name && pred(&e.mark)).map(at)
}

fn is_term(m: &Mark) -> bool {
    *m == Mark::Signalled("SIGTERM".into())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn sidecars_gate_apps_stop_last_in_reverse_within_one_grace(
        policy in prop::sample::select(vec!["Always", "OnFailure", "Never"]),
        grace in 1..30i64,
        sides in proptest::collection::vec(side(), 1..4),
        apps in proptest::collection::vec(app(), 1..3),
        steps in proptest::collection::vec(step(), 1..6),
    ) {
        let mut pod = PodBuilder::new(policy).grace(grace);
        let side_names: Vec<String> = (0..sides.len()).map(|i| format!("side-{i}")).collect();
        let app_names: Vec<String> = (0..apps.len()).map(|i| format!("app-{i}")).collect();
        for (s, name) in sides.iter().zip(&side_names) {
            let mut c = Ctr::new(name).start_delay(s.start_delay).run(100_000).term(s.term);
            if let Some(p) = s.startup_probe {
                let (kind, timing, script) = startup(p);
                c = c.probe(kind, timing, script);
            }
            pod = pod.sidecar(c);
        }
        for (a, name) in apps.iter().zip(&app_names) {
            pod = pod.container(Ctr::new(name).run(a.run).exit(a.exit).term(a.term));
        }
        let mut sim = pod.sim();
        let mut deleted: Option<Deletion> = None;
        let all: Vec<String> = side_names.iter().chain(&app_names).cloned().collect();
        for s in steps {
            match s {
                Step::Wait(n) => sim.run_for(secs(n)),
                Step::Delete(g) => {
                    let now = sim.elapsed().as_secs_f64();
                    sim.delete(g);
                    let tl = sim.timeline();
                    let g = g.unwrap_or(grace);
                    let d = deleted.get_or_insert_with(|| Deletion {
                        starts: all.iter().map(|n| order::starts(tl, n)).collect(),
                        grace: g,
                        turn_until: Vec::new(),
                        end_by: f64::INFINITY,
                    });
                    // A second delete may only shorten the grace (R39).
                    d.grace = d.grace.min(g);
                    let until = d.turn_until.last().map_or(f64::INFINITY, |(_, u)| *u).min(now + g as f64);
                    d.turn_until.push((now, until));
                    d.end_by = d.end_by.min(now + Deletion::budget(g));
                }
                Step::RestartNode(down) => {
                    sim.restart_node(secs(down), &[]);
                    // A new node process grants a terminating pod its grace again, as a
                    // restarted kubelet does: the grace counts from the restart.
                    if let Some(d) = &mut deleted {
                        let now = sim.elapsed().as_secs_f64();
                        d.turn_until.push((now, now + d.grace as f64));
                        d.end_by = now + Deletion::budget(d.grace);
                    }
                }
            }
        }
        // The pod completes when no app restarts (Never, or OnFailure with every exit 0).
        let completes = policy == "Never" || policy == "OnFailure" && apps.iter().all(|a| a.exit == 0);
        if completes || deleted.is_some() {
            prop_assert!(sim.run_to_end(sim.elapsed() + Duration::from_secs(3_600)), "the pod ends");
        }
        let tl = sim.timeline().to_vec();

        // Gating: an app's first start comes after every sidecar is started.
        for name in &app_names {
            let Some(app_start) = first(&tl, name, |m| *m == Mark::Starting) else { continue };
            for (s, side_name) in sides.iter().zip(&side_names) {
                let running = first(&tl, side_name, |m| *m == Mark::Starting);
                prop_assert!(running.is_some_and(|t| t <= app_start), "{name} started before {side_name} ran: {tl:#?}");
                if s.startup_probe.is_some() {
                    let passed = first(&tl, side_name, |m| *m == Mark::Probe(ProbeKind::Startup, true));
                    prop_assert!(passed.is_some_and(|t| t <= app_start), "{name} started before {side_name}'s startup probe passed: {tl:#?}");
                }
            }
        }

        // Stop order: sidecars get SIGTERM after the apps are gone, the last declared first.
        // The deadline in force at `t`.
        let deadline_at = |t: f64| {
            deleted.as_ref().and_then(|d| d.turn_until.iter().rev().find(|(from, _)| *from <= t + 1e-9).map(|(_, u)| *u))
        };
        let terminated_from = tl.iter().position(|e| app_names.contains(&e.container) && is_term(&e.mark)
            || side_names.contains(&e.container) && is_term(&e.mark));
        if let Some(from) = terminated_from {
            let after = &tl[from..];
            let term_at = |n: &str| first(after, n, is_term);
            let last_app_exit = after
                .iter()
                .filter(|e| app_names.contains(&e.container) && matches!(e.mark, Mark::Exiting(_) | Mark::Killed))
                .map(at)
                .fold(f64::NEG_INFINITY, f64::max);
            let mut previous: Option<(String, f64)> = None;
            for side_name in side_names.iter().rev() {
                let Some(t) = term_at(side_name) else { continue };
                // A sidecar waits for its turn at most until the grace runs out (R43).
                let turn_over = deadline_at(t).is_some_and(|d| t >= d - 1e-9);
                prop_assert!(t >= last_app_exit || turn_over, "{side_name} signalled before the apps exited: {tl:#?}");
                if let Some((prev, pt)) = &previous {
                    prop_assert!(*pt <= t || turn_over, "{prev} (declared later) must be signalled before {side_name}: {tl:#?}");
                }
                previous = Some((side_name.clone(), t));
            }
        }

        if let Some(d) = deleted {
            prop_assert!(sim.engine().is_finished(), "a deleted pod ends");
            let last_exit = tl.iter()
                .filter(|e| all.contains(&e.container) && matches!(e.mark, Mark::Exiting(_) | Mark::Killed))
                .map(at)
                .fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(last_exit <= d.end_by + 1e-9, "a container ran until {last_exit}s, past {}s: {tl:#?}", d.end_by);
            let now: Vec<usize> = all.iter().map(|n| order::starts(&tl, n)).collect();
            prop_assert_eq!(now, d.starts, "nothing starts once deleted");
        }
    }
}
