//! The webhook SSRF policy: the allow-list parser, the URL check (WHATWG host forms) and
//! the address rules, including IPv4 addresses carried inside IPv6 ones.
//!
//! Input: a flags byte, then text whose first line is a comma-separated allow-list and
//! whose second is the URL; the raw bytes after the flags also give addresses to check.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use asap_protocol::webhook::{UrlPolicy, blocked};
use libfuzzer_sys::fuzz_target;

/// Addresses that are never public, whatever their form.
fn obviously_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}

fn check_address(policy: &UrlPolicy, ip: IpAddr) {
    let refused = policy.refuses(ip);
    let allowed = policy.allow.iter().any(|net| net.contains(&ip));
    assert_eq!(refused.is_none(), allowed || blocked(ip).is_none(), "{ip}");
    if obviously_private(ip) && !allowed {
        assert!(refused.is_some(), "{ip} passes");
    }
    if let IpAddr::V4(v4) = ip {
        // The same address mapped into IPv6 is never a way around the rules.
        let mapped = IpAddr::V6(v4.to_ipv6_mapped());
        assert!(blocked(mapped).is_some(), "{mapped} passes");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut lines = text.splitn(2, '\n');
    let allow_line = lines.next().unwrap_or_default();
    let url = lines.next().unwrap_or_default();
    let allow = if allow_line.is_empty() {
        Vec::new()
    } else {
        UrlPolicy::parse_allow_list(allow_line.split(',')).unwrap_or_default()
    };
    let policy = if flags & 1 == 1 {
        UrlPolicy::development(allow)
    } else {
        {
            let mut value = UrlPolicy::strict();
            value.allow = allow;
            value
        }
    };
    if let Ok(parsed) = policy.check_syntax(url) {
        assert!(
            parsed.scheme() == "https" || (policy.allow_http && parsed.scheme() == "http"),
            "{parsed}"
        );
        assert!(parsed.username().is_empty() && parsed.password().is_none());
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => assert!(policy.refuses(IpAddr::V4(ip)).is_none()),
            Some(url::Host::Ipv6(ip)) => assert!(policy.refuses(IpAddr::V6(ip)).is_none()),
            Some(url::Host::Domain(name)) => assert!(!name.trim_end_matches('.').is_empty()),
            None => panic!("accepted without a host: {parsed}"),
        }
    }
    let mut addresses = Vec::new();
    for chunk in rest.chunks_exact(16) {
        let octets: [u8; 16] = chunk.try_into().expect("16 bytes");
        addresses.push(IpAddr::V6(Ipv6Addr::from(octets)));
        let v4: [u8; 4] = chunk[..4].try_into().expect("4 bytes");
        addresses.push(IpAddr::V4(Ipv4Addr::from(v4)));
    }
    for ip in &addresses {
        check_address(&policy, *ip);
    }
    let all_allowed = addresses.iter().all(|ip| policy.refuses(*ip).is_none());
    let resolved = policy.check_resolved("fuzz.example", &addresses);
    assert_eq!(resolved.is_ok(), !addresses.is_empty() && all_allowed);
});
