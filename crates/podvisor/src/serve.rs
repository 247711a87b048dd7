//! `podvisor serve`: the Kubernetes API on loopback over HTTPS for the real kubectl, with the
//! store in `<data-dir>/store.redb`; `podvisor kubeconfig` prints a kubeconfig for it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use podvisor_cluster::{Cluster, Store};
use podvisor_server::tls::Credentials;
use tokio::signal::unix::{SignalKind, signal};

/// Options of `podvisor serve`.
pub struct Options {
    /// The node to run the pods on.
    pub node: podvisor_cluster::NodeOptions,
    /// Where to listen.
    pub listen: SocketAddr,
    /// Listen beyond loopback.
    pub allow_remote: bool,
    /// On SIGINT or SIGTERM, leave the containers running for the next server to take over.
    pub leave_pods_running: bool,
    /// Why the node's runtime was chosen.
    pub runtime_why: &'static str,
    /// Log each request and each pod's lifecycle steps on standard error.
    pub verbose: bool,
}

/// One pod lifecycle step in a line, `pod NS/NAME: what`, for `serve -v` and `down`
/// (container output is not repeated).
pub(crate) fn step(e: &podvisor_node::NodeEvent) -> Option<String> {
    use podvisor_node::What;
    let what = match &e.what {
        What::Log { .. } | What::Timing { .. } => return None,
        What::Started { container, attempt } => format!("{container} started (attempt {attempt})"),
        What::Exited { container, exit_code, reason, .. } => format!("{container} exited {exit_code} ({reason})"),
        What::Signalled { container, signal, why, .. } => format!("{container} sent {signal}: {why}"),
        What::Handler { container, handler, result } => format!("{container} {handler}: {result}"),
        What::Event { kind, reason, message, .. } => format!("{kind} {reason}: {message}"),
        What::Phase { phase } => format!("phase {phase}"),
        What::Finished { phase } => format!("finished: {phase}"),
    };
    Some(format!("pod {}: {what}", e.pod))
}

fn serve_dir(data: &Path) -> PathBuf {
    data.join("serve")
}

/// Runs the server until SIGINT or SIGTERM. Pods keep their state in the store; containers
/// are stopped with the node (a restart starts them again), unless the options say to leave
/// them running (the next server takes them over, R75).
pub fn run(opts: Options) -> anyhow::Result<bool> {
    if !podvisor_server::is_loopback(&opts.listen) && !opts.allow_remote {
        anyhow::bail!(
            "{}: not a loopback address; podvisor serves only this machine unless --allow-remote is given",
            opts.listen
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let outcome = rt.block_on(async move {
        let dir = serve_dir(&opts.node.data_dir);
        podvisor_runtime::files::secure_data_dir(&opts.node.data_dir)?;
        let store_path = opts.node.data_dir.join("store.redb");
        // The store is locked by the process that has it open: say who, as `run` says it.
        let store = Store::open(&store_path).map_err(|e| match e.to_string().contains("already open") {
            true => anyhow::anyhow!(
                "{}: another podvisor is using this data directory (use --data-dir for a separate one)",
                opts.node.data_dir.display()
            ),
            false => anyhow::Error::from(e),
        })?;
        // The store holds Secrets.
        podvisor_runtime::files::make_private(&store_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", store_path.display()))?;
        // The `kubernetes` Service's address, which the serving certificate names.
        let service_ip = match opts.node.network {
            Some(_) => podvisor_cluster::serviceaccounts::claim_ip(&opts.node.data_dir),
            None => None,
        };
        let creds = Credentials::load_or_create(&dir, service_ip)?;
        let tls = creds.server_config(&dir)?;
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| anyhow::anyhow!("{}: cannot listen: {e}", opts.listen))?;
        let addr = listener.local_addr()?;
        let server = format!("https://{addr}");
        let kubeconfig = dir.join("kubeconfig");
        // The kubeconfig holds the token: whoever reads it is root through the API.
        podvisor_runtime::files::write_private(&kubeconfig, creds.kubeconfig(&server).as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", kubeconfig.display()))?;
        std::fs::write(dir.join("address"), &server)?;
        // Pods talk to this API as service accounts, with tokens signed by a key kept here.
        let key = dir.join("serviceaccount.key");
        let issuer = podvisor_cluster::tokens::Issuer::load_or_create(&key)
            .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
        let api = podvisor_cluster::serviceaccounts::ApiAccess {
            issuer,
            ca_pem: creds.ca_pem.clone(),
            address: addr,
            service_ip,
        };
        let mut node = opts.node.clone();
        node.api = Some(std::sync::Arc::new(api));
        let observer = opts.verbose.then(|| {
            let (tx, mut rx) =
                tokio::sync::mpsc::channel::<podvisor_node::NodeEvent>(podvisor_cluster::relay::CAPACITY);
            tokio::spawn(async move {
                while let Some(e) = rx.recv().await {
                    if let Some(line) = step(&e) {
                        tracing::info!(target: "podvisor::pod", pod = %e.pod, "{line}");
                    }
                }
            });
            tx
        });
        let cluster = Cluster::open(store, node, observer).await?;
        let node = cluster.node().clone();
        crate::node_args::remember_runtime(&opts.node.runtime, &opts.node.data_dir);
        println!(
            "podvisor: serving the Kubernetes API at {server} (OCI runtime {}: {})",
            opts.node.runtime.display(),
            opts.runtime_why
        );
        println!("podvisor: kubeconfig at {} (export KUBECONFIG={0})", kubeconfig.display());
        let serving =
            tokio::spawn(podvisor_server::serve(cluster.clone(), listener, tls, creds.token.clone(), opts.verbose));
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sigterm = signal(SignalKind::terminate())?;
        tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} }
        serving.abort();
        if opts.leave_pods_running {
            // Each container's monitor holds it and records its end; what this process has not
            // written yet, the next one finds on the machine.
            println!(
                "podvisor: leaving: containers keep running; the next serve on this data directory takes them over"
            );
            cluster.close_services().await;
            return Ok(true);
        }
        println!("podvisor: stopping: containers are stopped; pods start again with the next serve");
        cluster.stop_node();
        tokio::select! {
            _ = node.all_finished() => {}
            _ = sigint.recv() => node.force_kill(),
        }
        node.all_finished().await;
        cluster.close_services().await;
        Ok(true)
    });
    // What is still blocked (a `kubectl logs -f` follower waiting for a line) must not hold
    // the exit.
    rt.shutdown_background();
    outcome
}

/// Prints the kubeconfig of the server last started with this data directory.
pub fn kubeconfig(out: &mut impl std::io::Write, data: &Path) -> anyhow::Result<bool> {
    let dir = serve_dir(data);
    let server = std::fs::read_to_string(dir.join("address")).map_err(|_| {
        anyhow::anyhow!("{}: no server has run here yet; start one with `podvisor serve`", dir.display())
    })?;
    let creds = Credentials::load_or_create(&dir, None)?;
    write!(out, "{}", creds.kubeconfig(server.trim()))?;
    Ok(true)
}
