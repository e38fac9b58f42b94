//! The built-in agent: the reference's echo handler, and task lifecycle handling with
//! pluggable skills, snapshots and the state machine.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::handler::{Handler, HandlerContext, HandlerError, HandlerRegistry};
use crate::json::JsonObject;
use crate::model::{
    AckStatus, AsapError, Envelope, MessageAck, MessageSend, Model, Payload, PayloadType,
    StateQuery, StateRestore, StateSnapshot, Task, TaskCancel, TaskRequest, TaskResponse,
    TaskStatus, Timestamp, generate_id,
};
use crate::store::WriteBatch;

/// Payload type of the answer to `state.query` (the interop test-agent contract).
pub const STATE_SNAPSHOT: &str = "state.snapshot";
/// Payload type of the answer to `state.restore` (the interop test-agent contract).
pub const STATE_RESTORE_ACK: &str = "state_restore.ack";

/// A response envelope as the reference builds one: new id and time, `asap_version`
/// copied, sender = the agent, recipient = the requester, `correlation_id` = the
/// request id, `trace_id` copied, no extensions.
pub fn reply(
    request: &Envelope,
    ctx: &HandlerContext,
    payload_type: &str,
    payload: JsonObject,
) -> Envelope {
    let mut response = Envelope::raw(&ctx.manifest.id, &request.sender, payload_type, payload);
    response.asap_version.clone_from(&request.asap_version);
    response.correlation_id = Some(request.id.clone());
    response.trace_id.clone_from(&request.trace_id);
    response
}

/// [`reply`] carrying a typed payload under its canonical payload type.
pub fn reply_with(
    request: &Envelope,
    ctx: &HandlerContext,
    payload: impl Into<Payload>,
) -> Envelope {
    let payload = payload.into();
    reply(
        request,
        ctx,
        payload.payload_type().as_str(),
        payload.to_object(),
    )
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The reference's echo handler for `task.request`: answers `task.response` with
/// status `completed` and `result = {"echoed": input}`, without storing anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoHandler;

#[async_trait]
impl Handler for EchoHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let task: TaskRequest = request.payload_as()?;
        let response = TaskResponse::new(format!("task_{}", generate_id()), TaskStatus::Completed)
            .with_result(object(json!({"echoed": task.input})));
        Ok(reply_with(&request, ctx, response))
    }
}

/// A skill an agent runs for `task.request`.
#[async_trait]
pub trait Skill: Send + Sync {
    /// Runs the skill; the object becomes `TaskResponse.result`.
    async fn run(
        &self,
        task: &Task,
        request: &TaskRequest,
        ctx: &HandlerContext,
    ) -> Result<JsonObject, HandlerError>;

    /// Whether [`run`](Self::run) answers at once, touching neither the store nor the
    /// network (default `false`). The task of an immediate skill is stored once, with
    /// its outcome and both snapshots, in one transaction after the run; otherwise it
    /// is stored as `working` before the run (so a `task.cancel` or a crash meanwhile
    /// finds it) and updated after. Nobody outside can tell the difference for an
    /// immediate skill: the task's id reaches the requester only in the answer.
    fn is_immediate(&self) -> bool {
        false
    }
}

/// Returns `{"echoed": input}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoSkill;

#[async_trait]
impl Skill for EchoSkill {
    async fn run(
        &self,
        _task: &Task,
        request: &TaskRequest,
        _ctx: &HandlerContext,
    ) -> Result<JsonObject, HandlerError> {
        Ok(object(json!({"echoed": request.input})))
    }

    fn is_immediate(&self) -> bool {
        true
    }
}

/// Skills by id.
pub type Skills = BTreeMap<String, Arc<dyn Skill>>;

/// `task.request` with a task lifecycle: the task is stored as `submitted`, moved to
/// `working`, and to `completed` or `failed` by the skill's outcome; snapshot 1 records
/// the request and snapshot 2 (a checkpoint) the outcome.
#[derive(Clone)]
pub struct TaskHandler {
    skills: Arc<Skills>,
}

impl TaskHandler {
    /// A handler running `skills`.
    pub fn new(skills: Skills) -> Self {
        Self {
            skills: Arc::new(skills),
        }
    }
}

/// A snapshot of `task` at `version`, made now.
fn snapshot(task_id: &str, version: i64, data: Value, checkpoint: bool) -> StateSnapshot {
    StateSnapshot {
        id: format!("snap_{}", generate_id()),
        task_id: task_id.to_owned(),
        version,
        data: object(data),
        checkpoint,
        created_at: Timestamp::now(),
    }
}

#[async_trait]
impl Handler for TaskHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let payload: TaskRequest = request.payload_as()?;
        let skill = self.skills.get(&payload.skill_id).ok_or_else(|| {
            let offered: Vec<&str> = self.skills.keys().map(String::as_str).collect();
            AsapError::MalformedEnvelope {
                reason: format!(
                    "unknown skill '{}'; this agent offers: {}",
                    payload.skill_id,
                    offered.join(", ")
                ),
                details: object(json!({"skill_id": payload.skill_id})),
            }
        })?;
        let mut task = Task::new(
            format!("task_{}", generate_id()),
            payload.conversation_id.clone(),
        );
        task.parent_task_id.clone_from(&payload.parent_task_id);
        if let Some(events) = &ctx.events {
            events.task_changed(&task).await;
        }
        task.transition(TaskStatus::Working)?;
        let request_data =
            json!({"status": "submitted", "skill_id": payload.skill_id, "input": payload.input});
        let snapshot_1 = snapshot(&task.id, 1, request_data, false);
        let snapshot_2 = |task: &Task, outcome: &Result<JsonObject, HandlerError>| {
            let status = task.status.as_str();
            let data = match outcome {
                Ok(result) => json!({"status": status, "result": result}),
                Err(error) => json!({"status": status, "error": error.to_string()}),
            };
            snapshot(&task.id, 2, data, true)
        };
        let target = |outcome: &Result<JsonObject, HandlerError>| match outcome {
            Ok(_) => TaskStatus::Completed,
            Err(_) => TaskStatus::Failed,
        };

        if skill.is_immediate() {
            // One transaction after the run: the task with its outcome, both snapshots.
            if let Some(events) = &ctx.events {
                events.task_changed(&task).await;
            }
            let outcome = skill.run(&task, &payload, ctx).await;
            task.transition(target(&outcome))?;
            let batch = WriteBatch::new()
                .save_snapshot(snapshot_1)
                .save_snapshot(snapshot_2(&task, &outcome))
                .create_task(task.clone());
            ctx.commit(batch).await?;
            // Counted once stored: both moves went into that one write.
            ctx.count_transition(TaskStatus::Submitted, TaskStatus::Working);
            ctx.count_transition(TaskStatus::Working, task.status);
            let result = outcome?;
            let response = TaskResponse::new(task.id.clone(), task.status).with_result(result);
            return Ok(reply_with(&request, ctx, response));
        }
        // One transaction before the run: the task (working) and snapshot 1 ...
        ctx.commit(
            WriteBatch::new()
                .create_task(task.clone())
                .save_snapshot(snapshot_1),
        )
        .await?;
        ctx.count_transition(TaskStatus::Submitted, TaskStatus::Working);
        let outcome = skill.run(&task, &payload, ctx).await;
        // ... and one after: the outcome, unless someone (a task.cancel, the skill
        // itself) moved the task meanwhile, and snapshot 2 recording what holds.
        let status = target(&outcome);
        let task = ctx
            .update_task::<HandlerError, _>(
                &task.id,
                |task| {
                    if task.status != TaskStatus::Working {
                        return Ok(false);
                    }
                    task.transition(status)?;
                    Ok(true)
                },
                |task| WriteBatch::new().save_snapshot(snapshot_2(task, &outcome)),
            )
            .await?
            .ok_or_else(|| HandlerError::internal(TaskVanished(task.id.clone())))?;
        let result = outcome?;
        let response = TaskResponse::new(task.id.clone(), task.status).with_result(result);
        Ok(reply_with(&request, ctx, response))
    }
}

/// A task deleted while its skill ran (only a store changed behind the agent's back
/// can do that).
#[derive(Debug, thiserror::Error)]
#[error("task {0} disappeared from the store while its skill ran")]
struct TaskVanished(String);

/// `task.cancel`: moves the task to `cancelled` through the state machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct CancelHandler;

#[async_trait]
impl Handler for CancelHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let cancel: TaskCancel = request.payload_as()?;
        let cancelled = ctx
            .update_task::<HandlerError, _>(
                &cancel.task_id,
                |task| {
                    if task.is_terminal() {
                        return Err(AsapError::TaskAlreadyCompleted {
                            task_id: task.id.clone(),
                            current_status: task.status,
                        }
                        .into());
                    }
                    task.transition(TaskStatus::Cancelled)?;
                    Ok(true)
                },
                |_| WriteBatch::new(),
            )
            .await?
            .ok_or(AsapError::TaskNotFound {
                task_id: cancel.task_id.clone(),
            })?;
        let response = TaskResponse::new(cancelled.id, TaskStatus::Cancelled);
        Ok(reply_with(&request, ctx, response))
    }
}

/// `state.query`: answers `state.snapshot` with the requested (or latest) snapshot.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateQueryHandler;

#[async_trait]
impl Handler for StateQueryHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let query: StateQuery = request.payload_as()?;
        let snapshot =
            ctx.store
                .get(&query.task_id, query.version)
                .await?
                .ok_or(AsapError::TaskNotFound {
                    task_id: query.task_id,
                })?;
        Ok(reply(
            &request,
            ctx,
            STATE_SNAPSHOT,
            object(snapshot.to_value()),
        ))
    }
}

/// `state.restore`: finds the snapshot by id and records its data as the task's newest
/// version; answers `state_restore.ack`.
#[derive(Debug, Clone, Copy, Default)]
pub struct StateRestoreHandler;

#[async_trait]
impl Handler for StateRestoreHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let restore: StateRestore = request.payload_as()?;
        let versions = ctx.store.list_versions(&restore.task_id).await?;
        if versions.is_empty() {
            return Err(AsapError::TaskNotFound {
                task_id: restore.task_id,
            }
            .into());
        }
        let mut found = None;
        for version in &versions {
            if let Some(s) = ctx.store.get(&restore.task_id, Some(*version)).await?
                && s.id == restore.snapshot_id
            {
                found = Some(s);
                break;
            }
        }
        let snapshot = found.ok_or_else(|| AsapError::MalformedEnvelope {
            reason: format!(
                "no snapshot '{}' for task '{}'",
                restore.snapshot_id, restore.task_id
            ),
            details: object(
                json!({"task_id": restore.task_id, "snapshot_id": restore.snapshot_id}),
            ),
        })?;
        let latest = versions.last().copied().unwrap_or(0);
        let restored = StateSnapshot {
            id: format!("snap_{}", generate_id()),
            version: latest + 1,
            created_at: Timestamp::now(),
            checkpoint: false,
            ..snapshot.clone()
        };
        ctx.store.save(&restored).await?;
        let ack = json!({"ok": true, "task_id": snapshot.task_id, "snapshot_id": snapshot.id, "version": snapshot.version, "data": snapshot.data});
        Ok(reply(&request, ctx, STATE_RESTORE_ACK, object(ack)))
    }
}

/// `message.send`: acknowledged with a `MessageAck` of status `processed`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MessageHandler;

#[async_trait]
impl Handler for MessageHandler {
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError> {
        let _message: MessageSend = request.payload_as()?;
        let ack = MessageAck {
            original_envelope_id: request.id.clone(),
            status: AckStatus::Processed,
            error: None,
        };
        Ok(reply_with(&request, ctx, ack))
    }
}

impl HandlerRegistry {
    /// The reference's default registry: `task.request` (exact spelling) answered by
    /// the echo handler; every other payload type gets `-32601`.
    pub fn echo() -> Self {
        let mut registry = Self::new();
        registry.register(PayloadType::TaskRequest.as_str(), Arc::new(EchoHandler));
        registry
    }

    /// A complete agent: `task.request` runs `skills` with the task lifecycle, plus
    /// `task.cancel`, `state.query`, `state.restore` and `message.send`, each under its
    /// canonical name and aliases.
    pub fn agent(skills: Skills) -> Self {
        let mut registry = Self::new();
        registry
            .register_payload(PayloadType::TaskRequest, Arc::new(TaskHandler::new(skills)))
            .register_payload(PayloadType::TaskCancel, Arc::new(CancelHandler))
            .register_payload(PayloadType::StateQuery, Arc::new(StateQueryHandler))
            .register_payload(PayloadType::StateRestore, Arc::new(StateRestoreHandler))
            .register_payload(PayloadType::MessageSend, Arc::new(MessageHandler));
        registry
    }
}

/// The skill set of `asap serve`: `echo`.
pub fn default_skills() -> Skills {
    let mut skills: Skills = BTreeMap::new();
    skills.insert("echo".into(), Arc::new(EchoSkill));
    skills
}
