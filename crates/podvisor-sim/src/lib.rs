//! A simulated container runtime in virtual time.
//!
//! [`Sim`] drives the lifecycle engine against scripted containers ([`Behaviour`]): no
//! processes, no clock, no sleeping. A scenario that takes minutes on a real kubelet runs in
//! microseconds and always the same way. It records a merged timeline of what happened, on
//! which the [`order`] helpers evaluate the kubelet e2e suite's ordering assertions.

#![warn(missing_docs)]

pub mod behaviour;
pub mod builder;
pub mod infer;
pub mod order;
pub mod sim;

pub use behaviour::{Behaviour, HookScript, ProbeScript};
pub use builder::{Ctr, PodBuilder, Timing, secs};
pub use sim::{Entry, Mark, SIM_POD_IP, Sim, epoch};
