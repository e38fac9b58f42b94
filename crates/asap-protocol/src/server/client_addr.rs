//! The client's address behind reverse proxies: `X-Forwarded-For` (or, when so
//! configured, `Forwarded`, RFC 7239), believed only when the direct peer is a trusted
//! proxy.
//!
//! The chain of addresses is read from the right (the hop nearest this server): each
//! trusted proxy is skipped, and the first address that is not one is the client. A
//! header from an untrusted peer is ignored, so a client cannot choose the address it
//! is rate-limited and logged under by sending the header itself. Exactly one header is
//! read: a proxy appends to the one it maintains and passes the other through as the
//! client wrote it (nginx forwards a client's own `Forwarded` untouched), so reading
//! both would let the client pick.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Which header trusted proxies maintain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx's `$proxy_add_x_forwarded_for`, HAProxy's `option
    /// forwardfor`, most load balancers): the default.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239) `for=` parameters.
    Forwarded,
}

impl std::str::FromStr for ForwardedHeader {
    type Err = TrustedProxyError;

    /// `x-forwarded-for` or `forwarded` (any case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err(TrustedProxyError::Header { name: s.to_owned() }),
        }
    }
}

/// The networks whose connections may say, in the [`ForwardedHeader`] they maintain,
/// which client they forward for. Empty (the default) trusts no one: the peer's own
/// address is the client's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<IpNet>,
    header: ForwardedHeader,
}

impl TrustedProxies {
    /// Trusts proxies in `networks`, reading `X-Forwarded-For`.
    pub fn new(networks: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            networks: networks.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Reads `header` instead of `X-Forwarded-For`.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// Parses CIDR ranges (`10.0.0.0/8`) or single addresses (`127.0.0.1`); empty
    /// entries are skipped.
    ///
    /// ```
    /// use asap_protocol::server::TrustedProxies;
    /// let trusted = TrustedProxies::parse(["10.0.0.0/8", "::1"]).unwrap();
    /// assert!(trusted.trusts("10.1.2.3".parse().unwrap()));
    /// assert!(!trusted.trusts("192.0.2.1".parse().unwrap()));
    /// assert!(TrustedProxies::parse(["10.0.0.0/33"]).is_err());
    /// ```
    pub fn parse<S: AsRef<str>>(
        ranges: impl IntoIterator<Item = S>,
    ) -> Result<Self, TrustedProxyError> {
        let networks = ranges
            .into_iter()
            .filter(|range| !range.as_ref().trim().is_empty())
            .map(|range| {
                let range = range.as_ref().trim();
                range.parse::<IpNet>().or_else(|source| {
                    range
                        .parse::<IpAddr>()
                        .map(IpNet::from)
                        .map_err(|_| TrustedProxyError::Range {
                            range: range.to_owned(),
                            source,
                        })
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(networks))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.iter().any(|net| net.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`: the peer itself
    /// unless it is trusted; otherwise the nearest address in the forwarded chain that
    /// is not a trusted proxy. An entry that is not an address (`unknown`, an
    /// obfuscated name, garbage) ends the walk at the last trusted hop, so such
    /// requests are attributed to the proxy, never to an address a client wrote.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let chain = match self.header {
            ForwardedHeader::XForwardedFor => x_forwarded_for_chain(headers),
            ForwardedHeader::Forwarded => forwarded_chain(headers),
        };
        let Some(chain) = chain else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.into_iter().rev() {
            match hop {
                Some(ip) => {
                    client = ip.to_canonical();
                    if !self.trusts(client) {
                        return client;
                    }
                }
                None => return client,
            }
        }
        client
    }
}

/// Why a trusted proxy setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustedProxyError {
    /// A trusted proxy range that is neither a CIDR range nor an address.
    #[error(
        "invalid trusted proxy {range:?}: expected a CIDR range such as 10.0.0.0/8 or an address"
    )]
    Range {
        /// The range as given.
        range: String,
        /// Why it is not a CIDR range.
        source: ipnet::AddrParseError,
    },
    /// A forwarded header other than `x-forwarded-for` and `forwarded`.
    #[error("invalid trusted proxy header {name:?}: expected x-forwarded-for or forwarded")]
    Header {
        /// The header as given.
        name: String,
    },
}

/// The comma-separated entries of every `name` header, in order, each as text when it
/// is (an entry that is not UTF-8 spoils itself only, not the whole header: otherwise
/// a client could blank a proxy's header and be counted as the proxy).
fn entries<'h>(headers: &'h HeaderMap, name: &str) -> Vec<Option<&'h str>> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|entry| std::str::from_utf8(entry).ok().map(str::trim))
        .filter(|entry| entry != &Some(""))
        .collect()
}

/// The `for=` addresses of every `Forwarded` header, in order (`None` for an element
/// that names no address or does not parse); `None` when there is no such header.
fn forwarded_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let chain: Vec<Option<IpAddr>> = entries(headers, http::header::FORWARDED.as_str())
        .into_iter()
        .map(|element| {
            let element = rfc7239::parse(element?).next()?.ok()?;
            element.forwarded_for.and_then(|node| node.ip().copied())
        })
        .collect();
    (!chain.is_empty()).then_some(chain)
}

/// The addresses of every `X-Forwarded-For` header, in order (`None` for an entry that
/// is not an address).
fn x_forwarded_for_chain(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    let chain: Vec<Option<IpAddr>> = entries(headers, "x-forwarded-for")
        .into_iter()
        .map(|entry| {
            let entry = entry?;
            entry
                .parse::<IpAddr>()
                .ok()
                .or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
        })
        .collect();
    (!chain.is_empty()).then_some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let spoof = headers(&[("x-forwarded-for", "1.2.3.4"), ("forwarded", "for=5.6.7.8")]);
        assert_eq!(trusted.client_ip(ip("192.0.2.9"), &spoof), ip("192.0.2.9"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &spoof),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_chain_is_walked_from_the_right_past_trusted_proxies() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8", "127.0.0.1"]).unwrap();
        // The client prepended a spoofed entry; the proxies appended the real ones.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.0.0.2")]);
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.7"));
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "203.0.113.7:4711"),
        ]);
        assert_eq!(trusted.client_ip(ip("10.9.9.9"), &h), ip("203.0.113.7"));
        // One header only: a client's own Forwarded is ignored when the proxy maintains
        // X-Forwarded-For (nginx passes it through), and the other way round.
        let h = headers(&[
            (
                "forwarded",
                "for=\"[2001:db8::7]:80\";proto=https, for=10.0.0.3",
            ),
            ("x-forwarded-for", "198.51.100.1"),
        ]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &h), ip("198.51.100.1"));
        let rfc = trusted.clone().header(ForwardedHeader::Forwarded);
        assert_eq!(rfc.client_ip(ip("10.0.0.1"), &h), ip("2001:db8::7"));
        // Every hop trusted: the leftmost.
        let h = headers(&[("x-forwarded-for", "10.0.0.5, 10.0.0.6")]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.5"));
        // No header: the proxy itself.
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        // IPv4-mapped IPv6 peers count as their IPv4 address.
        let h = headers(&[("x-forwarded-for", "203.0.113.8")]);
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), &h),
            ip("203.0.113.8")
        );
    }

    /// A byte that is not UTF-8 spoils its own entry only: the client cannot blank the
    /// proxy's header and be counted as the proxy.
    #[test]
    fn a_non_utf8_entry_does_not_hide_the_rest_of_the_header() {
        let trusted = TrustedProxies::parse(["127.0.0.1"]).unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff, 203.0.113.7").unwrap(),
        );
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.7"));
        let rfc = trusted.header(ForwardedHeader::Forwarded);
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            http::HeaderValue::from_bytes(b"for=\xff, for=203.0.113.8").unwrap(),
        );
        assert_eq!(rfc.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.8"));
    }

    #[test]
    fn entries_that_are_not_addresses_stop_at_the_last_trusted_hop() {
        let trusted = TrustedProxies::parse(["10.0.0.0/8"]).unwrap();
        let h = headers(&[("x-forwarded-for", "203.0.113.7, garbage, 10.0.0.2")]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.2"));
        let rfc = trusted.clone().header(ForwardedHeader::Forwarded);
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(rfc.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.1"));
        let h = headers(&[("forwarded", "for=_hidden, for=10.0.0.4")]);
        assert_eq!(rfc.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.4"));
        assert_eq!(
            "Forwarded".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::Forwarded)
        );
        assert_eq!(
            "x-real-ip".parse::<ForwardedHeader>(),
            Err(TrustedProxyError::Header {
                name: "x-real-ip".into()
            })
        );
    }

    #[test]
    fn a_bad_range_names_itself_and_keeps_the_parse_error() {
        let error = TrustedProxies::parse(["10.0.0.0/8", " 10.0.0.0/33 "]).unwrap_err();
        assert!(matches!(&error, TrustedProxyError::Range { range, .. } if range == "10.0.0.0/33"));
        let source = std::error::Error::source(&error);
        assert!(source.is_some_and(|e| e.is::<ipnet::AddrParseError>()));
        assert_eq!(
            error.to_string(),
            "invalid trusted proxy \"10.0.0.0/33\": expected a CIDR range such as 10.0.0.0/8 or an address"
        );
    }
}
