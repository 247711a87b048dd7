//! Field errors, worded and formatted as the API server's `field.Error`.

use std::fmt;

/// The kind of a field error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorType {
    /// `Required value`.
    Required,
    /// `Invalid value: <value>`.
    Invalid(String),
    /// `Unsupported value: <value>: supported values: …`.
    NotSupported(String, Vec<&'static str>),
    /// `Forbidden`.
    Forbidden,
    /// `Duplicate value: <value>`.
    Duplicate(String),
    /// `Not found: <value>`.
    NotFound(String),
    /// `Too long` (the value is not shown).
    TooLong,
}

/// One validation error: a field path, what is wrong, and a detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, e.g. `spec.initContainers[0].restartPolicy`.
    pub field: String,
    /// The error type, with the offending value where the API server shows one.
    pub kind: ErrorType,
    /// The detail text.
    pub detail: String,
}

/// A string value as the API server quotes it (Go's `%q`).
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.field)?;
        let with_detail = |f: &mut fmt::Formatter<'_>, head: &str| {
            if self.detail.is_empty() { write!(f, "{head}") } else { write!(f, "{head}: {}", self.detail) }
        };
        match &self.kind {
            ErrorType::Required => with_detail(f, "Required value"),
            ErrorType::Forbidden => with_detail(f, "Forbidden"),
            ErrorType::TooLong => with_detail(f, "Too long"),
            ErrorType::Invalid(v) => with_detail(f, &format!("Invalid value: {v}")),
            ErrorType::Duplicate(v) => with_detail(f, &format!("Duplicate value: {v}")),
            ErrorType::NotFound(v) => with_detail(f, &format!("Not found: {v}")),
            ErrorType::NotSupported(v, allowed) => {
                let list: Vec<String> = allowed.iter().map(|a| quote(a)).collect();
                write!(f, "Unsupported value: {v}: supported values: {}", list.join(", "))
            }
        }
    }
}

/// A field path under construction.
#[derive(Debug, Clone)]
pub struct Path(String);

impl Path {
    /// A root path.
    pub fn new(root: &str) -> Self {
        Path(root.to_string())
    }

    /// A child field.
    pub fn child(&self, name: &str) -> Path {
        if self.0.is_empty() { Path(name.to_string()) } else { Path(format!("{}.{name}", self.0)) }
    }

    /// A list element.
    pub fn index(&self, i: usize) -> Path {
        Path(format!("{}[{i}]", self.0))
    }

    /// A map entry (`limits[memory]`: the key without quotes, as the API server writes it).
    pub fn key(&self, k: &str) -> Path {
        Path(format!("{}[{k}]", self.0))
    }

    /// `Too long` at this path: the value is never shown.
    pub fn too_long(&self, max: usize) -> FieldError {
        self.err(ErrorType::TooLong, &format!("may not be more than {max} bytes"))
    }

    /// The path as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Required value` at this path.
    pub fn required(&self, detail: &str) -> FieldError {
        self.err(ErrorType::Required, detail)
    }

    /// `Forbidden` at this path.
    pub fn forbidden(&self, detail: &str) -> FieldError {
        self.err(ErrorType::Forbidden, detail)
    }

    /// `Invalid value` at this path, for a string value.
    pub fn invalid(&self, value: &str, detail: &str) -> FieldError {
        self.err(ErrorType::Invalid(quote(value)), detail)
    }

    /// `Invalid value` at this path, for a number.
    pub fn invalid_num(&self, value: i64, detail: &str) -> FieldError {
        self.err(ErrorType::Invalid(value.to_string()), detail)
    }

    /// `Unsupported value` at this path.
    pub fn not_supported(&self, value: &str, allowed: &[&'static str]) -> FieldError {
        self.err(ErrorType::NotSupported(quote(value), allowed.to_vec()), "")
    }

    /// `Duplicate value` at this path.
    pub fn duplicate(&self, value: &str) -> FieldError {
        self.err(ErrorType::Duplicate(quote(value)), "")
    }

    /// `Not found` at this path.
    pub fn not_found(&self, value: &str) -> FieldError {
        self.err(ErrorType::NotFound(quote(value)), "")
    }

    fn err(&self, kind: ErrorType, detail: &str) -> FieldError {
        FieldError { field: self.0.clone(), kind, detail: detail.to_string() }
    }
}

/// All the validation errors of one object, rendered as the API server's `Invalid` status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(kind, name, errors))]
pub struct Invalid {
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Every error found.
    pub errors: Vec<FieldError>,
}

fn render(kind: &str, name: &str, errors: &[FieldError]) -> String {
    match errors {
        [one] => format!("{kind} {} is invalid: {one}", quote(name)),
        many => {
            let list: Vec<String> = many.iter().map(ToString::to_string).collect();
            format!("{kind} {} is invalid: [{}]", quote(name), list.join(", "))
        }
    }
}
