//! The datetime codec shared by every ASAP timestamp (wire spec section 3).
//!
//! Input is read with `speedate`, the parser pydantic itself uses, configured as the
//! reference configures it, so exactly the same strings and numbers are accepted and
//! rejected with the same messages. Output is pydantic's: microseconds only when
//! non-zero, `Z` for UTC, any other offset kept as `±HH:MM`, naive values without one.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use speedate::{
    Date as SDate, DateTime as SDateTime, DateTimeConfig, MicrosecondsPrecisionOverflowBehavior,
    TimeConfig, TimestampUnit,
};
use strum::EnumMessage;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use super::validation::{Checked, ErrorKind, Loc, fail};

/// A point in time as ASAP carries it: a date and time with microsecond precision,
/// and the UTC offset it was written with, if any.
///
/// The offset is kept rather than converted, because the reference re-serializes a
/// received timestamp with the offset it arrived with. A *naive* timestamp (one
/// written without an offset) stays naive on output; for comparisons such as the
/// replay window it counts as UTC.
///
/// ```
/// use asap_protocol::model::Timestamp;
/// let t: Timestamp = "2026-01-15T12:30:00.5+02:00".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-01-15T12:30:00.500000+02:00");
/// let t: Timestamp = "2026-01-15 10:30:00z".parse().unwrap();
/// assert_eq!(t.to_string(), "2026-01-15T10:30:00Z");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp {
    local: PrimitiveDateTime,
    offset: Option<UtcOffset>,
}

/// Why a string is not a timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TimestampError {
    message: String,
}

fn pydantic_config() -> DateTimeConfig {
    DateTimeConfig {
        timestamp_unit: TimestampUnit::Infer,
        time_config: TimeConfig {
            microseconds_precision_overflow_behavior:
                MicrosecondsPrecisionOverflowBehavior::Truncate,
            unix_timestamp_offset: Some(0),
        },
    }
}

fn documentation(error: &speedate::ParseError) -> String {
    error.get_documentation().unwrap_or_default().to_owned()
}

impl Timestamp {
    /// The current time in UTC, truncated to microseconds, as the reference stamps
    /// envelopes.
    pub fn now() -> Self {
        Self::from_offset_datetime(OffsetDateTime::now_utc())
    }

    /// A timestamp with an offset, truncated to microseconds.
    pub fn from_offset_datetime(value: OffsetDateTime) -> Self {
        let micros = value.nanosecond() / 1_000;
        let value = value.replace_nanosecond(micros * 1_000).unwrap_or(value);
        Self {
            local: PrimitiveDateTime::new(value.date(), value.time()),
            offset: Some(value.offset()),
        }
    }

    /// A naive timestamp (no offset), truncated to microseconds.
    pub fn naive(value: PrimitiveDateTime) -> Self {
        let micros = value.nanosecond() / 1_000;
        Self {
            local: value.replace_nanosecond(micros * 1_000).unwrap_or(value),
            offset: None,
        }
    }

    /// The offset the timestamp was written with; `None` for a naive timestamp.
    pub fn offset(&self) -> Option<UtcOffset> {
        self.offset
    }

    /// The date and time as written, without the offset.
    pub fn local(&self) -> PrimitiveDateTime {
        self.local
    }

    /// The instant, reading a naive timestamp as UTC (as the reference's replay window does).
    pub fn to_offset_datetime(&self) -> OffsetDateTime {
        self.local
            .assume_offset(self.offset.unwrap_or(UtcOffset::UTC))
    }

    /// Reads a JSON value with the reference's rules: RFC 3339-like strings, dates,
    /// and Unix times (seconds, or milliseconds beyond 2×10^10) as numbers or numeric
    /// strings.
    pub(crate) fn validate(value: &Value, loc: &Loc<'_>) -> Checked<Self> {
        let result = match value {
            Value::String(s) => Self::from_text(s),
            Value::Number(n) => Self::from_number(&n.to_string()),
            _ => return fail(ErrorKind::DatetimeType, loc, value),
        };
        result.or_else(|kind| fail(kind, loc, value))
    }

    fn from_text(text: &str) -> Result<Self, ErrorKind> {
        match SDateTime::parse_bytes_with_config(text.as_bytes(), &pydantic_config()) {
            Ok(dt) => Self::from_speedate(&dt),
            Err(_) => match SDate::parse_bytes(text.as_bytes()) {
                Ok(date) => {
                    let date =
                        to_date(&date).map_err(|error| ErrorKind::DatetimeParsing { error })?;
                    Ok(Self {
                        local: PrimitiveDateTime::new(date, Time::MIDNIGHT),
                        offset: None,
                    })
                }
                Err(e) => Err(ErrorKind::DatetimeFromDateParsing {
                    error: documentation(&e),
                }),
            },
        }
    }

    fn from_number(raw: &str) -> Result<Self, ErrorKind> {
        let config = pydantic_config();
        let parsed = if raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
            let f: f64 = raw.parse().unwrap_or(f64::NAN);
            if f.is_nan() {
                return Err(ErrorKind::DatetimeParsing {
                    error: "NaN values not permitted".into(),
                });
            }
            SDateTime::from_float_with_config(f, &config)
        } else {
            match raw.parse::<i64>() {
                Ok(i) => SDateTime::from_timestamp_with_config(i, 0, &config),
                Err(_) if raw.starts_with('-') => Err(speedate::ParseError::DateTooSmall),
                Err(_) => Err(speedate::ParseError::DateTooLarge),
            }
        };
        match parsed {
            Ok(dt) => Self::from_speedate(&dt),
            Err(e) => Err(ErrorKind::DatetimeParsing {
                error: documentation(&e),
            }),
        }
    }

    fn from_speedate(dt: &SDateTime) -> Result<Self, ErrorKind> {
        let parsing = |error: String| ErrorKind::DatetimeParsing { error };
        let date = to_date(&dt.date).map_err(parsing)?;
        let t = &dt.time;
        let time = Time::from_hms_micro(t.hour, t.minute, t.second, t.microsecond)
            .map_err(|e| parsing(e.to_string()))?;
        let offset = match t.tz_offset {
            Some(seconds) => {
                Some(UtcOffset::from_whole_seconds(seconds).map_err(|e| parsing(e.to_string()))?)
            }
            None => None,
        };
        Ok(Self {
            local: PrimitiveDateTime::new(date, time),
            offset,
        })
    }
}

fn to_date(date: &SDate) -> Result<Date, String> {
    if date.year == 0 {
        return Err("year 0 is out of range".into());
    }
    let month = Month::try_from(date.month).map_err(|e| e.to_string())?;
    Date::from_calendar_date(i32::from(date.year), month, date.day).map_err(|e| e.to_string())
}

impl Timestamp {
    /// Python's `datetime.isoformat()`: like [`Display`](fmt::Display) but UTC is
    /// written `+00:00`. The reference uses it in error details and SQLite rows.
    ///
    /// ```
    /// let t: asap_protocol::model::Timestamp = "2026-01-15T10:30:00Z".parse().unwrap();
    /// assert_eq!(t.isoformat(), "2026-01-15T10:30:00+00:00");
    /// ```
    pub fn isoformat(&self) -> String {
        let text = self.to_string();
        match text.strip_suffix('Z') {
            Some(rest) => format!("{rest}+00:00"),
            None => text,
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.local.date();
        let t = self.local.time();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            d.year(),
            u8::from(d.month()),
            d.day(),
            t.hour(),
            t.minute(),
            t.second()
        )?;
        if t.microsecond() != 0 {
            write!(f, ".{:06}", t.microsecond())?;
        }
        match self.offset {
            None => Ok(()),
            Some(offset) if offset.is_utc() => f.write_str("Z"),
            Some(offset) => {
                let total = offset.whole_seconds();
                let sign = if total < 0 { '-' } else { '+' };
                let abs = total.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", abs / 3600, abs / 60 % 60)?;
                if abs % 60 != 0 {
                    write!(f, ":{:02}", abs % 60)?;
                }
                Ok(())
            }
        }
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    /// Parses any string form the reference accepts (see the module docs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_text(s).map_err(|kind| TimestampError {
            message: kind.message(),
        })
    }
}

impl From<OffsetDateTime> for Timestamp {
    fn from(value: OffsetDateTime) -> Self {
        Self::from_offset_datetime(value)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::validate(&value, &Loc::Root)
            .map_err(|errors| serde::de::Error::custom(errors[0].kind.message()))
    }
}

impl schemars::JsonSchema for Timestamp {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Timestamp".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": "string", "format": "date-time"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn out(value: Value) -> String {
        Timestamp::validate(&value, &Loc::Root).unwrap().to_string()
    }

    fn err(value: Value) -> (String, String) {
        let e = Timestamp::validate(&value, &Loc::Root)
            .unwrap_err()
            .remove(0);
        (e.kind.type_name().to_owned(), e.kind.message())
    }

    #[test]
    fn normalization_table_of_the_spec() {
        assert_eq!(
            out(json!("2026-01-15T12:30:00.5+02:00")),
            "2026-01-15T12:30:00.500000+02:00"
        );
        assert_eq!(
            out(json!("2026-01-15T10:30:00.123456789Z")),
            "2026-01-15T10:30:00.123456Z"
        );
        assert_eq!(
            out(json!("2026-01-15T10:30:00.000000Z")),
            "2026-01-15T10:30:00Z"
        );
        assert_eq!(out(json!(1768473000)), "2026-01-15T10:30:00Z");
        assert_eq!(out(json!(1768473000123_i64)), "2026-01-15T10:30:00.123000Z");
        assert_eq!(out(json!("2026-01-15T10:30:00")), "2026-01-15T10:30:00");
        assert_eq!(out(json!("2026-01-15 10:30:00z")), "2026-01-15T10:30:00Z");
    }

    #[test]
    fn other_accepted_forms() {
        assert_eq!(out(json!("2026-01-15T10:30Z")), "2026-01-15T10:30:00Z");
        assert_eq!(
            out(json!("2026-01-15t10:30:00+0200")),
            "2026-01-15T10:30:00+02:00"
        );
        assert_eq!(
            out(json!("2026-01-15T10:30:00,5Z")),
            "2026-01-15T10:30:00.500000Z"
        );
        assert_eq!(
            out(json!("2026-01-15T10:30:00-00:00")),
            "2026-01-15T10:30:00Z"
        );
        assert_eq!(
            out(json!("2026-01-15T10:30:00-05:30")),
            "2026-01-15T10:30:00-05:30"
        );
        assert_eq!(out(json!("2026-01-15")), "2026-01-15T00:00:00");
        assert_eq!(out(json!(1768473000.5)), "2026-01-15T10:30:00.500000Z");
        assert_eq!(out(json!("1768473000")), "2026-01-15T10:30:00Z");
        assert_eq!(out(json!("1768473000.25")), "2026-01-15T10:30:00.250000Z");
        assert_eq!(out(json!(20000000001_i64)), "1970-08-20T11:33:20.001000Z");
        assert_eq!(out(json!(-1)), "1969-12-31T23:59:59Z");
        assert_eq!(
            out(json!("9999-12-31T23:59:59.999999Z")),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn rejected_forms_carry_the_reference_messages() {
        assert_eq!(
            err(json!(true)),
            (
                "datetime_type".into(),
                "Input should be a valid datetime".into()
            )
        );
        assert_eq!(err(json!(null)).0, "datetime_type");
        assert_eq!(
            err(json!("20260115T103000Z")),
            (
                "datetime_from_date_parsing".into(),
                "Input should be a valid datetime or date, invalid date separator, expected `-`"
                    .into()
            )
        );
        assert_eq!(
            err(json!("2026-01-15T24:00:00Z")).1,
            "Input should be a valid datetime or date, unexpected extra characters at the end of the input"
        );
        assert_eq!(
            err(json!("2026-02-30T00:00:00Z")).1,
            "Input should be a valid datetime or date, day value is outside expected range"
        );
        assert_eq!(
            err(json!(" 2026-01-15T10:30:00Z")).1,
            "Input should be a valid datetime or date, invalid character in year"
        );
        assert_eq!(
            err(json!("nan")).1,
            "Input should be a valid datetime or date, input is too short"
        );
        assert_eq!(
            err(json!("0000-01-01T00:00:00Z")),
            (
                "datetime_parsing".into(),
                "Input should be a valid datetime, year 0 is out of range".into()
            )
        );
        assert_eq!(err(json!(1e20)), ("datetime_parsing".into(), "Input should be a valid datetime, dates after 9999 are not supported as unix timestamps".into()));
        assert_eq!(err(json!(1768473000123456_i64)).0, "datetime_parsing");
    }

    #[test]
    fn instants_and_construction() {
        let t: Timestamp = "2026-01-15T12:30:00+02:00".parse().unwrap();
        let u: Timestamp = "2026-01-15T10:30:00".parse().unwrap();
        assert_eq!(t.to_offset_datetime(), u.to_offset_datetime());
        assert_eq!(u.offset(), None);
        let now = Timestamp::now();
        assert_eq!(now.offset(), Some(UtcOffset::UTC));
        assert_eq!(now.local().nanosecond() % 1_000, 0);
        assert!(now.to_string().ends_with('Z'));
        assert!("garbage".parse::<Timestamp>().is_err());
        let odd =
            Timestamp::from_offset_datetime(time::macros::datetime!(2026-01-15 10:30:00 +01:30:15));
        assert_eq!(odd.to_string(), "2026-01-15T10:30:00+01:30:15");
    }
}
