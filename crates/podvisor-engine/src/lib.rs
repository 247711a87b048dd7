//! podvisor's lifecycle engine: what the kubelet decides for a pod with init containers,
//! native sidecars and app containers, as a pure state machine.
//!
//! The engine does no IO and reads no clock. A driver (real containers in production, a
//! simulated runtime in tests) feeds it [`Input`]s and the current time ([`Now`]: a monotonic
//! reading that every deadline is measured on, and the wall clock's, which only stamps the
//! status), carries out the [`Action`]s it returns, and calls [`PodEngine::handle_timeout`] at
//! [`PodEngine::poll_timeout`], an [`Instant`] of the monotonic clock. Rules cited as `R…` are
//! those of the project's kubelet spec.
//!
//! ```text
//!   inputs (runtime, probes, API) ──► PodEngine ──► actions (start, signal, hook, probe, record)
//!                     now ─────────►     │
//!                                        └──► PodStatus (phase, conditions, container statuses)
//! ```

#![warn(missing_docs)]

mod backoff;
pub mod clock;
pub mod decide;
mod duration;
mod io;
mod kill;
pub mod model;
mod pod;
pub mod probe;
pub mod record;

pub use clock::{Instant, Now};
pub use duration::go_duration;
pub use io::{
    Action, ContainerRef, EventContainer, EventType, ExitCause, Found, FoundExit, Hook, Input, PodEvent, ProbeKind,
    ProbeOutcome, Signal,
};
pub use model::{PodModel, RestartPolicy, Role};
pub use pod::HOST_IP;
pub use pod::{NodeFacts, PodEngine, PodIdentity, Prior};
