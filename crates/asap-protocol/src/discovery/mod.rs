//! Discovery beyond one URL (wire spec section 13): the Lite Registry, DNS-SD on the
//! local network (feature `mdns`), and liveness.
//!
//! ```no_run
//! # async fn run() -> Result<(), asap_protocol::discovery::RegistryError> {
//! use asap_protocol::discovery::{DEFAULT_REGISTRY_URL, RegistryClient};
//! let registry = RegistryClient::new()?.fetch(DEFAULT_REGISTRY_URL).await?; // cached 15 min
//! for agent in registry.find_by_skill("web_research") {
//!     println!("{} at {}", agent.id, agent.endpoints["http"]);
//! }
//! # Ok(()) }
//! ```

#[cfg(feature = "mdns")]
mod dnssd;
mod registry;
mod watcher;

#[cfg(feature = "mdns")]
pub use dnssd::{
    Advertiser, AgentInfo, Browser, DnsSdError, DnsSdEvent, SERVICE_TYPE, instance_name,
};
pub use registry::{
    DEFAULT_REGISTRY_URL, InvalidRegistry, LiteRegistry, RegistryClient, RegistryEntry,
    RegistryError, agent_base_url,
};
pub use watcher::{LivenessEvent, Watcher, Watching};
