//! Findings rendered: for people (grouped by file, coloured on request), as JSON, and as SARIF
//! 2.1.0 (what code-scanning services read).

use serde_json::{Value, json};

use crate::{Finding, RULES, Severity};

/// Renders findings for a terminal: grouped by file in the order given, each with its place,
/// severity, rule, field, what happens and the fix; a summary line last. `colour` adds ANSI
/// colours.
pub fn human(findings: &[Finding], colour: bool) -> String {
    let paint = |code: &str, text: &str| if colour { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_string() };
    let mut out = String::new();
    let mut file: Option<&str> = None;
    for f in findings {
        if file != Some(f.file.as_str()) {
            if file.is_some() {
                out.push('\n');
            }
            out.push_str(&paint("1", &f.file));
            out.push('\n');
            file = Some(&f.file);
        }
        let severity = match f.severity {
            Severity::Error => paint("31", "error"),
            Severity::Warning => paint("33", "warning"),
        };
        // Live objects have no place in a file.
        let place = if f.line > 0 { format!("{}:{}  ", f.line, f.column) } else { String::new() };
        out.push_str(&format!("  {place}{severity}  {} ({})", f.rule.name, f.rule.id));
        if !f.object.is_empty() {
            out.push_str(&format!("  {}", f.object));
        }
        if !f.field.is_empty() {
            out.push_str(&format!("  {}", paint("2", &f.field)));
        }
        out.push('\n');
        out.push_str(&format!("    {}\n", f.message));
        if !f.fix.is_empty() {
            out.push_str(&format!("    {} {}\n", paint("32", "fix:"), f.fix));
        }
    }
    let errors = findings.iter().filter(|f| f.severity == Severity::Error).count();
    let warnings = findings.len() - errors;
    if !findings.is_empty() {
        out.push('\n');
    }
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    out.push_str(&format!("{}, {}\n", plural(errors, "error"), plural(warnings, "warning")));
    out
}

fn finding_json(f: &Finding) -> Value {
    json!({
        "rule": f.rule.name, "id": f.rule.id, "severity": f.severity.as_str(),
        "file": f.file, "line": f.line, "column": f.column, "field": f.field, "object": f.object,
        "message": f.message, "fix": f.fix,
    })
}

/// The findings as a JSON array, one object per finding.
pub fn json(findings: &[Finding]) -> String {
    let all: Vec<Value> = findings.iter().map(finding_json).collect();
    serde_json::to_string_pretty(&all).unwrap_or_default()
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

/// The findings as a SARIF 2.1.0 log: one run of the tool `podvisor` with every rule
/// described, and a result per finding located by file, line and column.
pub fn sarif(findings: &[Finding], version: &str) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.name,
                "shortDescription": {"text": r.summary},
                "help": {"text": format!("See docs/lint.md#{} for a bad and a good example.", r.name)},
                "defaultConfiguration": {"level": level(r.severity)},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let index = RULES.iter().position(|r| r.id == f.rule.id).unwrap_or(0);
            let text = if f.fix.is_empty() { f.message.clone() } else { format!("{} Fix: {}", f.message, f.fix) };
            let mut result = json!({
                "ruleId": f.rule.id, "ruleIndex": index, "level": level(f.severity),
                "message": {"text": text},
                "locations": [{"physicalLocation": {
                    "artifactLocation": {"uri": f.file},
                    "region": {"startLine": f.line.max(1), "startColumn": f.column.max(1)},
                }}],
            });
            let logical = json!([{"fullyQualifiedName": format!("{}.{}", f.object, f.field), "kind": "member"}]);
            if f.line == 0 {
                // A live object: named, with no file to point at.
                result["locations"] = json!([{"logicalLocations": logical}]);
            } else if !f.field.is_empty() {
                result["locations"][0]["logicalLocations"] = logical;
            }
            result
        })
        .collect();
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "podvisor", "version": version, "rules": rules}},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default()
}
