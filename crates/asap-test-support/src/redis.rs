//! A throwaway `redis-server` (Debian's `redis-server` package) for the shared-state
//! tests: no TCP at all (`--port 0`), a Unix socket in a temporary directory, no
//! persistence; killed when dropped. It can be stopped and started again on the same
//! socket, to test what a server does while Redis is down and after it returns.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long `redis-server` may take to start.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running (or stopped) `redis-server` of the test's own.
pub struct RedisServer {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one and returns once it answers `PING`.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut server = Self { dir, child: None };
        server.restart();
        server
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
    }

    /// The URL to connect to (`redis+unix:///...`).
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Kills the server at once (as a crash would: nothing is saved anyway).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same socket (stopping it first if it runs), empty,
    /// and returns once it answers `PING`.
    pub fn restart(&mut self) {
        self.stop();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args([
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (Debian package redis-server; scripts/install-tools.sh)");
        let stdout = child.stdout.take().expect("piped stdout");
        self.child = Some(child);
        // Its log says when it accepts connections; the rest of it is drained.
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout);
            let mut line = String::new();
            while lines.read_line(&mut line).unwrap_or(0) > 0 {
                // "The server is now ready to accept connections at ..." (7.0),
                // "Ready to accept connections unix" (7.2).
                if line
                    .to_ascii_lowercase()
                    .contains("ready to accept connections")
                {
                    let _ = ready_tx.send(());
                }
                line.clear();
            }
        });
        ready_rx
            .recv_timeout(START_DEADLINE)
            .expect("redis-server ready within the deadline");
        assert_eq!(self.command("PING"), "+PONG\r\n");
    }

    /// Sends one inline command and returns the first reply read (for small replies).
    pub fn command(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(self.socket()).expect("redis-server's socket");
        stream
            .set_read_timeout(Some(START_DEADLINE))
            .expect("a read timeout");
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .expect("a command sent");
        let mut reply = vec![0; 64 * 1024];
        let n = stream.read(&mut reply).expect("a reply");
        String::from_utf8_lossy(&reply[..n]).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
