//! The JSON reader and the five encoders of `asap_protocol::json`: for any JSON the
//! reader accepts, each encoder's bytes must read back as the same value, and encoding
//! that again must give the same bytes.
#![no_main]

use asap_protocol::json::{
    parse, to_canonical, to_compact, to_model_json, to_python_default, to_python_sorted,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

type Encoder = fn(&Value) -> String;

const ENCODERS: [(&str, Encoder); 5] = [
    ("to_compact", |v| to_compact(v)),
    ("to_model_json", |v| to_model_json(v)),
    ("to_python_default", |v| to_python_default(v)),
    ("to_python_sorted", |v| to_python_sorted(v)),
    ("to_canonical", |v| to_canonical(v)),
];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = parse(data) else {
        return;
    };
    for (name, encode) in ENCODERS {
        let bytes = encode(&value);
        let again = parse(bytes.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: its output does not parse ({e}): {bytes}"));
        assert_eq!(again, value, "{name}: {bytes}");
        assert_eq!(encode(&again), bytes, "{name}: not byte-stable");
    }
});
