//! Liveness: a [`Watcher`] checks each agent's health on the interval its manifest
//! asks for (`ttl_seconds`), reports up/down transitions, and backs off from agents
//! that stay down.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::registry::{LiteRegistry, RegistryClient, RegistryEntry};
use crate::client::{ClientError, DiscoveryCache, ResponseLimits, fetch_health};
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
    /// The agent is no longer watched (unwatched by hand, gone from a followed
    /// registry, or withdrawn from the local network).
    Unwatched {
        /// Its base URL.
        url: String,
    },
}

/// Watches a set of agents.
///
/// The set can change while it runs: [`Watching::watch`] and [`Watching::unwatch`]
/// by hand, [`Watching::follow_registry`] to track a registry's agents, and
/// [`Watching::follow_local`] (feature `mdns`) to track agents on the local network.
///
/// ```no_run
/// # async fn run() {
/// use asap_protocol::discovery::{LivenessEvent, Watcher};
/// let (mut events, watching) = Watcher::new()
///     .agent("http://127.0.0.1:8000")
///     .start();
/// watching.watch("http://127.0.0.1:8001");
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
    event_buffer: usize,
}

impl Default for Watcher {
    fn default() -> Self {
        Self::new()
    }
}

/// The running watch: a handle to change what is watched. Clones share one watch,
/// which stops (every check and every follower) when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Watching(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    /// The runtime `start` ran on: the handle may be used from any thread.
    runtime: tokio::runtime::Handle,
    config: Watcher,
    probe: Probe,
    events: mpsc::Sender<LivenessEvent>,
    /// Base URL to its checking task and how many sources asked for it.
    checks: Mutex<HashMap<String, (JoinHandle<()>, usize)>>,
    followers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        for (task, _) in lock(&self.checks).values() {
            task.abort();
        }
        for task in lock(&self.followers).iter() {
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn normalize(base_url: &str) -> String {
    base_url.trim_end_matches('/').to_owned()
}

impl Watching {
    /// Starts watching the agent at `base_url`; `false` when it was already watched
    /// (it then needs one more [`unwatch`](Self::unwatch) to stop).
    pub fn watch(&self, base_url: &str) -> bool {
        self.0.watch(normalize(base_url))
    }

    /// Stops watching the agent at `base_url` once every [`watch`](Self::watch) of it
    /// is undone, and reports [`LivenessEvent::Unwatched`] after any event of its last
    /// check; `false` when it is still watched (or never was). Followers count as
    /// watches too: unwatching an agent that a followed registry lists takes away the
    /// registry's count. Never waits for the event receiver, so it may be called from
    /// the task that reads the events.
    pub async fn unwatch(&self, base_url: &str) -> bool {
        self.0.unwatch(&normalize(base_url)).await
    }

    /// The base URLs being watched, sorted.
    pub fn urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = lock(&self.0.checks).keys().cloned().collect();
        urls.sort();
        urls
    }

    /// Watches the agents of the registry at `source` (a URL or a file, read through
    /// `client`) and re-reads it every `every` (a URL no more often than its server's
    /// `Cache-Control: max-age` allows): agents that join are watched, agents that
    /// leave are unwatched. While the registry cannot be read, the agents last read
    /// stay watched.
    pub fn follow_registry(&self, client: RegistryClient, source: &str, every: Duration) {
        let (shared, source) = (Arc::downgrade(&self.0), source.to_owned());
        // Re-read as often as asked, unless the server's Cache-Control says otherwise.
        let client = client.ttl(every);
        let task = self.0.runtime.spawn(async move {
            let mut mine: HashSet<String> = HashSet::new();
            loop {
                match client.fetch(&source).await {
                    Ok(registry) => {
                        let Some(shared) = shared.upgrade() else {
                            return;
                        };
                        let now: HashSet<String> = registry
                            .agents
                            .iter()
                            .filter_map(RegistryEntry::base_url)
                            .collect();
                        shared.sync(&mut mine, now).await;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "registry not read; watching the agents last read")
                    }
                }
                tokio::time::sleep(every).await;
            }
        });
        lock(&self.0.followers).push(task);
    }

    /// Watches the agents that `browser` finds on the local network for as long as
    /// they are advertised.
    #[cfg(feature = "mdns")]
    pub fn follow_local(&self, mut browser: super::Browser) {
        use super::DnsSdEvent;
        let shared = Arc::downgrade(&self.0);
        let task = self.0.runtime.spawn(async move {
            // Full service name to base URL, for the agents this browser added.
            let mut found: HashMap<String, String> = HashMap::new();
            while let Some(event) = browser.next().await {
                let Some(shared) = shared.upgrade() else {
                    break;
                };
                match event {
                    DnsSdEvent::Appeared(agent) => {
                        let url = normalize(&agent.base_url());
                        match found.insert(agent.fullname.clone(), url.clone()) {
                            // The same advertisement again (or a changed TXT record).
                            Some(old) if old == url => {}
                            Some(old) => {
                                shared.watch(url);
                                shared.unwatch(&old).await;
                            }
                            None => {
                                shared.watch(url);
                            }
                        }
                    }
                    DnsSdEvent::Disappeared(fullname) => {
                        if let Some(url) = found.remove(&fullname) {
                            shared.unwatch(&url).await;
                        }
                    }
                }
            }
        });
        lock(&self.0.followers).push(task);
    }
}

impl Shared {
    fn watch(self: &Arc<Self>, url: String) -> bool {
        let mut checks = lock(&self.checks);
        if let Some((_, count)) = checks.get_mut(&url) {
            *count += 1;
            return false;
        }
        let task = self.runtime.spawn(self.config.clone().watch(
            url.clone(),
            self.probe.clone(),
            self.events.clone(),
        ));
        checks.insert(url, (task, 1));
        true
    }

    async fn unwatch(&self, url: &str) -> bool {
        let check = {
            let mut checks = lock(&self.checks);
            match checks.get_mut(url) {
                Some((_, count)) if *count > 1 => {
                    *count -= 1;
                    None
                }
                Some(_) => checks.remove(url).map(|(task, _)| task),
                None => None,
            }
        };
        let Some(check) = check else {
            return false;
        };
        // Whatever the check was sending goes before the Unwatched event, never after.
        check.abort();
        let _ = check.await;
        self.probe.manifests.invalidate(url);
        let unwatched = LivenessEvent::Unwatched {
            url: url.to_owned(),
        };
        // A full channel must not block the caller, which may be the events' reader.
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(unwatched) {
            let events = self.events.clone();
            self.runtime.spawn(async move { events.send(event).await });
        }
        true
    }

    /// Moves one source's set of URLs (`mine`) to `now`.
    async fn sync(self: &Arc<Self>, mine: &mut HashSet<String>, now: HashSet<String>) {
        for url in now.difference(mine) {
            self.watch(url.clone());
        }
        for url in mine.difference(&now) {
            self.unwatch(url).await;
        }
        *mine = now;
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
            event_buffer: 256,
        }
    }

    /// Watches the agent at `base_url`.
    pub fn agent(mut self, base_url: impl Into<String>) -> Self {
        self.agents.push(normalize(&base_url.into()));
        self
    }

    /// Watches every agent of a registry (by its `http` endpoint, else its manifest
    /// URL), as read now; [`Watching::follow_registry`] follows its changes.
    pub fn registry(mut self, registry: &LiteRegistry) -> Self {
        self.agents
            .extend(registry.agents.iter().filter_map(RegistryEntry::base_url));
        self
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

    /// Events held for a slow receiver (256); when they are all unread, checks (and
    /// [`Watching::unwatch`]) wait for room rather than drop a transition.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }

    /// The time allowed for one manifest or health request (10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts one checking task per agent; events arrive on the receiver. Must be
    /// called within a Tokio runtime; the returned handle then works from any thread.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(self) -> (mpsc::Receiver<LivenessEvent>, Watching) {
        let (tx, rx) = mpsc::channel(self.event_buffer);
        // A fresh connection per check: a pooled one to an agent that went away can
        // hang until the timeout instead of failing, and says nothing about whether the
        // agent accepts connections now.
        let http = crate::client::tls::http_builder()
            .timeout(self.timeout)
            .pool_max_idle_per_host(0)
            // Agents named by a registry must not redirect the checks to other hosts.
            .redirect(crate::client::same_origin_redirects())
            .build()
            .unwrap_or_default();
        let agents = self.agents.clone();
        let shared = Arc::new(Shared {
            runtime: tokio::runtime::Handle::current(),
            config: Watcher {
                agents: Vec::new(),
                ..self
            },
            probe: Probe {
                http,
                manifests: Arc::default(),
            },
            events: tx,
            checks: Mutex::new(HashMap::new()),
            followers: Mutex::new(Vec::new()),
        });
        for url in agents {
            shared.watch(url);
        }
        (rx, Watching(shared))
    }

    async fn watch(self, url: String, probe: Probe, events: mpsc::Sender<LivenessEvent>) {
        let mut was_up: Option<bool> = None;
        let mut failures: u32 = 0;
        let mut known_interval: Option<Duration> = None;
        loop {
            // The manifest's ttl while it can be read; the last one known while it cannot.
            known_interval = Self::interval_of(&probe, &url).await.or(known_interval);
            let interval = known_interval
                .unwrap_or(self.default_interval)
                .max(self.min_interval);
            let outcome = health(&probe, &url).await;
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

    /// The manifest's `ttl_seconds`, if the manifest can be read (cached for its
    /// `Cache-Control` and revalidated with its ETag, as the client does).
    async fn interval_of(probe: &Probe, url: &str) -> Option<Duration> {
        let manifest = probe.manifests.manifest(&probe.http, url).await.ok()?;
        Some(Duration::from_secs(
            u64::try_from(manifest.ttl_seconds).unwrap_or(0),
        ))
    }
}

/// What a check uses: a client without pooled connections, and the manifests read so far.
#[derive(Debug, Clone)]
struct Probe {
    http: reqwest::Client,
    manifests: Arc<DiscoveryCache>,
}

/// The agent's health, fetched now; healthy, or the reason it is not.
async fn health(probe: &Probe, url: &str) -> Result<HealthStatus, String> {
    match fetch_health(&probe.http, url, ResponseLimits::default().health).await {
        Ok(health) if health.is_healthy() => Ok(health),
        Ok(health) => Err(format!("status {:?}", health.status)),
        Err(ClientError::Transport(e)) => Err(format!("unreachable: {e}")),
        Err(e) => Err(e.to_string()),
    }
}
