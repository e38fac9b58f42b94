//! The protocol dialects a peer speaks, and the `ASAP-Version` request header that
//! picks one per request (ASAP 2.x; `docs/asap-2.md` section 1).
//!
//! A 1.1 peer never sends the header; a 2.x peer (the 2.5.10 reference client) sends
//! the versions it accepts, most preferred first (`ASAP-Version: 2.2, 2.1`). The server
//! takes the first token, in the client's order, that it accepts. Unlike the reference,
//! which assumes 2.2 when the header is absent, a request without it (or with an empty
//! one) speaks 1.1 here, so 1.1 peers get exactly the 1.1 bytes.
//!
//! ```
//! use asap_protocol::model::Dialect;
//!
//! let all = Dialect::ALL;
//! assert_eq!(Dialect::negotiate(None::<&[u8]>, &all), Ok(Dialect::V1_1));
//! assert_eq!(Dialect::negotiate(Some(b"3.0, 2.1, 2.2"), &all), Ok(Dialect::V2_1));
//! let refused = Dialect::negotiate(Some(b" 9.9 "), &all).unwrap_err();
//! assert_eq!(refused.requested, "9.9");
//! assert_eq!(refused.supported, [Dialect::V2_1, Dialect::V2_2]);
//! ```

use std::fmt;
use std::str::FromStr;

use serde_json::{Value, json};

/// The request and response header naming the dialect (`ASAP-Version`).
pub const ASAP_VERSION_HEADER: &str = "ASAP-Version";

/// A version of the ASAP wire protocol, as `ASAP-Version` names it. 2.1 and 2.2 differ
/// only in the echoed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Dialect {
    /// ASAP 1.1: no `ASAP-Version` header (or the token `1.1`, an extension).
    V1_1,
    /// ASAP 2.1 (`ASAP-Version: 2.1`).
    V2_1,
    /// ASAP 2.2 (`ASAP-Version: 2.2`), the reference's default.
    V2_2,
}

impl Dialect {
    /// Every dialect, oldest first.
    pub const ALL: [Dialect; 3] = [Dialect::V1_1, Dialect::V2_1, Dialect::V2_2];

    /// The header token: `1.1`, `2.1` or `2.2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1_1 => "1.1",
            Self::V2_1 => "2.1",
            Self::V2_2 => "2.2",
        }
    }

    /// The dialect a header token names exactly (no normalisation: `2.2.0` is none).
    pub fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == token)
    }

    /// Whether this is a 2.x dialect (negotiated with the header, echoed in responses).
    pub fn is_2x(self) -> bool {
        !matches!(self, Self::V1_1)
    }

    /// Picks the dialect of a request from its `ASAP-Version` header (raw bytes, read
    /// as Latin-1 as HTTP servers decode headers) among the `accepted` ones:
    ///
    /// - no 2.x dialect accepted: always 1.1, whatever the header (a 1.1-only server
    ///   ignores it, as every 1.1 server does);
    /// - header absent, or empty after trimming whitespace: 1.1 when accepted, else the
    ///   newest accepted 2.x dialect (the reference's behaviour);
    /// - otherwise the value is split on `,`, each token trimmed, and the first token,
    ///   in the client's order, that names an accepted dialect wins;
    /// - no token does: [`VersionIncompatible`].
    pub fn negotiate<V: AsRef<[u8]>>(
        header: Option<V>,
        accepted: &[Dialect],
    ) -> Result<Dialect, VersionIncompatible> {
        let supported = supported_2x(accepted);
        let Some(newest_2x) = supported.last().copied() else {
            return Ok(Self::V1_1);
        };
        let value = header.map(|v| latin1(v.as_ref())).unwrap_or_default();
        let value = value.trim_matches(is_python_space);
        if value.is_empty() {
            return Ok(if accepted.contains(&Self::V1_1) {
                Self::V1_1
            } else {
                newest_2x
            });
        }
        value
            .split(',')
            .filter_map(|token| Self::from_token(token.trim_matches(is_python_space)))
            .find(|d| accepted.contains(d))
            .ok_or_else(|| VersionIncompatible {
                requested: value.to_owned(),
                supported,
            })
    }
}

/// The accepted 2.x dialects, oldest first, without repeats.
fn supported_2x(accepted: &[Dialect]) -> Vec<Dialect> {
    let mut out: Vec<Dialect> = accepted.iter().copied().filter(|d| d.is_2x()).collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Header bytes as text, each byte one character (Latin-1, as Starlette decodes them).
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// Python's `str.isspace` for the characters a Latin-1 header can hold.
fn is_python_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token that names no [`Dialect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ASAP version {0:?} (expected 1.1, 2.1 or 2.2)")]
pub struct UnknownDialect(pub String);

impl FromStr for Dialect {
    type Err = UnknownDialect;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_token(s.trim()).ok_or_else(|| UnknownDialect(s.to_owned()))
    }
}

/// A request whose `ASAP-Version` names no accepted dialect. The server answers it
/// without running anything: JSON-RPC `-32000` with [`VersionIncompatible::data`],
/// `id: null`, HTTP 200, and `ASAP-Version:` [`VersionIncompatible::answer_version`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ASAP protocol version incompatible: requested {requested:?}")]
#[non_exhaustive]
pub struct VersionIncompatible {
    /// The header value, trimmed.
    pub requested: String,
    /// The accepted 2.x dialects, oldest first. 1.1 is never listed: a 1.1 peer sends
    /// no header, so the reference's list (`["2.1","2.2"]`) is kept byte for byte.
    pub supported: Vec<Dialect>,
}

impl VersionIncompatible {
    /// The JSON-RPC error `data`: `{"requested": ..., "supported": [...]}`.
    pub fn data(&self) -> Value {
        let supported: Vec<&str> = self.supported.iter().map(|d| d.as_str()).collect();
        json!({"requested": self.requested, "supported": supported})
    }

    /// The version the refusal names in its `ASAP-Version` response header: the newest
    /// supported one (`2.2` by default, as the reference).
    pub fn answer_version(&self) -> Dialect {
        self.supported.last().copied().unwrap_or(Dialect::V2_2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Dialect; 3] = Dialect::ALL;

    fn pick(header: &str) -> Result<Dialect, VersionIncompatible> {
        Dialect::negotiate(Some(header.as_bytes()), &ALL)
    }

    #[test]
    fn no_header_or_an_empty_one_speaks_1_1() {
        assert_eq!(Dialect::negotiate(None::<&[u8]>, &ALL), Ok(Dialect::V1_1));
        for empty in ["", "   ", "\t", " \u{a0}"] {
            assert_eq!(
                Dialect::negotiate(Some(latin1_bytes(empty)), &ALL),
                Ok(Dialect::V1_1),
                "{empty:?}"
            );
        }
    }

    #[test]
    fn the_first_accepted_token_in_the_clients_order_wins() {
        assert_eq!(pick("2.1"), Ok(Dialect::V2_1));
        assert_eq!(pick("2.2"), Ok(Dialect::V2_2));
        assert_eq!(pick("3.0, 2.1, 2.2"), Ok(Dialect::V2_1));
        assert_eq!(pick("2.2, 2.1"), Ok(Dialect::V2_2));
        assert_eq!(pick(" 2.1 ,2.2"), Ok(Dialect::V2_1));
        assert_eq!(pick(",,2.2,"), Ok(Dialect::V2_2));
        assert_eq!(pick("1.1"), Ok(Dialect::V1_1));
        assert_eq!(pick("9.9, 1.1, 2.2"), Ok(Dialect::V1_1));
    }

    #[test]
    fn unknown_tokens_are_refused_with_the_trimmed_value() {
        for (header, requested) in [
            ("9.9", "9.9"),
            (" 2.2.0 ", "2.2.0"),
            ("2.2;q=1", "2.2;q=1"),
            ("v2.2, 2", "v2.2, 2"),
            ("2.*", "2.*"),
        ] {
            let refused = pick(header).unwrap_err();
            assert_eq!(refused.requested, requested);
            assert_eq!(
                serde_json::to_string(&refused.data()).unwrap(),
                format!(r#"{{"requested":"{requested}","supported":["2.1","2.2"]}}"#)
            );
            assert_eq!(refused.answer_version(), Dialect::V2_2);
        }
    }

    #[test]
    fn header_bytes_are_read_as_latin1() {
        let refused = Dialect::negotiate(Some(b"\xe9"), &ALL).unwrap_err();
        assert_eq!(refused.requested, "\u{e9}");
    }

    #[test]
    fn the_accepted_set_narrows_the_choice() {
        let v2 = [Dialect::V2_2, Dialect::V2_1];
        // Without 1.1, no header means the newest 2.x (the reference's behaviour).
        assert_eq!(Dialect::negotiate(None::<&[u8]>, &v2), Ok(Dialect::V2_2));
        let refused = Dialect::negotiate(Some(b"1.1"), &v2).unwrap_err();
        assert_eq!(refused.supported, [Dialect::V2_1, Dialect::V2_2]);
        let only_21 = [Dialect::V1_1, Dialect::V2_1];
        assert_eq!(
            Dialect::negotiate(Some(b"2.2, 2.1"), &only_21),
            Ok(Dialect::V2_1)
        );
        let refused = Dialect::negotiate(Some(b"2.2"), &only_21).unwrap_err();
        assert_eq!(refused.answer_version(), Dialect::V2_1);
        // A 1.1-only server ignores the header, as any 1.1 server does.
        for accepted in [&[Dialect::V1_1][..], &[]] {
            assert_eq!(
                Dialect::negotiate(Some(b"9.9"), accepted),
                Ok(Dialect::V1_1)
            );
        }
    }

    #[test]
    fn tokens_parse_and_print() {
        for d in Dialect::ALL {
            assert_eq!(d.as_str().parse::<Dialect>(), Ok(d));
            assert_eq!(d.to_string(), d.as_str());
        }
        assert_eq!(" 2.2 ".parse::<Dialect>(), Ok(Dialect::V2_2));
        assert_eq!(
            "2.2.0".parse::<Dialect>().unwrap_err().to_string(),
            r#"unknown ASAP version "2.2.0" (expected 1.1, 2.1 or 2.2)"#
        );
        assert!(!Dialect::V1_1.is_2x());
        assert!(Dialect::V2_1.is_2x() && Dialect::V2_2.is_2x());
    }

    fn latin1_bytes(text: &str) -> Vec<u8> {
        text.chars().map(|c| u8::try_from(c).unwrap()).collect()
    }
}
