//! Liveness: a [`Watcher`] checks each agent's health on the interval its manifest
//! asks for (`ttl_seconds`), reports up/down transitions, and backs off from agents
//! that stay down.

use std::time::Duration;

use tokio::sync::mpsc;

use super::registry::LiteRegistry;
use crate::model::HealthStatus;

/// A change in an agent's liveness.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LivenessEvent {
    /// The agent answers healthy (first seen, or back).
    Up {
        /// Its base URL.
        url: String,
        /// Its health document.
        health: Box<HealthStatus>,
    },
    /// The agent is unreachable or unhealthy (first seen, or newly).
    Down {
        /// Its base URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Watches a set of agents.
///
/// ```no_run
/// # async fn run() {
/// use asap_protocol::discovery::{LivenessEvent, Watcher};
/// let (mut events, _watching) = Watcher::new()
///     .agent("http://127.0.0.1:8000")
///     .start();
/// while let Some(event) = events.recv().await {
///     if let LivenessEvent::Down { url, reason } = event { eprintln!("{url} down: {reason}"); }
/// }
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Watcher {
    agents: Vec<String>,
    default_interval: Duration,
    min_interval: Duration,
    max_backoff: Duration,
    timeout: Duration,
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

/// The running watch; stops when dropped.
#[derive(Debug)]
pub struct Watching(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Watching {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Watcher {
    /// No agents yet; checks every manifest `ttl_seconds` (300 s when the manifest cannot
    /// be read), at least every second, backing off to at most 15 minutes while down.
    pub fn new() -> Self {
        Self {
            agents: Vec::new(),
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(1),
            max_backoff: Duration::from_secs(900),
            timeout: Duration::from_secs(10),
        }
    }

    /// Watches the agent at `base_url`.
    pub fn agent(mut self, base_url: impl Into<String>) -> Self {
        self.agents
            .push(base_url.into().trim_end_matches('/').to_owned());
        self
    }

    /// Watches every agent of a registry (by its `http` endpoint, else its manifest URL).
    pub fn registry(mut self, registry: &LiteRegistry) -> Self {
        for entry in &registry.agents {
            let base = entry
                .endpoints
                .get("http")
                .and_then(|v| v.as_str())
                .map(|u| u.trim_end_matches('/').trim_end_matches("/asap").to_owned())
                .or_else(|| {
                    entry
                        .endpoints
                        .get("manifest")
                        .and_then(|v| v.as_str())
                        .map(|u| {
                            u.trim_end_matches("/.well-known/asap/manifest.json")
                                .to_owned()
                        })
                });
            if let Some(base) = base {
                self.agents.push(base);
            }
        }
        self
    }

    /// Watches an agent found on the local network.
    #[cfg(feature = "mdns")]
    pub fn discovered(self, agent: &super::AgentInfo) -> Self {
        self.agent(agent.base_url())
    }

    /// The interval when the manifest says nothing (300 s).
    pub fn default_interval(mut self, interval: Duration) -> Self {
        self.default_interval = interval;
        self
    }

    /// The shortest interval, whatever the manifest says (1 s).
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// The longest wait between checks of an agent that stays down (15 minutes).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.max_backoff = backoff;
        self
    }

    /// Starts one checking task per agent; events arrive on the receiver.
    pub fn start(self) -> (mpsc::Receiver<LivenessEvent>, Watching) {
        let (tx, rx) = mpsc::channel(256);
        // A fresh connection per check: a pooled one to an agent that went away can
        // hang until the timeout instead of failing, and says nothing about whether the
        // agent accepts connections now.
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        let tasks = self
            .agents
            .iter()
            .map(|url| {
                let (url, tx, http, watcher) =
                    (url.clone(), tx.clone(), http.clone(), self.clone());
                tokio::spawn(async move { watcher.watch(url, http, tx).await })
            })
            .collect();
        (rx, Watching(tasks))
    }

    async fn watch(self, url: String, http: reqwest::Client, events: mpsc::Sender<LivenessEvent>) {
        let mut was_up: Option<bool> = None;
        let mut failures: u32 = 0;
        let mut known_interval: Option<Duration> = None;
        loop {
            // The manifest's ttl while it can be read; the last one known while it cannot.
            known_interval = self.interval_of(&http, &url).await.or(known_interval);
            let interval = known_interval
                .unwrap_or(self.default_interval)
                .max(self.min_interval);
            let outcome = health(&http, &url).await;
            let event = match outcome {
                Ok(health) => {
                    failures = 0;
                    (was_up != Some(true)).then(|| {
                        was_up = Some(true);
                        LivenessEvent::Up {
                            url: url.clone(),
                            health: Box::new(health),
                        }
                    })
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    (was_up != Some(false)).then(|| {
                        was_up = Some(false);
                        LivenessEvent::Down {
                            url: url.clone(),
                            reason,
                        }
                    })
                }
            };
            if let Some(event) = event
                && events.send(event).await.is_err()
            {
                return;
            }
            // Down: double the wait per consecutive failure, up to the cap.
            let wait = if failures == 0 {
                interval
            } else {
                interval
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(self.max_backoff.max(interval))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// The manifest's `ttl_seconds`, if the manifest can be read.
    async fn interval_of(&self, http: &reqwest::Client, url: &str) -> Option<Duration> {
        let ttl = async {
            let response = http
                .get(format!("{url}/.well-known/asap/manifest.json"))
                .send()
                .await
                .ok()?;
            let manifest: serde_json::Value = response.json().await.ok()?;
            manifest.get("ttl_seconds")?.as_u64()
        }
        .await;
        ttl.map(Duration::from_secs)
    }
}

async fn health(http: &reqwest::Client, url: &str) -> Result<HealthStatus, String> {
    let response = http
        .get(format!("{url}/.well-known/asap/health"))
        .send()
        .await
        .map_err(|e| format!("unreachable: {e}"))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let health = <HealthStatus as crate::model::Model>::from_json(&body)
        .map_err(|e| format!("HTTP {status}, not a health document: {e}"))?;
    if status.is_success() && health.is_healthy() {
        Ok(health)
    } else {
        Err(format!("HTTP {status}, status {:?}", health.status))
    }
}
