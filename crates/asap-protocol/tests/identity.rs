//! Identity end to end against the in-process provider (`common/idp.rs`): client
//! credentials with both client authentication methods, the authorization code with
//! PKCE and refresh tokens, opaque tokens through introspection, per-route scopes and
//! sender binding on a real server.

mod common;
use asap_test_support::idp;

use std::sync::Arc;
use std::time::Duration;

use asap_protocol::auth::{
    AuthorizationCodeFlow, ClientAuth, ClientCredentials, JwksCache, JwtPolicy, JwtValidator,
    LoopbackRedirect, OidcDiscovery, TokenIntrospector,
};
use asap_protocol::client::{Client, ClientError};
use asap_protocol::model::{Envelope, TaskRequest};
use asap_protocol::server::OAuth2;
use common::{AGENT, Options, Running, echo_request, start};
use idp::{ClientAuthUsed, MockIdp};
use serde_json::{Value, json};

async fn protected(oauth2: OAuth2) -> Running {
    start(Options {
        oauth2: Some(oauth2),
        ..Options::default()
    })
    .await
}

fn jwt_validator(idp: &MockIdp, policy: JwtPolicy) -> JwtValidator {
    JwtValidator::new(
        Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()),
        AGENT,
        policy,
    )
}

fn request_from(sender: &str) -> Envelope {
    Envelope::new(
        sender,
        AGENT,
        TaskRequest::new("c1", "echo", json!({"n": 1})),
    )
}

/// GET or POST with an optional bearer token: status, `WWW-Authenticate`, body.
async fn call(method: &str, url: &str, token: Option<&str>) -> (u16, Option<String>, Value) {
    let http = reqwest::Client::new();
    let mut request = match method {
        "GET" => http.get(url),
        _ => http.post(url).json(&echo_request(json!({}))),
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        challenge,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn client_credentials_with_both_client_auth_methods_reach_a_protected_agent() {
    let idp = MockIdp::start();
    let policy = {
        let mut value = JwtPolicy::strict(idp.issuer(), idp::AUDIENCE);
        value.required_scope = Some("asap:execute".into());
        value
    };
    let server = protected(OAuth2::new(jwt_validator(&idp, policy))).await;
    for (auth, used) in [
        (ClientAuth::Basic, ClientAuthUsed::Basic),
        (ClientAuth::Post, ClientAuthUsed::Post),
    ] {
        let source = Arc::new(
            ClientCredentials::new(idp.token_url(), "asap-client", "asap-secret")
                .unwrap()
                .client_auth(auth)
                .scopes(["asap:execute"]),
        );
        let before = idp.token_requests();
        let client = Client::builder().token_source(source).build().unwrap();
        for _ in 0..3 {
            client
                .send(&server.base, &request_from("urn:asap:agent:client"))
                .await
                .unwrap();
        }
        assert_eq!(idp.token_requests() - before, 1, "the token is cached");
        assert_eq!(idp.last_client_auth(), Some(used));
    }
    // A wrong secret is the provider's invalid_client, not a retry loop.
    let wrong = ClientCredentials::new(idp.token_url(), "asap-client", "nope").unwrap();
    let error = wrong.token().await.unwrap_err();
    assert!(error.to_string().contains("invalid_client"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn oidc_discovery_lists_every_endpoint_of_the_provider() {
    let idp = MockIdp::start();
    let config = OidcDiscovery::new(idp.issuer())
        .unwrap()
        .config()
        .await
        .unwrap();
    assert_eq!(config.token_endpoint, idp.token_url());
    assert_eq!(config.jwks_uri, idp.jwks_uri());
    assert_eq!(
        config.authorization_endpoint.as_deref(),
        Some(idp.authorize_url().as_str())
    );
    assert_eq!(
        config.introspection_endpoint.as_deref(),
        Some(idp.introspection_url().as_str())
    );
}

/// Follows the authorization URL like a browser whose user approves at once.
fn approve_in_browser(url: &str) {
    let url = url.to_owned();
    tokio::spawn(async move {
        let page = reqwest::get(&url).await.unwrap();
        assert!(page.status().is_success(), "{}", page.status());
        let text = page.text().await.unwrap();
        assert!(text.contains("Signed in"), "{text}");
    });
}

fn code_flow(idp: &MockIdp) -> AuthorizationCodeFlow {
    AuthorizationCodeFlow::new(idp.authorize_url(), idp.token_url(), "asap-cli")
        .unwrap()
        .scopes(["asap:execute", "asap:read"])
}

#[tokio::test]
async fn authorization_code_with_pkce_and_refresh_token_rotation() {
    let idp = MockIdp::start();
    let redirect = LoopbackRedirect::bind(0).await.unwrap();
    assert!(redirect.redirect_uri().starts_with("http://127.0.0.1:"));
    let flow = code_flow(&idp).refresh_margin(Duration::from_secs(0));
    let mut shown = String::new();
    let tokens = flow
        .login(
            redirect,
            |url| {
                shown = url.to_owned();
                approve_in_browser(url);
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert!(shown.contains("code_challenge_method=S256"), "{shown}");
    assert!(shown.contains("code_challenge="), "{shown}");
    assert!(!shown.contains("code_verifier"), "{shown}");
    let form = idp.last_token_form();
    assert_eq!(form["grant_type"], "authorization_code");
    assert!(form["code_verifier"].len() >= 43);
    assert_eq!(idp.last_client_auth(), Some(ClientAuthUsed::None));

    let first = tokens.token().await.unwrap();
    let first_refresh = first.refresh_token.clone().unwrap();
    // The token is used by a protected agent as any other.
    let validator = jwt_validator(&idp, JwtPolicy::strict(idp.issuer(), idp::AUDIENCE));
    let claims = validator.validate(&first.secret).await.unwrap();
    assert_eq!(claims.subject, "asap-cli");
    assert_eq!(claims.scopes, ["asap:execute", "asap:read"]);

    // Near expiry, the refresh token gets a new pair; the old refresh token is spent.
    let lifetime = Duration::from_secs(3600);
    let tokens = code_flow(&idp)
        .refresh_margin(lifetime + Duration::from_secs(1))
        .from_refresh_token(first_refresh.clone());
    let second = tokens.token().await.unwrap();
    assert_ne!(second.secret, first.secret);
    assert_eq!(idp.last_token_form()["grant_type"], "refresh_token");
    let rotated = tokens.refresh_token().await.unwrap();
    assert_ne!(rotated, first_refresh);
    let third = tokens.token().await.unwrap();
    assert_ne!(third.secret, second.secret);
    let spent = code_flow(&idp).from_refresh_token(first_refresh);
    let error = spent.token().await.unwrap_err();
    assert!(error.to_string().contains("invalid_grant"), "{error}");
}

#[tokio::test]
async fn many_callers_share_one_refresh() {
    let idp = MockIdp::start();
    idp.register("confidential", "pw");
    let tokens = Arc::new(
        AuthorizationCodeFlow::new(idp.authorize_url(), idp.token_url(), "confidential")
            .unwrap()
            .client_secret("pw")
            .client_auth(ClientAuth::Post),
    );
    // Get a refresh token through the real flow, then let 50 callers need a token at once.
    let redirect = LoopbackRedirect::bind(0).await.unwrap();
    let source = tokens
        .login(redirect, approve_in_browser, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(idp.last_client_auth(), Some(ClientAuthUsed::Post));
    let refresh = source.refresh_token().await.unwrap();
    let source = Arc::new(tokens.from_refresh_token(refresh));
    let before = idp.token_requests();
    let mut waiting = Vec::new();
    for _ in 0..50 {
        let source = source.clone();
        waiting.push(tokio::spawn(
            async move { source.token().await.unwrap().secret },
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for task in waiting {
        seen.insert(task.await.unwrap());
    }
    assert_eq!(idp.token_requests() - before, 1);
    assert_eq!(seen.len(), 1);
}

#[tokio::test]
async fn pkce_state_and_refusal_are_enforced() {
    let idp = MockIdp::start();
    let flow = code_flow(&idp);
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let code_from = |location: &str| {
        location
            .split(['?', '&'])
            .find_map(|p| p.strip_prefix("code="))
            .unwrap()
            .to_owned()
    };
    let redirect_uri = "http://127.0.0.1:9/callback";
    // The code of one authorization with the verifier of another: PKCE fails.
    let mine = flow.start(redirect_uri).unwrap();
    let other = flow.start(redirect_uri).unwrap();
    let answer = no_redirects.get(&mine.url).send().await.unwrap();
    let location = answer.headers()["location"].to_str().unwrap().to_owned();
    let code = code_from(&location);
    let state = other.state().to_owned();
    let error = flow.exchange(other, &code, &state).await.unwrap_err();
    assert!(error.to_string().contains("PKCE"), "{error}");
    // A response whose state is not ours is refused before any request is made.
    let pending = flow.start(redirect_uri).unwrap();
    let before = idp.token_requests();
    let error = flow
        .exchange(pending, "code-x", "forged")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("CSRF"), "{error}");
    assert_eq!(idp.token_requests(), before);
    // The user refuses: the loopback listener reports the provider's error.
    let denied = AuthorizationCodeFlow::new(idp.authorize_url(), idp.token_url(), "asap-cli")
        .unwrap()
        .scopes(["deny"]);
    let redirect = LoopbackRedirect::bind(0).await.unwrap();
    let error = denied
        .login(
            redirect,
            |url| {
                let url = url.to_owned();
                tokio::spawn(async move { reqwest::get(url).await.unwrap() });
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("access_denied"), "{error}");
    // Nobody comes back: the wait ends with a timeout error.
    let redirect = LoopbackRedirect::bind(0).await.unwrap();
    let error = flow
        .login(redirect, |_| {}, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        error.to_string().contains("no authorization redirect"),
        "{error}"
    );
}

#[tokio::test]
async fn opaque_tokens_are_checked_by_introspection() {
    let idp = MockIdp::start();
    idp.set_opaque(true);
    let introspector = Arc::new(
        TokenIntrospector::new(idp.introspection_url(), "asap-client", "asap-secret").unwrap(),
    );
    let policy = {
        let mut value = JwtPolicy::strict(idp.issuer(), idp::AUDIENCE);
        value.required_scope = Some("asap:execute".into());
        value
    };
    let validator = jwt_validator(&idp, policy).with_introspection(introspector);
    let server = protected(OAuth2::new(validator)).await;
    let url = format!("{}/asap", server.base);

    let opaque = idp.issue("asap-client", "asap:execute");
    assert!(opaque.starts_with("opaque-"));
    let (status, _, body) = call("POST", &url, Some(&opaque)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object(), "{body}");
    let (status, _, _) = call("POST", &url, Some(&opaque)).await;
    assert_eq!(status, 200);
    assert_eq!(idp.introspections(), 1, "the answer is cached");

    let unknown = call("POST", &url, Some("opaque-never-issued")).await;
    assert_eq!(unknown.0, 401);
    assert_eq!(unknown.2, json!({"detail": "Invalid authentication token"}));
    let read_only = idp.issue("asap-client", "asap:read");
    let (status, challenge, body) = call("POST", &url, Some(&read_only)).await;
    assert_eq!(
        (status, body),
        (403, json!({"detail": "Insufficient scope"}))
    );
    assert!(challenge.unwrap().contains("error=\"insufficient_scope\""));

    // JWTs still work next to opaque tokens.
    idp.set_opaque(false);
    let jwt = idp.issue("asap-client", "asap:execute");
    assert_eq!(call("POST", &url, Some(&jwt)).await.0, 200);
    server.stop().await;

    // The provider's introspection endpoint down: 503, as for an unreachable JWKS.
    let dead = TokenIntrospector::new("http://127.0.0.1:9/introspect", "c", "s").unwrap();
    let validator = JwtValidator::introspecting(Arc::new(dead), AGENT, JwtPolicy::default());
    let server = protected(OAuth2::new(validator)).await;
    let (status, _, body) = call("POST", &format!("{}/asap", server.base), Some("tok")).await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "Authentication service unavailable"}))
    );
    server.stop().await;
}

#[tokio::test]
async fn per_route_scopes() {
    let idp = MockIdp::start();
    let oauth = OAuth2::new(jwt_validator(&idp, JwtPolicy::default())).per_route_scopes();
    let server = protected(oauth).await;
    let send = format!("{}/asap", server.base);
    let metrics = format!("{}/asap/metrics", server.base);
    let read = idp.issue("asap-client", "asap:read");
    let execute = idp.issue("asap-client", "asap:execute");
    let admin = idp.issue("asap-client", "asap:admin");

    assert_eq!(call("GET", &metrics, Some(&read)).await.0, 200);
    let (status, challenge, body) = call("POST", &send, Some(&read)).await;
    assert_eq!(
        (status, body),
        (403, json!({"detail": "Insufficient scope"}))
    );
    assert!(challenge.unwrap().contains("scope=\"asap:execute\""));

    assert_eq!(call("POST", &send, Some(&execute)).await.0, 200);
    let (status, challenge, _) = call("GET", &metrics, Some(&execute)).await;
    assert_eq!(status, 403);
    assert!(challenge.unwrap().contains("scope=\"asap:read\""));

    assert_eq!(call("GET", &metrics, Some(&admin)).await.0, 200);
    assert_eq!(call("POST", &send, Some(&admin)).await.0, 200);
    // No token: 401 naming the route's scope.
    let (status, challenge, _) = call("GET", &metrics, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some("Bearer realm=\"asap\", scope=\"asap:read\"")
    );
    // The WebSocket upgrade needs a token too, unless left open as in the reference.
    let ws = format!("{}/asap/ws", server.base);
    assert_eq!(call("GET", &ws, None).await.0, 401);
    assert_eq!(
        call("GET", &ws, Some(&read)).await.0,
        403,
        "the upgrade sends work"
    );
    // The well-known manifest stays public under the default prefix.
    assert_eq!(
        call(
            "GET",
            &format!("{}/.well-known/asap/manifest.json", server.base),
            None
        )
        .await
        .0,
        200
    );
    server.stop().await;

    let open = OAuth2::new(jwt_validator(&idp, JwtPolicy::default())).leave_websocket_open();
    let server = protected(open).await;
    let (status, _, _) = call("GET", &format!("{}/asap/ws", server.base), None).await;
    assert_ne!(status, 401);
    assert_eq!(
        call("POST", &format!("{}/asap", server.base), None).await.0,
        401
    );
    server.stop().await;
}

#[tokio::test]
async fn sender_binding_to_the_authenticated_caller() {
    let idp = MockIdp::start();
    let policy = {
        let mut value = JwtPolicy::default();
        value.subject_map =
            asap_protocol::auth::parse_subject_map(r#"{"urn:asap:agent:caller": "asap-client"}"#)
                .unwrap();
        value
    };
    let server = protected(OAuth2::new(jwt_validator(&idp, policy)).bind_sender()).await;
    let token = idp.issue("asap-client", "asap:execute");
    let client = Client::builder().bearer_token(&token).build().unwrap();
    // The URN the subject map gives the token's subject is the caller's identity.
    client
        .send(&server.base, &request_from("urn:asap:agent:caller"))
        .await
        .unwrap();
    // A subject that is itself an agent URN may send as itself.
    idp.register("urn:asap:agent:robot", "pw");
    let robot = Client::builder()
        .bearer_token(idp.issue("urn:asap:agent:robot", "asap:execute"))
        .build()
        .unwrap();
    robot
        .send(&server.base, &request_from("urn:asap:agent:robot"))
        .await
        .unwrap();
    assert!(
        robot
            .send(&server.base, &request_from("urn:asap:agent:caller"))
            .await
            .is_err()
    );
    let error = client
        .send(&server.base, &request_from("urn:asap:agent:impostor"))
        .await
        .unwrap_err();
    match error {
        ClientError::Remote { code, data, .. } => {
            assert_eq!(code, -32602);
            assert_eq!(
                data,
                Some(
                    json!({"error": "Sender does not match authenticated identity", "status_code": 403})
                )
            );
        }
        other => panic!("{other:?}"),
    }
    server.stop().await;

    // Without the switch, any sender is accepted (the reference's behaviour).
    let server = protected(OAuth2::new(jwt_validator(&idp, JwtPolicy::default()))).await;
    client
        .send(&server.base, &request_from("urn:asap:agent:impostor"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test]
async fn key_rotation_at_the_provider_is_followed() {
    let idp = MockIdp::start();
    let validator = jwt_validator(&idp, JwtPolicy::default());
    let before = idp.issue("asap-client", "asap:execute");
    validator.validate(&before).await.unwrap();
    idp.rotate();
    let after = idp.issue("asap-client", "asap:execute");
    assert_ne!(
        jsonwebtoken::decode_header(&before).unwrap().kid,
        jsonwebtoken::decode_header(&after).unwrap().kid
    );
    validator.validate(&after).await.unwrap();
    assert_eq!(
        idp.jwks_fetches(),
        2,
        "one start-up fetch, one for the new kid"
    );
}

#[tokio::test]
async fn settings_from_the_environment_build_the_protection() {
    use asap_protocol::server::{OAuth2Settings, OAuth2SetupError};
    let idp = MockIdp::start();
    let issuer = idp.issuer();
    let env = |pairs: Vec<(&'static str, String)>| {
        OAuth2Settings::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
    };
    assert!(
        env(vec![]).build(AGENT).await.unwrap().is_none(),
        "nothing configured, nothing protected"
    );
    let bad_map = env(vec![
        ("ASAP_AUTH_ISSUER", issuer.clone()),
        ("ASAP_AUTH_SUBJECT_MAP", "[1]".into()),
    ]);
    assert!(matches!(
        bad_map.build(AGENT).await,
        Err(OAuth2SetupError::SubjectMap(
            asap_protocol::auth::SubjectMapError::NotAnObject
        ))
    ));
    let no_credentials = env(vec![(
        "ASAP_AUTH_INTROSPECTION_URL",
        idp.introspection_url(),
    )]);
    assert!(matches!(
        no_credentials.build(AGENT).await,
        Err(OAuth2SetupError::MissingClientCredentials)
    ));
    let impostor = env(vec![("ASAP_AUTH_ISSUER", format!("{issuer}/tenant"))]);
    assert!(matches!(
        impostor.build(AGENT).await,
        Err(OAuth2SetupError::Discovery(_))
    ));

    // Issuer + client credentials: keys and introspection both discovered; strict and
    // per-route switches applied.
    let settings = env(vec![
        ("ASAP_AUTH_ISSUER", issuer.clone()),
        ("ASAP_AUTH_CLIENT_ID", "asap-client".into()),
        ("ASAP_AUTH_CLIENT_SECRET", "asap-secret".into()),
        ("ASAP_AUTH_AUDIENCE", idp::AUDIENCE.into()),
        ("ASAP_AUTH_STRICT", "yes".into()),
        ("ASAP_AUTH_PER_ROUTE_SCOPES", "1".into()),
    ]);
    let policy = settings.policy().unwrap();
    assert!(policy.require_exp && policy.check_nbf);
    assert_eq!(policy.issuer.as_deref(), Some(issuer.as_str()));
    let server = protected(settings.build(AGENT).await.unwrap().unwrap()).await;
    let url = format!("{}/asap", server.base);
    assert_eq!(
        call(
            "POST",
            &url,
            Some(&idp.issue("asap-client", "asap:execute"))
        )
        .await
        .0,
        200
    );
    idp.set_opaque(true);
    assert_eq!(
        call(
            "POST",
            &url,
            Some(&idp.issue("asap-client", "asap:execute"))
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call("POST", &url, Some(&idp.issue("asap-client", "asap:read")))
            .await
            .0,
        403
    );
    assert_eq!(idp.introspections(), 2);
    server.stop().await;
}
