//! Webhook signatures (wire spec section 12.1): `X-ASAP-Signature: sha256=<hex>`, an
//! HMAC-SHA256 with the secret over the exact body bytes, as the reference writes and
//! checks it; plus a timestamped signature over `"{timestamp}.{delivery id}.{body}"` so
//! receivers can also refuse replays (the reference's signature covers the body only).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The reference's signature header.
pub const SIGNATURE_HEADER: &str = "X-ASAP-Signature";
/// The delivery id, stable across the retries of one delivery.
pub const DELIVERY_ID_HEADER: &str = "X-ASAP-Delivery-Id";
/// When the delivery was created (Unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-ASAP-Timestamp";
/// `sha256=<hex>` over `"{timestamp}.{delivery id}.{body}"`.
pub const TIMESTAMPED_SIGNATURE_HEADER: &str = "X-ASAP-Signature-Timestamped";

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// `sha256=` and the lower-case hex HMAC-SHA256 of `body` under `secret`.
///
/// ```
/// let header = asap_protocol::webhook::sign(b"test-webhook-secret", br#"{"a":1}"#);
/// assert!(header.starts_with("sha256=") && header.len() == 71);
/// assert!(asap_protocol::webhook::verify(b"test-webhook-secret", br#"{"a":1}"#, &header));
/// ```
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `header` is the signature of `body` under `secret`, compared in constant
/// time. As in the reference, only the exact form `sha256=` + 64 lower-case hex digits
/// is accepted.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(digest) = header
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = mac(secret);
    mac.update(body);
    mac.verify_slice(&digest).is_ok()
}

fn timestamped_message(timestamp: i64, delivery_id: &str, body: &[u8]) -> Vec<u8> {
    let mut message = format!("{timestamp}.{delivery_id}.").into_bytes();
    message.extend_from_slice(body);
    message
}

/// The timestamped signature: `sha256=` + hex HMAC of `"{timestamp}.{delivery id}.{body}"`.
pub fn sign_timestamped(secret: &[u8], timestamp: i64, delivery_id: &str, body: &[u8]) -> String {
    sign(secret, &timestamped_message(timestamp, delivery_id, body))
}

/// Checks a timestamped signature and that `timestamp` is within `tolerance` of `now`
/// (both Unix seconds): what a receiver does to refuse replayed deliveries.
pub fn verify_timestamped(
    secret: &[u8],
    timestamp: i64,
    delivery_id: &str,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance: std::time::Duration,
) -> bool {
    let fresh = now.abs_diff(timestamp) <= tolerance.as_secs();
    fresh
        && verify(
            secret,
            &timestamped_message(timestamp, delivery_id, body),
            header,
        )
}
