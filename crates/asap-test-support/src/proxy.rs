//! A TCP proxy for chaos tests: forwards loopback connections to a target and can stall
//! them (stop forwarding, keep the sockets), cut them (close every current connection)
//! or refuse new ones.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy; stops (and cuts its connections) when dropped.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    stalled: watch::Sender<bool>,
    cut: watch::Sender<u64>,
    refusing: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts a proxy to `target` on a free loopback port.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stalled, stalled_rx) = watch::channel(false);
        let (cut, cut_rx) = watch::channel(0u64);
        let refusing = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (refuse, count) = (refusing.clone(), accepted.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if refuse.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                // Nagle off on both legs: bytes are forwarded as they come, not held
                // for a delayed ACK (which paused-time tests could not wait for).
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let generation = *cut_rx.borrow();
                tokio::spawn(pipe(cr, sw, stalled_rx.clone(), cut_rx.clone(), generation));
                tokio::spawn(pipe(sr, cw, stalled_rx.clone(), cut_rx.clone(), generation));
            }
        });
        Self {
            addr,
            stalled,
            cut,
            refusing,
            accepted,
            task,
        }
    }

    /// Stops (`true`) or resumes forwarding bytes on every connection.
    pub fn stall(&self, on: bool) {
        self.stalled.send_replace(on);
    }

    /// Closes every current connection.
    pub fn cut(&self) {
        self.cut.send_modify(|g| *g += 1);
    }

    /// Closes new connections at once (`true`) or forwards them again.
    pub fn refuse(&self, on: bool) {
        self.refusing.store(on, Ordering::SeqCst);
    }

    /// Connections forwarded so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut stalled: watch::Receiver<bool>,
    mut cut: watch::Receiver<u64>,
    generation: u64,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // While stalled, nothing moves (but a cut still ends the connection).
        while *stalled.borrow() {
            tokio::select! {
                changed = stalled.changed() => if changed.is_err() { return },
                _ = cut.changed() => if *cut.borrow() != generation { return },
            }
        }
        tokio::select! {
            read = from.read(&mut buf) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if *stalled.borrow() {
                    // Stalled while reading: hold the bytes until released or cut.
                    while *stalled.borrow() {
                        tokio::select! {
                            changed = stalled.changed() => if changed.is_err() { return },
                            _ = cut.changed() => if *cut.borrow() != generation { return },
                        }
                    }
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            _ = cut.changed() => if *cut.borrow() != generation { return },
            _ = stalled.changed() => {}
        }
    }
}
