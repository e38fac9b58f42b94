//! Processes the CLI tests start: `asap serve`, the reference implementation's Python.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The reference's Python (asap-protocol 1.1.0), from the virtualenv
/// `scripts/ref-venv.sh` creates on first use.
pub fn reference_python() -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/ref-venv.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference virtualenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// `interop/<script>` run by the reference's Python.
pub fn reference_script(script: &str) -> Command {
    let mut command = Command::new(reference_python());
    command.arg(workspace().join("interop").join(script));
    command
}

/// A child process killed when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `asap serve --port 0 --data-dir DATA FLAGS...`; returns the process and its URL.
pub fn asap_serve(flags: &[&str], data: &Path) -> (Guard, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .args(flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep draining the server's output so its writes never fail.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let guard = Guard(child);
    let url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(url.starts_with("http://"), "asap serve said {line:?}");
    (guard, url)
}

/// Waits (at most 30 s) until `url` answers 2xx.
pub fn wait_until_up(url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::blocking::get(url).is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "{what} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the reference echo agent (`python -m asap.examples.echo_agent`, HTTP rate limit
/// raised; its WebSocket allows 10 messages/s per connection) and waits until it answers.
pub fn reference_echo_agent() -> (Guard, String) {
    let port = free_port();
    let child = Command::new(reference_python())
        .args([
            "-m",
            "asap.examples.echo_agent",
            "--host",
            "127.0.0.1",
            "--port",
        ])
        .arg(port.to_string())
        .env("ASAP_RATE_LIMIT", "1000/second")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Guard(child);
    let url = format!("http://127.0.0.1:{port}");
    wait_until_up(&format!("{url}/health"), "the reference echo agent");
    (guard, url)
}
