//! Task events as webhooks: callback URLs (each with its secret) registered with an
//! agent receive a signed delivery, through the durable queue, whenever one of its
//! tasks changes status, and a `task.completed` event when a task finishes.

use std::sync::RwLock;

use async_trait::async_trait;
use serde_json::json;

use super::config::{Webhook, WebhookError};
use super::delivery::check_url;
use super::queue::WebhookQueue;
use crate::model::{Model, Task, TaskStatus};
use crate::server::TaskEvents;

/// One registered callback.
#[derive(Clone)]
struct Subscription {
    id: String,
    url: String,
    secret: Vec<u8>,
}

/// The callbacks registered for task events, delivering through a [`WebhookQueue`].
///
/// ```no_run
/// # async fn run(store: asap_protocol::store::SqliteStore, manifest: asap_protocol::model::Manifest) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use asap_protocol::server::Server;
/// use asap_protocol::webhook::{TaskWebhooks, WebhookConfig, WebhookQueue};
///
/// let queue = WebhookQueue::sqlite(&store, WebhookConfig::default()).await?;
/// let hooks = Arc::new(TaskWebhooks::new(queue.clone()));
/// hooks.subscribe("https://hooks.example/asap", "s3cret").await?; // refused at once if blocked
/// let server = Server::builder().manifest(manifest).store(Arc::new(store)).task_events(hooks).build()?;
/// # Ok(()) }
/// ```
pub struct TaskWebhooks {
    queue: WebhookQueue,
    subscriptions: RwLock<Vec<Subscription>>,
}

impl TaskWebhooks {
    /// No callbacks yet; deliveries go through `queue` (run it with [`WebhookQueue::run`]).
    pub fn new(queue: WebhookQueue) -> Self {
        Self {
            queue,
            subscriptions: RwLock::new(Vec::new()),
        }
    }

    /// Registers `url` for every task event, signed with `secret`. The URL is checked at
    /// once (scheme, host, every resolved address); the error names the rule that
    /// blocked it. Returns the subscription id.
    pub async fn subscribe(
        &self,
        url: &str,
        secret: impl Into<Vec<u8>>,
    ) -> Result<String, WebhookError> {
        check_url(url, self.queue.policy(), self.queue.resolver()).await?;
        let id = format!("sub_{}", crate::model::generate_id());
        self.subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Subscription {
                id: id.clone(),
                url: url.to_owned(),
                secret: secret.into(),
            });
        Ok(id)
    }

    /// Removes a subscription; `false` if there was none with this id.
    pub fn unsubscribe(&self, id: &str) -> bool {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = subscriptions.len();
        subscriptions.retain(|s| s.id != id);
        subscriptions.len() != before
    }

    /// The registered callback URLs.
    pub fn urls(&self) -> Vec<String> {
        self.subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|s| s.url.clone())
            .collect()
    }
}

#[async_trait]
impl TaskEvents for TaskWebhooks {
    async fn task_changed(&self, task: &Task) {
        let subscriptions = self
            .subscriptions
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut events = vec!["task.status_changed"];
        if task.status == TaskStatus::Completed {
            events.push("task.completed");
        }
        for event in events {
            let payload = json!({
                "event": event,
                "task_id": task.id,
                "conversation_id": task.conversation_id,
                "status": task.status.as_str(),
                "task": task.to_value(),
                "ts": crate::model::Timestamp::now().isoformat(),
            });
            for subscription in &subscriptions {
                let webhook = Webhook {
                    url: subscription.url.clone(),
                    payload: payload.clone(),
                    secret: Some(subscription.secret.clone()),
                    headers: vec![("X-ASAP-Event".into(), event.into())],
                };
                if let Err(error) = self.queue.enqueue_checked(webhook).await {
                    tracing::warn!(%error, url = %subscription.url, event, "task webhook not queued");
                }
            }
        }
    }
}
