//! Signed manifests as the 2.5.10 reference makes and checks them (docs/asap-2.md
//! section 5; `asap/crypto/signing.py`, `asap/crypto/trust.py`, `asap/crypto/keys.py`).
//!
//! - The signed bytes are the RFC 8785 canonical JSON ([`canonical_bytes`]) of the
//!   manifest in the 2.x shape as Python holds it: field names (`class_`, not the
//!   wire name `class`), the manifest's own `signature` member left out, `null`s kept.
//! - The signature is Ed25519 (RFC 8032); verification is strict
//!   ([`VerifyingKey::verify_strict`]: `s < l`, no small-order keys or `R`).
//! - Keys: private keys in PKCS#8 PEM (what `asap keys generate` of the reference
//!   writes), public keys as base64 of the raw 32 bytes (what documents carry).
//!
//! ```
//! use asap_protocol::model::Manifest;
//! use asap_protocol::signing::{SigningKey, sign_manifest, verify_manifest};
//!
//! let key = SigningKey::from_bytes(&[7; 32]);
//! let manifest = Manifest::new("urn:asap:agent:a", "A", "1.0.0", "d", "http://a/asap");
//! let signed = sign_manifest(&manifest, &key).unwrap();
//! assert!(verify_manifest(&signed, None).is_ok());
//! assert!(verify_manifest(&signed, Some(&SigningKey::from_bytes(&[8; 32]).verifying_key())).is_err());
//! ```

mod keys;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

pub use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
pub use keys::{
    KeyError, generate_key, private_key_from_pem, private_key_to_pem, public_key_from_base64,
    public_key_to_base64, read_verifying_key,
};

use crate::model::manifest2::DEFAULT_SUPPORTED_VERSIONS;
use crate::model::signed::ED25519;
use crate::model::{Manifest, SignatureBlock, SignedManifest, TrustLevel};

/// A manifest that cannot be signed the way the reference signs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SigningError {
    /// `verification.verified_at` is set: the reference's canonical form cannot hold a
    /// datetime (its JCS encoder raises `TypeError`), so no peer could verify it.
    #[error(
        "a manifest with verification.verified_at cannot be signed: the 2.5.10 reference \
         cannot canonicalise it (remove verified_at or sign without verification)"
    )]
    VerifiedAt,
    /// The canonical JSON could not be written (a number outside the JSON range).
    #[error("the manifest has no RFC 8785 canonical form: {0}")]
    Canonical(String),
}

/// Why a signed manifest was not accepted. Every variant means "do not trust it".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerificationError {
    /// No key given and the document carries no `public_key`.
    #[error("cannot verify: no public key given and the signed manifest has no public_key")]
    NoPublicKey,
    /// The document's `public_key` is not a base64 Ed25519 key.
    #[error("invalid public_key in the signed manifest: {0}")]
    InvalidPublicKey(KeyError),
    /// The signature is not base64 of 64 bytes.
    #[error("the signature is not base64 of a 64-byte Ed25519 signature")]
    MalformedSignature,
    /// The signature does not match the manifest and key (tampered, or another key).
    #[error(
        "signature verification failed: the manifest may have been tampered with or the \
         signature is invalid"
    )]
    BadSignature,
    /// The manifest cannot be canonicalised (see [`SigningError`]).
    #[error(transparent)]
    Unsignable(#[from] SigningError),
    /// CA verification of a document whose `trust_level` is not `verified`.
    #[error("expected trust_level verified for CA verification, got {0}")]
    NotCaSigned(TrustLevel),
    /// CA verification of a document signed by a key that is not a known CA.
    #[error("the signing key is not a known CA key")]
    UnknownCa,
}

/// The manifest as the reference's `manifest.model_dump(exclude={"signature"})` holds
/// it: the 2.x shape (a 1.1 manifest gains the 2.x defaults), field names.
fn python_dump(manifest: &Manifest) -> Result<Value, SigningError> {
    if manifest
        .verification
        .as_ref()
        .is_some_and(|v| v.verified_at.is_some())
    {
        return Err(SigningError::VerifiedAt);
    }
    let mut value = as_2x(manifest).to_wire_value();
    let map = value.as_object_mut().expect("a manifest is an object");
    map.shift_remove("signature");
    if let Some(Value::Object(hardware)) = map
        .get_mut("capabilities")
        .and_then(|c| c.get_mut("hardware"))
        && let Some(class) = hardware.shift_remove("class")
    {
        hardware.insert("class_".into(), class);
    }
    Ok(value)
}

/// The bytes a manifest's signature covers: RFC 8785 (JCS) of the reference's
/// dump of it (2.x shape, field names, `signature` left out), as
/// `asap.crypto.signing.canonicalize`.
pub fn canonical_bytes(manifest: &Manifest) -> Result<Vec<u8>, SigningError> {
    let value = python_dump(manifest)?;
    serde_json_canonicalizer::to_vec(&value).map_err(|e| SigningError::Canonical(e.to_string()))
}

/// The manifest as a 2.x manifest (a 1.1 one gains the default `supported_versions`,
/// as the reference's model fills it), the form a signed document carries.
fn as_2x(manifest: &Manifest) -> Manifest {
    let mut two = manifest.clone();
    two.supported_versions.get_or_insert_with(|| {
        DEFAULT_SUPPORTED_VERSIONS
            .iter()
            .map(|v| (*v).to_owned())
            .collect()
    });
    two
}

fn sign_as(
    manifest: &Manifest,
    key: &SigningKey,
    trust_level: TrustLevel,
) -> Result<SignedManifest, SigningError> {
    use ed25519_dalek::Signer as _;
    let bytes = canonical_bytes(manifest)?;
    let signature = key.sign(&bytes);
    Ok(SignedManifest {
        manifest: as_2x(manifest),
        signature: SignatureBlock {
            alg: ED25519.to_owned(),
            signature: STANDARD.encode(signature.to_bytes()),
            trust_level,
        },
        public_key: Some(public_key_to_base64(&key.verifying_key())),
    })
}

/// Signs a manifest with the agent's own key (`sign_manifest`): trust level
/// `self-signed`, the public key in the document.
pub fn sign_manifest(
    manifest: &Manifest,
    key: &SigningKey,
) -> Result<SignedManifest, SigningError> {
    sign_as(manifest, key, TrustLevel::SelfSigned)
}

/// Signs a manifest with a CA key (`sign_with_ca`): trust level `verified`, the CA's
/// public key in the document.
pub fn sign_with_ca(
    manifest: &Manifest,
    ca_key: &SigningKey,
) -> Result<SignedManifest, SigningError> {
    sign_as(manifest, ca_key, TrustLevel::Verified)
}

/// Verifies a signed manifest (`verify_manifest`) against `key`, or, when `None`,
/// against the key the document carries (which proves integrity, not identity).
pub fn verify_manifest(
    signed: &SignedManifest,
    key: Option<&VerifyingKey>,
) -> Result<(), VerificationError> {
    let embedded;
    let key = match key {
        Some(key) => key,
        None => {
            let text = signed
                .public_key
                .as_deref()
                .ok_or(VerificationError::NoPublicKey)?;
            embedded = public_key_from_base64(text).map_err(VerificationError::InvalidPublicKey)?;
            &embedded
        }
    };
    let raw = STANDARD
        .decode(&signed.signature.signature)
        .map_err(|_| VerificationError::MalformedSignature)?;
    let signature =
        Signature::from_slice(&raw).map_err(|_| VerificationError::MalformedSignature)?;
    let bytes = canonical_bytes(&signed.manifest)?;
    key.verify_strict(&bytes, &signature)
        .map_err(|_| VerificationError::BadSignature)
}

/// Verifies a CA-signed manifest (`verify_ca_signature`): `trust_level` must be
/// `verified` and the document's `public_key` one of `known_cas`.
pub fn verify_ca_signature(
    signed: &SignedManifest,
    known_cas: &[VerifyingKey],
) -> Result<(), VerificationError> {
    if signed.signature.trust_level != TrustLevel::Verified {
        return Err(VerificationError::NotCaSigned(signed.signature.trust_level));
    }
    let text = signed
        .public_key
        .as_deref()
        .ok_or(VerificationError::NoPublicKey)?;
    let key = public_key_from_base64(text).map_err(VerificationError::InvalidPublicKey)?;
    if !known_cas.contains(&key) {
        return Err(VerificationError::UnknownCa);
    }
    verify_manifest(signed, Some(&key))
}

#[cfg(test)]
mod tests;
