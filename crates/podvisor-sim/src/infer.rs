//! Guesses how a real container would behave from its command, for what-if runs of real
//! manifests, and parses explicit behaviour overrides.
//!
//! The guess is deliberately simple and always printed with the run:
//! - a shell script (`sh -c …`) with a loop (`while true`, `tail -f`, `sleep infinity`) runs
//!   until killed; otherwise it runs for the sum of its `sleep N` commands and exits with its last
//!   `exit N` (0 if none);
//! - a shell as PID 1 ignores SIGTERM unless the script `trap`s it (the kernel drops signals a
//!   PID-1 process has no handler for), so it is killed when the grace period ends;
//! - a container with no command, or a program other than a shell, runs until stopped and exits
//!   promptly on SIGTERM.

use std::time::Duration;

use k8s_openapi::api::core::v1::Container;

use crate::behaviour::Behaviour;

/// A behaviour guessed from a container's command, with the reasons in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The behaviour to simulate.
    pub behaviour: Behaviour,
    /// What was assumed, for the user.
    pub summary: String,
}

fn is_shell(word: &str) -> bool {
    matches!(word.rsplit('/').next().unwrap_or(word), "sh" | "bash" | "ash" | "dash" | "zsh")
}

/// Guesses a container's behaviour from its command and args.
pub fn guess(c: &Container) -> Guess {
    let argv: Vec<&str> = c.command.iter().flatten().chain(c.args.iter().flatten()).map(String::as_str).collect();
    let mut b = Behaviour::default();
    let Some(first) = argv.first() else {
        return Guess { behaviour: b, summary: "runs until stopped (image default command), exits on SIGTERM".into() };
    };
    if !is_shell(first) {
        return Guess { behaviour: b, summary: format!("runs until stopped ({first}), exits on SIGTERM") };
    }
    let script = argv.iter().skip_while(|a| **a != "-c").nth(1).copied().unwrap_or("");
    let words: Vec<&str> = script
        .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
        .filter(|w| !w.is_empty())
        .collect();
    let looping = script.contains("while true")
        || script.contains("while :")
        || script.contains("tail -f")
        || script.contains("tail -F")
        || script.contains("sleep infinity");
    let traps = words.contains(&"trap") && (script.contains("TERM") || script.contains("15"));
    b.term = if traps { Some(Duration::ZERO) } else { None };
    let term_text =
        if traps { "exits on SIGTERM (trapped)" } else { "ignores SIGTERM (a shell as PID 1 without a trap)" };
    if looping {
        b.run = None;
        return Guess { behaviour: b, summary: format!("runs until killed, {term_text}") };
    }
    let sleeps: u64 = words.windows(2).filter(|w| w[0] == "sleep").filter_map(|w| w[1].parse::<u64>().ok()).sum();
    let exit =
        words.windows(2).filter(|w| w[0] == "exit").filter_map(|w| w[1].parse::<i32>().ok()).next_back().unwrap_or(0);
    b.run = Some(Duration::from_secs(sleeps));
    b.exit_code = exit;
    Guess { behaviour: b, summary: format!("runs {sleeps}s then exits {exit}, {term_text}") }
}

/// A behaviour override that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid behaviour {spec:?}: {why} (expected e.g. main=run:5s,exit:1,term:2s or sidecar=forever,term:ignore)")]
pub struct BadBehaviour {
    /// The text given.
    pub spec: String,
    /// What is wrong.
    pub why: String,
}

fn duration(v: &str) -> Option<Duration> {
    let v = v.trim_end_matches('s');
    v.parse::<f64>().ok().filter(|s| *s >= 0.0 && s.is_finite()).map(Duration::from_secs_f64)
}

/// Parses `NAME=key:value,…` (keys: `run`, `forever`, `exit`, `term` (`ignore` or seconds),
/// `start-delay`) into a container name and its behaviour, starting from `base`.
pub fn parse_override(spec: &str, base: impl Fn(&str) -> Behaviour) -> Result<(String, Behaviour), BadBehaviour> {
    let bad = |why: &str| BadBehaviour { spec: spec.to_string(), why: why.to_string() };
    let (name, rest) = spec.split_once('=').ok_or_else(|| bad("missing '='"))?;
    let mut b = base(name);
    for item in rest.split(',').filter(|s| !s.is_empty()) {
        let (k, v) = item.split_once(':').unwrap_or((item, ""));
        match k {
            "forever" => b.run = None,
            "run" => b.run = Some(duration(v).ok_or_else(|| bad("run needs seconds"))?),
            "exit" => b.exit_code = v.parse().map_err(|_| bad("exit needs a number"))?,
            "term" if v == "ignore" => b.term = None,
            "term" => b.term = Some(duration(v).ok_or_else(|| bad("term needs seconds or 'ignore'"))?),
            "start-delay" => b.start_delay = duration(v).ok_or_else(|| bad("start-delay needs seconds"))?,
            other => return Err(bad(&format!("unknown key {other:?}"))),
        }
    }
    Ok((name.to_string(), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Container {
        Container { command: Some(vec!["sh".into(), "-c".into(), script.into()]), ..Default::default() }
    }

    #[test]
    fn seed_shapes() {
        let shipper = guess(&sh("while true; do\n  echo \"shipping logs...\"\n  sleep 2\ndone\n"));
        assert_eq!((shipper.behaviour.run, shipper.behaviour.term), (None, None));
        let task = guess(&sh("echo \"task done\" && sleep 5"));
        assert_eq!((task.behaviour.run, task.behaviour.exit_code), (Some(Duration::from_secs(5)), 0));
        let trapped = guess(&sh("trap 'exit 0' TERM; sleep 3; exit 2"));
        assert_eq!((trapped.behaviour.term, trapped.behaviour.exit_code), (Some(Duration::ZERO), 2));
        let default = guess(&Container::default());
        assert_eq!(default.behaviour.run, None);
    }

    #[test]
    fn overrides() {
        let (name, b) = parse_override("main=run:5s,exit:1,term:ignore", |_| Behaviour::default()).unwrap();
        assert_eq!((name.as_str(), b.run, b.exit_code, b.term), ("main", Some(Duration::from_secs(5)), 1, None));
        assert!(parse_override("main", |_| Behaviour::default()).is_err());
        assert!(parse_override("main=run:x", |_| Behaviour::default()).is_err());
    }
}
