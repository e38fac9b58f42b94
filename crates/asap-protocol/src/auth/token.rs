//! OAuth2 client credentials (wire spec section 10.7) with a cached token that is
//! refreshed before it expires, one refresh at a time, retried with backoff.

use std::time::{Duration, Instant};

use oauth2::basic::{BasicClient, BasicErrorResponse};
use oauth2::{
    AuthType, ClientId, ClientSecret, HttpRequest, HttpResponse, Scope, TokenResponse, TokenUrl,
};

/// How the client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// HTTP Basic (`client_secret_basic`), as the reference.
    #[default]
    Basic,
    /// Credentials in the form body (`client_secret_post`).
    Post,
}

/// An access token and when it expires. Its `Debug` output hides the token and the
/// refresh token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The token.
    pub secret: String,
    /// `token_type`: `Bearer` (RFC 6750's spelling, whatever the provider's case) or another type.
    pub token_type: String,
    /// When it expires (now + `expires_in`, or now + 3600 s when the provider says nothing).
    pub expires_at: Instant,
    /// The refresh token, when the provider issued one (authorization-code flow).
    pub refresh_token: Option<String>,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &crate::REDACTED)
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| crate::REDACTED),
            )
            .finish()
    }
}

impl AccessToken {
    pub(crate) fn from_response(
        response: &oauth2::basic::BasicTokenResponse,
        previous_refresh: Option<String>,
    ) -> Self {
        let lifetime = response.expires_in().unwrap_or(Duration::from_secs(3600));
        Self {
            secret: response.access_token().secret().clone(),
            token_type: match response.token_type() {
                // The oauth2 crate reads the type case-insensitively; give RFC 6750's spelling.
                oauth2::basic::BasicTokenType::Bearer => "Bearer".to_owned(),
                oauth2::basic::BasicTokenType::Mac => "MAC".to_owned(),
                other => other.as_ref().to_owned(),
            },
            expires_at: Instant::now() + lifetime,
            // A provider that does not rotate refresh tokens omits it from a refresh answer.
            refresh_token: response
                .refresh_token()
                .map(|t| t.secret().clone())
                .or(previous_refresh),
        }
    }
}

/// A failed fetch, and whether trying again may help (transport errors only).
pub(crate) type FetchError = (TokenError, bool);

/// The cached token shared by the token sources: refreshed `margin` before expiry, one
/// refresh at a time, transient failures retried with backoff (0.5 s doubling).
pub(crate) struct TokenCache {
    pub(crate) margin: Duration,
    pub(crate) attempts: u32,
    cached: tokio::sync::Mutex<Option<AccessToken>>,
}

impl TokenCache {
    pub(crate) fn new(initial: Option<AccessToken>) -> Self {
        Self {
            margin: Duration::from_secs(30),
            attempts: 3,
            cached: tokio::sync::Mutex::new(initial),
        }
    }

    /// The cached token, or a fresh one from `fetch` (given the stale token, whose
    /// refresh token a refresh grant needs).
    pub(crate) async fn get<F, Fut>(&self, fetch: F) -> Result<AccessToken, TokenError>
    where
        F: Fn(Option<AccessToken>) -> Fut,
        Fut: std::future::Future<Output = Result<AccessToken, FetchError>>,
    {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() + self.margin < token.expires_at
        {
            return Ok(token.clone());
        }
        let mut delay = Duration::from_millis(500);
        let mut attempt = 1;
        let token = loop {
            match fetch(cached.clone()).await {
                Ok(token) => break token,
                Err((error, retryable)) if retryable && attempt < self.attempts => {
                    tracing::debug!(%error, attempt, "token request failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err((error, _)) => return Err(error),
            }
        };
        *cached = Some(token.clone());
        Ok(token)
    }

    pub(crate) async fn clear(&self) {
        *self.cached.lock().await = None;
    }

    pub(crate) async fn current(&self) -> Option<AccessToken> {
        self.cached.lock().await.clone()
    }
}

/// The largest token-endpoint answer read by default: 64 KiB (real ones are well under
/// 4 KiB). Change it with `max_response_size` on [`ClientCredentials`] or
/// [`AuthorizationCodeFlow`](super::AuthorizationCodeFlow).
pub const DEFAULT_MAX_TOKEN_RESPONSE: usize = 64 * 1024;

/// The HTTP client the token endpoint is called with (10 s timeout, no redirects) and
/// the largest answer it reads.
#[derive(Debug, Clone)]
pub(crate) struct TokenHttp {
    client: reqwest::Client,
    pub(crate) max_response: usize,
}

pub(crate) fn token_http() -> Result<TokenHttp, TokenError> {
    let client = crate::client::tls::http_builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(TokenError::ClientBuild)?;
    Ok(TokenHttp {
        client,
        max_response: DEFAULT_MAX_TOKEN_RESPONSE,
    })
}

/// Why the HTTP exchange with the token endpoint failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenHttpError {
    /// No answer (connection, TLS, timeout) or an unreadable one.
    #[error("no usable answer from the token endpoint")]
    Request(#[from] reqwest::Error),
    /// The answer is larger than the limit; it was not read further.
    #[error("the token endpoint's answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
}

type Pending = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<HttpResponse, TokenHttpError>> + Send>,
>;

/// The `oauth2` crate's HTTP client, over reqwest.
pub(crate) fn via(http: &TokenHttp) -> impl Fn(HttpRequest) -> Pending + Send + Sync {
    let http = http.clone();
    move |request| {
        let http = http.clone();
        Box::pin(async move { send(&http, request).await })
    }
}

/// Sends an `oauth2` crate request with reqwest, reading at most `max_response` bytes
/// of the answer (refused as soon as more arrive, or when more are declared).
async fn send(http: &TokenHttp, request: HttpRequest) -> Result<HttpResponse, TokenHttpError> {
    let (parts, body) = request.into_parts();
    let mut response = http
        .client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let limit = http.max_response;
    let too_large = || TokenHttpError::TooLarge { limit };
    if response
        .content_length()
        .is_some_and(|declared| declared > limit as u64)
    {
        return Err(too_large());
    }
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // The status and headers come from a valid response, so the builder cannot fail;
    // an empty response would still be refused by the oauth2 crate as unparsable.
    Ok(builder.body(body).unwrap_or_default())
}

/// The token endpoint's error, as the oauth2 crate reports it over reqwest.
pub type RequestError = oauth2::RequestTokenError<TokenHttpError, BasicErrorResponse>;

/// Turns a token-endpoint failure into a [`TokenError`] and whether to retry
/// (transport failures only).
pub(crate) fn fetch_error(error: RequestError) -> FetchError {
    match error {
        oauth2::RequestTokenError::ServerResponse(answer) => (TokenError::Refused(answer), false),
        other => {
            let retryable = matches!(other, oauth2::RequestTokenError::Request(_));
            (TokenError::Request(other), retryable)
        }
    }
}

pub(crate) fn auth_type(auth: ClientAuth) -> AuthType {
    match auth {
        ClientAuth::Basic => AuthType::BasicAuth,
        ClientAuth::Post => AuthType::RequestBody,
    }
}

/// Why a token could not be obtained.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The HTTP client for the token endpoint could not be built.
    #[error("OAuth2: the HTTP client could not be built")]
    ClientBuild(#[source] reqwest::Error),
    /// A configured endpoint URL does not parse.
    #[error("OAuth2: bad {what}")]
    BadUrl {
        /// Which URL (`token URL`, `authorization URL`, `redirect URI`).
        what: &'static str,
        /// Why it does not parse.
        #[source]
        source: oauth2::url::ParseError,
    },
    /// The provider answered the token request with an OAuth2 error
    /// (`invalid_client`, `invalid_grant`, ...).
    #[error("OAuth2 token request refused: {0}")]
    Refused(BasicErrorResponse),
    /// The token request failed otherwise (no answer, an unparsable answer).
    #[error("OAuth2 token request failed")]
    Request(#[source] RequestError),
    /// The access token expired and no refresh token is known.
    #[error("OAuth2: the access token expired and there is no refresh token")]
    NoRefreshToken,
    /// The authorization response's `state` is not the request's.
    #[error("the authorization response's state does not match the request (possible CSRF)")]
    StateMismatch,
    /// The loopback redirect listener could not be bound.
    #[error("cannot listen on 127.0.0.1:{port}")]
    Listen {
        /// The port asked for.
        port: u16,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No authorization redirect arrived in time.
    #[error("no authorization redirect within {} s", .0.as_secs())]
    RedirectTimeout(Duration),
    /// The loopback redirect listener stopped before a redirect arrived.
    #[error("the redirect listener stopped")]
    ListenerStopped,
    /// The provider redirected back with an error (for example the user refused).
    #[error("authorization refused: {error}{}", .description.as_ref().map(|d| format!(": {d}")).unwrap_or_default())]
    AuthorizationRefused {
        /// The redirect's `error`.
        error: String,
        /// The redirect's `error_description`.
        description: Option<String>,
    },
    /// The redirect carried neither a code and state nor an error.
    #[error("the redirect carried neither a code and state nor an error")]
    MalformedRedirect,
}

/// Obtains and caches tokens with the client-credentials grant.
///
/// ```no_run
/// # async fn run() -> Result<(), asap_protocol::auth::TokenError> {
/// use asap_protocol::auth::ClientCredentials;
/// let source = ClientCredentials::new("https://idp.example/token", "my-client", "s3cret")?
///     .scopes(["asap:execute"]);
/// let token = source.token().await?;            // cached; refreshed 30 s before expiry
/// println!("Authorization: Bearer {}", token.secret);
/// # Ok(()) }
/// ```
pub struct ClientCredentials {
    token_url: String,
    client_id: String,
    client_secret: String,
    scopes: Vec<String>,
    auth: ClientAuth,
    http: TokenHttp,
    cache: TokenCache,
}

impl ClientCredentials {
    /// A token source for `client_id`/`client_secret` at `token_url`; fails when the
    /// HTTP client (10 s timeout, no redirects) cannot be built.
    pub fn new(
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Result<Self, TokenError> {
        Ok(Self {
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            scopes: Vec::new(),
            auth: ClientAuth::Basic,
            http: token_http()?,
            cache: TokenCache::new(None),
        })
    }

    /// Scopes to ask for.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// The largest token-endpoint answer read (default [`DEFAULT_MAX_TOKEN_RESPONSE`]).
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.http.max_response = bytes;
        self
    }

    /// How to authenticate to the token endpoint (default HTTP Basic).
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    /// Refresh this long before expiry (default 30 s, as the reference).
    pub fn refresh_margin(mut self, margin: Duration) -> Self {
        self.cache.margin = margin;
        self
    }

    /// Attempts per refresh for transient failures (default 3, backoff 0.5 s doubling).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.cache.attempts = attempts.max(1);
        self
    }

    /// A valid token: the cached one, or a new one when it is within the refresh margin
    /// of expiry. Concurrent callers share one refresh.
    pub async fn token(&self) -> Result<AccessToken, TokenError> {
        self.cache.get(|_| self.fetch()).await
    }

    /// Forgets the cached token (for example after the server refused it).
    pub async fn invalidate(&self) {
        self.cache.clear().await;
    }

    async fn fetch(&self) -> Result<AccessToken, FetchError> {
        let token_url = TokenUrl::new(self.token_url.clone()).map_err(|source| {
            let what = "token URL";
            (TokenError::BadUrl { what, source }, false)
        })?;
        let client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.client_secret.clone()))
            .set_token_uri(token_url)
            .set_auth_type(auth_type(self.auth));
        let http = via(&self.http);
        let mut request = client.exchange_client_credentials();
        for scope in &self.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let response = request.request_async(&http).await.map_err(fetch_error)?;
        Ok(AccessToken::from_response(&response, None))
    }
}
