//! `podvisor migrate`: legacy sidecars rewritten as native ones, in the manifest's own text.
//!
//! A container that [`legacy-sidecar`](crate::RULES) finds is moved from `containers` to the
//! front of `initContainers` (made when there is none, just before `containers`) with
//! `restartPolicy: Always`, so that it starts before the app and is stopped after it. A native
//! sidecar whose readinessProbe others rely on (`readiness-does-not-gate`) gets a
//! `startupProbe` with the same check, so that what comes after it really waits. Everything
//! else stays as written: comments, key order, quoting, indentation. Only block-style lists are
//! rewritten; a flow-style one (`containers: [...]`) is left alone with a word.

use podvisor_manifest::{Manifest, parse_field_path};

use crate::rules;
use crate::workload;

/// What a migration did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The new text.
    pub text: String,
    /// Each change, in words (`Pod/legacy-sidecar: fluent-bit moved to initContainers …`).
    pub changes: Vec<String>,
    /// What could not be migrated, and why.
    pub skipped: Vec<String>,
    /// Hand-made workarounds found that native sidecars make unneeded, to remove by hand.
    pub notes: Vec<String>,
}

/// One edit on the original lines: remove `remove` (a range of line indexes) and insert
/// `insert` before line `at`.
#[derive(Debug, Default)]
struct Edits {
    remove: Vec<std::ops::Range<usize>>,
    insert: Vec<(usize, Vec<String>)>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The lines of the block-style list item whose first value is at `pos` (1-based line and
/// column): from its `-` line to the line before the next sibling or less indented key.
/// Comments and blank lines at its end belong to what follows.
fn item_range(lines: &[&str], line: usize, column: usize) -> Option<(std::ops::Range<usize>, usize)> {
    let first = line.checked_sub(1)?;
    let text = lines.get(first)?;
    let before = text.get(..column.saturating_sub(1))?;
    let dash = before.rfind('-')?;
    if !before[dash + 1..].trim().is_empty() || !before[..dash].trim().is_empty() {
        return None;
    }
    let mut end = first + 1;
    let mut last_content = first + 1;
    while end < lines.len() {
        let l = lines[end];
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') {
            end += 1;
            continue;
        }
        if indent(l) <= dash {
            break;
        }
        end += 1;
        last_content = end;
    }
    Some((first..last_content, dash))
}

/// Re-indents `block` from a list item at `from` to one at `to` columns.
fn reindent(block: &[&str], from: usize, to: usize) -> Vec<String> {
    block
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else if to >= from {
                format!("{}{l}", " ".repeat(to - from))
            } else {
                let cut = (from - to).min(indent(l));
                l[cut..].to_string()
            }
        })
        .collect()
}

/// The item's lines with `restartPolicy: Always` added as its second key (or inside a flow
/// mapping `- {…}`).
fn with_restart_policy(mut block: Vec<String>, dash: usize) -> Vec<String> {
    let Some(first) = block.first_mut() else { return block };
    let body = first[dash + 1..].trim();
    if body.starts_with('{') && body.ends_with('}') {
        let close = first.rfind('}').unwrap_or(first.len());
        first.insert_str(close, ", restartPolicy: Always");
        return block;
    }
    let key_col = dash + 1 + first[dash + 1..].len() - first[dash + 1..].trim_start().len();
    let at = if body.is_empty() { 2.min(block.len()) } else { 1 };
    block.insert(at, format!("{}restartPolicy: Always", " ".repeat(key_col)));
    block
}

/// Whether the value at `path` is written in flow style (`[` or `{`).
fn flow(lines: &[&str], m: &Manifest, path: &str) -> bool {
    let pos = m.node.locate(&parse_field_path(path), false);
    lines
        .get(pos.line.saturating_sub(1))
        .and_then(|l| l.get(pos.column.saturating_sub(1)..))
        .is_some_and(|rest| rest.starts_with('[') || rest.starts_with('{'))
}

/// Migrates the legacy sidecars and ungated sidecars of every manifest of `text` (from
/// `source`). Manifests that do not load are an error: lint them first.
pub fn migrate_text(source: &str, text: &str) -> Result<Migration, podvisor_manifest::LoadError> {
    let manifests = podvisor_manifest::load_str(source, text)?;
    let lines: Vec<&str> = text.lines().collect();
    let mut edits = Edits::default();
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    for m in &manifests {
        let mut object = m.object.clone();
        podvisor_objects::defaults::apply(&mut object);
        let who = format!("{}/{}", object.kind(), object.name());
        hold_until_proxy_starts(&lines, m, &object, &who, &mut edits, &mut changes);
        for w in workload::of(&object) {
            done_file(&w, &who, &mut notes);
            let legacy = rules::legacy_containers(&w);
            let base = w.base;
            if !legacy.is_empty() {
                if flow(&lines, m, &format!("{base}.containers")) {
                    skipped.push(format!("{who}: {base}.containers is a flow-style list; move the sidecars by hand"));
                } else {
                    migrate_legacy(&lines, m, &w, &legacy, &who, &mut edits, &mut changes, &mut skipped);
                }
            }
            for (i, c) in rules::ungated_by_readiness(&w) {
                let path = format!("{base}.initContainers[{i}].readinessProbe");
                let key = m.locate(&path);
                let Some(first) = key.line.checked_sub(1) else { continue };
                let Some(l) = lines.get(first) else { continue };
                if !l[key.column.saturating_sub(1)..].starts_with("readinessProbe:") {
                    skipped
                        .push(format!("{who}: {c}'s readinessProbe is not in block style; add a startupProbe by hand"));
                    continue;
                }
                let col = key.column - 1;
                let mut end = first + 1;
                while end < lines.len() && (lines[end].trim().is_empty() || indent(lines[end]) > col) {
                    end += 1;
                }
                while end > first + 1 && lines[end - 1].trim().is_empty() {
                    end -= 1;
                }
                let mut copy: Vec<String> = lines[first..end].iter().map(|l| l.to_string()).collect();
                copy[0] = copy[0].replacen("readinessProbe:", "startupProbe:", 1);
                edits.insert.push((end, copy));
                changes.push(format!(
                    "{who}: {c} gets a startupProbe with its readinessProbe's check, so that what comes after it waits \
                     until it serves (a readinessProbe holds nothing back, R17)"
                ));
            }
        }
    }
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 8);
    for (i, l) in lines.iter().enumerate() {
        for (_, ins) in edits.insert.iter().filter(|(at, _)| *at == i) {
            out.extend(ins.iter().cloned());
        }
        if !edits.remove.iter().any(|r| r.contains(&i)) {
            out.push(l.to_string());
        }
    }
    for (_, ins) in edits.insert.iter().filter(|(at, _)| *at >= lines.len()) {
        out.extend(ins.iter().cloned());
    }
    let mut text_out = out.join("\n");
    if text.ends_with('\n') {
        text_out.push('\n');
    }
    Ok(Migration { text: text_out, changes, skipped, notes })
}

/// The Istio annotation that holds the app until a legacy proxy sidecar starts
/// (`proxy.istio.io/config: {"holdApplicationUntilProxyStarts": true}`): with native sidecars
/// the proxy's own startupProbe holds the app (R16), so an annotation that says only that goes.
fn hold_until_proxy_starts(
    lines: &[&str],
    m: &Manifest,
    object: &podvisor_manifest::Object,
    who: &str,
    edits: &mut Edits,
    changes: &mut Vec<String>,
) {
    const KEY: &str = "proxy.istio.io/config";
    let base = match object {
        podvisor_manifest::Object::Pod(_) => "metadata.annotations",
        podvisor_manifest::Object::Deployment(_)
        | podvisor_manifest::Object::StatefulSet(_)
        | podvisor_manifest::Object::DaemonSet(_)
        | podvisor_manifest::Object::Job(_) => "spec.template.metadata.annotations",
        _ => return,
    };
    let Ok(json) = object.to_json() else { return };
    let pointer = format!("/{}/{}", base.replace('.', "/"), KEY.replace('/', "~1"));
    let Some(value) = json.pointer(&pointer).and_then(|v| v.as_str()) else { return };
    let compact: String = value.chars().filter(|c| !c.is_whitespace() && *c != '"' && *c != '{' && *c != '}').collect();
    if compact != "holdApplicationUntilProxyStarts:true" {
        return;
    }
    let path = format!("{base}.{KEY}");
    let key = m.node.locate(&parse_field_path(&path), true);
    let Some(first) = key.line.checked_sub(1) else { return };
    let Some(line) = lines.get(first) else { return };
    if !line.trim_start().starts_with(KEY) && !line.trim_start().starts_with(&format!("\"{KEY}\"")) {
        return;
    }
    // The key and any lines of a block value under it.
    let col = indent(line);
    let mut end = first + 1;
    while end < lines.len() && !lines[end].trim().is_empty() && indent(lines[end]) > col {
        end += 1;
    }
    // An annotations map left empty goes too.
    let map = m.node.locate(&parse_field_path(base), true);
    let only =
        json.pointer(&format!("/{}", base.replace('.', "/"))).and_then(|v| v.as_object()).is_some_and(|o| o.len() == 1);
    let start = match map.line.checked_sub(1) {
        Some(l) if only && l + 1 == first && lines.get(l).is_some_and(|t| t.trim_end().ends_with("annotations:")) => l,
        _ => first,
    };
    edits.remove.push(start..end);
    changes.push(format!(
        "{who}: the holdApplicationUntilProxyStarts annotation removed: a native proxy sidecar with a startupProbe holds \
         the app by itself (R16); Istio must inject it as one (ENABLE_NATIVE_SIDECARS)"
    ));
}

/// The done-file workaround: a sidecar that loops until a file appears that the main container
/// creates when it is done. Native sidecars are stopped once the main containers exit (R36), so
/// both halves can go; scripts are not rewritten, the note says where.
fn done_file(w: &workload::Workload<'_>, who: &str, notes: &mut Vec<String>) {
    let script = |c: &k8s_openapi::api::core::v1::Container| crate::shell::argv(c).join(" ");
    for side in w.spec.init_containers.iter().flatten().chain(&w.spec.containers) {
        let text = script(side);
        let waits =
            ["while [ ! -f ", "while [ ! -e ", "until [ -f ", "until [ -e ", "while ! test -f ", "until test -f "];
        let Some(path) = waits
            .iter()
            .find_map(|p| text.split_once(p).map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string()))
        else {
            continue;
        };
        let path = path.trim_end_matches([']', ';']).to_string();
        let Some(main) =
            w.spec.containers.iter().find(|c| c.name != side.name && script(c).contains(&format!("touch {path}")))
        else {
            continue;
        };
        notes.push(format!(
            "{who}: {} waits for {path}, which {} touches when done: a hand-made stop signal that a native sidecar does not \
             need (it is stopped once the main containers exit, R36); remove the loop and the touch by hand",
            side.name, main.name
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn migrate_legacy(
    lines: &[&str],
    m: &Manifest,
    w: &workload::Workload<'_>,
    legacy: &[usize],
    who: &str,
    edits: &mut Edits,
    changes: &mut Vec<String>,
    skipped: &mut Vec<String>,
) {
    let base = w.base;
    let mut blocks = Vec::new();
    for &i in legacy {
        let pos = m.node.locate(&parse_field_path(&format!("{base}.containers[{i}]")), false);
        let Some((range, dash)) = item_range(lines, pos.line, pos.column) else {
            skipped.push(format!("{who}: {base}.containers[{i}] could not be read as a block-style item"));
            continue;
        };
        blocks.push((range, dash, w.spec.containers[i].name.clone()));
    }
    if blocks.is_empty() {
        return;
    }
    // Where they go: before the first init container, or a new initContainers key just above
    // `containers` (above its comments).
    let has_init = w.spec.init_containers.as_ref().is_some_and(|v| !v.is_empty());
    let (at, target_dash, header) = if has_init {
        if flow(lines, m, &format!("{base}.initContainers")) {
            skipped.push(format!("{who}: {base}.initContainers is a flow-style list; move the sidecars by hand"));
            return;
        }
        let pos = m.node.locate(&parse_field_path(&format!("{base}.initContainers[0]")), false);
        let Some((range, dash)) = item_range(lines, pos.line, pos.column) else { return };
        (range.start, dash, None)
    } else {
        let key = m.locate(&format!("{base}.containers"));
        let mut at = key.line.saturating_sub(1);
        let key_col = key.column.saturating_sub(1);
        while at > 0 && lines[at - 1].trim().starts_with('#') && indent(lines[at - 1]) == key_col {
            at -= 1;
        }
        (at, blocks[0].1, Some(format!("{}initContainers:", " ".repeat(key_col))))
    };
    let mut inserted: Vec<String> = header.into_iter().collect();
    for (range, dash, name) in &blocks {
        let block = reindent(&lines[range.clone()], *dash, target_dash);
        inserted.extend(with_restart_policy(block, target_dash));
        edits.remove.push(range.clone());
        changes.push(format!(
            "{who}: {name} moved from containers to initContainers with restartPolicy: Always: it now starts before the \
             app and is stopped after it{}",
            if w.completes { ", and no longer keeps the pod from completing (R36, R37)" } else { " (R24, R43)" }
        ));
    }
    edits.insert.push((at, inserted));
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEGACY: &str = "# a job\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: report\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      # the work and its shipper\n      containers:\n      - name: report   # the work\n        image: myorg/report:1.0\n      - name: fluent-bit\n        image: fluent/fluent-bit:3.1\n        # ships logs\n        args: [\"-c\", \"/etc/fb.conf\"]\n      volumes: []\n";

    #[test]
    fn a_legacy_sidecar_moves_to_init_containers_keeping_comments_and_order() {
        let m = migrate_text("job.yaml", LEGACY).unwrap();
        assert_eq!(
            m.text,
            "# a job\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: report\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      initContainers:\n      - name: fluent-bit\n        restartPolicy: Always\n        image: fluent/fluent-bit:3.1\n        # ships logs\n        args: [\"-c\", \"/etc/fb.conf\"]\n      # the work and its shipper\n      containers:\n      - name: report   # the work\n        image: myorg/report:1.0\n      volumes: []\n"
        );
        assert_eq!(m.changes.len(), 1);
        assert!(crate::lint_text("job.yaml", &m.text).is_empty(), "lints clean");
    }

    #[test]
    fn into_existing_init_containers_first_and_flow_items_too() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n    - name: setup\n      image: busybox\n  containers:\n    - name: app\n      image: myorg/app:1\n    - {name: envoy, image: envoyproxy/envoy:v1.31}\n";
        let m = migrate_text("pod.yaml", text).unwrap();
        assert_eq!(
            m.text,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n    - {name: envoy, image: envoyproxy/envoy:v1.31, restartPolicy: Always}\n    - name: setup\n      image: busybox\n  containers:\n    - name: app\n      image: myorg/app:1\n"
        );
        let flow = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: app, image: a}, {name: envoy, image: envoyproxy/envoy:v1}]\n";
        let m = migrate_text("pod.yaml", flow).unwrap();
        assert_eq!(m.text, flow);
        assert!(m.skipped[0].contains("flow-style"), "{:?}", m.skipped);
    }

    #[test]
    fn the_istio_hold_annotation_goes_and_a_done_file_is_pointed_out() {
        let text = "apiVersion: batch/v1\nkind: Job\nmetadata: {name: j}\nspec:\n  template:\n    metadata:\n      annotations:\n        proxy.istio.io/config: '{\"holdApplicationUntilProxyStarts\": true}'\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: myorg/work:1\n        command: [sh, -c, \"work; touch /shared/done\"]\n      - name: log-shipper\n        image: busybox\n        command: [sh, -c, \"while [ ! -f /shared/done ]; do sleep 1; done\"]\n";
        let m = migrate_text("job.yaml", text).unwrap();
        assert!(!m.text.contains("annotations:") && !m.text.contains("holdApplicationUntilProxyStarts"), "{}", m.text);
        assert!(m.text.contains("  template:\n    metadata:\n    spec:\n      restartPolicy: Never\n"), "{}", m.text);
        assert!(m.changes.iter().any(|c| c.contains("holdApplicationUntilProxyStarts")), "{:?}", m.changes);
        assert_eq!(m.notes.len(), 1, "{:?}", m.notes);
        assert!(
            m.notes[0].contains("log-shipper waits for /shared/done, which main touches when done"),
            "{:?}",
            m.notes
        );
    }

    #[test]
    fn a_sidecar_relied_on_for_readiness_gets_a_startup_probe() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  initContainers:\n  - name: istio-proxy\n    image: istio/proxyv2:1.23\n    restartPolicy: Always\n    readinessProbe:\n      httpGet:\n        path: /healthz/ready\n        port: 15021\n    resources: {}\n  containers:\n  - name: app\n    image: myorg/api:3\n";
        let m = migrate_text("pod.yaml", text).unwrap();
        assert!(m.text.contains("    readinessProbe:\n      httpGet:\n        path: /healthz/ready\n        port: 15021\n    startupProbe:\n      httpGet:\n        path: /healthz/ready\n        port: 15021\n    resources: {}\n"), "{}", m.text);
        assert!(crate::lint_text("pod.yaml", &m.text).is_empty());
    }
}
