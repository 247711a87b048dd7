//! The rules of the Kubernetes objects podvisor runs, shared by every crate: the served kinds,
//! the API server's defaults and validation (worded as it words them), resource quantities and
//! the effective resources of a pod with sidecars, kubectl's `get pods` columns, and UIDs.
//!
//! What only the API server does with a request (admission, patches, field ownership, Tables,
//! protobuf) is in `podvisor-apiserver`.

#![warn(missing_docs)]

pub mod columns;
pub mod cron;
pub mod defaults;
pub mod field;
pub mod kinds;
pub mod node_affinity;
pub mod objects;
pub mod openapi;
pub mod priority;
pub mod resources;
pub mod service;
pub mod uid;
pub mod validation;

pub use columns::{PodColumns, human_duration, pod_columns};

/// The Kubernetes version podvisor reports, the same everywhere: the API's `/version`, the
/// node's `kubeletVersion` and `podvisor --version`. Its minor is 1.32 because kubectl's
/// dispatcher picks the client binary from the server's minor, and 1.32 is the kubectl the
/// served API is measured against.
pub const KUBERNETES_VERSION: &str = "v1.32.0";

/// The Kubernetes release whose object types and kubelet rules podvisor follows (the
/// k8s-openapi feature of the workspace, and the kubelet sources of the spec).
pub const KUBERNETES_RULES: &str = "v1.35";
pub use field::{FieldError, Invalid};
pub use objects::validate;
