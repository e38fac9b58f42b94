//! OAuth2 client credentials against a scripted token endpoint.

use std::sync::Arc;
use std::time::Duration;

use asap_protocol::auth::{ClientAuth, ClientCredentials, TokenError};
use serde_json::json;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn token_body(token: &str, expires_in: u64) -> serde_json::Value {
    json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
}

#[tokio::test]
async fn basic_auth_scopes_and_caching() {
    let idp = MockServer::start().await;
    // base64("my-client:s3cr3t") — unreserved characters, so encoded and raw forms agree.
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(header("authorization", "Basic bXktY2xpZW50OnMzY3IzdA=="))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("scope=asap%3Aexecute+asap%3Aread"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("tok-1", 3600)))
        .mount(&idp)
        .await;
    let source = Arc::new(
        ClientCredentials::new(format!("{}/token", idp.uri()), "my-client", "s3cr3t")
            .unwrap()
            .scopes(["asap:execute", "asap:read"]),
    );
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let source = source.clone();
        callers.spawn(async move { source.token().await });
    }
    while let Some(token) = callers.join_next().await {
        let token = token.unwrap().unwrap();
        assert_eq!(
            (
                token.secret.as_str(),
                token.token_type.to_lowercase().as_str()
            ),
            ("tok-1", "bearer")
        );
    }
    assert_eq!(
        idp.received_requests().await.unwrap().len(),
        1,
        "one request for ten concurrent callers"
    );
    source.invalidate().await;
    source.token().await.unwrap();
    assert_eq!(idp.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn client_secret_post_and_early_refresh() {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_string_contains("client_id=my-client"))
        .and(body_string_contains("client_secret=s3cr3t"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("short", 20)))
        .mount(&idp)
        .await;
    let source = ClientCredentials::new(format!("{}/token", idp.uri()), "my-client", "s3cr3t")
        .unwrap()
        .client_auth(ClientAuth::Post);
    source.token().await.unwrap();
    // Expires in 20 s, inside the 30 s refresh margin: every call refreshes.
    source.token().await.unwrap();
    assert_eq!(idp.received_requests().await.unwrap().len(), 2);
    let relaxed = ClientCredentials::new(format!("{}/token", idp.uri()), "my-client", "s3cr3t")
        .unwrap()
        .client_auth(ClientAuth::Post)
        .refresh_margin(Duration::from_secs(5));
    relaxed.token().await.unwrap();
    relaxed.token().await.unwrap();
    assert_eq!(idp.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn provider_errors() {
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"error": "invalid_client", "error_description": "bad secret"}),
            ),
        )
        .mount(&idp)
        .await;
    let source = ClientCredentials::new(format!("{}/token", idp.uri()), "c", "wrong").unwrap();
    let error = source.token().await.unwrap_err();
    assert!(
        error.to_string().contains("invalid_client: bad secret"),
        "{error}"
    );
    assert_eq!(
        idp.received_requests().await.unwrap().len(),
        1,
        "OAuth errors are not retried"
    );

    // No answer: a request failure whose source chain reaches reqwest's error.
    let unreachable = ClientCredentials::new("http://127.0.0.1:9/token", "c", "s")
        .unwrap()
        .attempts(2);
    let error = unreachable.token().await.unwrap_err();
    assert!(matches!(error, TokenError::Request(_)), "{error:?}");
    let mut cause = std::error::Error::source(&error);
    let mut reached_reqwest = false;
    while let Some(e) = cause {
        reached_reqwest |= e.downcast_ref::<reqwest::Error>().is_some();
        cause = e.source();
    }
    assert!(reached_reqwest, "{error:?}");
    // A token URL that does not parse keeps the parser's error as its source.
    let error = ClientCredentials::new("not a url", "c", "s")
        .unwrap()
        .token()
        .await
        .unwrap_err();
    let TokenError::BadUrl { what, source } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(*what, "token URL");
    assert_eq!(*source, url::ParseError::RelativeUrlWithoutBase);
    assert_eq!(error.to_string(), "OAuth2: bad token URL");
}

#[tokio::test]
async fn the_http_client_attaches_tokens_from_a_source() {
    use asap_protocol::client::Client;
    use asap_protocol::model::{Envelope, Model, TaskRequest, TaskResponse, TaskStatus};
    let idp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(token_body("fresh-token", 3600)))
        .mount(&idp)
        .await;
    let agent = MockServer::start().await;
    let reply = Envelope::new(
        "urn:asap:agent:b",
        "urn:asap:agent:a",
        TaskResponse::new("t", TaskStatus::Completed),
    )
    .with_correlation_id("x");
    Mock::given(method("POST"))
        .and(path("/asap"))
        .and(header("authorization", "Bearer fresh-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"jsonrpc": "2.0", "result": {"envelope": reply.to_value()}, "id": "req-1"}),
        ))
        .mount(&agent)
        .await;
    let source =
        Arc::new(ClientCredentials::new(format!("{}/token", idp.uri()), "c", "s").unwrap());
    let client = Client::builder().token_source(source).build().unwrap();
    let request = Envelope::new(
        "urn:asap:agent:a",
        "urn:asap:agent:b",
        TaskRequest::new("c", "echo", json!({})),
    );
    client.send(&agent.uri(), &request).await.unwrap();
}

#[tokio::test]
async fn introspection_answers_are_cached_by_lifetime() {
    use asap_protocol::auth::TokenIntrospector;
    let idp = MockServer::start().await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(header("authorization", "Basic cnMtY2xpZW50OnJzLXNlY3JldA=="))
        .and(body_string_contains("token=opaque-abc"))
        .and(body_string_contains("token_type_hint=access_token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": true, "sub": "client-7", "scope": "asap:execute asap:read", "exp": exp, "client_id": "c7"})))
        .mount(&idp)
        .await;
    Mock::given(method("POST"))
        .and(path("/introspect"))
        .and(body_string_contains("token=revoked"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"active": "true"})))
        .mount(&idp)
        .await;
    let introspector = TokenIntrospector::new(
        format!("{}/introspect", idp.uri()),
        "rs-client",
        "rs-secret",
    )
    .unwrap();
    let info = introspector
        .introspect("opaque-abc")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(info.subject.as_deref(), Some("client-7"));
    assert_eq!(info.scopes, ["asap:execute", "asap:read"]);
    assert_eq!(info.expires_at, Some(exp as i64));
    assert_eq!(info.client_id.as_deref(), Some("c7"));
    introspector.introspect("opaque-abc").await.unwrap();
    assert!(
        introspector.introspect("revoked").await.unwrap().is_none(),
        "only the JSON boolean true is active"
    );
    introspector.introspect("revoked").await.unwrap();
    assert_eq!(
        idp.received_requests().await.unwrap().len(),
        2,
        "both answers cached"
    );
    let broken = TokenIntrospector::new("http://127.0.0.1:9/introspect", "c", "s").unwrap();
    assert!(broken.introspect("x").await.is_err());
}

/// A token source that fails: the client's error keeps the source's error.
#[tokio::test]
async fn a_failing_token_source_is_the_clients_error_source() {
    use asap_protocol::client::{Client, ClientError, TokenSource};
    use asap_protocol::model::{Envelope, TaskRequest};

    #[derive(Debug, thiserror::Error)]
    #[error("the vault is sealed")]
    struct Sealed;

    struct Vault;

    #[async_trait::async_trait]
    impl TokenSource for Vault {
        async fn bearer_token(&self) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
            Err(Box::new(Sealed))
        }
    }

    let client = Client::builder()
        .token_source(Arc::new(Vault))
        .build()
        .unwrap();
    let envelope = Envelope::new(
        "urn:asap:agent:a",
        "urn:asap:agent:b",
        TaskRequest::new("c", "echo", json!({})),
    );
    let error = client
        .send("http://127.0.0.1:9", &envelope)
        .await
        .unwrap_err();
    let ClientError::NoToken(source) = &error else {
        panic!("{error:?}")
    };
    assert!(source.downcast_ref::<Sealed>().is_some());
    assert_eq!(error.to_string(), "invalid request: no access token");
}

#[tokio::test]
async fn a_huge_token_endpoint_answer_is_refused_without_being_read_whole() {
    let idp = MockServer::start().await;
    let padding = "p".repeat(200 * 1024);
    let mut huge = token_body("tok-big", 3600);
    huge["padding"] = json!(padding);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&huge))
        .mount(&idp)
        .await;
    let url = format!("{}/token", idp.uri());
    // 200 KiB is over the 64 KiB default.
    let capped = ClientCredentials::new(url.clone(), "c", "s")
        .unwrap()
        .attempts(1);
    let error = capped.token().await.unwrap_err();
    let TokenError::Request(oauth2::RequestTokenError::Request(http)) = &error else {
        panic!("{error:?}")
    };
    assert!(
        matches!(
            http,
            asap_protocol::auth::TokenHttpError::TooLarge { limit: 65_536 }
        ),
        "{http:?}"
    );
    // The limit is the caller's to raise.
    let raised = ClientCredentials::new(url, "c", "s")
        .unwrap()
        .max_response_size(1024 * 1024);
    assert_eq!(raised.token().await.unwrap().secret, "tok-big");
}
