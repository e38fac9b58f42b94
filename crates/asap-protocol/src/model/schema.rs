//! JSON Schemas (draft 2020-12) of every wire model, laid out as the reference's
//! `schemas/` folder.

use schemars::{JsonSchema, Schema, generate::SchemaSettings};

use super::{
    Agent, Artifact, AuthScheme, Capability, Conversation, DataPart, Endpoint, Envelope, FilePart,
    Manifest, Message, Part, PayloadType, ResourcePart, Skill, StateSnapshot, Task, TemplatePart,
    TextPart,
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
    let mut all = vec![("envelope.schema.json", schema_for::<Envelope>())];
    all.extend(PayloadType::ALL.map(|t| (t.schema_path(), t.schema())));
    all.extend([
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
    ]);
    all
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
    fn every_payload_type_is_exported() {
        let all = all_schemas();
        for t in PayloadType::ALL {
            let (_, schema) = all
                .iter()
                .find(|(path, _)| *path == t.schema_path())
                .unwrap_or_else(|| panic!("{t} has no schema"));
            assert_eq!(
                schema.get("title").and_then(|v| v.as_str()),
                Some(t.model_name())
            );
        }
        assert_eq!(all[1].0, "payloads/task_request.schema.json");
        assert_eq!(all.len(), 31);
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
