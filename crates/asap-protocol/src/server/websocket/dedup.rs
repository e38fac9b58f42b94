//! De-duplication of retransmitted envelopes (wire spec section 11.4, implementers'
//! note): the answer to an envelope that asked for an ack is kept by envelope id for a
//! window, so a retransmission (same envelope id, any connection) gets the same answer
//! without the handler running twice. This is the in-process
//! [`RetransmissionCache`]; several replicas share one through Redis instead.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::watch;

use crate::server::shared_state::{Arrival, FirstArrival, RetransmissionCache, SharedStateError};

type Answer = Option<Arc<Value>>;

/// Seen envelope ids and their answers (the whole JSON-RPC response object).
pub(crate) struct Dedup {
    seen: Mutex<HashMap<String, (Instant, watch::Receiver<Answer>)>>,
    window: Duration,
    capacity: usize,
}

/// The first arrival of an envelope id: its answer is recorded with [`First::finish`].
pub(crate) struct First(Option<watch::Sender<Answer>>);

#[async_trait::async_trait]
impl FirstArrival for First {
    async fn finish(mut self: Box<Self>, answer: Value) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Some(Arc::new(answer)));
        }
    }
}

#[async_trait::async_trait]
impl RetransmissionCache for Dedup {
    async fn arrive(&self, envelope_id: &str) -> Result<Arrival, SharedStateError> {
        Ok(match self.arrive_now(envelope_id) {
            Ok(first) => Arrival::First(Box::new(first)),
            Err(earlier) => Arrival::Duplicate(Box::pin(answer_of(earlier))),
        })
    }
}

impl Dedup {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            window,
            capacity,
        }
    }

    /// Registers an arrival of `envelope_id`: the first arrival, or the earlier one's
    /// answer to wait for.
    fn arrive_now(&self, envelope_id: &str) -> Result<First, watch::Receiver<Answer>> {
        if self.capacity == 0 || self.window.is_zero() {
            return Ok(First(None));
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, rx)) = seen.get(envelope_id)
            && now.duration_since(*at) < self.window
        {
            return Err(rx.clone());
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, (at, _)| now.duration_since(*at) < self.window);
            if seen.len() >= self.capacity {
                // Forget the oldest tenth at once rather than one entry per arrival.
                let mut ages: Vec<(Instant, String)> =
                    seen.iter().map(|(id, (at, _))| (*at, id.clone())).collect();
                ages.sort_unstable();
                for (_, id) in ages.into_iter().take(self.capacity / 10 + 1) {
                    seen.remove(&id);
                }
            }
        }
        let (tx, rx) = watch::channel(None);
        seen.insert(envelope_id.to_owned(), (now, rx));
        Ok(First(Some(tx)))
    }
}

/// Waits for the first arrival's answer; `None` when it never finished (its connection
/// dropped mid-way), in which case the duplicate is handled as new.
async fn answer_of(mut rx: watch::Receiver<Answer>) -> Option<Arc<Value>> {
    rx.wait_for(Option::is_some)
        .await
        .ok()
        .and_then(|a| a.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn duplicates_get_the_first_answer_within_the_window() {
        let dedup = Dedup::new(Duration::from_secs(60), 100);
        let Ok(Arrival::First(first)) = dedup.arrive("e1").await else {
            panic!("first")
        };
        let Ok(Arrival::Duplicate(waiting)) = dedup.arrive("e1").await else {
            panic!("duplicate")
        };
        first.finish(json!({"result": 1})).await;
        assert_eq!(waiting.await.as_deref(), Some(&json!({"result": 1})));
        // A first arrival that never finishes releases its duplicates.
        let Ok(Arrival::First(abandoned)) = dedup.arrive("e2").await else {
            panic!("first")
        };
        let Ok(Arrival::Duplicate(waiting)) = dedup.arrive("e2").await else {
            panic!("duplicate")
        };
        drop(abandoned);
        assert_eq!(waiting.await, None);
    }

    #[test]
    fn the_window_and_the_capacity_bound_memory() {
        let dedup = Dedup::new(Duration::from_secs(60), 10);
        for i in 0..100 {
            assert!(dedup.arrive_now(&format!("e{i}")).is_ok());
        }
        assert!(dedup.seen.lock().unwrap().len() <= 10);
        let off = Dedup::new(Duration::ZERO, 10);
        assert!(off.arrive_now("x").is_ok());
        assert!(off.arrive_now("x").is_ok());
    }
}
