//! Reading a request body within the size limit and undoing its `Content-Encoding`
//! (wire spec section 9.5).

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A body refused before JSON parsing, with its HTTP status and `detail` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyRejection {
    /// 400, 413 or 415.
    pub status: StatusCode,
    /// The reference's `detail` text.
    pub detail: String,
}

fn reject(status: StatusCode, detail: String) -> BodyRejection {
    BodyRejection { status, detail }
}

pub(crate) fn too_large(n: usize, max: usize) -> BodyRejection {
    reject(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("Request size ({n} bytes) exceeds maximum ({max} bytes)"),
    )
}

/// A supported request coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Coding {
    /// No coding (absent, empty or `identity`).
    Identity,
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
}

/// Step 2: refuses a declared `Content-Length` above the limit.
pub fn check_declared_length(headers: &HeaderMap, max: usize) -> Result<(), BodyRejection> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    match declared {
        Some(n) if n > max => Err(too_large(n, max)),
        _ => Ok(()),
    }
}

/// Step 4: the request's `Content-Encoding`, lower-cased and trimmed.
pub fn coding(headers: &HeaderMap) -> Result<Coding, BodyRejection> {
    let raw = headers.get(header::CONTENT_ENCODING).map(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .trim()
            .to_ascii_lowercase()
    });
    match raw.as_deref() {
        None | Some("" | "identity") => Ok(Coding::Identity),
        Some("gzip") => Ok(Coding::Gzip),
        Some("br") => Ok(Coding::Brotli),
        Some(other) => Err(reject(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Unsupported Content-Encoding: {other}. Supported: br, gzip"),
        )),
    }
}

/// Bytes of request bodies held in memory across all requests at once
/// (`ServerConfig::max_buffered_bytes`): each request takes its share as bytes arrive
/// and gives it back when it is dropped.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget {
    bytes: Arc<Semaphore>,
    max: usize,
}

/// The share of a [`BodyBudget`] one request holds.
#[derive(Debug, Default)]
pub(crate) struct HeldBytes(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            bytes: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Takes `n` more bytes for `held`, or refuses (503) when the budget is spent.
    pub(crate) fn take(&self, held: &mut HeldBytes, n: usize) -> Result<(), BodyRejection> {
        if n == 0 {
            return Ok(());
        }
        let permit = u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                reject(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "Server busy: request bodies in memory would exceed {} bytes",
                        self.max
                    ),
                )
            })?;
        match &mut held.0 {
            Some(existing) => existing.merge(permit),
            None => held.0 = Some(permit),
        }
        Ok(())
    }
}

/// Step 5: reads the body, refusing it as soon as more than `max` bytes arrived, and
/// charging what it holds to `budget`.
pub(crate) async fn read_limited(
    body: Body,
    max: usize,
    budget: &BodyBudget,
    held: &mut HeldBytes,
) -> Result<Vec<u8>, BodyRejection> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            reject(
                StatusCode::BAD_REQUEST,
                format!("Could not read the request body: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > max {
                return Err(too_large(out.len() + data.len(), max));
            }
            budget.take(held, data.len())?;
            out.extend_from_slice(&data);
        }
    }
    Ok(out)
}

/// Step 6: decompresses, refusing invalid data (400) and output beyond `max` (413).
pub fn decode(raw: Vec<u8>, coding: Coding, max: usize) -> Result<Vec<u8>, BodyRejection> {
    decode_charged(raw, coding, max, |_| Ok(()))
}

/// [`decode`], charging the decompressed bytes to `budget` as they are produced.
pub(crate) fn decode_within(
    raw: Vec<u8>,
    coding: Coding,
    max: usize,
    budget: &BodyBudget,
    held: &mut HeldBytes,
) -> Result<Vec<u8>, BodyRejection> {
    decode_charged(raw, coding, max, |n| budget.take(held, n))
}

fn decode_charged(
    raw: Vec<u8>,
    coding: Coding,
    max: usize,
    mut charge: impl FnMut(usize) -> Result<(), BodyRejection>,
) -> Result<Vec<u8>, BodyRejection> {
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Identity => return Ok(raw),
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw.as_slice())),
        Coding::Brotli => Box::new(brotli::Decompressor::new(raw.as_slice(), 4096)),
    };
    let mut reader = reader.take(limit);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let reason = match coding {
                    Coding::Brotli => format!("Brotli decompression failed: {e}"),
                    _ => e.to_string(),
                };
                return Err(reject(
                    StatusCode::BAD_REQUEST,
                    format!("Invalid compressed data: {reason}"),
                ));
            }
        };
        charge(n)?;
        out.extend_from_slice(&chunk[..n]);
    }
    if out.len() > max {
        return Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Decompressed request size ({} bytes) exceeds maximum ({max} bytes)",
                out.len()
            ),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn br(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut out, 4096, 4, 22);
            w.write_all(data).unwrap();
        }
        out
    }

    #[test]
    fn codings() {
        let mut h = HeaderMap::new();
        assert_eq!(coding(&h), Ok(Coding::Identity));
        for (value, expected) in [
            (" GZIP ", Coding::Gzip),
            ("br", Coding::Brotli),
            ("identity", Coding::Identity),
            ("", Coding::Identity),
        ] {
            h.insert(header::CONTENT_ENCODING, value.parse().unwrap());
            assert_eq!(coding(&h), Ok(expected), "{value:?}");
        }
        for value in ["deflate", "gzip, br", "x-gzip", "zstd"] {
            h.insert(header::CONTENT_ENCODING, value.parse().unwrap());
            assert_eq!(
                coding(&h).unwrap_err().detail,
                format!("Unsupported Content-Encoding: {value}. Supported: br, gzip")
            );
        }
    }

    #[test]
    fn decompression_and_limits() {
        let data = b"{\"hello\": \"world\"}".repeat(100);
        assert_eq!(decode(gzip(&data), Coding::Gzip, 10_000).unwrap(), data);
        assert_eq!(decode(br(&data), Coding::Brotli, 10_000).unwrap(), data);
        let big = decode(gzip(&data), Coding::Gzip, 100).unwrap_err();
        assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            big.detail,
            "Decompressed request size (101 bytes) exceeds maximum (100 bytes)"
        );
        let bad = decode(b"no".to_vec(), Coding::Gzip, 100).unwrap_err();
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.detail.starts_with("Invalid compressed data: "));
        assert!(
            decode(b"garbage!".to_vec(), Coding::Brotli, 100)
                .unwrap_err()
                .detail
                .starts_with("Invalid compressed data: Brotli")
        );
    }

    #[tokio::test]
    async fn length_limits() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "11".parse().unwrap());
        assert_eq!(
            check_declared_length(&h, 10).unwrap_err().detail,
            "Request size (11 bytes) exceeds maximum (10 bytes)"
        );
        assert!(check_declared_length(&h, 11).is_ok());
        let budget = BodyBudget::new(1000);
        let mut held = HeldBytes::default();
        let read = read_limited(Body::from(vec![0u8; 10]), 10, &budget, &mut held).await;
        assert_eq!(read.unwrap().len(), 10);
        let mut held = HeldBytes::default();
        let read = read_limited(Body::from(vec![0u8; 11]), 10, &budget, &mut held).await;
        assert_eq!(read.unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn the_budget_bounds_bytes_held_across_requests() {
        let budget = BodyBudget::new(100);
        let mut first = HeldBytes::default();
        let body = read_limited(Body::from(vec![b'a'; 60]), 1000, &budget, &mut first).await;
        assert_eq!(body.unwrap().len(), 60);
        // A second request finds 40 bytes left.
        let mut second = HeldBytes::default();
        let refused = read_limited(Body::from(vec![b'b'; 60]), 1000, &budget, &mut second)
            .await
            .unwrap_err();
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            refused.detail,
            "Server busy: request bodies in memory would exceed 100 bytes"
        );
        // Decompression is charged as it goes: 100 compressed bytes cannot become 10 kB.
        let mut third = HeldBytes::default();
        let bomb = gzip(&[b'c'; 10_000]);
        let small = BodyBudget::new(bomb.len() + 1000);
        small.take(&mut third, bomb.len()).unwrap();
        let refused = decode_within(bomb, Coding::Gzip, 1_000_000, &small, &mut third);
        assert_eq!(refused.unwrap_err().status, StatusCode::SERVICE_UNAVAILABLE);
        // Dropping a request gives its bytes back.
        drop(first);
        let mut fourth = HeldBytes::default();
        let body = read_limited(Body::from(vec![b'd'; 60]), 1000, &budget, &mut fourth).await;
        assert_eq!(body.unwrap().len(), 60);
    }
}
