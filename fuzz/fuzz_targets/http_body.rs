//! `POST /asap` with an arbitrary body, through the server's whole router: size and
//! coding checks, UTF-8 and JSON, the JSON-RPC request, the envelope, the handlers, and
//! the S1 answer. Every answer must be well-formed; every envelope it carries must
//! validate as the client reads it.
#![no_main]

use std::sync::OnceLock;

use asap_fuzz::{assert_jsonrpc_answer, peer, runtime, server};
use asap_protocol::model::{Envelope, Model};
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

fn router() -> Router {
    static ROUTER: OnceLock<Router> = OnceLock::new();
    ROUTER
        .get_or_init(|| server().router().layer(MockConnectInfo(peer())))
        .clone()
}

fuzz_target!(|body: &[u8]| {
    let request = http::Request::post("/asap")
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_vec()))
        .expect("a valid request");
    let (status, answer) = runtime().block_on(async {
        let response = router().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("an in-memory body")
            .to_bytes();
        (status, bytes)
    });
    assert!(
        status == http::StatusCode::OK || status.is_client_error(),
        "{status}"
    );
    assert_jsonrpc_answer(&answer);
    let answer = asap_protocol::json::parse(&answer).expect("checked above");
    if let Some(envelope) = answer.pointer("/result/envelope")
        && let Err(e) = Envelope::from_value(envelope)
    {
        panic!("the server answered an envelope its client refuses: {e}\n{envelope}");
    }
});
