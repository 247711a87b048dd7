//! `podvisor lint`: the mistakes people make with sidecars, found in their manifests before
//! anything runs.
//!
//! Each [`Rule`] has a stable id and name, and each [`Finding`] says where (file, line, column,
//! field path), what happens at run time in the kubelet's terms (the spec's rule numbers), and
//! the fix. A manifest that does not load or validate is one finding per problem (rule
//! `invalid`), placed as the API server would place it. [`report`] renders findings for people,
//! as JSON, or as SARIF 2.1.0 for code scanning.
//!
//! The rules read the typed objects only; they never run anything. [`migrate`] rewrites what
//! two of them find (legacy sidecars, sidecars relied on for readiness) in the manifest's own
//! text.

#![warn(missing_docs)]

pub mod migrate;
pub mod report;
mod rules;
mod shell;
mod workload;

use podvisor_manifest::{LoadError, Manifest};
use serde::Serialize;

pub use rules::RULES;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The workload will not do what it is written to do (a Job that never completes, a probe
    /// that can never pass, a manifest the API server refuses).
    Error,
    /// It works, but not as its author most likely thinks (an ordering that does not hold, a
    /// shutdown that waits out its grace period).
    Warning,
}

impl Severity {
    /// `error` or `warning`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// A lint rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The stable id (`PV001`).
    pub id: &'static str,
    /// The stable name (`legacy-sidecar`), also the anchor of its page in `docs/lint.md`.
    pub name: &'static str,
    /// One line on what it finds.
    pub summary: &'static str,
    /// Its usual severity (a finding may be more severe where the consequence is worse).
    pub severity: Severity,
}

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: &'static Rule,
    /// How bad it is here.
    pub severity: Severity,
    /// The file (`-` for standard input).
    pub file: String,
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1.
    pub column: usize,
    /// The field path (`spec.initContainers[0].readinessProbe`); empty for a file-wide problem.
    pub field: String,
    /// The object (`Job/sidecar-job`); empty when none could be read.
    pub object: String,
    /// What happens at run time.
    pub message: String,
    /// What to do about it; empty when the message says it.
    pub fix: String,
}

/// Lints manifest text read from `source`: the load and validation problems if there are any
/// (as the API server would refuse the objects, nothing else is said about them), else every
/// rule's findings on every object.
pub fn lint_text(source: &str, text: &str) -> Vec<Finding> {
    match podvisor_manifest::load_str(source, text) {
        Ok(manifests) => lint_manifests(&manifests),
        Err(e) => load_problems(e),
    }
}

/// The findings of a file that could not be read or loaded.
pub fn load_problems(e: LoadError) -> Vec<Finding> {
    match e {
        LoadError::Read { source_name, error } => vec![Finding {
            rule: &rules::INVALID,
            severity: Severity::Error,
            file: source_name,
            line: 1,
            column: 1,
            field: String::new(),
            object: String::new(),
            message: format!("cannot read: {error}"),
            fix: String::new(),
        }],
        LoadError::Invalid { source_name, problems } => problems
            .into_iter()
            .map(|p| Finding {
                rule: &rules::INVALID,
                severity: Severity::Error,
                file: source_name.clone(),
                line: p.pos.line,
                column: p.pos.column,
                field: p.unknown_field.unwrap_or_default(),
                object: String::new(),
                message: p.message,
                fix: String::new(),
            })
            .collect(),
    }
}

/// Lints loaded manifests: each is defaulted and validated as the API server would (its
/// problems are `invalid` findings), then every rule runs on the valid ones.
pub fn lint_manifests(manifests: &[Manifest]) -> Vec<Finding> {
    manifests.iter().flat_map(|m| lint_one(&m.object, &m.source, &|field| m.locate(field))).collect()
}

/// Lints objects read from an API (`source` names where, `cluster/namespace`): the rules run
/// on them as stored, with no place in a file (line and column 0).
pub fn lint_objects(source: &str, objects: &[podvisor_manifest::Object]) -> Vec<Finding> {
    objects.iter().flat_map(|o| lint_one(o, source, &|_| podvisor_manifest::Pos { line: 0, column: 0 })).collect()
}

fn lint_one(
    object: &podvisor_manifest::Object,
    source: &str,
    locate: &dyn Fn(&str) -> podvisor_manifest::Pos,
) -> Vec<Finding> {
    let mut out = Vec::new();
    {
        let mut object = object.clone();
        podvisor_objects::defaults::apply(&mut object);
        let object_name = format!("{}/{}", object.kind(), object.name());
        if let Err(invalid) = podvisor_objects::validate(&object) {
            for e in &invalid.errors {
                let pos = locate(&e.field);
                out.push(Finding {
                    rule: &rules::INVALID,
                    severity: Severity::Error,
                    file: source.to_string(),
                    line: pos.line,
                    column: pos.column,
                    field: e.field.clone(),
                    object: object_name.clone(),
                    message: format!("{} {:?} is invalid: {e}", object.kind(), invalid.name),
                    fix: String::new(),
                });
            }
            return out;
        }
        for w in workload::of(&object) {
            for f in rules::check(&w) {
                let pos = locate(&f.field);
                out.push(Finding {
                    rule: f.rule,
                    severity: f.severity,
                    file: source.to_string(),
                    line: pos.line,
                    column: pos.column,
                    field: f.field,
                    object: object_name.clone(),
                    message: f.message,
                    fix: f.fix,
                });
            }
        }
    }
    out
}

/// Whether `c` runs a shell script as PID 1 that leaves SIGTERM unhandled (no `trap`, no
/// `exec`): stopping it then waits out the whole grace period (rule PV004).
pub fn shell_ignores_sigterm(c: &k8s_openapi::api::core::v1::Container) -> bool {
    shell::pid1_script(c).is_some_and(shell::ignores_sigterm)
}

/// Whether `findings` fail a run that fails on `threshold` and worse (`None`: never).
pub fn fails(findings: &[Finding], threshold: Option<Severity>) -> bool {
    threshold.is_some_and(|t| findings.iter().any(|f| f.severity <= t))
}
