//! PEP 440 version strings, as `Manifest.version` requires (wire spec section 7.1).

use std::sync::OnceLock;

use regex::Regex;

/// `packaging.version.VERSION_PATTERN` (packaging 26), surrounded by optional
/// whitespace and matched against the whole string, case-insensitively.
const PEP440: &str = r"(?xi)
    ^[\s\x1c-\x1f]*
    v?
    (?-u:
        (?:[0-9]+!)?
        [0-9]+(?:\.[0-9]+)*
        (?:[._-]?(?:alpha|a|beta|b|preview|pre|c|rc)[._-]?[0-9]*)?
        (?:-[0-9]+|[._-]?(?:post|rev|r)[._-]?[0-9]*)?
        (?:[._-]?dev[._-]?[0-9]*)?
    )
    (?-u:\+[a-z0-9]+(?:[._-][a-z0-9]+)*)?
    [\s\x1c-\x1f]*$";

/// Whether `version` is a valid PEP 440 version, as Python's `packaging.Version`
/// decides: `1.0.0`, `v1.0`, `1.0.0-rc.1+build.5` and `2026.01` are; `abc` and
/// `1.0.0-SNAPSHOT` (valid SemVer) are not.
///
/// ```
/// use asap_protocol::model::is_pep440_version;
/// assert!(is_pep440_version("1.0.0-beta.1"));
/// assert!(!is_pep440_version("1.0.0-SNAPSHOT"));
/// ```
pub fn is_pep440_version(version: &str) -> bool {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN
        .get_or_init(|| Regex::new(PEP440).expect("PEP 440 pattern compiles"))
        .is_match(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_versions() {
        for v in [
            "1.0.0",
            "1.0",
            "1",
            "v1.0.0",
            "V1.0",
            "1.0.0-dev",
            "1.0.0-beta.1",
            "1.0.0-rc.1+build.5",
            "2026.01",
            "1!2.0",
            "1.0.post1",
            "1.0-1",
            " 1.0 ",
            "1.0\n",
            "1.0+abc_def",
            "1.0a",
            "1.0.dev",
            "1.0RC1",
        ] {
            assert!(is_pep440_version(v), "{v:?}");
        }
    }

    #[test]
    fn rejected_versions() {
        for v in [
            "abc",
            "1.0.0-SNAPSHOT",
            "",
            "1..0",
            ".1",
            "1.0+",
            "\u{661}.0",
            "1.0 beta",
            "v",
            "1.0.0.",
            "1.0_",
        ] {
            assert!(!is_pep440_version(v), "{v:?}");
        }
    }
}
