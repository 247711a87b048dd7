//! Reading a request: its path into a [`Route`], its query string, and what it accepts.

use std::collections::HashMap;

use podvisor_objects::kinds::Resource;

/// What a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`.
    Version,
    /// `/api` (`true`) or `/apis` (`false`).
    Discovery(bool),
    /// `/api/v1`, `/apis/<group>/<version>`.
    ResourceList(String, String),
    /// `/openapi/v3`.
    OpenApiRoot,
    /// `/openapi/v3/<path>`.
    OpenApi(String),
    /// `/openapi/v2`.
    OpenApiV2,
    /// Other OpenAPI and health paths podvisor does not serve.
    Unserved,
    /// `/healthz`, `/livez`, `/readyz` (the first part), and a check under it, if any.
    Health(String, Option<String>),
    /// A collection (`name` none) or one object, perhaps a subresource of it.
    Object {
        /// The resource type.
        resource: Resource,
        /// The namespace, if the path has one.
        namespace: Option<String>,
        /// The object's name.
        name: Option<String>,
        /// `log`, `status`.
        sub: Option<String>,
    },
}

/// Decodes `%XX` and `+` in a query component.
pub fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query parameters.
/// Every value of `key` in a query, in order (`command=sh&command=-c`).
pub fn query_all(q: Option<&str>, key: &str) -> Vec<String> {
    q.unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('=').filter(|(k, _)| decode(k) == key).map(|(_, v)| decode(v)))
        .collect()
}

/// Parses a query string; of a key given twice, the last value.
pub fn query(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Parses a request path.
pub fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Some(Route::Version),
        ["api"] => return Some(Route::Discovery(true)),
        ["apis"] => return Some(Route::Discovery(false)),
        ["openapi", "v3"] => return Some(Route::OpenApiRoot),
        ["openapi", "v3", rest @ ..] => return Some(Route::OpenApi(rest.join("/"))),
        ["openapi", "v2"] => return Some(Route::OpenApiV2),
        [h @ ("healthz" | "livez" | "readyz")] => return Some(Route::Health(h.to_string(), None)),
        [h @ ("healthz" | "livez" | "readyz"), check] => {
            return Some(Route::Health(h.to_string(), Some(check.to_string())));
        }
        ["openapi", ..] | ["healthz" | "livez" | "readyz", ..] => return Some(Route::Unserved),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return None,
    };
    let owned = |s: &&str| s.to_string();
    let object = |plural: &str, namespace: Option<String>, name: Option<&&str>, sub: Option<&&str>| {
        Resource::find(group, version, plural).map(|resource| Route::Object {
            resource,
            namespace,
            name: name.map(owned),
            sub: sub.map(owned),
        })
    };
    match rest {
        [] => Some(Route::ResourceList(group.to_string(), version.to_string())),
        ["namespaces", ns, plural, tail @ ..] if tail.len() <= 2 => {
            object(plural, Some(ns.to_string()), tail.first(), tail.get(1))
        }
        [plural, tail @ ..] if tail.len() <= 2 => object(plural, None, tail.first(), tail.get(1)),
        _ => None,
    }
}

/// Whether the client asked for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').next().is_some_and(|first| first.contains("as=Table"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_queries() {
        assert_eq!(
            route("/apis/batch/v1/namespaces/default/jobs/x"),
            Some(Route::Object {
                resource: Resource::Jobs,
                namespace: Some("default".into()),
                name: Some("x".into()),
                sub: None
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/default"),
            Some(Route::Object {
                resource: Resource::Namespaces,
                namespace: None,
                name: Some("default".into()),
                sub: None
            })
        );
        assert_eq!(
            route("/api/v1/namespaces/d/pods/web/log"),
            Some(Route::Object {
                resource: Resource::Pods,
                namespace: Some("d".into()),
                name: Some("web".into()),
                sub: Some("log".into())
            })
        );
        assert_eq!(
            route("/api/v1/pods"),
            Some(Route::Object { resource: Resource::Pods, namespace: None, name: None, sub: None })
        );
        assert_eq!(route("/apis/apps/v1"), Some(Route::ResourceList("apps".into(), "v1".into())));
        let q = query(Some("labelSelector=app+in+%28web%2Cx%29%2C%21foo&watch=true"));
        assert_eq!(q["labelSelector"], "app in (web,x),!foo");
        assert_eq!(decode("100%"), "100%");
        assert!(wants_table("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"));
        assert!(!wants_table("application/json"));
    }
}
