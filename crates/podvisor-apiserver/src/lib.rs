//! What the Kubernetes API server does with a request before and after the store: admission
//! (one path for every write: strict decoding into the typed object, defaults, validation,
//! normalisation), JSON, merge and strategic merge patches, field ownership for server-side
//! apply, label and field selectors, server-side Tables, and protobuf request bodies.
//!
//! The object rules it applies (kinds, defaults, validation) are in `podvisor-objects`.

#![warn(missing_docs)]

pub mod admission;
pub mod ephemeral;
pub mod json_patch;
pub mod managed;
pub mod patch;
pub mod protobuf;
pub mod scale;
pub mod selector;
pub mod services;
pub mod table;
