//! Loads Kubernetes manifests into typed API objects.
//!
//! A manifest file holds one or more YAML (or JSON) documents; each is a Pod, Job, Deployment,
//! StatefulSet, DaemonSet, CronJob, Service, ConfigMap, Secret or PersistentVolumeClaim, or a
//! `kind: List` of them. Decoding is strict, like the API server with
//! `fieldValidation=Strict` (kubectl's default): unknown fields, wrong types and YAML syntax errors
//! are all reported, each with its file, line, column and field path.
//!
//! This crate is the only one that deserialises the k8s-openapi types from text, so that the
//! expensive serde code is compiled once, behind a few non-generic functions.

#![warn(missing_docs)]

pub mod yaml;

use std::fmt;
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use yaml::{Node, PathSeg, Pos, render_path};

/// An API object podvisor knows how to run or store.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A `v1` Pod.
    Pod(Box<Pod>),
    /// A `batch/v1` Job.
    Job(Box<Job>),
    /// An `apps/v1` Deployment.
    Deployment(Box<Deployment>),
    /// A `v1` ConfigMap.
    ConfigMap(Box<ConfigMap>),
    /// A `v1` Secret.
    Secret(Box<Secret>),
    /// A `v1` Service.
    Service(Box<Service>),
    /// A `batch/v1` CronJob.
    CronJob(Box<CronJob>),
    /// An `apps/v1` StatefulSet.
    StatefulSet(Box<StatefulSet>),
    /// An `apps/v1` DaemonSet.
    DaemonSet(Box<DaemonSet>),
    /// A `v1` PersistentVolumeClaim.
    PersistentVolumeClaim(Box<PersistentVolumeClaim>),
}

impl Object {
    /// The object's kind, as written in manifests.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Pod(_) => "Pod",
            Object::Job(_) => "Job",
            Object::Deployment(_) => "Deployment",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Secret(_) => "Secret",
            Object::Service(_) => "Service",
            Object::CronJob(_) => "CronJob",
            Object::StatefulSet(_) => "StatefulSet",
            Object::DaemonSet(_) => "DaemonSet",
            Object::PersistentVolumeClaim(_) => "PersistentVolumeClaim",
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(&self) -> &'static str {
        match self {
            Object::Pod(_)
            | Object::ConfigMap(_)
            | Object::Secret(_)
            | Object::Service(_)
            | Object::PersistentVolumeClaim(_) => "v1",
            Object::Job(_) | Object::CronJob(_) => "batch/v1",
            Object::Deployment(_) | Object::StatefulSet(_) | Object::DaemonSet(_) => "apps/v1",
        }
    }

    /// The object as the API's JSON, with `apiVersion` and `kind`.
    pub fn to_json(&self) -> Result<Value, serde_json::Error> {
        match self {
            Object::Pod(o) => serde_json::to_value(o),
            Object::Job(o) => serde_json::to_value(o),
            Object::Deployment(o) => serde_json::to_value(o),
            Object::ConfigMap(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::CronJob(o) => serde_json::to_value(o),
            Object::StatefulSet(o) => serde_json::to_value(o),
            Object::DaemonSet(o) => serde_json::to_value(o),
            Object::PersistentVolumeClaim(o) => serde_json::to_value(o),
        }
    }

    /// The object's metadata.
    pub fn metadata(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        match self {
            Object::Pod(o) => &o.metadata,
            Object::Job(o) => &o.metadata,
            Object::Deployment(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::CronJob(o) => &o.metadata,
            Object::StatefulSet(o) => &o.metadata,
            Object::DaemonSet(o) => &o.metadata,
            Object::PersistentVolumeClaim(o) => &o.metadata,
        }
    }

    /// The object's `metadata.name`, or the empty string.
    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }
}

/// One decoded object with the place it came from.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The decoded object.
    pub object: Object,
    /// The file name given by the user (`-` for standard input).
    pub source: String,
    /// The source tree of this object, to place later errors (validation) at a line and column.
    pub node: Node,
}

impl Manifest {
    /// The position of a field given as an API field path (`spec.containers[0].image`).
    pub fn locate(&self, field_path: &str) -> Pos {
        self.node.locate(&parse_field_path(field_path), true)
    }
}

/// One problem found in a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the file.
    pub pos: Pos,
    /// What is wrong, worded as the API server words it.
    pub message: String,
    /// For a field the type does not have: its path (`spec.containers[0].bogus`). Only such
    /// problems may be let through, as warnings or silently (`fieldValidation=Warn|Ignore`).
    pub unknown_field: Option<String>,
}

/// Why a manifest file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{source_name}: cannot read: {error}")]
    Read {
        /// The file name.
        source_name: String,
        /// The IO error.
        #[source]
        error: std::io::Error,
    },
    /// The file was read but holds problems; nothing in it may be used.
    #[error("{}", render_problems(source_name, problems))]
    Invalid {
        /// The file name.
        source_name: String,
        /// Every problem found, in file order.
        problems: Vec<Problem>,
    },
}

fn render_problems(source: &str, problems: &[Problem]) -> String {
    let lines: Vec<String> =
        problems.iter().map(|p| format!("{source}:{}:{}: {}", p.pos.line, p.pos.column, p.message)).collect();
    lines.join("\n")
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.pos.line, self.pos.column, self.message)
    }
}

/// The largest manifest file or input read: far past any real one, and a bound on what a
/// mistaken path (a disk image, a log) may cost.
pub const MAX_INPUT: u64 = 64 * 1024 * 1024;

/// Reads at most [`MAX_INPUT`] bytes of `reader` as text; more is an error.
pub fn read_bounded(source_name: &str, reader: impl std::io::Read) -> Result<String, LoadError> {
    use std::io::Read;
    let read = |error| LoadError::Read { source_name: source_name.to_string(), error };
    let mut bytes = Vec::new();
    reader.take(MAX_INPUT + 1).read_to_end(&mut bytes).map_err(read)?;
    if bytes.len() as u64 > MAX_INPUT {
        return Err(read(std::io::Error::other(format!("larger than {} MiB; not a manifest", MAX_INPUT >> 20))));
    }
    String::from_utf8(bytes).map_err(|e| read(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Reads and decodes a manifest file.
pub fn load_file(path: &Path) -> Result<Vec<Manifest>, LoadError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| LoadError::Read { source_name: name.clone(), error })?;
    let text = read_bounded(&name, file)?;
    load_str(&name, &text)
}

/// Decodes manifest text. `source_name` names it in errors. Either every document decodes, or
/// the error lists every problem found.
pub fn load_str(source_name: &str, text: &str) -> Result<Vec<Manifest>, LoadError> {
    let (out, problems) = decode_all(source_name, text);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::Invalid { source_name: source_name.to_string(), problems })
    }
}

/// Decodes manifest text as the API server does with `fieldValidation=Warn` or `Ignore`:
/// fields the types do not have are dropped and returned as warnings (`unknown field
/// "spec.foo"`); any other problem fails as in [`load_str`].
pub fn load_str_lenient(source_name: &str, text: &str) -> Result<(Vec<Manifest>, Vec<String>), LoadError> {
    let (out, problems) = decode_all(source_name, text);
    let (unknown, other): (Vec<Problem>, Vec<Problem>) = problems.into_iter().partition(|p| p.unknown_field.is_some());
    if !other.is_empty() {
        return Err(LoadError::Invalid { source_name: source_name.to_string(), problems: other });
    }
    let warnings =
        unknown.into_iter().filter_map(|p| p.unknown_field).map(|f| format!("unknown field {f:?}")).collect();
    Ok((out, warnings))
}

/// Every document of `text`, and every problem found in them.
fn decode_all(source_name: &str, text: &str) -> (Vec<Manifest>, Vec<Problem>) {
    let docs = match yaml::parse_documents(text) {
        Ok(docs) => docs,
        Err(e) => {
            let message = format!("error converting YAML to JSON: {}", e.message);
            return (Vec::new(), vec![Problem { pos: e.pos, message, unknown_field: None }]);
        }
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for doc in docs {
        if !matches!(doc.kind, yaml::NodeKind::Scalar(Value::Null)) {
            decode_document(source_name, doc, &mut out, &mut problems);
        }
    }
    (out, problems)
}

fn decode_document(source: &str, doc: Node, out: &mut Vec<Manifest>, problems: &mut Vec<Problem>) {
    let value = doc.to_json();
    let Value::Object(map) = &value else {
        problems.push(Problem {
            pos: doc.pos,
            message: "a manifest must be a mapping (an object)".into(),
            unknown_field: None,
        });
        return;
    };
    let text = |k: &str| map.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    if kind.is_empty() {
        problems.push(Problem { pos: doc.pos, message: "Object 'Kind' is missing".into(), unknown_field: None });
        return;
    }
    if api_version.is_empty() {
        problems.push(Problem { pos: doc.pos, message: "Object 'apiVersion' is missing".into(), unknown_field: None });
        return;
    }
    if (api_version.as_str(), kind.as_str()) == ("v1", "List") {
        decode_list(source, &doc, out, problems);
        return;
    }
    let locate = |path: &[PathSeg], key: bool| doc.locate(path, key);
    let object = match typed_kind(&api_version, &kind, &locate, &value, problems) {
        Some(object) => object,
        None => {
            let pos = doc.locate(&[PathSeg::Key("kind".into())], false);
            problems.push(Problem {
                pos,
                message: format!(
                    "no matches for kind \"{kind}\" in version \"{api_version}\" (supported: v1 Pod, batch/v1 Job, \
                     batch/v1 CronJob, apps/v1 Deployment, apps/v1 StatefulSet, apps/v1 DaemonSet, v1 Service, v1 ConfigMap, \
                     v1 Secret, v1 PersistentVolumeClaim, v1 List)"
                ),
                unknown_field: None,
            });
            None
        }
    };
    if let Some(object) = object {
        out.push(Manifest { object, source: source.to_string(), node: doc });
    }
}

/// Decodes `value` as the typed object of `api_version` and `kind`: `None` for a kind that is not
/// one of [`Object`]'s, `Some(None)` when the decode failed (its problems are in `problems`).
fn typed_kind(
    api_version: &str,
    kind: &str,
    locate: &dyn Fn(&[PathSeg], bool) -> Pos,
    value: &Value,
    problems: &mut Vec<Problem>,
) -> Option<Option<Object>> {
    Some(match (api_version, kind) {
        ("v1", "Pod") => typed::<Pod>(locate, value, problems).map(|o| Object::Pod(Box::new(o))),
        ("batch/v1", "Job") => typed::<Job>(locate, value, problems).map(|o| Object::Job(Box::new(o))),
        ("batch/v1", "CronJob") => typed::<CronJob>(locate, value, problems).map(|o| Object::CronJob(Box::new(o))),
        ("apps/v1", "Deployment") => {
            typed::<Deployment>(locate, value, problems).map(|o| Object::Deployment(Box::new(o)))
        }
        ("v1", "ConfigMap") => typed::<ConfigMap>(locate, value, problems).map(|o| Object::ConfigMap(Box::new(o))),
        ("v1", "Secret") => typed::<Secret>(locate, value, problems).map(|o| Object::Secret(Box::new(o))),
        ("v1", "Service") => typed::<Service>(locate, value, problems).map(|o| Object::Service(Box::new(o))),
        ("apps/v1", "StatefulSet") => {
            typed::<StatefulSet>(locate, value, problems).map(|o| Object::StatefulSet(Box::new(o)))
        }
        ("apps/v1", "DaemonSet") => typed::<DaemonSet>(locate, value, problems).map(|o| Object::DaemonSet(Box::new(o))),
        ("v1", "PersistentVolumeClaim") => {
            typed::<PersistentVolumeClaim>(locate, value, problems).map(|o| Object::PersistentVolumeClaim(Box::new(o)))
        }
        _ => return None,
    })
}

/// Decodes one API request body, already JSON, into its typed object, as the API server decodes
/// a request: strictly by `apiVersion` and `kind`, with no text and so no positions (the
/// problems' positions are 0:0). Returns the object, when it decoded, beside every problem: only
/// problems with an `unknown_field` may leave an object (without those fields), as for
/// [`load_str_lenient`]. `None` with no problem: a kind that is not one of [`Object`]'s.
pub fn decode_value(value: &Value) -> (Option<Object>, Vec<Problem>) {
    let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
    let mut problems = Vec::new();
    let locate = |_: &[PathSeg], _: bool| Pos::default();
    let object = typed_kind(text("apiVersion"), text("kind"), &locate, value, &mut problems).flatten();
    (object, problems)
}

fn decode_list(source: &str, doc: &Node, out: &mut Vec<Manifest>, problems: &mut Vec<Problem>) {
    let yaml::NodeKind::Map(entries) = &doc.kind else {
        return;
    };
    for (key, kpos, node) in entries {
        match (key.as_str(), &node.kind) {
            ("apiVersion" | "kind" | "metadata", _) => {}
            ("items", yaml::NodeKind::Seq(items)) => {
                for item in items {
                    decode_document(source, item.clone(), out, problems);
                }
            }
            ("items", yaml::NodeKind::Scalar(Value::Null)) => {}
            ("items", _) => {
                problems.push(Problem { pos: node.pos, message: "items: must be a list".into(), unknown_field: None })
            }
            (other, _) => problems.push(Problem {
                pos: *kpos,
                message: format!("strict decoding error: unknown field \"{other}\""),
                unknown_field: Some(other.to_string()),
            }),
        }
    }
}

/// Decodes one document into `T`, recording every unknown field and the first type error.
/// With only unknown fields, the object (without them) is returned beside its problems.
fn typed<T: DeserializeOwned + Serialize>(
    locate: &dyn Fn(&[PathSeg], bool) -> Pos,
    value: &Value,
    problems: &mut Vec<Problem>,
) -> Option<T> {
    let decoded: Result<T, _> = serde_path_to_error::deserialize(value);
    match decoded {
        Ok(object) => {
            let unknown = match serde_json::to_value(&object) {
                Ok(encoded) => unknown_fields(value, &encoded),
                Err(_) => Vec::new(),
            };
            for path in unknown {
                let field = render_path(&path);
                problems.push(Problem {
                    pos: locate(&path, true),
                    message: format!("strict decoding error: unknown field \"{field}\""),
                    unknown_field: Some(field),
                });
            }
            Some(object)
        }
        Err(err) => {
            let path = serde_path(err.path());
            let inner = err.into_inner().to_string();
            // serde_json appends " at line 0 column 0" only for text input; a Value has none.
            problems.push(Problem {
                pos: locate(&path, false),
                message: format!("{}: {inner}", render_path(&path)),
                unknown_field: None,
            });
            None
        }
    }
}

/// Keys present in `input` that did not survive a decode/encode round trip: fields the typed
/// object does not have. Explicit nulls are treated as absent, as the API server does.
fn unknown_fields(input: &Value, encoded: &Value) -> Vec<Vec<PathSeg>> {
    let mut out = Vec::new();
    walk_unknown(input, encoded, &mut Vec::new(), &mut out);
    out
}

fn walk_unknown(input: &Value, encoded: &Value, path: &mut Vec<PathSeg>, out: &mut Vec<Vec<PathSeg>>) {
    match (input, encoded) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                path.push(PathSeg::Key(k.clone()));
                match b.get(k) {
                    Some(ev) => walk_unknown(v, ev, path, out),
                    None => out.push(path.clone()),
                }
                path.pop();
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, ev)) in a.iter().zip(b).enumerate() {
                path.push(PathSeg::Index(i));
                walk_unknown(v, ev, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn serde_path(path: &serde_path_to_error::Path) -> Vec<PathSeg> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|seg| match seg {
            Segment::Seq { index } => Some(PathSeg::Index(*index)),
            Segment::Map { key } => Some(PathSeg::Key(key.clone())),
            Segment::Enum { variant } => Some(PathSeg::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

/// Parses an API field path (`spec.containers[0].image`) into segments.
pub fn parse_field_path(path: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(PathSeg::Key(rest[..open].to_string()));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                let inner = &stripped[..close];
                match inner.parse::<usize>() {
                    Ok(i) => out.push(PathSeg::Index(i)),
                    Err(_) => out.push(PathSeg::Key(inner.trim_matches('"').to_string())),
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(PathSeg::Key(rest.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests;
