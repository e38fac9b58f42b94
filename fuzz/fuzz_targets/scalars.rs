//! The scalar parsers of the wire model: timestamps (strings and JSON numbers), agent
//! URNs, PEP 440 versions and payload type names. A parsed timestamp must print in a form
//! that parses back to the same instant and offset.
#![no_main]

use asap_protocol::model::{
    MAX_URN_LENGTH, PayloadType, Timestamp, is_pep440_version, validate_agent_urn,
};
use libfuzzer_sys::fuzz_target;

fn check_timestamp(timestamp: Timestamp) {
    for text in [timestamp.to_string(), timestamp.isoformat()] {
        let again: Timestamp = text
            .parse()
            .unwrap_or_else(|e| panic!("{text:?} does not parse back: {e}"));
        assert_eq!(again, timestamp, "{text}");
    }
    let json = serde_json::to_string(&timestamp).expect("serializes");
    let again: Timestamp = serde_json::from_str(&json).expect("its JSON reads back");
    assert_eq!(again, timestamp, "{json}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        check_timestamp(timestamp);
    }
    // As JSON: strings and Unix times (numbers).
    if let Ok(timestamp) = serde_json::from_str::<Timestamp>(text) {
        check_timestamp(timestamp);
    }
    if validate_agent_urn(text).is_ok() {
        assert!(text.chars().count() <= MAX_URN_LENGTH);
        assert!(text.starts_with("urn:asap:agent:") && !text.ends_with('\n'));
    }
    is_pep440_version(text);
    if let Some(kind) = PayloadType::from_wire(text) {
        assert_eq!(PayloadType::from_wire(kind.as_str()), Some(kind));
    }
});
