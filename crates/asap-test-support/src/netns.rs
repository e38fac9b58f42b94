//! Running a test inside a private network namespace (`unshare --net`, loopback up), for
//! tests that send real multicast. Used by the library's and the CLI's DNS-SD tests.
//!
//! A test calls [`outside`] first: outside the namespace it re-runs itself inside one and
//! reports that run; inside, it goes on with its body.

use std::process::Command;

const INSIDE: &str = "ASAP_TEST_IN_NETNS";

/// `true` when the caller is outside the namespace and must return now: `test` was run
/// inside one (and passed, else this panics), or no namespace can be created here and
/// the test is skipped with a message — a failure instead when `ASAP_REQUIRE_NETNS` is
/// set, as `.ci/run` does.
pub fn outside(test: &str) -> bool {
    if std::env::var(INSIDE).is_ok() {
        return false;
    }
    let probe = Command::new("unshare").args(["--net", "true"]).output();
    let why = match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("unshare is not available: {e}")),
    };
    if let Some(why) = why {
        assert!(
            std::env::var("ASAP_REQUIRE_NETNS").is_err(),
            "{test}: cannot create a network namespace ({why}) and ASAP_REQUIRE_NETNS is set"
        );
        eprintln!("SKIP {test}: cannot create a network namespace here ({why})");
        return true;
    }
    let status = Command::new("unshare")
        .args([
            "--net",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(INSIDE, "1")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{test} failed inside its network namespace"
    );
    true
}
