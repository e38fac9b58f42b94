//! DNS-SD with real multicast, in a private network namespace this test creates
//! (`unshare --net`, loopback up): two agents advertise, a browser finds both with their
//! TXT records, one withdraws and the browser sees it go.
//!
//! The test re-runs itself inside the namespace. Where a namespace cannot be created
//! (no `unshare`, no permission) it says so and skips; `.ci/run` runs as root, where it
//! can.

use asap_test_support::netns;

use std::time::Duration;

use asap_protocol::discovery::{Advertiser, Browser, DnsSdEvent, instance_name};
use asap_protocol::model::{Manifest, Skill};

fn manifest(id: &str, name: &str, version: &str, skills: &[&str]) -> Manifest {
    let mut m = Manifest::new(id, name, version, "dns-sd test", "http://127.0.0.1:1/asap");
    for skill in skills {
        m.capabilities.skills.push(Skill::new(*skill, "skill"));
    }
    m
}

#[test]
fn two_agents_advertise_and_one_withdraws() {
    if netns::outside("two_agents_advertise_and_one_withdraws") {
        return;
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let ip = "127.0.0.1".parse().unwrap();
        let alpha = Advertiser::start(
            &manifest(
                "urn:asap:agent:alpha",
                "Alpha Agent",
                "1.0.0",
                &["echo", "shout"],
            ),
            "http://127.0.0.1:8101/.well-known/asap/manifest.json",
            ip,
            8101,
        )
        .unwrap();
        let beta = Advertiser::start(
            &manifest(
                "urn:asap:agent:beta",
                "Beta Agent v2.1!",
                "2.1.0",
                &["summarize"],
            ),
            "http://127.0.0.1:8102/.well-known/asap/manifest.json",
            ip,
            8102,
        )
        .unwrap();
        let mut browser = Browser::start().unwrap();
        let mut seen = std::collections::HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while seen.len() < 2 {
            match tokio::time::timeout_at(deadline, browser.next()).await {
                Ok(Some(DnsSdEvent::Appeared(info))) => {
                    seen.insert(info.name.clone(), info);
                }
                Ok(Some(_)) => {}
                other => panic!("both agents must appear: saw {seen:?}, then {other:?}"),
            }
        }
        let a = &seen[&instance_name("Alpha Agent")];
        assert_eq!(a.version, "1.0.0");
        assert_eq!(a.capabilities, ["echo", "shout"]);
        assert_eq!(a.port, 8101);
        assert_eq!(a.base_url(), "http://127.0.0.1:8101");
        let b = &seen["Beta-Agent-v2.1"];
        assert_eq!((b.version.as_str(), b.port), ("2.1.0", 8102));
        assert_eq!(b.capabilities, ["summarize"]);
        assert!(b.addresses.contains(&std::net::IpAddr::V4(ip)));

        // A changed manifest is announced again.
        let alpha = alpha
            .update(
                &manifest(
                    "urn:asap:agent:alpha",
                    "Alpha Agent",
                    "1.1.0",
                    &["echo", "shout", "sing"],
                ),
                "http://127.0.0.1:8101/.well-known/asap/manifest.json",
            )
            .unwrap();
        loop {
            match tokio::time::timeout_at(deadline, browser.next()).await {
                Ok(Some(DnsSdEvent::Appeared(info))) if info.version == "1.1.0" => {
                    assert_eq!(info.capabilities, ["echo", "shout", "sing"]);
                    break;
                }
                Ok(Some(_)) => {}
                other => panic!("the update must be announced: {other:?}"),
            }
        }
        // The name with a dot: browsers report it as advertised, and the disappearance
        // under the same full name the appearance gave.
        assert_eq!(b.fullname, beta.fullname());
        let gone = b.fullname.clone();
        beta.withdraw();
        loop {
            match tokio::time::timeout_at(deadline, browser.next()).await {
                Ok(Some(DnsSdEvent::Disappeared(name))) if name == gone => break,
                Ok(Some(_)) => {}
                other => panic!("the withdrawn agent must disappear: {other:?}"),
            }
        }
        // A fresh browser finds only the one still advertised.
        let present = Browser::start()
            .unwrap()
            .collect(Duration::from_secs(3))
            .await;
        let names: Vec<&str> = present.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["Alpha-Agent"]);
        browser.stop();
        alpha.withdraw();
    });
}

#[test]
fn a_watcher_follows_agents_on_the_local_network() {
    if netns::outside("a_watcher_follows_agents_on_the_local_network") {
        return;
    }
    use asap_protocol::discovery::{LivenessEvent, Watcher};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let m = manifest("urn:asap:agent:gamma", "Gamma", "1.0.0", &["echo"]);
        let server = asap_protocol::server::Server::builder()
            .manifest(m.clone())
            .build()
            .unwrap();
        tokio::spawn(server.serve(listener, std::future::pending()));

        let (mut events, watching) = Watcher::new().start();
        watching.follow_local(Browser::start().unwrap());
        let manifest_url = format!("{base}/.well-known/asap/manifest.json");
        let gamma = Advertiser::start(
            &m,
            &manifest_url,
            std::net::Ipv4Addr::LOCALHOST,
            addr.port(),
        )
        .unwrap();
        let next = async |events: &mut tokio::sync::mpsc::Receiver<LivenessEvent>| {
            tokio::time::timeout(Duration::from_secs(15), events.recv())
                .await
                .expect("an event within 15 s")
                .unwrap()
        };
        match next(&mut events).await {
            LivenessEvent::Up { url, .. } => assert_eq!(url, base),
            other => panic!("the advertised agent must be watched and up: {other:?}"),
        }
        assert_eq!(watching.urls(), std::slice::from_ref(&base));
        gamma.withdraw();
        assert_eq!(
            next(&mut events).await,
            LivenessEvent::Unwatched { url: base.clone() }
        );
        assert!(watching.urls().is_empty());
    });
}
