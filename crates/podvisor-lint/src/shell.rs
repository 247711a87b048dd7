//! What can be read from a container's command line without running it: a shell script as
//! PID 1, the ports a container talks to on localhost, and how long a command sleeps.

use k8s_openapi::api::core::v1::Container;

/// The shells whose `-c` script runs as PID 1 when they are the entrypoint.
const SHELLS: [&str; 6] = ["sh", "bash", "ash", "dash", "zsh", "ksh"];

/// The container's command line as written (`command` then `args`).
pub(crate) fn argv(c: &Container) -> Vec<&str> {
    c.command.iter().flatten().chain(c.args.iter().flatten()).map(String::as_str).collect()
}

/// The script a container runs as PID 1 through `<shell> -c`, if it does: only when `command`
/// itself is the shell (otherwise the image's entrypoint is unknown).
pub(crate) fn pid1_script(c: &Container) -> Option<&str> {
    let shell = c.command.as_ref()?.first()?;
    let name = shell.rsplit('/').next().unwrap_or(shell);
    if !SHELLS.contains(&name) {
        return None;
    }
    let all = argv(c);
    let at = all.iter().position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
    all.get(at + 1).copied()
}

/// Whether a shell running `script` as PID 1 leaves SIGTERM unhandled and stays PID 1: it sets
/// no `trap` and does not `exec` its work, and the script is more than one simple command
/// (a shell may run a lone command in its own place).
pub(crate) fn ignores_sigterm(script: &str) -> bool {
    let s = script.trim();
    if s.contains("trap ") || s.starts_with("exec ") {
        return false;
    }
    s.contains('\n')
        || [";", "&&", "||", "|", "&", "$(", "`"].iter().any(|t| s.contains(t))
        || ["while ", "for ", "until ", "if "].iter().any(|k| s.starts_with(k))
}

/// The ports `c` mentions on the pod's loopback (`localhost:5432`, `127.0.0.1:15021`) in its
/// command line or environment.
pub(crate) fn loopback_ports(c: &Container) -> Vec<i32> {
    let env = c.env.iter().flatten().filter_map(|e| e.value.as_deref());
    let mut out = Vec::new();
    for text in argv(c).into_iter().chain(env) {
        for host in ["localhost:", "127.0.0.1:", "[::1]:"] {
            let mut rest = text;
            while let Some(i) = rest.find(host) {
                rest = &rest[i + host.len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(p) = digits.parse() {
                    out.push(p);
                }
            }
        }
    }
    out
}

/// The ports `c` serves: its `containerPort`s and `--port=N` / `--port N` arguments.
pub(crate) fn served_ports(c: &Container) -> Vec<i32> {
    let mut out: Vec<i32> = c.ports.iter().flatten().map(|p| p.container_port).collect();
    let all = argv(c);
    for (i, a) in all.iter().enumerate() {
        let value = a.strip_prefix("--port=").or_else(|| (*a == "--port").then(|| all.get(i + 1).copied()).flatten());
        if let Some(p) = value.and_then(|v| v.parse().ok()) {
            out.push(p);
        }
    }
    out
}

/// How long a command sleeps if it is only a sleep (`sleep 20`, `sh -c "sleep 20"`).
pub(crate) fn sleep_seconds(command: &[String]) -> Option<i64> {
    let words: Vec<&str> = match command {
        [shell, flag, script] if SHELLS.contains(&shell.rsplit('/').next().unwrap_or(shell)) && flag == "-c" => {
            script.split_whitespace().collect()
        }
        other => other.iter().map(String::as_str).collect(),
    };
    match words.as_slice() {
        [sleep, n] if sleep.rsplit('/').next() == Some("sleep") => n.trim_end_matches('s').parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        Container {
            name: "c".into(),
            command: (!command.is_empty()).then(|| command.iter().map(|s| s.to_string()).collect()),
            args: (!args.is_empty()).then(|| args.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn a_shell_loop_without_trap_ignores_sigterm_and_exec_or_trap_do_not() {
        let c = container(&["sh", "-c"], &["while true; do sleep 1; done"]);
        assert!(ignores_sigterm(pid1_script(&c).unwrap()));
        let c = container(&["/bin/bash", "-ec", "echo a && sleep 5"], &[]);
        assert!(ignores_sigterm(pid1_script(&c).unwrap()));
        assert!(!ignores_sigterm("trap 'exit 0' TERM; while true; do sleep 1; done"));
        assert!(!ignores_sigterm("exec nginx -g 'daemon off;'"));
        assert!(!ignores_sigterm("sleep 3600"), "a lone command");
        assert_eq!(pid1_script(&container(&["nginx"], &["-c", "x"])), None);
        assert_eq!(pid1_script(&container(&[], &["sh", "-c", "x"])), None, "the entrypoint is the image's");
    }

    #[test]
    fn ports_on_loopback_and_served_ports_are_read_from_the_command_line() {
        let c = container(&["migrate", "--database=postgres://localhost:5432/db"], &[]);
        assert_eq!(loopback_ports(&c), [5432]);
        let c = container(&[], &["proj:region:db", "--port=5432"]);
        assert_eq!(served_ports(&c), [5432]);
        assert_eq!(sleep_seconds(&["sleep".into(), "20".into()]), Some(20));
        assert_eq!(sleep_seconds(&["sh".into(), "-c".into(), "sleep 45".into()]), Some(45));
        assert_eq!(sleep_seconds(&["nginx".into(), "-s".into(), "quit".into()]), None);
    }
}
