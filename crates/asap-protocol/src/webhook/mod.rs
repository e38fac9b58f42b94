//! Webhooks (wire spec section 12) that nobody can abuse and that lose nothing:
//! SSRF-proof targets ([`UrlPolicy`], a resolver that pins the checked addresses),
//! the reference's signature plus a timestamped one, and a durable queue with retries,
//! a per-URL rate limit and dead letters ([`WebhookQueue`]) in SQLite or PostgreSQL
//! ([`DeliveryStore`]), which several workers share through leases.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use asap_protocol::store::SqliteStore;
//! use asap_protocol::webhook::{Webhook, WebhookConfig, WebhookQueue};
//!
//! let store = SqliteStore::open("asap_state.db").await?;
//! let queue = WebhookQueue::sqlite(&store, WebhookConfig::default()).await?;
//! let id = queue
//!     .enqueue(Webhook::signed("https://hooks.example/asap", serde_json::json!({"event": "task.completed"}), "s3cret"))
//!     .await?; // written to SQLite before any attempt
//! tokio::spawn({ let queue = queue.clone(); async move { queue.run(std::future::pending()).await } });
//! # Ok(()) }
//! ```

mod config;
mod delivery;
#[cfg(feature = "server")]
mod events;
#[cfg(feature = "postgres")]
mod postgres_deliveries;
mod queue;
mod send;
mod signature;
mod sqlite_deliveries;
mod ssrf;
mod storage;

pub use config::{DeadLetter, Webhook, WebhookConfig, WebhookError};
pub use delivery::{Resolver, SystemResolver, check_url};
#[cfg(feature = "server")]
pub use events::TaskWebhooks;
#[cfg(feature = "postgres")]
pub use postgres_deliveries::PostgresDeliveries;
pub use queue::WebhookQueue;
pub use send::{DeliveryReport, deliver_now};
pub use signature::{
    DELIVERY_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, TIMESTAMPED_SIGNATURE_HEADER, sign,
    sign_timestamped, verify, verify_timestamped,
};
pub use sqlite_deliveries::SqliteDeliveries;
pub use ssrf::{BlockReason, UrlPolicy, blocked};
pub use storage::{DeliveryStore, StoredDelivery};
