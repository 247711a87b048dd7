//! The `podvisor` command line.

mod bench;
mod compare;
mod down;
mod exec;
mod explain;
mod image;
mod lint;
mod load;
mod log;
mod logs;
mod migrate;
mod node_args;
mod printer;
mod prune;
mod ps;
mod run;
mod run_remote;
mod scratch;
mod serve;
mod simulate;
mod simulate_job;
mod timeline;

use std::process::ExitCode;
use std::time::Duration;

use std::io::Write;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// Maps an outcome to the exit code: 0 when everything succeeded, 2 when a pod did not, 1 on
/// errors. A closed output pipe (`| head`) is not an error.
fn finish(result: anyhow::Result<bool>) -> ExitCode {
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podvisor: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Run Kubernetes workloads on one machine with the kubelet's pod lifecycle.
#[derive(Parser)]
#[command(name = "podvisor", version, about)]
struct Cli {
    /// Where images, pod state and logs are kept.
    #[arg(long, global = true, env = "PODVISOR_DATA_DIR", default_value = "/var/lib/podvisor")]
    data_dir: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check manifests as the API server would; print every problem with its place.
    Validate {
        /// Manifest files or directories (`-` for standard input).
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Find the sidecar pitfalls in manifests (files, directories, `-`): each finding with its
    /// place, what happens at run time, and the fix. Rules: docs/lint.md.
    Lint {
        /// Manifest files or directories (`-` for standard input); none with --context,
        /// --kubeconfig, -n or -A: the workloads of an API instead.
        #[arg(required_unless_present_any = ["kubeconfig", "context", "namespace", "all_namespaces"])]
        inputs: Vec<String>,
        /// Lint the live workloads of the API this kubeconfig reaches.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// Lint the live workloads of this kubeconfig context.
        #[arg(long)]
        context: Option<String>,
        /// The namespace of the live workloads (default: the context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Live workloads of every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// The report's format.
        #[arg(long, short = 'o', value_enum, default_value = "human")]
        output: lint::Output,
        /// Exit 1 when a finding at this level or worse is found.
        #[arg(long, value_enum, default_value = "error")]
        fail_on: lint::FailOn,
        /// Colour the human report (`auto`: on a terminal, unless NO_COLOR is set or TERM=dumb).
        #[arg(long, value_enum, default_value = "auto")]
        color: lint::Colour,
    },
    /// Run the pods of the manifests in virtual time against simulated containers and print
    /// their lifecycle.
    Simulate {
        /// Manifest files or directories (`-` for standard input).
        #[arg(required = true)]
        files: Vec<String>,
        /// Override a container's guessed behaviour: NAME=run:5s,exit:1,term:2s|ignore,forever,start-delay:1s
        #[arg(long = "behave", value_name = "NAME=SPEC")]
        behave: Vec<String>,
        /// Stop after this many seconds of virtual time.
        #[arg(long, default_value_t = 3600)]
        until: u64,
        /// Draw the lifecycle as a picture: FILE.html or FILE.svg.
        #[arg(long, value_name = "FILE.html|FILE.svg")]
        timeline: Option<std::path::PathBuf>,
    },
    /// Rewrite legacy sidecars (regular containers that are sidecars by trade) as native ones,
    /// keeping comments and layout; print a unified diff (or write with --in-place) and check
    /// the old and the new manifest in virtual time.
    Migrate {
        /// Manifest files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Write the migrated text over each file.
        #[arg(long)]
        in_place: bool,
        /// Container behaviour for the check: NAME=run:5s,exit:0,… (as simulate takes it).
        #[arg(long = "behave", value_name = "NAME=SPEC")]
        behave: Vec<String>,
    },
    /// Remove what the data directory keeps that nothing uses: the logs of pods that are gone,
    /// and unpacked images no name refers to (both unless one is named). Only while no podvisor
    /// uses the data directory.
    Prune {
        /// The logs of pods that are gone.
        #[arg(long)]
        logs: bool,
        /// Unpacked images no name refers to.
        #[arg(long)]
        images: bool,
    },
    /// List the pods of the data directory, read from the machine (those of `podvisor run`,
    /// `serve`, or one that was stopped or killed): containers running, status, restarts, age.
    Ps {
        /// Pods that have ended too (their logs are kept), not only those with something up.
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Stop what the data directory still runs while no podvisor uses it: the pods a
    /// `serve --leave-pods-running` left (stopped in the kubelet's order with their grace; the
    /// next serve runs them again) and the containers of a killed run (stopped at once).
    Down {
        #[command(flatten)]
        node: node_args::NodeArgs,
    },
    /// Print the shell completion script for bash, zsh, fish, elvish or powershell
    /// (`podvisor completion bash > /etc/bash_completion.d/podvisor`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `podvisor man | man -l -`.
    Man,
    /// Say why a pod (or a Job's pods) is where it is and what happens next, from its spec,
    /// status and events, through a kubeconfig (this machine's serve by default, or any cluster).
    Explain {
        /// `POD`, `pod/NAME` or `job/NAME`.
        what: String,
        /// The namespace (default: the context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The kubeconfig (default: KUBECONFIG, ~/.kube/config, else serve's under the data dir).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// The kubeconfig context (default: its current one).
        #[arg(long)]
        context: Option<String>,
    },
    /// Draw the lifecycle timeline of a run (`podvisor run --timeline RUN.json`) as a picture:
    /// one row per container, states as bars, probes, hooks and signals as marks.
    Timeline {
        /// The events a run wrote (RUN.json); with --context or --kubeconfig, the pod (`POD`,
        /// `pod/NAME`) or Job (`job/NAME`) on the cluster whose lifecycle to draw.
        input: String,
        /// The picture: FILE.html (with a legend) or FILE.svg.
        #[arg(short = 'o', long, value_name = "FILE.html|FILE.svg")]
        output: std::path::PathBuf,
        /// Draw a pod of the cluster of this kubeconfig context, from its status and events.
        #[arg(long)]
        context: Option<String>,
        /// Draw a pod of the cluster this kubeconfig reaches.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// The namespace on the cluster (default: the context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Run the Pods, Jobs and Deployments of the manifests on real containers, in the
    /// foreground, until they end (Ctrl-C deletes them gracefully; a second Ctrl-C kills).
    Run {
        /// Manifest files or directories (`-` for standard input).
        #[arg(required = true)]
        files: Vec<String>,
        /// Write every event, with timestamps, to FILE.json; or draw them as a picture,
        /// FILE.html or FILE.svg.
        #[arg(long, value_name = "FILE.json|FILE.html|FILE.svg")]
        timeline: Option<std::path::PathBuf>,
        /// When to pull images, for every container: never (the local store only), missing, or
        /// always; the manifests' imagePullPolicy otherwise.
        #[arg(long, value_enum)]
        pull: Option<run::PullPolicy>,
        /// Stop everything (with grace) at the first image that cannot be pulled or the first
        /// Pod or Job that fails, instead of backing off and retrying; exit 2.
        #[arg(long)]
        fail_fast: bool,
        /// Colour the output and keep the pod table under it (`auto`: on a terminal, unless
        /// NO_COLOR is set or TERM=dumb).
        #[arg(long, value_enum, default_value = "auto")]
        color: lint::Colour,
        /// Run on the cluster of this kubeconfig context instead of this machine: apply the
        /// manifests (server-side, field manager podvisor) and follow them as a local run does.
        #[arg(long)]
        context: Option<String>,
        /// Run on the cluster this kubeconfig reaches (its current context unless --context).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// With --context or --kubeconfig: the namespace of objects that name none (default: the
        /// context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        #[command(flatten)]
        node: node_args::NodeArgs,
    },
    /// Run a manifest here and on a cluster, and print the two lifecycles side by side: start
    /// order, handoffs, restarts, stop order, the wait from SIGTERM to SIGKILL, exit codes and
    /// phase, differences marked with the kubelet rules that explain them. Exit 0 when they
    /// agree, 2 when they differ.
    Compare {
        /// The manifest files or directories.
        #[arg(required = true)]
        files: Vec<String>,
        /// Run these manifests on the cluster instead of the same ones (to see what a change
        /// does there).
        #[arg(long, value_name = "FILE|DIR")]
        against: Vec<String>,
        /// The cluster's kubeconfig context.
        #[arg(long)]
        context: Option<String>,
        /// The cluster's kubeconfig (default: KUBECONFIG, ~/.kube/config, else serve's under the
        /// data dir).
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
        /// The namespace on the cluster of objects that name none (default: the context's).
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Simulate this side in virtual time instead of running real containers.
        #[arg(long)]
        simulate: bool,
        /// Draw both lifecycles in one picture: FILE.html or FILE.svg.
        #[arg(long, value_name = "FILE.html|FILE.svg")]
        timeline: Option<std::path::PathBuf>,
        #[command(flatten)]
        node: node_args::NodeArgs,
    },
    /// Print a container's logs (kept after the pod ends; current and previous instance).
    Logs {
        /// The pod, or `job/NAME` or `deploy/NAME` (its newest pod).
        pod: String,
        /// The container (required when the pod has several).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// The pod's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Keep printing new lines until the pod stops running.
        #[arg(short = 'f', long)]
        follow: bool,
        /// The previous instance of the container (before its last restart).
        #[arg(short = 'p', long)]
        previous: bool,
        /// Prefix each line with its timestamp.
        #[arg(long)]
        timestamps: bool,
        /// Only the last N lines (then new ones with -f).
        #[arg(long, value_name = "N")]
        tail: Option<usize>,
        /// Read the log from the cluster of this kubeconfig context instead of this machine.
        #[arg(long)]
        context: Option<String>,
        /// Read the log from the cluster this kubeconfig reaches.
        #[arg(long)]
        kubeconfig: Option<std::path::PathBuf>,
    },
    /// Run a command in a running container of a pod of this machine (`podvisor run` or
    /// `serve`), with this terminal: `podvisor exec POD -c app -- sh`.
    Exec {
        /// The pod.
        pod: String,
        /// The container (required when the pod runs several).
        #[arg(short = 'c', long)]
        container: Option<String>,
        /// The pod's namespace.
        #[arg(short = 'n', long, default_value = "default")]
        namespace: String,
        /// Keep standard input open (always; accepted as kubectl's -i).
        #[arg(short = 'i', long)]
        stdin: bool,
        /// Give the command a terminal.
        #[arg(short = 't', long)]
        tty: bool,
        /// The OCI runtime the pod runs on (`auto`: the one the data directory uses).
        #[arg(long, env = "PODVISOR_RUNTIME", default_value = "auto")]
        runtime: std::path::PathBuf,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Serve the Kubernetes API on this machine for kubectl (HTTPS on loopback, bearer token);
    /// writes a kubeconfig under the data directory.
    Serve {
        /// The address to listen on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        /// Allow a non-loopback address (anyone who can reach it and has the token can run
        /// containers as root here).
        #[arg(long)]
        allow_remote: bool,
        /// On SIGINT or SIGTERM, exit and leave the pods' containers running; the next serve on
        /// this data directory takes them over, as a restarted kubelet does (for upgrades and
        /// service managers). Without it, the pods are stopped in order first.
        #[arg(long)]
        leave_pods_running: bool,
        /// Log each request (method, path, status, time) and each pod's lifecycle steps on
        /// standard error.
        #[arg(short = 'v', long)]
        verbose: bool,
        /// How the server's log on standard error is written: `podvisor: …` lines, or JSON
        /// lines (timestamp, level, message and fields) for service managers.
        #[arg(long, value_enum, default_value = "text")]
        log_format: log::Format,
        #[command(flatten)]
        node: node_args::NodeArgs,
    },
    /// Print a kubeconfig for the server of this data directory.
    Kubeconfig,
    /// Measure pod start, sidecar handoff, job completion and scale on real containers, next
    /// to the OCI runtime's own floor; print a table and write JSON. Needs busybox:1.36 in the
    /// data directory (scripts/load-test-image).
    Bench {
        /// Runs per latency figure.
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Pods created at once through serve for the scale figure.
        #[arg(long, default_value_t = 50)]
        pods: usize,
        /// Where to write the JSON.
        #[arg(long, value_name = "FILE.json", default_value = "bench.json")]
        out: std::path::PathBuf,
        /// The OCI runtime binary (runc, crun, youki, or a path).
        #[arg(long, env = "PODVISOR_RUNTIME", default_value = "runc")]
        runtime: std::path::PathBuf,
        /// Another runtime whose floor, pod start and handoff are measured in the same run
        /// (repeatable).
        #[arg(long = "also-runtime", value_name = "RUNTIME")]
        also: Vec<std::path::PathBuf>,
        /// The test image's OCI archive: with podman installed, `podman kube play` of the same
        /// pod is measured beside podvisor (scripts/bench gives it).
        #[arg(long, value_name = "FILE.tar")]
        podman_archive: Option<std::path::PathBuf>,
    },
    /// Manage the local image store.
    #[command(subcommand)]
    Image(image::ImageCommand),
}

/// What `podvisor --version` says: the version, the commit it is built from, and the Kubernetes
/// version it reports (and the one whose rules it follows).
fn version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (commit {}, Kubernetes {}; object types and kubelet rules of {})",
            env!("CARGO_PKG_VERSION"),
            env!("PODVISOR_COMMIT"),
            podvisor_objects::KUBERNETES_VERSION,
            podvisor_objects::KUBERNETES_RULES
        )
    })
}

/// The command line's definition, with its version text.
fn command() -> clap::Command {
    Cli::command().version(version())
}

/// How the node starts a container's monitor: the `podvisor-monitor` program installed beside
/// this one (a small program: a running container costs its memory, not this one's), else this
/// program as `podvisor monitor`.
pub(crate) fn monitor_command() -> podvisor_runtime::monitor::MonitorCommand {
    let me = std::env::current_exe().unwrap_or_else(|_| "podvisor".into());
    let lean = me.with_file_name("podvisor-monitor");
    if lean.is_file() {
        return podvisor_runtime::monitor::MonitorCommand { program: lean, args: Vec::new() };
    }
    podvisor_runtime::monitor::MonitorCommand { program: me, args: vec!["monitor".into()] }
}

fn main() -> ExitCode {
    // `podvisor monitor …` is the process the node starts to hold one container; it is not a
    // command for people, so it is neither parsed nor listed with the others.
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "monitor") {
        let code = podvisor_runtime::monitor::main(args.collect());
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    // The daemon holds many descriptors (containers' pipes, watches, relayed connections):
    // its soft limit is raised to the hard one, as container runtimes do.
    if let Ok(limit) = rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum.ok_or(()) {
        let raised = rustix::process::Rlimit { current: Some(limit), maximum: Some(limit) };
        if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Nofile, raised) {
            eprintln!("podvisor: raising the open-file limit to {limit}: {e}");
        }
    }
    log::init(match &cli.command {
        Command::Serve { log_format, .. } => *log_format,
        _ => log::Format::Text,
    });
    let files = match cli.command {
        Command::Validate { ref files } | Command::Simulate { ref files, .. } | Command::Run { ref files, .. } => files,
        Command::Image(cmd) => return finish(image::run(&mut std::io::stdout().lock(), &cli.data_dir, cmd)),
        Command::Serve { listen, allow_remote, leave_pods_running, verbose, node, log_format: _ } => {
            let runtime_why = node_args::resolve_runtime(&node.runtime, &cli.data_dir).1;
            let node = node.options(&cli.data_dir);
            let opts = serve::Options { node, listen, allow_remote, leave_pods_running, runtime_why, verbose };
            return finish(serve::run(opts));
        }
        Command::Kubeconfig => return finish(serve::kubeconfig(&mut std::io::stdout().lock(), &cli.data_dir)),
        Command::Timeline { input, output, context, kubeconfig, namespace } => {
            if context.is_none() && kubeconfig.is_none() {
                return finish(timeline::from_file(std::path::Path::new(&input), &output));
            }
            let target = podvisor_kube::Target { kubeconfig, context };
            return finish(timeline::from_cluster(&target, namespace.as_deref(), &input, &output));
        }
        Command::Prune { logs, images } => {
            return finish(prune::run(&mut std::io::stdout().lock(), &cli.data_dir, prune::Options { logs, images }));
        }
        Command::Compare { files, against, context, kubeconfig, namespace, simulate, timeline, node } => {
            let load = |files: Vec<String>| match load::load_all(&files) {
                Ok(m) => Ok(m),
                Err(load::Problems(problems)) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    Err(problems.len())
                }
            };
            let there_files = if against.is_empty() { files.clone() } else { against };
            let (here, there) = match (load(files), load(there_files)) {
                (Ok(a), Ok(b)) => (a, b),
                (a, b) => {
                    let n = a.err().unwrap_or(0) + b.err().unwrap_or(0);
                    eprintln!("{n} problem(s); nothing was started");
                    return ExitCode::from(1);
                }
            };
            let target = podvisor_kube::Target { kubeconfig: explain::kubeconfig(kubeconfig, &cli.data_dir), context };
            let node = node.options(&cli.data_dir);
            let opts = compare::Options { here, there, target, namespace, simulate, node, timeline };
            return finish(compare::run(&mut std::io::stdout().lock(), opts));
        }
        Command::Ps { all } => {
            return finish(ps::run(&mut std::io::stdout().lock(), &cli.data_dir, ps::Options { all }));
        }
        Command::Down { node } => {
            let node = podvisor_cluster::NodeOptions { takeover_only: true, ..node.options(&cli.data_dir) };
            return finish(down::run(&mut std::io::stdout().lock(), node));
        }
        Command::Completion { shell } => {
            // Rendered whole first: the generator panics on a closed pipe (`| head`).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command(), "podvisor", &mut script);
            return finish(std::io::stdout().write_all(&script).map(|()| true).map_err(anyhow::Error::from));
        }
        Command::Man => {
            let page = clap_mangen::Man::new(command());
            return finish(page.render(&mut std::io::stdout().lock()).map(|()| true).map_err(anyhow::Error::from));
        }
        Command::Migrate { files, in_place, behave } => {
            let opts = migrate::Options { files, in_place, behave };
            return finish(migrate::run(&mut std::io::stdout().lock(), opts));
        }
        Command::Explain { what, namespace, kubeconfig, context } => {
            let opts = explain::Options { what, namespace, kubeconfig, context };
            return finish(explain::run(&mut std::io::stdout().lock(), &cli.data_dir, opts));
        }
        Command::Lint { inputs, kubeconfig, context, namespace, all_namespaces, output, fail_on, color } => {
            let live =
                (kubeconfig.is_some() || context.is_some() || namespace.is_some() || all_namespaces).then(|| {
                    lint::Live {
                        kubeconfig: explain::kubeconfig(kubeconfig, &cli.data_dir),
                        context,
                        namespace,
                        all_namespaces,
                    }
                });
            let opts = lint::Options { inputs, live, output, fail_on, colour: color };
            // Findings that fail the run exit 1, as linters do.
            return match lint::run(&mut std::io::stdout().lock(), opts) {
                Ok(false) => ExitCode::from(1),
                other => finish(other),
            };
        }
        Command::Bench { iterations, pods, out, runtime, also, podman_archive } => {
            let opts = bench::Options { data_dir: cli.data_dir, runtime, also, iterations, pods, out, podman_archive };
            return finish(bench::run(&mut std::io::stdout().lock(), opts));
        }
        Command::Exec { pod, container, namespace, stdin: _, tty, runtime, command } => {
            let runtime = node_args::resolve_runtime(&runtime, &cli.data_dir).0;
            let o = exec::Options { pod, namespace, container, tty, command, runtime };
            return match exec::run(&cli.data_dir, o) {
                Ok(code) => code,
                Err(e) => finish(Err(e)),
            };
        }
        Command::Logs { pod, container, namespace, follow, previous, timestamps, tail, context, kubeconfig } => {
            let cluster =
                (context.is_some() || kubeconfig.is_some()).then_some(podvisor_kube::Target { kubeconfig, context });
            let o = logs::Options { pod, namespace, container, follow, previous, timestamps, tail, cluster };
            return finish(logs::run(&mut std::io::stdout().lock(), &cli.data_dir, o));
        }
    };
    let manifests = match load::load_all(files) {
        Ok(m) => m,
        Err(load::Problems(problems)) => {
            for p in &problems {
                eprintln!("{p}");
            }
            eprintln!("{} problem(s); nothing was started", problems.len());
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let result = match cli.command {
        Command::Validate { .. } => manifests
            .iter()
            .try_for_each(|m| writeln!(out, "{}: {} {:?} is valid", m.source, m.object.kind(), m.object.name()))
            .map(|()| true)
            .map_err(anyhow::Error::from),
        Command::Simulate { behave, until, timeline, .. } => {
            simulate::run(&mut out, &manifests, &behave, Duration::from_secs(until), timeline.as_deref())
        }
        Command::Run { timeline, pull, color, fail_fast, context, kubeconfig, namespace, .. }
            if context.is_some() || kubeconfig.is_some() =>
        {
            if pull.is_some() {
                eprintln!(
                    "podvisor: --pull is for this machine's image store; a cluster's kubelets pull as the manifests say"
                );
                return ExitCode::from(1);
            }
            let target = podvisor_kube::Target { kubeconfig, context };
            let opts = run_remote::Options { target, namespace, timeline, colour: color, fail_fast };
            match run_remote::run(&mut out, manifests, opts) {
                Ok(run::Outcome::Done(ok)) => Ok(ok),
                Ok(run::Outcome::Interrupted) => return ExitCode::from(130),
                Err(e) => Err(e),
            }
        }
        Command::Run { timeline, node, pull, color, fail_fast, namespace: None, .. } => {
            let runtime_why = node_args::resolve_runtime(&node.runtime, &cli.data_dir).1;
            let opts = run::Options {
                node: node.options(&cli.data_dir),
                timeline,
                runtime_why,
                pull,
                colour: color,
                fail_fast,
            };
            match run::run(&mut out, manifests, opts) {
                Ok(run::Outcome::Done(ok)) => Ok(ok),
                Ok(run::Outcome::Interrupted) => return ExitCode::from(130),
                Err(e) => Err(e),
            }
        }
        Command::Run { namespace: Some(_), .. } => {
            eprintln!(
                "podvisor: -n/--namespace is for a run on a cluster (--context or --kubeconfig); manifests name their namespace"
            );
            return ExitCode::from(1);
        }
        Command::Image(_)
        | Command::Logs { .. }
        | Command::Exec { .. }
        | Command::Serve { .. }
        | Command::Kubeconfig
        | Command::Lint { .. }
        | Command::Timeline { .. }
        | Command::Explain { .. }
        | Command::Completion { .. }
        | Command::Prune { .. }
        | Command::Ps { .. }
        | Command::Compare { .. }
        | Command::Down { .. }
        | Command::Man
        | Command::Migrate { .. }
        | Command::Bench { .. } => Ok(true),
    };
    finish(result)
}
