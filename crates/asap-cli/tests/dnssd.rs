//! `asap serve --mdns` and `asap discover --local` in a private network namespace (the
//! test re-runs itself under `unshare --net` with loopback up; it skips with a message
//! only where no namespace can be created, and `.ci/run` requires it to run).

use asap_test_support::netns;
mod support;

use std::process::Command;

fn discover_local() -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["discover", "--local", "--json", "--timeout", "3"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut agents: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    agents.sort_by_key(|a| a["name"].as_str().unwrap_or_default().to_owned());
    agents
}

#[test]
fn serve_mdns_and_discover_local() {
    if netns::outside("serve_mdns_and_discover_local") {
        return;
    }
    // Nothing advertised yet: nothing on stdout, and stderr says so.
    let none = Command::new(env!("CARGO_BIN_EXE_asap"))
        .args(["discover", "--local", "--timeout", "1"])
        .output()
        .unwrap();
    assert!(none.status.success());
    assert!(none.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("no agents found on the local network"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let (one, one_url) = support::asap_serve(
        &[
            "--storage",
            "memory",
            "--mdns",
            "--name",
            "Agent One",
            "--id",
            "urn:asap:agent:one",
        ],
        &dir.path().join("one"),
    );
    let (mut two, _) = support::asap_serve(
        &[
            "--storage",
            "memory",
            "--mdns",
            "--name",
            "Agent Two",
            "--id",
            "urn:asap:agent:two",
        ],
        &dir.path().join("two"),
    );
    let agents = discover_local();
    assert_eq!(agents.len(), 2, "{agents:?}");
    assert_eq!(agents[0]["name"], "Agent-One");
    assert_eq!(
        agents[0]["id"], "urn:asap:agent:one",
        "resolved through its manifest"
    );
    assert_eq!(
        agents[0]["manifest_url"],
        format!("{one_url}/.well-known/asap/manifest.json")
    );
    assert_eq!(agents[1]["id"], "urn:asap:agent:two");
    assert!(
        agents[0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&"echo".into())
    );
    // A graceful stop withdraws the advertisement.
    let pid = two.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // It withdraws before it exits: once it has, the goodbye is out.
    assert!(two.0.wait().unwrap().success(), "a graceful stop");
    let left = discover_local();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["id"], "urn:asap:agent:one");
    drop(two);
    drop(one);
}

#[test]
fn discover_local_resolves_agents_advertised_on_other_addresses() {
    if netns::outside("discover_local_resolves_agents_advertised_on_other_addresses") {
        return;
    }
    // A second, non-loopback address in the namespace stands for another host on the
    // LAN: its agent advertises plain http://, as every `asap serve --mdns` does.
    let added = Command::new("ip")
        .args(["addr", "add", "10.77.0.1/32", "dev", "lo"])
        .status()
        .unwrap();
    assert!(added.success());
    let dir = tempfile::tempdir().unwrap();
    let (_lan, url) = support::asap_serve(
        &[
            "--storage",
            "memory",
            "--host",
            "10.77.0.1",
            "--mdns",
            "--id",
            "urn:asap:agent:lan",
        ],
        dir.path(),
    );
    assert!(url.starts_with("http://10.77.0.1:"), "{url}");
    let agents = discover_local();
    assert_eq!(agents.len(), 1, "{agents:?}");
    assert_eq!(agents[0]["id"], "urn:asap:agent:lan", "{agents:?}");
    assert_eq!(agents[0].get("error"), None, "{agents:?}");
}
