//! An agent with a skill of its own, built only from the public API.
//!
//! ```sh
//! cargo run -p asap-protocol --example custom_skill_agent            # listens on 127.0.0.1:8010
//! cargo run -p asap-cli -- send http://127.0.0.1:8010 --skill shout --input '{"text": "hello"}'
//! ```
//!
//! The `shout` skill upper-cases `input.text`; the `echo` skill and the task lifecycle
//! (`task.cancel`, `state.query`, `state.restore`, `message.send`) come built in.

use std::sync::Arc;

use asap_protocol::json::JsonObject;
use asap_protocol::model::{AsapError, Manifest, Skill as SkillInfo, Task, TaskRequest};
use asap_protocol::server::{
    HandlerContext, HandlerError, HandlerRegistry, Server, Skill, default_skills, shutdown_signal,
};
use serde_json::{Value, json};

/// Upper-cases `input.text`.
struct Shout;

#[async_trait::async_trait]
impl Skill for Shout {
    async fn run(
        &self,
        _task: &Task,
        request: &TaskRequest,
        _ctx: &HandlerContext,
    ) -> Result<JsonObject, HandlerError> {
        let Some(Value::String(text)) = request.input.get("text") else {
            return Err(AsapError::MalformedEnvelope {
                reason: "the shout skill needs input.text, a string".into(),
                details: JsonObject::new(),
            }
            .into());
        };
        match json!({"shouted": text.to_uppercase()}) {
            Value::Object(result) => Ok(result),
            _ => unreachable!("a JSON object literal"),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let address = std::env::var("ASAP_EXAMPLE_ADDR").unwrap_or_else(|_| "127.0.0.1:8010".into());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let base = format!("http://{}", listener.local_addr()?);

    let mut manifest = Manifest::new(
        "urn:asap:agent:shouter",
        "Shouter",
        "1.0.0",
        "Upper-cases text",
        format!("{base}/asap"),
    );
    manifest
        .capabilities
        .skills
        .push(SkillInfo::new("echo", "Echo back the input"));
    manifest
        .capabilities
        .skills
        .push(SkillInfo::new("shout", "Upper-case input.text"));

    let mut skills = default_skills();
    skills.insert("shout".into(), Arc::new(Shout));
    let server = Server::builder()
        .manifest(manifest)
        .registry(HandlerRegistry::agent(skills))
        .build()?;
    println!("shouter listening on {base}");
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}
