//! Bearer token validation: arbitrary tokens, and tokens whose header and claims are
//! arbitrary JSON but whose HS256 signature is right, so the header parse, the claim
//! checks and the identity binding all see fuzzed input. Key-set algorithms reach a
//! JWKS endpoint that cannot be fetched (the `jwks` target covers key sets).
//!
//! Input: a mode byte, then the token (mode 0), or the header JSON, a newline, and the
//! claims JSON (mode 1).
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use asap_fuzz::runtime;
use asap_protocol::auth::{JwksCache, JwtPolicy, JwtValidator};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const SECRET: &[u8] = b"fuzz-shared-secret";
const AGENT: &str = "urn:asap:agent:fuzz";

fn validator() -> &'static JwtValidator {
    static VALIDATOR: OnceLock<JwtValidator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        // Not an http(s) URL: every fetch fails at once, without the network.
        let jwks = Arc::new(
            JwksCache::new("file:///nonexistent/jwks.json").expect("the JWKS HTTP client builds"),
        );
        JwtValidator::new(jwks, AGENT, JwtPolicy::default())
            .with_hmac_secret(SECRET)
            .verified_cache(Duration::ZERO, 0)
    })
}

/// `header.claims.signature` with the shared secret's HS256 signature.
fn signed(header: &[u8], claims: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET).expect("any key length");
    mac.update(input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{signature}")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        String::from_utf8_lossy(rest).into_owned()
    } else {
        let split = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
        let (header, claims) = rest.split_at(split);
        signed(header, claims.get(1..).unwrap_or_default())
    };
    let Ok(claims) = runtime().block_on(validator().validate(&token)) else {
        return;
    };
    // Accepted: it names a subject, and its identity is this agent or unbound.
    assert!(!claims.subject.is_empty());
    assert_eq!(
        claims.all.get("sub"),
        Some(&Value::from(claims.subject.clone()))
    );
    if let Some(bound) = claims.all.get(&validator().policy().custom_claim) {
        assert!(
            bound.is_null() || bound.as_str().map(str::trim) == Some(AGENT),
            "{bound}"
        );
    }
});
