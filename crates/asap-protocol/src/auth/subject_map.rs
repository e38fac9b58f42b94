//! `ASAP_AUTH_SUBJECT_MAP`: which OAuth2 subjects may act for which agent URN.

use std::collections::HashMap;

use serde_json::Value;

/// Why `ASAP_AUTH_SUBJECT_MAP` cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectMapError {
    /// The text is not JSON.
    #[error("ASAP_AUTH_SUBJECT_MAP is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The JSON is not an object.
    #[error("ASAP_AUTH_SUBJECT_MAP must be a JSON object of agent URN to subject(s)")]
    NotAnObject,
    /// An agent's entry is neither a string nor an array of strings.
    #[error(
        "ASAP_AUTH_SUBJECT_MAP[{agent:?}] must be a string or an array of strings, got {subjects}"
    )]
    InvalidSubjects {
        /// The agent URN (the entry's key).
        agent: String,
        /// The entry's value.
        subjects: Value,
    },
}

/// Parses `ASAP_AUTH_SUBJECT_MAP`: `{"<agent urn>": "<sub>" | ["<sub>", ...]}`. Unlike the
/// reference (which silently ignores a malformed map), anything else is an error.
///
/// ```
/// use asap_protocol::auth::{SubjectMapError, parse_subject_map};
/// let map = parse_subject_map(r#"{"urn:asap:agent:a": ["s1", "s2"], "urn:asap:agent:b": "s3"}"#).unwrap();
/// assert_eq!(map["urn:asap:agent:b"], ["s3"]);
/// assert!(matches!(
///     parse_subject_map(r#"{"urn:asap:agent:a": 5}"#),
///     Err(SubjectMapError::InvalidSubjects { agent, .. }) if agent == "urn:asap:agent:a"
/// ));
/// ```
pub fn parse_subject_map(text: &str) -> Result<HashMap<String, Vec<String>>, SubjectMapError> {
    let value: Value = serde_json::from_str(text).map_err(SubjectMapError::NotJson)?;
    let Value::Object(entries) = value else {
        return Err(SubjectMapError::NotAnObject);
    };
    let mut map = HashMap::new();
    for (agent, subjects) in entries {
        let list = match subjects {
            Value::String(s) => vec![s],
            Value::Array(items) if items.iter().all(Value::is_string) => items
                .into_iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            subjects => return Err(SubjectMapError::InvalidSubjects { agent, subjects }),
        };
        map.insert(agent, list);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_malformed_map_says_what_is_wrong() {
        let not_json = parse_subject_map("{").unwrap_err();
        assert!(matches!(not_json, SubjectMapError::NotJson(_)));
        let source = std::error::Error::source(&not_json);
        assert!(source.is_some_and(|e| e.is::<serde_json::Error>()));
        assert!(matches!(
            parse_subject_map("[]"),
            Err(SubjectMapError::NotAnObject)
        ));
        let mixed = parse_subject_map(r#"{"urn:asap:agent:a": ["s1", 2]}"#).unwrap_err();
        assert_eq!(
            mixed.to_string(),
            r#"ASAP_AUTH_SUBJECT_MAP["urn:asap:agent:a"] must be a string or an array of strings, got ["s1",2]"#
        );
        assert!(parse_subject_map("{}").unwrap().is_empty());
    }
}
