//! The write path in process: admitting a Pod body as the API server does (the JSON decoded
//! straight into the typed object, defaulted, validated, made the stored form), beside the same
//! work done through a text and YAML round trip, the way a body was once decoded.

use std::time::Instant;

use podvisor_apiserver::admission::{self, FieldValidation};
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use super::Samples;

/// Microseconds per admission of the same body, each way.
pub(crate) struct Admission {
    /// `admission::admit`: JSON → typed → stored form.
    pub direct: Samples,
    /// JSON → text → YAML parse → typed → the same steps.
    pub round_trip: Samples,
}

/// The seed Job's pod, as kubectl would send it.
fn body() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "sidecar-job", "labels": {"app": "bench"}},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "log-shipper", "image": "busybox:1.36", "restartPolicy": "Always",
                "command": ["sh", "-c", "while true; do echo 'shipping logs...'; sleep 2; done"],
                "startupProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1}}],
            "containers": [{"name": "main-task", "image": "busybox:1.36",
                "command": ["sh", "-c", "echo 'task done' && sleep 5"],
                "env": [{"name": "A", "value": "1"}], "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}]
        }
    })
}

/// The old route: the body as text through the manifest reader, then the same typed steps.
fn round_trip(body: &Value) -> Option<Value> {
    let mut m = podvisor_manifest::load_str("request", &body.to_string()).ok()?.pop()?;
    admission::prepare(&mut m.object).ok()?;
    admission::admit_prepared(Resource::Pods, &m.object).ok()
}

/// Admits the body `n` times each way, alternating, and times each admission.
pub(crate) fn measure(n: usize) -> Admission {
    let body = body();
    let (mut direct, mut round) = (Samples::default(), Samples::default());
    for _ in 0..n {
        let t = Instant::now();
        let admitted = admission::admit(Resource::Pods, body.clone(), Some("default"), FieldValidation::Strict);
        direct.0.push(t.elapsed().as_secs_f64() * 1e6);
        debug_assert!(admitted.is_ok());
        let t = Instant::now();
        let old = round_trip(&body);
        round.0.push(t.elapsed().as_secs_f64() * 1e6);
        debug_assert!(old.is_some());
    }
    Admission { direct, round_trip: round }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_routes_store_the_same_object() {
        let direct = admission::admit(Resource::Pods, body(), Some("default"), FieldValidation::Strict).unwrap();
        assert_eq!(Some(direct.object), round_trip(&body()));
        let a = measure(3);
        assert_eq!((a.direct.0.len(), a.round_trip.0.len()), (3, 3));
    }
}
