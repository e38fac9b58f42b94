//! A `serde_json` formatter that reproduces the reference's three encoders.

use std::io::{self, Write};

use serde_json::ser::Formatter;

use super::float::{FloatStyle, format_float};

/// Byte-level settings of one encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    /// `", "` and `": "` instead of `","` and `":"`.
    pub spaced: bool,
    /// Escape everything outside printable ASCII as `\uXXXX`.
    pub ascii: bool,
    /// Layout of floats.
    pub floats: FloatStyle,
}

/// Formatter carrying a [`Style`].
pub(crate) struct PyFormatter {
    style: Style,
}

impl PyFormatter {
    pub(crate) fn new(style: Style) -> Self {
        Self { style }
    }

    fn separator<W: ?Sized + Write>(&self, writer: &mut W, first: bool) -> io::Result<()> {
        match (first, self.style.spaced) {
            (true, _) => Ok(()),
            (false, true) => writer.write_all(b", "),
            (false, false) => writer.write_all(b","),
        }
    }
}

/// Canonical text of a JSON number in the given float style.
///
/// Integers are exact (any size); `-0` is Python's `0`. Floats are re-laid out.
pub(crate) fn number_text(raw: &str, floats: FloatStyle) -> String {
    if raw.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
        let value: f64 = raw.parse().unwrap_or(f64::NAN);
        format_float(value, floats)
    } else if raw.trim_start_matches('-').bytes().all(|b| b == b'0') {
        "0".to_owned()
    } else {
        raw.to_owned()
    }
}

impl Formatter for PyFormatter {
    fn write_f64<W: ?Sized + Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(format_float(value, self.style.floats).as_bytes())
    }

    fn write_f32<W: ?Sized + Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(writer, f64::from(value))
    }

    fn write_number_str<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        value: &str,
    ) -> io::Result<()> {
        writer.write_all(number_text(value, self.style.floats).as_bytes())
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        if !self.style.ascii || fragment.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return writer.write_all(fragment.as_bytes());
        }
        let mut units = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                writer.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn begin_array_value<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(if self.style.spaced { b": " } else { b":" })
    }
}
