//! One WebSocket text frame, through what a connection does with it: the reader's JSON
//! and heartbeat checks, the ack of an envelope that asks for one, the pipeline and the
//! completion ack. Every frame sent back must be a JSON object: an `asap.ack`
//! notification carrying a valid envelope, a `detail` refusal, or a JSON-RPC answer.
#![no_main]

use asap_fuzz::{assert_jsonrpc_answer, runtime, server};
use asap_protocol::fuzzing::websocket_text_frame;
use asap_protocol::model::{Envelope, Model};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    // A text frame is UTF-8 by definition (the WebSocket layer refuses anything else).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sent = runtime().block_on(websocket_text_frame(server(), text));
    for frame in sent {
        let value = asap_protocol::json::parse(frame.as_bytes())
            .unwrap_or_else(|e| panic!("a frame that is not JSON ({e}): {frame}"));
        match value.get("method") {
            Some(method) => {
                assert_eq!(method, &Value::from("asap.ack"), "{frame}");
                let envelope = value
                    .pointer("/params/envelope")
                    .unwrap_or_else(|| panic!("an ack without an envelope: {frame}"));
                if let Err(e) = Envelope::from_value(envelope) {
                    panic!("an ack whose envelope does not validate: {e}\n{frame}");
                }
            }
            None => assert_jsonrpc_answer(frame.as_bytes()),
        }
    }
});
