//! `podvisor serve`: the Kubernetes API over HTTPS on loopback, for the real kubectl, on top
//! of the cluster (store, controllers, node) that `podvisor run` also uses.
//!
//! - [`tls`]: the generated CA, serving certificate and bearer token, and a kubeconfig;
//! - [`request`]: paths into routes, queries;
//! - [`discovery`]: `/version`, discovery, OpenAPI;
//! - [`api`]: get, list, watch, create, update, patch, delete;
//! - [`logs`](mod@logs): `pods/log`;
//! - [`admission`]: decoding, defaults, validation and update rules;
//! - [`status`]: errors as `Status` objects.

#![warn(missing_docs)]

pub mod api;
pub mod discovery;
pub mod exec;
pub mod logs;
mod memory;
pub mod portforward;
pub mod request;
pub mod status;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, header};
use http_body::Frame;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use podvisor_cluster::{Cluster, Store};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::request::Route;
use crate::status::ApiError;

/// A response body: whole, or streamed (watch, follow).
pub type Body = BoxBody<Bytes, Infallible>;

struct Channel(mpsc::Receiver<Bytes>);

impl http_body::Body for Channel {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// An answer.
pub struct Reply(Response<Body>);

impl Reply {
    /// A JSON answer.
    pub fn json(code: u16, v: &Value) -> Reply {
        let table = v.get("kind").and_then(Value::as_str) == Some("Table");
        let ct = if table { "application/json;as=Table;v=v1;g=meta.k8s.io" } else { "application/json" };
        Reply::bytes(code, ct, serde_json::to_vec(v).unwrap_or_default())
    }

    /// An answer with this content type.
    pub fn bytes(code: u16, content_type: &str, body: Vec<u8>) -> Reply {
        let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
        *r.status_mut() = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Reply(r)
    }

    /// A streamed answer: each chunk sent as it comes.
    pub fn stream(content_type: &str, rx: mpsc::Receiver<Bytes>) -> Reply {
        let mut r = Response::new(BodyExt::boxed(Channel(rx)));
        if let Ok(v) = content_type.parse() {
            r.headers_mut().insert(header::CONTENT_TYPE, v);
        }
        Reply(r)
    }

    /// The same answer with a `Warning` header per warning, as kubectl prints them
    /// (`Warning: unknown field "spec.foo"`).
    pub fn with_warnings(mut self, warnings: &[String]) -> Reply {
        for w in warnings {
            let text = w.replace('\\', "\\\\").replace('"', "\\\"");
            if let Ok(v) = format!("299 - \"{text}\"").parse() {
                self.0.headers_mut().append(header::WARNING, v);
            }
        }
        self
    }

    fn error(e: &ApiError) -> Reply {
        Reply::json(e.code, &e.to_status())
    }
}

/// What every request reaches.
pub struct State {
    /// The cluster served.
    pub cluster: Cluster,
    token: String,
    address: String,
    /// Log each request (method, path, status, time) on standard error.
    verbose: bool,
}

impl State {
    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        self.cluster.store()
    }

    /// Waits until everything written so far is on disk; an error when it could not be
    /// written (the client gets the API server's 500, not a success).
    pub async fn synced(&self) -> Result<(), podvisor_cluster::StoreError> {
        let store = self.store();
        store.synced(store.rv()).await
    }
}

/// The largest request body the API server reads (its `MaxRequestBodyBytes`, 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// How long a client has for its TLS handshake and for each request's headers, the API
/// server's `ReadHeaderTimeout` (32 s): a client that sends nothing, or too slowly, is dropped.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(32);

/// The most connections served at once; beyond, new ones wait in the listen backlog until one
/// closes (the file descriptors of the process are a bound too).
pub const MAX_CONNECTIONS: usize = 512;

/// Serves the API on `listener` with TLS until the task is dropped.
pub async fn serve(
    cluster: Cluster,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    token: String,
    verbose: bool,
) {
    let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    let state = Arc::new(State { cluster, token, address, verbose });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = std::time::Duration::ZERO;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => {
                backoff = std::time::Duration::ZERO;
                tcp
            }
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: wait for connections to close
                // instead of spinning, as Go's server backs off (5 ms, doubling to 1 s).
                backoff = (backoff * 2).clamp(std::time::Duration::from_millis(5), std::time::Duration::from_secs(1));
                tracing::warn!("accepting a connection: {e}; trying again in {backoff:?}");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Ok(Ok(stream)) = tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(tcp)).await else { return };
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await.0) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// A body past this size gives its memory back to the system once handled.
const LARGE_BODY: usize = 1024 * 1024;

/// How much of a body past [`MAX_BODY`] is read and dropped before the 413 is sent, and for how
/// long: a client still writing when the connection closes would get a reset instead of the
/// answer (Go's server lingers for the same reason). Past either bound the connection is just
/// closed.
const DRAIN_BYTES: u64 = 64 * 1024 * 1024;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a request body may take to arrive (the API server's request timeout).
const BODY_TIME: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads a request body of at most [`MAX_BODY`] bytes; a larger one is a 413, in the API
/// server's words, and is never held in memory.
async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    let mut over = false;
    let mut drained = 0u64;
    // The whole body within the API server's request timeout; past the limit, the drain has
    // its own bound from the moment the limit is passed.
    let mut deadline = tokio::time::Instant::now() + BODY_TIME;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(f) => f,
            Err(_) if over => break,
            Err(_) => return Err(ApiError::timeout()),
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| ApiError::bad_request(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if over {
            drained += data.len() as u64;
            if drained > DRAIN_BYTES {
                break;
            }
        } else if out.len() + data.len() > MAX_BODY {
            over = true;
            out = Vec::new();
            deadline = tokio::time::Instant::now() + DRAIN_TIME;
        } else {
            out.extend_from_slice(&data);
        }
    }
    if over { Err(ApiError::too_large(MAX_BODY)) } else { Ok(Bytes::from(out)) }
}

/// Whether the `Authorization` header carries `token`, read as the API server reads it
/// (`Bearer`, any case, then the token; surrounding space is not part of a header's value), the
/// token compared in constant time so its bytes cannot be guessed from the time an answer takes.
pub fn authorized(header: Option<&[u8]>, token: &str) -> bool {
    let Some(given) = bearer(header) else { return false };
    if token.is_empty() {
        return false;
    }
    let (a, b) = (given.as_bytes(), token.as_bytes());
    // Every byte of the longer one is looked at, whatever matches.
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The bearer token of an `Authorization` header, read as the API server reads it.
fn bearer(header: Option<&[u8]>) -> Option<&str> {
    let value = header.and_then(|v| std::str::from_utf8(v).ok())?;
    let mut parts = value.trim_matches([' ', '\t']).split(' ');
    let (Some(scheme), Some(given), None) = (parts.next(), parts.next(), parts.next()) else { return None };
    (scheme.eq_ignore_ascii_case("bearer") && !given.is_empty()).then_some(given)
}

/// Who a request comes from.
enum Caller {
    /// The holder of the node's token: everything is allowed.
    Admin,
    /// A service account (a pod's token): RBAC decides.
    Account(podvisor_cluster::rbac::User),
}

/// The caller a request's headers prove, if any: the administrator (who may act as another
/// user with `Impersonate-User` and `Impersonate-Group`, as `kubectl --as` sends them), or a
/// service account by its token.
fn authenticate(state: &State, headers: &http::HeaderMap) -> Option<Caller> {
    let header = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if authorized(header, &state.token) {
        let Some(user) = headers.get("impersonate-user").and_then(|v| v.to_str().ok()) else {
            return Some(Caller::Admin);
        };
        let mut groups: Vec<String> =
            headers.get_all("impersonate-group").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect();
        if let Some(sa) = user.strip_prefix("system:serviceaccount:")
            && let Some((ns, _)) = sa.split_once(':')
        {
            groups.extend(["system:serviceaccounts".to_string(), format!("system:serviceaccounts:{ns}")]);
        }
        groups.push("system:authenticated".into());
        return Some(Caller::Account(podvisor_cluster::rbac::User { name: user.to_string(), groups }));
    }
    let api = state.cluster.api()?;
    let token = bearer(header)?;
    podvisor_cluster::serviceaccounts::authenticate(state.store(), api, token).map(Caller::Account)
}

/// The refusal, if any, of a request by `user` to `route`: RBAC decides requests about
/// objects; the discovery, OpenAPI, version and health paths are open to every authenticated
/// user (the API server's `system:discovery` and `system:public-info-viewer`).
fn refusal(
    state: &State,
    user: &podvisor_cluster::rbac::User,
    method: &Method,
    route: Option<&Route>,
    query: Option<&str>,
) -> Option<ApiError> {
    let Some(Route::Object { resource, namespace, name, sub }) = route else { return None };
    // Asking what one may do is open to every authenticated user (`system:basic-user`).
    if resource.is_review() {
        return None;
    }
    let watch = request::query(query).get("watch").is_some_and(|w| w == "true" || w == "1");
    let connect = matches!(sub.as_deref(), Some("exec" | "attach" | "portforward"));
    let verb = match *method {
        _ if connect => "create",
        Method::GET if watch => "watch",
        Method::GET | Method::HEAD if name.is_none() => "list",
        Method::GET | Method::HEAD => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => return None,
    };
    let info = resource.info();
    let req = podvisor_cluster::rbac::Request {
        verb,
        group: info.group,
        resource: info.plural,
        subresource: sub.as_deref(),
        namespace: namespace.as_deref(),
        name: name.as_deref(),
    };
    if podvisor_cluster::rbac::allows(state.store(), user, &req) {
        return None;
    }
    Some(ApiError::forbidden(podvisor_cluster::rbac::forbidden(user, &req)))
}

/// `serviceaccounts/token` (`kubectl create token`): a token for the account, for the
/// audiences asked (this API's by default), lasting `expirationSeconds` (an hour by default,
/// at least 10 minutes), bound to a pod when `boundObjectRef` names one.
fn token_request(state: &State, namespace: &str, name: &str, body: &serde_json::Value) -> Result<Reply, ApiError> {
    use podvisor_cluster::tokens::{Bound, Claims, MIN_EXPIRATION};
    use podvisor_objects::kinds::Resource as R;
    let api =
        state.cluster.api().ok_or_else(|| ApiError::bad_request("this server issues no service-account tokens"))?;
    let store = state.store();
    let sa = store.get(&podvisor_cluster::Key::new(R::ServiceAccounts, namespace, name)).ok_or_else(|| {
        ApiError::from(podvisor_cluster::StoreError::NotFound(podvisor_cluster::Key::new(
            R::ServiceAccounts,
            namespace,
            name,
        )))
    })?;
    let text =
        |v: &serde_json::Value, p: &str| v.pointer(p).and_then(serde_json::Value::as_str).unwrap_or("").to_string();
    let expiration = body.pointer("/spec/expirationSeconds").and_then(serde_json::Value::as_i64).unwrap_or(3600);
    if expiration < MIN_EXPIRATION {
        return Err(ApiError::bad_request(format!(
            "TokenRequest.authentication.k8s.io {name:?} is invalid: spec.expirationSeconds: Invalid value: {expiration}: may not specify a duration less than 10 minutes"
        )));
    }
    let audiences: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    let pod = match (text(body, "/spec/boundObjectRef/kind").as_str(), text(body, "/spec/boundObjectRef/name")) {
        ("Pod", pod) if !pod.is_empty() => {
            let obj = store.get(&podvisor_cluster::Key::new(R::Pods, namespace, &pod)).ok_or_else(|| {
                ApiError::from(podvisor_cluster::StoreError::NotFound(podvisor_cluster::Key::new(
                    R::Pods,
                    namespace,
                    &pod,
                )))
            })?;
            Some(Bound { name: pod, uid: text(&obj, "/metadata/uid") })
        }
        _ => None,
    };
    let now = jiff::Timestamp::now();
    let claims = Claims::new(
        namespace,
        Bound { name: name.to_string(), uid: text(&sa, "/metadata/uid") },
        pod,
        audiences.clone(),
        now.as_second(),
        expiration,
    );
    let expires = jiff::Timestamp::from_second(claims.exp).unwrap_or(jiff::Timestamp::MAX);
    let token = api.issuer.issue(&claims);
    let mut reply = body.clone();
    reply["apiVersion"] = serde_json::json!("authentication.k8s.io/v1");
    reply["kind"] = serde_json::json!("TokenRequest");
    reply["metadata"] = serde_json::json!({"name": name, "namespace": namespace,
        "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    reply["spec"]["audiences"] = serde_json::json!(claims.aud);
    reply["spec"]["expirationSeconds"] = serde_json::json!(expiration);
    reply["status"] =
        serde_json::json!({"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
    Ok(Reply::json(201, &reply))
}

/// A `SelfSubjectAccessReview`: whether the caller may do what `spec.resourceAttributes` (or
/// `nonResourceAttributes`) says, as the API server's authorizer answers it.
fn access_review(state: &State, caller: Option<&Caller>, body: &serde_json::Value) -> Result<Reply, ApiError> {
    let mut review = body.clone();
    let text = |p: &str| body.pointer(p).and_then(serde_json::Value::as_str).filter(|s| !s.is_empty());
    let (allowed, reason) = match caller {
        None => (false, "no user".to_string()),
        Some(Caller::Admin) => (true, "the node's administrator".to_string()),
        Some(Caller::Account(user)) => {
            if body.pointer("/spec/nonResourceAttributes").is_some() {
                // Discovery, OpenAPI, version and health are open to every authenticated user.
                let path = text("/spec/nonResourceAttributes/path").unwrap_or("");
                let open = ["/api", "/apis", "/openapi", "/version", "/healthz", "/livez", "/readyz"]
                    .iter()
                    .any(|p| path == *p || path.starts_with(&format!("{p}/")));
                let verb_ok = text("/spec/nonResourceAttributes/verb") == Some("get");
                (open && verb_ok, String::new())
            } else {
                let req = podvisor_cluster::rbac::Request {
                    verb: text("/spec/resourceAttributes/verb").unwrap_or(""),
                    group: text("/spec/resourceAttributes/group").unwrap_or(""),
                    resource: text("/spec/resourceAttributes/resource").unwrap_or(""),
                    subresource: text("/spec/resourceAttributes/subresource"),
                    namespace: text("/spec/resourceAttributes/namespace"),
                    name: text("/spec/resourceAttributes/name"),
                };
                let ok = podvisor_cluster::rbac::allows(state.store(), user, &req);
                (ok, if ok { "allowed by a RoleBinding or ClusterRoleBinding".into() } else { String::new() })
            }
        }
    };
    review["apiVersion"] = serde_json::json!("authorization.k8s.io/v1");
    review["kind"] = serde_json::json!("SelfSubjectAccessReview");
    review["status"] = serde_json::json!({"allowed": allowed});
    if !reason.is_empty() {
        review["status"]["reason"] = serde_json::json!(reason);
    }
    Ok(Reply::json(201, &review))
}

/// Whether `addr` may be served without an explicit opt-in.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves one request; with `verbose`, logs it as an access log does.
async fn handle(state: &Arc<State>, req: Request<Incoming>) -> Reply {
    if !state.verbose {
        return handle_request(state, req).await;
    }
    let started = std::time::Instant::now();
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let reply = handle_request(state, req).await;
    let status = reply.0.status().as_u16();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "podvisor::request", %method, %uri, status, ms, "{method} {uri} {status} {ms:.1} ms");
    reply
}

async fn handle_request(state: &Arc<State>, req: Request<Incoming>) -> Reply {
    // The health endpoints answer anyone, as the API server's do (system:public-info-viewer):
    // they say nothing but that the server is up.
    let public =
        req.method() == Method::GET && matches!(request::route(req.uri().path()), Some(request::Route::Health(..)));
    let caller = authenticate(state, req.headers());
    if !public && caller.is_none() {
        // The connection goes with the answer: a client without the token holds no place.
        let mut r = Reply::error(&ApiError::unauthorized());
        r.0.headers_mut().insert(header::CONNECTION, http::HeaderValue::from_static("close"));
        return r;
    }
    if let Some(Caller::Account(user)) = &caller {
        // Only the administrator may act as another user.
        let admin = authorized(req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes()), &state.token);
        if let Some(other) = req.headers().get("impersonate-user").and_then(|v| v.to_str().ok())
            && !admin
        {
            return Reply::error(&ApiError::forbidden(format!(
                "users {other:?} is forbidden: User {:?} cannot impersonate resource \"users\" in API group \"\" at the cluster scope",
                user.name
            )));
        }
        if let Some(e) =
            refusal(state, user, req.method(), request::route(req.uri().path()).as_ref(), req.uri().query())
        {
            return Reply::error(&e);
        }
    }
    // `pods/exec` upgrades the connection: it keeps the request whole.
    if let Some(Route::Object {
        resource: podvisor_objects::kinds::Resource::Pods,
        namespace: Some(ns),
        name: Some(n),
        sub: Some(sub),
    }) = request::route(req.uri().path())
        && matches!(sub.as_str(), "exec" | "attach" | "portforward")
    {
        let reply = match sub.as_str() {
            "exec" => exec::exec(state, req, &ns, &n),
            "attach" => exec::attach(state, req, &ns, &n),
            _ => portforward::port_forward(state, req, &ns, &n),
        };
        return reply.unwrap_or_else(|e| Reply::error(&e));
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = request::query(req.uri().query());
    let body = match read_body(req.into_body()).await {
        Ok(b) => b,
        Err(e) => return Reply::error(&e),
    };
    let head = Head {
        caller: caller.as_ref(),
        method: &method,
        path: &path,
        accept: &accept,
        content_type: &content_type,
        user_agent: &user_agent,
    };
    let large = body.len() > LARGE_BODY;
    let reply = match dispatch(state, &head, query, &body).await {
        Ok(r) => r,
        Err(e) => Reply::error(&e),
    };
    if large {
        // What parsing and patching a large body took goes back to the system.
        drop(body);
        tokio::task::spawn_blocking(memory::return_free_memory);
    }
    reply
}

/// What a request says beside its query and body.
struct Head<'a> {
    caller: Option<&'a Caller>,
    method: &'a Method,
    path: &'a str,
    accept: &'a str,
    content_type: &'a str,
    user_agent: &'a str,
}

async fn dispatch(
    state: &State,
    head: &Head<'_>,
    query: std::collections::HashMap<String, String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let Head { caller, method, path, accept, content_type, user_agent } = *head;
    let route = request::route(path).ok_or_else(ApiError::no_route)?;
    let get_only = |r: Reply| if method == Method::GET { Ok(r) } else { Err(ApiError::method_not_allowed()) };
    match route {
        Route::Version => get_only(Reply::json(200, &discovery::version())),
        Route::Discovery(core) if accept.contains("as=APIGroupDiscoveryList") => {
            let body = serde_json::to_vec(&discovery::aggregated(core)).unwrap_or_default();
            get_only(Reply::bytes(200, discovery::AGGREGATED, body))
        }
        Route::Discovery(true) => get_only(Reply::json(200, &discovery::api_versions(&state.address))),
        Route::Discovery(false) => get_only(Reply::json(200, &discovery::api_groups())),
        Route::ResourceList(g, v) => {
            get_only(Reply::json(200, &discovery::resource_list(&g, &v).ok_or_else(ApiError::no_route)?))
        }
        Route::OpenApiRoot => get_only(Reply::json(200, &discovery::openapi_root())),
        Route::OpenApi(p) => get_only(Reply::bytes(
            200,
            "application/json",
            discovery::openapi_doc(&p).ok_or_else(ApiError::no_route)?.to_vec(),
        )),
        Route::OpenApiV2 => get_only(Reply::bytes(200, discovery::OPENAPI_V2_TYPE, discovery::openapi_v2())),
        Route::Unserved => Err(ApiError::no_route()),
        Route::Health(endpoint, check) => get_only(health(&endpoint, check.as_deref(), query.contains_key("verbose"))?),
        Route::Object { resource, namespace, name, sub } => {
            if sub.as_deref() == Some("log") {
                return match (method, &namespace, &name) {
                    (&Method::GET, Some(ns), Some(n)) => logs::logs(state, ns, n, &query),
                    _ => Err(ApiError::method_not_allowed()),
                };
            }
            use podvisor_objects::kinds::Resource as R;
            let served = match sub.as_deref() {
                None | Some("status") => true,
                Some("ephemeralcontainers") => resource == R::Pods,
                Some("scale") => matches!(resource, R::Deployments | R::ReplicaSets | R::StatefulSets),
                Some("token") => resource == R::ServiceAccounts,
                Some(_) => false,
            };
            if let Some(s) = sub.as_deref().filter(|_| !served) {
                return Err(ApiError::unserved_subresource(resource.info().plural, name.as_deref().unwrap_or(""), s));
            }
            if resource.info().namespaced && namespace.is_none() && (name.is_some() || *method != Method::GET) {
                return Err(ApiError::no_route());
            }
            let table = request::wants_table(accept);
            if sub.as_deref() == Some("token") {
                return match (method, &namespace, &name) {
                    (&Method::POST, Some(ns), Some(n)) => token_request(state, ns, n, &written(content_type, body)?),
                    _ => Err(ApiError::method_not_allowed()),
                };
            }
            if resource.is_review() {
                // "May I?": answered at once for the caller, never stored.
                return match method {
                    &Method::POST if name.is_none() => access_review(state, caller, &written(content_type, body)?),
                    _ => Err(ApiError::method_not_allowed()),
                };
            }
            if resource.is_read_only() {
                // The metrics API: measured at each request, only read.
                return match method {
                    &Method::GET if sub.is_none() => {
                        api::metrics(state, resource, namespace.as_deref(), name.as_deref(), table).await
                    }
                    _ => Err(ApiError::method_not_allowed()),
                };
            }
            let user_agent = user_agent.to_string();
            let call = api::Call { state, resource, namespace, name: name.clone(), sub, query, table, user_agent };
            match (method.clone(), name.is_some()) {
                (Method::GET, _) => call.get().await,
                (Method::POST, false) => call.create(written(content_type, body)?).await,
                (Method::PUT, true) => call.update(written(content_type, body)?).await,
                (Method::PATCH, true) => call.patch(content_type, body).await,
                (Method::DELETE, _) => call.delete(body).await,
                _ => Err(ApiError::method_not_allowed()),
            }
        }
    }
}

/// The object a create or update sends: JSON, or protobuf from typed clients (`kubectl create
/// configmap`, `kubectl run`, …), read into the JSON the Go types would print.
fn written(content_type: &str, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    match content_type.split(';').next().unwrap_or("").trim() {
        "" | "application/json" | "*/*" => {
            serde_json::from_slice(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        "application/vnd.kubernetes.protobuf" => {
            podvisor_apiserver::protobuf::decode(body).map_err(|e| ApiError::bad_request(e.to_string()))
        }
        _ => Err(ApiError::unsupported_body(content_type)),
    }
}

/// The checks `/livez` and `/readyz` report, as the API server names its own: the server
/// answers, and the store is open.
const HEALTH_CHECKS: [&str; 3] = ["ping", "log", "etcd"];

/// `/healthz`, `/livez`, `/readyz` as the API server answers them: `ok`, or with `?verbose`
/// each check on its line and `<endpoint> check passed`; a named check answers `ok` alone, an
/// unknown one 404. A server answering at all passes every check: its store is open.
fn health(endpoint: &str, check: Option<&str>, verbose: bool) -> Result<Reply, ApiError> {
    let text = match check {
        Some(c) if HEALTH_CHECKS.contains(&c) => "ok".to_string(),
        Some(_) => return Err(ApiError::no_route()),
        None if verbose => {
            let mut t: String = HEALTH_CHECKS.iter().map(|c| format!("[+]{c} ok\n")).collect();
            t.push_str(&format!("{endpoint} check passed\n"));
            t
        }
        None => "ok".to_string(),
    };
    Ok(Reply::bytes(200, "text/plain; charset=utf-8", text.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::authorized;

    #[test]
    fn the_token_must_be_the_one_given_exactly() {
        let ok = |h: &str| authorized(Some(h.as_bytes()), "abc123");
        assert!(ok("Bearer abc123"));
        assert!(ok("bearer abc123"), "the scheme is case-insensitive, as in the API server");
        assert!(ok(" Bearer abc123\t"), "surrounding space is not part of a header's value");
        for wrong in [
            "Bearer abc12",
            "Bearer abc1234",
            "Bearer ABC123",
            "Bearer  abc123",
            "Bearer abc123 abc123",
            "Bearer",
            "Bearer ",
            "Basic abc123",
            "abc123",
            "",
        ] {
            assert!(!ok(wrong), "{wrong:?}");
        }
        assert!(!authorized(None, "abc123"));
        assert!(!authorized(Some(b"Bearer "), ""), "an empty token never matches");
        assert!(!authorized(Some(&[0x42, 0xff, 0xfe]), "abc123"));
    }
}
