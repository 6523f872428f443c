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
//!
//! A grant made from what a user typed rather than what the operator wrote (a job's
//! `notify_url`) is *public only* ([`Grant::public_only`]): it holds for an address
//! only when that address is public ([`is_public`]), judged on the address actually
//! connected to, after DNS, so a name that resolves (or rebinds) to loopback, a private
//! network or a metadata service is refused. The engine's own HTTP client applies it
//! ([`Policy::allows_connect`]); the other ways out honour it by refusing such a grant
//! unless the address itself is public.

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
    /// Holds only for public addresses: see [`Grant::public_only`].
    public_only: bool,
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
                public_only: false,
            });
        }
        let (host, port) = split_host_port(text).map_err(|r| fail(&r))?;
        let port = port.or(default_port);
        let host = parse_host(host).map_err(|r| fail(&r))?;
        Ok(Grant {
            host,
            port,
            public_only: false,
        })
    }

    /// Any host, any port.
    pub(super) fn any() -> Grant {
        Grant {
            host: HostPattern::Any,
            port: None,
            public_only: false,
        }
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
        Grant {
            host: exact_host(host),
            port: Some(port),
            public_only: false,
        }
    }

    /// A grant of `host` on any port, for a host the operator named outright (a plain
    /// http notification receiver). None for what is not a single host or address.
    pub fn host(host: &str) -> Option<Grant> {
        let bare = host.trim().trim_start_matches('[').trim_end_matches(']');
        if bare.is_empty() || bare.contains(['/', '*']) {
            return None;
        }
        if bare.parse::<IpAddr>().is_err() {
            parse_host(bare).ok()?;
        }
        Some(Grant {
            host: exact_host(bare),
            port: None,
            public_only: false,
        })
    }

    /// `host:port`, but only where it is a public address: for an endpoint a user
    /// named, such as a job's `notify_url`. A name is judged by each address it
    /// resolves to when the connection is made.
    pub fn public_only(host: &str, port: u16) -> Grant {
        Grant {
            public_only: true,
            ..Grant::exact(host, port)
        }
    }

    /// Whether this grant lets a connection to `addr` through, given the address itself.
    fn admits(&self, addr: IpAddr) -> bool {
        !self.public_only || is_public(addr)
    }
}

fn exact_host(host: &str) -> HostPattern {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => HostPattern::Net {
            addr: ip,
            prefix: if ip.is_ipv4() { 32 } else { 128 },
        },
        Err(_) => HostPattern::Name(bare.trim_end_matches('.').to_ascii_lowercase()),
    }
}

/// Whether `ip` is an address of the public internet: not loopback, private
/// (10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10, where cloud metadata
/// services also live), link-local (169.254/16 with the usual metadata address,
/// fe80::/10), unspecified, "this network" (0/8), broadcast, multicast, benchmarking,
/// documentation or reserved. IPv6 forms that carry an IPv4 address (mapped,
/// compatible, NAT64, 6to4) are judged by that address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let segments = v6.segments();
            let embedded = |hi: usize| {
                std::net::Ipv4Addr::new(
                    (segments[hi] >> 8) as u8,
                    segments[hi] as u8,
                    (segments[hi + 1] >> 8) as u8,
                    segments[hi + 1] as u8,
                )
            };
            let bits = u128::from(v6);
            let in_net = |net: u128, prefix: u32| {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                bits & mask == net & mask
            };
            if v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() {
                return false;
            }
            // ::a.b.c.d (IPv4-compatible, deprecated) and 64:ff9b::/96 (NAT64).
            if in_net(0, 96) || in_net(0x0064_ff9b << 96, 96) {
                return public_v4(embedded(6));
            }
            // 64:ff9b:1::/48 (local NAT64): never public.
            if in_net(0x0064_ff9b_0001 << 80, 48) {
                return false;
            }
            // 2002::/16 (6to4) carries the IPv4 address after its prefix.
            if in_net(0x2002 << 112, 16) {
                return public_v4(embedded(1));
            }
            !(in_net(0xfc00 << 112, 7) // unique local, fd00:ec2::254 among them
                || in_net(0xfe80 << 112, 10) // link-local
                || in_net(0xfec0 << 112, 10) // site-local (deprecated)
                || in_net(0x2001_0db8 << 96, 32) // documentation
                || in_net(0x0100 << 112, 64) // discard-only
                || in_net(0x2001 << 112, 23)) // IETF protocol assignments (Teredo etc.)
        }
    }
}

fn public_v4(ip: std::net::Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
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

/// What one call may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The plugin's allow-list, plus these grants for this call (a transport's site).
    AllowListAnd(Vec<Grant>),
    /// These grants alone: for a job's `notify_url`, whose receivers the operator
    /// governs through `[notify]`, not through the plugin's allow-list.
    Only(Vec<Grant>),
}

impl From<Vec<Grant>> for Reach {
    fn from(extra: Vec<Grant>) -> Reach {
        Reach::AllowListAnd(extra)
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

    /// Whether this call serves a site.
    pub fn serves_site(&self) -> bool {
        self.site.is_some()
    }

    /// The address of the site this call serves, as the site names it.
    pub fn site_address(&self) -> Option<&str> {
        self.site.as_deref().map(|(_, address)| address.as_str())
    }

    /// May the plugin connect to this resolved address?
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        self.grants
            .iter()
            .any(|g| g.matches_port(addr.port()) && g.matches_ip(addr.ip()) && g.admits(addr.ip()))
    }

    /// May the plugin connect to `host:port`, where `host` is a name or an address,
    /// whatever it resolves to? Public-only grants never say so: they need the address.
    pub fn allows_name(&self, host: &str, port: u16) -> bool {
        self.grants
            .iter()
            .any(|g| !g.public_only && g.matches_port(port) && g.matches_name(host))
    }

    /// Might some address of `host:port` be allowed? Asked before resolving it; the
    /// connection itself is judged by [`Policy::allows_connect`].
    pub fn may_reach(&self, host: &str, port: u16) -> bool {
        self.grants
            .iter()
            .any(|g| g.matches_port(port) && g.matches_name(host))
    }

    /// May the plugin connect to `addr`, which `host:port` resolved to? Yes when the
    /// address is granted, when the name is granted whatever it resolves to, or when a
    /// public-only grant names it and the address is public.
    pub fn allows_connect(&self, host: &str, port: u16, addr: SocketAddr) -> bool {
        self.allows_addr(addr)
            || self.allows_name(host, port)
            || self.grants.iter().any(|g| {
                g.public_only
                    && g.matches_port(port)
                    && g.matches_name(host)
                    && is_public(addr.ip())
            })
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
    fn public_addresses() {
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
        for internal in [
            "127.0.0.1",
            "127.12.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(internal.parse().expect("ip")), "{internal}");
        }
    }

    #[test]
    fn a_public_only_grant_holds_only_for_public_addresses() {
        let p = Policy::new(vec![
            Grant::public_only("hooks.example.com", 443),
            Grant::public_only("127.0.0.1", 9000),
        ]);
        // Before resolving: the name might be reachable.
        assert!(p.may_reach("hooks.example.com", 443));
        assert!(!p.may_reach("hooks.example.com", 80));
        assert!(!p.may_reach("other.example.com", 443));
        // Never by name alone, whatever it resolves to.
        assert!(!p.allows_name("hooks.example.com", 443));
        assert!(!p.allows_name("127.0.0.1", 9000));
        // By the address connected to.
        assert!(p.allows_connect("hooks.example.com", 443, addr("93.184.216.34:443")));
        for internal in [
            "127.0.0.1:443",
            "10.0.0.1:443",
            "169.254.169.254:443",
            "[::1]:443",
        ] {
            assert!(
                !p.allows_connect("hooks.example.com", 443, addr(internal)),
                "{internal}"
            );
        }
        assert!(!p.allows_connect("hooks.example.com", 80, addr("93.184.216.34:80")));
        // A literal internal address is refused on every path.
        assert!(!p.allows_addr(addr("127.0.0.1:9000")));
        assert!(!p.allows_connect("127.0.0.1", 9000, addr("127.0.0.1:9000")));
        // An operator's host grant beside it holds whatever the name resolves to.
        let listed = Policy::new(vec![
            Grant::public_only("hooks.internal", 443),
            Grant::host("hooks.internal").expect("a host"),
            Grant::host("127.12.0.1").expect("an address"),
        ]);
        assert!(listed.allows_connect("hooks.internal", 8080, addr("10.0.0.5:8080")));
        assert!(listed.allows_connect("127.12.0.1", 9000, addr("127.12.0.1:9000")));
        assert!(!listed.allows_connect("127.12.0.2", 9000, addr("127.12.0.2:9000")));
        assert!(Grant::host("10.0.0.0/8").is_none());
        assert!(Grant::host("*.example.com").is_none());
        assert!(Grant::host("").is_none());
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
