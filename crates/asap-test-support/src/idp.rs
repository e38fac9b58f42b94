//! An in-process OAuth2/OIDC identity provider for the tests: discovery, a JWKS that can rotate or fail, a token endpoint
//! (client credentials with `client_secret_basic` or `client_secret_post`, the
//! authorization code with PKCE S256, refresh tokens with rotation), an authorization
//! endpoint that approves at once, and RFC 7662 introspection.
//!
//! It runs on its own thread and runtime, so synchronous and asynchronous tests use it
//! the same way; it stops when dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

const RSA_1: &str = include_str!("../fixtures/test-rsa-1.pem");
const RSA_2: &str = include_str!("../fixtures/test-rsa-2.pem");
const JWKS: &str = include_str!("../fixtures/jwks.json");
const JWKS_ROTATED: &str = include_str!("../fixtures/jwks-rotated.json");

/// The lifetime of every token the provider issues, in seconds.
const TOKEN_LIFETIME: u64 = 3600;

/// The audience of every token the provider issues.
pub const AUDIENCE: &str = "asap-agents";

/// How a client authenticated to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthUsed {
    /// HTTP Basic (`client_secret_basic`).
    Basic,
    /// `client_id` and `client_secret` in the form (`client_secret_post`).
    Post,
    /// A public client: `client_id` only.
    None,
}

#[derive(Clone)]
struct Grant {
    client_id: String,
    scope: String,
    redirect_uri: String,
    challenge: String,
}

#[derive(Default)]
struct Shared {
    base: std::sync::OnceLock<String>,
    /// Client id → its secret (`None`: a public client).
    clients: Mutex<HashMap<String, Option<String>>>,
    rotated: AtomicBool,
    down: AtomicBool,
    opaque: AtomicBool,
    jwks_fetches: AtomicUsize,
    token_requests: AtomicUsize,
    introspections: AtomicUsize,
    codes: Mutex<HashMap<String, Grant>>,
    refresh_tokens: Mutex<HashMap<String, Grant>>,
    issued: Mutex<HashMap<String, Map<String, Value>>>,
    last_auth: Mutex<Option<ClientAuthUsed>>,
    last_token_form: Mutex<HashMap<String, String>>,
}

/// A running provider.
pub struct MockIdp {
    /// Its base URL, also the issuer.
    pub base: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn random_text() -> String {
    let bytes: [u8; 24] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `%XX` decoding, for secrets a client form-encoded before Basic authentication
/// (RFC 6749 section 2.3.1; the `oauth2` crate does, the reference does not).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

impl MockIdp {
    /// Starts a provider on a free loopback port with the confidential client
    /// `asap-client`/`asap-secret` and the public client `asap-cli`.
    pub fn start() -> Self {
        let shared = Arc::new(Shared {
            ..Shared::default()
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let for_thread = shared.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let base = format!("http://{}", listener.local_addr().unwrap());
                for_thread.base.set(base.clone()).unwrap();
                ready_tx.send(base).unwrap();
                let app = router(for_thread.clone());
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let base: String = ready_rx.recv().unwrap();
        let idp = Self {
            base,
            shared,
            stop: Some(stop),
        };
        idp.register("asap-client", "asap-secret");
        idp.register_public("asap-cli");
        idp
    }

    /// Registers a confidential client.
    pub fn register(&self, client_id: &str, secret: &str) {
        self.shared
            .clients
            .lock()
            .unwrap()
            .insert(client_id.into(), Some(secret.into()));
    }

    /// Registers a public client (no secret; authorization code with PKCE).
    pub fn register_public(&self, client_id: &str) {
        self.shared
            .clients
            .lock()
            .unwrap()
            .insert(client_id.into(), None);
    }

    /// The issuer (its base URL).
    pub fn issuer(&self) -> String {
        self.base.clone()
    }
    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base)
    }
    /// The authorization endpoint.
    pub fn authorize_url(&self) -> String {
        format!("{}/authorize", self.base)
    }
    /// The JWKS endpoint.
    pub fn jwks_uri(&self) -> String {
        format!("{}/jwks", self.base)
    }
    /// The RFC 7662 introspection endpoint.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.base)
    }

    /// Signs with the second key from now on and publishes it next to the first.
    pub fn rotate(&self) {
        self.shared.rotated.store(true, Ordering::SeqCst);
    }
    /// Makes the JWKS endpoint answer 503.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
    /// Issues opaque tokens (only introspection can check them) instead of JWTs.
    pub fn set_opaque(&self, opaque: bool) {
        self.shared.opaque.store(opaque, Ordering::SeqCst);
    }
    /// JWKS requests served so far.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }
    /// Token requests served so far.
    pub fn token_requests(&self) -> usize {
        self.shared.token_requests.load(Ordering::SeqCst)
    }
    /// Introspection requests served so far.
    pub fn introspections(&self) -> usize {
        self.shared.introspections.load(Ordering::SeqCst)
    }
    /// How the last token request authenticated its client.
    pub fn last_client_auth(&self) -> Option<ClientAuthUsed> {
        *self.shared.last_auth.lock().unwrap()
    }
    /// The form of the last token request.
    pub fn last_token_form(&self) -> HashMap<String, String> {
        self.shared.last_token_form.lock().unwrap().clone()
    }

    /// A token as the token endpoint would issue it to `client_id`.
    pub fn issue(&self, client_id: &str, scope: &str) -> String {
        issue(&self.shared, client_id, scope).0
    }
}

impl Drop for MockIdp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn sign(shared: &Shared, claims: &Value) -> String {
    let (pem, kid) = if shared.rotated.load(Ordering::SeqCst) {
        (RSA_2, "test-rsa-2")
    } else {
        (RSA_1, "test-rsa-1")
    };
    let header = Header {
        kid: Some(kid.into()),
        ..Header::new(Algorithm::RS256)
    };
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// Issues an access token; returns it and its lifetime.
fn issue(shared: &Shared, client_id: &str, scope: &str) -> (String, u64) {
    let lifetime = TOKEN_LIFETIME;
    let issued_at = now();
    let mut claims = Map::new();
    claims.insert("iss".into(), json!(shared_base(shared)));
    claims.insert("sub".into(), json!(client_id));
    claims.insert("aud".into(), json!(AUDIENCE));
    claims.insert("client_id".into(), json!(client_id));
    claims.insert("scope".into(), json!(scope));
    claims.insert("iat".into(), json!(issued_at));
    claims.insert("nbf".into(), json!(issued_at));
    claims.insert("exp".into(), json!(issued_at + lifetime as i64));
    claims.insert("jti".into(), json!(random_text()));
    let token = if shared.opaque.load(Ordering::SeqCst) {
        format!("opaque-{}", random_text())
    } else {
        sign(shared, &Value::Object(claims.clone()))
    };
    shared.issued.lock().unwrap().insert(token.clone(), claims);
    (token, lifetime)
}

fn shared_base(shared: &Shared) -> String {
    shared.base.get().cloned().unwrap_or_default()
}

type St = Arc<Shared>;

fn router(shared: St) -> axum::Router {
    axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/tenant/.well-known/openid-configuration", get(impostor))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/authorize", get(authorize))
        .route("/introspect", post(introspect))
        .with_state(shared)
}

async fn discovery(State(s): State<St>, headers: HeaderMap) -> Response {
    let base = host_base(&headers);
    let _ = &s;
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
        "introspection_endpoint": format!("{base}/introspect"),
        "scopes_supported": ["asap:read", "asap:execute", "asap:admin"],
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    }))
    .into_response()
}

async fn impostor(headers: HeaderMap) -> Response {
    let base = host_base(&headers);
    axum::Json(json!({
        "issuer": "https://impostor.test",
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/jwks"),
    }))
    .into_response()
}

/// `http://<Host>`: the provider's own base URL as the client reached it.
fn host_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

async fn jwks(State(s): State<St>) -> Response {
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let body = if s.rotated.load(Ordering::SeqCst) {
        JWKS_ROTATED
    } else {
        JWKS
    };
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    )
}

/// The client a request authenticates as: HTTP Basic, or `client_id`+`client_secret`
/// in the form, or a public client naming itself. `None`: authentication failed.
fn authenticate(
    s: &Shared,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Option<(String, ClientAuthUsed)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "));
    let (id, secret, used) = if let Some(encoded) = basic {
        let decoded = STANDARD.decode(encoded).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (id, secret) = text.split_once(':')?;
        (
            percent_decode(id),
            Some(secret.to_owned()),
            ClientAuthUsed::Basic,
        )
    } else {
        let id = form.get("client_id")?;
        match form.get("client_secret") {
            Some(secret) => (id.clone(), Some(secret.clone()), ClientAuthUsed::Post),
            None => (id.clone(), None, ClientAuthUsed::None),
        }
    };
    let clients = s.clients.lock().unwrap();
    let client = clients.get(&id)?;
    let ok = match (client, &secret) {
        // Basic credentials may be form-encoded first (RFC 6749 2.3.1) or raw.
        (Some(expected), Some(given)) => given == expected || percent_decode(given) == *expected,
        (None, None) => true,
        _ => false,
    };
    ok.then_some((id, used))
}

fn token_answer(s: &Shared, client_id: &str, scope: &str, refresh: Option<&Grant>) -> Response {
    let (access, lifetime) = issue(s, client_id, scope);
    let mut body = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scope,
    });
    if let Some(grant) = refresh {
        let refresh_token = format!("rt-{}", random_text());
        s.refresh_tokens
            .lock()
            .unwrap()
            .insert(refresh_token.clone(), grant.clone());
        body["refresh_token"] = json!(refresh_token);
    }
    axum::Json(body).into_response()
}

async fn token(
    State(s): State<St>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::SeqCst);
    *s.last_token_form.lock().unwrap() = form.clone();
    let Some((client_id, used)) = authenticate(&s, &headers, &form) else {
        return invalid_client();
    };
    *s.last_auth.lock().unwrap() = Some(used);
    let invalid_grant = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why);
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {
            if used == ClientAuthUsed::None {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "public clients cannot use client_credentials",
                );
            }
            let scope = form.get("scope").cloned().unwrap_or_default();
            token_answer(&s, &client_id, &scope, None)
        }
        Some("authorization_code") => {
            let code = form.get("code").cloned().unwrap_or_default();
            let Some(grant) = s.codes.lock().unwrap().remove(&code) else {
                return invalid_grant("unknown or used authorization code");
            };
            if grant.client_id != client_id {
                return invalid_grant("the code was issued to another client");
            }
            if form.get("redirect_uri") != Some(&grant.redirect_uri) {
                return invalid_grant("redirect_uri does not match the authorization request");
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            if verifier.len() < 43 || computed != grant.challenge {
                return invalid_grant("PKCE verification failed");
            }
            token_answer(&s, &client_id, &grant.scope.clone(), Some(&grant))
        }
        Some("refresh_token") => {
            let presented = form.get("refresh_token").cloned().unwrap_or_default();
            // Rotation: a refresh token works once.
            let Some(grant) = s.refresh_tokens.lock().unwrap().remove(&presented) else {
                return invalid_grant("unknown or used refresh token");
            };
            if grant.client_id != client_id {
                return invalid_grant("the refresh token was issued to another client");
            }
            token_answer(&s, &client_id, &grant.scope.clone(), Some(&grant))
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type not supported",
        ),
    }
}

async fn authorize(State(s): State<St>, Query(query): Query<HashMap<String, String>>) -> Response {
    let Some(redirect_uri) = query.get("redirect_uri").cloned() else {
        return (StatusCode::BAD_REQUEST, "redirect_uri missing").into_response();
    };
    if !redirect_uri.starts_with("http://127.0.0.1:") {
        return (
            StatusCode::BAD_REQUEST,
            "redirect_uri must be a loopback URI",
        )
            .into_response();
    }
    let client_id = query.get("client_id").cloned().unwrap_or_default();
    if !s.clients.lock().unwrap().contains_key(&client_id) {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    }
    let state = query.get("state").cloned().unwrap_or_default();
    let back = |params: &str| {
        Redirect::to(&format!("{redirect_uri}?{params}&state={state}")).into_response()
    };
    let challenge = query.get("code_challenge").cloned().unwrap_or_default();
    if query.get("response_type").map(String::as_str) != Some("code")
        || query.get("code_challenge_method").map(String::as_str) != Some("S256")
        || challenge.is_empty()
    {
        return back("error=invalid_request&error_description=PKCE+S256+required");
    }
    if query.get("scope").is_some_and(|s| s.contains("deny")) {
        return back("error=access_denied");
    }
    let code = format!("code-{}", random_text());
    s.codes.lock().unwrap().insert(
        code.clone(),
        Grant {
            client_id,
            scope: query.get("scope").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            challenge,
        },
    );
    back(&format!("code={code}"))
}

async fn introspect(
    State(s): State<St>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    s.introspections.fetch_add(1, Ordering::SeqCst);
    match authenticate(&s, &headers, &form) {
        Some((_, ClientAuthUsed::Basic)) => {}
        Some(_) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "introspection needs HTTP Basic client authentication",
            );
        }
        None => return invalid_client(),
    }
    let token = form.get("token").cloned().unwrap_or_default();
    let claims = s.issued.lock().unwrap().get(&token).cloned();
    match claims {
        Some(claims) if claims.get("exp").and_then(Value::as_i64).unwrap_or(0) > now() => {
            let mut body = claims;
            body.insert("active".into(), json!(true));
            body.insert("token_type".into(), json!("Bearer"));
            axum::Json(Value::Object(body)).into_response()
        }
        _ => axum::Json(json!({"active": false})).into_response(),
    }
}
