//! The seed manifests linted: each with the findings it has, placed, and nothing else.

use podvisor_lint::lint_text;

fn lint(name: &str) -> Vec<(String, usize, usize, String)> {
    let path = format!("{}/../../../shared/seed-manifests/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lint_text(name, &text).into_iter().map(|f| (f.rule.name.to_string(), f.line, f.column, f.field)).collect()
}

fn one(name: &str) -> (String, usize, usize, String) {
    let mut all = lint(name);
    assert_eq!(all.len(), 1, "{name}: {all:#?}");
    all.remove(0)
}

#[test]
fn the_legacy_sidecar_of_seed004_5_is_found_where_it_is() {
    let f = one("seed004-5-legacy.yaml");
    assert_eq!(f, ("legacy-sidecar".into(), 11, 5, "spec.containers[1]".into()));
}

#[test]
fn the_readiness_misconception_of_seed004_2_is_found_on_the_probe() {
    let f = one("seed004-2.yaml");
    assert_eq!(f.0, "readiness-does-not-gate");
    assert_eq!(f.3, "spec.initContainers[0].readinessProbe");
    assert_eq!((f.1, f.2), (13, 7));
}

#[test]
fn the_pid1_shell_of_seed002_1_is_found_on_its_command() {
    let f = one("seed002-1.yaml");
    assert_eq!(f, ("pid1-shell-ignores-sigterm".into(), 14, 9, "spec.template.spec.initContainers[0].command".into()));
}

#[test]
fn the_invalid_yaml_of_seed003_is_reported_with_its_place() {
    for name in ["seed003-1.yaml", "seed003-2.yaml"] {
        let all = lint(name);
        assert!(!all.is_empty() && all.iter().all(|f| f.0 == "invalid"), "{name}: {all:#?}");
        assert!(all[0].1 > 1, "{name}: placed at a line: {all:#?}");
    }
}

#[test]
fn the_readiness_comments_of_seed004_3_and_004_4_are_found_too() {
    // seed004-3: the migration connects to localhost:5432 while the proxy has only a
    // readinessProbe. seed004-4: its comments say the schema check and the app wait for the
    // sidecars to be ready; they do not.
    let f = one("seed004-3.yaml");
    assert_eq!(
        (f.0.as_str(), f.3.as_str()),
        ("readiness-does-not-gate", "spec.template.spec.initContainers[0].readinessProbe")
    );
    let all = lint("seed004-4.yaml");
    let fields: Vec<&str> = all.iter().map(|f| f.3.as_str()).collect();
    assert!(all.iter().all(|f| f.0 == "readiness-does-not-gate"), "{all:#?}");
    assert_eq!(fields, ["spec.initContainers[0].readinessProbe", "spec.initContainers[2].readinessProbe"]);
}

#[test]
fn the_other_seeds_are_clean() {
    for name in ["seed000-1.yaml", "seed001-1.yaml", "seed004-1.yaml"] {
        assert_eq!(lint(name), [], "{name}");
    }
}
