//! Cross-site requests: a browser page on another origin must not drive the agent.
//!
//! Browsers send `Origin` with every cross-origin request and WebSocket handshake, and
//! a `text/plain` POST needs no CORS preflight, so without this check any web page could
//! run tasks on an agent listening on loopback and read WebSocket answers. A request
//! whose `Origin` is neither this server's own origin nor in the allow-list gets 403.
//! "Own origin" means the `Host` the request was sent to, and only when that host is an
//! IP literal or `localhost`: under DNS rebinding a page's own name resolves to this
//! server, so a page at `http://rebind.attacker:8000` sends a matching `Host` and
//! `Origin`. An agent reached by name must list its origin (`asap serve` adds the
//! origin of `--public-url`). Requests without `Origin` (every non-browser client, the
//! reference's included) pass unchanged: the reference checks neither `Origin` nor
//! `Content-Type` (wire spec section 9.2).

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::uri::Authority;
use http::{HeaderMap, StatusCode, header};

/// Origins (`scheme://host[:port]`) allowed besides the server's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Allows these origins (`https://app.example`, `http://localhost:3000`; `null` for
    /// sandboxed pages). Case and a trailing `/` do not matter.
    pub fn new<S: AsRef<str>>(origins: impl IntoIterator<Item = S>) -> Self {
        Self(
            origins
                .into_iter()
                .map(|o| normalize(o.as_ref()))
                .filter(|o| !o.is_empty())
                .collect(),
        )
    }

    /// Whether a request with these headers may proceed: no `Origin`, the server's own
    /// origin, or an allowed one.
    pub fn permits(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = normalize(origin);
        if self.0.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        same_origin(&origin, host)
    }
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether `origin` (normalised) names the authority `host` (the `Host` header), with
/// the scheme's default port when either leaves it out, and `host` is an IP literal or
/// `localhost`: names that DNS rebinding cannot give to an attacker.
fn same_origin(origin: &str, host: &str) -> bool {
    let Ok(origin) = origin.parse::<http::Uri>() else {
        return false;
    };
    let default_port = match origin.scheme_str() {
        Some("http" | "ws") => 80,
        Some("https" | "wss") => 443,
        _ => return false,
    };
    let (Some(origin), Ok(host)) = (origin.authority(), host.trim().parse::<Authority>()) else {
        return false;
    };
    let name = host.host();
    let local = name.eq_ignore_ascii_case("localhost")
        || name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok();
    local
        && origin.host().eq_ignore_ascii_case(name)
        && origin.port_u16().unwrap_or(default_port) == host.port_u16().unwrap_or(default_port)
}

/// The middleware: 403 `{"detail": "Origin not allowed"}` for a foreign origin.
pub(crate) async fn guard(
    State(allowed): State<AllowedOrigins>,
    request: Request,
    next: Next,
) -> Response {
    if allowed.permits(request.headers()) {
        return next.run(request).await;
    }
    tracing::info!(
        origin = ?request.headers().get(header::ORIGIN),
        path = request.uri().path(),
        "request from a foreign origin refused"
    );
    let response = super::response::detail(StatusCode::FORBIDDEN, "Origin not allowed");
    super::metrics::refused(response, super::RefusalReason::Origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(header::HOST, host.parse().unwrap());
        if let Some(origin) = origin {
            map.insert(header::ORIGIN, origin.parse().unwrap());
        }
        map
    }

    #[test]
    fn foreign_origins_are_refused_and_others_pass() {
        let none = AllowedOrigins::default();
        assert!(none.permits(&headers(None, "127.0.0.1:8000")), "no Origin");
        assert!(none.permits(&headers(Some("http://127.0.0.1:8000"), "127.0.0.1:8000")));
        assert!(none.permits(&headers(Some("HTTP://LOCALHOST"), "localhost:80")));
        // A name is not its own proof: under DNS rebinding the attacker's page sends
        // its own name as Host and Origin alike.
        assert!(!none.permits(&headers(
            Some("http://rebind.attacker:8000"),
            "rebind.attacker:8000"
        )));
        assert!(!none.permits(&headers(Some("https://agent.example"), "agent.example:443")));
        let named = AllowedOrigins::new(["https://agent.example"]);
        assert!(named.permits(&headers(Some("https://agent.example"), "agent.example")));
        assert!(none.permits(&headers(Some("http://[::1]:8000"), "[::1]:8000")));
        for foreign in [
            "http://evil.example",
            "http://127.0.0.1:9000",
            "https://127.0.0.1:8000:443",
            "null",
            "file://",
        ] {
            assert!(
                !none.permits(&headers(Some(foreign), "127.0.0.1:8000")),
                "{foreign}"
            );
        }
        let some = AllowedOrigins::new(["https://App.example/", "null"]);
        assert!(some.permits(&headers(Some("https://app.example"), "127.0.0.1:8000")));
        assert!(some.permits(&headers(Some("null"), "127.0.0.1:8000")));
        assert!(!some.permits(&headers(Some("https://app.example:8443"), "127.0.0.1:8000")));
    }
}
