//! Secrets never appear in `Debug` output (logs, panics, `{:?}` in user code).

use std::time::Instant;

use asap_protocol::auth::AccessToken;
use asap_protocol::server::{OAuth2Settings, StaticTokens};
use asap_protocol::webhook::Webhook;

fn assert_hidden(debug: String, secrets: &[&str]) {
    for secret in secrets {
        assert!(!debug.contains(secret), "{secret} leaked: {debug}");
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let token = AccessToken {
        secret: "access-s3cret".into(),
        token_type: "Bearer".into(),
        expires_at: Instant::now(),
        refresh_token: Some("refresh-s3cret".into()),
    };
    let debug = format!("{token:?}");
    assert_hidden(debug.clone(), &["access-s3cret", "refresh-s3cret"]);
    assert!(
        debug.contains("[redacted]") && debug.contains("Bearer"),
        "{debug}"
    );

    let hook = Webhook::signed(
        "https://hooks.example/x",
        serde_json::json!({"a": 1}),
        "hook-s3cret",
    );
    let debug = format!("{hook:?}");
    assert_hidden(debug.clone(), &["hook-s3cret", "104, 111, 111, 107"]);
    assert!(debug.contains("https://hooks.example/x"), "{debug}");

    let settings = {
        let mut value = OAuth2Settings::default();
        value.client_id = Some("agent".into());
        value.client_secret = Some("client-s3cret".into());
        value
    };
    assert_hidden(format!("{settings:?}"), &["client-s3cret"]);

    let builder = asap_protocol::client::Client::builder().bearer_token("builder-s3cret");
    assert_hidden(format!("{builder:?}"), &["builder-s3cret"]);
    let mut with_header = Webhook::signed("https://hooks.example/x", serde_json::json!({}), "s");
    with_header
        .headers
        .push(("Authorization".into(), "Bearer header-s3cret".into()));
    assert_hidden(format!("{with_header:?}"), &["header-s3cret"]);

    let tokens = StaticTokens::new([("bearer-s3cret", "urn:asap:agent:a")]);
    let debug = format!("{tokens:?}");
    assert_hidden(debug.clone(), &["bearer-s3cret"]);
    assert!(debug.contains("urn:asap:agent:a"), "{debug}");
}
