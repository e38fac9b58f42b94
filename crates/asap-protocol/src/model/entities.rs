//! Entities: the manifest an agent publishes, and the records of conversations,
//! tasks, messages, artifacts and state snapshots (wire spec section 7).

use serde_json::Value;

use super::Model;
use super::enums::{MessageRole, TaskStatus};
use super::envelope::{ASAP_PROTOCOL_VERSION, agent_urn};
use super::errors::{AsapError, SUPPORTED_AUTH_SCHEMES};
use super::macros::model;
use super::pyrepr::python_repr;
use super::timestamp::Timestamp;
use super::validation::{
    Checked, ErrorKind, Loc, at_least, boolean, bounded_integer, fail, list, object, rule, string,
    string_list,
};
use super::version::is_pep440_version;
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

model! {
    /// What an agent can do.
    pub struct Capability {
        /// Protocol version (`"0.1"` by default).
        #[serde(default)]
        pub asap_version: String = defaulted(|| ASAP_PROTOCOL_VERSION.to_owned(), string),
        /// Its skills.
        #[serde(default)]
        pub skills: Vec<Skill> = defaulted(Vec::new, skills),
        /// Whether it keeps state snapshots.
        #[serde(default)]
        pub state_persistence: bool = defaulted(|| false, boolean),
        /// Whether it streams responses.
        #[serde(default)]
        pub streaming: bool = defaulted(|| false, boolean),
        /// MCP tools it exposes.
        #[serde(default)]
        pub mcp_tools: Vec<String> = defaulted(Vec::new, string_list),
    }
}

impl Default for Capability {
    fn default() -> Self {
        Self {
            asap_version: ASAP_PROTOCOL_VERSION.to_owned(),
            skills: Vec::new(),
            state_persistence: false,
            streaming: false,
            mcp_tools: Vec::new(),
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

model! {
    /// The self-description an agent publishes at `/.well-known/asap/manifest.json`.
    pub struct Manifest check check_auth_schemes {
        /// The agent's URN.
        pub id: String = required(agent_urn),
        /// A readable name.
        pub name: String = required(string),
        /// Its version: any PEP 440 version (`1.0.0`, `2026.01`, `1.0.0-rc.1`), kept as written.
        pub version: String = required(manifest_version),
        /// What it does.
        pub description: String = required(string),
        /// Its capabilities.
        pub capabilities: Capability = required(Capability::validate_at),
        /// Where it listens.
        pub endpoints: Endpoint = required(Endpoint::validate_at),
        /// How to authenticate.
        #[serde(default)]
        pub auth: Option<AuthScheme> = optional(AuthScheme::validate_at),
        /// An opaque signature (not verified in 1.1).
        #[serde(default)]
        pub signature: Option<String> = optional(string),
        /// Seconds the agent counts as alive without a new check (at least 1).
        #[serde(default)]
        pub ttl_seconds: i64 = defaulted(|| DEFAULT_MANIFEST_TTL_SECONDS, ttl_seconds),
    }
}

impl Manifest {
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
            ttl_seconds: DEFAULT_MANIFEST_TTL_SECONDS,
        }
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
