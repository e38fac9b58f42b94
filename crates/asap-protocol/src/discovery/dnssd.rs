//! DNS-SD on the local network (wire spec section 13.2): agents advertise themselves as
//! `_asap._tcp.local.` with `version`, `capabilities` and `manifest_url` TXT records,
//! and browsers list them as they appear and disappear. IPv4 only, as the reference.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use mdns_sd::{IfKind, ServiceDaemon, ServiceEvent, ServiceInfo};
use serde::Serialize;

use crate::model::Manifest;

/// The service type.
pub const SERVICE_TYPE: &str = "_asap._tcp.local.";

/// Why DNS-SD failed: the mDNS daemon's (or the address parser's) error.
#[derive(Debug, thiserror::Error)]
#[error("DNS-SD: {0}")]
pub struct DnsSdError(#[source] pub Box<dyn std::error::Error + Send + Sync>);

fn dnssd(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> DnsSdError {
    DnsSdError(e.into())
}

/// The instance name the reference derives from a manifest name: every character that
/// is not a word character, `-` or `.` becomes `-`, leading and trailing `-` are dropped,
/// at most 63 characters, `asap-agent` if nothing is left.
///
/// ```
/// use asap_protocol::discovery::instance_name;
/// assert_eq!(instance_name("Research Agent v1.0!"), "Research-Agent-v1.0");
/// assert_eq!(instance_name("Échø agent"), "Échø-agent");
/// assert_eq!(instance_name("  "), "asap-agent");
/// ```
pub fn instance_name(name: &str) -> String {
    let replaced: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed: String = replaced.trim_matches('-').chars().take(63).collect();
    if trimmed.is_empty() {
        "asap-agent".to_owned()
    } else {
        trimmed
    }
}

/// An agent found on the network (the reference's `AgentInfo`, plus its addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentInfo {
    /// The instance name.
    pub name: String,
    /// The full service name (`<instance>._asap._tcp.local.`), as
    /// [`DnsSdEvent::Disappeared`] reports it.
    pub fullname: String,
    /// The manifest version (TXT `version`).
    pub version: String,
    /// Skill ids (TXT `capabilities`).
    pub capabilities: Vec<String>,
    /// Where its manifest is (TXT `manifest_url`).
    pub manifest_url: String,
    /// The advertised host name.
    pub host: String,
    /// The ASAP port.
    pub port: u16,
    /// The advertised IPv4 addresses.
    pub addresses: Vec<IpAddr>,
}

impl AgentInfo {
    /// The agent's base URL, for [`crate::client::Client::discover`].
    pub fn base_url(&self) -> String {
        super::agent_base_url(&self.manifest_url)
    }
}

fn txt(manifest: &Manifest, manifest_url: &str) -> HashMap<String, String> {
    let cut = |s: &str| s.chars().take(255).collect::<String>();
    let skills: Vec<&str> = manifest
        .capabilities
        .skills
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    HashMap::from([
        ("version".to_owned(), cut(&manifest.version)),
        ("capabilities".to_owned(), cut(&skills.join(","))),
        ("manifest_url".to_owned(), cut(manifest_url)),
    ])
}

fn daemon() -> Result<ServiceDaemon, DnsSdError> {
    let daemon = ServiceDaemon::new().map_err(dnssd)?;
    daemon.disable_interface(IfKind::IPv6).map_err(dnssd)?;
    daemon.enable_interface(IfKind::LoopbackV4).map_err(dnssd)?;
    Ok(daemon)
}

/// Advertises one agent until withdrawn (or dropped).
pub struct Advertiser {
    daemon: ServiceDaemon,
    /// The name as registered (escaped), for unregistering.
    registered_name: String,
    host: String,
    ip: Ipv4Addr,
    port: u16,
    instance: String,
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.registered_name)
            .field("ip", &self.ip)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Advertiser {
    /// Advertises `manifest`'s agent on `ip`:`port`, its manifest at `manifest_url`
    /// (IPv4 only, as the reference advertises).
    pub fn start(
        manifest: &Manifest,
        manifest_url: &str,
        ip: Ipv4Addr,
        port: u16,
    ) -> Result<Self, DnsSdError> {
        let instance = instance_name(&manifest.name);
        let host = format!("{}.local.", instance.to_lowercase().replace('.', "-"));
        let advertiser = Self {
            daemon: daemon()?,
            registered_name: String::new(),
            host,
            ip,
            port,
            instance,
        };
        advertiser.announce(manifest, manifest_url)
    }

    fn announce(mut self, manifest: &Manifest, manifest_url: &str) -> Result<Self, DnsSdError> {
        let info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.instance,
            &self.host,
            IpAddr::V4(self.ip),
            self.port,
            txt(manifest, manifest_url),
        )
        .map_err(dnssd)?;
        self.registered_name = info.get_fullname().to_owned();
        self.daemon.register(info).map_err(dnssd)?;
        Ok(self)
    }

    /// Re-announces with the manifest's current version and skills.
    pub fn update(self, manifest: &Manifest, manifest_url: &str) -> Result<Self, DnsSdError> {
        self.announce(manifest, manifest_url)
    }

    /// The full service name (`<instance>._asap._tcp.local.`), as browsers report it.
    pub fn fullname(&self) -> String {
        unescape(&self.registered_name)
    }

    /// Withdraws the advertisement (a goodbye packet) and stops.
    pub fn withdraw(self) {
        if let Ok(done) = self.daemon.unregister(&self.registered_name) {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
        if let Ok(done) = self.daemon.shutdown() {
            let _ = done.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// What a browser sees.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DnsSdEvent {
    /// An agent appeared (or its record changed).
    Appeared(AgentInfo),
    /// An agent withdrew; its full service name.
    Disappeared(String),
}

/// Lists agents on the local network as they appear and disappear.
pub struct Browser {
    daemon: ServiceDaemon,
    events: tokio::sync::mpsc::Receiver<DnsSdEvent>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Browser")
    }
}

fn agent_info(service: &mdns_sd::ResolvedService) -> Option<AgentInfo> {
    let manifest_url = service.get_property_val_str("manifest_url")?.to_owned();
    let fullname = service.get_fullname().to_owned();
    let instance = fullname
        .strip_suffix(&format!(".{SERVICE_TYPE}"))
        .unwrap_or(&fullname)
        .to_owned();
    let mut addresses: Vec<IpAddr> = service
        .get_addresses_v4()
        .into_iter()
        .map(IpAddr::V4)
        .collect();
    addresses.sort();
    Some(AgentInfo {
        name: instance,
        fullname,
        version: service
            .get_property_val_str("version")
            .unwrap_or_default()
            .to_owned(),
        capabilities: service
            .get_property_val_str("capabilities")
            .unwrap_or_default()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        manifest_url,
        host: service.get_hostname().to_owned(),
        port: service.get_port(),
        addresses,
    })
}

/// A full name as mdns-sd keeps registrations (`.` and `\\` inside the instance label
/// escaped with `\\`), in the plain form browsers report.
fn unescape(label: &str) -> String {
    let mut out = String::with_capacity(label.len());
    let mut chars = label.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some(next @ ('.' | '\\'))) => {
                out.push(next);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Browser {
    /// Starts browsing `_asap._tcp.local.`.
    pub fn start() -> Result<Self, DnsSdError> {
        let daemon = daemon()?;
        let receiver = daemon.browse(SERVICE_TYPE).map_err(dnssd)?;
        let (tx, events) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            while let Ok(event) = receiver.recv_async().await {
                let event = match event {
                    ServiceEvent::ServiceResolved(service) => match agent_info(&service) {
                        Some(info) => DnsSdEvent::Appeared(info),
                        // Services without manifest_url are ignored, as in the reference.
                        None => continue,
                    },
                    ServiceEvent::ServiceRemoved(_, fullname) => DnsSdEvent::Disappeared(fullname),
                    _ => continue,
                };
                if tx.send(event).await.is_err() {
                    break;
                }
            }
        });
        Ok(Self { daemon, events })
    }

    /// The next appearance or disappearance.
    pub async fn next(&mut self) -> Option<DnsSdEvent> {
        self.events.recv().await
    }

    /// The agents present after browsing for `duration` (the reference browses 2 s).
    pub async fn collect(mut self, duration: Duration) -> Vec<AgentInfo> {
        let mut present: HashMap<String, AgentInfo> = HashMap::new();
        let deadline = tokio::time::Instant::now() + duration;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.next()).await {
            match event {
                DnsSdEvent::Appeared(info) => {
                    present.insert(info.fullname.clone(), info);
                }
                DnsSdEvent::Disappeared(fullname) => {
                    present.remove(&fullname);
                }
            }
        }
        drop(self); // stops browsing
        let mut agents: Vec<AgentInfo> = present.into_values().collect();
        agents.sort_by(|a, b| a.name.cmp(&b.name));
        agents
    }

    /// Stops browsing (also done when the browser is dropped).
    pub fn stop(&self) {
        let _ = self.daemon.shutdown();
    }
}
