//! OAuth2 bearer JWT protection of a real server, against a JWKS served locally:
//! the reference's behaviour by default, the strict switches, and an attack corpus.

mod common;
use asap_test_support::idp;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use asap_protocol::auth::{JwksCache, JwtPolicy, JwtValidator};
use asap_protocol::server::{OAuth2, Server};
use asap_test_support::fixture;
use common::{AGENT, echo_request, get, manifest};
use idp::MockIdp;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(alg: Algorithm, key_file: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(key_file)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&fixture(key_file)).unwrap(),
    };
    encode(&header, claims, &key).unwrap()
}

fn rsa(claims: &Value) -> String {
    sign(
        Algorithm::RS256,
        "test-rsa-1.pem",
        Some("test-rsa-1"),
        claims,
    )
}

fn good_claims() -> Value {
    json!({"sub": "client-1", "scope": "asap:execute asap:read", "exp": now() + 600})
}

struct Protected {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn protected(idp: &MockIdp, policy: JwtPolicy) -> Protected {
    let validator = JwtValidator::new(
        Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()),
        AGENT,
        policy,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = asap_protocol::server::ServerConfig::default();
    config.rate_limits.clear();
    let server = Server::builder()
        .manifest(manifest(&base))
        .config(config)
        .oauth2(OAuth2::new(validator))
        .build()
        .unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = rx.await;
    }));
    Protected { base, stop }
}

async fn call(base: &str, authorization: Option<&str>) -> (u16, Value, Option<String>) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/asap"))
        .json(&echo_request(json!({})));
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        challenge,
    )
}

fn scoped() -> JwtPolicy {
    {
        let mut value = JwtPolicy::default();
        value.required_scope = Some("asap:execute".into());
        value
    }
}

#[tokio::test]
async fn reference_behaviour_by_default() {
    let idp = MockIdp::start();
    let server = protected(&idp, scoped()).await;
    let (status, body, challenge) = call(&server.base, None).await;
    assert_eq!(
        (status, body, challenge.as_deref()),
        (
            401,
            json!({"detail": "Authentication required"}),
            Some(r#"Bearer realm="asap", scope="asap:execute""#)
        )
    );
    let token = rsa(&good_claims());
    let (status, _, _) = call(&server.base, Some(&format!("bearer {token}"))).await;
    assert_eq!(status, 401, "the scheme must be exactly `Bearer `");
    let (status, body, _) = call(&server.base, Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["result"].is_object());
    // Scope as a list; ES256 keys; tokens without exp; iss/aud/nbf not checked.
    for claims in [
        json!({"sub": "c", "scope": ["asap:execute"]}),
        json!({"sub": "c", "scope": "asap:execute", "iss": "https://elsewhere", "aud": "other", "nbf": now() + 3600}),
    ] {
        assert_eq!(
            call(&server.base, Some(&format!("Bearer {}", rsa(&claims))))
                .await
                .0,
            200,
            "{claims}"
        );
    }
    let es = sign(
        Algorithm::ES256,
        "test-ec.pem",
        Some("test-ec"),
        &good_claims(),
    );
    assert_eq!(
        call(&server.base, Some(&format!("Bearer {es}"))).await.0,
        200
    );
    let no_kid = sign(Algorithm::RS256, "test-rsa-1.pem", None, &good_claims());
    assert_eq!(
        call(&server.base, Some(&format!("Bearer {no_kid}")))
            .await
            .0,
        200
    );
    // Scope missing, or only in `scp`: 403, with the RFC 6750 challenge.
    for claims in [
        json!({"sub": "c", "scope": "asap:read"}),
        json!({"sub": "c", "scp": "asap:execute"}),
    ] {
        let (status, body, challenge) =
            call(&server.base, Some(&format!("Bearer {}", rsa(&claims)))).await;
        assert_eq!(
            (status, body),
            (403, json!({"detail": "Insufficient scope"}))
        );
        let expected = r#"Bearer realm="asap", error="insufficient_scope", error_description="Insufficient scope", scope="asap:execute""#;
        assert_eq!(challenge.as_deref(), Some(expected));
    }
    let (_, _, challenge) = call(&server.base, Some("Bearer garbage")).await;
    assert!(challenge.unwrap().contains(r#"error="invalid_token""#));
    // Identity binding.
    let claim = "https://github.com/adriannoes/asap-protocol/agent_id";
    let mismatch =
        rsa(&json!({"sub": "c", "scope": "asap:execute", claim: "urn:asap:agent:other"}));
    let (status, body, _) = call(&server.base, Some(&format!("Bearer {mismatch}"))).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["detail"],
        format!(
            "Identity mismatch: custom claim does not match agent manifest (expected: {AGENT})"
        )
    );
    let matching = rsa(&json!({"sub": "c", "scope": "asap:execute", claim: AGENT}));
    assert_eq!(
        call(&server.base, Some(&format!("Bearer {matching}")))
            .await
            .0,
        200
    );
    // /asap/metrics is under the prefix; the well-known routes are not.
    assert_eq!(get(&server.base, "/asap/metrics", &[]).await.status, 401);
    assert_eq!(
        get(&server.base, "/.well-known/asap/manifest.json", &[])
            .await
            .status,
        200
    );
    assert_eq!(get(&server.base, "/health", &[]).await.status, 200);
    let _ = server.stop.send(());
}

#[tokio::test]
async fn strict_switches() {
    let idp = MockIdp::start();
    let policy = {
        let mut value = JwtPolicy::strict("https://idp.test", "urn:asap:agent:test-server");
        value.required_scope = Some("asap:execute".into());
        value
    };
    let server = protected(&idp, policy).await;
    let base = json!({"sub": "c", "scope": "asap:execute", "iss": "https://idp.test", "aud": "urn:asap:agent:test-server", "exp": now() + 600});
    assert_eq!(
        call(&server.base, Some(&format!("Bearer {}", rsa(&base))))
            .await
            .0,
        200
    );
    let mut cases = Vec::new();
    for (member, value) in [
        ("exp", Value::Null),
        ("iss", json!("https://evil.test")),
        ("aud", json!("someone-else")),
        ("nbf", json!(now() + 3600)),
    ] {
        let mut claims = base.clone();
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(member);
        } else {
            claims[member] = value;
        }
        cases.push((member, claims));
    }
    for (member, claims) in cases {
        let (status, body, _) = call(&server.base, Some(&format!("Bearer {}", rsa(&claims)))).await;
        assert_eq!(
            (status, body),
            (401, json!({"detail": "Invalid authentication token"})),
            "{member}"
        );
    }
    let _ = server.stop.send(());
}

#[tokio::test]
async fn attack_corpus_gets_401() {
    let idp = MockIdp::start();
    let server = protected(&idp, scoped()).await;
    let good = rsa(&good_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let b64 = |v: &Value| base64url(serde_json::to_vec(v).unwrap());
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        parts[1]
    );
    let hs_with_public_key = {
        let header = Header {
            kid: Some("test-rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        };
        encode(
            &header,
            &good_claims(),
            &EncodingKey::from_secret(&fixture("test-rsa-1.pub.pem")),
        )
        .unwrap()
    };
    let unknown_key = sign(
        Algorithm::RS256,
        "test-rsa-2.pem",
        Some("test-rsa-1"),
        &good_claims(),
    );
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&json!({"sub": "admin", "scope": "asap:execute asap:admin"})),
        parts[2]
    );
    let expired = rsa(&json!({"sub": "c", "scope": "asap:execute", "exp": now() - 10}));
    let no_sub = rsa(&json!({"scope": "asap:execute", "exp": now() + 600}));
    let path_kid = sign(
        Algorithm::RS256,
        "test-rsa-1.pem",
        Some("../../etc/passwd"),
        &good_claims(),
    );
    let sql_kid = sign(
        Algorithm::RS256,
        "test-rsa-1.pem",
        Some("x' OR '1'='1"),
        &good_claims(),
    );
    let huge = rsa(&json!({"sub": "c", "scope": "asap:execute", "pad": "A".repeat(100_000)}));
    for (name, token) in [
        ("alg none", alg_none),
        ("HS256 signed with the RSA public key", hs_with_public_key),
        ("valid signature from an unknown key", unknown_key),
        ("tampered payload", tampered),
        ("expired", expired),
        ("no sub", no_sub),
        ("kid with path characters", path_kid),
        ("kid with SQL characters", sql_kid),
        ("100 KB token", huge),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        let (status, body, _) = call(&server.base, Some(&format!("Bearer {token}"))).await;
        assert_eq!(
            (status, body),
            (401, json!({"detail": "Invalid authentication token"})),
            "{name}"
        );
    }
    // A token in the query string is not a token.
    let response = reqwest::Client::new()
        .post(format!("{}/asap?access_token={good}", server.base))
        .json(&echo_request(json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let _ = server.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_kids_cause_a_bounded_number_of_jwks_fetches() {
    let idp = MockIdp::start();
    let jwks = Arc::new(JwksCache::new(idp.jwks_uri()).unwrap());
    let validator = Arc::new(JwtValidator::new(jwks.clone(), AGENT, scoped()));
    let good = rsa(&good_claims());
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut burst = tokio::task::JoinSet::new();
    for i in 0..10_000u32 {
        let header = base64url(
            serde_json::to_vec(
                &json!({"alg": "RS256", "typ": "JWT", "kid": format!("random-{i}")}),
            )
            .unwrap(),
        );
        let token = format!("{header}.{}.{}", parts[1], parts[2]);
        let validator = validator.clone();
        burst.spawn(async move { validator.validate(&token).await });
    }
    while let Some(result) = burst.join_next().await {
        assert!(matches!(
            result.unwrap(),
            Err(asap_protocol::auth::AuthError::InvalidToken { .. })
        ));
    }
    let fetches = jwks.fetch_count();
    assert!(
        fetches <= 2,
        "{fetches} JWKS fetches for 10,000 tokens with unknown keys"
    );
    // The real key still works.
    validator.validate(&good).await.unwrap();
}

#[tokio::test]
async fn key_rotation_and_provider_outage() {
    let idp = MockIdp::start();
    let jwks = Arc::new(
        JwksCache::new(idp.jwks_uri())
            .unwrap()
            .min_refetch(std::time::Duration::ZERO),
    );
    let validator = JwtValidator::new(jwks.clone(), AGENT, scoped());
    validator.validate(&rsa(&good_claims())).await.unwrap();
    let rotated_token = sign(
        Algorithm::RS256,
        "test-rsa-2.pem",
        Some("test-rsa-2"),
        &good_claims(),
    );
    assert!(
        validator.validate(&rotated_token).await.is_err(),
        "not published yet"
    );
    idp.rotate();
    let claims = validator.validate(&rotated_token).await.unwrap();
    assert_eq!(claims.subject, "client-1");
    assert_eq!(claims.scopes, ["asap:execute", "asap:read"]);

    let idp2 = MockIdp::start();
    idp2.set_down(true);
    let server = protected(&idp2, scoped()).await;
    let (status, body, _) = call(
        &server.base,
        Some(&format!("Bearer {}", rsa(&good_claims()))),
    )
    .await;
    assert_eq!(
        (status, body),
        (503, json!({"detail": "Authentication service unavailable"}))
    );
    let _ = server.stop.send(());
}

fn base64url(bytes: Vec<u8>) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn oidc_discovery_finds_the_keys_and_checks_the_issuer() {
    use asap_protocol::auth::{OidcDiscovery, OidcError};
    let idp = MockIdp::start();
    let issuer = idp.issuer();
    let discovery = OidcDiscovery::new(format!("{issuer}/")).unwrap();
    assert_eq!(
        discovery.url(),
        format!("{issuer}/.well-known/openid-configuration")
    );
    let config = discovery.config().await.unwrap();
    assert_eq!(config.jwks_uri, idp.jwks_uri());
    assert_eq!(config.token_endpoint, format!("{issuer}/token"));
    let validator = JwtValidator::new(
        Arc::new(JwksCache::new(&config.jwks_uri).unwrap()),
        AGENT,
        scoped(),
    );
    validator.validate(&rsa(&good_claims())).await.unwrap();
    let impostor = OidcDiscovery::new(format!("{issuer}/tenant")).unwrap();
    assert!(matches!(
        impostor.config().await,
        Err(OidcError::IssuerMismatch { .. })
    ));
    let nowhere = OidcDiscovery::new("http://127.0.0.1:9").unwrap();
    assert!(matches!(
        nowhere.config().await,
        Err(OidcError::Fetch { .. })
    ));
}

#[tokio::test]
async fn subject_map_decision_table() {
    let idp = MockIdp::start();
    let map =
        asap_protocol::auth::parse_subject_map(&format!(r#"{{"{AGENT}": ["client-1"]}}"#)).unwrap();
    let lenient = JwtValidator::new(Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()), AGENT, {
        let mut value = scoped();
        value.subject_map = map.clone();
        value
    });
    let strict = JwtValidator::new(Arc::new(JwksCache::new(idp.jwks_uri()).unwrap()), AGENT, {
        let mut value = scoped();
        value.subject_map = map;
        value.strict_subjects = true;
        value
    });
    let listed = rsa(&good_claims());
    let unlisted = rsa(&json!({"sub": "stranger", "scope": "asap:execute"}));
    // The reference's table: without the custom claim, everything is accepted.
    lenient.validate(&listed).await.unwrap();
    lenient.validate(&unlisted).await.unwrap();
    // Strict: an unmapped subject is refused; a mapped one passes.
    strict.validate(&listed).await.unwrap();
    assert!(matches!(
        strict.validate(&unlisted).await,
        Err(asap_protocol::auth::AuthError::IdentityMismatch { .. })
    ));
    assert!(asap_protocol::auth::parse_subject_map("[]").is_err());
    assert!(asap_protocol::auth::parse_subject_map("{").is_err());
}

/// The validator's clock (for `exp` and its memory of verified tokens) is tokio's: once
/// the first check has fetched the keys, paused time moves past `exp` without waiting.
#[tokio::test]
async fn remembered_tokens_still_expire() {
    let idp = MockIdp::start();
    let jwks = Arc::new(JwksCache::new(idp.jwks_uri()).unwrap());
    let validator = JwtValidator::new(jwks.clone(), AGENT, scoped());
    let short = rsa(&json!({"sub": "c", "scope": "asap:execute", "exp": now() + 2}));
    validator.validate(&short).await.unwrap();
    tokio::time::pause();
    validator.validate(&short).await.unwrap();
    tokio::time::advance(std::time::Duration::from_secs(3)).await;
    let expired = validator.validate(&short).await;
    assert!(
        matches!(
            &expired,
            Err(asap_protocol::auth::AuthError::InvalidToken { reason, .. }) if *reason == "token expired"
        ),
        "{expired:?}"
    );
    assert_eq!(jwks.fetch_count(), 1, "the keys came from the cache");
}

#[tokio::test]
async fn a_rotation_right_after_start_up_is_picked_up_with_the_default_throttle() {
    let idp = MockIdp::start();
    let jwks = Arc::new(JwksCache::new(idp.jwks_uri()).unwrap());
    let validator = JwtValidator::new(jwks.clone(), AGENT, scoped());
    validator.validate(&rsa(&good_claims())).await.unwrap();
    assert_eq!(jwks.fetch_count(), 1);
    idp.rotate();
    let rotated = sign(
        Algorithm::RS256,
        "test-rsa-2.pem",
        Some("test-rsa-2"),
        &good_claims(),
    );
    validator.validate(&rotated).await.unwrap();
    assert_eq!(jwks.fetch_count(), 2);
    // A second unknown key within the throttle interval causes no fetch.
    let unknown = sign(
        Algorithm::RS256,
        "test-rsa-2.pem",
        Some("never-published"),
        &good_claims(),
    );
    assert!(validator.validate(&unknown).await.is_err());
    assert_eq!(jwks.fetch_count(), 2);
}
