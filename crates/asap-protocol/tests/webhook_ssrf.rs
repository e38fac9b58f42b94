//! The SSRF corpus: every URL a webhook must never reach, with the rule that blocks it,
//! through the same check registration uses (`check_url`) and a test resolver for the
//! DNS names (including one whose answer changes between two resolutions).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use asap_protocol::webhook::{BlockReason, Resolver, UrlPolicy, check_url};

/// Fixed answers per name; `rebind.test` answers a public address once, then loopback.
struct TestResolver {
    answers: HashMap<&'static str, Vec<&'static str>>,
    rebind_calls: Mutex<u32>,
}

impl TestResolver {
    fn new() -> Self {
        let answers = HashMap::from([
            ("public.test", vec!["93.184.216.34"]),
            ("v6public.test", vec!["2606:2800:220:1:248:1893:25c8:1946"]),
            ("localhost", vec!["127.0.0.1", "::1"]),
            ("internal.test", vec!["10.0.0.5"]),
            ("metadata.test", vec!["169.254.169.254"]),
            ("mixed.test", vec!["93.184.216.34", "192.168.0.10"]),
            ("v6local.test", vec!["fd00::1"]),
            ("mapped.test", vec!["::ffff:127.0.0.1"]),
            ("cgnat.test", vec!["100.64.1.1"]),
        ]);
        Self {
            answers,
            rebind_calls: Mutex::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Resolver for TestResolver {
    async fn resolve(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        let host = host.trim_end_matches('.');
        if host == "rebind.test" {
            let mut calls = self.rebind_calls.lock().unwrap();
            *calls += 1;
            let ip = if *calls == 1 {
                "93.184.216.34"
            } else {
                "127.0.0.1"
            };
            return Ok(vec![ip.parse().unwrap()]);
        }
        self.answers
            .get(host)
            .map(|ips| ips.iter().map(|ip| ip.parse().unwrap()).collect())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "NXDOMAIN"))
    }
}

/// (URL, a fragment of the reason that must block it).
const BLOCKED: &[(&str, &str)] = &[
    // Schemes and URL shapes.
    ("http://public.test/hook", "scheme 'http' is not allowed"),
    ("ftp://public.test/", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://public.test:70/", "scheme 'gopher'"),
    ("javascript:alert(1)", "scheme 'javascript'"),
    ("not a url", "not a valid URL"),
    ("https://user:pass@public.test/", "credentials"),
    ("https://public.test@127.0.0.1/", "credentials"),
    // Loopback in every spelling.
    ("https://127.0.0.1/", "loopback"),
    ("https://127.0.0.2:8443/x", "loopback"),
    ("https://127.1/", "loopback"),
    ("https://0x7f.1/", "loopback"),
    ("https://0177.0.0.1/", "loopback"),
    ("https://2130706433/", "loopback"),
    ("https://0x7f000001/", "loopback"),
    ("https://017700000001/", "loopback"),
    ("https://127.000.000.001/", "loopback"),
    ("HTTPS://127.0.0.1/", "loopback"),
    (
        "https://\u{ff11}\u{ff12}\u{ff17}.\u{ff10}.\u{ff10}.\u{ff11}/",
        "loopback",
    ),
    ("https://127.0.0.1#@public.test/", "loopback"),
    ("https://127.0.0.1\\@public.test/", "loopback"),
    (
        "https://localhost/",
        "resolves to 127.0.0.1: address 127.0.0.1 is loopback",
    ),
    ("https://localhost./", "resolves to 127.0.0.1"),
    ("https://LOCALHOST/", "resolves to 127.0.0.1"),
    (
        "https://\u{ff4c}\u{ff4f}\u{ff43}\u{ff41}\u{ff4c}\u{ff48}\u{ff4f}\u{ff53}\u{ff54}/",
        "resolves to 127.0.0.1",
    ),
    // Private, this-network, CGNAT, broadcast, multicast, documentation, benchmarking.
    ("https://10.0.0.1/", "private (RFC 1918)"),
    ("https://10.255.255.255/", "private (RFC 1918)"),
    ("https://172.16.0.1/", "private (RFC 1918)"),
    ("https://172.31.255.254/", "private (RFC 1918)"),
    ("https://192.168.1.1/", "private (RFC 1918)"),
    ("https://0.0.0.0/", "'this network'"),
    ("https://0.1.2.3/", "'this network'"),
    ("https://100.64.0.1/", "CGNAT"),
    ("https://100.127.255.254/", "CGNAT"),
    ("https://100.100.100.200/", "CGNAT"),
    ("https://255.255.255.255/", "broadcast"),
    ("https://224.0.0.1/", "multicast"),
    ("https://239.255.255.250/", "multicast"),
    ("https://192.0.2.1/", "documentation (TEST-NET-1)"),
    ("https://198.51.100.7/", "documentation (TEST-NET-2)"),
    ("https://203.0.113.9/", "documentation (TEST-NET-3)"),
    ("https://198.18.0.1/", "benchmarking"),
    ("https://198.19.255.255/", "benchmarking"),
    ("https://240.0.0.1/", "reserved"),
    ("https://192.0.0.8/", "IETF protocol assignments"),
    // Link-local and cloud metadata.
    ("https://169.254.169.254/latest/meta-data/", "link-local"),
    ("https://169.254.170.2/v2/credentials", "link-local"),
    ("https://169.254.0.1/", "link-local"),
    ("https://[fd00:ec2::254]/", "unique local"),
    // IPv6.
    ("https://[::1]/", "loopback"),
    ("https://[::]/", "unspecified"),
    ("https://[fc00::1]/", "unique local"),
    ("https://[fd12:3456::1]/", "unique local"),
    ("https://[fe80::1]/", "link-local"),
    ("https://[ff02::1]/", "multicast"),
    ("https://[fec0::1]/", "site-local"),
    ("https://[2001:db8::1]/", "documentation"),
    // IPv4 hidden inside IPv6.
    ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
    (
        "https://[::ffff:7f00:1]/",
        "embeds the IPv4 address 127.0.0.1 (IPv4-mapped)",
    ),
    ("https://[::ffff:10.0.0.1]/", "private (RFC 1918)"),
    ("https://[::ffff:169.254.169.254]/", "link-local"),
    (
        "https://[::ffff:93.184.216.34]/",
        "reachable directly as IPv4",
    ),
    ("https://[::127.0.0.1]/", "IPv4-compatible"),
    (
        "https://[64:ff9b::a00:1]/",
        "embeds the IPv4 address 10.0.0.1 (NAT64)",
    ),
    ("https://[64:ff9b::7f00:1]/", "(NAT64), which is loopback"),
    ("https://[64:ff9b:1::a9fe:a9fe]/", "local-use NAT64"),
    ("https://[2002:7f00:1::1]/", "(6to4), which is loopback"),
    (
        "https://[2002:a00:1::]/",
        "embeds the IPv4 address 10.0.0.1 (6to4)",
    ),
    (
        "https://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",
        "embeds the IPv4 address 127.0.0.1 (Teredo)",
    ),
    // Names that resolve to what is not public.
    ("https://internal.test/", "resolves to 10.0.0.5"),
    ("https://metadata.test/", "resolves to 169.254.169.254"),
    ("https://mixed.test/", "resolves to 192.168.0.10"),
    ("https://v6local.test/", "resolves to fd00::1"),
    ("https://mapped.test/", "resolves to ::ffff:127.0.0.1"),
    ("https://cgnat.test/", "CGNAT"),
    ("https://nxdomain.test/", "does not resolve"),
];

const ALLOWED: &[&str] = &[
    "https://public.test/hook",
    "https://public.test:8443/a?b=c",
    "https://93.184.216.34/",
    "https://v6public.test/",
    "https://[2606:2800:220:1:248:1893:25c8:1946]/",
    "https://[64:ff9b::5db8:d822]/",
];

#[tokio::test]
async fn every_url_of_the_corpus_is_blocked_with_its_reason() {
    let resolver = TestResolver::new();
    let policy = UrlPolicy::strict();
    assert!(BLOCKED.len() >= 60, "the corpus has {} URLs", BLOCKED.len());
    let mut failures = Vec::new();
    for (url, reason) in BLOCKED {
        match check_url(url, &policy, &resolver).await {
            Ok(_) => failures.push(format!("{url}: allowed")),
            Err(error) if !error.to_string().contains(reason) => {
                failures.push(format!(
                    "{url}: blocked for {error:?} ({error}), expected {reason:?}"
                ));
            }
            Err(_) => {}
        }
    }
    for url in ALLOWED {
        if let Err(error) = check_url(url, &policy, &resolver).await {
            failures.push(format!("{url}: wrongly blocked: {error}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn the_allow_list_and_development_mode_are_explicit() {
    let resolver = TestResolver::new();
    let development = UrlPolicy::development(["127.0.0.1/32".parse().unwrap()]);
    check_url("http://127.0.0.1:9/hook", &development, &resolver)
        .await
        .unwrap();
    check_url("http://localhost:9/hook", &development, &resolver)
        .await
        .expect_err("localhost also answers ::1, which is not on the list");
    assert!(matches!(
        check_url("http://127.0.0.2/", &development, &resolver).await,
        Err(BlockReason::Address { .. })
    ));
    assert!(matches!(
        check_url("http://10.0.0.1/", &development, &resolver).await,
        Err(BlockReason::Address { .. })
    ));
    // A name whose answer changes: the first (public) answer passes the check; the
    // delivery's own resolution is checked again (see tests/webhook_queue.rs).
    let strict = UrlPolicy::strict();
    check_url("https://rebind.test/", &strict, &resolver)
        .await
        .unwrap();
    let second = check_url("https://rebind.test/", &strict, &resolver).await;
    assert!(
        second
            .unwrap_err()
            .to_string()
            .contains("resolves to 127.0.0.1"),
        "the second answer is loopback"
    );
}
