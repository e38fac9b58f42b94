//! A real load balancer in front of several agents: HAProxy from Debian's `haproxy`
//! package, configured from a file the test writes, round-robin over the backends with
//! health checks on `/ready`.
//!
//! Its listening socket is bound by the test (`127.0.0.1:0`) and handed to HAProxy as
//! an inherited descriptor (`bind fd@N`), so no port is guessed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::Guard;

/// The settings of the balancer (besides its `bind` and `server` lines), as
/// `docs/scale-out/haproxy.cfg` must also hold them.
pub const CONFIG_LINES: &[&str] = &[
    "mode http",
    "timeout connect 2s",
    "timeout client 30s",
    "timeout server 30s",
    "retries 3",
    "option redispatch",
    "option http-server-close",
    "option forwardfor",
    "balance roundrobin",
    "option httpchk GET /ready",
];

/// A running HAProxy; stopped when dropped.
pub struct LoadBalancer {
    _process: Guard,
    _dir: tempfile::TempDir,
    address: SocketAddr,
}

impl LoadBalancer {
    /// HAProxy balancing round-robin over `backends` (`host:port`), each checked with
    /// `GET /ready` every 200 ms; a request that cannot reach its backend is sent to
    /// another. Adds `X-Forwarded-For`.
    pub fn haproxy(backends: &[SocketAddr]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the balancer's port");
        let address = listener.local_addr().expect("its address");
        let socket = socket2::Socket::from(listener);
        // Inherited by HAProxy: no close-on-exec on this descriptor.
        socket
            .set_cloexec(false)
            .expect("clear close-on-exec on the listener");
        let fd = socket.as_raw_fd();
        let mut servers = String::new();
        for (n, backend) in backends.iter().enumerate() {
            servers.push_str(&format!(
                "  server r{n} {backend} check inter 200ms fall 2 rise 1\n"
            ));
        }
        let [
            mode,
            connect,
            client,
            server,
            retries,
            redispatch,
            close,
            forwardfor,
            balance,
            check,
        ] = CONFIG_LINES
        else {
            unreachable!("ten settings")
        };
        let config = format!(
            "global\n  maxconn 4096\n\
             defaults\n  {mode}\n  {connect}\n  {client}\n  {server}\n  {retries}\n  {redispatch}\n  {close}\n\
             frontend agents\n  bind fd@{fd}\n  {forwardfor}\n  default_backend replicas\n\
             backend replicas\n  {balance}\n  {check}\n{servers}"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("haproxy.cfg");
        std::fs::write(&path, config).expect("write the HAProxy configuration");
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("haproxy starts (apt-get install haproxy)");
        drop(socket);
        let balancer = Self {
            _process: Guard(child),
            _dir: dir,
            address,
        };
        balancer.wait_ready();
        balancer
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits until a request through the balancer is answered by a backend (the
    /// kernel accepts connections on the inherited socket before HAProxy reads them,
    /// so only an answer shows that HAProxy and a healthy backend are up).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.get_status("/ready") == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "HAProxy did not forward to a ready backend within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The status of `GET path` through the balancer (None when no answer came).
    pub fn get_status(&self, path: &str) -> Option<u16> {
        let mut stream = TcpStream::connect_timeout(&self.address, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: lb\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
    }
}
