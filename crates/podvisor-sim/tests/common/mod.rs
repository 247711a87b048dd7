//! Helpers shared by the scenario suites.
#![allow(dead_code)]

use podvisor_sim::Sim;

/// The restart count of a container.
pub fn rc(sim: &Sim, name: &str) -> i32 {
    sim.container(name).map_or(-1, |c| c.restart_count)
}

/// A container's state as a short string: `running`, `waiting:<reason>`, `terminated:<code>:<reason>`.
pub fn state(sim: &Sim, name: &str) -> String {
    let Some(st) = sim.container(name).and_then(|c| c.state.clone()) else { return "none".into() };
    if st.running.is_some() {
        "running".into()
    } else if let Some(w) = st.waiting {
        format!("waiting:{}", w.reason.unwrap_or_default())
    } else if let Some(t) = st.terminated {
        format!("terminated:{}:{}", t.exit_code, t.reason.unwrap_or_default())
    } else {
        "none".into()
    }
}

/// Whether a container reports `started: true`.
pub fn is_started(sim: &Sim, name: &str) -> bool {
    sim.container(name).and_then(|c| c.started) == Some(true)
}

/// The image a container's status reports.
pub fn image(sim: &Sim, name: &str) -> String {
    sim.container(name).map(|c| c.image.clone()).unwrap_or_default()
}

/// The pod's condition status ("True"/"False") of a type.
pub fn condition(sim: &Sim, type_: &str) -> String {
    sim.engine()
        .status()
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

/// Whether any recorded event has this reason and contains `text` in its message.
pub fn has_event(sim: &Sim, reason: &str, text: &str) -> bool {
    sim.events().iter().any(|e| e.reason == reason && e.message.contains(text))
}
