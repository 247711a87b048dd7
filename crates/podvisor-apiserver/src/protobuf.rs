//! Request bodies in the Kubernetes protobuf encoding (`application/vnd.kubernetes.protobuf`),
//! turned into the JSON object the Go types would print.
//!
//! Typed clients send them: `kubectl create configmap|secret|namespace|deployment|job` and
//! `kubectl run`. A body is the four bytes `k8s\0` and a `runtime.Unknown` message whose
//! `typeMeta` names the kind and whose `raw` holds the object. The object's fields are read with
//! the table in [`schema`], generated from the Go types: a field's number gives its JSON name and
//! type; a zero scalar is dropped when the Go field is a value with `omitempty` (the Go JSON
//! encoder drops it too) and kept when it is a pointer, so `replicas: 0` or
//! `terminationGracePeriodSeconds: 0` survive. Fields the table does not know are skipped, as the
//! API server skips them.

mod schema;

use serde_json::{Map, Value};

use podvisor_objects::kinds::Resource;

/// The type of one field's value.
#[derive(Debug)]
enum Kind {
    /// A UTF-8 string.
    String,
    /// Bytes, base64 in JSON.
    Bytes,
    /// A boolean.
    Bool,
    /// A 32-bit integer.
    Int32,
    /// A 64-bit integer.
    Int64,
    /// `metav1.Time`: seconds and nanoseconds, RFC 3339 in JSON.
    Time,
    /// `metav1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `metav1.FieldsV1` or `runtime.RawExtension`: JSON bytes, embedded as they are.
    Raw,
    /// A message of the table, by name.
    Message(&'static str),
    /// A map with string keys.
    Map(&'static Kind),
}

/// One field of a message.
#[derive(Debug)]
struct Field {
    tag: u32,
    json: &'static str,
    kind: Kind,
    flags: u8,
}

/// The field is a list.
const REPEATED: u8 = 1;
/// The field is an embedded struct whose fields JSON shows at the level of its parent.
const INLINE: u8 = 2;
/// A zero value is dropped (a Go value field with `omitempty`).
const OMIT_ZERO: u8 = 4;

const fn f(tag: u32, json: &'static str, kind: Kind, flags: u8) -> Field {
    Field { tag, json, kind, flags }
}

/// The envelope's first bytes.
const MAGIC: &[u8] = b"k8s\0";

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body lacks the `k8s\0` prefix.
    #[error("the protobuf body does not start with the Kubernetes envelope prefix \"k8s\\x00\"")]
    NoEnvelope,
    /// The envelope names a kind this server does not serve.
    #[error("no kind \"{kind}\" is registered for version \"{api_version}\" in scheme \"podvisor\"")]
    UnknownKind {
        /// `apiVersion` from the envelope.
        api_version: String,
        /// `kind` from the envelope.
        kind: String,
    },
    /// The envelope's content is encoded (compressed), which no client does.
    #[error("the protobuf body's content encoding \"{0}\" is not supported")]
    Encoded(String),
    /// The bytes are not a valid message.
    #[error("malformed protobuf in {message}: {what}")]
    Malformed {
        /// The message being read.
        message: String,
        /// What was wrong.
        what: String,
    },
}

/// Decodes a protobuf request body into the JSON object, with `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let inner = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoEnvelope)?;
    let malformed = |what: String| ProtobufError::Malformed { message: "runtime.Unknown".into(), what };
    let (mut api_version, mut kind, mut raw, mut encoding) = (String::new(), String::new(), &[][..], String::new());
    let mut r = Reader::new(inner);
    while let Some((tag, wire)) = r.key().map_err(malformed)? {
        match (tag, wire) {
            (1, LEN) => {
                let mut t = Reader::new(r.bytes().map_err(malformed)?);
                while let Some((tag, wire)) = t.key().map_err(malformed)? {
                    match (tag, wire) {
                        (1, LEN) => api_version = t.string().map_err(malformed)?,
                        (2, LEN) => kind = t.string().map_err(malformed)?,
                        _ => t.skip(wire).map_err(malformed)?,
                    }
                }
            }
            (2, LEN) => raw = r.bytes().map_err(malformed)?,
            (3, LEN) => encoding = r.string().map_err(malformed)?,
            _ => r.skip(wire).map_err(malformed)?,
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::Encoded(encoding));
    }
    // The served kinds, and the bodies of the subresources that take one (`serviceaccounts/token`).
    let subresource_body = api_version == "authentication.k8s.io/v1" && kind == "TokenRequest";
    if Resource::of_kind(&api_version, &kind).is_none() && !subresource_body {
        return Err(ProtobufError::UnknownKind { api_version, kind });
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("core", &api_version));
    let name = format!("{group}.{version}.{kind}");
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version.clone()));
    object.insert("kind".into(), Value::String(kind.clone()));
    message(&name, raw, &mut object)?;
    Ok(Value::Object(object))
}

fn fields(name: &str) -> Option<&'static [Field]> {
    schema::MESSAGES.binary_search_by(|(n, _)| (*n).cmp(name)).ok().map(|i| schema::MESSAGES[i].1)
}

/// Reads the message `name` from `bytes` into `out` (the parent's map for an inline struct).
fn message(name: &str, bytes: &[u8], out: &mut Map<String, Value>) -> Result<(), ProtobufError> {
    let malformed = |what: String| ProtobufError::Malformed { message: name.to_string(), what };
    let table = fields(name).ok_or_else(|| malformed("the message is not in this server's schema".into()))?;
    let mut r = Reader::new(bytes);
    while let Some((tag, wire)) = r.key().map_err(malformed)? {
        let Some(field) = table.iter().find(|f| f.tag == tag) else {
            r.skip(wire).map_err(malformed)?;
            continue;
        };
        // An inline field has no JSON name of its own; its message names it.
        let label = match (field.json, &field.kind) {
            ("", Kind::Message(inner)) => inner,
            (json, _) => json,
        };
        let at = |what: String| malformed(format!("field {label} ({}): {what}", field.tag));
        let nested = field.flags & INLINE != 0 || matches!(field.kind, Kind::Map(_) | Kind::Message(_));
        if nested && wire != LEN {
            return Err(at(format!("wire type {wire}, expected {LEN}")));
        }
        if field.flags & INLINE != 0 {
            let Kind::Message(inner) = field.kind else { return Err(at("an inline field must be a message".into())) };
            message(inner, r.bytes().map_err(at)?, out)?;
        } else if field.flags & REPEATED != 0 {
            let mut items = Vec::new();
            if wire == LEN && matches!(field.kind, Kind::Bool | Kind::Int32 | Kind::Int64) {
                let mut packed = Reader::new(r.bytes().map_err(at)?);
                while !packed.done() {
                    items.extend(value(&field.kind, VARINT, &mut packed).map_err(at)?);
                }
            } else {
                items.extend(value(&field.kind, wire, &mut r).map_err(at)?);
            }
            match out.entry(field.json).or_insert_with(|| Value::Array(Vec::new())) {
                Value::Array(list) => list.extend(items),
                other => *other = Value::Array(items),
            }
        } else if let Kind::Map(inner) = field.kind {
            let (key, v) = entry(inner, r.bytes().map_err(at)?).map_err(at)?;
            let v = v.unwrap_or(Value::Null);
            match out.entry(field.json).or_insert_with(|| Value::Object(Map::new())) {
                Value::Object(map) => drop(map.insert(key, v)),
                other => *other = Value::Object(Map::from_iter([(key, v)])),
            }
        } else if let Kind::Message(inner) = field.kind {
            // A message seen twice merges into one, as protobuf says.
            let bytes = r.bytes().map_err(at)?;
            let slot = out.entry(field.json).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(object) = slot {
                message(inner, bytes, object)?;
            }
        } else {
            match value(&field.kind, wire, &mut r).map_err(at)? {
                Some(v) if !(field.flags & OMIT_ZERO != 0 && is_zero(&v)) => {
                    out.insert(field.json.to_string(), v);
                }
                _ => {
                    out.remove(field.json);
                }
            }
        }
    }
    Ok(())
}

/// A map entry: key 1, value 2.
fn entry(kind: &Kind, bytes: &[u8]) -> Result<(String, Option<Value>), String> {
    let (mut key, mut v) = (String::new(), None);
    let mut r = Reader::new(bytes);
    while let Some((tag, wire)) = r.key()? {
        match (tag, wire) {
            (1, LEN) => key = r.string()?,
            (1, _) => return Err(format!("map key of wire type {wire}, expected {LEN}")),
            (2, _) => v = value(kind, wire, &mut r)?,
            _ => r.skip(wire)?,
        }
    }
    // A value absent on the wire is the zero value.
    let zero = match kind {
        Kind::String | Kind::Bytes | Kind::Quantity => Some(Value::String(String::new())),
        Kind::Bool => Some(Value::Bool(false)),
        Kind::Int32 | Kind::Int64 | Kind::IntOrString => Some(Value::from(0)),
        Kind::Message(_) => Some(Value::Object(Map::new())),
        Kind::Time | Kind::MicroTime | Kind::Raw | Kind::Map(_) => None,
    };
    Ok((key, v.or(zero)))
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    }
}

/// One value of `kind`; `None` for a value JSON shows as null (a zero time).
fn value(kind: &Kind, wire: u8, r: &mut Reader) -> Result<Option<Value>, String> {
    let expect = |want: u8| if wire == want { Ok(()) } else { Err(format!("wire type {wire}, expected {want}")) };
    Ok(Some(match kind {
        Kind::String => {
            expect(LEN)?;
            Value::String(r.string()?)
        }
        Kind::Bytes => {
            expect(LEN)?;
            Value::String(base64(r.bytes()?))
        }
        Kind::Bool => {
            expect(VARINT)?;
            Value::Bool(r.varint()? != 0)
        }
        // Negative numbers are ten-byte varints; the casts keep their two's complement.
        Kind::Int32 => {
            expect(VARINT)?;
            Value::from(r.varint()? as i32)
        }
        Kind::Int64 => {
            expect(VARINT)?;
            Value::from(r.varint()? as i64)
        }
        Kind::Time | Kind::MicroTime => {
            expect(LEN)?;
            let (mut seconds, mut nanos) = (0i64, 0i32);
            let mut t = Reader::new(r.bytes()?);
            while let Some((tag, wire)) = t.key()? {
                match (tag, wire) {
                    (1, VARINT) => seconds = t.varint()? as i64,
                    (2, VARINT) => nanos = t.varint()? as i32,
                    _ => t.skip(wire)?,
                }
            }
            if seconds == 0 && nanos == 0 {
                return Ok(None);
            }
            return time(seconds, nanos, matches!(kind, Kind::MicroTime)).map(|s| Some(Value::String(s)));
        }
        Kind::Quantity | Kind::Raw => {
            expect(LEN)?;
            let mut inner = &[][..];
            let mut t = Reader::new(r.bytes()?);
            while let Some((tag, wire)) = t.key()? {
                match (tag, wire) {
                    (1, LEN) => inner = t.bytes()?,
                    _ => t.skip(wire)?,
                }
            }
            if matches!(kind, Kind::Raw) {
                if inner.is_empty() {
                    return Ok(None);
                }
                serde_json::from_slice(inner).map_err(|e| format!("embedded JSON: {e}"))?
            } else {
                Value::String(std::str::from_utf8(inner).map_err(|e| e.to_string())?.to_string())
            }
        }
        Kind::IntOrString => {
            expect(LEN)?;
            let (mut is_string, mut int, mut string) = (false, 0i32, String::new());
            let mut t = Reader::new(r.bytes()?);
            while let Some((tag, wire)) = t.key()? {
                match (tag, wire) {
                    (1, VARINT) => is_string = t.varint()? == 1,
                    (2, VARINT) => int = t.varint()? as i32,
                    (3, LEN) => string = t.string()?,
                    _ => t.skip(wire)?,
                }
            }
            if is_string { Value::String(string) } else { Value::from(int) }
        }
        Kind::Message(name) => {
            expect(LEN)?;
            let mut object = Map::new();
            message(name, r.bytes()?, &mut object).map_err(|e| e.to_string())?;
            Value::Object(object)
        }
        Kind::Map(_) => return Err("a map inside a list".into()),
    }))
}

/// RFC 3339 in UTC, as `metav1.Time` (seconds) or `metav1.MicroTime` (microseconds) prints it.
fn time(seconds: i64, nanos: i32, micro: bool) -> Result<String, String> {
    if !(0..1_000_000_000).contains(&nanos) {
        return Err(format!("nanos {nanos} out of range 0 to 999999999"));
    }
    let ts = jiff::Timestamp::new(seconds, if micro { nanos } else { 0 }).map_err(|e| e.to_string())?;
    let base = ts.strftime("%Y-%m-%dT%H:%M:%S").to_string();
    Ok(if micro { format!("{base}.{:06}Z", nanos / 1000) } else { format!("{base}Z") })
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Wire type of varints.
const VARINT: u8 = 0;
/// Wire type of length-delimited values (strings, bytes, messages, packed lists).
const LEN: u8 = 2;

/// Reads protobuf's wire format.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut rest = &self.buf[self.pos.min(self.buf.len())..];
        let before = rest.len();
        let v = prost::encoding::decode_varint(&mut rest).map_err(|e| format!("{e} at byte {}", self.pos))?;
        self.pos += before - rest.len();
        Ok(v)
    }

    /// The next field's number and wire type, or `None` at the end.
    fn key(&mut self) -> Result<Option<(u32, u8)>, String> {
        if self.done() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| format!("field number {} out of range", key >> 3))?;
        Ok(Some((tag, (key & 7) as u8)))
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|e| e.to_string())?;
        let end = self.pos.checked_add(len).filter(|e| *e <= self.buf.len());
        let end = end.ok_or_else(|| format!("length {len} at byte {} runs past the end", self.pos))?;
        let b = &self.buf[self.pos..end];
        self.pos = end;
        Ok(b)
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        std::str::from_utf8(self.bytes()?).map(str::to_string).map_err(|e| format!("string at byte {at}: {e}"))
    }

    fn skip(&mut self, wire: u8) -> Result<(), String> {
        let n = match wire {
            VARINT => return self.varint().map(drop),
            1 => 8,
            LEN => return self.bytes().map(drop),
            5 => 4,
            other => return Err(format!("unsupported wire type {other} at byte {}", self.pos)),
        };
        if self.pos + n > self.buf.len() {
            return Err(format!("fixed-width value at byte {} runs past the end", self.pos));
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
