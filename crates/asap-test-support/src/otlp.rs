//! An OTLP/HTTP trace receiver for the OpenTelemetry tests: `POST /v1/traces` decoded
//! (protobuf), every exported span sent down a channel with its resource's
//! `service.name`.

use std::sync::mpsc;

use axum::body::Bytes;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

/// An exported span with its service's name.
pub struct Exported {
    /// The resource's `service.name`.
    pub service: String,
    /// The span as exported.
    pub span: Span,
}

impl Exported {
    /// The span attribute `key` as text (strings as they are, other values printed).
    pub fn attribute(&self, key: &str) -> Option<String> {
        let value = self.span.attributes.iter().find(|a| a.key == key)?;
        Some(text(value.value.as_ref()?.value.as_ref()?))
    }
}

fn text(value: &AnyValue) -> String {
    match value {
        AnyValue::StringValue(s) => s.clone(),
        AnyValue::IntValue(i) => i.to_string(),
        AnyValue::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// Starts the receiver on a loopback port, on its own thread (so an exporter's blocking
/// flush can wait for it). Returns its base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT`
/// names; traces go to `{base}/v1/traces`) and the spans as they arrive.
pub fn receiver() -> (String, mpsc::Receiver<Exported>) {
    let (tx, rx) = mpsc::channel();
    let (addr_tx, addr_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the receiver");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            addr_tx
                .send(listener.local_addr().expect("a bound address"))
                .expect("the test waits for the address");
            let export = move |body: Bytes| {
                let tx = tx.clone();
                async move {
                    let request =
                        ExportTraceServiceRequest::decode(body).expect("an OTLP trace export");
                    for resource in request.resource_spans {
                        let service = resource
                            .resource
                            .iter()
                            .flat_map(|r| &r.attributes)
                            .find(|a| a.key == "service.name")
                            .and_then(|a| a.value.as_ref()?.value.as_ref())
                            .map(text)
                            .unwrap_or_default();
                        for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                            let service = service.clone();
                            let _ = tx.send(Exported { service, span });
                        }
                    }
                    (
                        [("content-type", "application/x-protobuf")],
                        ExportTraceServiceResponse::default().encode_to_vec(),
                    )
                }
            };
            let app = axum::Router::new().route("/v1/traces", post(export));
            axum::serve(listener, app)
                .await
                .expect("the receiver serves");
        });
    });
    let addr = addr_rx.recv().expect("the receiver's address");
    (format!("http://{addr}"), rx)
}
