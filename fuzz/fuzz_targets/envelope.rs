//! The envelope and JSON-RPC request models as the server reads a request body: parse,
//! then the typed payload. Each must survive parse → encode → parse unchanged, with
//! byte-identical re-encoding.
#![no_main]

use asap_fuzz::value_round_trip;
use asap_protocol::model::{Envelope, Payload};
use asap_protocol::rpc::{JsonRpcRequest, RequestId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = asap_protocol::json::parse(data) else {
        return;
    };
    if let Some(request) = value_round_trip::<JsonRpcRequest>(&value) {
        // The id echoed in an error answer is the one the request model read.
        assert_eq!(RequestId::echo_from(&value), Some(request.id.clone()));
        if let Some(envelope) = request.params.get("envelope") {
            value_round_trip::<Envelope>(envelope);
        }
    }
    let Some(envelope) = value_round_trip::<Envelope>(&value) else {
        return;
    };
    if let Ok(payload) = envelope.parse_payload() {
        let object = payload.to_object();
        let again = Payload::parse(&envelope.payload_type, &object)
            .unwrap_or_else(|e| panic!("a typed payload does not read back: {e:?}\n{object:?}"));
        assert_eq!(again, payload);
        assert_eq!(again.to_object(), object);
    }
});
