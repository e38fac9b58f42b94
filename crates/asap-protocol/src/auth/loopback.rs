//! The loopback redirect of a native-app authorization (RFC 8252 section 7.3): a
//! one-shot HTTP listener on `127.0.0.1` that receives the provider's redirect.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use serde::Deserialize;

use super::token::TokenError;

/// What the provider sent back to the redirect URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The authorization code.
    pub code: String,
    /// The `state`, to compare with the request's.
    pub state: String,
}

#[derive(Debug, Deserialize)]
struct Params {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

type Outcome = Result<Callback, TokenError>;
type Slot = Arc<Mutex<Option<tokio::sync::oneshot::Sender<Outcome>>>>;

/// A listener on `127.0.0.1` for one authorization redirect to `/callback`.
///
/// ```no_run
/// # async fn run() -> Result<(), asap_protocol::auth::TokenError> {
/// let redirect = asap_protocol::auth::LoopbackRedirect::bind(8765).await?;
/// assert_eq!(redirect.redirect_uri(), "http://127.0.0.1:8765/callback");
/// # Ok(()) }
/// ```
pub struct LoopbackRedirect {
    listener: tokio::net::TcpListener,
    port: u16,
}

impl LoopbackRedirect {
    /// Listens on `127.0.0.1:port` (`0` picks a free port).
    pub async fn bind(port: u16) -> Result<Self, TokenError> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| TokenError::Listen { port, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| TokenError::Listen { port, source })?
            .port();
        Ok(Self { listener, port })
    }

    /// The redirect URI to register with the provider and send in the request.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Serves until the first redirect to `/callback` arrives (or `timeout` passes) and
    /// returns its code and state; an `error` redirect (the user refused) is an error.
    pub async fn wait(self, timeout: Duration) -> Result<Callback, TokenError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot: Slot = Arc::new(Mutex::new(Some(tx)));
        let app = axum::Router::new()
            .route("/callback", axum::routing::get(callback))
            .with_state(slot);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(self.listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .into_future(),
        );
        let outcome = tokio::time::timeout(timeout, rx).await;
        let _ = stop_tx.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
        match outcome {
            Err(_) => Err(TokenError::RedirectTimeout(timeout)),
            Ok(Err(_)) => Err(TokenError::ListenerStopped),
            Ok(Ok(result)) => result,
        }
    }
}

async fn callback(State(slot): State<Slot>, Query(params): Query<Params>) -> Html<&'static str> {
    let outcome = match params {
        Params {
            error: Some(error),
            error_description,
            ..
        } => Err(TokenError::AuthorizationRefused {
            error,
            description: error_description,
        }),
        Params {
            code: Some(code),
            state: Some(state),
            ..
        } => Ok(Callback { code, state }),
        _ => Err(TokenError::MalformedRedirect),
    };
    let page = if outcome.is_ok() {
        "<!doctype html><title>ASAP</title><p>Signed in. You can close this window.</p>"
    } else {
        "<!doctype html><title>ASAP</title><p>Sign-in failed; see the terminal.</p>"
    };
    if let Some(tx) = slot
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    {
        let _ = tx.send(outcome);
    }
    Html(page)
}
