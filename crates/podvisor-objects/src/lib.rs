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
pub mod objects;
pub mod openapi;
pub mod resources;
pub mod service;
pub mod uid;
pub mod validation;

pub use columns::{PodColumns, human_duration, pod_columns};
pub use field::{FieldError, Invalid};
pub use objects::validate;
