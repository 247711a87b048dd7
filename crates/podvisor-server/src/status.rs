//! API errors as `Status` objects, with the codes, reasons and messages of the API server.

use podvisor_apiserver::admission::AdmissionError;
use podvisor_cluster::StoreError;
use podvisor_objects::Invalid;
use serde_json::{Value, json};

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// The `reason` (`NotFound`, `Invalid`, …).
    pub reason: &'static str,
    /// The message kubectl prints.
    pub message: String,
    /// `details`, when the API server gives them.
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { code, reason, message: message.into(), details: None }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 403 Forbidden, for a request the caller's roles do not allow.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// 401 Unauthorized.
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 404 for a path that names nothing served.
    /// It carries the empty `details` the API server sends (clients such as `kubectl debug`
    /// read it).
    pub fn no_route() -> ApiError {
        ApiError {
            details: Some(serde_json::json!({})),
            ..ApiError::new(404, "NotFound", "the server could not find the requested resource")
        }
    }

    /// 404 for a subresource of a served object that podvisor does not serve yet, naming it.
    pub fn unserved_subresource(resource: &str, name: &str, sub: &str) -> ApiError {
        ApiError {
            details: Some(serde_json::json!({"name": name, "kind": resource})),
            ..ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource: podvisor does not serve {resource}/{sub} yet"
                ),
            )
        }
    }

    /// 504 for a request that did not arrive in time, in the API server's words.
    pub fn timeout() -> ApiError {
        ApiError::new(504, "Timeout", "Timeout: request did not complete within the allotted timeout")
    }

    /// 413 for a body past `limit` bytes, in the API server's words.
    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: limit is {limit}"))
    }

    /// 413 with the API server's reason for it.
    pub fn too_large_because(why: String) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", format!("Request entity too large: {why}"))
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed() -> ApiError {
        ApiError {
            details: Some(serde_json::json!({})),
            ..ApiError::new(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        }
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media(got: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({got}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
            ),
        )
    }

    /// 415 for a create or update body in a format other than JSON or protobuf.
    pub fn unsupported_body(got: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({got}) - accepted media types include: application/json, application/vnd.kubernetes.protobuf"
            ),
        )
    }

    /// 422 Invalid, with one cause per field error.
    pub fn invalid(e: &Invalid) -> ApiError {
        let causes: Vec<Value> = e
            .errors
            .iter()
            .map(|f| {
                let whole = f.to_string();
                let message = whole.strip_prefix(&format!("{}: ", f.field)).unwrap_or(&whole).to_string();
                let reason = match f.kind {
                    podvisor_objects::field::ErrorType::Required => "FieldValueRequired",
                    podvisor_objects::field::ErrorType::Invalid(_) => "FieldValueInvalid",
                    podvisor_objects::field::ErrorType::NotSupported(..) => "FieldValueNotSupported",
                    podvisor_objects::field::ErrorType::Forbidden => "FieldValueForbidden",
                    podvisor_objects::field::ErrorType::Duplicate(_) => "FieldValueDuplicate",
                    podvisor_objects::field::ErrorType::NotFound(_) => "FieldValueNotFound",
                    podvisor_objects::field::ErrorType::TooLong => "FieldValueTooLong",
                };
                json!({"reason": reason, "message": message, "field": f.field})
            })
            .collect();
        ApiError {
            code: 422,
            reason: "Invalid",
            message: e.to_string(),
            details: Some(json!({"name": e.name, "kind": e.kind, "causes": causes})),
        }
    }

    /// 422 for a JSON patch operation that does not apply, worded as the API server's generic
    /// 422: the patch library's message is the one cause.
    pub fn patch_not_applicable(message: String) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: "the server rejected our request due to an error in our request".into(),
            details: Some(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": message}]})),
        }
    }

    /// 422 Invalid with a single forbidden or immutable field.
    pub fn immutable(kind: &str, name: &str, field: &str, message: &str) -> ApiError {
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{kind} {name:?} is invalid: {field}: {message}"),
            details: Some(json!({"name": name, "kind": kind, "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": field}]})),
        }
    }

    /// 409 for a server-side apply that would change fields other managers own.
    pub fn apply_conflicts(message: &str, conflicts: &[podvisor_apiserver::managed::Conflict]) -> ApiError {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|c| {
                json!({"reason": "FieldManagerConflict", "field": c.field,
                    "message": format!("conflict with {}", c.who())})
            })
            .collect();
        ApiError { details: Some(json!({"causes": causes})), ..ApiError::new(409, "Conflict", message) }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let details = |k: &podvisor_cluster::Key| {
            let i = k.resource.info();
            let mut d = json!({"name": k.name, "kind": i.plural});
            if !i.group.is_empty() {
                d["group"] = json!(i.group);
            }
            Some(d)
        };
        match &e {
            StoreError::NotFound(k) => {
                ApiError { details: details(k), ..ApiError::new(404, "NotFound", e.to_string()) }
            }
            StoreError::AlreadyExists(k) => {
                ApiError { details: details(k), ..ApiError::new(409, "AlreadyExists", e.to_string()) }
            }
            StoreError::Conflict(k) => {
                ApiError { details: details(k), ..ApiError::new(409, "Conflict", e.to_string()) }
            }
            StoreError::Forbidden { key, .. } => {
                ApiError { details: details(key), ..ApiError::new(403, "Forbidden", e.to_string()) }
            }
            StoreError::Expired { .. } => ApiError::new(410, "Expired", e.to_string()),
            StoreError::Disk(_) => ApiError::new(500, "InternalError", e.to_string()),
        }
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> ApiError {
        match e {
            AdmissionError::BadRequest(message) => ApiError::bad_request(message),
            AdmissionError::Invalid(invalid) => ApiError::invalid(&invalid),
            AdmissionError::Field { kind, name, field, message } => ApiError::immutable(&kind, &name, &field, &message),
        }
    }
}
