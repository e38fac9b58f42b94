//! What the fuzz targets share: the round-trip checks every model must pass, and one
//! in-process server (with its runtime) for the transport targets.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::OnceLock;

use asap_protocol::model::{Manifest, Model, Skill};
use asap_protocol::server::{HandlerRegistry, Server, ServerConfig, default_skills};
use serde_json::Value;

/// Parses `bytes` as `T` the way the server does, then checks it with
/// [`value_round_trip`]. Returns the model.
pub fn model_round_trip<T: Model + PartialEq + Debug>(bytes: &[u8]) -> Option<T> {
    value_round_trip(&asap_protocol::json::parse(bytes).ok()?)
}

/// Validates `value` as `T`; when that succeeds, checks that the model's JSON reads back
/// as the same model, that encoding is byte-stable (`encode(parse(encode(x))) ==
/// encode(x)`) and that its value form reads back too. Returns the model.
pub fn value_round_trip<T: Model + PartialEq + Debug>(value: &Value) -> Option<T> {
    let model = T::from_value(value).ok()?;
    let name = <T as Model>::NAME;
    let encoded = model.to_json();
    let again = T::from_json(encoded.as_bytes())
        .unwrap_or_else(|e| panic!("{name}: its own JSON does not parse: {e}\n{encoded}"));
    assert_eq!(again, model, "{name}: {encoded}");
    assert_eq!(again.to_json(), encoded, "{name}: not byte-stable");
    assert_eq!(
        T::from_value(&model.to_value()).as_ref().ok(),
        Some(&model),
        "{name}: to_value does not read back"
    );
    Some(model)
}

/// The one-thread runtime the async entry points run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The agent every transport target talks to: the default skills (echo and the state
/// handlers), in-memory state, and no rate limit (a fuzzer sends thousands of requests
/// a second from one address).
pub fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut manifest = Manifest::new(
            "urn:asap:agent:fuzz",
            "Fuzz",
            "1.0.0",
            "The fuzz targets' agent",
            "http://127.0.0.1:8000/asap",
        );
        manifest
            .capabilities
            .skills
            .push(Skill::new("echo", "Echo back the input"));
        let config = {
            let mut value = ServerConfig::default();
            value.rate_limits = Vec::new();
            value
        };
        // The runtime is entered: building starts background tasks on it.
        let _entered = runtime().enter();
        Server::builder()
            .manifest(manifest)
            .registry(HandlerRegistry::agent(default_skills()))
            .config(config)
            .build()
            .expect("the fuzz server builds")
    })
}

/// The address the fuzz requests come from.
pub fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

/// Every JSON-RPC answer the server writes is S1 JSON of the reference's shape: an
/// object with `jsonrpc` and `id`, and exactly one of `result` and `error`.
pub fn assert_jsonrpc_answer(body: &[u8]) {
    let answer = asap_protocol::json::parse(body)
        .unwrap_or_else(|e| panic!("the answer is not JSON ({e}): {body:?}"));
    let Value::Object(members) = &answer else {
        panic!("the answer is not an object: {answer}");
    };
    if members.contains_key("detail") {
        return; // a refusal before JSON-RPC (size, encoding)
    }
    assert_eq!(
        members.get("jsonrpc"),
        Some(&Value::from("2.0")),
        "{answer}"
    );
    assert!(members.contains_key("id"), "{answer}");
    assert!(
        members.contains_key("result") != members.contains_key("error"),
        "{answer}"
    );
    assert_eq!(
        asap_protocol::json::to_compact(&answer).as_bytes(),
        body,
        "not S1 bytes"
    );
}
