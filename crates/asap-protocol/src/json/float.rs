//! Float formatting that matches Python byte for byte.
//!
//! Python and pydantic both print the shortest decimal string that round-trips to the
//! same `f64`; they differ only in when they switch to scientific notation and in how
//! they write the exponent. Rust's `{:e}` gives the same shortest digits, so both
//! styles are a matter of layout.

/// Which Python encoder's float layout to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FloatStyle {
    /// `repr(float)`, used by `json.dumps`: scientific below `1e-4` and from `1e16`,
    /// exponent with a sign and at least two digits (`1e-07`, `1e+16`).
    PythonRepr,
    /// pydantic-core's `model_dump_json`: scientific below `1e-5` and from `1e16`,
    /// exponent without padding (`1e-7`, `1e+16`).
    Pydantic,
}

/// Formats a finite `f64` the way the chosen Python encoder does.
///
/// Non-finite values have no JSON spelling; they are written as `null`, which is what
/// pydantic emits for them.
///
/// ```
/// use asap_protocol::json::{format_float, FloatStyle};
/// assert_eq!(format_float(1e-7, FloatStyle::PythonRepr), "1e-07");
/// assert_eq!(format_float(1e-7, FloatStyle::Pydantic), "1e-7");
/// assert_eq!(format_float(1e21, FloatStyle::Pydantic), "1e+21");
/// assert_eq!(format_float(100.0, FloatStyle::PythonRepr), "100.0");
/// assert_eq!(format_float(123456789.123456789, FloatStyle::Pydantic), "123456789.12345679");
/// ```
pub fn format_float(value: f64, style: FloatStyle) -> String {
    if !value.is_finite() {
        return "null".to_owned();
    }
    if value == 0.0 {
        return if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        }
        .to_owned();
    }
    let sci = format!("{value:e}");
    let (mantissa, exponent) = sci
        .split_once('e')
        .expect("`{:e}` always writes an exponent");
    let exponent: i32 = exponent.parse().expect("`{:e}` writes a decimal exponent");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let lowest_plain = match style {
        FloatStyle::PythonRepr => -4,
        FloatStyle::Pydantic => -5,
    };
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if (lowest_plain..16).contains(&exponent) {
        write_plain(&mut out, &digits, exponent);
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        if style == FloatStyle::PythonRepr && magnitude < 10 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
    }
    out
}

/// Writes `0.d1d2… × 10^(exponent+1)` without an exponent, always with a fraction.
fn write_plain(out: &mut String, digits: &str, exponent: i32) {
    if exponent < 0 {
        out.push_str("0.");
        for _ in 0..(-exponent - 1) {
            out.push('0');
        }
        out.push_str(digits);
        return;
    }
    let int_len = exponent as usize + 1;
    if digits.len() <= int_len {
        out.push_str(digits);
        for _ in digits.len()..int_len {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..int_len]);
        out.push('.');
        out.push_str(&digits[int_len..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs observed from CPython 3.13 `repr()` and pydantic-core 2.50 `to_json()`.
    const CASES: &[(f64, &str, &str)] = &[
        (0.0001, "0.0001", "0.0001"),
        (1.5e-5, "1.5e-05", "0.000015"),
        (1e-5, "1e-05", "0.00001"),
        (1e-6, "1e-06", "1e-6"),
        (1.234e-6, "1.234e-06", "1.234e-6"),
        (1e-7, "1e-07", "1e-7"),
        (1e15, "1000000000000000.0", "1000000000000000.0"),
        (9.999e15, "9999000000000000.0", "9999000000000000.0"),
        (1e16, "1e+16", "1e+16"),
        (1.5e16, "1.5e+16", "1.5e+16"),
        (
            12345678901234567.0,
            "1.2345678901234568e+16",
            "1.2345678901234568e+16",
        ),
        (0.000123, "0.000123", "0.000123"),
        (123.456, "123.456", "123.456"),
        (5e-324, "5e-324", "5e-324"),
        (2.5e-5, "2.5e-05", "0.000025"),
        (1e-10, "1e-10", "1e-10"),
        (-1e-6, "-1e-06", "-1e-6"),
        (1e100, "1e+100", "1e+100"),
        (0.5, "0.5", "0.5"),
        (1.0, "1.0", "1.0"),
        (100.0, "100.0", "100.0"),
        (-0.0, "-0.0", "-0.0"),
        (0.1, "0.1", "0.1"),
        (
            1.7976931348623157e308,
            "1.7976931348623157e+308",
            "1.7976931348623157e+308",
        ),
        (30000000000.0, "30000000000.0", "30000000000.0"),
    ];

    #[test]
    fn matches_python_repr_and_pydantic() {
        for (value, repr, pydantic) in CASES {
            assert_eq!(
                format_float(*value, FloatStyle::PythonRepr),
                *repr,
                "repr of {value:e}"
            );
            assert_eq!(
                format_float(*value, FloatStyle::Pydantic),
                *pydantic,
                "pydantic of {value:e}"
            );
        }
    }

    #[test]
    fn non_finite_is_null() {
        assert_eq!(format_float(f64::INFINITY, FloatStyle::Pydantic), "null");
        assert_eq!(format_float(f64::NAN, FloatStyle::PythonRepr), "null");
    }
}
