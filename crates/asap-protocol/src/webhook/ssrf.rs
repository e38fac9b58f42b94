//! Which callback URLs a webhook may go to (wire spec section 12.2, hardened): only
//! `https` (unless development mode), and only public addresses unless an allow-list
//! says otherwise. Hosts are read the way a browser reads them (WHATWG URL: decimal,
//! octal and hex IPv4 forms, `127.1`, upper case, IDNA), every resolved address is
//! checked, and IPv4 addresses inside IPv6 are unwrapped and checked too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a URL or an address is refused. `Display` names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockReason {
    /// Not a URL.
    #[error("not a valid URL: {0}")]
    Malformed(String),
    /// A scheme other than `https` (or `http` in development mode).
    #[error("scheme '{scheme}' is not allowed (allowed: {allowed})")]
    Scheme {
        /// The URL's scheme.
        scheme: String,
        /// What is allowed.
        allowed: &'static str,
    },
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// User name or password in the URL.
    #[error("credentials in the URL are not allowed")]
    Credentials,
    /// The address is in a range that is not public.
    #[error("address {ip} is {range}")]
    Address {
        /// The address.
        ip: IpAddr,
        /// The range it is in.
        range: &'static str,
    },
    /// An IPv6 address that carries an IPv4 address which is not public.
    #[error("address {ip} embeds the IPv4 address {inner} ({how}), which is {range}")]
    Embedded {
        /// The IPv6 address.
        ip: Ipv6Addr,
        /// The IPv4 address inside it.
        inner: Ipv4Addr,
        /// How it is embedded (mapped, compatible, NAT64, 6to4, Teredo).
        how: &'static str,
        /// The range the IPv4 address is in.
        range: &'static str,
    },
    /// The host name resolves to an address that is not public.
    #[error("host '{host}' resolves to {ip}: {reason}")]
    Resolves {
        /// The host name.
        host: String,
        /// The offending address.
        ip: IpAddr,
        /// Why that address is refused.
        reason: Box<BlockReason>,
    },
    /// The host name does not resolve.
    #[error("host '{host}' does not resolve: {error}")]
    Unresolvable {
        /// The host name.
        host: String,
        /// The resolver's error.
        error: String,
    },
}

/// IPv4 ranges that are never a public webhook target, with their names.
const V4: &[(&str, &str)] = &[
    ("0.0.0.0/8", "'this network' (0.0.0.0/8)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (CGNAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation (TEST-NET-1)"),
    ("192.31.196.0/24", "AS112 service"),
    ("192.52.193.0/24", "AMT"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("192.175.48.0/24", "AS112 direct delegation"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (TEST-NET-2)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3)"),
    ("224.0.0.0/4", "multicast"),
    // Before 240.0.0.0/4, which contains it: the first match names the rule.
    ("255.255.255.255/32", "broadcast"),
    ("240.0.0.0/4", "reserved"),
];

/// IPv6 ranges that are never a public webhook target (IPv4-embedding ranges are
/// handled separately, so their IPv4 address can be named).
const V6: &[(&str, &str)] = &[
    ("::1/128", "loopback"),
    ("::/128", "unspecified"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("2001:db8::/32", "documentation"),
    ("2001:10::/28", "ORCHID"),
    ("2001:20::/28", "ORCHIDv2"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing SIDs"),
    ("fc00::/7", "unique local"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local (deprecated)"),
    ("ff00::/8", "multicast"),
];

/// The range `ip` falls in, from the tables above (the first match names it).
fn range_of(ip: IpAddr) -> Option<&'static str> {
    static TABLE: std::sync::OnceLock<Vec<(IpNet, &'static str)>> = std::sync::OnceLock::new();
    TABLE
        .get_or_init(|| {
            V4.iter()
                .chain(V6)
                .map(|(net, name)| (net.parse().expect("a valid range in the table"), *name))
                .collect()
        })
        .iter()
        .find(|(net, _)| net.contains(&ip))
        .map(|(_, name)| *name)
}

/// The IPv4 address an IPv6 address carries, and how.
fn embedded_v4(ip: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = ip.segments();
    let o = ip.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some((last32, "IPv4-mapped")),
        [0, 0, 0, 0, 0, 0, _, _] => Some((last32, "IPv4-compatible")),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some((last32, "NAT64")),
        [0x64, 0xff9b, 1, ..] => Some((last32, "local-use NAT64")),
        [0x2002, ..] => Some((Ipv4Addr::new(o[2], o[3], o[4], o[5]), "6to4")),
        // Teredo: the client's address is the last 32 bits, inverted.
        [0x2001, 0, ..] => Some((Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]), "Teredo")),
        _ => None,
    }
}

/// Why `ip` may not be a webhook target (`None`: public).
///
/// ```
/// use asap_protocol::webhook::blocked;
/// assert!(blocked("169.254.169.254".parse().unwrap()).is_some());
/// assert!(blocked("::ffff:10.0.0.1".parse().unwrap()).is_some());
/// assert!(blocked("93.184.216.34".parse().unwrap()).is_none());
/// ```
pub fn blocked(ip: IpAddr) -> Option<BlockReason> {
    match ip {
        IpAddr::V4(_) => range_of(ip).map(|range| BlockReason::Address { ip, range }),
        IpAddr::V6(v6) => {
            if let Some(range) = range_of(ip) {
                return Some(BlockReason::Address { ip, range });
            }
            let (inner, how) = embedded_v4(v6)?;
            match range_of(IpAddr::V4(inner)) {
                Some(range) => Some(BlockReason::Embedded {
                    ip: v6,
                    inner,
                    how,
                    range,
                }),
                // A public IPv4 inside IPv6 is a detour around IPv4 filtering at best.
                None if how == "IPv4-compatible" || how == "IPv4-mapped" => {
                    Some(BlockReason::Embedded {
                        ip: v6,
                        inner,
                        how,
                        range: "reachable directly as IPv4 (use that form)",
                    })
                }
                None => None,
            }
        }
    }
}

/// Where callbacks may go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UrlPolicy {
    /// Allow `http` as well as `https` (development only).
    pub allow_http: bool,
    /// Addresses allowed although not public (for example `127.0.0.1/32` in tests, or a
    /// private network's receivers). Nothing else non-public is ever allowed.
    pub allow: Vec<IpNet>,
}

impl UrlPolicy {
    /// The production policy: `https` to public addresses only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Development: `http` allowed and these ranges allowed.
    pub fn development(allow: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allow_http: true,
            allow: allow.into_iter().collect(),
        }
    }

    /// Reads an allow-list of CIDR ranges (`127.0.0.1/32`, `10.1.0.0/16`, `fd00::/8`).
    ///
    /// ```
    /// let allow = asap_protocol::webhook::UrlPolicy::parse_allow_list(["127.0.0.1/32"]).unwrap();
    /// assert_eq!(allow.len(), 1);
    /// assert!(asap_protocol::webhook::UrlPolicy::parse_allow_list(["localhost"]).is_err());
    /// ```
    pub fn parse_allow_list<S: AsRef<str>>(
        ranges: impl IntoIterator<Item = S>,
    ) -> Result<Vec<IpNet>, String> {
        ranges
            .into_iter()
            .map(|r| {
                let r = r.as_ref();
                r.trim()
                    .parse()
                    .map_err(|_| format!("{r:?} is not a CIDR range (like 127.0.0.1/32)"))
            })
            .collect()
    }

    /// Why this policy refuses `ip`, if it does.
    pub fn refuses(&self, ip: IpAddr) -> Option<BlockReason> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        blocked(ip)
    }

    /// Checks everything about `url` except name resolution: scheme, host, credentials,
    /// and the address when the host is an IP literal. Returns the parsed URL.
    pub fn check_syntax(&self, url: &str) -> Result<url::Url, BlockReason> {
        let parsed =
            url::Url::parse(url.trim()).map_err(|e| BlockReason::Malformed(e.to_string()))?;
        let allowed = if self.allow_http {
            "https, http"
        } else {
            "https"
        };
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => {
                return Err(BlockReason::Scheme {
                    scheme: other.to_owned(),
                    allowed,
                });
            }
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(BlockReason::Credentials);
        }
        match parsed.host() {
            None => Err(BlockReason::NoHost),
            Some(url::Host::Ipv4(ip)) => self.refuses(IpAddr::V4(ip)).map_or(Ok(()), Err),
            Some(url::Host::Ipv6(ip)) => self.refuses(IpAddr::V6(ip)).map_or(Ok(()), Err),
            Some(url::Host::Domain(name)) if name.trim_end_matches('.').is_empty() => {
                Err(BlockReason::NoHost)
            }
            Some(url::Host::Domain(_)) => Ok(()),
        }?;
        Ok(parsed)
    }

    /// Checks every address `host` resolved to; all must be allowed.
    pub fn check_resolved(&self, host: &str, addresses: &[IpAddr]) -> Result<(), BlockReason> {
        if addresses.is_empty() {
            return Err(BlockReason::Unresolvable {
                host: host.to_owned(),
                error: "no addresses".into(),
            });
        }
        for ip in addresses {
            if let Some(reason) = self.refuses(*ip) {
                return Err(BlockReason::Resolves {
                    host: host.to_owned(),
                    ip: *ip,
                    reason: Box::new(reason),
                });
            }
        }
        Ok(())
    }
}
