//! The ASAP 1.1 wire model: envelope, payloads, parts, entities, the task state
//! machine and the `asap:*` error codes (wire spec sections 1 to 8 and 16).
//!
//! Pure data and validation: no I/O, no async. Every model implements [`Model`]:
//! it validates like the reference (pydantic, lax mode, unknown members rejected) and
//! serializes every member in the reference's order.
//!
//! ```
//! use asap_protocol::model::{Envelope, Model, TaskRequest};
//!
//! let request = TaskRequest::new("conv_1", "echo", serde_json::json!({"text": "hi"}));
//! let envelope = Envelope::new("urn:asap:agent:client", "urn:asap:agent:echo", request);
//! let wire = envelope.to_json();
//! let back = Envelope::from_json(wire.as_bytes()).unwrap();
//! assert_eq!(back, envelope);
//! let typed: TaskRequest = back.payload_as().unwrap();
//! assert_eq!(typed.skill_id, "echo");
//! ```

mod macros;

pub mod dialect;
pub mod entities;
pub mod enums;
pub mod envelope;
pub mod errors;
pub mod health;
pub mod ids;
pub mod manifest2;
pub mod metering;
pub mod named;
pub mod parts;
pub mod payloads;
pub mod payloads2;
pub mod pyrepr;
mod recovery;
pub mod schema;
pub mod signed;
pub mod state_machine;
pub mod stream;
pub mod timestamp;
pub mod urn;
pub mod validation;
pub mod version;

use serde::Serialize;
use serde_json::Value;

pub use dialect::{ASAP_VERSION_HEADER, Dialect, UnknownDialect, VersionIncompatible};
pub use entities::{
    Agent, Artifact, AuthScheme, Capability, Conversation, Endpoint, Manifest, Message, Skill,
    StateSnapshot, Task,
};
pub use enums::{
    AckStatus, HardwareClass, HardwareIoType, InferenceMode, MessageRole, TaskStatus, UpdateType,
    VerificationState,
};
pub use envelope::{ASAP_PROTOCOL_VERSION, Envelope, REFERENCE_VERSION, WIRE_RELEASE};
pub use errors::AsapError;
pub use health::{HealthLoad, HealthStatus};
pub use ids::generate_id;
pub use manifest2::{
    HardwareCapability, InferenceCapability, LocalModelInfo, SlaDefinition, VerificationStatus,
};
pub use metering::{UsageAggregate, UsageEvent, UsageMetrics};
pub use parts::{DataPart, FilePart, Part, ResourcePart, TemplatePart, TextPart};
// Every payload model, `Payload`, `PayloadType` and friends: a glob, so a new entry in
// the payload table needs no change here.
pub use payloads::*;
pub use payloads2::{TaskMetrics, TaskRequestConfig, typed_payload};
pub use signed::{SignatureBlock, SignedManifest, TrustLevel};
pub use state_machine::{can_transition, next_states};
pub use stream::{TASK_STREAM, TaskStream, is_stream_bound, normalized_payload_type};
pub use timestamp::Timestamp;
pub use urn::{MAX_URN_LENGTH, validate_agent_urn};
pub use validation::{Checked, ErrorDetail, ErrorKind, Loc, LocItem, ValidationError};
pub use version::is_pep440_version;

/// Why bytes could not be read as a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not JSON (or JSON this implementation refuses, see [`crate::json`]).
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// JSON that does not satisfy the model.
    #[error("{0}")]
    Invalid(#[from] ValidationError),
}

/// A wire model: validated like the reference, serialized like the reference.
pub trait Model: Sized + Serialize {
    /// The model's name, as the reference's class is called (used in error titles).
    const NAME: &'static str;

    /// Validates `value` found at `loc`, collecting every failure.
    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self>;

    /// Validates a whole document.
    fn from_value(value: &Value) -> Result<Self, ValidationError> {
        Self::validate_at(value, &Loc::Root).map_err(|errors| ValidationError {
            title: Self::NAME,
            errors,
        })
    }

    /// Parses and validates JSON text (as [`crate::json::parse`] reads it).
    fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let value = crate::json::parse(bytes)?;
        Ok(Self::from_value(&value)?)
    }

    /// The bytes of the reference's `model_dump_json()`.
    fn to_json(&self) -> String {
        crate::json::to_model_json(self)
    }

    /// The model as a JSON value (member order kept).
    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("ASAP models always serialize")
    }
}
