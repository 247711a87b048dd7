//! `podvisor migrate FILE…`: legacy sidecars rewritten as native ones (see
//! `podvisor_lint::migrate`), shown as a unified diff or written in place, and checked by
//! running the old and the new manifest in virtual time.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

/// Options of `podvisor migrate`.
pub struct Options {
    /// The manifest files.
    pub files: Vec<String>,
    /// Write the new text over each file instead of printing a diff.
    pub in_place: bool,
    /// Container behaviours for the check, as `simulate --behave` takes them.
    pub behave: Vec<String>,
}

/// How long the check runs each pod in virtual time.
const CHECK: Duration = Duration::from_secs(600);

fn describe(o: &crate::simulate::Outcome) -> String {
    let end = if o.ended {
        format!("{} after {:.1} s", o.phase, o.seconds)
    } else {
        format!("still {} after {:.0} s (never completes)", o.phase, o.seconds)
    };
    format!(
        "{end}; start order {}; stop order {}",
        o.started.join(", "),
        if o.stopped.is_empty() { "-".into() } else { o.stopped.join(", ") }
    )
}

/// Migrates every file; `Ok(false)` when a file could not be migrated whole.
pub fn run(out: &mut impl Write, opts: Options) -> anyhow::Result<bool> {
    let mut all = true;
    let files = crate::load::expand(&opts.files).map_err(|p| anyhow::anyhow!("{}", p.0.join("\n")))?;
    for file in &files {
        let opened = std::fs::File::open(file).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let text = podvisor_manifest::read_bounded(file, opened).map_err(|e| anyhow::anyhow!("{e}"))?;
        // A file that does not load is said and skipped; the others are still migrated.
        let m = match podvisor_lint::migrate::migrate_text(file, &text) {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{e}")?;
                writeln!(out, "{file}: not migrated: it does not load (`podvisor lint` says more)")?;
                all = false;
                continue;
            }
        };
        for s in &m.skipped {
            writeln!(out, "{file}: not migrated: {s}")?;
            all = false;
        }
        for n in &m.notes {
            writeln!(out, "{file}: note: {n}")?;
        }
        if m.changes.is_empty() {
            if m.notes.is_empty() {
                writeln!(out, "{file}: nothing to migrate")?;
            }
            continue;
        }
        for c in &m.changes {
            writeln!(out, "{file}: {c}")?;
        }
        // The check: the old and the new manifest in virtual time.
        let before = podvisor_manifest::load_str(file, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let after = podvisor_manifest::load_str(file, &m.text)
            .map_err(|e| anyhow::anyhow!("{file}: the migration does not load: {e}"))?;
        for (b, a) in before.iter().zip(&after) {
            if let (Some(b), Some(a)) =
                (crate::simulate::outcome(b, &opts.behave, CHECK)?, crate::simulate::outcome(a, &opts.behave, CHECK)?)
            {
                writeln!(out, "{file}: check in virtual time, pod {}:", b.name)?;
                writeln!(out, "  before: {}", describe(&b))?;
                writeln!(out, "  after:  {}", describe(&a))?;
            }
        }
        let findings = podvisor_lint::lint_text(file, &m.text);
        for f in &findings {
            writeln!(out, "{file}: after migration still {} {}: {}", f.severity.as_str(), f.rule.name, f.message)?;
        }
        if opts.in_place {
            std::fs::write(Path::new(file), &m.text).map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
            writeln!(out, "{file}: written")?;
        } else {
            let diff = similar::TextDiff::from_lines(&text, &m.text);
            write!(
                out,
                "{}",
                diff.unified_diff().context_radius(3).header(
                    &format!("a/{}", file.trim_start_matches('/')),
                    &format!("b/{}", file.trim_start_matches('/'))
                )
            )?;
        }
    }
    Ok(all)
}
