//! The lifecycle timeline picture.
//!
//! A [`Timeline`] is built with a [`Recorder`] from what happened to each container (a run's
//! node events, read by [`from_run_events`], or a simulation's marks), then drawn by
//! [`svg`] or [`html`]: one row per container in start order (init containers, sidecars, then
//! the app), its states as bars (running, started, terminating), probe results, hooks and
//! signals as marks, exits with their code, the grace period as a window, and the pod's phase
//! on top. Every mark and bar has a tooltip with what happened. The output is self-contained:
//! no script, no font, nothing fetched.

#![warn(missing_docs)]

mod draw;
mod model;
mod run_events;

pub use draw::{html, svg};
pub use model::{Kind, Recorder, Timeline};
pub use run_events::from_run_events;
