//! Validation errors in the reference's shape, and the readers that produce them.
//!
//! The reference validates with pydantic in "lax" mode and reports a list of errors,
//! each with a `type`, a `loc` (path into the input), a `msg` and the offending
//! `input`. [`ValidationError`] carries the same list, so a server can report it in
//! `data.validation_errors` and a user sees the same words from either
//! implementation.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::json::{JsonObject, normalize_numbers};

/// Version of pydantic whose error documentation URLs the reference emits.
const PYDANTIC_DOCS: &str = "https://errors.pydantic.dev/2.14/v/";

/// One step of a [`ErrorDetail::loc`] path: a member name or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum LocItem {
    /// An object member.
    Key(String),
    /// An array position.
    Index(usize),
}

impl fmt::Display for LocItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(key) => f.write_str(key),
            Self::Index(index) => write!(f, "{index}"),
        }
    }
}

/// A path into the input being validated, built on the stack while validating and
/// turned into a `Vec<LocItem>` only when an error is recorded.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Loc<'a> {
    /// The document itself.
    Root,
    /// A member of the object at the parent path.
    Field(&'a Loc<'a>, &'a str),
    /// An element of the array at the parent path.
    Index(&'a Loc<'a>, usize),
}

impl Loc<'_> {
    /// The path as a list, outermost first.
    pub fn to_vec(&self) -> Vec<LocItem> {
        let mut items = Vec::new();
        let mut cursor = self;
        loop {
            match cursor {
                Loc::Root => break,
                Loc::Field(parent, key) => {
                    items.push(LocItem::Key((*key).to_owned()));
                    cursor = parent;
                }
                Loc::Index(parent, index) => {
                    items.push(LocItem::Index(*index));
                    cursor = parent;
                }
            }
        }
        items.reverse();
        items
    }
}

/// What went wrong, with pydantic's error `type` and message for each kind.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A required member is absent (`missing`).
    Missing,
    /// A member the model does not declare (`extra_forbidden`).
    ExtraForbidden,
    /// Not a JSON string (`string_type`).
    StringType,
    /// Not a JSON object where a free-form object is expected (`dict_type`).
    DictType,
    /// Not a JSON object where a nested model is expected (`model_type`).
    ModelType {
        /// Name of the expected model.
        class_name: &'static str,
    },
    /// Not an object where a tagged union is expected (`model_attributes_type`).
    ModelAttributesType,
    /// Not a JSON array (`list_type`).
    ListType,
    /// Not a boolean (`bool_type`).
    BoolType,
    /// A number or string that does not spell a boolean (`bool_parsing`).
    BoolParsing,
    /// Not a number (`float_type`).
    FloatType,
    /// A string that does not spell a number (`float_parsing`).
    FloatParsing,
    /// Not an integer (`int_type`).
    IntType,
    /// A string that does not spell an integer (`int_parsing`).
    IntParsing,
    /// A number with a fractional part (`int_from_float`).
    IntFromFloat,
    /// A float too large to be an integer (`int_parsing_size`).
    IntParsingSize,
    /// An integer that this implementation cannot hold: outside the signed 64-bit range.
    /// A deliberate difference: the reference accepts integers of any size here.
    IntTooLarge,
    /// Not one of the enumeration's values (`enum`).
    Enum {
        /// The allowed values, quoted as pydantic lists them.
        expected: String,
    },
    /// Not one of the allowed literal values (`literal_error`).
    Literal {
        /// The allowed values, quoted as pydantic lists them.
        expected: String,
    },
    /// Below a minimum (`greater_than_equal`).
    GreaterThanEqual {
        /// The minimum.
        ge: i64,
    },
    /// Above a maximum (`less_than_equal`).
    LessThanEqual {
        /// The maximum.
        le: i64,
    },
    /// A float below a minimum (`greater_than_equal`): the message is
    /// [`ErrorKind::GreaterThanEqual`]'s, but pydantic writes the bound in `ctx` as a
    /// float (`{"ge": 0.0}`).
    GreaterThanEqualFloat {
        /// The minimum.
        ge: i64,
    },
    /// A float above a maximum (`less_than_equal`), `ctx` bound written as a float.
    LessThanEqualFloat {
        /// The maximum.
        le: i64,
    },
    /// A list with too few items (`too_short`).
    TooShort {
        /// The minimum length.
        min_length: usize,
        /// The length found.
        actual_length: usize,
    },
    /// A string with too many characters (`string_too_long`).
    StringTooLong {
        /// The most characters allowed.
        max_length: usize,
    },
    /// Not a value a datetime can be read from (`datetime_type`).
    DatetimeType,
    /// A timestamp that cannot be a datetime (`datetime_parsing`).
    DatetimeParsing {
        /// Why, in the parser's words.
        error: String,
    },
    /// A string that is neither a datetime nor a date (`datetime_from_date_parsing`).
    DatetimeFromDateParsing {
        /// Why, in the parser's words.
        error: String,
    },
    /// A tagged union value without its tag member (`union_tag_not_found`).
    UnionTagNotFound {
        /// The tag member's name.
        discriminator: &'static str,
    },
    /// A tagged union value whose tag names no variant (`union_tag_invalid`).
    UnionTagInvalid {
        /// The tag member's name.
        discriminator: &'static str,
        /// The tag found.
        tag: String,
        /// The allowed tags, quoted.
        expected_tags: String,
    },
    /// A string that does not match the required pattern (`string_pattern_mismatch`).
    StringPatternMismatch {
        /// The regular expression.
        pattern: &'static str,
    },
    /// A rule of the protocol itself (`value_error`), such as the agent URN format.
    ValueError {
        /// The rule's message.
        message: String,
    },
}

impl ErrorKind {
    /// pydantic's error `type` string.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::ExtraForbidden => "extra_forbidden",
            Self::StringType => "string_type",
            Self::DictType => "dict_type",
            Self::ModelType { .. } => "model_type",
            Self::ModelAttributesType => "model_attributes_type",
            Self::ListType => "list_type",
            Self::BoolType => "bool_type",
            Self::BoolParsing => "bool_parsing",
            Self::FloatType => "float_type",
            Self::FloatParsing => "float_parsing",
            Self::IntType => "int_type",
            Self::IntParsing => "int_parsing",
            Self::IntFromFloat => "int_from_float",
            Self::IntParsingSize => "int_parsing_size",
            Self::IntTooLarge => "int_too_large",
            Self::Enum { .. } => "enum",
            Self::Literal { .. } => "literal_error",
            Self::GreaterThanEqual { .. } | Self::GreaterThanEqualFloat { .. } => {
                "greater_than_equal"
            }
            Self::LessThanEqual { .. } | Self::LessThanEqualFloat { .. } => "less_than_equal",
            Self::TooShort { .. } => "too_short",
            Self::StringTooLong { .. } => "string_too_long",
            Self::DatetimeType => "datetime_type",
            Self::DatetimeParsing { .. } => "datetime_parsing",
            Self::DatetimeFromDateParsing { .. } => "datetime_from_date_parsing",
            Self::UnionTagNotFound { .. } => "union_tag_not_found",
            Self::UnionTagInvalid { .. } => "union_tag_invalid",
            Self::StringPatternMismatch { .. } => "string_pattern_mismatch",
            Self::ValueError { .. } => "value_error",
        }
    }

    /// The human-readable message, word for word as pydantic writes it.
    pub fn message(&self) -> String {
        match self {
            Self::Missing => "Field required".into(),
            Self::ExtraForbidden => "Extra inputs are not permitted".into(),
            Self::StringType => "Input should be a valid string".into(),
            Self::DictType => "Input should be a valid dictionary".into(),
            Self::ModelType { class_name } => {
                format!("Input should be a valid dictionary or instance of {class_name}")
            }
            Self::ModelAttributesType => {
                "Input should be a valid dictionary or object to extract fields from".into()
            }
            Self::ListType => "Input should be a valid list".into(),
            Self::BoolType => "Input should be a valid boolean".into(),
            Self::BoolParsing => {
                "Input should be a valid boolean, unable to interpret input".into()
            }
            Self::FloatType => "Input should be a valid number".into(),
            Self::FloatParsing => {
                "Input should be a valid number, unable to parse string as a number".into()
            }
            Self::IntType => "Input should be a valid integer".into(),
            Self::IntParsing => {
                "Input should be a valid integer, unable to parse string as an integer".into()
            }
            Self::IntFromFloat => {
                "Input should be a valid integer, got a number with a fractional part".into()
            }
            Self::IntParsingSize => {
                "Unable to parse input string as an integer, exceeded maximum size".into()
            }
            Self::IntTooLarge => "Input should be an integer between -2^63 and 2^63-1".into(),
            Self::Enum { expected } | Self::Literal { expected } => {
                format!("Input should be {expected}")
            }
            Self::GreaterThanEqual { ge } | Self::GreaterThanEqualFloat { ge } => {
                format!("Input should be greater than or equal to {ge}")
            }
            Self::LessThanEqual { le } | Self::LessThanEqualFloat { le } => {
                format!("Input should be less than or equal to {le}")
            }
            Self::TooShort {
                min_length,
                actual_length,
            } => format!(
                "List should have at least {min_length} item{} after validation, not {actual_length}",
                if *min_length == 1 { "" } else { "s" }
            ),
            Self::DatetimeType => "Input should be a valid datetime".into(),
            Self::DatetimeParsing { error } => format!("Input should be a valid datetime, {error}"),
            Self::DatetimeFromDateParsing { error } => {
                format!("Input should be a valid datetime or date, {error}")
            }
            Self::UnionTagNotFound { discriminator } => {
                format!("Unable to extract tag using discriminator '{discriminator}'")
            }
            Self::UnionTagInvalid {
                discriminator,
                tag,
                expected_tags,
            } => format!(
                "Input tag '{tag}' found using '{discriminator}' does not match any of the expected tags: {expected_tags}"
            ),
            Self::StringTooLong { max_length } => {
                let unit = if *max_length == 1 {
                    "character"
                } else {
                    "characters"
                };
                format!("String should have at most {max_length} {unit}")
            }
            Self::StringPatternMismatch { pattern } => {
                format!("String should match pattern '{pattern}'")
            }
            Self::ValueError { message } => format!("Value error, {message}"),
        }
    }

    /// pydantic's `ctx` object for the kinds that have one.
    pub fn context(&self) -> Option<Value> {
        let mut ctx = Map::new();
        match self {
            Self::ModelType { class_name } => {
                ctx.insert("class_name".into(), (*class_name).into());
            }
            Self::Enum { expected } | Self::Literal { expected } => {
                ctx.insert("expected".into(), expected.clone().into());
            }
            Self::GreaterThanEqual { ge } => {
                ctx.insert("ge".into(), (*ge).into());
            }
            Self::LessThanEqual { le } => {
                ctx.insert("le".into(), (*le).into());
            }
            Self::GreaterThanEqualFloat { ge } => {
                ctx.insert("ge".into(), (*ge as f64).into());
            }
            Self::LessThanEqualFloat { le } => {
                ctx.insert("le".into(), (*le as f64).into());
            }
            Self::TooShort {
                min_length,
                actual_length,
            } => {
                ctx.insert("field_type".into(), "List".into());
                ctx.insert("min_length".into(), (*min_length).into());
                ctx.insert("actual_length".into(), (*actual_length).into());
            }
            Self::StringTooLong { max_length } => {
                ctx.insert("max_length".into(), (*max_length).into());
            }
            Self::StringPatternMismatch { pattern } => {
                ctx.insert("pattern".into(), (*pattern).into());
            }
            Self::DatetimeParsing { error } | Self::DatetimeFromDateParsing { error } => {
                ctx.insert("error".into(), error.clone().into());
            }
            Self::UnionTagNotFound { discriminator } => {
                ctx.insert("discriminator".into(), format!("'{discriminator}'").into());
            }
            Self::UnionTagInvalid {
                discriminator,
                tag,
                expected_tags,
            } => {
                ctx.insert("discriminator".into(), format!("'{discriminator}'").into());
                ctx.insert("tag".into(), tag.clone().into());
                ctx.insert("expected_tags".into(), expected_tags.clone().into());
            }
            Self::ValueError { message } => {
                ctx.insert("error".into(), message.clone().into());
            }
            _ => return None,
        }
        Some(Value::Object(ctx))
    }

    /// Whether pydantic documents this kind at `errors.pydantic.dev` (all but ours).
    fn has_docs(&self) -> bool {
        !matches!(self, Self::IntTooLarge)
    }
}

/// One validation failure: what, where, and the value found there.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDetail {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Where, as a path from the document root.
    pub loc: Vec<LocItem>,
    /// The offending value (for `missing`, the object that lacks the member).
    pub input: Value,
}

impl ErrorDetail {
    /// Records `kind` at `loc` for `input`.
    pub fn new(kind: ErrorKind, loc: &Loc<'_>, input: &Value) -> Self {
        Self {
            kind,
            loc: loc.to_vec(),
            input: input.clone(),
        }
    }

    /// The pydantic-style JSON object: `type`, `loc`, `msg`, `input`, `ctx` when the
    /// kind has one, and `url` when pydantic documents the kind.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        out.insert("type".into(), self.kind.type_name().into());
        out.insert(
            "loc".into(),
            serde_json::to_value(&self.loc).unwrap_or_default(),
        );
        out.insert("msg".into(), self.kind.message().into());
        out.insert("input".into(), self.input.clone());
        if let Some(ctx) = self.kind.context() {
            out.insert("ctx".into(), ctx);
        }
        if self.kind.has_docs() {
            out.insert(
                "url".into(),
                format!("{PYDANTIC_DOCS}{}", self.kind.type_name()).into(),
            );
        }
        Value::Object(out)
    }
}

impl Serialize for ErrorDetail {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// A document that does not satisfy a model: every failure found, in the order the
/// reference reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationError {
    /// The model that was being validated (`"Envelope"`, `"Manifest"`, ...).
    pub title: &'static str,
    /// The failures; never empty.
    pub errors: Vec<ErrorDetail>,
}

impl ValidationError {
    /// The failures as pydantic's `errors()` list, ready for `data.validation_errors`.
    pub fn to_json(&self) -> Value {
        Value::Array(self.errors.iter().map(ErrorDetail::to_json).collect())
    }
}

/// pydantic's layout: a count line, then for each error its path and message.
impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} validation error{} for {}",
            if n == 1 { "" } else { "s" },
            self.title
        )?;
        for error in &self.errors {
            let path: Vec<String> = error.loc.iter().map(ToString::to_string).collect();
            write!(
                f,
                "\n{}\n  {} [type={}]",
                path.join("."),
                error.kind.message(),
                error.kind.type_name()
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ValidationError {}

/// Result of validating one value: the typed value or the failures found in it.
pub type Checked<T> = Result<T, Vec<ErrorDetail>>;

/// Shorthand for a single failure.
pub(crate) fn fail<T>(kind: ErrorKind, loc: &Loc<'_>, input: &Value) -> Checked<T> {
    Err(vec![ErrorDetail::new(kind, loc, input)])
}

/// Reads the members of one JSON object into a model, collecting every failure.
///
/// Members are read in declaration order; after the last one, [`Fields::finish`]
/// reports each member the model does not declare, in input order, as pydantic does.
pub(crate) struct Fields<'a> {
    map: &'a JsonObject,
    value: &'a Value,
    loc: &'a Loc<'a>,
    known: &'static [&'static str],
    errors: Vec<ErrorDetail>,
}

impl<'a> Fields<'a> {
    /// Starts reading `value`, which must be an object; `class_name` names the model in
    /// the error when it is not.
    pub(crate) fn new(
        value: &'a Value,
        loc: &'a Loc<'a>,
        class_name: &'static str,
        known: &'static [&'static str],
    ) -> Checked<Self> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                value,
                loc,
                known,
                errors: Vec::new(),
            }),
            _ => fail(ErrorKind::ModelType { class_name }, loc, value),
        }
    }

    fn read<T>(
        &mut self,
        name: &'static str,
        check: impl FnOnce(&Value, &Loc<'_>) -> Checked<T>,
        value: &Value,
    ) -> Option<T> {
        let loc = Loc::Field(self.loc, name);
        match check(value, &loc) {
            Ok(typed) => Some(typed),
            Err(mut errors) => {
                self.errors.append(&mut errors);
                None
            }
        }
    }

    /// A member that must be present (and, unless `check` allows it, not `null`).
    pub(crate) fn required<T>(
        &mut self,
        name: &'static str,
        check: impl FnOnce(&Value, &Loc<'_>) -> Checked<T>,
    ) -> Option<T> {
        match self.map.get(name) {
            Some(value) => self.read(name, check, value),
            None => {
                let loc = Loc::Field(self.loc, name);
                self.errors
                    .push(ErrorDetail::new(ErrorKind::Missing, &loc, self.value));
                None
            }
        }
    }

    /// A nullable member whose default is `null`.
    pub(crate) fn optional<T>(
        &mut self,
        name: &'static str,
        check: impl FnOnce(&Value, &Loc<'_>) -> Checked<T>,
    ) -> Option<Option<T>> {
        match self.map.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => self.read(name, check, value).map(Some),
        }
    }

    /// A non-nullable member with a default used when it is absent.
    pub(crate) fn defaulted<T>(
        &mut self,
        name: &'static str,
        default: impl FnOnce() -> T,
        check: impl FnOnce(&Value, &Loc<'_>) -> Checked<T>,
    ) -> Option<T> {
        match self.map.get(name) {
            None => Some(default()),
            Some(value) => self.read(name, check, value),
        }
    }

    /// A nullable member that is filled in (for example with a new id) when it is
    /// absent or `null`.
    pub(crate) fn generated<T>(
        &mut self,
        name: &'static str,
        generate: impl FnOnce() -> T,
        check: impl FnOnce(&Value, &Loc<'_>) -> Checked<T>,
    ) -> Option<T> {
        match self.map.get(name) {
            None | Some(Value::Null) => Some(generate()),
            Some(value) => self.read(name, check, value),
        }
    }

    /// Returns the undeclared members (in input order) instead of refusing them, as a
    /// model with `extra="allow"` does, or every failure of the declared ones.
    pub(crate) fn finish_allowing_extra(self) -> Checked<JsonObject> {
        if !self.errors.is_empty() {
            return Err(self.errors);
        }
        Ok(self
            .map
            .iter()
            .filter(|(key, _)| !self.known.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect())
    }

    /// Reports undeclared members and returns every failure, if any.
    pub(crate) fn finish(mut self) -> Checked<()> {
        for (key, value) in self.map {
            if !self.known.contains(&key.as_str()) {
                let loc = Loc::Field(self.loc, key);
                self.errors
                    .push(ErrorDetail::new(ErrorKind::ExtraForbidden, &loc, value));
            }
        }
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.errors)
        }
    }
}

/// A JSON string.
pub(crate) fn string(value: &Value, loc: &Loc<'_>) -> Checked<String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        _ => fail(ErrorKind::StringType, loc, value),
    }
}

/// A free-form JSON object, with its numbers normalized as Python holds them.
pub(crate) fn object(value: &Value, loc: &Loc<'_>) -> Checked<JsonObject> {
    match value {
        Value::Object(map) => {
            let mut copy = Value::Object(map.clone());
            normalize_numbers(&mut copy);
            match copy {
                Value::Object(map) => Ok(map),
                _ => unreachable!("normalizing keeps an object an object"),
            }
        }
        _ => fail(ErrorKind::DictType, loc, value),
    }
}

/// A JSON array whose items each pass `item`.
pub(crate) fn list<T>(
    value: &Value,
    loc: &Loc<'_>,
    item: impl Fn(&Value, &Loc<'_>) -> Checked<T>,
) -> Checked<Vec<T>> {
    let Value::Array(items) = value else {
        return fail(ErrorKind::ListType, loc, value);
    };
    let mut out = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, element) in items.iter().enumerate() {
        match item(element, &Loc::Index(loc, index)) {
            Ok(typed) => out.push(typed),
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Requires at least `min` items (pydantic's `min_length` on a list).
pub(crate) fn at_least<T>(
    items: Vec<T>,
    min: usize,
    loc: &Loc<'_>,
    input: &Value,
) -> Checked<Vec<T>> {
    if items.len() < min {
        return fail(
            ErrorKind::TooShort {
                min_length: min,
                actual_length: items.len(),
            },
            loc,
            input,
        );
    }
    Ok(items)
}

/// A list of strings.
pub(crate) fn string_list(value: &Value, loc: &Loc<'_>) -> Checked<Vec<String>> {
    list(value, loc, string)
}

/// A boolean in pydantic's lax mode: `true`/`false`, `0`/`1`, and the strings
/// `true false yes no on off 1 0 t f y n` in any case.
pub(crate) fn boolean(value: &Value, loc: &Loc<'_>) -> Checked<bool> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) => {
            let text = n.to_string();
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                match text.parse::<f64>() {
                    Ok(0.0) => Ok(false),
                    Ok(1.0) => Ok(true),
                    Ok(f) if f.fract() == 0.0 && f.abs() < I64_LIMIT => {
                        fail(ErrorKind::BoolParsing, loc, value)
                    }
                    _ => fail(ErrorKind::BoolType, loc, value),
                }
            } else {
                match text.as_str() {
                    "0" => Ok(false),
                    "1" => Ok(true),
                    // Integers beyond 64 bits are not even tried as booleans.
                    _ if text.parse::<i64>().is_err() => fail(ErrorKind::BoolType, loc, value),
                    _ => fail(ErrorKind::BoolParsing, loc, value),
                }
            }
        }
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "0" | "off" | "f" | "false" | "n" | "no" => Ok(false),
            "1" | "on" | "t" | "true" | "y" | "yes" => Ok(true),
            _ => fail(ErrorKind::BoolParsing, loc, value),
        },
        _ => fail(ErrorKind::BoolType, loc, value),
    }
}

/// 2^63: floats at or beyond it cannot become a 64-bit integer in pydantic either.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// An integer in pydantic's lax mode: JSON integers, floats without a fractional
/// part, booleans, and strings such as `" 5 "`, `"+5"`, `"1_000"` or `"5.0"`.
pub(crate) fn integer(value: &Value, loc: &Loc<'_>) -> Checked<i64> {
    let wide = match value {
        Value::Bool(b) => Some(i128::from(*b)),
        Value::Number(n) => {
            let text = n.to_string();
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                let f: f64 = text.parse().unwrap_or(f64::NAN);
                if f.fract() != 0.0 || !f.is_finite() {
                    return fail(ErrorKind::IntFromFloat, loc, value);
                }
                if f.abs() >= I64_LIMIT {
                    return fail(ErrorKind::IntParsingSize, loc, value);
                }
                Some(f as i128)
            } else {
                text.parse::<i128>().ok()
            }
        }
        Value::String(s) => match parse_int_str(s) {
            IntText::Int(i) => Some(i),
            IntText::TooLarge => None,
            IntText::Invalid => return fail(ErrorKind::IntParsing, loc, value),
        },
        _ => return fail(ErrorKind::IntType, loc, value),
    };
    match wide.and_then(|w| i64::try_from(w).ok()) {
        Some(i) => Ok(i),
        None => fail(ErrorKind::IntTooLarge, loc, value),
    }
}

/// An integer with inclusive bounds, reported as pydantic's `ge`/`le` errors.
pub(crate) fn bounded_integer(
    value: &Value,
    loc: &Loc<'_>,
    ge: Option<i64>,
    le: Option<i64>,
) -> Checked<i64> {
    let parsed = integer(value, loc);
    let wide = match &parsed {
        Ok(i) => i128::from(*i),
        Err(errors) if errors[0].kind == ErrorKind::IntTooLarge => {
            // Too large to hold, but a bound may still decide the error the reference gives.
            let negative = match value {
                Value::String(s) => s.trim().starts_with('-'),
                other => other.to_string().starts_with('-'),
            };
            if negative { i128::MIN } else { i128::MAX }
        }
        Err(_) => return parsed,
    };
    if let Some(ge) = ge.filter(|ge| wide < i128::from(*ge)) {
        return fail(ErrorKind::GreaterThanEqual { ge }, loc, value);
    }
    if let Some(le) = le.filter(|le| wide > i128::from(*le)) {
        return fail(ErrorKind::LessThanEqual { le }, loc, value);
    }
    parsed
}

enum IntText {
    Int(i128),
    TooLarge,
    Invalid,
}

/// pydantic's `str_as_int`: trim, optional sign, digits with single underscores
/// between them, and a fraction of zeros only (`"5.00"`).
fn parse_int_str(raw: &str) -> IntText {
    let trimmed = raw.trim();
    let number = match trimmed.find('.') {
        Some(dot) if trimmed[dot + 1..].bytes().all(|b| b == b'0') => &trimmed[..dot],
        Some(_) => return IntText::Invalid,
        None => trimmed,
    };
    let (negative, digits) = match number.as_bytes().first() {
        Some(b'-') => (true, &number[1..]),
        Some(b'+') => (false, &number[1..]),
        _ => (false, number),
    };
    let bytes = digits.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes[0].is_ascii_digit()
        && bytes[bytes.len() - 1].is_ascii_digit()
        && bytes.iter().all(|b| b.is_ascii_digit() || *b == b'_')
        && !digits.contains("__");
    if !well_formed {
        return IntText::Invalid;
    }
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    match clean.parse::<i128>() {
        Ok(i) => IntText::Int(if negative { -i } else { i }),
        Err(_) => IntText::TooLarge,
    }
}

/// A string enumeration value, matched exactly (case-sensitive).
pub(crate) fn enumeration<T: Copy>(
    value: &Value,
    loc: &Loc<'_>,
    variants: &[(&str, T)],
    literal: bool,
) -> Checked<T> {
    if let Value::String(s) = value
        && let Some((_, v)) = variants.iter().find(|(name, _)| name == s)
    {
        return Ok(*v);
    }
    let expected = quoted_alternatives(variants.iter().map(|(name, _)| *name));
    let kind = if literal {
        ErrorKind::Literal { expected }
    } else {
        ErrorKind::Enum { expected }
    };
    fail(kind, loc, value)
}

/// `'a', 'b' or 'c'`, as pydantic lists alternatives.
pub(crate) fn quoted_alternatives<'s>(names: impl Iterator<Item = &'s str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Runs a rule on an already-typed value, turning its message into a `value_error`.
pub(crate) fn rule<T>(
    typed: T,
    loc: &Loc<'_>,
    input: &Value,
    check: impl FnOnce(&T) -> Result<(), String>,
) -> Checked<T> {
    match check(&typed) {
        Ok(()) => Ok(typed),
        Err(message) => fail(ErrorKind::ValueError { message }, loc, input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind<T: fmt::Debug>(result: Checked<T>) -> &'static str {
        result.unwrap_err()[0].kind.type_name()
    }

    #[test]
    fn integers_coerce_like_pydantic() {
        let root = Loc::Root;
        for (input, expected) in [
            (json!(true), 1),
            (json!(false), 0),
            (json!(2.0), 2),
            (json!("5"), 5),
            (json!(" 5 "), 5),
            (json!("5.0"), 5),
            (json!("1_000"), 1000),
            (json!("+5"), 5),
            (json!("-0"), 0),
        ] {
            assert_eq!(integer(&input, &root).unwrap(), expected, "{input}");
        }
        assert_eq!(kind(integer(&json!(2.5), &root)), "int_from_float");
        assert_eq!(kind(integer(&json!("1e3"), &root)), "int_parsing");
        assert_eq!(kind(integer(&json!("0x10"), &root)), "int_parsing");
        assert_eq!(kind(integer(&json!("1__0"), &root)), "int_parsing");
        assert_eq!(kind(integer(&json!("_1"), &root)), "int_parsing");
        assert_eq!(kind(integer(&json!("\u{663}"), &root)), "int_parsing");
        assert_eq!(kind(integer(&json!([]), &root)), "int_type");
        assert_eq!(kind(integer(&json!(null), &root)), "int_type");
        assert_eq!(kind(integer(&json!(1e30), &root)), "int_parsing_size");
        let huge: Value = serde_json::from_str("1000000000000000000000000000000").unwrap();
        assert_eq!(kind(integer(&huge, &root)), "int_too_large");
    }

    #[test]
    fn bounds_win_over_size() {
        let huge: Value = serde_json::from_str("1000000000000000000000000000000").unwrap();
        let errors = bounded_integer(&huge, &Loc::Root, Some(0), Some(10)).unwrap_err();
        assert_eq!(errors[0].kind, ErrorKind::LessThanEqual { le: 10 });
        let errors = bounded_integer(&json!(0), &Loc::Root, Some(1), None).unwrap_err();
        assert_eq!(
            errors[0].kind.message(),
            "Input should be greater than or equal to 1"
        );
    }

    #[test]
    fn booleans_coerce_like_pydantic() {
        let root = Loc::Root;
        for (input, expected) in [
            (json!(1), true),
            (json!(0), false),
            (json!(1.0), true),
            (json!(0.0), false),
            (json!("yes"), true),
            (json!("On"), true),
            (json!("TRUE"), true),
            (json!("n"), false),
            (json!("OFF"), false),
        ] {
            assert_eq!(boolean(&input, &root).unwrap(), expected, "{input}");
        }
        assert_eq!(kind(boolean(&json!(2), &root)), "bool_parsing");
        assert_eq!(kind(boolean(&json!("2"), &root)), "bool_parsing");
        assert_eq!(kind(boolean(&json!("true "), &root)), "bool_parsing");
        assert_eq!(kind(boolean(&json!(1.5), &root)), "bool_type");
        assert_eq!(kind(boolean(&json!(null), &root)), "bool_type");
    }

    #[test]
    fn loc_paths_and_display() {
        let root = Loc::Root;
        let a = Loc::Field(&root, "parts");
        let b = Loc::Index(&a, 2);
        let c = Loc::Field(&b, "uri");
        assert_eq!(
            serde_json::to_string(&c.to_vec()).unwrap(),
            r#"["parts",2,"uri"]"#
        );
        let error = ValidationError {
            title: "Envelope",
            errors: vec![ErrorDetail::new(
                ErrorKind::Missing,
                &Loc::Field(&root, "sender"),
                &json!({}),
            )],
        };
        assert_eq!(
            error.to_string(),
            "1 validation error for Envelope\nsender\n  Field required [type=missing]"
        );
    }

    #[test]
    fn error_json_matches_pydantic_shape() {
        let loc = Loc::Field(&Loc::Root, "priority");
        let detail = ErrorDetail::new(ErrorKind::ExtraForbidden, &loc, &json!("high"));
        assert_eq!(
            crate::json::to_compact(&detail),
            r#"{"type":"extra_forbidden","loc":["priority"],"msg":"Extra inputs are not permitted","input":"high","url":"https://errors.pydantic.dev/2.14/v/extra_forbidden"}"#
        );
    }

    #[test]
    fn alternatives_are_listed_like_pydantic() {
        assert_eq!(quoted_alternatives(["a"].into_iter()), "'a'");
        assert_eq!(
            quoted_alternatives(["a", "b", "c"].into_iter()),
            "'a', 'b' or 'c'"
        );
    }
}
