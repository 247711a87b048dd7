//! `podvisor lint FILE|DIR|-…`: the findings of `podvisor-lint` on files, directories (their
//! `.yaml`, `.yml` and `.json` files, sorted) and standard input, as text, JSON or SARIF.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use podvisor_lint::{Finding, Severity, fails, report};

/// How findings are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people: grouped by file.
    Human,
    /// One JSON object per finding.
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
}

/// The findings that fail the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    /// Errors.
    Error,
    /// Warnings and errors.
    Warning,
    /// Nothing: always exit 0.
    Never,
}

/// When to colour the human output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Colour {
    /// On a terminal, unless `NO_COLOR` is set or `TERM` is `dumb`.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The live workloads to lint, from an API.
pub struct Live {
    /// The kubeconfig (else the usual ones).
    pub kubeconfig: Option<PathBuf>,
    /// The context.
    pub context: Option<String>,
    /// The namespace (else the context's).
    pub namespace: Option<String>,
    /// Every namespace.
    pub all_namespaces: bool,
}

/// Options of `podvisor lint`.
pub struct Options {
    /// Files, directories, `-`.
    pub inputs: Vec<String>,
    /// Live workloads too.
    pub live: Option<Live>,
    /// The format.
    pub output: Output,
    /// What fails the run.
    pub fail_on: FailOn,
    /// Colours.
    pub colour: Colour,
}

/// The manifest files of `dir`, recursively, sorted; hidden entries and symlinks are skipped.
pub fn manifests_in(dir: &Path, out: &mut Vec<PathBuf>, depth: usize) -> std::io::Result<()> {
    if depth > 32 {
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = e.file_type()?;
        let path = e.path();
        if kind.is_dir() {
            manifests_in(&path, out, depth + 1)?;
        } else if kind.is_file() && matches!(path.extension().and_then(|x| x.to_str()), Some("yaml" | "yml" | "json")) {
            out.push(path);
        }
    }
    Ok(())
}

/// The findings on the live workloads an API holds; each is named `<namespace>` as its file.
fn lint_live(live: &Live) -> anyhow::Result<Vec<Finding>> {
    let target = podvisor_kube::Target { kubeconfig: live.kubeconfig.clone(), context: live.context.clone() };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let objects = rt.block_on(async {
        let c = podvisor_kube::connect(&target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let ns = if live.all_namespaces { None } else { Some(live.namespace.clone().unwrap_or(c.namespace.clone())) };
        podvisor_kube::workloads(&c.client, ns.as_deref()).await.map_err(|e| anyhow::anyhow!(c.say(&e)))
    })?;
    let mut findings = Vec::new();
    for (ns, object) in objects {
        findings.extend(podvisor_lint::lint_objects(&format!("namespace {ns}"), std::slice::from_ref(&object)));
    }
    findings.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(findings)
}

fn lint_path(path: &Path) -> Vec<Finding> {
    match podvisor_manifest::load_file(path) {
        Ok(manifests) => podvisor_lint::lint_manifests(&manifests),
        Err(e) => podvisor_lint::load_problems(e),
    }
}

/// Lints every input and prints the findings; `Ok(false)` when they fail the run.
pub fn run(out: &mut impl Write, opts: Options) -> anyhow::Result<bool> {
    let mut findings = Vec::new();
    for input in &opts.inputs {
        if input == "-" {
            let text = podvisor_manifest::read_bounded("-", std::io::stdin().lock());
            findings.extend(match text {
                Ok(t) => podvisor_lint::lint_text("-", &t),
                Err(e) => podvisor_lint::load_problems(e),
            });
            continue;
        }
        let path = Path::new(input);
        if path.is_dir() {
            let mut files = Vec::new();
            manifests_in(path, &mut files, 0).map_err(|e| anyhow::anyhow!("{input}: {e}"))?;
            if files.is_empty() {
                anyhow::bail!("{input}: no .yaml, .yml or .json files in it");
            }
            for f in files {
                findings.extend(lint_path(&f));
            }
        } else {
            findings.extend(lint_path(path));
        }
    }
    if let Some(live) = &opts.live {
        findings.extend(lint_live(live)?);
    }
    let colour = match opts.colour {
        Colour::Always => true,
        Colour::Never => false,
        Colour::Auto => {
            std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    };
    match opts.output {
        Output::Human => write!(out, "{}", report::human(&findings, colour))?,
        Output::Json => writeln!(out, "{}", report::json(&findings))?,
        Output::Sarif => writeln!(out, "{}", report::sarif(&findings, env!("CARGO_PKG_VERSION")))?,
    }
    let threshold = match opts.fail_on {
        FailOn::Error => Some(Severity::Error),
        FailOn::Warning => Some(Severity::Warning),
        FailOn::Never => None,
    };
    Ok(!fails(&findings, threshold))
}
