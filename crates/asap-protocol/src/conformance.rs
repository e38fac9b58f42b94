//! The conformance agent (feature `conformance`): the test agent of the cross-implementation
//! interop harness (`asap serve --conformance` and the `conformance_agent` example),
//! built only from the library's public API. Skills `echo`, `slow` (cancellable),
//! `push` (server push over WebSocket), `fail`, `checkpoint` and `webhook` (a signed
//! delivery reported at once, loopback targets allowed in this mode only), and a
//! `task.cancel` that answers `cancelled` for any task id.

use std::sync::Arc;
use std::time::Duration;

use crate::json::JsonObject;
use crate::model::{
    Envelope, Manifest, Skill, StateSnapshot, Task, TaskCancel, TaskRequest, TaskResponse,
    TaskStatus, TaskUpdate, Timestamp, UpdateType, generate_id,
};
use crate::server::{
    EchoHandler, Handler, HandlerContext, HandlerError, HandlerRegistry, RateLimitRule,
    ServerConfig, reply_with,
};
use crate::store::{StoreError, WriteBatch};
use crate::webhook::{SystemResolver, UrlPolicy, Webhook, WebhookConfig, deliver_now};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The skills this agent offers, for its manifest.
pub const SKILLS: &[(&str, &str)] = &[
    ("echo", "Echo back the input"),
    (
        "slow",
        "Wait input.seconds unless task.cancel for input.task_id arrives",
    ),
    (
        "push",
        "Push input.count task.update envelopes over WebSocket, then answer",
    ),
    ("fail", "Always fail (-32603)"),
    (
        "checkpoint",
        "Write the next snapshot of input.task_id with input.data",
    ),
    (
        "webhook",
        "POST input.payload to input.url, signed; retried when input.retry",
    ),
];

/// The harness's rate limits (its README, section 4): high enough never to interfere.
pub const RATE_LIMITS: &str = "100000/second;1000000/minute";

/// Lists the conformance skills in `manifest`.
pub fn add_skills(manifest: &mut Manifest) {
    for (id, description) in SKILLS {
        manifest
            .capabilities
            .skills
            .push(Skill::new(*id, *description));
    }
}

/// The harness's server settings: nonces required, `received` acks only, its rate
/// limits.
pub fn configure(config: &mut ServerConfig) {
    config.require_nonce = true;
    config.websocket.completion_acks = false;
    config.rate_limits = RateLimitRule::parse_list(RATE_LIMITS).expect("RATE_LIMITS parses");
}

/// The secret the harness verifies webhook signatures with, unless told otherwise.
pub const DEFAULT_WEBHOOK_SECRET: &str = "interop-webhook-secret";

/// The registry of the conformance agent.
pub fn registry(webhook_secret: String) -> HandlerRegistry {
    let mut registry = HandlerRegistry::agent(crate::server::default_skills());
    registry.register(
        "task.request",
        Arc::new(Skills {
            webhook_secret: webhook_secret.into_bytes(),
            webhook_policy: UrlPolicy::development(
                UrlPolicy::parse_allow_list(["127.0.0.0/8", "::1/128"])
                    .expect("the loopback ranges parse"),
            ),
        }),
    );
    registry.register("task.cancel", Arc::new(Cancel));
    registry
}

fn input_str<'a>(input: &'a JsonObject, key: &str) -> Result<&'a str, HandlerError> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| HandlerError::internal(format!("input.{key} is required")))
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

/// Every `task.request` skill of the contract.
struct Skills {
    webhook_secret: Vec<u8>,
    /// Conformance mode only: the harness's receiver is on loopback.
    webhook_policy: UrlPolicy,
}

#[async_trait]
impl Handler for Skills {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let payload: TaskRequest = request.payload_as()?;
        let input = &payload.input;
        let (task_id, status, result) = match payload.skill_id.as_str() {
            "echo" => return EchoHandler.handle(request, ctx).await,
            "fail" => {
                return Err(HandlerError::internal("the 'fail' skill always fails"));
            }
            "slow" => slow(input, &payload, ctx).await?,
            "push" => push(&request, input, ctx).await?,
            "checkpoint" => checkpoint(input, ctx).await?,
            "webhook" => self.webhook(input).await?,
            other => {
                return Err(HandlerError::internal(format!("unknown skill '{other}'")));
            }
        };
        let response = TaskResponse::new(task_id, status).with_result(object(result));
        Ok(reply_with(&request, ctx, response))
    }
}

/// Runs for `input.seconds` unless `task.cancel` for `input.task_id` arrives first.
async fn slow(
    input: &JsonObject,
    payload: &TaskRequest,
    ctx: &HandlerContext,
) -> Result<(String, TaskStatus, Value), HandlerError> {
    let task_id = input_str(input, "task_id")?.to_owned();
    let seconds = input
        .get("seconds")
        .and_then(Value::as_f64)
        .unwrap_or(1.0)
        .clamp(0.0, 300.0);
    let mut task = Task::new(task_id.clone(), payload.conversation_id.clone());
    task.transition(TaskStatus::Working)?;
    // Snapshot 1 records the start, snapshot 2 how it ended (read by `state.query`, on
    // any agent sharing the store).
    let record = |status: TaskStatus| StateSnapshot {
        id: format!("snap_{}", generate_id()),
        task_id: task_id.clone(),
        version: if status == TaskStatus::Working { 1 } else { 2 },
        data: object(json!({"status": status.as_str(), "seconds": seconds})),
        checkpoint: status != TaskStatus::Working,
        created_at: Timestamp::now(),
    };
    // The caller names the task: a task of that name left by an earlier run starts over.
    let start = WriteBatch::new()
        .create_task(task.clone())
        .save_snapshot(record(TaskStatus::Working));
    match ctx.commit(start).await {
        Err(StoreError::Conflict { .. }) => {
            ctx.update_task::<HandlerError, _>(
                &task_id,
                |stored| {
                    *stored = task.clone();
                    Ok(true)
                },
                |_| WriteBatch::new().save_snapshot(record(TaskStatus::Working)),
            )
            .await?;
        }
        other => other?,
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
        if let Some(current) = ctx.store.get_task(&task_id).await?
            && current.task.status == TaskStatus::Cancelled
        {
            ctx.store.save(&record(TaskStatus::Cancelled)).await?;
            return Ok((task_id, TaskStatus::Cancelled, json!({"cancelled": true})));
        }
    }
    // Completed unless a task.cancel landed since the last look.
    let finished = ctx
        .update_task::<HandlerError, _>(
            &task_id,
            |stored| {
                if stored.is_terminal() {
                    return Ok(false);
                }
                stored.transition(TaskStatus::Completed)?;
                Ok(true)
            },
            |stored| WriteBatch::new().save_snapshot(record(stored.status)),
        )
        .await?;
    if finished.is_some_and(|t| t.status == TaskStatus::Cancelled) {
        return Ok((task_id, TaskStatus::Cancelled, json!({"cancelled": true})));
    }
    Ok((task_id, TaskStatus::Completed, json!({"slept": seconds})))
}

/// Pushes `input.count` `task.update` envelopes, then answers.
async fn push(
    request: &Envelope,
    input: &JsonObject,
    ctx: &HandlerContext,
) -> Result<(String, TaskStatus, Value), HandlerError> {
    let count = input
        .get("count")
        .and_then(Value::as_u64)
        .unwrap_or(1)
        .min(1000);
    let task_id = format!("task_{}", generate_id());
    for n in 0..count {
        let update = TaskUpdate {
            task_id: task_id.clone(),
            update_type: UpdateType::Progress,
            status: TaskStatus::Working,
            progress: Some(object(
                json!({"percent": ((n + 1) * 100 / count.max(1)), "step": n + 1}),
            )),
            input_request: None,
        };
        ctx.push(&reply_with(request, ctx, update))
            .await
            .map_err(HandlerError::internal)?;
    }
    Ok((task_id, TaskStatus::Completed, json!({"pushed": count})))
}

/// Writes the next snapshot version of `input.task_id` with `input.data`.
async fn checkpoint(
    input: &JsonObject,
    ctx: &HandlerContext,
) -> Result<(String, TaskStatus, Value), HandlerError> {
    let task_id = input_str(input, "task_id")?.to_owned();
    let data = object(input.get("data").cloned().unwrap_or_else(|| json!({})));
    let version = ctx
        .store
        .list_versions(&task_id)
        .await?
        .last()
        .copied()
        .unwrap_or(0)
        + 1;
    let snapshot = StateSnapshot {
        id: format!("snap_{}", generate_id()),
        task_id: task_id.clone(),
        version,
        data,
        checkpoint: true,
        created_at: Timestamp::now(),
    };
    ctx.store.save(&snapshot).await?;
    let result = json!({"task_id": task_id, "snapshot_id": snapshot.id, "version": version});
    Ok((task_id, TaskStatus::Completed, result))
}

impl Skills {
    /// POSTs `input.payload` to `input.url`, signed, with retries when `input.retry`.
    async fn webhook(
        &self,
        input: &JsonObject,
    ) -> Result<(String, TaskStatus, Value), HandlerError> {
        let url = input_str(input, "url")?.to_owned();
        let retry = input.get("retry").and_then(Value::as_bool).unwrap_or(false);
        let config = WebhookConfig {
            policy: self.webhook_policy.clone(),
            max_retries: if retry { 5 } else { 0 },
            ..WebhookConfig::default()
        };
        let webhook = Webhook {
            url,
            payload: input.get("payload").cloned().unwrap_or_else(|| json!({})),
            secret: Some(self.webhook_secret.clone()),
            headers: Vec::new(),
        };
        let report = deliver_now(webhook, &config, Arc::new(SystemResolver))
            .await
            .map_err(HandlerError::internal)?;
        let result = json!({"delivered": report.delivered, "status_code": report.status_code, "attempts": report.attempts});
        Ok((
            format!("task_{}", generate_id()),
            TaskStatus::Completed,
            result,
        ))
    }
}

/// `task.cancel`: the task (if this agent knows it) moves to `cancelled`, which a running
/// `slow` skill notices; the answer is `cancelled` for the given id either way.
struct Cancel;

#[async_trait]
impl Handler for Cancel {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let cancel: TaskCancel = request.payload_as()?;
        ctx.update_task::<HandlerError, _>(
            &cancel.task_id,
            |task| {
                if task.is_terminal() {
                    return Ok(false);
                }
                task.transition(TaskStatus::Cancelled)?;
                Ok(true)
            },
            |_| WriteBatch::new(),
        )
        .await?;
        let response = TaskResponse::new(cancel.task_id, TaskStatus::Cancelled);
        Ok(reply_with(&request, ctx, response))
    }
}
