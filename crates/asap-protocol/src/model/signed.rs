//! The signed manifest document of ASAP 2.x (docs/asap-2.md section 5): a manifest,
//! an Ed25519 signature block and the signer's public key, as the 2.5.10 reference
//! models them in `asap/crypto/models.py` (`SignedManifest`, `SignatureBlock`) and
//! `asap/crypto/trust_levels.py` (`TrustLevel`).
//!
//! These are the models only (reading, validating, writing); signing and verifying
//! are in `asap_protocol::signing` (feature `signing`).

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::macros::model;
use super::validation::{Checked, ErrorKind, Loc, enumeration, fail, string};
use super::{Dialect, Manifest, Model};

/// The reference's `BASE64_PATTERN`: the standard alphabet with padding.
pub const BASE64_PATTERN: &str = r"^[A-Za-z0-9+/=]+$";

/// The only signature algorithm (`SignatureBlock.alg`).
pub const ED25519: &str = "ed25519";

static BASE64: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(BASE64_PATTERN).expect("a valid pattern"));

/// Who vouches for a signed manifest (`TrustLevel`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, schemars::JsonSchema,
)]
pub enum TrustLevel {
    /// Signed by the agent's own key (the key is in the document).
    #[default]
    #[serde(rename = "self-signed")]
    SelfSigned,
    /// Signed by an ASAP certificate authority's key.
    #[serde(rename = "verified")]
    Verified,
    /// Signed by an organisation's authority (declared only: no check tells it apart).
    #[serde(rename = "enterprise")]
    Enterprise,
}

impl TrustLevel {
    const WIRE: [(&'static str, TrustLevel); 3] = [
        ("self-signed", Self::SelfSigned),
        ("verified", Self::Verified),
        ("enterprise", Self::Enterprise),
    ];

    /// The value as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SelfSigned => "self-signed",
            Self::Verified => "verified",
            Self::Enterprise => "enterprise",
        }
    }

    fn validate(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        enumeration(value, loc, &Self::WIRE, false)
    }
}

impl std::fmt::Display for TrustLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string of the standard base64 alphabet ([`BASE64_PATTERN`]).
fn base64_text(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    let text = string(value, loc)?;
    if BASE64.is_match(&text) {
        Ok(text)
    } else {
        fail(
            ErrorKind::StringPatternMismatch {
                pattern: BASE64_PATTERN,
            },
            loc,
            value,
        )
    }
}

/// `alg`: the literal `"ed25519"`.
fn algorithm(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    enumeration(value, loc, &[(ED25519, ())], true).map(|()| ED25519.to_owned())
}

/// The manifest inside a signed document: always the 2.x model (the reference's only one).
fn signed_manifest(value: &Value, loc: &Loc<'_>) -> Checked<Manifest> {
    Manifest::validate_in(value, loc, Dialect::V2_2)
}

model! {
    /// The signature of a signed manifest (`SignatureBlock`).
    pub struct SignatureBlock {
        /// The algorithm: always `"ed25519"`.
        pub alg: String = required(algorithm),
        /// The 64-byte Ed25519 signature, base64.
        pub signature: String = required(base64_text),
        /// Who signed it.
        #[serde(default)]
        pub trust_level: TrustLevel = defaulted(TrustLevel::default, TrustLevel::validate),
    }
}

model! {
    /// A manifest with its signature (`SignedManifest`). The manifest is read with the
    /// 2.x model; [`SignedManifest::to_wire_value`] writes it in the 2.x shape.
    pub struct SignedManifest {
        /// The signed manifest.
        pub manifest: Manifest = required(signed_manifest),
        /// Its signature.
        pub signature: SignatureBlock = required(SignatureBlock::validate_at),
        /// The signer's raw 32-byte Ed25519 public key, base64.
        #[serde(default)]
        pub public_key: Option<String> = optional(base64_text),
    }
}

impl SignedManifest {
    /// Whether `value` is a signed document rather than a manifest: an object with
    /// both `manifest` and `signature` members (the reference client's test).
    pub fn is_signed_document(value: &Value) -> bool {
        value
            .as_object()
            .is_some_and(|map| map.contains_key("manifest") && map.contains_key("signature"))
    }

    /// The document as the reference serves it: the manifest in the 2.x shape
    /// ([`Manifest::to_wire_value`]), then the signature block and the public key.
    pub fn to_wire_value(&self) -> Value {
        let mut map = Map::new();
        map.insert("manifest".into(), self.manifest.to_wire_value());
        map.insert("signature".into(), self.signature.to_value());
        map.insert(
            "public_key".into(),
            self.public_key.clone().map_or(Value::Null, Value::String),
        );
        Value::Object(map)
    }

    /// [`SignedManifest::to_wire_value`] as compact JSON.
    pub fn to_wire_json(&self) -> String {
        crate::json::to_model_json(&self.to_wire_value())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The signed document of docs/asap-2.md section 5, made by the 2.5.10 reference.
    pub(crate) const SIGNED_25: &str = r#"{"manifest":{"id":"urn:asap:agent:echo-agent","name":"Echo Agent","version":"0.3.0","description":"Echoes","capabilities":{"asap_version":"0.1","skills":[{"id":"echo","description":"Echo back the input","input_schema":null,"output_schema":null}],"state_persistence":false,"streaming":false,"mcp_tools":[],"hardware":null,"inference":null},"endpoints":{"asap":"http://127.0.0.1:18251/asap","events":null},"supported_versions":["2.2"],"auth":null,"signature":null,"sla":null,"verification":null,"ttl_seconds":300},"signature":{"alg":"ed25519","signature":"eCLNdkcqnRKhIj5oO0Cj8pI1kuj+9HBfii6fr+MxpoH0KCINTOGVRuACNhyTTl98+RVNzIY6+/MnUP/dRX2BCA==","trust_level":"self-signed"},"public_key":"A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}"#;

    fn value() -> Value {
        crate::json::parse(SIGNED_25.as_bytes()).unwrap()
    }

    #[test]
    fn the_reference_document_reads_and_writes_back_byte_for_byte() {
        assert!(SignedManifest::is_signed_document(&value()));
        let signed = SignedManifest::from_value(&value()).unwrap();
        assert_eq!(signed.signature.trust_level, TrustLevel::SelfSigned);
        assert!(signed.manifest.is_2x());
        assert_eq!(signed.to_wire_json(), SIGNED_25);
    }

    #[test]
    fn unknown_members_bad_base64_and_other_algorithms_are_refused() {
        let mut v = value();
        v["x"] = json!(1);
        v["signature"]["alg"] = json!("rsa");
        v["signature"]["signature"] = json!("not base64!");
        v["signature"]["trust_level"] = json!("root");
        v["public_key"] = json!("a-b");
        let errors = SignedManifest::from_value(&v).unwrap_err().errors;
        let kinds: Vec<(&str, String)> = errors
            .iter()
            .map(|e| (e.kind.type_name(), serde_json::to_string(&e.loc).unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("literal_error", r#"["signature","alg"]"#.to_owned()),
                (
                    "string_pattern_mismatch",
                    r#"["signature","signature"]"#.to_owned()
                ),
                ("enum", r#"["signature","trust_level"]"#.to_owned()),
                ("string_pattern_mismatch", r#"["public_key"]"#.to_owned()),
                ("extra_forbidden", r#"["x"]"#.to_owned()),
            ]
        );
        assert_eq!(
            errors[1].kind.message(),
            "String should match pattern '^[A-Za-z0-9+/=]+$'"
        );
    }

    #[test]
    fn the_trust_level_defaults_to_self_signed_and_a_manifest_is_not_a_signed_document() {
        let mut v = value();
        v["signature"]
            .as_object_mut()
            .unwrap()
            .remove("trust_level");
        v["public_key"] = Value::Null;
        let signed = SignedManifest::from_value(&v).unwrap();
        assert_eq!(signed.signature.trust_level, TrustLevel::SelfSigned);
        assert_eq!(signed.public_key, None);
        assert!(!SignedManifest::is_signed_document(&v["manifest"]));
    }
}
