//! What the Kubernetes API server and kubectl do with the objects podvisor runs: defaults,
//! validation (worded as the API server words it), kubectl's `get pods` columns, and the
//! effective resources of a pod with sidecars.

#![warn(missing_docs)]

pub mod columns;
pub mod defaults;
pub mod field;
pub mod objects;
pub mod resources;
pub mod validation;

pub use columns::{PodColumns, human_duration, pod_columns};
pub use field::{FieldError, Invalid};
pub use objects::validate;
