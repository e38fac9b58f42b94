//! Test helpers shared by the `asap-protocol` and `asap-cli` test suites: a Prometheus
//! text exposition reader ([`exposition`]), an in-process OAuth2/OIDC provider ([`idp`]),
//! a private CA and TLS terminator ([`tls`]), a chaos TCP proxy ([`proxy`]), an OTLP/HTTP
//! trace receiver ([`otlp`]), network namespaces for multicast tests ([`netns`]), a
//! throwaway `redis-server` ([`redis`]), and the processes the cross-implementation tests
//! start ([`process`]).
//!
//! A dev-dependency only (by path); never published.

pub mod exposition;
pub mod idp;
pub mod lb;
pub mod netns;
pub mod otlp;
pub mod postgres;
pub mod process;
pub mod proxy;
pub mod redis;
pub mod rpc;
pub mod tls;

/// The test keys and key sets (see `fixtures/README.md` in this crate).
pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The contents of the fixture file `name` (in [`FIXTURES`]).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}
