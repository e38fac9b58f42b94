//! The JSON-RPC request model.

use serde::Serialize;
use serde_json::{Number, Value};

use crate::json::JsonObject;
use crate::model::validation::{
    Checked, ErrorDetail, ErrorKind, Loc, enumeration, fail, object, string,
};
use crate::model::{Model, ValidationError};

/// A JSON-RPC request id: a string or an integer (of any size, echoed exactly).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum RequestId {
    /// A string id, as the reference client sends (`"req-1"`).
    Str(String),
    /// An integer id.
    Int(Number),
}

impl From<&str> for RequestId {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for RequestId {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl From<i64> for RequestId {
    fn from(value: i64) -> Self {
        Self::Int(value.into())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Int(n) => write!(f, "{n}"),
        }
    }
}

impl RequestId {
    /// pydantic's smart `str | int` union: a string stays a string; otherwise an
    /// integer in lax mode (`true` is 1, `2.0` is 2). Failing both reports both branches.
    pub(crate) fn validate(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        let int = match value {
            Value::String(s) => return Ok(Self::Str(s.clone())),
            Value::Bool(b) => Ok(Number::from(i64::from(*b))),
            Value::Number(n) => {
                let text = n.to_string();
                if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                    match text.parse::<f64>() {
                        Ok(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                            Ok(Number::from(f as i64))
                        }
                        _ => Err(ErrorKind::IntFromFloat),
                    }
                } else {
                    Ok(n.clone())
                }
            }
            _ => Err(ErrorKind::IntType),
        };
        match int {
            Ok(n) => Ok(Self::Int(n)),
            Err(kind) => Err(vec![
                ErrorDetail::new(ErrorKind::StringType, &Loc::Field(loc, "str"), value),
                ErrorDetail::new(kind, &Loc::Field(loc, "int"), value),
            ]),
        }
    }

    /// The id to echo in an error response for a raw request body: a string or an
    /// integer (booleans become 1 and 0) as the reference echoes it, otherwise `None`.
    pub fn echo_from(body: &Value) -> Option<Self> {
        let id = body.get("id")?;
        Self::validate(id, &Loc::Root).ok()
    }
}

fn jsonrpc_version(value: &Value, loc: &Loc<'_>) -> Checked<&'static str> {
    enumeration(value, loc, &[("2.0", "2.0")], true)
}

/// A JSON-RPC request as the reference's `JsonRpcRequest` model reads it: `jsonrpc`
/// may be omitted (it defaults to `"2.0"`), `params` must be an object, `id` is
/// required, and unknown members are rejected.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonRpcRequest {
    /// Always `"2.0"`.
    pub jsonrpc: &'static str,
    /// The method (`"asap.send"`).
    pub method: String,
    /// The parameters (`{"envelope": ...}`).
    pub params: JsonObject,
    /// The request id.
    pub id: RequestId,
}

impl JsonRpcRequest {
    /// An `asap.send` request for `envelope` (S2 body when sent with
    /// [`crate::json::to_python_default`]).
    pub fn send(envelope: &crate::model::Envelope, id: RequestId) -> Self {
        let mut params = JsonObject::new();
        params.insert("envelope".into(), envelope.to_value());
        Self {
            jsonrpc: "2.0",
            method: super::ASAP_METHOD.to_owned(),
            params,
            id,
        }
    }
}

impl Model for JsonRpcRequest {
    const NAME: &'static str = "JsonRpcRequest";

    fn validate_at(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        const MEMBERS: &[&str] = &["jsonrpc", "method", "params", "id"];
        let mut fields = crate::model::validation::Fields::new(value, loc, Self::NAME, MEMBERS)?;
        let jsonrpc = fields.defaulted("jsonrpc", || "2.0", jsonrpc_version);
        let method = fields.required("method", string);
        let params = fields.required("params", object);
        let id = fields.required("id", RequestId::validate);
        fields.finish()?;
        match (jsonrpc, method, params, id) {
            (Some(jsonrpc), Some(method), Some(params), Some(id)) => Ok(Self {
                jsonrpc,
                method,
                params,
                id,
            }),
            _ => fail(ErrorKind::Missing, loc, value),
        }
    }
}

/// Validates a request body, returning the reference's error list on failure.
pub fn parse_request(value: &Value) -> Result<JsonRpcRequest, ValidationError> {
    JsonRpcRequest::from_value(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: Value) -> Vec<(String, String)> {
        parse_request(&v)
            .unwrap_err()
            .errors
            .iter()
            .map(|e| {
                (
                    e.kind.type_name().to_owned(),
                    serde_json::to_string(&e.loc).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn accepts_the_reference_shapes() {
        let r =
            parse_request(&json!({"method": "asap.send", "params": {}, "id": "req-1"})).unwrap();
        assert_eq!(r.jsonrpc, "2.0");
        assert_eq!(r.id, RequestId::from("req-1"));
        assert_eq!(
            parse_request(&json!({"method": "m", "params": {}, "id": true}))
                .unwrap()
                .id,
            RequestId::from(1)
        );
        assert_eq!(
            parse_request(&json!({"method": "m", "params": {}, "id": 2.0}))
                .unwrap()
                .id,
            RequestId::from(2)
        );
        let big: Value = serde_json::from_str(
            r#"{"method":"m","params":{},"id":123456789012345678901234567890}"#,
        )
        .unwrap();
        assert_eq!(
            crate::json::to_compact(&parse_request(&big).unwrap().id),
            "123456789012345678901234567890"
        );
    }

    #[test]
    fn rejects_like_the_reference() {
        assert_eq!(
            errors(json!({"jsonrpc": "1.0", "method": "m", "params": {}, "id": 1})),
            [("literal_error".into(), r#"["jsonrpc"]"#.into())]
        );
        assert_eq!(
            errors(json!({"method": "m", "params": {}})),
            [("missing".into(), r#"["id"]"#.into())]
        );
        assert_eq!(
            errors(json!({"method": "m", "params": {}, "id": null})),
            [
                ("string_type".into(), r#"["id","str"]"#.into()),
                ("int_type".into(), r#"["id","int"]"#.into())
            ]
        );
        assert_eq!(
            errors(json!({"method": "m", "params": {}, "id": 1.5}))[1].0,
            "int_from_float"
        );
        assert_eq!(
            errors(json!({"method": "m", "params": [], "id": 1})),
            [("dict_type".into(), r#"["params"]"#.into())]
        );
        assert_eq!(
            errors(json!({"method": "m", "params": {}, "id": 1, "x": 0})),
            [("extra_forbidden".into(), r#"["x"]"#.into())]
        );
    }

    #[test]
    fn echo_ids() {
        assert_eq!(
            RequestId::echo_from(&json!({"id": "a"})),
            Some(RequestId::from("a"))
        );
        assert_eq!(
            RequestId::echo_from(&json!({"id": false})),
            Some(RequestId::from(0))
        );
        assert_eq!(RequestId::echo_from(&json!({"id": 1.5})), None);
        assert_eq!(RequestId::echo_from(&json!({"id": {}})), None);
        assert_eq!(RequestId::echo_from(&json!({})), None);
        assert_eq!(RequestId::from(7).to_string(), "7");
    }
}
