//! OpenTelemetry export (feature `otel`): the server's and client's `tracing` spans
//! (`asap.request`, `asap.handler.execute`, `asap.client.send`, …) sent over OTLP/HTTP
//! (protobuf) to a collector.
//!
//! Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (to which
//! `/v1/traces` is appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_{,TRACES_}HEADERS`, `_TIMEOUT`, `_COMPRESSION`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, and the
//! batch processor's `OTEL_BSP_*`. [`enabled_by_env`] is the reference's switch:
//! `OTEL_TRACES_EXPORTER=otlp` (default `none`), unless `OTEL_SDK_DISABLED=true`.
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! # fn run() -> Result<(), asap_protocol::telemetry::TelemetryError> {
//! let (layer, guard) = asap_protocol::telemetry::otlp_layer("urn:asap:agent:me")?;
//! tracing_subscriber::registry().with(layer).init();
//! // … serve …
//! guard.shutdown();
//! # Ok(()) }
//! ```

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};
use tracing_subscriber::registry::LookupSpan;

use crate::trace_context::{TraceContext, TraceParent};

/// The instrumentation scope's name, as the reference's tracer (`asap.protocol`).
pub const TRACER_NAME: &str = "asap.protocol";

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` (or `_TRACES_PROTOCOL`) asks for gRPC, which this
    /// build does not include.
    #[error("{variable}={value}: only OTLP over HTTP (http/protobuf) is supported")]
    UnsupportedProtocol {
        /// The variable that asked for it.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// The exporter could not be built (an invalid endpoint, header or timeout).
    #[error("OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Whether the environment asks for OTLP export: `OTEL_TRACES_EXPORTER=otlp` (the
/// reference's default is `none`) and not `OTEL_SDK_DISABLED=true`.
pub fn enabled_by_env() -> bool {
    let disabled =
        std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let exporter = std::env::var("OTEL_TRACES_EXPORTER").unwrap_or_default();
    !disabled
        && exporter
            .split(',')
            .any(|e| e.trim().eq_ignore_ascii_case("otlp"))
}

/// Keeps the tracer provider alive; [`OtelGuard::shutdown`] (or dropping it) exports
/// what is still queued.
#[derive(Debug)]
pub struct OtelGuard {
    provider: SdkTracerProvider,
}

impl OtelGuard {
    /// Exports every finished span still queued, waiting for the collector's answer.
    pub fn flush(&self) {
        if let Err(error) = self.provider.force_flush() {
            tracing::warn!(%error, "OTLP flush failed");
        }
    }

    /// Flushes and stops the exporter.
    pub fn shutdown(self) {
        // Drop does it.
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::debug!(%error, "OTLP shutdown");
        }
    }
}

/// A `tracing` layer exporting spans over OTLP/HTTP, configured from the environment
/// (module docs), with `service.name` = `service_name` unless `OTEL_SERVICE_NAME` says
/// otherwise (the reference always uses the manifest id; an operator's variable wins
/// here). Spans are batched and exported from a background thread.
pub fn otlp_layer<S>(
    service_name: &str,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    otlp_layer_to(service_name, None)
}

/// [`otlp_layer`] exporting to `traces_endpoint` (the full URL, `…/v1/traces`) when
/// given, whatever the environment says.
pub fn otlp_layer_to<S>(
    service_name: &str,
    traces_endpoint: Option<&str>,
) -> Result<(OpenTelemetryLayer<S, SdkTracer>, OtelGuard), TelemetryError>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span>,
{
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Ok(value) = std::env::var(variable)
            && value.trim().starts_with("grpc")
        {
            return Err(TelemetryError::UnsupportedProtocol { variable, value });
        }
    }
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http();
    if let Some(endpoint) = traces_endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build()?;
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer(TRACER_NAME);
    // No per-span source location, thread, target or busy/idle attributes: they cost
    // a clock reading on every poll of an instrumented future and bloat every export
    // (bench/otel.sh), and say nothing the span name does not.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false);
    Ok((layer, OtelGuard { provider }))
}

/// The current `tracing` span's OpenTelemetry context, when it has a valid one (an
/// OpenTelemetry layer is installed and the span is recorded by it).
pub(crate) fn current_span_context() -> Option<TraceContext> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let ids = span.span_context();
    if !ids.is_valid() {
        return None;
    }
    let state = ids.trace_state().header();
    Some(TraceContext {
        parent: TraceParent {
            trace_id: u128::from_be_bytes(ids.trace_id().to_bytes()),
            span_id: u64::from_be_bytes(ids.span_id().to_bytes()),
            flags: ids.trace_flags().to_u8(),
        },
        state: (!state.is_empty()).then_some(state),
    })
}

/// Makes the remote `parent` (a `traceparent`, or an envelope's `trace_id` and
/// `extensions.span_id`) the OpenTelemetry parent of `span`, which must not have been
/// entered yet.
pub(crate) fn set_remote_parent(span: &tracing::Span, parent: &TraceContext) {
    let state = parent
        .state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let ids = SpanContext::new(
        TraceId::from_bytes(parent.parent.trace_id.to_be_bytes()),
        SpanId::from_bytes(parent.parent.span_id.to_be_bytes()),
        TraceFlags::new(parent.parent.flags),
        true,
        state,
    );
    let context = opentelemetry::Context::new().with_remote_span_context(ids);
    let _ = span.set_parent(context);
}
