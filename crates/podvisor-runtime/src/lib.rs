//! Real containers for podvisor: a local image store, OCI bundles run by an OCI runtime binary
//! (runc by default), pod sandboxes (one network namespace per pod), volumes and logs.
//!
//! Each module is one concern of a container's life on the host; the node crate puts them
//! together under the lifecycle engine's orders.

#![warn(missing_docs)]

pub mod bundle;
pub mod cgroup;
pub mod dns;
pub mod env;
pub mod files;
pub mod image;
mod layer;
pub mod logs;
pub mod monitor;
pub mod namespaces;
pub mod netlink;
pub mod network;
pub mod objects;
pub mod pty;
pub mod pull;
pub mod resolv;
pub mod rootfs;
pub mod runc;
pub mod sandbox;
pub mod seccomp;
pub mod services;
pub mod state;
pub mod subpath;
pub mod usage;
pub mod volumes;
