//! Ed25519 keys in the reference's formats (`asap/crypto/keys.py`): private keys as
//! unencrypted PKCS#8 PEM, public keys as base64 of the raw 32 bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};

/// A key that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not base64.
    #[error("not base64")]
    Base64,
    /// Base64 of the wrong number of bytes.
    #[error("an Ed25519 public key must be 32 bytes, got {0}")]
    Length(usize),
    /// 32 bytes that are not a point of the curve.
    #[error("not an Ed25519 public key")]
    NotAPoint,
    /// Not an unencrypted PKCS#8 PEM Ed25519 private key.
    #[error("not an Ed25519 private key in PKCS#8 PEM: {0}")]
    Pem(String),
    /// None of the accepted key formats.
    #[error(
        "not an Ed25519 key: expected a PKCS#8 PEM private key, an SPKI PEM public key or \
         base64 of the raw 32-byte public key"
    )]
    Unrecognised,
}

/// A new random private key (`generate_keypair`).
pub fn generate_key() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// The private key as unencrypted PKCS#8 v1 PEM without the public key, LF line
/// ends: byte for byte what the reference's `serialize_private_key` writes.
pub fn private_key_to_pem(key: &SigningKey) -> String {
    let v1 = ed25519_dalek::pkcs8::KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    v1.to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes")
        .to_string()
}

/// Reads an unencrypted PKCS#8 PEM private key (`load_private_key_from_pem`).
pub fn private_key_from_pem(pem: &str) -> Result<SigningKey, KeyError> {
    SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))
}

/// The public key as base64 of its raw 32 bytes (`public_key_to_base64`).
pub fn public_key_to_base64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Reads base64 of a raw 32-byte public key (`load_public_key_from_base64`).
pub fn public_key_from_base64(text: &str) -> Result<VerifyingKey, KeyError> {
    let raw = STANDARD.decode(text.trim()).map_err(|_| KeyError::Base64)?;
    let bytes: [u8; 32] = raw
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(raw.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotAPoint)
}

/// Reads a public key given in any of the formats people have at hand: a PKCS#8 PEM
/// private key (its public half, as the reference's `asap manifest verify
/// --public-key` takes), an SPKI PEM public key, or base64 of the raw 32 bytes.
pub fn read_verifying_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let text = text.trim();
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        return private_key_from_pem(text).map(|key| key.verifying_key());
    }
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        return VerifyingKey::from_public_key_pem(text).map_err(|e| KeyError::Pem(e.to_string()));
    }
    match public_key_from_base64(text) {
        Err(KeyError::Base64) => Err(KeyError::Unrecognised),
        other => other,
    }
}
