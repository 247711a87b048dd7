//! Event objects, as the kubelet and the controllers record them: named
//! `<object>.<hex nanoseconds>` so that names sort by time, repeats of one event counted on one
//! object (`count`, `lastTimestamp`), and aged out after an hour as the API server's event TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use podvisor_objects::kinds::Resource;
use serde_json::{Value, json};

use crate::store::{Key, Store, StoreError};
use crate::values::stamp;

/// How long an event is kept after it last happened (the API server's `--event-ttl`).
pub const TTL: Duration = Duration::from_secs(3600);

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Involved {
    /// Its kind.
    pub kind: String,
    /// Its apiVersion.
    pub api_version: String,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// The part of it (`spec.containers{app}`), if any.
    pub field_path: Option<String>,
}

impl Involved {
    /// The object `obj` of type `resource`.
    pub fn of(resource: Resource, obj: &Value) -> Involved {
        let s = |p: &str| obj.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
        Involved {
            kind: resource.info().kind.to_string(),
            api_version: resource.api_version(),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name"),
            uid: s("/metadata/uid"),
            field_path: None,
        }
    }
}

/// `Normal` or `Warning`.
pub type EventType = &'static str;

type Seen = HashMap<(Involved, String, String, EventType, &'static str), Key>;

/// Records events into the store.
#[derive(Debug, Clone)]
pub struct Recorder {
    store: Arc<Store>,
    host: String,
    seen: Arc<Mutex<Seen>>,
}

impl Recorder {
    /// A recorder for the node `host`.
    pub fn new(store: Arc<Store>, host: String) -> Recorder {
        Recorder { store, host, seen: Arc::default() }
    }

    /// Records one event by `component` (`kubelet`, `job-controller`, …) about `about`.
    pub fn record(&self, about: &Involved, kind: EventType, reason: &str, message: &str, component: &'static str) {
        let now = Timestamp::now();
        let id = (about.clone(), reason.to_string(), message.to_string(), kind, component);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = seen.get(&id) {
            let bumped = self.store.update::<StoreError>(key, |e| {
                let n = e["count"].as_i64().unwrap_or(1);
                e["count"] = json!(n + 1);
                e["lastTimestamp"] = json!(stamp(now));
                Ok(())
            });
            if bumped.is_ok() {
                return;
            }
        }
        let name = format!("{}.{:x}", about.name, now.as_nanosecond());
        let mut involved = json!({
            "kind": about.kind, "apiVersion": about.api_version, "name": about.name,
            "namespace": about.namespace, "uid": about.uid,
        });
        if let Some(f) = &about.field_path {
            involved["fieldPath"] = json!(f);
        }
        let source = if component == "kubelet" {
            json!({"component": component, "host": self.host})
        } else {
            json!({"component": component})
        };
        let event = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": about.namespace},
            "involvedObject": involved,
            "reason": reason, "message": message, "type": kind,
            "source": source,
            "firstTimestamp": stamp(now), "lastTimestamp": stamp(now), "count": 1,
            "eventTime": null,
            "reportingComponent": component, "reportingInstance": if component == "kubelet" { self.host.as_str() } else { "" },
        });
        if let Ok(obj) = self.store.create(Resource::Events, event) {
            seen.insert(id, Key::of(Resource::Events, &obj));
        }
    }

    /// Removes events last seen longer than [`TTL`] ago; returns when the next one expires.
    pub fn expire(&self) -> Duration {
        let now = Timestamp::now();
        let (events, _) = self.store.list(Resource::Events, None);
        let mut next = TTL;
        for e in events {
            let last = e.get("lastTimestamp").and_then(Value::as_str).and_then(|t| t.parse::<Timestamp>().ok());
            let age = last.map(|t| now.duration_since(t).unsigned_abs()).unwrap_or(TTL);
            if age >= TTL {
                crate::store::said("an expired event's removal", self.store.remove(&Key::of(Resource::Events, &e)));
            } else {
                next = next.min(TTL - age);
            }
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, k| self.store.get(k).is_some());
        next + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_on_one_event() {
        let store = Store::in_memory();
        let r = Recorder::new(store.clone(), "host".into());
        let about = Involved {
            kind: "Pod".into(),
            api_version: "v1".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: "u".into(),
            field_path: Some("spec.initContainers{side}".into()),
        };
        r.record(&about, "Warning", "BackOff", "Back-off restarting failed container side", "kubelet");
        r.record(&about, "Warning", "BackOff", "Back-off restarting failed container side", "kubelet");
        r.record(&about, "Normal", "Started", "Started container side", "kubelet");
        let (events, _) = store.list(Resource::Events, Some("default"));
        assert_eq!(events.len(), 2);
        let backoff = events.iter().find(|e| e["reason"] == "BackOff").unwrap();
        assert_eq!(backoff["count"], 2);
        assert_eq!(backoff["involvedObject"]["fieldPath"], "spec.initContainers{side}");
        assert_eq!(backoff["source"]["host"], "host");
        let next = r.expire();
        assert!(next > TTL - Duration::from_secs(3) && next <= TTL + Duration::from_secs(1), "{next:?}");
        assert_eq!(store.list(Resource::Events, None).0.len(), 2);
    }
}
