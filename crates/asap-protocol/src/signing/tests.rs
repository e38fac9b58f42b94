//! Byte checks against the 2.5.10 reference's vectors (docs/asap-2.md section 5).

use super::*;
use crate::model::Model;
use serde_json::json;

/// `CANON` of docs/asap-2.md section 5.
const CANON_25: &str = r#"{"auth":null,"capabilities":{"asap_version":"0.1","hardware":null,"inference":null,"mcp_tools":[],"skills":[{"description":"Echo back the input","id":"echo","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false},"description":"Echoes","endpoints":{"asap":"http://127.0.0.1:18251/asap","events":null},"id":"urn:asap:agent:echo-agent","name":"Echo Agent","sla":null,"supported_versions":["2.2"],"ttl_seconds":300,"verification":null,"version":"0.3.0"}"#;

/// `SIGNED` of docs/asap-2.md section 5 (private key bytes 00..1f).
const SIGNED_25: &str = r#"{"manifest":{"id":"urn:asap:agent:echo-agent","name":"Echo Agent","version":"0.3.0","description":"Echoes","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo back the input","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false,"mcp_tools":[],"hardware":null,"inference":null},"endpoints":{"asap":"http://127.0.0.1:18251/asap","events":null},"supported_versions":["2.2"],"auth":null,"signature":null,"sla":null,"verification":null,"ttl_seconds":300},"signature":{"alg":"ed25519","signature":"eCLNdkcqnRKhIj5oO0Cj8pI1kuj+9HBfii6fr+MxpoH0KCINTOGVRuACNhyTTl98+RVNzIY6+/MnUP/dRX2BCA==","trust_level":"self-signed"},"public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}"#;

/// The private key of the vectors, as the reference writes it.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f\n-----END PRIVATE KEY-----\n";

/// Its public key as SPKI PEM.
const PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAA6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n-----END PUBLIC KEY-----\n";

fn vector_key() -> SigningKey {
    let bytes: Vec<u8> = (0u8..32).collect();
    SigningKey::from_bytes(&bytes.try_into().unwrap())
}

fn reference_signed() -> SignedManifest {
    SignedManifest::from_value(&crate::json::parse(SIGNED_25.as_bytes()).unwrap()).unwrap()
}

#[test]
fn canonical_bytes_and_signature_match_the_reference() {
    let signed = reference_signed();
    let canon = canonical_bytes(&signed.manifest).unwrap();
    assert_eq!(String::from_utf8(canon).unwrap(), CANON_25);
    let ours = sign_manifest(&signed.manifest, &vector_key()).unwrap();
    assert_eq!(ours.to_wire_json(), SIGNED_25, "Ed25519 is deterministic");
}

#[test]
fn a_one_one_manifest_is_signed_in_the_two_x_shape() {
    let signed = reference_signed();
    let mut one = signed.manifest.clone();
    one.supported_versions = None;
    assert!(!one.is_2x());
    let ours = sign_manifest(&one, &vector_key()).unwrap();
    assert_eq!(ours.to_wire_json(), SIGNED_25);
}

#[test]
fn the_reference_signature_verifies_and_a_tampered_one_does_not() {
    let signed = reference_signed();
    assert_eq!(verify_manifest(&signed, None), Ok(()));
    let key = vector_key().verifying_key();
    assert_eq!(verify_manifest(&signed, Some(&key)), Ok(()));
    let other = SigningKey::from_bytes(&[9; 32]).verifying_key();
    assert_eq!(
        verify_manifest(&signed, Some(&other)),
        Err(VerificationError::BadSignature)
    );
    let mut tampered = signed.clone();
    tampered.manifest.name = "Evil Agent".into();
    assert_eq!(
        verify_manifest(&tampered, None),
        Err(VerificationError::BadSignature)
    );
    // The manifest's own opaque `signature` member is not covered, as in the reference.
    let mut annotated = signed.clone();
    annotated.manifest.signature = Some("anything".into());
    assert_eq!(verify_manifest(&annotated, None), Ok(()));
}

#[test]
fn malformed_signatures_and_keys_are_refused() {
    let mut short = reference_signed();
    short.signature.signature = "AAAA".into();
    assert_eq!(
        verify_manifest(&short, None),
        Err(VerificationError::MalformedSignature)
    );
    let mut keyless = reference_signed();
    keyless.public_key = None;
    assert_eq!(
        verify_manifest(&keyless, None),
        Err(VerificationError::NoPublicKey)
    );
    keyless.public_key = Some("AAAA".into());
    assert_eq!(
        verify_manifest(&keyless, None),
        Err(VerificationError::InvalidPublicKey(KeyError::Length(3)))
    );
    // s + l: the same signature made malleable is refused by the strict check.
    let mut malleable = reference_signed();
    let mut raw = STANDARD.decode(&malleable.signature.signature).unwrap();
    let order: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut carry = 0u16;
    for (byte, add) in raw[32..].iter_mut().zip(order) {
        let sum = u16::from(*byte) + u16::from(add) + carry;
        *byte = sum as u8;
        carry = sum >> 8;
    }
    malleable.signature.signature = STANDARD.encode(&raw);
    assert!(verify_manifest(&malleable, None).is_err());
}

#[test]
fn hardware_is_signed_as_class_underscore_and_verified_at_is_refused() {
    let mut manifest = reference_signed().manifest;
    manifest.capabilities.hardware = Some(
        crate::model::HardwareCapability::from_value(&json!({"class": "sbc", "io": ["gpio"]}))
            .unwrap(),
    );
    let canon = String::from_utf8(canonical_bytes(&manifest).unwrap()).unwrap();
    assert!(
        canon.contains(r#""hardware":{"class_":"sbc","io":["gpio"],"model":null}"#),
        "{canon}"
    );
    manifest.verification = Some(
        crate::model::VerificationStatus::from_value(
            &json!({"status": "verified", "verified_at": "2026-01-15T10:30:00Z"}),
        )
        .unwrap(),
    );
    assert_eq!(
        sign_manifest(&manifest, &vector_key()).unwrap_err(),
        SigningError::VerifiedAt
    );
    manifest.verification.as_mut().unwrap().verified_at = None;
    assert!(sign_manifest(&manifest, &vector_key()).is_ok());
}

#[test]
fn numbers_are_written_as_rfc_8785_says() {
    let mut manifest = reference_signed().manifest;
    manifest.capabilities.skills[0].input_schema = Some(
        crate::json::parse("{\"a\": [1.0, 1e21, 1e-7, 0.1, 12.5, 1152921504606846976], \"b\\uffff\": 2, \"b\\ud83d\\ude00\": 1}".as_bytes())
            .unwrap()
            .as_object()
            .unwrap()
            .clone(),
    );
    let canon = String::from_utf8(canonical_bytes(&manifest).unwrap()).unwrap();
    // What the reference's `jcs.canonicalize` writes for the same values.
    assert!(
        canon.contains("\"input_schema\":{\"a\":[1,1e+21,1e-7,0.1,12.5,1152921504606847000],\"b😀\":1,\"b\u{ffff}\":2}"),
        "{canon}"
    );
}

#[test]
fn ca_signatures_need_the_verified_level_and_a_known_ca() {
    let manifest = reference_signed().manifest;
    let ca = SigningKey::from_bytes(&[5; 32]);
    let signed = sign_with_ca(&manifest, &ca).unwrap();
    assert_eq!(signed.signature.trust_level, TrustLevel::Verified);
    assert_eq!(verify_ca_signature(&signed, &[ca.verifying_key()]), Ok(()));
    assert_eq!(
        verify_ca_signature(&signed, &[vector_key().verifying_key()]),
        Err(VerificationError::UnknownCa)
    );
    let own = sign_manifest(&manifest, &ca).unwrap();
    assert_eq!(
        verify_ca_signature(&own, &[ca.verifying_key()]),
        Err(VerificationError::NotCaSigned(TrustLevel::SelfSigned))
    );
}

#[test]
fn keys_read_and_write_the_reference_formats() {
    let key = private_key_from_pem(KEY_PEM).unwrap();
    assert_eq!(key.to_bytes(), vector_key().to_bytes());
    assert_eq!(private_key_to_pem(&key), KEY_PEM);
    let public = key.verifying_key();
    assert_eq!(
        public_key_to_base64(&public),
        "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    );
    for text in [
        KEY_PEM,
        PUBLIC_PEM,
        "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=\n",
    ] {
        assert_eq!(read_verifying_key(text), Ok(public), "{text}");
    }
    assert_eq!(read_verifying_key("hello!"), Err(KeyError::Unrecognised));
    assert!(matches!(
        private_key_from_pem(PUBLIC_PEM),
        Err(KeyError::Pem(_))
    ));
    assert_ne!(generate_key().to_bytes(), generate_key().to_bytes());
}
