//! Message parts: a tagged union discriminated by `type` (wire spec section 6).
//!
//! No 1.1 payload embeds part objects (messages and artifacts carry part ids), but
//! the model is part of the protocol and validated exactly as the reference does.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Model;
use super::macros::model;
use super::pyrepr::python_repr;
use super::validation::{Checked, ErrorKind, Loc, fail, object, rule, string};
use crate::json::JsonObject;

macro_rules! part_tag {
    ($name:ident = $wire:literal) => {
        #[doc = concat!("The constant `\"", $wire, "\"` in a part's `type` member.")]
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema,
        )]
        pub enum $name {
            #[doc = concat!("`\"", $wire, "\"`")]
            #[default]
            #[serde(rename = $wire)]
            Tag,
        }

        impl $name {
            fn validate(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
                super::validation::enumeration(value, loc, &[($wire, Self::Tag)], true)
            }
        }
    };
}

part_tag!(TextTag = "text");
part_tag!(DataTag = "data");
part_tag!(FileTag = "file");
part_tag!(ResourceTag = "resource");
part_tag!(TemplateTag = "template");

model! {
    /// Plain text.
    pub struct TextPart {
        /// Always `"text"`.
        #[serde(rename = "type")]
        pub part_type as "type": TextTag = required(TextTag::validate),
        /// The text.
        pub content: String = required(string),
    }
}

model! {
    /// Structured data.
    pub struct DataPart {
        /// Always `"data"`.
        #[serde(rename = "type")]
        pub part_type as "type": DataTag = required(DataTag::validate),
        /// The data.
        pub data: JsonObject = required(object),
        /// A JSON Schema describing `data`.
        #[serde(default)]
        pub schema_uri: Option<String> = optional(string),
    }
}

fn file_uri(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |uri| {
        if uri.contains("..") {
            return Err(format!(
                "URI must not contain path traversal (..): {}",
                python_repr(uri)
            ));
        }
        if python_strip(uri).to_lowercase().starts_with("file://") {
            return Err("file:// URIs are not allowed for security (path traversal risk)".into());
        }
        Ok(())
    })
}

/// Python's `str.strip()` (Unicode whitespace plus the separators `\x1c`..`\x1f`).
fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

fn mime_type(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |mime| {
        let lower = mime.to_lowercase();
        // Python's `re.match(..., "$")` also matches before one final newline.
        let body = lower.strip_suffix('\n').unwrap_or(&lower);
        let token = |s: &str, extra: &[u8]| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || extra.contains(&b)
                })
        };
        match body.split_once('/') {
            Some((kind, sub)) if token(kind, b"") && token(sub, b".+") => Ok(()),
            _ => Err(format!("Invalid MIME type format: {mime}")),
        }
    })
}

/// CPython's `base64.b64decode(s, validate=True)` checks (strict mode), with its messages.
fn check_base64(data: &str) -> Result<(), String> {
    if !data.is_ascii() {
        return Err("string argument should contain only ASCII characters".into());
    }
    let bytes = data.as_bytes();
    let (mut quad_pos, mut pads, mut data_chars, mut padding_started) =
        (0usize, 0usize, 0usize, false);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'=' {
            padding_started = true;
            if quad_pos == 0 {
                return Err(if i == 0 {
                    "Leading padding not allowed"
                } else {
                    "Excess padding not allowed"
                }
                .into());
            }
            if quad_pos >= 2 {
                pads += 1;
                if quad_pos + pads >= 4 {
                    return if i + 1 < bytes.len() {
                        Err("Excess data after padding".into())
                    } else {
                        Ok(())
                    };
                }
            }
            continue;
        }
        if !(b.is_ascii_alphanumeric() || b == b'+' || b == b'/') {
            return Err("Only base64 data is allowed".into());
        }
        if padding_started {
            return Err("Discontinuous padding not allowed".into());
        }
        pads = 0;
        data_chars += 1;
        quad_pos = (quad_pos + 1) % 4;
    }
    match quad_pos {
        0 => Ok(()),
        1 => Err(format!(
            "Invalid base64-encoded string: number of data characters ({data_chars}) cannot be 1 more than a multiple of 4"
        )),
        _ => Err("Incorrect padding".into()),
    }
}

fn inline_data(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    rule(string(value, loc)?, loc, value, |data| {
        check_base64(data).map_err(|e| format!("inline_data must be valid base64: {e}"))
    })
}

model! {
    /// A file by URI, optionally with its bytes inline (base64).
    pub struct FilePart {
        /// Always `"file"`.
        #[serde(rename = "type")]
        pub part_type as "type": FileTag = required(FileTag::validate),
        /// Where the file is; `..` anywhere and `file://` are refused.
        pub uri: String = required(file_uri),
        /// Its MIME type (checked case-insensitively, kept as written).
        pub mime_type: String = required(mime_type),
        /// The content as strict standard base64.
        #[serde(default)]
        pub inline_data: Option<String> = optional(inline_data),
    }
}

model! {
    /// A reference to an MCP resource.
    pub struct ResourcePart {
        /// Always `"resource"`.
        #[serde(rename = "type")]
        pub part_type as "type": ResourceTag = required(ResourceTag::validate),
        /// The resource.
        pub resource_uri: String = required(string),
    }
}

model! {
    /// A template with `{{variable}}` placeholders and their values.
    pub struct TemplatePart {
        /// Always `"template"`.
        #[serde(rename = "type")]
        pub part_type as "type": TemplateTag = required(TemplateTag::validate),
        /// The template.
        pub template: String = required(string),
        /// Values by variable name.
        pub variables: JsonObject = required(object),
    }
}

/// Any part, chosen by its `type` member.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Part {
    /// `"text"`
    Text(TextPart),
    /// `"data"`
    Data(DataPart),
    /// `"file"`
    File(FilePart),
    /// `"resource"`
    Resource(ResourcePart),
    /// `"template"`
    Template(TemplatePart),
}

const TAGS: &str = "'text', 'data', 'file', 'resource', 'template'";

impl Model for Part {
    const NAME: &'static str = "Part";

    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        let Value::Object(map) = value else {
            return fail(ErrorKind::ModelAttributesType, loc, value);
        };
        let Some(tag) = map.get("type") else {
            return fail(
                ErrorKind::UnionTagNotFound {
                    discriminator: "type",
                },
                loc,
                value,
            );
        };
        let tag_text = super::pyrepr::python_str(tag);
        let inner = Loc::Field(loc, &tag_text);
        match tag.as_str() {
            Some("text") => TextPart::validate_at(value, &inner).map(Part::Text),
            Some("data") => DataPart::validate_at(value, &inner).map(Part::Data),
            Some("file") => FilePart::validate_at(value, &inner).map(Part::File),
            Some("resource") => ResourcePart::validate_at(value, &inner).map(Part::Resource),
            Some("template") => TemplatePart::validate_at(value, &inner).map(Part::Template),
            _ => fail(
                ErrorKind::UnionTagInvalid {
                    discriminator: "type",
                    tag: tag_text.clone(),
                    expected_tags: TAGS.into(),
                },
                loc,
                value,
            ),
        }
    }
}

super::macros::deserialize_by_model!(Part);

impl Part {
    /// A text part.
    pub fn text(content: impl Into<String>) -> Self {
        Part::Text(TextPart {
            part_type: TextTag::Tag,
            content: content.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn first_error(value: Value) -> (String, String, String) {
        let e = Part::from_value(&value).unwrap_err().errors.remove(0);
        (
            e.kind.type_name().into(),
            serde_json::to_string(&e.loc).unwrap(),
            e.kind.message(),
        )
    }

    #[test]
    fn every_kind_round_trips() {
        for text in [
            r#"{"type":"text","content":"héllo"}"#,
            r#"{"type":"data","data":{"k":[1,2.5]},"schema_uri":null}"#,
            r#"{"type":"file","uri":"data:text/plain;base64,SGVsbG8gV29ybGQ=","mime_type":"text/plain","inline_data":"SGVsbG8gV29ybGQ="}"#,
            r#"{"type":"resource","resource_uri":"mcp://r/1"}"#,
            r#"{"type":"template","template":"Hi {{name}}","variables":{"name":"x"}}"#,
        ] {
            let part = Part::from_json(text.as_bytes()).unwrap();
            assert_eq!(part.to_json(), text);
        }
        assert_eq!(
            Part::text("a").to_json(),
            r#"{"type":"text","content":"a"}"#
        );
    }

    #[test]
    fn discriminator_errors() {
        assert_eq!(
            first_error(json!({"content": "x"})),
            (
                "union_tag_not_found".into(),
                "[]".into(),
                "Unable to extract tag using discriminator 'type'".into()
            )
        );
        assert_eq!(
            first_error(json!({"type": "video"})),
            ("union_tag_invalid".into(), "[]".into(), "Input tag 'video' found using 'type' does not match any of the expected tags: 'text', 'data', 'file', 'resource', 'template'".into())
        );
        assert_eq!(first_error(json!("text")).0, "model_attributes_type");
        assert_eq!(
            first_error(json!({"type": "text"})),
            (
                "missing".into(),
                r#"["text","content"]"#.into(),
                "Field required".into()
            )
        );
        let e = TextPart::from_value(&json!({"type": "data", "content": ""})).unwrap_err();
        assert_eq!(e.errors[0].kind.message(), "Input should be 'text'");
    }

    #[test]
    fn file_rules() {
        let file = |uri: &str, mime: &str, data: Value| json!({"type": "file", "uri": uri, "mime_type": mime, "inline_data": data});
        assert_eq!(
            first_error(file("a/../b", "text/plain", Value::Null)).2,
            "Value error, URI must not contain path traversal (..): 'a/../b'"
        );
        assert_eq!(
            first_error(file(" FILE://x", "text/plain", Value::Null)).2,
            "Value error, file:// URIs are not allowed for security (path traversal risk)"
        );
        assert_eq!(
            first_error(file("https://x", "text", Value::Null)).2,
            "Value error, Invalid MIME type format: text"
        );
        assert_eq!(
            first_error(file("https://x", "text/plain; charset=utf-8", Value::Null)).0,
            "value_error"
        );
        for ok in [
            "Text/Plain",
            "application/vnd.api+json",
            "text/plain\n",
            "text/\u{212a}",
        ] {
            assert!(
                Part::from_value(&file("https://x", ok, Value::Null)).is_ok(),
                "{ok:?}"
            );
        }
        let part = Part::from_value(&file("https://x", "Text/Plain", Value::Null)).unwrap();
        assert!(part.to_json().contains(r#""mime_type":"Text/Plain""#));
    }

    #[test]
    fn base64_matches_cpython_strict_mode() {
        let cases = [
            ("", Ok(())),
            ("AB==", Ok(())),
            ("ABC=", Ok(())),
            ("ABCD", Ok(())),
            ("SGVsbG8", Err("Incorrect padding")),
            ("SGVsbA=", Err("Incorrect padding")),
            ("SGVsbA===", Err("Excess data after padding")),
            ("=SGk", Err("Leading padding not allowed")),
            ("SGk=SGk=", Err("Excess data after padding")),
            ("SG Vs", Err("Only base64 data is allowed")),
            (
                "é",
                Err("string argument should contain only ASCII characters"),
            ),
            (
                "A",
                Err(
                    "Invalid base64-encoded string: number of data characters (1) cannot be 1 more than a multiple of 4",
                ),
            ),
            ("AB=C", Err("Discontinuous padding not allowed")),
            (
                "A===",
                Err(
                    "Invalid base64-encoded string: number of data characters (1) cannot be 1 more than a multiple of 4",
                ),
            ),
            ("ABCD=", Err("Excess padding not allowed")),
        ];
        for (input, expected) in cases {
            assert_eq!(
                check_base64(input),
                expected.map_err(String::from),
                "{input:?}"
            );
        }
    }
}
