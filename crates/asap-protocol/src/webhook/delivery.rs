//! One delivery attempt: the host is resolved once by a resolver that refuses any
//! address the policy blocks, and the connection goes to exactly the checked addresses
//! (no proxy, no redirects), so DNS rebinding cannot slip past the check.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::config::WebhookError;
use super::ssrf::{BlockReason, UrlPolicy};

/// Resolves host names for webhook deliveries.
#[async_trait]
pub trait Resolver: Send + Sync {
    /// Every address of `host`.
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>>;
}

/// The system resolver (`getaddrinfo` through tokio).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let addresses = tokio::net::lookup_host((host.trim_end_matches('.'), 0)).await?;
        Ok(addresses.map(|a| a.ip()).collect())
    }
}

/// reqwest's resolver: resolve, check every address, hand over only checked ones.
struct Guarded {
    resolver: Arc<dyn Resolver>,
    policy: UrlPolicy,
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.resolver.clone();
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolver.resolve(&host).await.map_err(|e| {
                Box::new(BlockReason::Unresolvable {
                    host: host.clone(),
                    error: e.to_string(),
                }) as Box<dyn std::error::Error + Send + Sync>
            })?;
            policy
                .check_resolved(&host, &addresses)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs =
                Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// Resolves and checks `url`'s host now (what registering a callback does).
pub async fn check_url(
    url: &str,
    policy: &UrlPolicy,
    resolver: &dyn Resolver,
) -> Result<url::Url, BlockReason> {
    let parsed = policy.check_syntax(url)?;
    if let Some(url::Host::Domain(host)) = parsed.host() {
        let addresses = resolver
            .resolve(host)
            .await
            .map_err(|e| BlockReason::Unresolvable {
                host: host.to_owned(),
                error: e.to_string(),
            })?;
        policy.check_resolved(host, &addresses)?;
    }
    Ok(parsed)
}

/// The HTTP client deliveries use.
pub(crate) fn http_client(
    policy: &UrlPolicy,
    resolver: Arc<dyn Resolver>,
    connect_timeout: Duration,
    timeout: Duration,
) -> Result<reqwest::Client, WebhookError> {
    crate::client::tls::http_builder()
        .dns_resolver(Arc::new(Guarded {
            resolver,
            policy: policy.clone(),
        }))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .user_agent(concat!(
            "asap-protocol-rs/",
            env!("CARGO_PKG_VERSION"),
            " webhook"
        ))
        .build()
        // Never fall back to a default client: it would skip the guarded resolver.
        .map_err(WebhookError::ClientBuild)
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Delivered(u16),
    /// A 4xx other than 429: the receiver refuses it; never retried.
    Refused(u16),
    /// Worth retrying: 5xx, 429, 1xx/3xx, timeouts and connection errors.
    Retry {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// The target is not allowed (checked again at delivery time).
    Blocked(BlockReason),
}

fn blocked_in(error: &(dyn std::error::Error + 'static)) -> Option<BlockReason> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(reason) = e.downcast_ref::<BlockReason>() {
            return Some(reason.clone());
        }
        cause = e.source();
    }
    None
}

/// One POST of `body` with `headers` to `url`.
pub(crate) async fn attempt(
    http: &reqwest::Client,
    policy: &UrlPolicy,
    url: &str,
    body: Vec<u8>,
    headers: &[(String, String)],
) -> Outcome {
    // IP literals never reach the resolver: check them here (the policy may have changed
    // since the delivery was queued).
    if let Err(reason) = policy.check_syntax(url) {
        return Outcome::Blocked(reason);
    }
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(crate::client::parse_retry_after);
            match status {
                200..=299 => Outcome::Delivered(status),
                429 => Outcome::Retry {
                    status: Some(status),
                    error: "HTTP 429".into(),
                    retry_after,
                },
                400..=499 => Outcome::Refused(status),
                _ => Outcome::Retry {
                    status: Some(status),
                    error: format!("HTTP {status}"),
                    retry_after: None,
                },
            }
        }
        Err(error) => match blocked_in(&error) {
            Some(reason) => Outcome::Blocked(reason),
            None => Outcome::Retry {
                status: None,
                error: error.to_string(),
                retry_after: None,
            },
        },
    }
}
