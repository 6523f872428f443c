//! The network allow-list a plugin runs under.
//!
//! The operator grants each plugin a list of endpoints; a transport is also granted,
//! for one call, the endpoint of the site it serves. Every way out of a plugin checks
//! this policy: TCP through wasi:sockets, HTTP through wasi:http and the host's TLS
//! connections. What is refused is recorded so the call's error can name it. A call that
//! serves a site also carries `[sites] allow` ([`Policy::for_site`]), which the TCP and
//! TLS connections check on the address they actually connect to.
//!
//! Entry forms: `192.0.2.7:8728`, `192.0.2.0/24:8728`, `10.0.0.0/8` (any port),
//! `[2001:db8::1]:443`, `2001:db8::/32`, `api.github.com:443`, `*.example.com:443`,
//! `https://hooks.example.com` (port 443), `http://127.0.0.1:9000`, and `*` (anything).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use super::site_allow::SiteAllow;

/// One allow-list entry that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allow-list entry `{entry}`: {reason}")]
pub struct GrantError {
    pub entry: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HostPattern {
    Any,
    Net {
        addr: IpAddr,
        prefix: u8,
    },
    Name(String),
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
}

/// One granted endpoint pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub(super) host: HostPattern,
    pub(super) port: Option<u16>,
}

impl Grant {
    pub fn parse(entry: &str) -> Result<Grant, GrantError> {
        let fail = |reason: &str| GrantError {
            entry: entry.to_string(),
            reason: reason.to_string(),
        };
        let mut text = entry.trim();
        let mut default_port = None;
        if let Some(rest) = text.strip_prefix("https://") {
            text = rest;
            default_port = Some(443);
        } else if let Some(rest) = text.strip_prefix("http://") {
            text = rest;
            default_port = Some(80);
        }
        let text = text.trim_end_matches('/');
        if text.is_empty() {
            return Err(fail("is empty"));
        }
        if text == "*" {
            return Ok(Grant {
                host: HostPattern::Any,
                port: None,
            });
        }
        let (host, port) = split_host_port(text).map_err(|r| fail(&r))?;
        let port = port.or(default_port);
        let host = parse_host(host).map_err(|r| fail(&r))?;
        Ok(Grant { host, port })
    }

    pub(super) fn matches_port(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    pub(super) fn matches_ip(&self, ip: IpAddr) -> bool {
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Net { addr, prefix } => in_network(ip, *addr, *prefix),
            HostPattern::Name(_) | HostPattern::Suffix(_) => false,
        }
    }

    /// Names compare without regard to ASCII case (patterns are kept in lower case).
    pub(super) fn matches_name(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.');
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Name(n) => n.eq_ignore_ascii_case(name),
            HostPattern::Suffix(s) => {
                name.len() > s.len()
                    && name.as_bytes()[name.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes())
            }
            HostPattern::Net { .. } => name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok_and(|ip| self.matches_ip(ip)),
        }
    }

    /// A grant of exactly `host:port`, for a site a transport serves.
    pub fn exact(host: &str, port: u16) -> Grant {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => HostPattern::Net {
                addr: ip,
                prefix: if ip.is_ipv4() { 32 } else { 128 },
            },
            Err(_) => HostPattern::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
        };
        Grant {
            host,
            port: Some(port),
        }
    }
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            HostPattern::Any => write!(f, "*")?,
            HostPattern::Net { addr, prefix } => {
                let full = if addr.is_ipv4() { 32 } else { 128 };
                match (addr, *prefix == full) {
                    (IpAddr::V6(a), true) => write!(f, "[{a}]")?,
                    (a, true) => write!(f, "{a}")?,
                    (a, false) => write!(f, "{a}/{prefix}")?,
                }
            }
            HostPattern::Name(n) => write!(f, "{n}")?,
            HostPattern::Suffix(s) => write!(f, "*{s}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

fn split_host_port(text: &str) -> Result<(&str, Option<u16>), String> {
    let parse_port = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("`{p}` is not a port number"))
    };
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address in brackets lacks its `]`".to_string())?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(parse_port(port)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}` after the address")),
        };
    }
    // A bare IPv6 address or network has several colons and no port.
    if text.matches(':').count() > 1 {
        return Ok((text, None));
    }
    match text.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((text, None)),
    }
}

fn parse_host(host: &str) -> Result<HostPattern, String> {
    if let Some((addr, prefix)) = host.split_once('/') {
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("`/{prefix}` is not a prefix length (0 to {max})"))?;
        return Ok(HostPattern::Net { addr, prefix });
    }
    if let Ok(addr) = host.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Ok(HostPattern::Net { addr, prefix });
    }
    let lower = host.to_ascii_lowercase();
    let (suffix, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest.to_string()),
        None => (false, lower),
    };
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        });
    if !valid {
        return Err(format!(
            "`{host}` is not a host name, IP address or network"
        ));
    }
    Ok(if suffix {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Name(name)
    })
}

pub(super) fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V4(_)) => ip
            .to_ipv4_mapped()
            .is_some_and(|v4| in_network(IpAddr::V4(v4), net, prefix)),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    }
}

/// The endpoints one call of one plugin may reach, and a record of what it was refused.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    grants: Arc<Vec<Grant>>,
    denied: Arc<Mutex<Vec<String>>>,
    /// For a call that serves a site: the operator's `[sites] allow` and the site's
    /// address. Every connection of such a call must also pass it, on the address it
    /// actually connects to.
    site: Option<Arc<(SiteAllow, String)>>,
}

impl Policy {
    /// Parses the operator's allow-list for a plugin.
    pub fn parse(entries: &[String]) -> Result<Vec<Grant>, GrantError> {
        entries.iter().map(|e| Grant::parse(e)).collect()
    }

    pub fn new(grants: Vec<Grant>) -> Policy {
        Policy {
            grants: Arc::new(grants),
            denied: Arc::default(),
            site: None,
        }
    }

    /// This policy for a call that serves the site at `address`: its connections must
    /// also be permitted by `allow`.
    pub fn for_site(mut self, allow: SiteAllow, address: String) -> Policy {
        self.site = Some(Arc::new((allow, address)));
        self
    }

    /// Why `[sites] allow` refuses a connection to `addr` (an address already resolved),
    /// or `None` when it permits it or the call serves no site.
    pub fn site_refusal(&self, addr: SocketAddr) -> Option<String> {
        let (allow, address) = self.site.as_deref()?;
        allow.check_connect(address, addr).err()
    }

    /// May the plugin connect to this resolved address?
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        self.grants
            .iter()
            .any(|g| g.matches_port(addr.port()) && g.matches_ip(addr.ip()))
    }

    /// May the plugin connect to `host:port`, where `host` is a name or an address?
    pub fn allows_name(&self, host: &str, port: u16) -> bool {
        self.grants
            .iter()
            .any(|g| g.matches_port(port) && g.matches_name(host))
    }

    /// Records a refusal, so the failed call can say which endpoint was refused.
    pub fn record_denial(&self, what: String) {
        if let Ok(mut denied) = self.denied.lock() {
            // A looping plugin must not grow this without end.
            if denied.len() < 16 && !denied.contains(&what) {
                denied.push(what);
            }
        }
    }

    /// The refusals recorded so far in this call.
    pub fn denials(&self) -> Vec<String> {
        self.denied.lock().map(|d| d.clone()).unwrap_or_default()
    }

    pub fn grants(&self) -> &[Grant] {
        &self.grants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> Policy {
        let entries: Vec<String> = entries.iter().map(|s| s.to_string()).collect();
        Policy::new(Policy::parse(&entries).expect("valid entries"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn addresses_and_networks() {
        let p = policy(&[
            "192.0.2.7:8728",
            "10.0.0.0/8",
            "[2001:db8::1]:443",
            "2001:db8:1::/48",
        ]);
        assert!(p.allows_addr(addr("192.0.2.7:8728")));
        assert!(!p.allows_addr(addr("192.0.2.7:8729")));
        assert!(!p.allows_addr(addr("192.0.2.8:8728")));
        assert!(p.allows_addr(addr("10.200.3.4:22")));
        assert!(!p.allows_addr(addr("11.0.0.1:22")));
        assert!(p.allows_addr(addr("[2001:db8::1]:443")));
        assert!(!p.allows_addr(addr("[2001:db8::2]:443")));
        assert!(p.allows_addr(addr("[2001:db8:1:ffff::9]:80")));
        assert!(p.allows_name("10.1.1.1", 8728));
    }

    #[test]
    fn names_and_urls() {
        let p = policy(&[
            "https://hooks.example.com",
            "*.github.com:443",
            "smtp.example.org",
        ]);
        assert!(p.allows_name("hooks.example.com", 443));
        assert!(p.allows_name("HOOKS.example.com.", 443));
        assert!(!p.allows_name("hooks.example.com", 80));
        assert!(p.allows_name("api.github.com", 443));
        assert!(p.allows_name("API.GitHub.com", 443));
        assert!(!p.allows_name("github.com", 443));
        assert!(!p.allows_name("evilgithub.com", 443));
        assert!(p.allows_name("smtp.example.org", 587));
        // A name grant never matches a raw address: the name may resolve elsewhere later.
        assert!(!p.allows_addr(addr("140.82.112.3:443")));
    }

    #[test]
    fn wildcard_and_empty() {
        assert!(policy(&["*"]).allows_addr(addr("203.0.113.1:1")));
        assert!(!policy(&[]).allows_addr(addr("127.0.0.1:80")));
        assert!(!policy(&[]).allows_name("localhost", 80));
    }

    #[test]
    fn bad_entries_say_why() {
        let err = Grant::parse("10.0.0.0/33").expect_err("bad prefix");
        assert_eq!(
            err.to_string(),
            "allow-list entry `10.0.0.0/33`: `/33` is not a prefix length (0 to 32)"
        );
        assert!(Grant::parse("host:http").is_err());
        assert!(Grant::parse("exa mple.com").is_err());
        assert!(Grant::parse("").is_err());
    }

    #[test]
    fn display_round_trips() {
        for entry in [
            "192.0.2.7:8728",
            "10.0.0.0/8",
            "[2001:db8::1]:443",
            "api.github.com:443",
            "*.example.com",
            "*",
        ] {
            let grant = Grant::parse(entry).expect("valid");
            assert_eq!(grant.to_string(), entry);
            assert_eq!(Grant::parse(&grant.to_string()), Ok(grant));
        }
    }

    #[test]
    fn a_site_call_checks_the_resolved_address_against_the_sites_policy() {
        let granted = policy(&["*"]);
        assert_eq!(
            granted.site_refusal(addr("127.0.0.1:8728")),
            None,
            "no site"
        );
        let for_site = granted.for_site(SiteAllow::default(), "router.example".into());
        assert!(
            for_site.allows_addr(addr("127.0.0.1:8728")),
            "the grants alone"
        );
        let why = for_site
            .site_refusal(addr("127.0.0.1:8728"))
            .expect("loopback refused for a site");
        assert!(
            why.starts_with("site address router.example resolves to 127.0.0.1"),
            "{why}"
        );
        assert_eq!(for_site.site_refusal(addr("192.0.2.1:8728")), None);
    }

    #[test]
    fn denials_are_bounded_and_unique() {
        let p = policy(&[]);
        for i in 0..100 {
            p.record_denial(format!("tcp 127.0.0.1:{}", i % 40));
        }
        p.record_denial("tcp 127.0.0.1:0".into());
        assert_eq!(p.denials().len(), 16);
    }
}
