//! Agent URNs: `urn:asap:agent:{name}[:{sub}]` (wire spec section 2).

/// Longest agent URN accepted, in characters.
pub const MAX_URN_LENGTH: usize = 256;

/// Checks an agent URN: at most [`MAX_URN_LENGTH`] characters, then
/// `^urn:asap:agent:[a-z0-9-]+(?::[a-z0-9-]+)?$` anchored at the true end of the
/// string. Returns the reference's message on failure.
///
/// Unlike the reference (whose Python `$` also matches before a final newline), a
/// trailing `\n` is rejected, as the spec's notes ask.
///
/// ```
/// use asap_protocol::model::validate_agent_urn;
/// assert!(validate_agent_urn("urn:asap:agent:research-v1").is_ok());
/// assert!(validate_agent_urn("urn:asap:agent:foo:bar").is_ok());
/// assert!(validate_agent_urn("urn:asap:agent:a:b:c").is_err());
/// assert!(validate_agent_urn("urn:asap:agent:foo\n").is_err());
/// ```
pub fn validate_agent_urn(urn: &str) -> Result<(), String> {
    let length = urn.chars().count();
    if length > MAX_URN_LENGTH {
        return Err(format!(
            "Agent URN must be at most {MAX_URN_LENGTH} characters, got {length}"
        ));
    }
    if is_agent_urn(urn) {
        Ok(())
    } else {
        Err(format!(
            "Agent ID must follow URN format 'urn:asap:agent:{{name}}', got: {urn}"
        ))
    }
}

fn is_agent_urn(urn: &str) -> bool {
    let Some(rest) = urn.strip_prefix("urn:asap:agent:") else {
        return false;
    };
    let segment = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match rest.split_once(':') {
        None => segment(rest),
        Some((name, sub)) => segment(name) && segment(sub),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        for urn in [
            "urn:asap:agent:a",
            "urn:asap:agent:0-9",
            "urn:asap:agent:foo:bar-1",
            "urn:asap:agent:-",
        ] {
            assert_eq!(validate_agent_urn(urn), Ok(()), "{urn}");
        }
        let longest = format!("urn:asap:agent:{}", "a".repeat(MAX_URN_LENGTH - 15));
        assert_eq!(longest.len(), MAX_URN_LENGTH);
        assert_eq!(validate_agent_urn(&longest), Ok(()));
    }

    #[test]
    fn rejected_with_the_reference_message() {
        for urn in [
            "urn:asap:agent:Client",
            "urn:asap:agent:under_score",
            "urn:asap:agent:dot.ted",
            "urn:asap:agent:",
            "urn:asap:agent:a:b:c",
            "urn:asap:agent:a:",
            "urn:asap:agent:foo\n",
            " urn:asap:agent:foo",
            "urn:asap:agent:caf\u{e9}",
            "URN:asap:agent:foo",
        ] {
            assert_eq!(
                validate_agent_urn(urn),
                Err(format!(
                    "Agent ID must follow URN format 'urn:asap:agent:{{name}}', got: {urn}"
                )),
            );
        }
        let long = format!("urn:asap:agent:{}", "a".repeat(MAX_URN_LENGTH - 14));
        assert_eq!(
            validate_agent_urn(&long),
            Err("Agent URN must be at most 256 characters, got 257".into())
        );
    }
}
