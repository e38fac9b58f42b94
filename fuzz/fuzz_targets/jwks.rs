//! JWK sets as a JWKS endpoint serves them, and the choice of key for a token: the
//! token header (its `alg` and `kid`), the set's JSON, the key matching both, and that
//! key's use to verify a signature.
//!
//! Input: the token header JSON, a newline, then the key set document.
#![no_main]

use asap_protocol::fuzzing::jwks_key;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Validation, decode, decode_header};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (header, document) = data.split_at(split);
    let document = document.get(1..).unwrap_or_default();
    // Claims `{}` and a signature no key can have made.
    let token = format!("{}.e30.c2lnbmF0dXJl", URL_SAFE_NO_PAD.encode(header));
    let Ok(Some((jwk, key))) = jwks_key(document, &token) else {
        return;
    };
    let header = decode_header(&token).expect("read by jwks_key");
    if let Some(kid) = &header.kid {
        assert_eq!(jwk.common.key_id.as_ref(), Some(kid));
    }
    let verified = decode::<Map<String, Value>>(&token, &key, &Validation::new(header.alg));
    assert!(verified.is_err(), "a made-up signature verified");
});
