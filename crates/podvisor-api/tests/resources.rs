//! Effective pod resources with sidecars (R66, R67).

use k8s_openapi::api::core::v1::{Container, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use podvisor_api::resources::{effective, format_milli, parse_milli};

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
