//! Validation of pod specs and of the objects that carry them, as the API server validates
//! them (R5–R10 and the usual container, volume, port, probe and hook rules). Every error of
//! an object is returned, not only the first.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, PodSpec, Probe, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::field::{FieldError, Path};

const DNS1123_LABEL_FMT: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
     and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation \
     is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1123_SUBDOMAIN_FMT: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric \
     characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used \
     for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const NON_NEGATIVE: &str = "must be greater than or equal to 0";

/// Whether `s` is a DNS-1123 label (at most 63 characters).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain (at most 253 characters).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            let b = part.as_bytes();
            !b.is_empty()
                && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

/// Checks that `value` is a DNS-1123 label, with the API server's two messages.
pub fn label(path: &Path, value: &str, errs: &mut Vec<FieldError>) {
    if value.len() > 63 {
        errs.push(path.invalid(value, "must be no more than 63 characters"));
    }
    if !is_dns1123_label(value) && value.len() <= 63 {
        errs.push(path.invalid(value, DNS1123_LABEL_FMT));
    }
}

/// The API server's words for a label key's name part and a label value.
const NAME_PART_FMT: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
     alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
     '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_FMT: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
     regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
/// The API server's bound on all of an object's annotations together.
pub const MAX_ANNOTATIONS: usize = 256 * 1024;

/// Whether `s` matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]` whole.
fn is_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// The messages of the API server's label key check (`IsQualifiedName`, 1.35 wording).
pub fn label_key_errors(key: &str) -> Vec<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let (prefix, name) = match parts.as_slice() {
        [name] => (None, *name),
        [prefix, name] => (Some(*prefix), *name),
        _ => {
            return vec![format!(
                "a valid label key {NAME_PART_FMT} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    let mut out = Vec::new();
    match prefix {
        Some("") => out.push("prefix part must be non-empty".to_string()),
        Some(p) if p.len() > 253 => out.push("prefix part must be no more than 253 bytes".to_string()),
        Some(p) if !is_dns1123_subdomain(p) => out.push(format!("prefix part {DNS1123_SUBDOMAIN_FMT}")),
        _ => {}
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        out.push("name part must be no more than 63 bytes".to_string());
    }
    if !is_qualified_part(name) {
        out.push(format!("name part {NAME_PART_FMT}"));
    }
    out
}

/// The messages of the API server's label value check.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    if value.len() > 63 {
        out.push("must be no more than 63 bytes".to_string());
    }
    if !value.is_empty() && !is_qualified_part(value) {
        out.push(LABEL_VALUE_FMT.to_string());
    }
    out
}

/// Labels at `path` (`metadata.labels`; the errors name the map, not the key, as the API
/// server's do).
pub fn validate_labels(labels: &std::collections::BTreeMap<String, String>, path: &Path, errs: &mut Vec<FieldError>) {
    for (k, v) in labels {
        for m in label_key_errors(k) {
            errs.push(path.invalid(k, &m));
        }
        for m in label_value_errors(v) {
            errs.push(path.invalid(v, &m));
        }
    }
}

/// Annotations at `path`: keys as label keys (lower-cased first), and all of them together at
/// most [`MAX_ANNOTATIONS`] bytes.
pub fn validate_annotations(
    annotations: &std::collections::BTreeMap<String, String>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) {
    let mut total = 0usize;
    for (k, v) in annotations {
        for m in label_key_errors(&k.to_lowercase()) {
            errs.push(path.invalid(k, &m));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > MAX_ANNOTATIONS {
        errs.push(path.too_long(MAX_ANNOTATIONS));
    }
}

/// Validates `metadata.name` of an object named as a DNS-1123 subdomain, and its
/// `metadata.namespace`, which must be a DNS-1123 label (it names files and cgroups here, as
/// in the kubelet, so a `..` never reaches a path).
pub fn validate_metadata(meta: &ObjectMeta, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(ns) = meta.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        label(&path.child("namespace"), ns, &mut errs);
    }
    if let Some(l) = &meta.labels {
        validate_labels(l, &path.child("labels"), &mut errs);
    }
    if let Some(a) = &meta.annotations {
        validate_annotations(a, &path.child("annotations"), &mut errs);
    }
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => {
            errs.push(path.child("name").required("name or generateName is required"))
        }
        Some(name) if !name.is_empty() && !is_dns1123_subdomain(name) => {
            errs.push(path.child("name").invalid(name, DNS1123_SUBDOMAIN_FMT))
        }
        _ => {}
    }
    errs
}

/// IANA service name rules for named ports.
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if name.len() > 15 {
        out.push("must be no more than 15 characters");
    }
    if !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-') {
        out.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        out.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        out.push("must not begin or end with a hyphen");
    }
    out
}

pub(crate) fn port_number(path: &Path, port: i32, errs: &mut Vec<FieldError>) {
    if !(1..=65535).contains(&port) {
        errs.push(path.invalid_num(port.into(), "must be between 1 and 65535, inclusive"));
    }
}

pub(crate) fn int_or_name_port(path: &Path, port: &IntOrString, errs: &mut Vec<FieldError>) {
    match port {
        IntOrString::Int(p) => port_number(path, *p, errs),
        IntOrString::String(name) => {
            for msg in port_name_errors(name) {
                errs.push(path.invalid(name, msg));
            }
        }
    }
}

/// Validates a probe or hook handler: exactly one action (R7).
fn handler_count(path: &Path, set: &[(&str, bool)], errs: &mut Vec<FieldError>) {
    let present: Vec<&str> = set.iter().filter(|(_, p)| *p).map(|(n, _)| *n).collect();
    match present.as_slice() {
        [] => errs.push(path.required("must specify a handler type")),
        [_] => {}
        [_, rest @ ..] => {
            for name in rest {
                errs.push(path.child(name).forbidden("may not specify more than 1 handler type"));
            }
        }
    }
}

fn validate_probe(p: &Probe, path: &Path, errs: &mut Vec<FieldError>) {
    handler_count(
        path,
        &[
            ("exec", p.exec.is_some()),
            ("httpGet", p.http_get.is_some()),
            ("tcpSocket", p.tcp_socket.is_some()),
            ("grpc", p.grpc.is_some()),
        ],
        errs,
    );
    for (name, v) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if let Some(v) = v.filter(|v| *v < 0) {
            errs.push(path.child(name).invalid_num(v.into(), NON_NEGATIVE));
        }
    }
    if p.exec.as_ref().is_some_and(|e| e.command.as_ref().is_none_or(Vec::is_empty)) {
        errs.push(path.child("exec").child("command").required(""));
    }
    if let Some(g) = p.termination_grace_period_seconds.filter(|g| *g <= 0) {
        errs.push(path.child("terminationGracePeriodSeconds").invalid_num(g, "must be greater than 0"));
    }
    if let Some(h) = &p.http_get {
        int_or_name_port(&path.child("httpGet").child("port"), &h.port, errs);
        if let Some(s) = h.scheme.as_deref().filter(|s| !matches!(*s, "HTTP" | "HTTPS")) {
            errs.push(path.child("httpGet").child("scheme").not_supported(s, &["HTTP", "HTTPS"]));
        }
    }
    if let Some(t) = &p.tcp_socket {
        int_or_name_port(&path.child("tcpSocket").child("port"), &t.port, errs);
    }
    if let Some(g) = &p.grpc {
        port_number(&path.child("grpc").child("port"), g.port, errs);
    }
}

fn validate_handler(h: &LifecycleHandler, path: &Path, grace: i64, errs: &mut Vec<FieldError>) {
    handler_count(
        path,
        &[
            ("exec", h.exec.is_some()),
            ("httpGet", h.http_get.is_some()),
            ("tcpSocket", h.tcp_socket.is_some()),
            ("sleep", h.sleep.is_some()),
        ],
        errs,
    );
    if let Some(s) = &h.sleep
        && (s.seconds < 0 || s.seconds > grace)
    {
        errs.push(path.child("sleep").invalid_num(
            s.seconds,
            &format!("must be non-negative and less than terminationGracePeriodSeconds ({grace})"),
        ));
    }
    if let Some(hg) = &h.http_get {
        int_or_name_port(&path.child("httpGet").child("port"), &hg.port, errs);
    }
}

/// Checks common to every container (name, image, ports, mounts, policies).
fn validate_container_common(c: &Container, path: &Path, volumes: &HashSet<&str>, errs: &mut Vec<FieldError>) {
    if c.name.is_empty() {
        errs.push(path.child("name").required(""));
    } else {
        label(&path.child("name"), &c.name, errs);
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        errs.push(path.child("image").required(""));
    }
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !matches!(*p, "Always" | "IfNotPresent" | "Never")) {
        errs.push(path.child("imagePullPolicy").not_supported(p, &["Always", "IfNotPresent", "Never"]));
    }
    if let Some(p) = c.termination_message_policy.as_deref().filter(|p| !matches!(*p, "File" | "FallbackToLogsOnError"))
    {
        errs.push(path.child("terminationMessagePolicy").not_supported(p, &["File", "FallbackToLogsOnError"]));
    }
    let mut port_names = HashSet::new();
    for (i, port) in c.ports.iter().flatten().enumerate() {
        let pp = path.child("ports").index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            for msg in port_name_errors(name) {
                errs.push(pp.child("name").invalid(name, msg));
            }
            if !port_names.insert(name.to_string()) {
                errs.push(pp.child("name").duplicate(name));
            }
        }
        if port.container_port == 0 {
            errs.push(pp.child("containerPort").required(""));
        } else {
            port_number(&pp.child("containerPort"), port.container_port, errs);
        }
        if let Some(hp) = port.host_port.filter(|p| *p != 0) {
            port_number(&pp.child("hostPort"), hp, errs);
        }
        if let Some(proto) = port.protocol.as_deref().filter(|p| !matches!(*p, "TCP" | "UDP" | "SCTP")) {
            errs.push(pp.child("protocol").not_supported(proto, &["SCTP", "TCP", "UDP"]));
        }
    }
    let mut mount_paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = path.child("volumeMounts").index(i);
        if m.name.is_empty() {
            errs.push(mp.child("name").required(""));
        }
        if !volumes.contains(m.name.as_str()) {
            errs.push(mp.child("name").not_found(&m.name));
        }
        if m.mount_path.is_empty() {
            errs.push(mp.child("mountPath").required(""));
        } else if !mount_paths.insert(m.mount_path.clone()) {
            errs.push(mp.child("mountPath").invalid(&m.mount_path, "must be unique"));
        }
        let (sub, expr) = (m.sub_path.as_deref().unwrap_or(""), m.sub_path_expr.as_deref().unwrap_or(""));
        if !sub.is_empty() && !expr.is_empty() {
            errs.push(mp.child("subPathExpr").invalid(expr, "subPathExpr and subPath are mutually exclusive"));
        }
        local_descending_path(&mp.child("subPath"), sub, errs);
        local_descending_path(&mp.child("subPathExpr"), expr, errs);
    }
    for (i, e) in c.env.iter().flatten().enumerate() {
        let np = path.child("env").index(i).child("name");
        if e.name.is_empty() {
            errs.push(np.required(""));
        } else if !e.name.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=') {
            errs.push(np.invalid(
                &e.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    resources(c, &path.child("resources"), errs);
    if let Some(sc) = &c.security_context {
        let sp = path.child("securityContext");
        id_range(&sp.child("runAsUser"), sc.run_as_user, errs);
        id_range(&sp.child("runAsGroup"), sc.run_as_group, errs);
        if let Some(p) = &sc.seccomp_profile {
            seccomp_profile(&sp.child("seccompProfile"), p, errs);
        }
        if let Some(m) = sc.proc_mount.as_deref().filter(|m| !matches!(*m, "Default" | "Unmasked")) {
            errs.push(sp.child("procMount").not_supported(m, &["Default", "Unmasked"]));
        }
    }
}

/// A user or group ID: 0 to 2^31 - 1.
fn id_range(path: &Path, id: Option<i64>, errs: &mut Vec<FieldError>) {
    if let Some(v) = id.filter(|v| !(0..=i64::from(i32::MAX)).contains(v)) {
        errs.push(path.invalid_num(v, "must be between 0 and 2147483647, inclusive"));
    }
}

/// The resources a container may name without a `/`.
fn is_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// A container's `resources`: known names, no negative quantity, no request above its limit.
fn resources(c: &Container, path: &Path, errs: &mut Vec<FieldError>) {
    let Some(r) = &c.resources else { return };
    let mut parsed: [std::collections::BTreeMap<&str, (i128, &str)>; 2] = Default::default();
    for (slot, field, map) in [(0, "limits", &r.limits), (1, "requests", &r.requests)] {
        for (name, q) in map.iter().flatten() {
            let at = path.child(field).key(name);
            if !name.contains('/') && !is_container_resource(name) {
                let standard = matches!(name.as_str(), "pods" | "services" | "storage" | "nvidia.com/gpu");
                if !standard {
                    errs.push(at.invalid(name, "must be a standard resource type or fully qualified"));
                }
                errs.push(at.invalid(name, "must be a standard resource for containers"));
                continue;
            }
            match crate::resources::parse_milli(&q.0) {
                Ok(v) if v < 0 => errs.push(at.invalid(&q.0, NON_NEGATIVE)),
                Ok(v) => {
                    parsed[slot].insert(name.as_str(), (v, q.0.as_str()));
                }
                Err(e) => errs.push(at.invalid(&q.0, &e.to_string())),
            }
        }
    }
    let [limits, requests] = &parsed;
    for (name, (req, text)) in requests {
        if let Some((limit, limit_text)) = limits.get(name)
            && req > limit
            && matches!(*name, "cpu" | "memory" | "ephemeral-storage")
        {
            errs.push(
                path.child("requests")
                    .invalid(text, &format!("must be less than or equal to {name} limit of {limit_text}")),
            );
        }
    }
}

/// A path below a volume or directory, as the API server's `validateLocalDescendingPath`:
/// relative, and no `..` component.
fn local_descending_path(path: &Path, value: &str, errs: &mut Vec<FieldError>) {
    if value.starts_with('/') {
        errs.push(path.invalid(value, "must be a relative path"));
    }
    if value.split('/').any(|c| c == "..") {
        errs.push(path.invalid(value, "must not contain '..'"));
    }
}

/// A file a volume writes, as the API server's `validateLocalNonReservedPath`.
fn local_non_reserved_path(path: &Path, value: &str, errs: &mut Vec<FieldError>) {
    local_descending_path(path, value, errs);
    if value.starts_with("..") {
        errs.push(path.invalid(value, "must not start with '..'"));
    }
}

/// `seccompProfile`: a known type; `localhostProfile` with `Localhost` only, and below the
/// node's profile directory.
fn seccomp_profile(path: &Path, p: &k8s_openapi::api::core::v1::SeccompProfile, errs: &mut Vec<FieldError>) {
    let local = p.localhost_profile.as_deref();
    match p.type_.as_str() {
        "Localhost" => match local {
            None | Some("") => {
                errs.push(path.child("localhostProfile").required("must be set when seccomp type is Localhost"))
            }
            Some(l) => local_descending_path(&path.child("localhostProfile"), l, errs),
        },
        "RuntimeDefault" | "Unconfined" => {
            if local.is_some() {
                errs.push(
                    path.child("localhostProfile")
                        .invalid(local.unwrap_or_default(), "can only be set when seccomp type is Localhost"),
                );
            }
        }
        "" => errs.push(path.child("type").required("")),
        other => errs.push(path.child("type").not_supported(other, &["Localhost", "RuntimeDefault", "Unconfined"])),
    }
}

fn validate_volumes(vols: &[Volume], path: &Path, errs: &mut Vec<FieldError>) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, v) in vols.iter().enumerate() {
        let vp = path.index(i);
        if v.name.is_empty() {
            errs.push(vp.child("name").required(""));
        } else {
            label(&vp.child("name"), &v.name, errs);
            if !names.insert(v.name.clone()) {
                errs.push(vp.child("name").duplicate(&v.name));
            }
        }
        let sources = [
            ("emptyDir", v.empty_dir.is_some()),
            ("hostPath", v.host_path.is_some()),
            ("configMap", v.config_map.is_some()),
            ("secret", v.secret.is_some()),
            ("downwardAPI", v.downward_api.is_some()),
            ("projected", v.projected.is_some()),
            ("persistentVolumeClaim", v.persistent_volume_claim.is_some()),
            ("csi", v.csi.is_some()),
            ("ephemeral", v.ephemeral.is_some()),
            ("image", v.image.is_some()),
            ("nfs", v.nfs.is_some()),
        ];
        if let Some(h) = &v.host_path {
            let hp = vp.child("hostPath");
            if h.path.is_empty() {
                errs.push(hp.child("path").required(""));
            } else if h.path.split('/').any(|c| c == "..") {
                errs.push(hp.child("path").invalid(&h.path, "must not contain '..'"));
            }
            const TYPES: [&str; 8] =
                ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate", "Socket"];
            if let Some(t) = h.type_.as_deref().filter(|t| !TYPES.contains(t)) {
                errs.push(hp.child("type").not_supported(t, &TYPES));
            }
        }
        let items = v
            .config_map
            .iter()
            .flat_map(|c| c.items.iter().flatten().map(|i| ("configMap", i)))
            .chain(v.secret.iter().flat_map(|s| s.items.iter().flatten().map(|i| ("secret", i))));
        for (j, (kind, item)) in items.enumerate() {
            let ip = vp.child(kind).child("items").index(j);
            if item.key.is_empty() {
                errs.push(ip.child("key").required(""));
            }
            if item.path.is_empty() {
                errs.push(ip.child("path").required(""));
            }
            local_non_reserved_path(&ip.child("path"), &item.path, errs);
        }
        if let Some(q) = v.empty_dir.as_ref().and_then(|e| e.size_limit.as_ref()) {
            match crate::resources::parse_milli(&q.0) {
                Err(e) => errs.push(vp.child("emptyDir").child("sizeLimit").invalid(&q.0, &e.to_string())),
                Ok(n) if n < 0 => errs.push(
                    vp.child("emptyDir")
                        .child("sizeLimit")
                        .forbidden("SizeLimit field must be a valid resource quantity"),
                ),
                Ok(_) => {}
            }
        }
        let present: Vec<&str> = sources.iter().filter(|(_, p)| *p).map(|(n, _)| *n).collect();
        match present.as_slice() {
            [] => errs.push(vp.required("must specify a volume type")),
            [_] => {}
            [_, rest @ ..] => {
                for name in rest {
                    errs.push(vp.child(name).forbidden("may not specify more than 1 volume type"));
                }
            }
        }
    }
    names
}

/// Host ports must be unique per protocol and host IP among the containers checked together
/// (R9): all regular containers together, each init container on its own.
fn host_ports<'a>(containers: impl Iterator<Item = (Path, &'a Container)>, errs: &mut Vec<FieldError>) {
    let mut seen = HashSet::new();
    for (path, c) in containers {
        for (i, port) in c.ports.iter().flatten().enumerate() {
            let Some(hp) = port.host_port.filter(|p| *p != 0) else { continue };
            let key =
                format!("{}/{}/{hp}", port.protocol.as_deref().unwrap_or("TCP"), port.host_ip.as_deref().unwrap_or(""));
            if !seen.insert(key.clone()) {
                errs.push(path.child("ports").index(i).child("hostPort").duplicate(&key));
            }
        }
    }
}

/// Validates a pod spec at `path` (`spec`, or `spec.template.spec` inside a workload).
pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volume_names = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), &path.child("volumes"), &mut errs);
    let volumes: HashSet<&str> = volume_names.iter().map(String::as_str).collect();
    let grace = spec.termination_grace_period_seconds.unwrap_or(30);
    if let Some(p) = spec.restart_policy.as_deref().filter(|p| !matches!(*p, "Always" | "OnFailure" | "Never")) {
        errs.push(path.child("restartPolicy").not_supported(p, &["Always", "OnFailure", "Never"]));
    }
    if let Some(g) = spec.termination_grace_period_seconds.filter(|g| *g < 0) {
        errs.push(path.child("terminationGracePeriodSeconds").invalid_num(g, NON_NEGATIVE));
    }
    if let Some(d) = spec.active_deadline_seconds.filter(|d| *d < 1 || *d > i64::from(i32::MAX)) {
        errs.push(path.child("activeDeadlineSeconds").invalid_num(d, "must be between 1 and 2147483647, inclusive"));
    }
    if spec.containers.is_empty() {
        errs.push(path.child("containers").required(""));
    }
    // An ephemeral container's name is unique among all the pod's containers.
    let names: HashSet<&str> =
        spec.init_containers.iter().flatten().chain(&spec.containers).map(|c| c.name.as_str()).collect();
    let mut ephemeral = HashSet::new();
    for (i, e) in spec.ephemeral_containers.iter().flatten().enumerate() {
        if names.contains(e.name.as_str()) || !ephemeral.insert(e.name.as_str()) {
            errs.push(path.child("ephemeralContainers").index(i).child("name").duplicate(&e.name));
        }
    }
    if let Some(sc) = &spec.security_context {
        let sp = path.child("securityContext");
        id_range(&sp.child("runAsUser"), sc.run_as_user, &mut errs);
        id_range(&sp.child("runAsGroup"), sc.run_as_group, &mut errs);
        id_range(&sp.child("fsGroup"), sc.fs_group, &mut errs);
        for (i, g) in sc.supplemental_groups.iter().flatten().enumerate() {
            id_range(&sp.child("supplementalGroups").index(i), Some(*g), &mut errs);
        }
        if let Some(p) = &sc.seccomp_profile {
            seccomp_profile(&sp.child("seccompProfile"), p, &mut errs);
        }
    }
    const DNS: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
    match spec.dns_policy.as_deref() {
        Some("") => errs.push(path.child("dnsPolicy").required("")),
        Some("None") if spec.dns_config.is_none() => {
            errs.push(path.child("dnsConfig").required("must provide `dnsConfig` when `dnsPolicy` is None"))
        }
        Some(p) if !DNS.contains(&p) => errs.push(path.child("dnsPolicy").not_supported(p, &DNS)),
        _ => {}
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            label(&path.child(field), v, &mut errs);
        }
    }
    for (i, a) in spec.host_aliases.iter().flatten().enumerate() {
        let ap = path.child("hostAliases").index(i);
        if a.ip.is_empty() {
            errs.push(ap.child("ip").required(""));
        } else if a.ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(ap.child("ip").invalid(&a.ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        }
        for (j, h) in a.hostnames.iter().flatten().enumerate() {
            if !is_dns1123_subdomain(h) {
                errs.push(ap.child("hostnames").index(j).invalid(h, DNS1123_SUBDOMAIN_FMT));
            }
        }
    }
    if let Some(selector) = &spec.node_selector {
        validate_labels(selector, &path.child("nodeSelector"), &mut errs);
    }
    if let Some(node) = spec.affinity.as_ref().and_then(|a| a.node_affinity.as_ref()) {
        node_affinity(node, &path.child("affinity").child("nodeAffinity"), &mut errs);
    }
    let mut names: HashSet<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let cp = path.child("initContainers").index(i);
        validate_container_common(c, &cp, &volumes, &mut errs);
        if !c.name.is_empty() && !names.insert(c.name.as_str()) {
            errs.push(cp.child("name").duplicate(&c.name));
        }
        host_ports(std::iter::once((cp.clone(), c)), &mut errs);
        match c.restart_policy.as_deref() {
            None => {
                // R10: in-place resize is for sidecars only.
                if let Some(policies) = c.resize_policy.as_ref().filter(|p| !p.is_empty()) {
                    let shown: Vec<String> = policies
                        .iter()
                        .map(|p| {
                            format!(
                                "{{\"resourceName\":{:?},\"restartPolicy\":{:?}}}",
                                p.resource_name, p.restart_policy
                            )
                        })
                        .collect();
                    errs.push(FieldError {
                        field: cp.child("resizePolicy").as_str().to_string(),
                        kind: crate::field::ErrorType::Invalid(format!("[{}]", shown.join(","))),
                        detail: "must not be set for init containers".into(),
                    });
                }
                // R8: only sidecars may have lifecycle hooks and probes.
                for (field, set) in [
                    ("lifecycle", c.lifecycle.is_some()),
                    ("livenessProbe", c.liveness_probe.is_some()),
                    ("readinessProbe", c.readiness_probe.is_some()),
                    ("startupProbe", c.startup_probe.is_some()),
                ] {
                    if set {
                        errs.push(
                            cp.child(field)
                                .forbidden("may not be set for init containers without restartPolicy=Always"),
                        );
                    }
                }
            }
            Some("Always") => validate_probes_and_hooks(c, &cp, grace, &mut errs),
            // R5: any other value is unsupported.
            Some(other) => errs.push(cp.child("restartPolicy").not_supported(other, &["Always"])),
        }
    }
    host_ports(spec.containers.iter().enumerate().map(|(i, c)| (path.child("containers").index(i), c)), &mut errs);
    let mut seen = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let cp = path.child("containers").index(i);
        validate_container_common(c, &cp, &volumes, &mut errs);
        if !c.name.is_empty() && !seen.insert(c.name.as_str()) {
            errs.push(cp.child("name").duplicate(&c.name));
        }
        if c.restart_policy.is_some() {
            // R6.
            errs.push(cp.child("restartPolicy").forbidden("may not be set for non-init containers"));
        }
        validate_probes_and_hooks(c, &cp, grace, &mut errs);
    }
    errs
}

/// A pod's node affinity: the required terms (at least one) and the preferred ones (weights
/// 1–100), each term's expressions on labels and fields on `metadata.name`.
fn node_affinity(a: &k8s_openapi::api::core::v1::NodeAffinity, path: &Path, errs: &mut Vec<FieldError>) {
    if let Some(required) = &a.required_during_scheduling_ignored_during_execution {
        let tp = path.child("requiredDuringSchedulingIgnoredDuringExecution").child("nodeSelectorTerms");
        if required.node_selector_terms.is_empty() {
            errs.push(tp.required("must have at least one node selector term"));
        }
        for (i, term) in required.node_selector_terms.iter().enumerate() {
            node_selector_term(term, &tp.index(i), errs);
        }
    }
    let pp = path.child("preferredDuringSchedulingIgnoredDuringExecution");
    for (i, term) in a.preferred_during_scheduling_ignored_during_execution.iter().flatten().enumerate() {
        if !(1..=100).contains(&term.weight) {
            errs.push(pp.index(i).child("weight").invalid_num(term.weight.into(), "must be in the range 1-100"));
        }
        node_selector_term(&term.preference, &pp.index(i).child("preference"), errs);
    }
}

/// One node selector term: label expressions, and fields (only `metadata.name`, one value).
fn node_selector_term(term: &k8s_openapi::api::core::v1::NodeSelectorTerm, path: &Path, errs: &mut Vec<FieldError>) {
    for (i, r) in term.match_expressions.iter().flatten().enumerate() {
        let rp = path.child("matchExpressions").index(i);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errs.push(rp.child("values").required("must be specified when `operator` is 'In' or 'NotIn'"))
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(
                rp.child("values").forbidden("may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
            ),
            "Gt" | "Lt" if values.len() != 1 => {
                errs.push(rp.child("values").required("must be specified single value when `operator` is 'Lt' or 'Gt'"))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
            op => errs.push(rp.child("operator").invalid(op, "not a valid selector operator")),
        }
        for m in label_key_errors(&r.key) {
            errs.push(rp.child("key").invalid(&r.key, &m));
        }
    }
    for (i, r) in term.match_fields.iter().flatten().enumerate() {
        let rp = path.child("matchFields").index(i);
        let values = r.values.as_deref().unwrap_or_default();
        match r.operator.as_str() {
            "In" | "NotIn" if values.len() != 1 => errs.push(
                rp.child("values")
                    .required("must be only one value when `operator` is 'In' or 'NotIn' for node field selector"),
            ),
            "In" | "NotIn" => {}
            op => errs.push(rp.child("operator").invalid(op, "not a valid selector operator")),
        }
        if r.key != "metadata.name" {
            errs.push(rp.child("key").invalid(&r.key, "not a valid field selector key"));
        } else {
            for (j, v) in values.iter().enumerate() {
                if !is_dns1123_subdomain(v) {
                    errs.push(rp.child("values").index(j).invalid(v, DNS1123_SUBDOMAIN_FMT));
                }
            }
        }
    }
}

/// Probe and hook rules shared by sidecars and regular containers (R7).
fn validate_probes_and_hooks(c: &Container, path: &Path, grace: i64, errs: &mut Vec<FieldError>) {
    if let Some(p) = &c.liveness_probe {
        let pp = path.child("livenessProbe");
        validate_probe(p, &pp, errs);
        if let Some(s) = p.success_threshold.filter(|s| *s != 1) {
            errs.push(pp.child("successThreshold").invalid_num(s.into(), "must be 1"));
        }
    }
    if let Some(p) = &c.readiness_probe {
        let pp = path.child("readinessProbe");
        validate_probe(p, &pp, errs);
        if let Some(g) = p.termination_grace_period_seconds {
            errs.push(pp.child("terminationGracePeriodSeconds").invalid_num(g, "must not be set for readinessProbes"));
        }
    }
    if let Some(p) = &c.startup_probe {
        let pp = path.child("startupProbe");
        validate_probe(p, &pp, errs);
        if let Some(s) = p.success_threshold.filter(|s| *s != 1) {
            errs.push(pp.child("successThreshold").invalid_num(s.into(), "must be 1"));
        }
    }
    if let Some(l) = &c.lifecycle {
        if let Some(h) = &l.post_start {
            validate_handler(h, &path.child("lifecycle").child("postStart"), grace, errs);
        }
        if let Some(h) = &l.pre_stop {
            validate_handler(h, &path.child("lifecycle").child("preStop"), grace, errs);
        }
    }
}
