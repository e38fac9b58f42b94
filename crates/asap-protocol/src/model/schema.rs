//! JSON Schemas (draft 2020-12) of every wire model, laid out as the reference's
//! `schemas/` folder.

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

use super::{
    Agent, Artifact, ArtifactNotify, AuthScheme, Capability, Conversation, DataPart, Endpoint,
    Envelope, FilePart, Manifest, McpResourceData, McpResourceFetch, McpToolCall, McpToolResult,
    Message, MessageAck, MessageSend, Part, ResourcePart, Skill, StateQuery, StateRestore,
    StateSnapshot, Task, TaskCancel, TaskRequest, TaskResponse, TaskUpdate, TemplatePart, TextPart,
};

/// The schema of one model, as a draft 2020-12 root schema titled with its name.
pub fn schema_for<T: JsonSchema>() -> Schema {
    SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>()
}

/// Every model's schema with the relative path it is exported to, for example
/// `("payloads/task_request.schema.json", schema)`.
///
/// ```
/// let all = asap_protocol::model::schema::all_schemas();
/// let (path, schema) = &all[0];
/// assert_eq!(*path, "envelope.schema.json");
/// assert_eq!(schema.get("$schema").unwrap(), "https://json-schema.org/draft/2020-12/schema");
/// ```
pub fn all_schemas() -> Vec<(&'static str, Schema)> {
    vec![
        ("envelope.schema.json", schema_for::<Envelope>()),
        (
            "payloads/task_request.schema.json",
            schema_for::<TaskRequest>(),
        ),
        (
            "payloads/task_response.schema.json",
            schema_for::<TaskResponse>(),
        ),
        (
            "payloads/task_update.schema.json",
            schema_for::<TaskUpdate>(),
        ),
        (
            "payloads/task_cancel.schema.json",
            schema_for::<TaskCancel>(),
        ),
        (
            "payloads/message_send.schema.json",
            schema_for::<MessageSend>(),
        ),
        (
            "payloads/state_query.schema.json",
            schema_for::<StateQuery>(),
        ),
        (
            "payloads/state_restore.schema.json",
            schema_for::<StateRestore>(),
        ),
        (
            "payloads/artifact_notify.schema.json",
            schema_for::<ArtifactNotify>(),
        ),
        (
            "payloads/mcp_tool_call.schema.json",
            schema_for::<McpToolCall>(),
        ),
        (
            "payloads/mcp_tool_result.schema.json",
            schema_for::<McpToolResult>(),
        ),
        (
            "payloads/mcp_resource_fetch.schema.json",
            schema_for::<McpResourceFetch>(),
        ),
        (
            "payloads/mcp_resource_data.schema.json",
            schema_for::<McpResourceData>(),
        ),
        (
            "payloads/message_ack.schema.json",
            schema_for::<MessageAck>(),
        ),
        ("parts/text_part.schema.json", schema_for::<TextPart>()),
        ("parts/data_part.schema.json", schema_for::<DataPart>()),
        ("parts/file_part.schema.json", schema_for::<FilePart>()),
        (
            "parts/resource_part.schema.json",
            schema_for::<ResourcePart>(),
        ),
        (
            "parts/template_part.schema.json",
            schema_for::<TemplatePart>(),
        ),
        ("parts/part.schema.json", schema_for::<Part>()),
        ("entities/manifest.schema.json", schema_for::<Manifest>()),
        ("entities/skill.schema.json", schema_for::<Skill>()),
        (
            "entities/capability.schema.json",
            schema_for::<Capability>(),
        ),
        ("entities/endpoint.schema.json", schema_for::<Endpoint>()),
        (
            "entities/auth_scheme.schema.json",
            schema_for::<AuthScheme>(),
        ),
        ("entities/agent.schema.json", schema_for::<Agent>()),
        (
            "entities/conversation.schema.json",
            schema_for::<Conversation>(),
        ),
        ("entities/task.schema.json", schema_for::<Task>()),
        ("entities/message.schema.json", schema_for::<Message>()),
        ("entities/artifact.schema.json", schema_for::<Artifact>()),
        (
            "entities/state_snapshot.schema.json",
            schema_for::<StateSnapshot>(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_schema_requires_exactly_the_required_members() {
        let schema = schema_for::<Envelope>().to_value();
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort_unstable();
        assert_eq!(
            required,
            [
                "asap_version",
                "payload",
                "payload_type",
                "recipient",
                "sender"
            ]
        );
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["title"], "Envelope");
    }

    #[test]
    fn every_schema_is_2020_12_with_a_unique_path() {
        let all = all_schemas();
        let mut paths: Vec<&str> = all.iter().map(|(p, _)| *p).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), all.len());
        for (path, schema) in &all {
            assert_eq!(
                schema.get("$schema").and_then(|v| v.as_str()),
                Some("https://json-schema.org/draft/2020-12/schema"),
                "{path}"
            );
        }
    }
}
