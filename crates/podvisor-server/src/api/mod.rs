//! The object endpoints, one module per verb as the API server's handlers are: get and list
//! (JSON or Table, with label and field selectors), watch, create and update, patch (merge,
//! strategic merge, server-side apply), and delete. What they share (the request, its query,
//! admission, dry runs, replies) is here.

mod delete;
mod get;

pub(crate) use get::metrics;
mod patch;
mod watch;
mod write;

use std::collections::HashMap;

use jiff::Timestamp;
use podvisor_apiserver::admission::{self, FieldValidation};
use podvisor_apiserver::managed;
use podvisor_apiserver::selector::{FieldSelector, LabelSelector};
use podvisor_apiserver::table::{self, Include};
use podvisor_cluster::Key;
use podvisor_objects::kinds::Resource;
use serde_json::Value;

use crate::status::ApiError;
use crate::{Reply, State};

/// One request to an object endpoint.
pub struct Call<'a> {
    /// The server.
    pub state: &'a State,
    /// The resource type.
    pub resource: Resource,
    /// The namespace in the path.
    pub namespace: Option<String>,
    /// The name in the path.
    pub name: Option<String>,
    /// The subresource.
    pub sub: Option<String>,
    /// The query.
    pub query: HashMap<String, String>,
    /// Whether a Table was asked for.
    pub table: bool,
    /// The client's `User-Agent`, which names the field manager when the query does not.
    pub user_agent: String,
}

impl Call<'_> {
    fn key(&self) -> Key {
        Key::new(self.resource, self.namespace.as_deref().unwrap_or(""), self.name.as_deref().unwrap_or(""))
    }

    fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The field manager of a write: `?fieldManager=`, else the client's name as its user agent
    /// gives it, as the API server does.
    fn manager(&self) -> String {
        let agent = self.user_agent.split('/').next().unwrap_or("").trim();
        self.q("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| if agent.is_empty() { "unknown" } else { agent }.to_string())
    }

    fn now() -> String {
        podvisor_cluster::values::stamp(Timestamp::now())
    }

    /// Server-side apply of `config` onto `live` (`{}` for a create).
    fn apply(&self, live: &Value, config: &Value) -> Result<Value, ApiError> {
        let force = self.q("force") == Some("true");
        managed::apply(live, config, &self.manager(), force, &Self::now()).map_err(|e| match e {
            managed::ApplyError::Conflicts(ref c) => ApiError::apply_conflicts(&e.to_string(), c),
            managed::ApplyError::Bad(b) => ApiError::bad_request(b.0),
        })
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels =
            LabelSelector::parse(self.q("labelSelector").unwrap_or("")).map_err(|e| ApiError::bad_request(e.0))?;
        let fields = FieldSelector::parse(self.resource, self.q("fieldSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(e.0))?;
        Ok((labels, fields))
    }

    /// Admits a body with the request's `fieldValidation`.
    fn admit(&self, mut obj: Value) -> Result<(Value, Vec<String>), ApiError> {
        if self.resource == podvisor_objects::kinds::Resource::Services
            && self.name.is_some()
            && let Some(cur) = self.state.store().get(&self.key())
        {
            podvisor_apiserver::services::drop_type_dependent(&cur, &mut obj);
        }
        let validation = FieldValidation::parse(self.q("fieldValidation"))?;
        let admitted = admission::admit(self.resource, obj, self.namespace.as_deref(), validation)?;
        Ok((admitted.object, admitted.warnings))
    }

    fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }

    fn object_reply(&self, code: u16, obj: &Value) -> Reply {
        if self.table {
            let rv = obj.pointer("/metadata/resourceVersion").and_then(Value::as_str).and_then(|s| s.parse().ok());
            let t = table::table(
                self.resource,
                &[obj],
                rv.unwrap_or(0),
                Timestamp::now(),
                Include::parse(self.q("includeObject")),
            );
            return Reply::json(code, &t);
        }
        Reply::json(code, obj)
    }
}
