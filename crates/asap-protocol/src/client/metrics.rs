//! The client's side of the reference's `asap_transport_*` families: recorded into the
//! [`Metrics`](crate::server::Metrics) given to
//! [`ClientBuilder::metrics`](super::ClientBuilder::metrics) (feature `server`); nothing
//! without it.

use tokio::time::Instant;

use super::ClientError;
#[cfg(feature = "server")]
use crate::server::{Metrics, SendErrorReason};

/// Where a client records its sends: a [`Metrics`], or nowhere.
#[derive(Clone, Default)]
pub(crate) struct SendMetrics {
    #[cfg(feature = "server")]
    pub(crate) metrics: Option<Metrics>,
}

impl SendMetrics {
    /// Records one send (all its attempts): its status, its duration since `started`
    /// and, when it failed, why.
    pub(crate) fn record<T>(&self, result: &Result<T, ClientError>, started: Instant) {
        #[cfg(feature = "server")]
        if let Some(metrics) = &self.metrics {
            metrics.transport_send(result.is_ok(), started.elapsed().as_secs_f64());
            if let Err(error) = result {
                metrics.transport_send_error(reason(error));
            }
        }
        #[cfg(not(feature = "server"))]
        let _ = (result, started);
    }

    /// Records one retry.
    pub(crate) fn retry(&self) {
        #[cfg(feature = "server")]
        if let Some(metrics) = &self.metrics {
            metrics.transport_retry();
        }
    }
}

/// The `reason` label of a failed send: the error's kind.
#[cfg(feature = "server")]
pub(crate) fn reason(error: &ClientError) -> SendErrorReason {
    match error {
        ClientError::Remote { .. } => SendErrorReason::Remote,
        ClientError::Http { .. } => SendErrorReason::Http,
        ClientError::Transport(e) if e.is_timeout() => SendErrorReason::Timeout,
        ClientError::Transport(_) => SendErrorReason::Transport,
        ClientError::InvalidResponse(_) => SendErrorReason::InvalidResponse,
        ClientError::CircuitOpen(_) => SendErrorReason::CircuitOpen,
        ClientError::InvalidRequest(_) => SendErrorReason::InvalidRequest,
        ClientError::NoToken(_) => SendErrorReason::NoToken,
        ClientError::Incompatible { .. } => SendErrorReason::Incompatible,
        ClientError::WebSocket(_) => SendErrorReason::WebSocket,
        ClientError::Tls(_) => SendErrorReason::Tls,
        ClientError::ResponseTooLarge { .. } => SendErrorReason::ResponseTooLarge,
        ClientError::Timeout(_) => SendErrorReason::Timeout,
        ClientError::NotAcknowledged { .. } => SendErrorReason::NotAcknowledged,
    }
}
