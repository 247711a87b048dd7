//! The OCI runtime configuration (`config.json`) of a container: its process as Kubernetes
//! defines it against the image, the pod's shared namespaces, mounts, and cgroup limits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;
use oci_spec::runtime::{
    LinuxBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder, Spec,
};

use crate::image::ImageConfig;

/// Why a container's configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Neither the container nor the image says what to run.
    #[error("container {0:?}: no command: the pod gives no command and the image no ENTRYPOINT or CMD")]
    NoCommand(String),
    /// A field podvisor does not implement yet.
    #[error("container {container:?}: {field} is not supported yet")]
    Unsupported {
        /// The container.
        container: String,
        /// The field.
        field: String,
    },
    /// A resource quantity is malformed.
    #[error("container {container:?}: resources.limits.{resource}: {quantity:?} is not a quantity")]
    Quantity {
        /// The container.
        container: String,
        /// The resource.
        resource: String,
        /// The value.
        quantity: String,
    },
    /// The OCI types refused a value.
    #[error("container {0:?}: {1}")]
    Oci(String, String),
}

/// What containers of one pod share.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    /// The network namespace to join.
    pub netns: Option<PathBuf>,
    /// The UTS namespace to join (its hostname is the pod name).
    pub uts: Option<PathBuf>,
    /// The IPC namespace to join.
    pub ipc: Option<PathBuf>,
    /// The pod's cgroup path; each container gets a child.
    pub cgroup_parent: String,
    /// Files bind-mounted at `/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`.
    pub etc_files: Vec<(String, PathBuf)>,
    /// Host directories of the pod's volumes, by volume name.
    pub volumes: HashMap<String, PathBuf>,
}

/// The argv Kubernetes runs: `command` replaces ENTRYPOINT and `args` replaces CMD; with a
/// `command` but no `args`, the image's CMD is not used.
pub fn argv(c: &Container, image: &ImageConfig) -> Result<Vec<String>, BundleError> {
    let args = match (&c.command, &c.args) {
        (Some(cmd), Some(args)) => cmd.iter().chain(args).cloned().collect(),
        (Some(cmd), None) => cmd.clone(),
        (None, Some(args)) => image.entrypoint.iter().flatten().chain(args).cloned().collect(),
        (None, None) => image.entrypoint.iter().flatten().chain(image.cmd.iter().flatten()).cloned().collect(),
    };
    let args: Vec<String> = args;
    if args.is_empty() { Err(BundleError::NoCommand(c.name.clone())) } else { Ok(args) }
}

/// Expands `$(VAR)` references as Kubernetes does (`$$` escapes); unknown ones stay as written.
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(').and_then(|a| a.find(')').map(|j| (&a[..j], &a[j + 1..]))) {
            match env.iter().rev().find(|(k, _)| k == inner.0) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(inner.0);
                    out.push(')');
                }
            }
            rest = inner.1;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn bind(dest: &str, source: &Path, readonly: bool) -> Result<Mount, String> {
    let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
    options.push(if readonly { "ro" } else { "rw" }.to_string());
    MountBuilder::default()
        .destination(dest)
        .typ("bind")
        .source(source)
        .options(options)
        .build()
        .map_err(|e| e.to_string())
}

/// Builds the runtime configuration of container `c` of a pod.
pub fn spec(
    c: &Container,
    image: &ImageConfig,
    ctx: &PodContext,
    rootfs: &Path,
    id: &str,
) -> Result<Spec, BundleError> {
    let oci = |e: String| BundleError::Oci(c.name.clone(), e);
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .flatten()
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    for e in c.env.iter().flatten() {
        if e.value_from.is_some() {
            return Err(BundleError::Unsupported {
                container: c.name.clone(),
                field: format!("env {:?} valueFrom", e.name),
            });
        }
        let value = expand(e.value.as_deref().unwrap_or(""), &env);
        env.retain(|(k, _)| *k != e.name);
        env.push((e.name.clone(), value));
    }
    if c.env_from.is_some() {
        return Err(BundleError::Unsupported { container: c.name.clone(), field: "envFrom".into() });
    }
    let args: Vec<String> = argv(c, image)?.iter().map(|a| expand(a, &env)).collect();
    let cwd =
        c.working_dir.clone().or_else(|| image.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or("/".into());
    let process = ProcessBuilder::default()
        .args(args)
        .env(env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
        .cwd(cwd)
        .no_new_privileges(false)
        .build()
        .map_err(|e| oci(e.to_string()))?;
    let mut mounts = oci_spec::runtime::get_default_mounts();
    for (dest, file) in &ctx.etc_files {
        mounts.push(bind(dest, file, false).map_err(oci)?);
    }
    for m in c.volume_mounts.iter().flatten() {
        if m.sub_path.is_some() || m.sub_path_expr.is_some() {
            return Err(BundleError::Unsupported { container: c.name.clone(), field: "volumeMounts subPath".into() });
        }
        let source = ctx.volumes.get(&m.name).ok_or_else(|| BundleError::Unsupported {
            container: c.name.clone(),
            field: format!("volume {:?} (only emptyDir volumes are supported yet)", m.name),
        })?;
        mounts.push(bind(&m.mount_path, source, m.read_only == Some(true)).map_err(oci)?);
    }
    let namespaces: Vec<LinuxNamespace> = [
        (LinuxNamespaceType::Pid, None),
        (LinuxNamespaceType::Mount, None),
        (LinuxNamespaceType::Network, ctx.netns.clone()),
        (LinuxNamespaceType::Uts, ctx.uts.clone()),
        (LinuxNamespaceType::Ipc, ctx.ipc.clone()),
    ]
    .into_iter()
    .map(|(typ, path)| {
        let b = LinuxNamespaceBuilder::default().typ(typ);
        match path {
            Some(p) => b.path(p).build(),
            None => b.build(),
        }
    })
    .collect::<Result<_, _>>()
    .map_err(|e| oci(e.to_string()))?;
    let limits = c.resources.as_ref().and_then(|r| r.limits.clone()).unwrap_or_default();
    let quantity = |name: &str| -> Result<Option<i128>, BundleError> {
        limits
            .get(name)
            .map(|q| {
                podvisor_api::resources::parse_milli(&q.0).map_err(|_| BundleError::Quantity {
                    container: c.name.clone(),
                    resource: name.into(),
                    quantity: q.0.clone(),
                })
            })
            .transpose()
    };
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(mem) = quantity("memory")? {
        let bytes = (mem / 1000) as i64;
        let memory = LinuxMemoryBuilder::default().limit(bytes).swap(bytes).build().map_err(|e| oci(e.to_string()))?;
        resources = resources.memory(memory);
    }
    if let Some(cpu) = quantity("cpu")? {
        let period: u64 = 100_000;
        let quota = ((cpu * period as i128) / 1000).max(1000) as i64;
        let cpu = LinuxCpuBuilder::default().quota(quota).period(period).build().map_err(|e| oci(e.to_string()))?;
        resources = resources.cpu(cpu);
    }
    let pids = LinuxPidsBuilder::default().limit(4096).build().map_err(|e| oci(e.to_string()))?;
    let resources = resources.pids(pids).build().map_err(|e| oci(e.to_string()))?;
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(format!("{}/{id}", ctx.cgroup_parent)))
        .resources(resources)
        .masked_paths(oci_spec::runtime::get_default_maskedpaths())
        .readonly_paths(oci_spec::runtime::get_default_readonly_paths())
        .build()
        .map_err(|e| oci(e.to_string()))?;
    let root = RootBuilder::default().path(rootfs).readonly(false).build().map_err(|e| oci(e.to_string()))?;
    let mut spec = Spec::default();
    spec.set_hostname(None)
        .set_process(Some(process))
        .set_root(Some(root))
        .set_mounts(Some(mounts))
        .set_linux(Some(linux));
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: Some(vec!["/entry".into()]),
            cmd: Some(vec!["--default".into()]),
            env: Some(vec!["PATH=/bin".into(), "A=image".into()]),
            ..Default::default()
        }
    }

    fn c(command: Option<&[&str]>, args: Option<&[&str]>) -> Container {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect();
        Container { name: "c".into(), command: command.map(v), args: args.map(v), ..Default::default() }
    }

    #[test]
    fn command_and_args_against_entrypoint_and_cmd() {
        let img = image();
        assert_eq!(argv(&c(None, None), &img).unwrap(), ["/entry", "--default"]);
        assert_eq!(argv(&c(None, Some(&["x"])), &img).unwrap(), ["/entry", "x"]);
        assert_eq!(argv(&c(Some(&["sh"]), None), &img).unwrap(), ["sh"], "CMD is dropped when command is set");
        assert_eq!(argv(&c(Some(&["sh"]), Some(&["-c", "true"])), &img).unwrap(), ["sh", "-c", "true"]);
        assert!(argv(&c(None, None), &ImageConfig::default()).is_err());
    }

    #[test]
    fn variables_expand_as_kubernetes_expands_them() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
    }

    #[test]
    fn the_spec_joins_the_pod_namespaces_and_limits_memory() {
        let mut container = c(Some(&["sh"]), None);
        container.resources = Some(k8s_openapi::api::core::v1::ResourceRequirements {
            limits: Some(
                [("memory".to_string(), k8s_openapi::apimachinery::pkg::api::resource::Quantity("32Mi".into()))].into(),
            ),
            ..Default::default()
        });
        let ctx = PodContext {
            netns: Some("/run/netns/p".into()),
            cgroup_parent: "/podvisor/p".into(),
            ..Default::default()
        };
        let spec = spec(&container, &image(), &ctx, Path::new("/r"), "p-c-0").unwrap();
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["process"]["env"], serde_json::json!(["PATH=/bin", "A=image"]));
        assert_eq!(json["linux"]["cgroupsPath"], "/podvisor/p/p-c-0");
        assert_eq!(json["linux"]["resources"]["memory"]["limit"], 32 * 1024 * 1024);
        let ns = json["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.iter().any(|n| n["type"] == "network" && n["path"] == "/run/netns/p"));
        assert!(json.get("hostname").is_none(), "the hostname belongs to the shared UTS namespace");
    }
}
