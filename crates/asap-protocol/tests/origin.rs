//! Cross-site requests: a browser page on a foreign origin can neither run a task nor
//! open the WebSocket; requests without `Origin` (non-browser clients, the reference's)
//! are answered as before, `text/plain` bodies included.

mod common;

use asap_protocol::server::{AllowedOrigins, ServerConfig};
use common::{AGENT, Options, start};

const TASK: &str = r#"{"jsonrpc":"2.0","method":"asap.send","id":"1","params":{"envelope":{"asap_version":"0.1","sender":"urn:asap:agent:page","recipient":"AGENT","payload_type":"task.request","payload":{"conversation_id":"c","skill_id":"echo","input":{}}}}}"#;

async fn post(base: &str, origin: Option<&str>) -> u16 {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/asap"))
        .header("content-type", "text/plain")
        .body(TASK.replace("AGENT", AGENT));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap().status().as_u16()
}

async fn upgrade(addr: std::net::SocketAddr, origin: &str) -> Result<(), u16> {
    let mut handshake =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            format!("ws://{addr}/asap/ws").as_str(),
        )
        .unwrap();
    handshake
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(handshake).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("{other}"),
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_and_clients_without_origin_are_not() {
    let config = {
        let mut value = ServerConfig::default();
        value.allowed_origins = AllowedOrigins::new(["https://console.example"]);
        value
    };
    let server = start(Options {
        config,
        ..Options::default()
    })
    .await;
    let own = format!("http://{}", server.addr);
    assert_eq!(
        post(&server.base, None).await,
        200,
        "no Origin: as the reference"
    );
    assert_eq!(post(&server.base, Some(&own)).await, 200, "same origin");
    assert_eq!(
        post(&server.base, Some("https://console.example")).await,
        200
    );
    assert_eq!(post(&server.base, Some("http://evil.example")).await, 403);
    assert_eq!(post(&server.base, Some("null")).await, 403);
    // DNS rebinding: the attacker's name in Host and Origin alike is still foreign.
    let port = server.addr.port();
    let rebound = reqwest::Client::new()
        .post(format!("{}/asap", server.base))
        .header("host", format!("rebind.attacker:{port}"))
        .header("origin", format!("http://rebind.attacker:{port}"))
        .header("content-type", "text/plain")
        .body(TASK.replace("AGENT", AGENT))
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status().as_u16(), 403);
    assert_eq!(upgrade(server.addr, "http://evil.example").await, Err(403));
    assert_eq!(upgrade(server.addr, &own).await, Ok(()));
    server.stop().await;
}
