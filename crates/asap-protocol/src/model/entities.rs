//! Entities: the manifest an agent publishes, and the records of conversations,
//! tasks, messages, artifacts and state snapshots (wire spec section 7).

use serde_json::Value;

use super::dialect::Dialect;
use super::enums::{MessageRole, TaskStatus};
use super::envelope::{ASAP_PROTOCOL_VERSION, agent_urn};
use super::errors::{AsapError, SUPPORTED_AUTH_SCHEMES};
use super::macros::model;
use super::manifest2::{
    self, HardwareCapability, InferenceCapability, SlaDefinition, VerificationStatus,
};
use super::pyrepr::python_repr;
use super::timestamp::Timestamp;
use super::validation::{
    Checked, ErrorKind, Fields, Loc, at_least, boolean, bounded_integer, fail, list, object, rule,
    string, string_list,
};
use super::version::is_pep440_version;
use super::{DecodeError, Model, ValidationError};
use crate::json::JsonObject;

/// Default `Manifest.ttl_seconds`: how long an agent counts as alive without a check.
pub const DEFAULT_MANIFEST_TTL_SECONDS: i64 = 300;

/// Deepest sub-task nesting allowed (`Task.depth`).
pub const MAX_TASK_DEPTH: i64 = 10;

model! {
    /// A skill an agent offers.
    pub struct Skill {
        /// Its id, as `TaskRequest.skill_id` names it.
        pub id: String = required(string),
        /// What it does.
        pub description: String = required(string),
        /// JSON Schema of its input (not enforced).
        #[serde(default)]
        pub input_schema: Option<JsonObject> = optional(object),
        /// JSON Schema of its output (not enforced).
        #[serde(default)]
        pub output_schema: Option<JsonObject> = optional(object),
    }
}

impl Skill {
    /// A skill with no schemas.
    pub fn new(id: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            description: description.into(),
            input_schema: None,
            output_schema: None,
        }
    }
}

fn skills(value: &Value, loc: &Loc<'_>) -> Checked<Vec<Skill>> {
    list(value, loc, Skill::validate_at)
}

/// What an agent can do.
///
/// `hardware` and `inference` are 2.x members: only read from a manifest in the 2.x
/// dialect, written only when set (see [`Manifest::from_wire`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Capability {
    /// Protocol version (`"0.1"` by default).
    #[serde(default)]
    pub asap_version: String,
    /// Its skills.
    #[serde(default)]
    pub skills: Vec<Skill>,
    /// Whether it keeps state snapshots.
    #[serde(default)]
    pub state_persistence: bool,
    /// Whether it streams responses.
    #[serde(default)]
    pub streaming: bool,
    /// MCP tools it exposes.
    #[serde(default)]
    pub mcp_tools: Vec<String>,
    /// The hardware hosting the agent (2.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware: Option<HardwareCapability>,
    /// How the agent runs inference (2.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceCapability>,
}

/// `Capability` members of the 1.1 model.
const CAPABILITY_1_1: &[&str] = &[
    "asap_version",
    "skills",
    "state_persistence",
    "streaming",
    "mcp_tools",
];

/// `Capability` members of the 2.x model.
const CAPABILITY_2: &[&str] = &[
    "asap_version",
    "skills",
    "state_persistence",
    "streaming",
    "mcp_tools",
    "hardware",
    "inference",
];

impl Capability {
    /// The capability in the 2.x shape: every member of the 2.x model in its order,
    /// absent ones as `null`, as 2.5.10 writes it.
    pub fn to_wire_value_2x(&self) -> Value {
        let Value::Object(mut map) = self.to_value() else {
            unreachable!("a capability serializes to an object")
        };
        let ordered = CAPABILITY_2
            .iter()
            .map(|name| ((*name).to_owned(), map.remove(*name).unwrap_or(Value::Null)))
            .collect();
        Value::Object(ordered)
    }

    /// Validates `value` with the model of `dialect` (1.1: the 2.x members are unknown).
    pub fn validate_in(value: &Value, loc: &Loc<'_>, dialect: Dialect) -> Checked<Self> {
        let two = dialect.is_2x();
        let known = if two { CAPABILITY_2 } else { CAPABILITY_1_1 };
        let mut fields = Fields::new(value, loc, Self::NAME, known)?;
        let asap_version =
            fields.defaulted("asap_version", || ASAP_PROTOCOL_VERSION.to_owned(), string);
        let skills = fields.defaulted("skills", Vec::new, skills);
        let state_persistence = fields.defaulted("state_persistence", || false, boolean);
        let streaming = fields.defaulted("streaming", || false, boolean);
        let mcp_tools = fields.defaulted("mcp_tools", Vec::new, string_list);
        let (hardware, inference) = if two {
            (
                fields.optional("hardware", manifest2::hardware),
                fields.optional("inference", InferenceCapability::validate_at),
            )
        } else {
            (Some(None), Some(None))
        };
        fields.finish()?;
        let read = "every member was read when finish() succeeds";
        Ok(Self {
            asap_version: asap_version.expect(read),
            skills: skills.expect(read),
            state_persistence: state_persistence.expect(read),
            streaming: streaming.expect(read),
            mcp_tools: mcp_tools.expect(read),
            hardware: hardware.expect(read),
            inference: inference.expect(read),
        })
    }
}

impl Model for Capability {
    const NAME: &'static str = "Capability";

    /// The 1.1 model.
    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        Self::validate_in(value, loc, Dialect::V1_1)
    }
}

super::macros::deserialize_by_model!(Capability);

impl Default for Capability {
    fn default() -> Self {
        Self {
            asap_version: ASAP_PROTOCOL_VERSION.to_owned(),
            skills: Vec::new(),
            state_persistence: false,
            streaming: false,
            mcp_tools: Vec::new(),
            hardware: None,
            inference: None,
        }
    }
}

model! {
    /// Where an agent listens.
    pub struct Endpoint {
        /// The URL of `POST /asap`.
        pub asap: String = required(string),
        /// The WebSocket URL.
        #[serde(default)]
        pub events: Option<String> = optional(string),
    }
}

model! {
    /// How to authenticate to an agent.
    pub struct AuthScheme {
        /// Accepted schemes: `bearer` and/or `basic` (any case).
        pub schemes: Vec<String> = required(string_list),
        /// OAuth2 details (`authorization_url`, `token_url`, `scopes`).
        #[serde(default)]
        pub oauth2: Option<JsonObject> = optional(object),
    }
}

fn manifest_version(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |version| {
        if is_pep440_version(version) {
            Ok(())
        } else {
            Err(format!(
                "Invalid semantic version '{version}': Invalid version: {}",
                python_repr(version)
            ))
        }
    })
}

fn ttl_seconds(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(1), None)
}

fn check_auth_schemes(manifest: &Manifest, input: &Value, loc: &Loc<'_>) -> Checked<()> {
    match manifest.unsupported_auth_scheme() {
        None => Ok(()),
        Some(error) => fail(
            ErrorKind::ValueError {
                message: error.to_string(),
            },
            loc,
            input,
        ),
    }
}

/// The self-description an agent publishes at `/.well-known/asap/manifest.json`.
///
/// One type for both dialects. `supported_versions`, `sla`, `verification` (and
/// [`Capability::hardware`] / [`Capability::inference`]) are the 2.x members: `None`
/// in a manifest read with the 1.1 model, and then not written, so a 1.1 manifest
/// keeps its bytes. [`Model::from_value`] reads the 1.1 model (2.x members refused as
/// unknown); [`Manifest::from_wire`] picks the model from the document.
#[derive(Debug, Clone, PartialEq, serde::Serialize, schemars::JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Manifest {
    /// The agent's URN.
    pub id: String,
    /// A readable name.
    pub name: String,
    /// Its version: any PEP 440 version (`1.0.0`, `2026.01`, `1.0.0-rc.1`), kept as written.
    pub version: String,
    /// What it does.
    pub description: String,
    /// Its capabilities.
    pub capabilities: Capability,
    /// Where it listens.
    pub endpoints: Endpoint,
    /// The ASAP versions the agent speaks (2.x; at least one, values not checked).
    /// `Some` exactly when the manifest was read with the 2.x model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supported_versions: Option<Vec<String>>,
    /// How to authenticate.
    #[serde(default)]
    pub auth: Option<AuthScheme>,
    /// An opaque signature (not verified in 1.1).
    #[serde(default)]
    pub signature: Option<String>,
    /// The service levels it promises (2.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sla: Option<SlaDefinition>,
    /// Whether a registry verified it (2.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    /// Seconds the agent counts as alive without a new check (at least 1).
    #[serde(default)]
    pub ttl_seconds: i64,
}

/// `Manifest` members of the 1.1 model.
const MANIFEST_1_1: &[&str] = &[
    "id",
    "name",
    "version",
    "description",
    "capabilities",
    "endpoints",
    "auth",
    "signature",
    "ttl_seconds",
];

/// `Manifest` members of the 2.x model, in its output order.
const MANIFEST_2: &[&str] = &[
    "id",
    "name",
    "version",
    "description",
    "capabilities",
    "endpoints",
    "supported_versions",
    "auth",
    "signature",
    "sla",
    "verification",
    "ttl_seconds",
];

/// Top-level members only the 2.x manifest has.
const MANIFEST_2_ONLY: &[&str] = &["supported_versions", "sla", "verification"];

/// `capabilities` members only the 2.x manifest has.
const CAPABILITY_2_ONLY: &[&str] = &["hardware", "inference"];

impl Model for Manifest {
    const NAME: &'static str = "Manifest";

    /// The 1.1 model.
    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        Self::validate_in(value, loc, Dialect::V1_1)
    }
}

super::macros::deserialize_by_model!(Manifest);

impl Manifest {
    /// Validates `value` with the model of `dialect`: 1.1 refuses the 2.x members as
    /// unknown; 2.x reads them (`supported_versions` defaults to `["2.2"]`) and, like
    /// 2.5.10, refuses any other unknown member at every level.
    pub fn validate_in(value: &Value, loc: &Loc<'_>, dialect: Dialect) -> Checked<Self> {
        let two = dialect.is_2x();
        let known = if two { MANIFEST_2 } else { MANIFEST_1_1 };
        let mut fields = Fields::new(value, loc, Self::NAME, known)?;
        let id = fields.required("id", agent_urn);
        let name = fields.required("name", string);
        let version = fields.required("version", manifest_version);
        let description = fields.required("description", string);
        let capabilities = fields.required("capabilities", |v, l| {
            Capability::validate_in(v, l, dialect)
        });
        let endpoints = fields.required("endpoints", Endpoint::validate_at);
        let supported_versions = if two {
            fields
                .defaulted(
                    "supported_versions",
                    || {
                        manifest2::DEFAULT_SUPPORTED_VERSIONS
                            .iter()
                            .map(|v| (*v).to_owned())
                            .collect()
                    },
                    manifest2::supported_versions,
                )
                .map(Some)
        } else {
            Some(None)
        };
        let auth = fields.optional("auth", AuthScheme::validate_at);
        let signature = fields.optional("signature", string);
        let (sla, verification) = if two {
            (
                fields.optional("sla", SlaDefinition::validate_at),
                fields.optional("verification", VerificationStatus::validate_at),
            )
        } else {
            (Some(None), Some(None))
        };
        let ttl_seconds =
            fields.defaulted("ttl_seconds", || DEFAULT_MANIFEST_TTL_SECONDS, ttl_seconds);
        fields.finish()?;
        let read = "every member was read when finish() succeeds";
        let manifest = Self {
            id: id.expect(read),
            name: name.expect(read),
            version: version.expect(read),
            description: description.expect(read),
            capabilities: capabilities.expect(read),
            endpoints: endpoints.expect(read),
            supported_versions: supported_versions.expect(read),
            auth: auth.expect(read),
            signature: signature.expect(read),
            sla: sla.expect(read),
            verification: verification.expect(read),
            ttl_seconds: ttl_seconds.expect(read),
        };
        check_auth_schemes(&manifest, value, loc)?;
        Ok(manifest)
    }

    /// Whether `value` declares the 2.x dialect: it has `supported_versions`, `sla`,
    /// `verification`, `capabilities.hardware` or `capabilities.inference`.
    pub fn declares_2x(value: &Value) -> bool {
        let has_any = |object: Option<&Value>, names: &[&str]| {
            object
                .and_then(Value::as_object)
                .is_some_and(|map| names.iter().any(|name| map.contains_key(*name)))
        };
        has_any(Some(value), MANIFEST_2_ONLY)
            || has_any(value.get("capabilities"), CAPABILITY_2_ONLY)
    }

    /// Reads a manifest as an agent serves it: with the 2.x model when it
    /// [declares 2.x](Self::declares_2x), else with the 1.1 model.
    ///
    /// ```
    /// use asap_protocol::model::Manifest;
    /// let v2 = serde_json::json!({"id": "urn:asap:agent:a", "name": "A", "version": "1.0",
    ///     "description": "d", "capabilities": {"hardware": {"class_": "sbc"}},
    ///     "endpoints": {"asap": "http://a/asap"}, "supported_versions": ["2.2"]});
    /// let manifest = Manifest::from_wire(&v2).unwrap();
    /// assert!(manifest.is_2x());
    /// ```
    pub fn from_wire(value: &Value) -> Result<Self, ValidationError> {
        let dialect = if Self::declares_2x(value) {
            Dialect::V2_2
        } else {
            Dialect::V1_1
        };
        Self::validate_in(value, &Loc::Root, dialect).map_err(|errors| ValidationError {
            title: Self::NAME,
            errors,
        })
    }

    /// Parses JSON text and reads it as [`Manifest::from_wire`] does.
    pub fn from_wire_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let value = crate::json::parse(bytes)?;
        Ok(Self::from_wire(&value)?)
    }

    /// Whether it was read with the 2.x model (it has `supported_versions`).
    pub fn is_2x(&self) -> bool {
        self.supported_versions.is_some()
    }

    /// The manifest in its dialect's shape: [`Model::to_value`] for 1.1; for 2.x, every
    /// member of the 2.x model in its order, absent ones as `null`, as 2.5.10 serves it.
    pub fn to_wire_value(&self) -> Value {
        let mut value = self.to_value();
        if !self.is_2x() {
            return value;
        }
        let Value::Object(map) = &mut value else {
            unreachable!("a manifest serializes to an object")
        };
        map.insert("capabilities".into(), self.capabilities.to_wire_value_2x());
        let ordered = MANIFEST_2
            .iter()
            .map(|name| {
                let member = map.remove(*name).unwrap_or(Value::Null);
                ((*name).to_owned(), member)
            })
            .collect();
        Value::Object(ordered)
    }

    /// A manifest with default capabilities, no auth and the default TTL.
    ///
    /// ```
    /// use asap_protocol::model::{Manifest, Model, Skill};
    /// let mut m = Manifest::new("urn:asap:agent:echo", "Echo", "1.0.0", "Echoes", "http://127.0.0.1:8000/asap");
    /// m.capabilities.skills.push(Skill::new("echo", "Echo back the input"));
    /// assert!(Manifest::from_value(&m.to_value()).is_ok());
    /// ```
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        asap_url: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            description: description.into(),
            capabilities: Capability::default(),
            endpoints: Endpoint {
                asap: asap_url.into(),
                events: None,
            },
            auth: None,
            signature: None,
            supported_versions: None,
            sla: None,
            verification: None,
            ttl_seconds: DEFAULT_MANIFEST_TTL_SECONDS,
        }
    }

    /// [`Manifest::to_wire_value`] as `model_dump_json()` writes it (compact), with
    /// the wire key `class` in `capabilities.hardware`.
    pub fn to_wire_json(&self) -> String {
        crate::json::to_model_json(&self.to_wire_value())
    }

    /// The first `auth.schemes` entry other than `bearer` or `basic` (compared
    /// case-insensitively), as the `asap:auth/unsupported_scheme` error.
    pub fn unsupported_auth_scheme(&self) -> Option<AsapError> {
        let auth = self.auth.as_ref()?;
        auth.schemes
            .iter()
            .find(|s| !SUPPORTED_AUTH_SCHEMES.contains(&s.to_lowercase().as_str()))
            .map(|scheme| AsapError::UnsupportedAuthScheme {
                scheme: scheme.clone(),
            })
    }

    /// The skill with this id.
    pub fn skill(&self, id: &str) -> Option<&Skill> {
        self.capabilities.skills.iter().find(|s| s.id == id)
    }
}

fn non_empty_strings(value: &Value, loc: &Loc<'_>) -> Checked<Vec<String>> {
    at_least(string_list(value, loc)?, 1, loc, value)
}

model! {
    /// An agent as a registry lists it.
    pub struct Agent {
        /// Its URN.
        pub id: String = required(agent_urn),
        /// Where its manifest is.
        pub manifest_uri: String = required(string),
        /// Capability names (at least one).
        pub capabilities: Vec<String> = required(non_empty_strings),
    }
}

model! {
    /// A conversation between agents.
    pub struct Conversation {
        /// Its id.
        pub id: String = required(string),
        /// Who takes part (at least one; any strings).
        pub participants: Vec<String> = required(non_empty_strings),
        /// When it started.
        pub created_at: Timestamp = required(Timestamp::validate),
        /// Free-form metadata.
        #[serde(default)]
        pub metadata: Option<JsonObject> = optional(object),
    }
}

fn task_depth(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(0), Some(MAX_TASK_DEPTH))
}

model! {
    /// A unit of work and where it is in its lifecycle.
    pub struct Task {
        /// Its id.
        pub id: String = required(string),
        /// Its conversation.
        pub conversation_id: String = required(string),
        /// Its parent, for sub-tasks.
        #[serde(default)]
        pub parent_task_id: Option<String> = optional(string),
        /// Its status (moved by [`Task::transition`]).
        pub status: TaskStatus = required(TaskStatus::validate),
        /// Nesting depth, 0 for a root task, at most 10.
        #[serde(default)]
        pub depth: i64 = defaulted(|| 0, task_depth),
        /// Progress (percent, message, ETA).
        #[serde(default)]
        pub progress: Option<JsonObject> = optional(object),
        /// When it was created.
        pub created_at: Timestamp = required(Timestamp::validate),
        /// When it last changed.
        pub updated_at: Timestamp = required(Timestamp::validate),
    }
}

impl Task {
    /// A new root task in `submitted`, created now.
    pub fn new(id: impl Into<String>, conversation_id: impl Into<String>) -> Self {
        let now = Timestamp::now();
        Self {
            id: id.into(),
            conversation_id: conversation_id.into(),
            parent_task_id: None,
            status: TaskStatus::Submitted,
            depth: 0,
            progress: None,
            created_at: now,
            updated_at: now,
        }
    }
}

model! {
    /// A message within a task.
    pub struct Message {
        /// Its id.
        pub id: String = required(string),
        /// Its task.
        pub task_id: String = required(string),
        /// Who wrote it (any string).
        pub sender: String = required(string),
        /// Their role.
        pub role: MessageRole = required(MessageRole::validate),
        /// Part ids.
        pub parts: Vec<String> = required(string_list),
        /// When it was written.
        pub timestamp: Timestamp = required(Timestamp::validate),
    }
}

model! {
    /// A result a task produced.
    pub struct Artifact {
        /// Its id.
        pub id: String = required(string),
        /// Its task.
        pub task_id: String = required(string),
        /// A readable name.
        pub name: String = required(string),
        /// Part ids.
        pub parts: Vec<String> = required(string_list),
        /// When it was created.
        pub created_at: Timestamp = required(Timestamp::validate),
    }
}

fn snapshot_version(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    bounded_integer(value, loc, Some(1), None)
}

model! {
    /// A saved state of a task, versioned from 1.
    pub struct StateSnapshot {
        /// Its id.
        pub id: String = required(string),
        /// Its task.
        pub task_id: String = required(string),
        /// Its version (at least 1).
        pub version: i64 = required(snapshot_version),
        /// The state.
        pub data: JsonObject = required(object),
        /// Whether it is a significant checkpoint.
        #[serde(default)]
        pub checkpoint: bool = defaulted(|| false, boolean),
        /// When it was taken.
        pub created_at: Timestamp = required(Timestamp::validate),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest() -> Value {
        json!({
            "id": "urn:asap:agent:echo-agent", "name": "Echo Agent", "version": "0.3.0",
            "description": "Echoes task input as output",
            "capabilities": {"skills": [{"id": "echo", "description": "Echo back the input"}]},
            "endpoints": {"asap": "http://127.0.0.1:18001/asap"}
        })
    }

    fn first(
        model: Result<impl std::fmt::Debug, crate::model::ValidationError>,
    ) -> (String, String, String) {
        let e = model.unwrap_err().errors.remove(0);
        (
            e.kind.type_name().into(),
            serde_json::to_string(&e.loc).unwrap(),
            e.kind.message(),
        )
    }

    #[test]
    fn manifest_defaults_match_the_well_known_capture() {
        let m = Manifest::from_value(&manifest()).unwrap();
        assert_eq!(
            m.to_json(),
            r#"{"id":"urn:asap:agent:echo-agent","name":"Echo Agent","version":"0.3.0","description":"Echoes task input as output","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo back the input","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false,"mcp_tools":[]},"endpoints":{"asap":"http://127.0.0.1:18001/asap","events":null},"auth":null,"signature":null,"ttl_seconds":300}"#
        );
        assert_eq!(m.skill("echo").unwrap().description, "Echo back the input");
        assert!(m.skill("nope").is_none());
    }

    #[test]
    fn manifest_rules() {
        let mut m = manifest();
        m["version"] = json!("1.0.0-SNAPSHOT");
        assert_eq!(
            first(Manifest::from_value(&m)).2,
            "Value error, Invalid semantic version '1.0.0-SNAPSHOT': Invalid version: '1.0.0-SNAPSHOT'"
        );
        let mut m = manifest();
        m["ttl_seconds"] = json!(0);
        assert_eq!(
            first(Manifest::from_value(&m)),
            (
                "greater_than_equal".into(),
                r#"["ttl_seconds"]"#.into(),
                "Input should be greater than or equal to 1".into()
            )
        );
        let mut m = manifest();
        m["capabilities"]["skills"][0]["extra"] = json!(1);
        assert_eq!(
            first(Manifest::from_value(&m)).1,
            r#"["capabilities","skills",0,"extra"]"#
        );
        let mut m = manifest();
        m["endpoints"] = json!("http://x");
        assert_eq!(
            first(Manifest::from_value(&m)).2,
            "Input should be a valid dictionary or instance of Endpoint"
        );
        let mut m = manifest();
        m["auth"] = json!({"schemes": ["Bearer", "BASIC"]});
        assert!(Manifest::from_value(&m).is_ok());
        m["auth"] = json!({"schemes": ["bearer", "oauth2"]});
        let parsed = Manifest::from_value(&m);
        assert!(
            first(parsed)
                .2
                .contains("Unsupported authentication scheme 'oauth2'")
        );
    }

    #[test]
    fn list_minimums_and_bounds() {
        let agent =
            json!({"id": "urn:asap:agent:a", "manifest_uri": "https://a", "capabilities": []});
        assert_eq!(
            first(Agent::from_value(&agent)),
            (
                "too_short".into(),
                r#"["capabilities"]"#.into(),
                "List should have at least 1 item after validation, not 0".into()
            )
        );
        let conv =
            json!({"id": "c", "participants": ["not-a-urn"], "created_at": "2026-01-15T10:30:00Z"});
        assert!(Conversation::from_value(&conv).is_ok());
        let task = |depth: Value| json!({"id": "t", "conversation_id": "c", "status": "working", "depth": depth, "created_at": 0, "updated_at": 0});
        assert_eq!(
            first(Task::from_value(&task(json!(11)))).2,
            "Input should be less than or equal to 10"
        );
        assert_eq!(
            first(Task::from_value(&task(json!(-1)))).2,
            "Input should be greater than or equal to 0"
        );
        assert_eq!(Task::from_value(&task(json!(10))).unwrap().depth, 10);
        let snap = json!({"id": "s", "task_id": "t", "version": 0, "data": {}, "created_at": "2026-01-15"});
        assert_eq!(
            first(StateSnapshot::from_value(&snap)).0,
            "greater_than_equal"
        );
    }

    #[test]
    fn task_golden_bytes() {
        let text = r#"{"id":"task_01HX5K4N","conversation_id":"conv_01HX5K3MQVN8","parent_task_id":null,"status":"working","depth":1,"progress":{"percent":45},"created_at":"2026-01-15T10:30:00Z","updated_at":"2026-01-15T10:31:00.250000Z"}"#;
        assert_eq!(Task::from_json(text.as_bytes()).unwrap().to_json(), text);
    }

    #[test]
    fn records_round_trip() {
        for (text, kind) in [
            (
                r#"{"id":"msg_1","task_id":"t","sender":"urn:asap:agent:a","role":"assistant","parts":["p1"],"timestamp":"2026-01-15T10:30:00Z"}"#,
                "Message",
            ),
            (
                r#"{"id":"art_1","task_id":"t","name":"report","parts":[],"created_at":"2026-01-15T10:30:00+05:30"}"#,
                "Artifact",
            ),
            (
                r#"{"id":"snap_1","task_id":"t","version":3,"data":{"k":"v"},"checkpoint":true,"created_at":"2026-01-15T10:30:00"}"#,
                "StateSnapshot",
            ),
            (
                r#"{"id":"conv_1","participants":["a","b"],"created_at":"2026-01-15T10:30:00Z","metadata":null}"#,
                "Conversation",
            ),
            (
                r#"{"id":"urn:asap:agent:a","manifest_uri":"https://a/m.json","capabilities":["echo"]}"#,
                "Agent",
            ),
        ] {
            let out = match kind {
                "Message" => Message::from_json(text.as_bytes()).unwrap().to_json(),
                "Artifact" => Artifact::from_json(text.as_bytes()).unwrap().to_json(),
                "StateSnapshot" => StateSnapshot::from_json(text.as_bytes()).unwrap().to_json(),
                "Conversation" => Conversation::from_json(text.as_bytes()).unwrap().to_json(),
                _ => Agent::from_json(text.as_bytes()).unwrap().to_json(),
            };
            assert_eq!(out, text);
        }
    }
}
