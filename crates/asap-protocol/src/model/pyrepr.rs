//! Python's `repr()` of a string, which the reference puts in some error messages.

/// Whether Python's `str.isprintable()` is false for `c` (Unicode categories Cc, Cf,
/// Zs other than space, Zl, Zp, Co and the non-characters). The common ranges are
/// listed; rarer unassigned code points are treated as printable.
fn non_printable(c: char) -> bool {
    matches!(u32::from(c),
        0x00..=0x1f | 0x7f..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x206f | 0x3000 | 0xe000..=0xf8ff | 0xfeff
        | 0xfff9..=0xfffb | 0xfffe | 0xffff | 0x110bd | 0x1bca0..=0x1bca3 | 0x1d173..=0x1d17a
        | 0xe0001 | 0xe0020..=0xe007f | 0xf0000..=0x10ffff)
}

/// `repr(s)` as CPython writes it: single quotes unless the string contains a single
/// quote and no double quote, with backslash escapes for non-printable characters.
///
/// ```
/// # use asap_protocol::model::pyrepr::python_repr;
/// assert_eq!(python_repr("a/../b"), "'a/../b'");
/// assert_eq!(python_repr("it's"), "\"it's\"");
/// assert_eq!(python_repr("tab\there"), "'tab\\there'");
/// ```
pub fn python_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if non_printable(c) => {
                let code = u32::from(c);
                if code < 0x100 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else if code < 0x10000 {
                    out.push_str(&format!("\\u{code:04x}"));
                } else {
                    out.push_str(&format!("\\U{code:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str()` of a JSON value as `json.loads` produces it: `None`, `True`,
/// strings as they are, containers as their `repr()`.
pub fn python_str(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => python_value_repr(other),
    }
}

fn python_value_repr(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => crate::json::to_python_default(n),
        Value::String(s) => python_repr(s),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(python_value_repr)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", python_repr(k), python_value_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::python_repr;

    #[test]
    fn str_of_json_values() {
        use super::python_str;
        let v: serde_json::Value =
            serde_json::from_str(r#"[null, true, "a", 1.0, {"k": [false]}]"#).unwrap();
        assert_eq!(python_str(&v), "[None, True, 'a', 1.0, {'k': [False]}]");
        assert_eq!(python_str(&serde_json::json!("plain")), "plain");
    }

    #[test]
    fn escapes_like_cpython() {
        assert_eq!(
            python_repr("a\u{0}b\u{7f}\u{a0}é\u{200b}😀"),
            "'a\\x00b\\x7f\\xa0é\\u200b😀'"
        );
        assert_eq!(python_repr("both ' and \""), "'both \\' and \"'");
        assert_eq!(python_repr("back\\slash"), "'back\\\\slash'");
        assert_eq!(python_repr("\u{f0000}"), "'\\U000f0000'");
    }
}
