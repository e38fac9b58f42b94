//! The OAuth2 authorization-code grant with PKCE (S256) and refresh tokens (RFC 6749
//! section 4.1, RFC 7636), for a person signing an agent in at their identity provider.
//!
//! The flow: [`AuthorizationCodeFlow::start`] gives the URL to open and a
//! [`PendingAuthorization`] holding the PKCE verifier and the `state`; the provider
//! redirects the browser to the redirect URI with a `code` (see [`LoopbackRedirect`]);
//! [`AuthorizationCodeFlow::exchange`] checks the `state` and trades the code for a
//! [`RefreshingToken`], a token source that uses the refresh token before expiry.
//!
//! [`LoopbackRedirect`]: super::LoopbackRedirect

use std::sync::Arc;
use std::time::Duration;

use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenUrl,
};

use super::token::{
    AccessToken, ClientAuth, FetchError, TokenCache, TokenError, TokenHttp, auth_type, fetch_error,
    token_http, via,
};

/// The provider and client settings of an authorization-code flow.
#[derive(Clone)]
struct Settings {
    authorize_url: String,
    token_url: String,
    client_id: String,
    client_secret: Option<String>,
    auth: ClientAuth,
    scopes: Vec<String>,
    http: TokenHttp,
}

impl Settings {
    fn client(
        &self,
        redirect_uri: Option<&str>,
    ) -> Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
        TokenError,
    > {
        let bad = |what: &'static str, source| TokenError::BadUrl { what, source };
        let mut client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(
                AuthUrl::new(self.authorize_url.clone())
                    .map_err(|e| bad("authorization URL", e))?,
            )
            .set_token_uri(TokenUrl::new(self.token_url.clone()).map_err(|e| bad("token URL", e))?)
            .set_auth_type(auth_type(self.auth));
        if let Some(secret) = &self.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
        }
        if let Some(uri) = redirect_uri {
            client = client.set_redirect_uri(
                RedirectUrl::new(uri.to_owned()).map_err(|e| bad("redirect URI", e))?,
            );
        }
        Ok(client)
    }
}

/// An authorization-code flow with PKCE against one provider.
///
/// ```no_run
/// # async fn run() -> Result<(), asap_protocol::auth::TokenError> {
/// use std::time::Duration;
/// use asap_protocol::auth::{AuthorizationCodeFlow, LoopbackRedirect};
///
/// let flow = AuthorizationCodeFlow::new(
///     "https://idp.example/authorize",
///     "https://idp.example/token",
///     "my-cli",
/// )?
/// .scopes(["asap:execute", "offline_access"]);
/// let redirect = LoopbackRedirect::bind(0).await?;
/// let tokens = flow
///     .login(redirect, |url| println!("Open {url}"), Duration::from_secs(300))
///     .await?;
/// let token = tokens.token().await?; // refreshed with the refresh token before expiry
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthorizationCodeFlow {
    settings: Settings,
    refresh_margin: Duration,
    attempts: u32,
}

/// A started authorization: the URL to open, and what the exchange needs to check and
/// prove (the `state` and the PKCE verifier, never shown).
#[must_use = "the authorization must be completed with the redirect it expects"]
pub struct PendingAuthorization {
    /// The URL the user opens in a browser.
    pub url: String,
    /// Where the provider sends the browser back.
    pub redirect_uri: String,
    state: String,
    verifier: String,
}

impl std::fmt::Debug for PendingAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAuthorization")
            .field("url", &self.url)
            .field("redirect_uri", &self.redirect_uri)
            .finish_non_exhaustive()
    }
}

impl PendingAuthorization {
    /// The `state` the provider must send back.
    pub fn state(&self) -> &str {
        &self.state
    }
}

impl AuthorizationCodeFlow {
    /// A flow for the public client `client_id` (add a secret with
    /// [`client_secret`](Self::client_secret) for a confidential one); fails when the
    /// HTTP client (10 s timeout, no redirects) cannot be built.
    pub fn new(
        authorize_url: impl Into<String>,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
    ) -> Result<Self, TokenError> {
        Ok(Self {
            settings: Settings {
                authorize_url: authorize_url.into(),
                token_url: token_url.into(),
                client_id: client_id.into(),
                client_secret: None,
                auth: ClientAuth::Basic,
                scopes: Vec::new(),
                http: token_http()?,
            },
            refresh_margin: Duration::from_secs(30),
            attempts: 3,
        })
    }

    /// The client secret of a confidential client.
    pub fn client_secret(mut self, secret: impl Into<String>) -> Self {
        self.settings.client_secret = Some(secret.into());
        self
    }

    /// The largest token-endpoint answer read (default
    /// [`DEFAULT_MAX_TOKEN_RESPONSE`](super::DEFAULT_MAX_TOKEN_RESPONSE)).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.settings.http.max_response = bytes;
        self
    }

    /// How a confidential client authenticates to the token endpoint (default HTTP Basic).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.settings.auth = auth;
        self
    }

    /// Scopes to ask for.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.settings.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Refresh this long before expiry (default 30 s).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.refresh_margin = margin;
        self
    }

    /// Attempts per refresh for transient failures (default 3, backoff 0.5 s doubling).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Starts an authorization: a fresh PKCE verifier (S256) and `state`, and the URL.
    pub fn start(&self, redirect_uri: &str) -> Result<PendingAuthorization, TokenError> {
        let client = self.settings.client(Some(redirect_uri))?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state) = request.url();
        Ok(PendingAuthorization {
            url: url.to_string(),
            redirect_uri: redirect_uri.to_owned(),
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
        })
    }

    /// Trades the `code` the provider sent back (with its `state`) for tokens.
    pub async fn exchange(
        &self,
        pending: PendingAuthorization,
        code: &str,
        state: &str,
    ) -> Result<RefreshingToken, TokenError> {
        if state != pending.state {
            return Err(TokenError::StateMismatch);
        }
        let client = self.settings.client(Some(&pending.redirect_uri))?;
        let http = via(&self.settings.http);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(pending.verifier))
            .request_async(&http)
            .await
            .map_err(|e| fetch_error(e).0)?;
        let token = AccessToken::from_response(&response, None);
        Ok(self.refreshing(Some(token)))
    }

    /// A token source that starts from a saved refresh token.
    pub fn from_refresh_token(&self, refresh_token: impl Into<String>) -> RefreshingToken {
        let mut source = self.refreshing(None);
        source.seed = Some(refresh_token.into());
        source
    }

    /// The whole flow on this machine: binds nothing itself, hands the URL to `show`
    /// (print it; this library never opens a browser), waits at most `timeout` for the
    /// provider to redirect to `redirect`, and exchanges the code.
    #[cfg(feature = "server")]
    pub async fn login(
        &self,
        redirect: super::LoopbackRedirect,
        show: impl FnOnce(&str),
        timeout: Duration,
    ) -> Result<RefreshingToken, TokenError> {
        let pending = self.start(&redirect.redirect_uri())?;
        show(&pending.url);
        let callback = redirect.wait(timeout).await?;
        self.exchange(pending, &callback.code, &callback.state)
            .await
    }

    fn refreshing(&self, initial: Option<AccessToken>) -> RefreshingToken {
        let mut cache = TokenCache::new(initial);
        cache.margin = self.refresh_margin;
        cache.attempts = self.attempts;
        RefreshingToken {
            settings: Arc::new(self.settings.clone()),
            cache,
            seed: None,
        }
    }
}

/// Tokens from an authorization-code flow, renewed with the refresh token `margin`
/// before they expire; one refresh at a time, transient failures retried.
pub struct RefreshingToken {
    settings: Arc<Settings>,
    cache: TokenCache,
    seed: Option<String>,
}

impl std::fmt::Debug for RefreshingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshingToken")
            .field("client_id", &self.settings.client_id)
            .field("token_url", &self.settings.token_url)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for AuthorizationCodeFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorizationCodeFlow")
            .field("client_id", &self.settings.client_id)
            .field("authorize_url", &self.settings.authorize_url)
            .field("token_url", &self.settings.token_url)
            .finish_non_exhaustive()
    }
}

impl RefreshingToken {
    /// A valid access token, refreshed first when needed.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        self.cache.get(|stale| self.refresh(stale)).await
    }

    /// The current refresh token, to save for a later [`AuthorizationCodeFlow::from_refresh_token`].
    pub async fn refresh_token(&self) -> Option<String> {
        self.cache
            .current()
            .await
            .and_then(|t| t.refresh_token)
            .or_else(|| self.seed.clone())
    }

    async fn refresh(&self, stale: Option<AccessToken>) -> Result<AccessToken, FetchError> {
        let refresh_token = stale
            .and_then(|t| t.refresh_token)
            .or_else(|| self.seed.clone())
            .ok_or((TokenError::NoRefreshToken, false))?;
        let client = self.settings.client(None).map_err(|e| (e, false))?;
        let http = via(&self.settings.http);
        let rt = RefreshToken::new(refresh_token.clone());
        // No scope: the refreshed token keeps the scopes originally granted (RFC 6749 §6).
        let response = client
            .exchange_refresh_token(&rt)
            .request_async(&http)
            .await
            .map_err(fetch_error)?;
        Ok(AccessToken::from_response(&response, Some(refresh_token)))
    }
}
