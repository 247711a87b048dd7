//! Reading manifest files (or standard input) into defaulted, validated objects, with every
//! problem placed at its file, line and column.

use std::path::Path;

use podvisor_manifest::{Manifest, load_file, load_str};

/// A problem found in the inputs, already rendered for the user.
pub struct Problems(pub Vec<String>);

/// Loads, defaults and validates every file. Either everything is valid, or every problem of
/// every file is returned and nothing may start.
pub fn load_all(files: &[String]) -> Result<Vec<Manifest>, Problems> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        let loaded = if file == "-" {
            podvisor_manifest::read_bounded("-", std::io::stdin().lock()).and_then(|text| load_str("-", &text))
        } else {
            load_file(Path::new(file))
        };
        match loaded {
            Ok(manifests) if manifests.is_empty() => problems.push(format!(
                "{file}: no objects found (expected a Pod, Job, CronJob, Deployment, Service, ConfigMap or Secret)"
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
