//! OpenTelemetry export (feature `otel`): the server's and client's spans
//! (`asap.request`, `asap.handler.execute`, `asap.client.send`, `asap.store`) sent over
//! OTLP/HTTP (protobuf) to a collector.
//!
//! [`init_otlp`] builds a tracer provider with a batch exporter and makes it the global
//! one, which servers, clients and stores built afterwards record into (an application
//! may instead install a provider of its own with [`set_tracer_provider`]; without
//! either, no OpenTelemetry span is made at all). The spans are made with the
//! OpenTelemetry API directly, not bridged from `tracing` (the bridge cost about 20 % of
//! the requests per second, bench/RESULTS.md); the `tracing` spans of the same names
//! are for logs.
//!
//! Configured by the standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (to which
//! `/v1/traces` is appended) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_{,TRACES_}HEADERS`, `_TIMEOUT`, `_COMPRESSION`,
//! `OTEL_TRACES_SAMPLER`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, and the
//! batch processor's `OTEL_BSP_*`. [`enabled_by_env`] is the reference's switch:
//! `OTEL_TRACES_EXPORTER=otlp` (default `none`), unless `OTEL_SDK_DISABLED=true`.
//!
//! ```no_run
//! # fn run() -> Result<(), asap_protocol::telemetry::TelemetryError> {
//! let guard = asap_protocol::telemetry::init_otlp("urn:asap:agent:me")?;
//! // … build and run the server …
//! guard.shutdown();
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

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

/// Exports spans over OTLP/HTTP, configured from the environment (module docs), with
/// `service.name` = `service_name` unless `OTEL_SERVICE_NAME` says otherwise (the
/// reference always uses the manifest id; an operator's variable wins here): builds the
/// tracer provider and makes it the global one. Spans are batched and exported from a
/// background thread; servers, clients and stores built after this call record into it.
pub fn init_otlp(service_name: &str) -> Result<OtelGuard, TelemetryError> {
    init_otlp_to(service_name, None)
}

/// [`init_otlp`] exporting to `traces_endpoint` (the full URL, `…/v1/traces`) when
/// given, whatever the environment says.
pub fn init_otlp_to(
    service_name: &str,
    traces_endpoint: Option<&str>,
) -> Result<OtelGuard, TelemetryError> {
    let provider = otlp_provider(service_name, traces_endpoint)?;
    set_tracer_provider(provider.clone());
    Ok(OtelGuard { provider })
}

/// Whether [`set_tracer_provider`] (or [`init_otlp`]) has run.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Makes `provider` the global tracer provider (as
/// `opentelemetry::global::set_tracer_provider` does) and this crate's spans recorded
/// into it: servers, clients and stores built afterwards make them. Until this (or
/// [`init_otlp`]) runs, they make no OpenTelemetry spans at all, so an agent that does
/// not export pays nothing for it.
pub fn set_tracer_provider<P, T, S>(provider: P)
where
    S: opentelemetry::trace::Span + Send + Sync + 'static,
    T: opentelemetry::trace::Tracer<Span = S> + Send + Sync + 'static,
    P: opentelemetry::trace::TracerProvider<Tracer = T> + Send + Sync + 'static,
{
    opentelemetry::global::set_tracer_provider(provider);
    INSTALLED.store(true, Ordering::Release);
}

/// Whether spans are to be recorded (a provider was installed with
/// [`set_tracer_provider`] or [`init_otlp`]).
pub(crate) fn installed() -> bool {
    INSTALLED.load(Ordering::Acquire)
}

/// The tracer provider [`init_otlp_to`] installs, without installing it.
pub fn otlp_provider(
    service_name: &str,
    traces_endpoint: Option<&str>,
) -> Result<SdkTracerProvider, TelemetryError> {
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
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}
