//! Request decompression (pipeline steps 4 and 6): the `Content-Encoding` header, and
//! gzip and Brotli bodies, arbitrary ones and ones compressed here from arbitrary
//! plaintext, within the size limit. Decoded output never exceeds the limit; what was
//! compressed decodes to itself when it fits and is refused with 413 when it does not.
#![no_main]

use std::io::Write;

use asap_protocol::fuzzing::{Coding, content_coding, decode_body};
use libfuzzer_sys::fuzz_target;

/// The largest decoded body in these runs (the server's default is 10 MiB; smaller
/// reaches the limit checks with small inputs).
const MAX: usize = 64 * 1024;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).expect("in memory");
    encoder.finish().expect("in memory")
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 1, 22);
        writer.write_all(data).expect("in memory");
    }
    out
}

fn check_limit(result: &Result<Vec<u8>, asap_protocol::fuzzing::BodyRejection>) {
    match result {
        Ok(decoded) => assert!(decoded.len() <= MAX, "{} bytes decoded", decoded.len()),
        Err(refused) => assert!(
            refused.status == 400 || refused.status == 413,
            "{refused:?}"
        ),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 5 {
        0 => check_limit(&decode_body(rest.to_vec(), Coding::Gzip, MAX)),
        1 => check_limit(&decode_body(rest.to_vec(), Coding::Brotli, MAX)),
        2 | 3 => {
            let (coding, packed) = if mode % 5 == 2 {
                (Coding::Gzip, gzip(rest))
            } else {
                (Coding::Brotli, brotli(rest))
            };
            // Small limits too: the plaintext is at most a few KiB.
            let max = usize::from(mode) * 16;
            match decode_body(packed, coding, max) {
                Ok(decoded) => assert_eq!(decoded, rest),
                Err(refused) => {
                    assert_eq!(refused.status, 413, "{refused:?}");
                    assert!(rest.len() > max);
                }
            }
        }
        // Only bytes a header value can hold reach the server (hyper refuses the rest).
        _ if http::HeaderValue::from_bytes(rest).is_err() => {}
        _ => match content_coding(rest) {
            Ok(coding) => {
                let name = String::from_utf8_lossy(rest).trim().to_ascii_lowercase();
                let expected = match coding {
                    Coding::Identity => ["", "identity"].contains(&name.as_str()),
                    Coding::Gzip => name == "gzip",
                    Coding::Brotli => name == "br",
                    // A coding this harness does not know yet: a new one must be added.
                    other => panic!("{name:?} read as an unknown coding {other:?}"),
                };
                assert!(expected, "{name:?} read as {coding:?}");
            }
            Err(refused) => assert_eq!(refused.status, 415),
        },
    }
});
