//! `asap serve` started by the CLI tests (the reference implementation's processes are
//! in `asap_test_support::process`).

use std::path::Path;
use std::process::{Command, Stdio};

use asap_test_support::process::{Guard, spawn_announced};

/// `asap serve --port 0 --data-dir DATA FLAGS...`; returns the process and its URL, read
/// from the first line it prints once it is listening.
pub fn asap_serve(flags: &[&str], data: &Path) -> (Guard, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_asap"));
    command
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data)
        .args(flags)
        .stderr(Stdio::inherit());
    spawn_announced(command, "asap serve")
}
