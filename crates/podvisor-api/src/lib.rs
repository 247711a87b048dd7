//! What the Kubernetes API server and kubectl do with the objects podvisor runs: defaults,
//! validation (worded as the API server words it), kubectl's `get pods` columns, the served
//! resource types, selectors, patches, server-side Tables, and the effective resources of a pod
//! with sidecars; and protobuf request bodies read into JSON.

#![warn(missing_docs)]

pub mod columns;
pub mod defaults;
pub mod field;
pub mod json_patch;
pub mod kinds;
pub mod managed;
pub mod objects;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod table;
pub mod validation;

pub use columns::{PodColumns, human_duration, pod_columns};
pub use field::{FieldError, Invalid};
pub use objects::validate;
