//! `podvisor explain POD|job/NAME`: why a pod is where it is and what happens next, read from
//! an API through a kubeconfig (this machine's `serve`, or any cluster).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Options of `podvisor explain`.
pub struct Options {
    /// `POD`, `pod/NAME` or `job/NAME`.
    pub what: String,
    /// The namespace (else the context's).
    pub namespace: Option<String>,
    /// The kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// The context.
    pub context: Option<String>,
}

/// The kubeconfig to use: the one given, else `KUBECONFIG` or `~/.kube/config` when they
/// exist, else the one `serve` wrote under `data_dir`.
pub fn kubeconfig(given: Option<PathBuf>, data_dir: &Path) -> Option<PathBuf> {
    if given.is_some() {
        return given;
    }
    let env = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".kube/config")).filter(|p| p.exists());
    if env.is_some() || home.is_some() {
        return None;
    }
    Some(data_dir.join("serve/kubeconfig")).filter(|p| p.exists())
}

/// Prints the explanation of `opts.what`.
pub fn run(out: &mut impl Write, data_dir: &Path, opts: Options) -> anyhow::Result<bool> {
    let target = podvisor_kube::Target { kubeconfig: kubeconfig(opts.kubeconfig, data_dir), context: opts.context };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let explanations = rt.block_on(async {
        let c = podvisor_kube::connect(&target).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        let ns = opts.namespace.clone().unwrap_or_else(|| c.namespace.clone());
        podvisor_kube::explain_target(&c.client, &ns, &opts.what).await.map_err(|e| anyhow::anyhow!(c.say(&e)))
    })?;
    for e in explanations {
        write!(out, "{e}")?;
    }
    Ok(true)
}
