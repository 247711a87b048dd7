//! Real containers for podvisor: a local image store, OCI bundles run by an OCI runtime binary
//! (runc by default), pod sandboxes (one network namespace per pod), volumes and logs.

#![warn(missing_docs)]

pub mod bundle;
pub mod image;
mod layer;
pub mod runc;
