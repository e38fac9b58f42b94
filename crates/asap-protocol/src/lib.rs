//! # asap-protocol
//!
//! A Rust implementation of ASAP, the Async Simple Agent Protocol, release line 1.1,
//! wire-compatible with the reference implementation (the Python package
//! `asap-protocol` 1.1.0).
//!
//! This crate is organised by protocol layer:
//!
//! - [`json`]: JSON encoding byte-compatible with the reference's encoders.
//! - [`model`]: the wire model (envelope, payloads, parts, entities), the task state
//!   machine and the `asap:*` error codes.
//!
//! ```
//! use asap_protocol::model::{Envelope, Model, TaskRequest};
//!
//! // Build a request, send it as JSON, read it back on the other side.
//! let request = TaskRequest::new("conv_1", "echo", serde_json::json!({"message": "hello"}));
//! let envelope = Envelope::new("urn:asap:agent:client", "urn:asap:agent:echo", request);
//! let bytes = envelope.to_json();
//!
//! let received = Envelope::from_json(bytes.as_bytes()).expect("valid envelope");
//! assert_eq!(received.payload_type, "task.request");
//! assert_eq!(received.payload_as::<TaskRequest>().unwrap().input["message"], "hello");
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "oauth2")]
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "conformance")]
pub mod conformance;
#[cfg(feature = "client")]
pub mod discovery;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod json;
pub mod model;
pub mod rpc;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "signing")]
pub mod signing;
#[cfg(any(feature = "server", feature = "client"))]
mod spans;
pub mod store;
#[cfg(feature = "otel")]
pub mod telemetry;
#[cfg(any(feature = "server", feature = "client"))]
pub mod trace_context;
#[cfg(feature = "webhooks")]
pub mod webhook;

/// What `Debug` output shows in place of a secret (tokens, client secrets, webhook
/// secrets).
#[allow(dead_code)] // unused when no feature with secrets is on
pub(crate) const REDACTED: &str = "[redacted]";

/// The README's Rust examples, compiled as doc tests so they cannot drift from the API.
#[cfg(all(
    doctest,
    feature = "server",
    feature = "client",
    feature = "oauth2",
    feature = "mdns"
))]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
