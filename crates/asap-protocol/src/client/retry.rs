//! Retries with exponential backoff and jitter, for transient failures only.

use std::time::{Duration, SystemTime};

use rand::Rng;

/// When and how often to try again (the reference client's defaults).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in total, the first included (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub base_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Random extra delay, as a fraction of the delay (0.1 adds up to 10 %).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The delay before attempt `attempt + 1` when the server asked for `retry_after`
    /// (a 429's or 503's `Retry-After`): what it asked, but never longer than
    /// `max_delay`; without it, [`RetryPolicy::delay`]. A server cannot hold a caller
    /// for longer than its own policy allows (a `Retry-After` of a day used to be waited).
    pub fn delay_after(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(asked) => asked.min(self.max_delay),
            None => self.delay(attempt),
        }
    }

    /// The delay before attempt `attempt + 1` (attempt 1 is the first try):
    /// `min(base × 2^(attempt-1), max) + uniform(0, jitter)`.
    pub fn delay(&self, attempt: u32) -> Duration {
        exponential_backoff(
            self.base_delay,
            self.max_delay,
            attempt,
            1.0..=1.0 + self.jitter.max(0.0),
        )
    }
}

/// The backoff every retry loop of the crate uses (requests, WebSocket reconnections,
/// webhook deliveries): `min(base × 2^(attempt-1), cap)`, times a factor drawn
/// uniformly from `factor` (an empty-width range such as `1.0..=1.0` for none).
pub(crate) fn exponential_backoff(
    base: Duration,
    cap: Duration,
    attempt: u32,
    factor: std::ops::RangeInclusive<f64>,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exponent).min(cap);
    let (low, high) = factor.into_inner();
    if high <= low {
        return raw.mul_f64(low.max(0.0));
    }
    raw.mul_f64(rand::rng().random_range(low.max(0.0)..=high))
}

/// `Retry-After`: delta-seconds (fractions allowed, as the reference reads it) or an HTTP-date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(86_400.0)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_backoff_doubles_caps_and_draws_its_factor_from_the_range() {
        let ms = Duration::from_millis;
        let fixed = |attempt| exponential_backoff(ms(100), ms(1600), attempt, 1.0..=1.0);
        let doubling: Vec<Duration> = (1..=6).map(fixed).collect();
        assert_eq!(
            doubling,
            [ms(100), ms(200), ms(400), ms(800), ms(1600), ms(1600)]
        );
        assert_eq!(fixed(u32::MAX), ms(1600), "no overflow for huge attempts");
        for _ in 0..200 {
            let d = exponential_backoff(ms(1000), ms(60_000), 2, 0.8..=1.2);
            assert!((ms(1600)..=ms(2400)).contains(&d), "{d:?}");
        }
        let spread: std::collections::HashSet<Duration> = (0..50)
            .map(|_| exponential_backoff(ms(1000), ms(60_000), 1, 0.8..=1.2))
            .collect();
        assert!(spread.len() > 1, "the factor is random within the range");
    }

    #[test]
    fn retry_after_is_capped_by_the_policy() {
        let p = RetryPolicy::default();
        let day = Duration::from_secs(86_400);
        assert_eq!(p.delay_after(1, Some(day)), p.max_delay);
        assert_eq!(
            p.delay_after(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert!(p.delay_after(1, None) <= Duration::from_millis(1100));
    }

    #[test]
    fn exponential_with_bounded_jitter() {
        let p = RetryPolicy::default();
        for (attempt, base) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (40, 60.0)] {
            let d = p.delay(attempt).as_secs_f64();
            assert!(
                d >= base && d <= base * 1.1 + 1e-9,
                "attempt {attempt}: {d}"
            );
        }
        let exact = RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        };
        assert_eq!(exact.delay(2), Duration::from_secs(2));
        assert_eq!(RetryPolicy::none().max_attempts, 1);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        assert!(parse_retry_after(&future).unwrap() > Duration::from_secs(25));
    }
}
