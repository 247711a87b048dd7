//! The reports: SARIF that reads back through the SARIF 2.1.0 object model unchanged, JSON with
//! every field, and the human form grouped by file.

use podvisor_lint::{Severity, fails, lint_text, report};

const BAD: &str = include_str!("../../../../shared/seed-manifests/seed002-1.yaml");
const LEGACY: &str = include_str!("../../../../shared/seed-manifests/seed004-5-legacy.yaml");

fn findings() -> Vec<podvisor_lint::Finding> {
    let mut all = lint_text("seed002-1.yaml", BAD);
    all.extend(lint_text(
        "jobs/legacy.yaml",
        &LEGACY.replace("spec:\n  containers:", "spec:\n  restartPolicy: Never\n  containers:"),
    ));
    all
}

#[test]
fn sarif_is_a_sarif_2_1_0_log_that_reads_back_unchanged() {
    let text = report::sarif(&findings(), "0.1.0");
    let typed: serde_sarif::sarif::Sarif = serde_json::from_str(&text).expect("the SARIF object model reads it");
    let back = serde_json::to_value(&typed).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, ours, "nothing the model does not know, nothing it would add");
    assert_eq!(ours["version"], "2.1.0");
    let results = ours["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["ruleId"], "PV004");
    assert_eq!(results[0]["level"], "warning");
    assert_eq!(results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], 14);
    assert_eq!(results[1]["ruleId"], "PV001");
    assert_eq!(results[1]["level"], "error", "a legacy sidecar in a pod meant to end is an error");
    let rules = ours["runs"][0]["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules[results[1]["ruleIndex"].as_u64().unwrap() as usize]["id"], "PV001");
}

#[test]
fn json_and_human_reports_carry_place_rule_message_and_fix() {
    let all = findings();
    let json: serde_json::Value = serde_json::from_str(&report::json(&all)).unwrap();
    assert_eq!(json[0]["rule"], "pid1-shell-ignores-sigterm");
    assert_eq!(json[0]["field"], "spec.template.spec.initContainers[0].command");
    assert_eq!(json[0]["object"], "Job/sidecar-job");
    assert!(json[0]["fix"].as_str().unwrap().contains("trap"));
    let human = report::human(&all, false);
    assert!(human.starts_with("seed002-1.yaml\n  14:9  warning  pid1-shell-ignores-sigterm (PV004)"), "{human}");
    assert!(human.contains("\njobs/legacy.yaml\n"), "{human}");
    assert!(human.ends_with("1 error, 1 warning\n"), "{human}");
    assert!(!human.contains('\x1b'));
    assert!(report::human(&all, true).contains("\x1b[31merror\x1b[0m"));
    assert!(fails(&all, Some(Severity::Error)));
    assert!(!fails(&all[..1], Some(Severity::Error)), "warnings alone pass");
    assert!(fails(&all[..1], Some(Severity::Warning)));
    assert!(!fails(&all, None));
}
