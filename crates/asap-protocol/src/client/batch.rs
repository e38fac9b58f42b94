//! [`Client::batch`]: several envelopes in one JSON-RPC batch (ASAP 2.x,
//! `docs/asap-2.md` section 6.2), sent as the 2.5.10 reference client's `batch()`
//! sends it: one `POST /asap` whose body is a JSON array, with `ASAP-Version`.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::Value;

use super::{
    Client, ClientError, RequestError, ResponseError, answer_envelope_in, body, envelope_to_send,
};
use crate::json;
use crate::model::Dialect;
use crate::model::Envelope;
use crate::rpc::{JsonRpcRequest, RequestId};

/// One answer of a batch: the response envelope, or why that member failed.
pub type BatchAnswer = Result<Envelope, ClientError>;

impl Client {
    /// Sends `envelopes` to the agent at `base_url` in one JSON-RPC batch
    /// (`POST {base_url}/asap` with a JSON array body) and returns one answer per
    /// envelope, in their order: the response envelope, or that member's error (a
    /// [`ClientError::Remote`] JSON-RPC error; [`ClientError::Http`] with status 503 for
    /// a member the server was too busy to run, which it reports with its HTTP 503
    /// body).
    ///
    /// Batches are ASAP 2.x: the request carries `ASAP-Version` (what
    /// [`ClientBuilder::asap_versions`](super::ClientBuilder::asap_versions) offers,
    /// else `2.2, 2.1` as the reference client). The outer error is for the batch as a
    /// whole: an empty batch or one of more than
    /// [`ClientBuilder::max_batch_size`](super::ClientBuilder::max_batch_size) envelopes
    /// is refused before sending ([`RequestError::EmptyBatch`],
    /// [`RequestError::BatchTooLarge`]); a server that refuses the batch answers one
    /// JSON-RPC error ([`ClientError::Remote`]: `-32600` from a 1.1 server, or for a
    /// batch larger than the server's limit) or an HTTP error (429 when the batch would
    /// pass the rate limit: it counts one request per member). The body is never
    /// compressed (servers recognise a batch in the raw body) and a batch is not
    /// retried; the circuit breaker applies as for [`Client::send`]. HTTP only: a
    /// `ws://` URL is sent to the matching `http://` address.
    pub async fn batch(
        &self,
        base_url: &str,
        envelopes: &[Envelope],
    ) -> Result<Vec<BatchAnswer>, ClientError> {
        let max = self.inner.config.max_batch_size;
        if envelopes.is_empty() {
            return Err(RequestError::EmptyBatch.into());
        }
        if envelopes.len() > max {
            return Err(RequestError::BatchTooLarge {
                size: envelopes.len(),
                max,
            }
            .into());
        }
        let base = super::normalize_base(base_url, self.inner.config.require_https)?;
        let mut ids = Vec::with_capacity(envelopes.len());
        let mut requests = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            // Batches are 2.x only: payloads typed as the 2.5.10 client writes them.
            let envelope = envelope_to_send(envelope, true)?;
            let id = RequestId::from(format!(
                "req-{}",
                self.inner.next_id.fetch_add(1, Ordering::Relaxed)
            ));
            requests.push(JsonRpcRequest::send(&envelope, id.clone()));
            ids.push(id);
        }
        let body = json::to_python_default(&requests).into_bytes();
        if let Some(breakers) = &self.inner.breakers {
            breakers.allow(&base).map_err(ClientError::CircuitOpen)?;
        }
        let outcome = self.post_batch(&base, body).await;
        if let Some(breakers) = &self.inner.breakers {
            match &outcome {
                Err(e) if e.is_transient() => breakers.failure(&base),
                _ => breakers.success(&base),
            }
        }
        read_answers(&outcome?, &ids)
    }

    /// One `POST /asap` of a batch body: the answer's text, or the HTTP error.
    async fn post_batch(&self, base: &str, body: Vec<u8>) -> Result<String, ClientError> {
        let headers = self.headers_2x("application/json").await?;
        let response = self
            .inner
            .http
            .post(format!("{base}/asap"))
            .headers(headers)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let limit = self.inner.config.limits.envelope;
        let text = body::read_capped_text(response, limit, "batch response").await?;
        if !status.is_success() {
            return Err(ClientError::Http { status, body: text });
        }
        Ok(text)
    }
}

/// Pairs a batch answer with the requests `ids`: each answer goes to the request its
/// `id` names, an answer with `id: null` (a member the server could not read) to its
/// position. A JSON object instead of an array is the server refusing the whole batch.
fn read_answers(text: &str, ids: &[RequestId]) -> Result<Vec<BatchAnswer>, ClientError> {
    let value = json::parse(text.as_bytes()).map_err(ResponseError::NotJson)?;
    let answers = match value {
        Value::Array(answers) => answers,
        Value::Object(_) if value.get("error").is_some() => {
            return Err(answer_envelope_in(&value, Dialect::V2_2).expect_err("an error answer"));
        }
        _ => return Err(ResponseError::NotABatch.into()),
    };
    if answers.len() != ids.len() {
        return Err(ResponseError::BatchLength {
            expected: ids.len(),
            received: answers.len(),
        }
        .into());
    }
    let position: HashMap<&RequestId, usize> =
        ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
    let mut slots: Vec<Option<BatchAnswer>> = ids.iter().map(|_| None).collect();
    for (i, answer) in answers.iter().enumerate() {
        let id = answer.get("id").filter(|id| !id.is_null());
        let slot = match id {
            None => i,
            Some(id) => {
                let known = RequestId::echo_from(&serde_json::json!({"id": id}))
                    .and_then(|id| position.get(&id).copied());
                known.ok_or_else(|| ResponseError::UnknownBatchId {
                    received: id.clone(),
                })?
            }
        };
        if slots[slot].is_some() {
            return Err(ResponseError::DuplicateBatchAnswer {
                expected: ids[slot].clone(),
            }
            .into());
        }
        slots[slot] = Some(member_answer(answer));
    }
    Ok(slots
        .into_iter()
        .map(|slot| slot.expect("every slot filled: as many answers as requests, none twice"))
        .collect())
}

/// One member's answer: a JSON-RPC success or error, or the body of an HTTP 503 the
/// server embedded for a member it was too busy to run (`{"error": "Service
/// Temporarily Unavailable", ...}`: its `error` is a string, not an object).
fn member_answer(answer: &Value) -> BatchAnswer {
    if answer.get("error").is_some_and(Value::is_string) {
        return Err(ClientError::Http {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json::to_compact(answer),
        });
    }
    answer_envelope_in(answer, Dialect::V2_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<RequestId> {
        (1..=n)
            .map(|i| RequestId::from(format!("req-{i}")))
            .collect()
    }

    #[test]
    fn answers_are_placed_by_id_and_null_ids_by_position() {
        let text = r#"[{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method not found","data":{"method":"x"}},"id":"req-3"},{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":null},"id":null},{"jsonrpc":"2.0","error":{"code":-32602,"message":"Invalid params","data":{}},"id":"req-1"}]"#;
        let answers = read_answers(text, &ids(3)).unwrap();
        let codes: Vec<_> = answers
            .iter()
            .map(|a| a.as_ref().unwrap_err().rpc_code())
            .collect();
        assert_eq!(codes, [Some(-32602), Some(-32600), Some(-32601)]);
    }

    #[test]
    fn a_refused_batch_and_malformed_answers_are_errors_of_the_whole_batch() {
        let refused = r#"{"jsonrpc":"2.0","error":{"code":-32600,"message":"Invalid request","data":{"reason":"empty batch"}},"id":null}"#;
        let error = read_answers(refused, &ids(1)).unwrap_err();
        assert!(
            matches!(&error, ClientError::Remote { code: -32600, data: Some(d), .. } if d["reason"] == "empty batch")
        );
        assert!(matches!(
            read_answers("[]", &ids(1)),
            Err(ClientError::InvalidResponse(ResponseError::BatchLength {
                expected: 1,
                received: 0
            }))
        ));
        assert!(matches!(
            read_answers("5", &ids(1)),
            Err(ClientError::InvalidResponse(ResponseError::NotABatch))
        ));
        let stranger = r#"[{"jsonrpc":"2.0","result":{},"id":"req-9"}]"#;
        assert!(matches!(
            read_answers(stranger, &ids(1)),
            Err(ClientError::InvalidResponse(ResponseError::UnknownBatchId { received })) if received == "req-9"
        ));
        let twice = r#"[{"jsonrpc":"2.0","result":{},"id":"req-1"},{"jsonrpc":"2.0","result":{},"id":"req-1"}]"#;
        assert!(matches!(
            read_answers(twice, &ids(2)),
            Err(ClientError::InvalidResponse(ResponseError::DuplicateBatchAnswer { expected })) if expected == ids(1)[0]
        ));
    }

    #[test]
    fn an_embedded_503_body_is_an_http_error_of_its_member() {
        let busy = r#"[{"error":"Service Temporarily Unavailable","code":"asap:transport/thread_pool_exhausted"}]"#;
        let answers = read_answers(busy, &ids(1)).unwrap();
        assert!(matches!(
            &answers[0],
            Err(ClientError::Http { status, body }) if *status == StatusCode::SERVICE_UNAVAILABLE && body.contains("thread_pool_exhausted")
        ));
    }
}
