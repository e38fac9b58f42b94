//! Per-client rate limiting of `POST /asap` (wire spec section 9.6), with governor.
//!
//! The reference uses a moving window; governor's GCRA admits the same number of
//! requests in a burst (so "the 11th request within one second is rejected" holds)
//! and then refills evenly. A request must pass every rule.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::shared_state::{Admission, RateLimitStore, SharedStateError};

/// Why a rate limit expression is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid rate limit {expression:?}: {reason} (expected e.g. \"10/second;100/minute\" or \"5 per 2 minutes\")"
)]
pub struct RateLimitError {
    expression: String,
    reason: String,
}

/// One limit: `count` requests per `per` × `unit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitRule {
    /// Requests allowed in the window.
    pub count: u32,
    /// Window length in units.
    pub per: u32,
    /// The unit's name (`second`, `minute`, `hour`, `day`, `month`, `year`).
    pub unit: &'static str,
}

const UNITS: [(&str, u64); 6] = [
    ("second", 1),
    ("minute", 60),
    ("hour", 3600),
    ("day", 86_400),
    ("month", 2_592_000),
    ("year", 31_536_000),
];

impl RateLimitRule {
    /// Parses a rate-limit setting: `off` (any case) turns limiting off (an empty list);
    /// anything else is [`RateLimitRule::parse_list`]'s syntax.
    pub fn parse_setting(expression: &str) -> Result<Vec<Self>, RateLimitError> {
        if expression.trim().eq_ignore_ascii_case("off") {
            return Ok(Vec::new());
        }
        Self::parse_list(expression)
    }

    /// Parses the `limits` package syntax: `10/second`, `10/2 minutes`, `10 per minute`,
    /// `5 per 2 hours`, several separated by `;` (or `,`).
    ///
    /// ```
    /// use asap_protocol::server::RateLimitRule;
    /// let rules = RateLimitRule::parse_list("10/second;100/minute").unwrap();
    /// assert_eq!(rules[1].to_string(), "100 per 1 minute");
    /// ```
    pub fn parse_list(expression: &str) -> Result<Vec<Self>, RateLimitError> {
        let err = |reason: &str| RateLimitError {
            expression: expression.to_owned(),
            reason: reason.to_owned(),
        };
        let mut rules = Vec::new();
        for part in expression
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let lower = part.to_ascii_lowercase();
            let (count, window) = lower
                .split_once('/')
                .or_else(|| lower.split_once(" per "))
                .ok_or_else(|| err("missing '/' or 'per'"))?;
            let count: u32 = count
                .trim()
                .parse()
                .map_err(|_| err("the count is not a number"))?;
            if count == 0 {
                return Err(err("the count must be at least 1"));
            }
            let window: Vec<&str> = window.split_whitespace().collect();
            let (per, unit) = match window.as_slice() {
                [unit] => (1, *unit),
                [per, unit] => (
                    per.parse()
                        .map_err(|_| err("the window length is not a number"))?,
                    *unit,
                ),
                _ => return Err(err("the window is not '<n> <unit>'")),
            };
            if per == 0 {
                return Err(err("the window length must be at least 1"));
            }
            let unit = unit.trim_end_matches('s');
            let unit = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .ok_or_else(|| err("unknown unit"))?
                .0;
            rules.push(Self { count, per, unit });
        }
        if rules.is_empty() {
            return Err(err("no limit given"));
        }
        Ok(rules)
    }

    /// The window's length.
    pub fn window(&self) -> Duration {
        let seconds = UNITS
            .iter()
            .find(|(name, _)| *name == self.unit)
            .map_or(1, |(_, s)| *s);
        Duration::from_secs(seconds * u64::from(self.per))
    }
}

/// `"10 per 1 second"`, as the reference renders a limit.
impl std::fmt::Display for RateLimitRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} per {} {}", self.count, self.per, self.unit)
    }
}

/// A rejection: which rule, and when to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The violated rule, rendered.
    pub limit: String,
    /// Whole seconds until a request would be admitted (at least 1).
    pub retry_after: u64,
}

/// Keyed limiters, one per rule.
#[derive(Clone)]
pub(crate) struct ClientRateLimiter {
    rules: Arc<Vec<(RateLimitRule, DefaultKeyedRateLimiter<IpAddr>)>>,
}

impl ClientRateLimiter {
    pub(crate) fn new(rules: &[RateLimitRule]) -> Option<Self> {
        if rules.is_empty() {
            return None;
        }
        let limiters = rules
            .iter()
            .map(|rule| {
                let burst = NonZeroU32::new(rule.count).unwrap_or(NonZeroU32::MIN);
                let period = rule.window() / rule.count.max(1);
                let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
                    .expect("a positive period")
                    .allow_burst(burst);
                (rule.clone(), governor::RateLimiter::keyed(quota))
            })
            .collect();
        Some(Self {
            rules: Arc::new(limiters),
        })
    }

    /// Admits the request or says which rule refused it.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Limited> {
        self.check_n(client, NonZeroU32::MIN)
    }

    /// Admits `hits` requests at once or says which rule refused them. A rule admits
    /// all of them or none; more hits than a rule's burst are always refused, with the
    /// rule's whole window as the wait.
    pub(crate) fn check_n(&self, client: IpAddr, hits: NonZeroU32) -> Result<(), Limited> {
        for (rule, limiter) in self.rules.iter() {
            let wait = match limiter.check_key_n(&client, hits) {
                Ok(Ok(())) => continue,
                Ok(Err(not_until)) => not_until.wait_time_from(DefaultClock::default().now()),
                Err(governor::InsufficientCapacity(_)) => rule.window(),
            };
            let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(Limited {
                limit: rule.to_string(),
                retry_after: retry_after.max(1),
            });
        }
        Ok(())
    }

    /// Forgets clients whose buckets are full again (bounds memory).
    pub(crate) fn forget_idle(&self) {
        for (_, limiter) in self.rules.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[async_trait::async_trait]
impl RateLimitStore for ClientRateLimiter {
    async fn admit(&self, client: IpAddr) -> Result<Admission, SharedStateError> {
        Ok(self.check(client))
    }

    async fn admit_n(
        &self,
        client: IpAddr,
        hits: NonZeroU32,
    ) -> Result<Admission, SharedStateError> {
        Ok(self.check_n(client, hits))
    }

    fn forget_idle(&self) {
        ClientRateLimiter::forget_idle(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_limits_syntax() {
        let rules = RateLimitRule::parse_list("10/second; 100 per 2 Minutes,5/hour").unwrap();
        assert_eq!(
            rules.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["10 per 1 second", "100 per 2 minute", "5 per 1 hour"]
        );
        assert_eq!(rules[1].window(), Duration::from_secs(120));
        for bad in [
            "",
            "ten/second",
            "10/fortnight",
            "0/second",
            "10",
            "10/0 seconds",
            "10/1 2 seconds",
        ] {
            assert!(RateLimitRule::parse_list(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn eleventh_request_in_a_second_is_refused() {
        let limiter =
            ClientRateLimiter::new(&RateLimitRule::parse_list("10/second;100/minute").unwrap())
                .unwrap();
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        for _ in 0..10 {
            limiter.check(a).unwrap();
        }
        let refused = limiter.check(a).unwrap_err();
        assert_eq!(
            refused,
            Limited {
                limit: "10 per 1 second".into(),
                retry_after: 1
            }
        );
        limiter.check(b).unwrap();
        limiter.forget_idle();
        // A batch: all its hits or none, and never more than the burst.
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        let six = NonZeroU32::new(6).unwrap();
        limiter.check_n(c, six).unwrap();
        assert_eq!(
            limiter.check_n(c, six).unwrap_err().limit,
            "10 per 1 second"
        );
        limiter.check_n(c, NonZeroU32::new(4).unwrap()).unwrap();
        limiter.check(c).unwrap_err();
        let d: IpAddr = "127.0.0.4".parse().unwrap();
        let refused = limiter
            .check_n(d, NonZeroU32::new(11).unwrap())
            .unwrap_err();
        assert_eq!(refused.retry_after, 1);
        limiter.check_n(d, NonZeroU32::new(10).unwrap()).unwrap();
        assert!(ClientRateLimiter::new(&[]).is_none());
    }
}
