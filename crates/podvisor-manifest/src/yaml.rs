//! YAML text to a tree of [`Node`]s that remember where each value was written.
//!
//! Scalars are resolved the way `kubectl` resolves them (sigs.k8s.io/yaml, YAML 1.1): `yes`/`no`/
//! `on`/`off` are booleans, `0644` is octal, `~` is null. Quoted scalars are always strings.
//! Duplicate mapping keys are an error, as in the API server's strict decoding.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};

/// A position in a source text, both numbers starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line number, from 1.
    pub line: usize,
    /// Column number, from 1.
    pub column: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos { line: span.start.line(), column: span.start.col() + 1 }
    }
}

/// A YAML value with the position of its first character.
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the value starts.
    pub pos: Pos,
    /// The value itself.
    pub kind: NodeKind,
}

/// The shape of a [`Node`].
#[derive(Debug, Clone)]
pub enum NodeKind {
    /// A resolved scalar.
    Scalar(Value),
    /// A sequence of nodes.
    Seq(Vec<Node>),
    /// A mapping; each entry keeps the position of its key.
    Map(Vec<(String, Pos, Node)>),
}

/// A YAML syntax error, or a document shape that cannot become JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub pos: Pos,
    /// What it expected or found.
    pub message: String,
}

/// The most aliases one document may expand, against "billion laughs" inputs.
const MAX_ALIAS_EXPANSIONS: usize = 10_000;
/// The deepest a document may nest (serde_json's own bound on JSON).
pub const MAX_DEPTH: usize = 128;
/// The most a document may hold once its aliases are expanded: nodes, and bytes of scalars.
/// A few kilobytes of aliases of aliases otherwise expand to gigabytes.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;
/// See [`MAX_EXPANDED_NODES`].
pub const MAX_EXPANDED_BYTES: u64 = 64 * 1024 * 1024;

impl Node {
    /// Converts the tree to JSON, dropping positions.
    pub fn to_json(&self) -> Value {
        match &self.kind {
            NodeKind::Scalar(v) => v.clone(),
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => {
                let mut map = Map::new();
                for (k, _, v) in entries {
                    map.insert(k.clone(), v.to_json());
                }
                Value::Object(map)
            }
        }
    }

    /// The position of the value at `path` (JSON keys and array indexes), or of the nearest
    /// enclosing value that exists. With `key` set, a mapping entry's key position is returned.
    pub fn locate(&self, path: &[PathSeg], key: bool) -> Pos {
        let mut node = self;
        for (i, seg) in path.iter().enumerate() {
            let last = i + 1 == path.len();
            match (seg, &node.kind) {
                (PathSeg::Key(k), NodeKind::Map(entries)) => match entries.iter().find(|(name, _, _)| name == k) {
                    Some((_, kpos, v)) => {
                        if last && key {
                            return *kpos;
                        }
                        node = v;
                    }
                    None => return node.pos,
                },
                (PathSeg::Index(ix), NodeKind::Seq(items)) => match items.get(*ix) {
                    Some(v) => node = v,
                    None => return node.pos,
                },
                _ => return node.pos,
            }
        }
        node.pos
    }
}

/// One step of a path into a JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Renders a path as the API server writes field paths: `spec.containers[0].name`.
pub fn render_path(path: &[PathSeg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            PathSeg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            PathSeg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Parses every document of a YAML (or JSON) stream. Empty documents are skipped.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, SyntaxError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder::default();
    let mut docs = Vec::new();
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| SyntaxError {
            pos: Pos { line: e.marker().line(), column: e.marker().col() + 1 },
            message: explain(e.info()),
        })?;
        match event {
            Event::StreamEnd => break,
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => {}
            Event::DocumentStart(_) => builder = Builder::default(),
            other => {
                if let Some(done) = builder.push(other, span)? {
                    docs.push(done);
                }
            }
        }
    }
    Ok(docs)
}

/// Rewords the parser's messages where the usual mistake behind them is known.
fn explain(info: &str) -> String {
    if info.starts_with("invalid trailing content after") {
        return "invalid trailing content after a quoted value (in a block list each item stands on its own \
                `- ` line; a ',' separates items only in a flow list such as ['sh', '-c'])"
            .to_string();
    }
    info.to_string()
}

/// Builds one document's tree from parser events.
#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    /// Each anchored node, with its expanded size (nodes, scalar bytes).
    anchors: HashMap<usize, (Node, Size)>,
    expansions: usize,
    /// The expanded size of the document so far.
    total: Size,
}

/// The expanded size of a node: how many nodes, how many bytes of scalars.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
        size: Size,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<(String, Pos, Node)>,
        key: Option<(String, Pos)>,
        size: Size,
        /// The values of `<<` merge keys, merged in at the mapping's end.
        merges: Vec<Node>,
    },
}

impl Builder {
    /// Feeds one event; returns the document's root once it is complete.
    fn push(&mut self, event: Event<'_>, span: Span) -> Result<Option<Node>, SyntaxError> {
        let pos = Pos::of(&span);
        let deeper = || SyntaxError { pos, message: format!("the document nests deeper than {MAX_DEPTH} levels") };
        let (node, size) = match event {
            Event::SequenceStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(deeper());
                }
                self.stack.push(Frame::Seq { pos, anchor, items: Vec::new(), size: Size::default() });
                return Ok(None);
            }
            Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(deeper());
                }
                let frame = Frame::Map {
                    pos,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    size: Size::default(),
                    merges: Vec::new(),
                };
                self.stack.push(frame);
                return Ok(None);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor, mut size) = match self.stack.pop() {
                    Some(Frame::Seq { pos, anchor, items, size }) => {
                        (Node { pos, kind: NodeKind::Seq(items) }, anchor, size)
                    }
                    Some(Frame::Map { pos, anchor, mut entries, size, merges, .. }) => {
                        merge(&mut entries, merges, pos)?;
                        (Node { pos, kind: NodeKind::Map(entries) }, anchor, size)
                    }
                    None => {
                        return Err(SyntaxError { pos, message: "unbalanced collection end".into() });
                    }
                };
                size.add(Size { nodes: 1, bytes: 0 });
                self.total.add(Size { nodes: 1, bytes: 0 });
                self.remember(anchor, &node, size);
                (node, size)
            }
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix.clone());
                let size = Size { nodes: 1, bytes: text.len() as u64 };
                self.total.add(size);
                let node = Node { pos, kind: NodeKind::Scalar(resolve_scalar(&text, style, tag.as_deref(), pos)?) };
                self.remember(anchor, &node, size);
                (node, size)
            }
            Event::Alias(id) => {
                self.expansions += 1;
                if self.expansions > MAX_ALIAS_EXPANSIONS {
                    return Err(SyntaxError { pos, message: "too many alias expansions".into() });
                }
                let Some((n, size)) = self.anchors.get(&id) else {
                    return Err(SyntaxError { pos, message: "unknown anchor".into() });
                };
                // Counted before it is copied: the copy is what would exhaust the memory.
                let mut after = self.total;
                after.add(*size);
                if after.nodes > MAX_EXPANDED_NODES || after.bytes > MAX_EXPANDED_BYTES {
                    return Err(SyntaxError {
                        pos,
                        message: format!(
                            "aliases expand the document past {MAX_EXPANDED_NODES} nodes or {} MiB",
                            MAX_EXPANDED_BYTES >> 20
                        ),
                    });
                }
                self.total = after;
                (Node { pos, kind: n.kind.clone() }, *size)
            }
            _ => return Ok(None),
        };
        self.attach(node, size)
    }

    fn remember(&mut self, anchor: usize, node: &Node, size: Size) {
        if anchor != 0 {
            self.anchors.insert(anchor, (node.clone(), size));
        }
    }

    fn attach(&mut self, node: Node, size: Size) -> Result<Option<Node>, SyntaxError> {
        match self.stack.last_mut() {
            None => Ok(Some(node)),
            Some(Frame::Seq { items, size: parent, .. }) => {
                parent.add(size);
                items.push(node);
                Ok(None)
            }
            Some(Frame::Map { entries, key, size: parent, merges, .. }) => {
                parent.add(size);
                match key.take() {
                    None => {
                        let name = match &node.kind {
                            NodeKind::Scalar(Value::String(s)) => s.clone(),
                            NodeKind::Scalar(Value::Null) => "null".to_string(),
                            NodeKind::Scalar(v) => v.to_string(),
                            _ => {
                                return Err(SyntaxError {
                                    pos: node.pos,
                                    message: "mapping keys must be scalars".into(),
                                });
                            }
                        };
                        if let Some((_, first, _)) = entries.iter().find(|(k, _, _)| *k == name) {
                            return Err(SyntaxError {
                                pos: node.pos,
                                message: format!("mapping key \"{name}\" already defined at line {}", first.line),
                            });
                        }
                        *key = Some((name, node.pos));
                    }
                    // YAML 1.1's merge key, as sigs.k8s.io/yaml reads it.
                    Some((name, _)) if name == "<<" && matches!(node.kind, NodeKind::Map(_) | NodeKind::Seq(_)) => {
                        merges.push(node)
                    }
                    Some((name, kpos)) => entries.push((name, kpos, node)),
                }
                Ok(None)
            }
        }
    }
}

/// Merges the mappings of `<<` keys into `entries`: keys the mapping sets itself win, then
/// earlier merged mappings over later ones.
fn merge(entries: &mut Vec<(String, Pos, Node)>, merges: Vec<Node>, pos: Pos) -> Result<(), SyntaxError> {
    for m in merges {
        let maps = match m.kind {
            NodeKind::Map(e) => vec![e],
            NodeKind::Seq(items) => items
                .into_iter()
                .map(|i| match i.kind {
                    NodeKind::Map(e) => Ok(e),
                    _ => Err(SyntaxError { pos: i.pos, message: "a merge key's list must hold mappings".into() }),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(SyntaxError { pos, message: "a merge key's value must be a mapping".into() }),
        };
        for map in maps {
            for (k, kpos, v) in map {
                if !entries.iter().any(|(e, _, _)| *e == k) {
                    entries.push((k, kpos, v));
                }
            }
        }
    }
    Ok(())
}

/// Resolves a scalar to JSON with YAML 1.1 rules, as sigs.k8s.io/yaml does.
fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>, pos: Pos) -> Result<Value, SyntaxError> {
    if let Some(tag) = tag {
        return match tag {
            "str" => Ok(Value::String(text.to_string())),
            "int" => parse_int(text)
                .map(|i| Value::Number(i.into()))
                .ok_or_else(|| SyntaxError { pos, message: format!("cannot decode {text:?} as an !!int") }),
            "bool" => parse_bool(text)
                .map(Value::Bool)
                .ok_or_else(|| SyntaxError { pos, message: format!("cannot decode {text:?} as a !!bool") }),
            "null" => Ok(Value::Null),
            _ => Ok(Value::String(text.to_string())),
        };
    }
    if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_string()));
    }
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Ok(Value::Null);
    }
    if let Some(b) = parse_bool(text) {
        return Ok(Value::Bool(b));
    }
    if let Some(i) = parse_int(text) {
        return Ok(Value::Number(i.into()));
    }
    if let Some(f) = parse_float(text)
        && let Some(n) = Number::from_f64(f)
    {
        return Ok(Value::Number(n));
    }
    Ok(Value::String(text.to_string()))
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn parse_int(text: &str) -> Option<i64> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (neg, body) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    if body.is_empty() || !body.chars().next()?.is_ascii_digit() {
        return None;
    }
    let value = if let Some(hex) = body.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = body.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()?
    } else if let Some(oct) = body.strip_prefix("0o") {
        i64::from_str_radix(oct, 8).ok()?
    } else if body.len() > 1 && body.starts_with('0') {
        i64::from_str_radix(&body[1..], 8).ok()?
    } else {
        body.parse::<i64>().ok()?
    };
    Some(if neg { -value } else { value })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    let first = text.trim_start_matches(['-', '+']).chars().next()?;
    if !(first.is_ascii_digit() || first == '.') {
        return None;
    }
    text.replace('_', "").parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        parse_documents(text).unwrap().remove(0).to_json()
    }

    #[test]
    fn yaml_1_1_scalars_resolve_as_kubectl_does() {
        assert_eq!(one("a: 0644"), serde_json::json!({"a": 420}));
        assert_eq!(one("a: yes"), serde_json::json!({"a": true}));
        assert_eq!(one("a: 'yes'"), serde_json::json!({"a": "yes"}));
        assert_eq!(one("a: ~"), serde_json::json!({"a": null}));
        assert_eq!(one("a: 1.5"), serde_json::json!({"a": 1.5}));
        assert_eq!(one("a: 100m"), serde_json::json!({"a": "100m"}));
        assert_eq!(one("a: 0x1F"), serde_json::json!({"a": 31}));
    }

    #[test]
    fn positions_are_one_based_and_locate_finds_them() {
        let doc = parse_documents("a:\n  b:\n  - x\n  - k: 1\n").unwrap().remove(0);
        let path = [PathSeg::Key("a".into()), PathSeg::Key("b".into()), PathSeg::Index(1), PathSeg::Key("k".into())];
        assert_eq!(doc.locate(&path, true), Pos { line: 4, column: 5 });
        assert_eq!(doc.locate(&path, false), Pos { line: 4, column: 8 });
        assert_eq!(render_path(&path), "a.b[1].k");
    }

    #[test]
    fn yaml_1_1_boolean_keys_become_strings() {
        assert_eq!(one("on: 1"), serde_json::json!({"true": 1}));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(err.pos.line, 3);
        assert!(err.message.contains("already defined at line 1"), "{}", err.message);
    }

    #[test]
    fn anchors_and_multiple_documents() {
        let docs = parse_documents("a: &x [1, 2]\nb: *x\n---\n---\nc: 3\n").unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[1].to_json(), Value::Null, "an empty document is null");
        assert_eq!(docs[0].to_json(), serde_json::json!({"a": [1, 2], "b": [1, 2]}));
    }
}
