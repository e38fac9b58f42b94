//! Processes the tests start: the reference implementations' Python (asap-protocol 1.1.0
//! and 2.5.10) and servers that announce their URL on their first line of output.
//!
//! A server is never started on a port guessed beforehand: it binds `127.0.0.1:0` itself
//! and prints its URL once it is listening (`asap serve --port 0`, the `interop/` scripts
//! through `interop/listen.py`), and [`spawn_announced`] reads that line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The reference's Python interpreter (asap-protocol 1.1.0); creates the virtualenv on
/// first use with `scripts/ref-venv.sh`.
pub fn reference_python() -> PathBuf {
    venv_python("1.1.0")
}

/// `interop/<script>` run by the reference's Python.
pub fn reference_script(script: &str) -> Command {
    let mut command = Command::new(reference_python());
    command.arg(workspace().join("interop").join(script));
    command
}

/// The ASAP 2.x reference's Python interpreter (asap-protocol 2.5.10); creates the
/// virtualenv on first use with `scripts/ref-venv.sh 2.5.10`.
pub fn reference25_python() -> PathBuf {
    venv_python("2.5.10")
}

/// `interop/<script>` run by the 2.x reference's Python.
pub fn reference25_script(script: &str) -> Command {
    let mut command = Command::new(reference25_python());
    command.arg(workspace().join("interop").join(script));
    command
}

/// The interpreter of the reference `version`'s virtualenv (`scripts/ref-venv.sh`).
fn venv_python(version: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(workspace().join("scripts/ref-venv.sh"))
        .arg(version)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "could not create the asap-protocol {version} reference virtualenv (needs Python >= 3.13 and PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A child process, killed (and reaped) when dropped.
pub struct Guard(pub Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a server that prints a line `... listening on URL` on stdout once it is
/// listening; returns the process and that URL. Lines before it (a library's start-up
/// logs) are skipped, and the rest of its stdout is drained on a thread so its writes
/// never fail. Panics, naming `what`, if the process ends without announcing a URL.
pub fn spawn_announced(mut command: Command, what: &str) -> (Guard, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let guard = Guard(child);
    let mut skipped = String::new();
    let url = loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("{what} ended without announcing its URL; it printed {skipped:?}");
        }
        if let Some((_, url)) = line.trim_end().rsplit_once("listening on ")
            && (url.starts_with("http://") || url.starts_with("https://"))
        {
            break url.to_owned();
        }
        skipped.push_str(&line);
    };
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (guard, url)
}

/// Starts an `interop/<script>` server with `args` (see `interop/listen.py`); returns
/// the process and its base URL, already listening.
pub fn reference_server(script: &str, args: &[&str]) -> (Guard, String) {
    let mut command = reference_script(script);
    command.args(args).stderr(Stdio::null());
    spawn_announced(command, script)
}

/// Starts the reference echo agent (the app `python -m asap.examples.echo_agent` serves,
/// from `interop/ref_echo_agent.py`; HTTP rate limit raised, its WebSocket allows 10
/// messages/s per connection); returns the process and its base URL.
pub fn reference_echo_agent() -> (Guard, String) {
    echo_agent(
        reference_script("ref_echo_agent.py"),
        "the reference echo agent",
    )
}

/// The ASAP 2.x reference's echo agent (asap-protocol 2.5.10, `interop/ref_echo_agent.py`,
/// rate limit raised).
pub fn reference25_echo_agent() -> (Guard, String) {
    echo_agent(
        reference25_script("ref_echo_agent.py"),
        "the 2.5.10 echo agent",
    )
}

fn echo_agent(mut command: Command, what: &str) -> (Guard, String) {
    command
        .env("ASAP_RATE_LIMIT", "1000/second")
        .stderr(Stdio::null());
    spawn_announced(command, what)
}
