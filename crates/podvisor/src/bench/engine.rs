//! The lifecycle engine alone: the seed Job's pod (a sidecar that ignores SIGTERM, an app that
//! runs 5 s) from creation to its end, in virtual time, again and again.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use podvisor_sim::Sim;
use podvisor_sim::infer::guess;

/// How many whole pod lifecycles the engine went through.
pub(crate) struct Engine {
    pub runs: u64,
    pub per_second: f64,
}

/// seed002-1 as it is.
pub(crate) const SEED: &str = r#"
apiVersion: batch/v1
kind: Job
metadata: {name: sidecar-job}
spec:
  template:
    spec:
      restartPolicy: Never
      initContainers:
      - name: log-shipper
        image: busybox:1.36
        restartPolicy: Always
        command: [sh, -c, "while true; do echo 'shipping logs...'; sleep 2; done"]
      containers:
      - name: main-task
        image: busybox:1.36
        command: [sh, -c, "echo 'task done' && sleep 5"]
"#;

/// Runs the lifecycle for about `budget` of wall time.
pub(crate) fn measure(budget: Duration) -> Engine {
    let spec = podvisor_manifest::load_str("seed002-1.yaml", SEED)
        .ok()
        .and_then(|mut m| match m.pop()?.object {
            podvisor_manifest::Object::Job(j) => j.spec?.template.spec,
            _ => None,
        })
        .unwrap_or_default();
    let behaviours: HashMap<_, _> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .map(|c| (c.name.clone(), vec![guess(c).behaviour]))
        .collect();
    let started = Instant::now();
    let mut runs = 0u64;
    while started.elapsed() < budget {
        let mut sim = Sim::new("sidecar-job", spec.clone(), behaviours.clone());
        if sim.run_to_end(Duration::from_secs(3600)) {
            runs += 1;
        }
    }
    Engine { runs, per_second: runs as f64 / started.elapsed().as_secs_f64() }
}
