//! Handlers: what the server does with an envelope of each payload type.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{
    AsapError, Envelope, Manifest, Model, PayloadType, Task, TaskStatus, ValidationError,
};
use crate::store::{Store, StoreError, StoredTask, WriteBatch};

/// What a handler can use besides the envelope.
#[derive(Clone)]
pub struct HandlerContext {
    /// The agent's manifest.
    pub manifest: Arc<Manifest>,
    /// The agent's state.
    pub store: Arc<dyn Store>,
    /// The identity the request authenticated as, if authentication is on.
    pub identity: Option<String>,
    /// Over WebSocket, sends envelopes to the client ahead of the reply (`None` over HTTP).
    pub push: Option<Push>,
    /// Told about every task status change (for example to send webhooks).
    pub events: Option<Arc<dyn TaskEvents>>,
    /// The server's metrics, where [`HandlerContext::transition`] counts transitions.
    pub metrics: Option<super::Metrics>,
}

/// Receives task status changes from the built-in task handlers (`task.request`,
/// `task.cancel`); [`crate::webhook::TaskWebhooks`] turns them into webhooks.
#[async_trait]
pub trait TaskEvents: Send + Sync {
    /// `task` was stored with a new status.
    async fn task_changed(&self, task: &crate::model::Task);
}

/// Why a pushed envelope could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The request did not come over WebSocket, so there is nobody to push to.
    #[error("server push needs a WebSocket connection")]
    NotWebSocket,
    /// The connection closed.
    #[error("the WebSocket connection is closed")]
    Closed,
}

/// Sends envelopes to the client of one WebSocket connection (wire spec section 11.3):
/// each is a frame `{"jsonrpc":"2.0","result":{"envelope":...},"id":null}`, the shape
/// reference clients hand to their `on_message` callback.
#[derive(Debug, Clone)]
pub struct Push {
    pub(crate) frames: tokio::sync::mpsc::Sender<String>,
}

impl Push {
    /// Queues `envelope` for the client; waits while the connection's send queue is full.
    pub async fn send(&self, envelope: &Envelope) -> Result<(), PushError> {
        let frame = crate::json::to_compact(&serde_json::json!({
            "jsonrpc": "2.0",
            "result": {"envelope": envelope.to_value()},
            "id": null,
        }));
        self.frames.send(frame).await.map_err(|_| PushError::Closed)
    }
}

/// How often [`HandlerContext::update_task`] reads again after a conflict before it
/// gives up (each conflict means another writer changed the task meanwhile).
const UPDATE_ATTEMPTS: usize = 16;

impl HandlerContext {
    /// Moves `task` to `to` ([`Task::transition`]), counted in
    /// `asap_state_transitions_total` when the context has metrics, at once. For a task
    /// written right after; inside an [`update_task`](Self::update_task) closure use
    /// [`Task::transition`]: `update_task` counts the change it commits.
    pub fn transition(&self, task: &mut Task, to: TaskStatus) -> Result<(), AsapError> {
        let from = task.status;
        task.transition(to)?;
        self.count_transition(from, to);
        Ok(())
    }

    /// Counts a committed transition in `asap_state_transitions_total` (when the
    /// context has metrics).
    pub fn count_transition(&self, from: TaskStatus, to: TaskStatus) {
        if let Some(metrics) = &self.metrics {
            metrics.state_transition(from, to);
        }
    }

    /// Commits `batch` atomically ([`Store::commit`](crate::store::Store::commit)),
    /// then tells the task-event listener, if any, of every task it wrote.
    pub async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let tasks: Vec<Task> = match &self.events {
            Some(_) => batch.tasks().cloned().collect(),
            None => Vec::new(),
        };
        self.store.commit(batch).await?;
        if let Some(events) = &self.events {
            for task in &tasks {
                events.task_changed(task).await;
            }
        }
        Ok(())
    }

    /// Reads the task, lets `change` modify it (returning whether to write it) and
    /// writes it back only if nobody wrote it meanwhile; after a conflict it reads the
    /// fresh record and calls `change` again. The writes `extra` makes from the task go
    /// in the same transaction (alone when `change` leaves the task as it is). The task
    /// as stored afterwards; `None` when there is no such task. A status change it
    /// commits is counted in `asap_state_transitions_total` (once, whatever the number
    /// of attempts).
    pub async fn update_task<E, F>(
        &self,
        task_id: &str,
        mut change: F,
        extra: impl Fn(&Task) -> WriteBatch,
    ) -> Result<Option<Task>, E>
    where
        E: From<StoreError>,
        F: FnMut(&mut Task) -> Result<bool, E>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let Some(StoredTask { mut task, revision }) = self.store.get_task(task_id).await?
            else {
                return Ok(None);
            };
            let from = task.status;
            if !change(&mut task)? {
                self.commit(extra(&task)).await?;
                return Ok(Some(task));
            }
            let batch = extra(&task).update_task(task.clone(), revision);
            match self.commit(batch).await {
                Ok(()) => {
                    if task.status != from {
                        self.count_transition(from, task.status);
                    }
                    return Ok(Some(task));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::Backend(
            format!("task {task_id} kept changing: {UPDATE_ATTEMPTS} conflicting updates").into(),
        )
        .into())
    }

    /// Pushes `envelope` to the WebSocket client ahead of the reply.
    pub async fn push(&self, envelope: &Envelope) -> Result<(), PushError> {
        match &self.push {
            Some(push) => push.send(envelope).await,
            None => Err(PushError::NotWebSocket),
        }
    }
}

/// Why a handler could not produce a response envelope. Each kind maps to one
/// JSON-RPC error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The payload does not satisfy its model: `-32602` with `validation_errors`.
    #[error("{0}")]
    InvalidPayload(#[from] ValidationError),
    /// A protocol rule refused the request (unknown task, illegal transition, ...):
    /// `-32602` carrying the `asap:*` code.
    #[error("{0}")]
    Protocol(#[from] AsapError),
    /// The handler failed: `-32603`. In debug mode the answer's `data.error` is the
    /// failure's message (its `Display`); the failure itself is the [`source`] of
    /// this error. Build it with [`HandlerError::internal`].
    ///
    /// [`source`]: std::error::Error::source
    #[error("handler failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl HandlerError {
    /// A handler failure (`-32603`) caused by `error`: any error type, or a message.
    ///
    /// ```
    /// use asap_protocol::server::HandlerError;
    /// let from_message = HandlerError::internal("input.seconds is required");
    /// let from_error = HandlerError::internal("x".parse::<u8>().unwrap_err());
    /// let source = std::error::Error::source(&from_error).unwrap();
    /// assert_eq!(source.to_string(), "invalid digit found in string");
    /// # let _ = from_message;
    /// ```
    pub fn internal(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(error.into())
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> Self {
        Self::internal(error)
    }
}

/// Handles the envelopes of one payload type and answers with an envelope.
///
/// ```
/// use asap_protocol::model::{Envelope, MessageAck, AckStatus};
/// use asap_protocol::server::{Handler, HandlerContext, HandlerError};
///
/// struct Acknowledge;
///
/// #[async_trait::async_trait]
/// impl Handler for Acknowledge {
///     async fn handle(&self, request: Envelope, ctx: &HandlerContext) -> Result<Envelope, HandlerError> {
///         let ack = MessageAck { original_envelope_id: request.id.clone(), status: AckStatus::Processed, error: None };
///         Ok(Envelope::response_to(&request, ack).with_sender(&ctx.manifest.id))
///     }
/// }
/// ```
#[async_trait]
pub trait Handler: Send + Sync {
    /// Produces the response envelope for `request`.
    async fn handle(
        &self,
        request: Envelope,
        ctx: &HandlerContext,
    ) -> Result<Envelope, HandlerError>;
}

/// Handlers keyed by the exact `payload_type` string they serve.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    /// The handlers of `POST /asap/stream`, apart from the unary ones (as in 2.5.10).
    streaming: HashMap<String, Arc<dyn super::stream::StreamingHandler>>,
}

impl HandlerRegistry {
    /// An empty registry: every payload type gets `-32601`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves exactly `payload_type` (case-sensitive) with `handler`.
    pub fn register(
        &mut self,
        payload_type: impl Into<String>,
        handler: Arc<dyn Handler>,
    ) -> &mut Self {
        self.handlers.insert(payload_type.into(), handler);
        self
    }

    /// Serves a known payload type under its canonical name and every alias.
    pub fn register_payload(
        &mut self,
        payload_type: PayloadType,
        handler: Arc<dyn Handler>,
    ) -> &mut Self {
        for name in
            std::iter::once(payload_type.as_str()).chain(payload_type.aliases().iter().copied())
        {
            self.handlers.insert(name.to_owned(), handler.clone());
        }
        self
    }

    /// The handler for a payload type.
    pub fn get(&self, payload_type: &str) -> Option<&Arc<dyn Handler>> {
        self.handlers.get(payload_type)
    }

    /// Whether a handler serves this payload type.
    pub fn contains(&self, payload_type: &str) -> bool {
        self.handlers.contains_key(payload_type)
    }

    /// The metric label of `payload_type`: itself when a handler serves it, else
    /// `other` (so hostile payload types add no series).
    pub(crate) fn label<'a>(&self, payload_type: &'a str) -> &'a str {
        if self.contains(payload_type) {
            payload_type
        } else {
            "other"
        }
    }

    /// Streams the answer to exactly `payload_type` (case-sensitive) over
    /// `POST /asap/stream` with `handler`. Independent of [`register`](Self::register):
    /// `POST /asap` never uses it, and `POST /asap/stream` answers `-32012` for a
    /// payload type with only a unary handler.
    pub fn register_streaming(
        &mut self,
        payload_type: impl Into<String>,
        handler: Arc<dyn super::stream::StreamingHandler>,
    ) -> &mut Self {
        self.streaming.insert(payload_type.into(), handler);
        self
    }

    /// The streaming handler for a payload type.
    pub fn get_streaming(
        &self,
        payload_type: &str,
    ) -> Option<&Arc<dyn super::stream::StreamingHandler>> {
        self.streaming.get(payload_type)
    }

    /// The payload types served, sorted.
    pub fn payload_types(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

impl Envelope {
    /// Sets `sender` (a response's sender is the agent's manifest id).
    pub fn with_sender(mut self, sender: &str) -> Self {
        sender.clone_into(&mut self.sender);
        self
    }
}
