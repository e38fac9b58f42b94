//! One module per subcommand; each parses nothing itself and calls the library.

#[path = "../../../asap-protocol/examples/conformance_agent/skills.rs"]
pub mod conformance;
pub mod local;
pub mod login;
pub mod registry;
pub mod remote;
pub mod schemas;
pub mod serve;
pub mod validate;
pub mod webhook;
