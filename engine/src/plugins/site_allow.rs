//! Where the engine may connect for sites: the operator's `[sites] allow`.
//!
//! A site's address is chosen by whoever may manage sites, and the engine sends the
//! site's password and scripts there; so the operator decides which addresses sites may
//! have. The list uses the plugin allow-list grammar (`10.0.0.0/8`, `192.0.2.7:8728`,
//! `*.routers.example`, `*`). Without a list, anything is permitted except the reserved
//! ranges below. A reserved address is permitted only by an entry inside its range
//! (`127.0.0.0/8` or `127.0.0.5` for loopback): `*` or `0.0.0.0/0` never reach them.
//!
//! - loopback: 127.0.0.0/8, ::1
//! - link-local: 169.254.0.0/16, fe80::/10
//! - unspecified: 0.0.0.0, ::
//! - cloud metadata: 169.254.169.254, fd00:ec2::254, 100.100.100.200, and the names
//!   `metadata.google.internal` and `metadata` (permitted only when listed by name)
//!
//! A site is checked twice. When it is created, updated or imported, its address is
//! checked as written ([`SiteAllow::check_address`]): an IP address fully, a host name
//! against the name entries (a name the network entries might cover is let through to
//! the second check). When the engine connects for it, every address it actually
//! connects to is checked after resolution ([`SiteAllow::check_connect`]), so a name that
//! resolves (or is later re-pointed) to a refused address is refused then, with no window
//! between the lookup and the connect. An entry's port, when it has one, is checked at
//! connect time, when the port is known.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use super::net::{Grant, GrantError, HostPattern, in_network};

/// The setting, as messages name it.
const SETTING: &str = "[sites] allow";

/// A range refused unless an entry inside it is listed.
struct Reserved {
    net: IpAddr,
    prefix: u8,
    what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const LOOPBACK: &str = "a loopback address";
const LINK_LOCAL: &str = "a link-local address";
const UNSPECIFIED: &str = "the unspecified address";
const METADATA: &str = "a cloud metadata address";

const RESERVED: [Reserved; 9] = [
    Reserved {
        net: v4(127, 0, 0, 0),
        prefix: 8,
        what: LOOPBACK,
    },
    Reserved {
        net: IpAddr::V6(Ipv6Addr::LOCALHOST),
        prefix: 128,
        what: LOOPBACK,
    },
    Reserved {
        net: v4(169, 254, 0, 0),
        prefix: 16,
        what: LINK_LOCAL,
    },
    Reserved {
        net: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
        prefix: 10,
        what: LINK_LOCAL,
    },
    Reserved {
        net: v4(0, 0, 0, 0),
        prefix: 32,
        what: UNSPECIFIED,
    },
    Reserved {
        net: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        prefix: 128,
        what: UNSPECIFIED,
    },
    Reserved {
        net: v4(169, 254, 169, 254),
        prefix: 32,
        what: METADATA,
    },
    Reserved {
        net: IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
        prefix: 128,
        what: METADATA,
    },
    Reserved {
        net: v4(100, 100, 100, 200),
        prefix: 32,
        what: METADATA,
    },
];

/// Host names of cloud metadata services, refused unless listed by name.
const METADATA_NAMES: [&str; 2] = ["metadata.google.internal", "metadata"];

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    Reserved(&'static str),
    MetadataName,
    Unlisted,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Reserved(what) => f.write_str(what),
            Refusal::MetadataName => f.write_str("a cloud metadata name"),
            Refusal::Unlisted => f.write_str("not in the list"),
        }
    }
}

/// The operator's `[sites] allow`: which addresses sites may have. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteAllow {
    /// `None`: no list, anything but the reserved ranges.
    entries: Option<Arc<Vec<Grant>>>,
}

impl SiteAllow {
    /// Parses the operator's list; an empty list permits nothing.
    pub fn parse(entries: &[String]) -> Result<SiteAllow, GrantError> {
        let grants = entries
            .iter()
            .map(|e| Grant::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SiteAllow {
            entries: Some(Arc::new(grants)),
        })
    }

    /// Anything but the reserved ranges, and loopback too: for simulated routers on
    /// 127.0.0.0/8 (the demo, tests).
    pub fn with_loopback() -> SiteAllow {
        let entries = ["*", "127.0.0.0/8", "::1"].map(String::from);
        SiteAllow::parse(&entries).unwrap_or_default()
    }

    /// The list as written back in canonical form; `None` when there is none.
    pub fn entries(&self) -> Option<Vec<String>> {
        self.entries
            .as_ref()
            .map(|list| list.iter().map(ToString::to_string).collect())
    }

    /// Checks a site's address as written, when the site is created, updated or
    /// imported. The message names the address and the setting.
    pub fn check_address(&self, address: &str) -> Result<(), String> {
        let bare = address.trim_start_matches('[').trim_end_matches(']');
        let refusal = match bare.parse::<IpAddr>() {
            Ok(ip) => self.refuse_ip(canonical(ip), None),
            Err(_) => self.refuse_name(bare),
        };
        match refusal {
            None => Ok(()),
            Some(why) => Err(self.explain(&format!("`{address}` is {why}"))),
        }
    }

    /// Checks one address the engine is about to connect to for the site at
    /// `site_address` (as the site names it: an IP address or a host name).
    pub fn check_connect(&self, site_address: &str, addr: SocketAddr) -> Result<(), String> {
        let ip = canonical(addr.ip());
        let port = Some(addr.port());
        let bare = site_address
            .trim_start_matches('[')
            .trim_end_matches(']')
            .trim_end_matches('.');
        let site_ip = bare.parse::<IpAddr>().ok().map(canonical);
        let refusal = match self.refuse_reserved(ip, port) {
            Some(why) => Some(why),
            None => {
                // A host name the list names (by pattern) stands for whatever it resolves
                // to outside the reserved ranges; otherwise the address must be listed.
                let by_name = site_ip.is_none()
                    && self.lists(|g| {
                        !matches!(g.host, HostPattern::Net { .. })
                            && port_ok(g, port)
                            && g.matches_name(bare)
                    });
                (!by_name && !self.permits_listed_ip(ip, port)).then_some(Refusal::Unlisted)
            }
        };
        let Some(why) = refusal else {
            return Ok(());
        };
        let message = if site_ip == Some(ip) {
            format!("site address {site_address} is {why}, which {SETTING} does not permit")
        } else {
            format!(
                "site address {site_address} resolves to {ip}, which {SETTING} does not permit ({why})"
            )
        };
        Err(message)
    }

    fn explain(&self, refused: &str) -> String {
        let listed = match self.entries() {
            None => "it is not set, so only the reserved ranges are refused".to_owned(),
            Some(list) if list.is_empty() => "it lists nothing".to_owned(),
            Some(list) => format!("it lists {}", list.join(", ")),
        };
        format!(
            "{refused}, which {SETTING} does not permit ({listed}); an operator may list it in \
             {SETTING} (or YARDMASTER_SITES_ALLOW)"
        )
    }

    /// Whether some entry satisfies `f`; with no list, `*` stands in.
    fn lists(&self, f: impl Fn(&Grant) -> bool) -> bool {
        match &self.entries {
            None => f(&Grant::any()),
            Some(list) => list.iter().any(f),
        }
    }

    fn refuse_ip(&self, ip: IpAddr, port: Option<u16>) -> Option<Refusal> {
        if let Some(why) = self.refuse_reserved(ip, port) {
            return Some(why);
        }
        (!self.permits_listed_ip(ip, port)).then_some(Refusal::Unlisted)
    }

    /// A reserved address passes only an entry inside its range (in every range it is
    /// in: 169.254.169.254 is link-local and metadata both).
    fn refuse_reserved(&self, ip: IpAddr, port: Option<u16>) -> Option<Refusal> {
        RESERVED
            .iter()
            .filter(|r| in_network(ip, r.net, r.prefix))
            .find(|r| {
                !self.lists(|g| match g.host {
                    HostPattern::Net { addr, prefix } => {
                        prefix >= r.prefix
                            && in_network(addr, r.net, r.prefix)
                            && in_network(ip, addr, prefix)
                            && port_ok(g, port)
                    }
                    _ => false,
                })
            })
            .map(|r| Refusal::Reserved(r.what))
    }

    fn permits_listed_ip(&self, ip: IpAddr, port: Option<u16>) -> bool {
        self.lists(|g| {
            matches!(g.host, HostPattern::Any | HostPattern::Net { .. })
                && port_ok(g, port)
                && g.matches_ip(ip)
        })
    }

    fn refuse_name(&self, name: &str) -> Option<Refusal> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        if METADATA_NAMES.contains(&name.as_str()) {
            let named = self.lists(|g| matches!(&g.host, HostPattern::Name(n) if *n == name));
            return (!named).then_some(Refusal::MetadataName);
        }
        let by_name =
            self.lists(|g| !matches!(g.host, HostPattern::Net { .. }) && g.matches_name(&name));
        // A name may resolve into a listed network: that is known only when the engine
        // connects, and checked then.
        let by_network = self.lists(|g| matches!(g.host, HostPattern::Net { .. }));
        (!by_name && !by_network).then_some(Refusal::Unlisted)
    }
}

/// An entry's port, when it has one, is checked only when the port is known.
fn port_ok(grant: &Grant, port: Option<u16>) -> bool {
    port.is_none_or(|p| grant.matches_port(p))
}

/// IPv4-mapped IPv6 addresses (`::ffff:127.0.0.1`) are the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(entries: &[&str]) -> SiteAllow {
        SiteAllow::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>())
            .expect("valid entries")
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn by_default_reserved_addresses_are_refused_and_others_permitted() {
        let default = SiteAllow::default();
        for ok in [
            "192.0.2.10",
            "10.1.2.3",
            "2001:db8::1",
            "router.example",
            "localhost",
        ] {
            assert_eq!(default.check_address(ok), Ok(()), "{ok}");
        }
        for (bad, what) in [
            ("127.0.0.1", "a loopback address"),
            ("127.9.0.1", "a loopback address"),
            ("::1", "a loopback address"),
            ("[::1]", "a loopback address"),
            ("::ffff:127.0.0.1", "a loopback address"),
            ("169.254.1.1", "a link-local address"),
            ("fe80::1", "a link-local address"),
            ("0.0.0.0", "the unspecified address"),
            ("::", "the unspecified address"),
            ("169.254.169.254", "a link-local address"),
            ("fd00:ec2::254", "a cloud metadata address"),
            ("100.100.100.200", "a cloud metadata address"),
            ("metadata.google.internal", "a cloud metadata name"),
            ("METADATA.", "a cloud metadata name"),
        ] {
            let err = default.check_address(bad).expect_err(bad);
            assert!(
                err.starts_with(&format!("`{bad}` is {what}, which [sites] allow")),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn reserved_ranges_need_an_entry_inside_them() {
        let wide = allow(&["*", "0.0.0.0/0", "::/0"]);
        assert!(
            wide.check_address("127.0.0.1").is_err(),
            "`*` is not enough"
        );
        assert!(wide.check_address("169.254.169.254").is_err());
        assert!(wide.check_address("203.0.113.1").is_ok());

        let lab = allow(&["*", "127.0.0.0/8"]);
        assert!(lab.check_address("127.0.0.1").is_ok());
        assert!(lab.check_address("127.200.1.1").is_ok());
        assert!(
            lab.check_address("::1").is_err(),
            "only IPv4 loopback listed"
        );
        assert!(lab.check_address("169.254.169.254").is_err());

        // Link-local listed still leaves the metadata address inside it refused.
        let link = allow(&["169.254.0.0/16"]);
        assert!(link.check_address("169.254.3.4").is_ok());
        let err = link.check_address("169.254.169.254").expect_err("metadata");
        assert!(err.contains("a cloud metadata address"), "{err}");
        assert!(
            allow(&["169.254.169.254"])
                .check_address("169.254.169.254")
                .is_ok()
        );
        assert!(allow(&["metadata"]).check_address("metadata").is_ok());
    }

    #[test]
    fn a_list_limits_addresses_and_names() {
        let list = allow(&["10.0.0.0/8", "*.routers.example"]);
        assert!(list.check_address("10.20.30.40").is_ok());
        assert!(list.check_address("r1.routers.example").is_ok());
        let err = list.check_address("192.0.2.1").expect_err("unlisted");
        assert_eq!(
            err,
            "`192.0.2.1` is not in the list, which [sites] allow does not permit (it lists \
             10.0.0.0/8, *.routers.example); an operator may list it in [sites] allow (or \
             YARDMASTER_SITES_ALLOW)"
        );
        // A name the network entries may cover waits for the connect-time check.
        assert!(list.check_address("core.corp.example").is_ok());
        let names_only = allow(&["*.routers.example"]);
        assert!(names_only.check_address("core.corp.example").is_err());
        assert!(names_only.check_address("10.0.0.1").is_err());
        assert!(allow(&[]).check_address("10.0.0.1").is_err());
    }

    #[test]
    fn connections_are_checked_on_the_resolved_address() {
        let default = SiteAllow::default();
        let err = default
            .check_connect("localhost", at("127.0.0.1:8728"))
            .expect_err("loopback behind a name");
        assert_eq!(
            err,
            "site address localhost resolves to 127.0.0.1, which [sites] allow does not \
             permit (a loopback address)"
        );
        let err = default
            .check_connect("127.0.0.1", at("127.0.0.1:8728"))
            .expect_err("loopback");
        assert_eq!(
            err,
            "site address 127.0.0.1 is a loopback address, which [sites] allow does not permit"
        );
        assert!(
            default
                .check_connect("evil.example", at("[::ffff:169.254.169.254]:80"))
                .is_err()
        );
        assert!(
            default
                .check_connect("r1.example", at("192.0.2.1:8728"))
                .is_ok()
        );
        assert!(
            SiteAllow::with_loopback()
                .check_connect("localhost", at("127.0.0.1:8728"))
                .is_ok()
        );

        let list = allow(&["10.0.0.0/8:8728", "*.routers.example"]);
        assert!(list.check_connect("core.corp", at("10.1.1.1:8728")).is_ok());
        assert!(list.check_connect("core.corp", at("10.1.1.1:22")).is_err());
        assert!(
            list.check_connect("core.corp", at("192.0.2.1:8728"))
                .is_err()
        );
        assert!(
            list.check_connect("r1.routers.example", at("192.0.2.1:8728"))
                .is_ok()
        );
        // A listed name does not reach a reserved address.
        let err = list
            .check_connect("r1.routers.example", at("127.0.0.1:8728"))
            .expect_err("loopback");
        assert!(err.contains("resolves to 127.0.0.1"), "{err}");
    }
}
