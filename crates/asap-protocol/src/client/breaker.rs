//! A circuit breaker per base URL: after `threshold` consecutive failures it opens and
//! refuses calls for `open_for`, then lets a single probe through (half-open). A probe
//! whose outcome never comes back (its caller timed out or dropped the future) is given
//! up after another `open_for`, and the next call probes again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::model::AsapError;

/// Circuit breaker settings (the reference's defaults: 5 failures, 60 s).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub threshold: u32,
    /// How long it stays open before a probe is allowed.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            open_for: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open { since: Instant },
    HalfOpen { since: Instant },
}

#[derive(Debug)]
struct Circuit {
    state: State,
    failures: u32,
}

/// Breakers keyed by base URL.
#[derive(Debug, Default)]
pub struct CircuitBreakers {
    config: BreakerConfig,
    circuits: Mutex<HashMap<String, Circuit>>,
}

impl CircuitBreakers {
    /// Breakers with these settings.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            circuits: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a call to `base_url` may go out now; `asap:transport/circuit_open` if not.
    pub fn allow(&self, base_url: &str) -> Result<(), AsapError> {
        self.with_circuit(base_url, |circuit| match circuit.state {
            State::Closed => Ok(()),
            State::Open { since } | State::HalfOpen { since }
                if since.elapsed() >= self.config.open_for =>
            {
                circuit.state = State::HalfOpen {
                    since: Instant::now(),
                };
                Ok(())
            }
            State::Open { .. } | State::HalfOpen { .. } => Err(AsapError::CircuitOpen {
                base_url: base_url.to_owned(),
                consecutive_failures: u64::from(circuit.failures),
            }),
        })
    }

    /// Records a success: the circuit closes.
    pub fn success(&self, base_url: &str) {
        let mut circuits = self
            .circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = circuits.get_mut(base_url) {
            c.state = State::Closed;
            c.failures = 0;
        }
    }

    /// Records a failure: the circuit opens at the threshold, or again after a failed probe.
    pub fn failure(&self, base_url: &str) {
        self.with_circuit(base_url, |circuit| {
            circuit.failures = circuit.failures.saturating_add(1);
            if matches!(circuit.state, State::HalfOpen { .. })
                || circuit.failures >= self.config.threshold
            {
                circuit.state = State::Open {
                    since: Instant::now(),
                };
            }
        });
    }

    /// Runs `f` on the circuit of `base_url` (created closed on first use) under the lock,
    /// allocating the key only the first time.
    fn with_circuit<R>(&self, base_url: &str, f: impl FnOnce(&mut Circuit) -> R) -> R {
        let mut circuits = self
            .circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(circuit) = circuits.get_mut(base_url) {
            return f(circuit);
        }
        f(circuits.entry(base_url.to_owned()).or_insert(Circuit {
            state: State::Closed,
            failures: 0,
        }))
    }

    /// Whether the circuit for `base_url` refuses calls now.
    pub fn is_open(&self, base_url: &str) -> bool {
        let circuits = self
            .circuits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        matches!(circuits.get(base_url).map(|c| c.state), Some(State::Open { since }) if since.elapsed() < self.config.open_for)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_half_opens_and_closes() {
        let b = CircuitBreakers::new(BreakerConfig {
            threshold: 2,
            open_for: Duration::from_millis(30),
        });
        let url = "http://a";
        b.allow(url).unwrap();
        b.failure(url);
        assert!(!b.is_open(url));
        b.failure(url);
        assert!(b.is_open(url));
        let err = b.allow(url).unwrap_err();
        assert_eq!(err.code(), "asap:transport/circuit_open");
        assert_eq!(err.details()["consecutive_failures"], 2);
        b.allow("http://other").unwrap();
        tokio::time::advance(Duration::from_millis(31)).await;
        b.allow(url).unwrap(); // the probe
        assert!(b.allow(url).is_err(), "only one probe while half-open");
        b.failure(url);
        assert!(b.is_open(url));
        tokio::time::advance(Duration::from_millis(31)).await;
        b.allow(url).unwrap();
        b.success(url);
        assert!(!b.is_open(url));
        b.allow(url).unwrap();
    }

    /// A probe whose caller went away (timeout, dropped future) records nothing; the
    /// circuit used to stay half-open, refusing every call, forever.
    #[tokio::test(start_paused = true)]
    async fn an_abandoned_probe_is_given_up_after_open_for() {
        let b = CircuitBreakers::new(BreakerConfig {
            threshold: 1,
            open_for: Duration::from_millis(30),
        });
        let url = "http://a";
        b.failure(url);
        tokio::time::advance(Duration::from_millis(31)).await;
        b.allow(url).unwrap(); // the probe, whose outcome never arrives
        assert!(b.allow(url).is_err(), "one probe at a time");
        tokio::time::advance(Duration::from_millis(31)).await;
        b.allow(url)
            .expect("a new probe once the first is given up");
        b.success(url);
        b.allow(url).unwrap();
    }
}
