//! The spans this crate exports over OpenTelemetry (feature `otel`): `asap.request`,
//! `asap.handler.execute`, `asap.client.send` and `asap.store`.
//!
//! They are made with the OpenTelemetry API directly, from the tracer of the global
//! tracer provider taken when a server, client or store is built (install it first:
//! [`crate::telemetry::init_otlp`], or [`crate::telemetry::set_tracer_provider`] with a
//! provider of your own; without either no span is made). Their parents come from the trace context the request
//! carries (`traceparent`, the envelope's `trace_id`/`extensions.span_id`), the
//! [`crate::trace_context`] scope the server runs handlers in, and otherwise the current
//! OpenTelemetry context (which `tracing-opentelemetry` sets while an application's
//! span is entered). Each span's ids become the trace context its work runs in, so the
//! ids in response envelopes, outgoing `traceparent` headers, the access log and the
//! export agree.
//!
//! Why not `tracing` spans bridged by `tracing-opentelemetry`: that bridge cost about
//! 20 % of the requests per second at concurrency 50 even with every span sampled out
//! (bench/RESULTS.md); these spans cost a few hundred nanoseconds each, nothing when
//! sampled out beyond the sampler's decision. The `tracing` spans of the same names
//! remain, for logs.
//!
//! Without the feature every type here is empty and every method does nothing.

#[cfg(not(feature = "otel"))]
use crate::trace_context::TraceContext;

/// What a span stands for, as OpenTelemetry's span kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// A client-only build makes client spans only.
#[cfg_attr(not(feature = "server"), allow(dead_code))]
pub(crate) enum Kind {
    /// Serving a request from another agent.
    Server,
    /// A call to another agent or a database.
    Client,
    /// Work inside this process.
    Internal,
}

/// The tracer spans are started from: the global provider's when it was taken.
#[derive(Clone, Default)]
pub(crate) struct Tracer {
    #[cfg(feature = "otel")]
    inner: Option<std::sync::Arc<opentelemetry::global::BoxedTracer>>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

/// One span; ends when dropped.
#[derive(Default)]
pub(crate) struct Span {
    #[cfg(feature = "otel")]
    inner: Option<opentelemetry::global::BoxedSpan>,
}

impl std::fmt::Debug for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Span")
            .field("recording", &self.is_recording())
            .finish()
    }
}

#[cfg(feature = "otel")]
mod otel {
    use std::borrow::Cow;

    use opentelemetry::trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer as _, TracerProvider as _,
    };
    use opentelemetry::{InstrumentationScope, Key, KeyValue};

    use super::{Kind, Span, Tracer};
    use crate::trace_context::{TraceContext, TraceParent};

    impl Tracer {
        /// The global tracer provider's tracer for this crate (scope `asap.protocol`,
        /// the reference's tracer name), taken now; none (spans cost nothing) unless a
        /// provider was installed through [`crate::telemetry::set_tracer_provider`].
        pub(crate) fn global() -> Self {
            if !crate::telemetry::installed() {
                return Self::default();
            }
            let scope = InstrumentationScope::builder(crate::telemetry::TRACER_NAME)
                .with_version(env!("CARGO_PKG_VERSION"))
                .build();
            let tracer = opentelemetry::global::tracer_provider().tracer_with_scope(scope);
            Self {
                inner: Some(std::sync::Arc::new(tracer)),
            }
        }

        /// Whether spans are made at all (a provider was installed when it was taken).
        pub(crate) fn is_enabled(&self) -> bool {
            self.inner.is_some()
        }

        /// Starts a span named `name` whose parent is `parent` (a remote context) or,
        /// without one, the current OpenTelemetry context. Returns the span and the trace
        /// context its work runs in: the span's own ids when it has new ones, else
        /// (no provider installed) `parent`'s child or a new root, as without export.
        pub(crate) fn start(
            &self,
            name: &'static str,
            kind: Kind,
            parent: Option<&TraceContext>,
        ) -> (Span, TraceContext) {
            let fallback = || parent.map_or_else(TraceContext::new_root, TraceContext::child);
            let Some(tracer) = &self.inner else {
                return (Span::default(), fallback());
            };
            let parent_cx = match parent {
                Some(p) => opentelemetry::Context::new().with_remote_span_context(remote(p)),
                None => opentelemetry::Context::current(),
            };
            let builder = tracer.span_builder(name).with_kind(match kind {
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
                Kind::Internal => SpanKind::Internal,
            });
            let span = tracer.build_with_context(builder, &parent_cx);
            let ids = opentelemetry::trace::Span::span_context(&span);
            let parent_span = parent_cx.span().span_context().span_id();
            let context = if ids.is_valid() && ids.span_id() != parent_span {
                trace_context(ids, parent.and_then(|p| p.state.clone()))
            } else {
                fallback()
            };
            (Span { inner: Some(span) }, context)
        }
    }

    /// `ids` as a trace context with the `tracestate` `state`.
    fn trace_context(ids: &SpanContext, state: Option<String>) -> TraceContext {
        TraceContext {
            parent: TraceParent {
                trace_id: u128::from_be_bytes(ids.trace_id().to_bytes()),
                span_id: u64::from_be_bytes(ids.span_id().to_bytes()),
                flags: ids.trace_flags().to_u8(),
            },
            state,
        }
    }

    /// The current OpenTelemetry context's span as a trace context (an application's
    /// span made current with the OpenTelemetry API or `tracing-opentelemetry`), when a
    /// tracer provider was installed through [`crate::telemetry::set_tracer_provider`].
    pub(crate) fn current_otel_context() -> Option<TraceContext> {
        if !crate::telemetry::installed() {
            return None;
        }
        let context = opentelemetry::Context::current();
        let ids = context.span().span_context().clone();
        let state = Some(ids.trace_state().header()).filter(|s| !s.is_empty());
        ids.is_valid().then(|| trace_context(&ids, state))
    }

    /// The remote span context a received `traceparent` names.
    fn remote(parent: &TraceContext) -> SpanContext {
        let state = parent
            .state
            .as_deref()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default();
        SpanContext::new(
            TraceId::from_bytes(parent.parent.trace_id.to_be_bytes()),
            SpanId::from_bytes(parent.parent.span_id.to_be_bytes()),
            TraceFlags::new(parent.parent.flags),
            true,
            state,
        )
    }

    impl Span {
        fn recording(&mut self) -> Option<&mut opentelemetry::global::BoxedSpan> {
            self.inner
                .as_mut()
                .filter(|s| opentelemetry::trace::Span::is_recording(*s))
        }

        /// Whether the span is sampled and will be exported.
        pub(crate) fn is_recording(&self) -> bool {
            self.inner
                .as_ref()
                .is_some_and(opentelemetry::trace::Span::is_recording)
        }

        /// Sets a string attribute (copied only when the span records).
        pub(crate) fn set_str(&mut self, key: &'static str, value: &str) {
            if let Some(span) = self.recording() {
                opentelemetry::trace::Span::set_attribute(
                    span,
                    KeyValue::new(Key::from_static_str(key), value.to_owned()),
                );
            }
        }

        /// Sets a string attribute known at compile time.
        #[cfg_attr(not(feature = "server"), allow(dead_code))]
        pub(crate) fn set_static(&mut self, key: &'static str, value: &'static str) {
            if let Some(span) = self.recording() {
                opentelemetry::trace::Span::set_attribute(
                    span,
                    KeyValue::new(Key::from_static_str(key), Cow::Borrowed(value)),
                );
            }
        }

        /// Sets an integer attribute.
        pub(crate) fn set_i64(&mut self, key: &'static str, value: i64) {
            if let Some(span) = self.recording() {
                opentelemetry::trace::Span::set_attribute(
                    span,
                    KeyValue::new(Key::from_static_str(key), value),
                );
            }
        }

        /// Marks the span succeeded (`true`) or failed.
        pub(crate) fn set_ok(&mut self, ok: bool) {
            if let Some(span) = self.recording() {
                let status = if ok { Status::Ok } else { Status::error("") };
                opentelemetry::trace::Span::set_status(span, status);
            }
        }

        /// Ends the span now (dropping it does too).
        pub(crate) fn end(self) {
            drop(self.inner);
        }
    }
}

#[cfg(feature = "otel")]
pub(crate) use otel::current_otel_context;

/// Nothing without the feature.
#[cfg(not(feature = "otel"))]
pub(crate) fn current_otel_context() -> Option<TraceContext> {
    None
}

#[cfg(not(feature = "otel"))]
impl Tracer {
    /// Nothing is exported without the feature.
    pub(crate) fn global() -> Self {
        Self {}
    }

    /// Never: nothing is exported without the feature.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn is_enabled(&self) -> bool {
        false
    }

    /// The trace context the work runs in: `parent`'s child, or a new root.
    pub(crate) fn start(
        &self,
        _name: &'static str,
        _kind: Kind,
        parent: Option<&TraceContext>,
    ) -> (Span, TraceContext) {
        let context = parent.map_or_else(TraceContext::new_root, TraceContext::child);
        (Span {}, context)
    }
}

#[cfg(not(feature = "otel"))]
impl Span {
    /// Never: nothing is exported without the feature.
    pub(crate) fn is_recording(&self) -> bool {
        false
    }

    /// Does nothing without the feature.
    pub(crate) fn set_str(&mut self, _key: &'static str, _value: &str) {}

    /// Does nothing without the feature.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn set_static(&mut self, _key: &'static str, _value: &'static str) {}

    /// Does nothing without the feature.
    pub(crate) fn set_i64(&mut self, _key: &'static str, _value: i64) {}

    /// Does nothing without the feature.
    pub(crate) fn set_ok(&mut self, _ok: bool) {}

    /// Does nothing without the feature.
    pub(crate) fn end(self) {}
}
