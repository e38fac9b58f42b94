//! Webhooks (wire spec section 12) that nobody can abuse and that lose nothing:
//! SSRF-proof targets ([`UrlPolicy`], a resolver that pins the checked addresses),
//! the reference's signature plus a timestamped one, and a durable SQLite queue with
//! retries, a per-URL rate limit and dead letters ([`WebhookQueue`]).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use asap_protocol::store::SqliteStore;
//! use asap_protocol::webhook::{Webhook, WebhookConfig, WebhookQueue};
//!
//! let store = SqliteStore::open("asap_state.db").await?;
//! let queue = WebhookQueue::new(&store, WebhookConfig::default())?;
//! let id = queue
//!     .enqueue(Webhook::signed("https://hooks.example/asap", serde_json::json!({"event": "task.completed"}), "s3cret"))
//!     .await?; // written to SQLite before any attempt
//! tokio::spawn({ let queue = queue.clone(); async move { queue.run(std::future::pending()).await } });
//! # Ok(()) }
//! ```

mod delivery;
#[cfg(feature = "server")]
mod events;
mod queue;
mod signature;
mod ssrf;

pub use delivery::{Resolver, SystemResolver, check_url};
#[cfg(feature = "server")]
pub use events::TaskWebhooks;
pub use queue::{
    DeadLetter, DeliveryReport, Webhook, WebhookConfig, WebhookError, WebhookQueue, deliver_now,
};
pub use signature::{
    DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TIMESTAMPED_SIGNATURE_HEADER, sign,
    sign_timestamped, verify, verify_timestamped,
};
pub use ssrf::{BlockReason, UrlPolicy, blocked};
