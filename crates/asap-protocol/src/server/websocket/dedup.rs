//! De-duplication of retransmitted envelopes (wire spec section 11.4, implementers'
//! note): the answer to an envelope that asked for an ack is kept by envelope id for a
//! window, so a retransmission (same envelope id, any connection) gets the same answer
//! without the handler running twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use serde_json::Value;
use tokio::sync::watch;

type Answer = Option<Arc<Value>>;

/// Seen envelope ids and their answers (the whole JSON-RPC response object).
pub(crate) struct Dedup {
    seen: Mutex<HashMap<String, (Instant, watch::Receiver<Answer>)>>,
    window: Duration,
    capacity: usize,
}

/// The first arrival of an envelope id: its answer is recorded with [`First::finish`].
pub(crate) struct First(Option<watch::Sender<Answer>>);

/// What to do with an arriving envelope id.
pub(crate) enum Arrival {
    /// Never seen (or forgotten): handle it.
    First(First),
    /// Seen: wait for (or take) the first arrival's answer.
    Duplicate(watch::Receiver<Answer>),
}

impl First {
    /// Records the answer for later duplicates.
    pub(crate) fn finish(mut self, answer: Value) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(Some(Arc::new(answer)));
        }
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

    /// Registers an arrival of `envelope_id`.
    pub(crate) fn arrive(&self, envelope_id: &str) -> Arrival {
        if self.capacity == 0 || self.window.is_zero() {
            return Arrival::First(First(None));
        }
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, rx)) = seen.get(envelope_id)
            && now.duration_since(*at) < self.window
        {
            return Arrival::Duplicate(rx.clone());
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
        Arrival::First(First(Some(tx)))
    }
}

/// Waits for the first arrival's answer; `None` when it never finished (its connection
/// dropped mid-way), in which case the duplicate is handled as new.
pub(crate) async fn answer_of(mut rx: watch::Receiver<Answer>) -> Option<Arc<Value>> {
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
        let Arrival::First(first) = dedup.arrive("e1") else {
            panic!("first")
        };
        let Arrival::Duplicate(waiting) = dedup.arrive("e1") else {
            panic!("duplicate")
        };
        first.finish(json!({"result": 1}));
        assert_eq!(
            answer_of(waiting).await.as_deref(),
            Some(&json!({"result": 1}))
        );
        // A first arrival that never finishes releases its duplicates.
        let Arrival::First(abandoned) = dedup.arrive("e2") else {
            panic!("first")
        };
        let Arrival::Duplicate(waiting) = dedup.arrive("e2") else {
            panic!("duplicate")
        };
        drop(abandoned);
        assert_eq!(answer_of(waiting).await, None);
    }

    #[test]
    fn the_window_and_the_capacity_bound_memory() {
        let dedup = Dedup::new(Duration::from_secs(60), 10);
        for i in 0..100 {
            assert!(matches!(dedup.arrive(&format!("e{i}")), Arrival::First(_)));
        }
        assert!(dedup.seen.lock().unwrap().len() <= 10);
        let off = Dedup::new(Duration::ZERO, 10);
        assert!(matches!(off.arrive("x"), Arrival::First(_)));
        assert!(matches!(off.arrive("x"), Arrival::First(_)));
    }
}
