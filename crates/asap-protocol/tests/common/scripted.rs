//! A streaming handler whose behaviour a test scripts.

use std::sync::{Arc, Mutex};

use asap_protocol::model::{Envelope, TaskStream};
use asap_protocol::server::{HandlerContext, HandlerError, StreamEmitter, StreamingHandler};
use tokio::sync::oneshot;

/// Emits `first`, then fails with `failure` or, without one, waits until its work is
/// dropped (the client went away), telling the test through `stopped` when it is.
pub struct Scripted {
    first: TaskStream,
    failure: Option<fn() -> HandlerError>,
    stopped: Mutex<Option<oneshot::Sender<()>>>,
}

/// Signals its sender when dropped.
struct Stopped(Option<oneshot::Sender<()>>);

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

#[async_trait::async_trait]
impl StreamingHandler for Scripted {
    async fn stream(
        &self,
        _request: Envelope,
        _ctx: &HandlerContext,
        out: &StreamEmitter,
    ) -> Result<(), HandlerError> {
        let _stopped = Stopped(self.stopped.lock().unwrap().take());
        out.chunk(self.first.clone())
            .await
            .map_err(HandlerError::internal)?;
        if let Some(failure) = self.failure {
            return Err(failure());
        }
        std::future::pending::<()>().await;
        Ok(())
    }
}

/// The handler, and the receiver told when its work is dropped.
pub fn scripted(
    first: TaskStream,
    failure: Option<fn() -> HandlerError>,
) -> (Arc<Scripted>, oneshot::Receiver<()>) {
    let (tx, rx) = oneshot::channel();
    let handler = Scripted {
        first,
        failure,
        stopped: Mutex::new(Some(tx)),
    };
    (Arc::new(handler), rx)
}
