//! Reading manifest files (or standard input) into defaulted, validated objects, with every
//! problem placed at its file, line and column.

use std::path::Path;

use podvisor_manifest::{Manifest, load_file, load_str};

/// A problem found in the inputs, already rendered for the user.
pub struct Problems(pub Vec<String>);

/// The files `inputs` name: a directory stands for its `.yaml`, `.yml` and `.json` files
/// (recursively, sorted, hidden ones and symlinks skipped); `-` is standard input.
pub fn expand(inputs: &[String]) -> Result<Vec<String>, Problems> {
    let mut out = Vec::new();
    for input in inputs {
        let path = Path::new(input);
        if input != "-" && path.is_dir() {
            let mut files = Vec::new();
            crate::lint::manifests_in(path, &mut files, 0).map_err(|e| Problems(vec![format!("{input}: {e}")]))?;
            if files.is_empty() {
                return Err(Problems(vec![format!("{input}: no .yaml, .yml or .json files in it")]));
            }
            out.extend(files.into_iter().map(|f| f.display().to_string()));
        } else {
            out.push(input.clone());
        }
    }
    Ok(out)
}

/// Loads, defaults and validates every file (a directory stands for its manifests). Either
/// everything is valid, or every problem of every file is returned and nothing may start.
pub fn load_all(inputs: &[String]) -> Result<Vec<Manifest>, Problems> {
    let files = expand(inputs)?;
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for file in &files {
        let loaded = if file == "-" {
            podvisor_manifest::read_bounded("-", std::io::stdin().lock()).and_then(|text| load_str("-", &text))
        } else {
            load_file(Path::new(file))
        };
        match loaded {
            Ok(manifests) if manifests.is_empty() => problems.push(format!(
                "{file}: no objects found (expected a Pod, Job, CronJob, Deployment, StatefulSet, DaemonSet, Service, ConfigMap, Secret or PersistentVolumeClaim)"
            )),
            Ok(manifests) => {
                for mut m in manifests {
                    if let podvisor_manifest::Object::Pod(p) = &m.object
                        && p.spec.as_ref().and_then(|s| s.ephemeral_containers.as_ref()).is_some_and(|e| !e.is_empty())
                    {
                        let pos = m.locate("spec.ephemeralContainers");
                        problems.push(format!(
                            "{}:{}:{}: Pod {:?} is invalid: spec.ephemeralContainers: Forbidden: cannot be set on create",
                            m.source,
                            pos.line,
                            pos.column,
                            m.object.name()
                        ));
                        continue;
                    }
                    match podvisor_apiserver::admission::prepare(&mut m.object) {
                        Ok(()) => out.push(m),
                        Err(invalid) => {
                            for e in &invalid.errors {
                                let pos = m.locate(&e.field);
                                problems.push(format!(
                                    "{}:{}:{}: {} {:?} is invalid: {e}",
                                    m.source,
                                    pos.line,
                                    pos.column,
                                    m.object.kind(),
                                    invalid.name
                                ));
                            }
                        }
                    }
                }
            }
            Err(e) => problems.extend(e.to_string().lines().map(str::to_string)),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(Problems(problems)) }
}
