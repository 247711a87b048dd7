//! Effective pod resources with sidecars (R66, R67).

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use podvisor_objects::resources::{effective, format_milli, parse_milli};

fn c(name: &str, cpu: &str, sidecar: bool) -> Container {
    Container {
        name: name.into(),
        restart_policy: sidecar.then(|| "Always".to_string()),
        resources: Some(ResourceRequirements {
            requests: Some([("cpu".to_string(), Quantity(cpu.into()))].into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn r67_worked_example() {
    let mut spec = PodSpec {
        init_containers: Some(vec![
            c("a", "100m", true),
            c("b", "500m", false),
            c("c", "200m", true),
            c("d", "50m", false),
        ]),
        containers: vec![c("x", "300m", false)],
        ..Default::default()
    };
    assert_eq!(format_milli(effective(&spec, false).unwrap()["cpu"]), "600m");
    spec.init_containers.as_mut().unwrap()[1] = c("b", "800m", false);
    assert_eq!(
        format_milli(effective(&spec, false).unwrap()["cpu"]),
        "900m",
        "earlier sidecars add to each init container"
    );
}

#[test]
fn quantities() {
    assert_eq!(parse_milli("100m"), Ok(100));
    assert_eq!(parse_milli("2"), Ok(2000));
    assert_eq!(parse_milli("1.5"), Ok(1500));
    assert_eq!(parse_milli("64Mi"), Ok(64 * 1024 * 1024 * 1000));
    assert_eq!(parse_milli("1e3"), Ok(1_000_000));
    assert!(parse_milli("1x").is_err());
    assert!(parse_milli("").is_err());
}

mod extremes {
    use super::*;
    use proptest::prelude::*;

    /// Quantity text of every shape the API server's regular expression admits, with numbers
    /// far past any machine's range.
    fn quantity() -> impl Strategy<Value = String> {
        let sign = prop_oneof![Just(""), Just("+"), Just("-")];
        let digits = "[0-9]{1,60}";
        let frac = proptest::option::of("[0-9]{0,60}");
        let suffix = prop_oneof![
            Just(String::new()),
            prop::sample::select(vec!["m", "u", "n", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
                .prop_map(str::to_string),
            any::<i32>().prop_map(|e| format!("e{e}")),
            (-40i32..40).prop_map(|e| format!("E{e}")),
        ];
        (sign, digits, frac, suffix).prop_map(|(s, d, f, x)| match f {
            Some(f) => format!("{s}{d}.{f}{x}"),
            None => format!("{s}{d}{x}"),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Issue: `9Ei` wrapped and `1e30` overflowed. Every quantity parses or is refused, never
        /// panics, and a larger one is never smaller.
        #[test]
        fn every_quantity_parses_without_overflow(q in quantity()) {
            if let Ok(v) = parse_milli(&q) {
                let negative = q.starts_with('-');
                prop_assert!(if negative { v <= 0 } else { v >= 0 }, "{q} gave {v}");
            }
        }

        /// Sums over many huge containers saturate instead of overflowing.
        #[test]
        fn effective_resources_saturate(qs in proptest::collection::vec(quantity(), 1..8)) {
            let spec = PodSpec {
                init_containers: Some(qs.iter().enumerate().map(|(i, q)| c(&format!("i{i}"), q, i % 2 == 0)).collect()),
                containers: qs.iter().enumerate().map(|(i, q)| c(&format!("c{i}"), q, false)).collect(),
                ..Default::default()
            };
            let _ = effective(&spec, false);
        }
    }

    #[test]
    fn the_issues_values_give_saturated_numbers() {
        assert_eq!(parse_milli("9Ei"), Ok(9 * 1024i128.pow(6) * 1000));
        assert_eq!(parse_milli("1e30"), Ok(10i128.pow(33)));
        assert_eq!(parse_milli("1e40"), Ok(i128::MAX));
        assert_eq!(parse_milli("1e-2147483648"), Ok(0));
        assert_eq!(parse_milli(&"9".repeat(60)), Ok(i128::MAX));
    }
}

/// `status.qosClass` as the API server computes it, on the defaulted spec (a limit alone is
/// also the request).
#[test]
fn the_qos_class_is_the_api_servers() {
    use podvisor_objects::resources::qos_class;
    let class = |containers: serde_json::Value, init: serde_json::Value| {
        let spec =
            serde_json::from_value(serde_json::json!({"containers": containers, "initContainers": init})).unwrap();
        let mut pod = podvisor_manifest::Object::Pod(Box::new(k8s_openapi::api::core::v1::Pod {
            spec: Some(spec),
            ..Default::default()
        }));
        podvisor_objects::defaults::apply(&mut pod);
        let podvisor_manifest::Object::Pod(pod) = pod else { unreachable!() };
        qos_class(pod.spec.as_ref().unwrap())
    };
    let c = |resources: serde_json::Value| serde_json::json!({"name": "c", "resources": resources});
    let none = serde_json::json!([]);
    assert_eq!(class(serde_json::json!([c(serde_json::json!({}))]), none.clone()), "BestEffort");
    let both = serde_json::json!({"limits": {"cpu": "500m", "memory": "64Mi"}});
    assert_eq!(class(serde_json::json!([c(both.clone())]), none.clone()), "Guaranteed");
    let equal =
        serde_json::json!({"requests": {"cpu": "0.5", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
    assert_eq!(class(serde_json::json!([c(equal)]), none.clone()), "Guaranteed", "equal amounts, other spellings");
    let less = serde_json::json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "500m", "memory": "64Mi"}});
    assert_eq!(class(serde_json::json!([c(less)]), none.clone()), "Burstable");
    let memory_only = serde_json::json!({"limits": {"memory": "64Mi"}});
    assert_eq!(class(serde_json::json!([c(memory_only)]), none.clone()), "Burstable");
    // Every container counts, init containers too; other resources do not.
    assert_eq!(class(serde_json::json!([c(both.clone()), c(serde_json::json!({}))]), none.clone()), "Burstable");
    assert_eq!(class(serde_json::json!([c(both.clone())]), serde_json::json!([c(serde_json::json!({}))])), "Burstable");
    let storage = serde_json::json!({"requests": {"ephemeral-storage": "1Gi"}});
    assert_eq!(class(serde_json::json!([c(storage)]), none), "BestEffort");
}
