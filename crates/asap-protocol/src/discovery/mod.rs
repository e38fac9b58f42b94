//! Discovery beyond one URL (wire spec section 13): the Lite Registry.
//!
//! ```no_run
//! # async fn run() -> Result<(), asap_protocol::discovery::RegistryError> {
//! use asap_protocol::discovery::{DEFAULT_REGISTRY_URL, RegistryClient};
//! let registry = RegistryClient::new().fetch(DEFAULT_REGISTRY_URL).await?; // cached 15 min
//! for agent in registry.find_by_skill("web_research") {
//!     println!("{} at {}", agent.id, agent.endpoints["http"]);
//! }
//! # Ok(()) }
//! ```

mod registry;

pub use registry::{
    DEFAULT_REGISTRY_URL, LiteRegistry, RegistryClient, RegistryEntry, RegistryError,
};
