//! Serving accepted connections with hyper's HTTP/1.1: a cap on open connections, a
//! header read timeout (slowloris), an idle timeout for connections on which nothing
//! moves, WebSocket upgrades, and graceful shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt as _;

/// The connection limits [`serve`] applies (from [`super::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) header_read_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

/// Accepts connections from `listener` and serves `router` on each until `stop` turns
/// true; then stops accepting, asks every connection to finish its request in progress
/// and close, and returns when all HTTP connections have closed. (Upgraded WebSocket
/// connections leave this count at the upgrade; the WebSocket hub drains them.)
pub(crate) async fn serve<L>(
    mut listener: L,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
    metrics: super::Metrics,
) where
    L: Listener<Addr = SocketAddr>,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopping| *stopping) => break,
        };
        // Over the cap: close at once, so memory stays bounded and the client learns
        // immediately (a backlog would hold it until some connection ends).
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(client = %peer, max = limits.max_connections, "connection refused: too many open connections");
            metrics.refusal(super::RefusalReason::ConnectionLimit);
            drop(io);
            continue;
        };
        let router = router.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(io, peer, router, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back means every HTTP connection has closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _closed = slots.acquire_many(all).await;
}

async fn serve_connection<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Tracked {
        inner: io,
        activity: activity.clone(),
    });
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let has_body = !request.body().is_end_stream();
        let body_read = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| {
            Body::new(ReadToEnd {
                inner: body,
                done: body_read.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(peer));
        let busy = Busy::new(requests.clone());
        let router = router.clone();
        async move {
            let mut response: Response<Body> = router.oneshot(request).await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                busy.activity.upgraded.store(true, Ordering::Relaxed);
            }
            // Answered before its body was read (a refused token, a body declared too
            // large, ...): hyper closes such a connection after the answer, so say so,
            // or a client reusing it would see it closed under its next request.
            if has_body && !body_read.load(Ordering::Relaxed) {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut connection = pin!(http.serve_connection(io, service).with_upgrades());
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::trace!(client = %peer, %error, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|stopping| *stopping), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            () = activity.idle_for(limits.idle_timeout) => {
                tracing::debug!(client = %peer, idle_seconds = limits.idle_timeout.as_secs_f64(), "closing an idle connection");
                return;
            }
        }
    }
}

/// What a connection is doing: when bytes last moved, requests being handled, and
/// whether it was upgraded to a WebSocket (whose own heartbeat rules then apply).
struct Activity {
    base: Instant,
    last_millis: AtomicU64,
    busy: AtomicUsize,
    upgraded: AtomicBool,
}

impl Activity {
    fn new() -> Self {
        Self {
            base: Instant::now(),
            last_millis: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    fn touch(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_millis.store(now, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_millis(self.last_millis.load(Ordering::Relaxed))
    }

    /// Completes once no byte has moved for `limit` while no request was being handled
    /// and the connection was not upgraded.
    async fn idle_for(&self, limit: Duration) {
        loop {
            tokio::time::sleep_until(self.last() + limit).await;
            let idle = self.busy.load(Ordering::Relaxed) == 0
                && !self.upgraded.load(Ordering::Relaxed)
                && self.last().elapsed() >= limit;
            if idle {
                return;
            }
            if self.busy.load(Ordering::Relaxed) > 0 || self.upgraded.load(Ordering::Relaxed) {
                // Counted again from the end of the request (or never, once upgraded).
                self.touch();
            }
        }
    }
}

/// One request being handled on a connection; counted until dropped (also when the
/// handler panics or the request is cancelled).
struct Busy {
    activity: Arc<Activity>,
}

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.busy.fetch_add(1, Ordering::Relaxed);
        Self { activity }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.activity.touch();
        self.activity.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's socket, noting when bytes move in either direction.
struct Tracked<I> {
    inner: I,
    activity: Arc<Activity>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Tracked<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Tracked<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that notes when it has been read to its end.
struct ReadToEnd {
    inner: Incoming,
    done: Arc<AtomicBool>,
}

impl hyper::body::Body for ReadToEnd {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.done.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
