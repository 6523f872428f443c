//! One simulated router's configuration and the menu operations shared by the API and
//! the console: print (with `.proplist` and query stacks), add, set, remove, get, find,
//! export, backup and the log.
//!
//! Menus are static descriptions ([`MENUS`]): each names its fields in print order,
//! which ones are required, writable or booleans, and whether rows can be added. A row
//! stores one optional value per field of its menu, so a router's state is a few small
//! vectors. Everything a peer can grow is capped ([`MAX_ROWS`], [`MAX_LOG`]).

use std::collections::VecDeque;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use yardmaster_plugin_sdk::routeros::Query;

use super::Profile;

/// Rows a peer may add to one table; a real router runs out of memory somewhere too.
pub(crate) const MAX_ROWS: usize = 10_000;
/// Log entries kept, as RouterOS keeps 1,000 lines in memory by default.
pub(crate) const MAX_LOG: usize = 1_000;

/// A refused command: the `!trap` a client sees, or the console's error line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Trap {
    pub message: String,
    pub category: Option<u32>,
}

impl Trap {
    pub fn new(category: u32, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            category: Some(category),
        }
    }
    pub fn no_such_item() -> Self {
        Self::new(0, "no such item")
    }
    pub fn unknown_parameter(name: &str) -> Self {
        Self::new(1, format!("unknown parameter {name}"))
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub required: bool,
    pub writable: bool,
    pub boolean: bool,
}

const fn w(name: &'static str) -> Field {
    Field {
        name,
        default: None,
        required: false,
        writable: true,
        boolean: false,
    }
}
const fn req(name: &'static str) -> Field {
    Field {
        required: true,
        ..w(name)
    }
}
const fn ro(name: &'static str) -> Field {
    Field {
        writable: false,
        ..w(name)
    }
}
const fn def(name: &'static str, default: &'static str) -> Field {
    Field {
        default: Some(default),
        ..w(name)
    }
}
const fn ro_def(name: &'static str, default: &'static str) -> Field {
    Field {
        default: Some(default),
        writable: false,
        ..w(name)
    }
}
const fn flag(name: &'static str) -> Field {
    Field {
        default: Some("false"),
        boolean: true,
        ..w(name)
    }
}
const fn ro_flag(name: &'static str) -> Field {
    Field {
        default: Some("false"),
        boolean: true,
        writable: false,
        ..w(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TableId {
    Interface = 0,
    Address = 1,
    Filter = 2,
    Script = 3,
    Log = 4,
    File = 5,
    Arp = 6,
    Service = 7,
    Scheduler = 8,
}

const TABLES: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuKind {
    Table {
        table: TableId,
        add: bool,
        remove: bool,
    },
    /// One object, such as `/system/identity`.
    Single,
}

#[derive(Debug)]
pub(crate) struct Menu {
    /// Slash-separated, without the leading slash: `ip/address`.
    pub path: &'static str,
    pub kind: MenuKind,
    pub fields: &'static [Field],
    /// The field that names a row, so `set`/`remove` accept the name as well as the id.
    pub key: Option<&'static str>,
    /// Commands beyond the generic ones of its kind.
    pub extra: &'static [&'static str],
}

impl Menu {
    pub fn field(&self, name: &str) -> Option<(usize, &Field)> {
        self.fields.iter().enumerate().find(|(_, f)| f.name == name)
    }

    pub fn table(&self) -> Option<TableId> {
        match self.kind {
            MenuKind::Table { table, .. } => Some(table),
            MenuKind::Single => None,
        }
    }

    /// Every command the menu answers.
    pub fn has_command(&self, verb: &str) -> bool {
        let generic: &[&str] = match self.kind {
            MenuKind::Table { add, remove, .. } => match (add, remove) {
                (true, true) => &[
                    "print", "getall", "get", "set", "find", "add", "remove", "enable", "disable",
                    "export",
                ],
                (false, true) => &["print", "getall", "get", "find", "remove"],
                (false, false) => &[
                    "print", "getall", "get", "set", "find", "enable", "disable", "export",
                ],
                (true, false) => &["print", "getall", "get", "set", "find", "add"],
            },
            MenuKind::Single => &["print", "getall", "get", "set", "export"],
        };
        generic.contains(&verb) || self.extra.contains(&verb)
    }
}

static INTERFACE_FIELDS: [Field; 9] = [
    w("name"),
    ro("default-name"),
    ro_def("type", "ether"),
    def("mtu", "1500"),
    ro_def("actual-mtu", "1500"),
    ro("mac-address"),
    ro_flag("running"),
    flag("disabled"),
    w("comment"),
];
static ADDRESS_FIELDS: [Field; 8] = [
    req("address"),
    ro("network"),
    req("interface"),
    ro("actual-interface"),
    ro_flag("invalid"),
    ro_flag("dynamic"),
    flag("disabled"),
    w("comment"),
];
static FILTER_FIELDS: [Field; 20] = [
    req("chain"),
    def("action", "accept"),
    w("src-address"),
    w("dst-address"),
    w("protocol"),
    w("src-port"),
    w("dst-port"),
    w("in-interface"),
    w("out-interface"),
    w("connection-state"),
    w("src-address-list"),
    w("dst-address-list"),
    w("jump-target"),
    w("log-prefix"),
    flag("log"),
    ro_def("bytes", "0"),
    ro_def("packets", "0"),
    ro_flag("invalid"),
    ro_flag("dynamic"),
    flag("disabled"),
];
static FILTER_COMMENT: [Field; 1] = [w("comment")];
static SCRIPT_FIELDS: [Field; 9] = [
    req("name"),
    ro("owner"),
    def(
        "policy",
        "ftp,reboot,read,write,policy,test,password,sniff,sensitive,romon",
    ),
    flag("dont-require-permissions"),
    ro_def("run-count", "0"),
    def("source", ""),
    ro("last-started"),
    ro_flag("invalid"),
    w("comment"),
];
/// `/ip/arp`, as seed 001's synchronous example prints it.
static ARP_FIELDS: [Field; 9] = [
    req("address"),
    w("mac-address"),
    req("interface"),
    ro_flag("published"),
    ro_flag("invalid"),
    ro_flag("DHCP"),
    ro_flag("dynamic"),
    ro_flag("complete"),
    flag("disabled"),
];
static LOG_FIELDS: [Field; 3] = [ro("time"), ro("topics"), ro("message")];
static FILE_FIELDS: [Field; 5] = [
    ro("name"),
    ro("type"),
    ro("size"),
    ro("creation-time"),
    ro("contents"),
];
/// `/ip/service`: the management services, which refuse new connections when disabled.
static SERVICE_FIELDS: [Field; 4] = [ro("name"), w("port"), w("address"), flag("disabled")];
/// `/system/scheduler`: an entry runs `on-event` at `start-date` `start-time`, then every
/// `interval` (never again when it is `0s`).
static SCHEDULER_FIELDS: [Field; 11] = [
    req("name"),
    w("start-date"),
    def("start-time", "startup"),
    def("interval", "0s"),
    def("on-event", ""),
    ro("owner"),
    def(
        "policy",
        "ftp,reboot,read,write,policy,test,password,sniff,sensitive,romon",
    ),
    ro_def("run-count", "0"),
    ro("next-run"),
    flag("disabled"),
    w("comment"),
];
/// `/system/clock`: the router keeps UTC, as one synchronised by NTP with no time zone.
static CLOCK_FIELDS: [Field; 3] = [ro("time"), ro("date"), ro("time-zone-name")];
static IDENTITY_FIELDS: [Field; 1] = [w("name")];
static RESOURCE_FIELDS: [Field; 15] = [
    ro("uptime"),
    ro("version"),
    ro("build-time"),
    ro("factory-software"),
    ro("free-memory"),
    ro("total-memory"),
    ro("cpu"),
    ro("cpu-count"),
    ro("cpu-frequency"),
    ro("cpu-load"),
    ro("free-hdd-space"),
    ro("total-hdd-space"),
    ro("architecture-name"),
    ro("board-name"),
    ro("platform"),
];

/// The firewall filter's fields with the comment last, as RouterOS prints it.
static FILTER_ALL: [Field; 21] = {
    let mut all = [FILTER_COMMENT[0]; 21];
    let mut i = 0;
    while i < 20 {
        all[i] = FILTER_FIELDS[i];
        i += 1;
    }
    all
};

pub(crate) static MENUS: [Menu; 12] = [
    Menu {
        path: "interface",
        kind: MenuKind::Table {
            table: TableId::Interface,
            add: false,
            remove: false,
        },
        fields: &INTERFACE_FIELDS,
        key: Some("name"),
        extra: &[],
    },
    Menu {
        path: "ip/address",
        kind: MenuKind::Table {
            table: TableId::Address,
            add: true,
            remove: true,
        },
        fields: &ADDRESS_FIELDS,
        key: None,
        extra: &[],
    },
    Menu {
        path: "ip/firewall/filter",
        kind: MenuKind::Table {
            table: TableId::Filter,
            add: true,
            remove: true,
        },
        fields: &FILTER_ALL,
        key: None,
        extra: &[],
    },
    Menu {
        path: "ip/arp",
        kind: MenuKind::Table {
            table: TableId::Arp,
            add: true,
            remove: true,
        },
        fields: &ARP_FIELDS,
        key: None,
        extra: &[],
    },
    Menu {
        path: "system/script",
        kind: MenuKind::Table {
            table: TableId::Script,
            add: true,
            remove: true,
        },
        fields: &SCRIPT_FIELDS,
        key: Some("name"),
        extra: &["run"],
    },
    Menu {
        path: "log",
        kind: MenuKind::Table {
            table: TableId::Log,
            add: false,
            remove: false,
        },
        fields: &LOG_FIELDS,
        key: None,
        extra: &["info", "warning", "error", "debug"],
    },
    Menu {
        path: "file",
        kind: MenuKind::Table {
            table: TableId::File,
            add: false,
            remove: true,
        },
        fields: &FILE_FIELDS,
        key: Some("name"),
        extra: &[],
    },
    Menu {
        path: "ip/service",
        kind: MenuKind::Table {
            table: TableId::Service,
            add: false,
            remove: false,
        },
        fields: &SERVICE_FIELDS,
        key: Some("name"),
        extra: &[],
    },
    Menu {
        path: "system/scheduler",
        kind: MenuKind::Table {
            table: TableId::Scheduler,
            add: true,
            remove: true,
        },
        fields: &SCHEDULER_FIELDS,
        key: Some("name"),
        extra: &[],
    },
    Menu {
        path: "system/clock",
        kind: MenuKind::Single,
        fields: &CLOCK_FIELDS,
        key: None,
        extra: &[],
    },
    Menu {
        path: "system/identity",
        kind: MenuKind::Single,
        fields: &IDENTITY_FIELDS,
        key: None,
        extra: &[],
    },
    Menu {
        path: "system/resource",
        kind: MenuKind::Single,
        fields: &RESOURCE_FIELDS,
        key: None,
        extra: &[],
    },
];

/// Menus that hold only commands: `/system/backup save`.
pub(crate) static COMMAND_MENUS: [(&str, &[&str]); 2] =
    [("system/backup", &["save", "load"]), ("", &["export"])];

pub(crate) fn menu(path: &str) -> Option<&'static Menu> {
    MENUS.iter().find(|m| m.path == path)
}

/// Whether `path` is a menu or leads to one (`ip`, `system`), for console navigation.
pub(crate) fn is_menu_prefix(path: &str) -> bool {
    let all = MENUS
        .iter()
        .map(|m| m.path)
        .chain(COMMAND_MENUS.iter().map(|(p, _)| *p));
    all.into_iter()
        .any(|p| p == path || (p.starts_with(path) && p.as_bytes().get(path.len()) == Some(&b'/')))
}

#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub id: u32,
    /// One slot per field of the menu, in the menu's order.
    pub values: Vec<Option<String>>,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct Table {
    next_id: u32,
    pub rows: VecDeque<Row>,
}

/// What a command needs to know about the router and the moment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub profile: Profile,
    pub index: usize,
    pub user: &'a str,
    pub uptime: Duration,
}

pub(crate) fn format_id(id: u32) -> String {
    format!("*{id:X}")
}

fn parse_id(text: &str) -> Option<u32> {
    u32::from_str_radix(text.strip_prefix('*')?, 16).ok()
}

fn normalize_bool(value: &str) -> Option<&'static str> {
    match value {
        "yes" | "true" => Some("true"),
        "no" | "false" => Some("false"),
        _ => None,
    }
}

/// Formats an uptime as RouterOS does: `1w2d3h4m5s`, leaving out zero units.
pub(crate) fn format_uptime(d: Duration) -> String {
    let mut s = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if s >= size {
            let _ = write!(out, "{}{unit}", s / size);
            s %= size;
        }
    }
    if s > 0 || out.is_empty() {
        let _ = write!(out, "{s}s");
    }
    out
}

fn parse_cidr(text: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, prefix) = match text.split_once('/') {
        Some((ip, p)) => (ip, p.parse().ok()?),
        None => (text, 32),
    };
    if prefix > 32 {
        return None;
    }
    Some((ip.parse().ok()?, prefix))
}

fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    Ipv4Addr::from(u32::from(ip) & mask)
}

/// Compares two property values as RouterOS queries do: numbers as numbers.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

fn values_equal(a: &str, b: &str) -> bool {
    a == b || matches!((normalize_bool(a), normalize_bool(b)), (Some(x), Some(y)) if x == y)
}

/// Quotes a value for `/export` and console output where RouterOS would.
pub(crate) fn quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.,:/*@+".contains(&b));
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Binary backups a router keeps at once; saving another forgets the oldest.
const MAX_BACKUPS: usize = 16;
/// The services a router has, with their default ports.
const SERVICES: [(&str, &str); 8] = [
    ("telnet", "23"),
    ("ftp", "21"),
    ("www", "80"),
    ("ssh", "22"),
    ("www-ssl", "443"),
    ("api", "8728"),
    ("winbox", "8291"),
    ("api-ssl", "8729"),
];

/// What a binary backup holds: the configuration, without files and the log, which
/// `/system backup load` leaves as they are.
#[derive(Debug, Clone)]
struct Snapshot {
    identity: String,
    tables: [Table; TABLES],
}

/// One router's configuration.
#[derive(Debug)]
pub(crate) struct State {
    pub identity: String,
    tables: [Table; TABLES],
    /// Log entries ever written, including those that rolled out of the buffer.
    pub log_total: u64,
    /// Binary backups by file name; one counts only while its `/file` entry exists.
    backups: VecDeque<(String, Box<Snapshot>)>,
    /// Changes of the services and the scheduler, which the router's listeners and
    /// timer follow.
    pub revision: u64,
    /// A backup was loaded: the router restarts, closing every connection.
    pub restart: bool,
}

impl State {
    pub fn new(index: usize) -> Self {
        let mut state = Self {
            identity: format!("router-{index}"),
            tables: Default::default(),
            log_total: 0,
            backups: VecDeque::new(),
            revision: 0,
            restart: false,
        };
        for (name, port) in SERVICES {
            let values = vec![
                Some(name.to_owned()),
                Some(port.to_owned()),
                None,
                Some("false".to_owned()),
            ];
            state.push_row(TableId::Service, values);
        }
        let mac_base = index as u32;
        for n in 1..=4u8 {
            let name = format!("ether{n}");
            let mac = format!(
                "02:59:4D:{:02X}:{:02X}:{:02X}",
                (mac_base >> 12) & 0xFF,
                (mac_base >> 4) & 0xFF,
                ((mac_base & 0x0F) << 4) | u32::from(n)
            );
            let menu = &MENUS[0];
            let mut values = Self::defaults(menu);
            values[0] = Some(name.clone());
            values[1] = Some(name);
            values[5] = Some(mac);
            values[6] = Some("true".into());
            state.push_row(TableId::Interface, values);
        }
        // One dynamic neighbour on the LAN port, as a router that has seen a client.
        let arp = menu("ip/arp").map(Self::defaults);
        if let Some(mut values) = arp {
            values[0] = Some(format!("192.168.88.{}", 2 + index % 250));
            values[1] = Some(format!(
                "50:32:37:{:02X}:{:02X}:{:02X}",
                (mac_base >> 16) & 0xFF,
                (mac_base >> 8) & 0xFF,
                mac_base & 0xFF
            ));
            values[2] = Some("ether2".into());
            values[6] = Some("true".into());
            values[7] = Some("true".into());
            state.push_row(TableId::Arp, values);
        }
        state
    }

    fn defaults(menu: &Menu) -> Vec<Option<String>> {
        menu.fields
            .iter()
            .map(|f| f.default.map(str::to_owned))
            .collect()
    }

    pub fn table(&self, id: TableId) -> &Table {
        &self.tables[id as usize]
    }

    fn table_mut(&mut self, id: TableId) -> &mut Table {
        if matches!(id, TableId::Service | TableId::Scheduler) {
            self.revision = self.revision.wrapping_add(1);
        }
        &mut self.tables[id as usize]
    }

    /// Whether the service `name` (`api`, `api-ssl`, `ssh`) accepts new connections. A
    /// service the router does not list is served as configured by the fleet.
    pub fn service_enabled(&self, name: &str) -> bool {
        !self
            .table(TableId::Service)
            .rows
            .iter()
            .any(|r| r.values[0].as_deref() == Some(name) && r.values[3].as_deref() == Some("true"))
    }

    /// `/system backup save`: the configuration as it is now, and its `/file` entry.
    pub fn save_backup(&mut self, name: &str, ctx: &Ctx<'_>) -> String {
        let name = if name.ends_with(".backup") {
            name.to_owned()
        } else {
            format!("{name}.backup")
        };
        let mut tables = self.tables.clone();
        tables[TableId::Log as usize] = Table::default();
        tables[TableId::File as usize] = Table::default();
        let snapshot = Box::new(Snapshot {
            identity: self.identity.clone(),
            tables,
        });
        self.backups.retain(|(n, _)| *n != name);
        if self.backups.len() >= MAX_BACKUPS {
            self.backups.pop_front();
        }
        self.backups.push_back((name.clone(), snapshot));
        self.save_file(&name, "backup", "", ctx);
        name
    }

    /// `/system backup load`: restores the configuration of a backup whose file is still
    /// there; the router then restarts. Files and the log stay as they are.
    pub fn load_backup(&mut self, name: &str) -> Result<(), Trap> {
        let has_file = self
            .table(TableId::File)
            .rows
            .iter()
            .any(|r| r.values[0].as_deref() == Some(name));
        let snapshot = self
            .backups
            .iter()
            .find(|(n, _)| n == name)
            .filter(|_| has_file)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| Trap::new(0, "failure: no such backup file"))?;
        let Snapshot { identity, tables } = *snapshot;
        for (i, table) in tables.into_iter().enumerate() {
            if i != TableId::Log as usize && i != TableId::File as usize {
                self.tables[i] = table;
            }
        }
        self.identity = identity;
        self.revision = self.revision.wrapping_add(1);
        self.restart = true;
        Ok(())
    }

    /// When the next scheduler entry is due, as of `now`.
    pub fn next_scheduled(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.table(TableId::Scheduler)
            .rows
            .iter()
            .filter_map(|r| due_at(r, now))
            .min()
    }

    /// Marks every scheduler entry due by `now` as run and returns their `on-event`
    /// sources, to run in that order.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let due: Vec<u32> = self
            .table(TableId::Scheduler)
            .rows
            .iter()
            .filter(|r| due_at(r, now).is_some_and(|at| at <= now))
            .map(|r| r.id)
            .collect();
        let mut sources = Vec::new();
        for id in due {
            let table = self.table_mut(TableId::Scheduler);
            let Some(row) = table.rows.iter_mut().find(|r| r.id == id) else {
                continue;
            };
            let runs: u64 = row.values[7]
                .as_deref()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            row.values[7] = Some((runs + 1).to_string());
            sources.push(row.values[4].clone().unwrap_or_default());
        }
        sources
    }

    fn push_row(&mut self, table: TableId, values: Vec<Option<String>>) -> u32 {
        let t = self.table_mut(table);
        t.next_id += 1;
        let id = t.next_id;
        t.rows.push_back(Row { id, values });
        id
    }

    pub fn log(&mut self, topics: &str, message: &str, ctx: &Ctx<'_>) {
        let time = match ctx.profile {
            Profile::V7_18 => format!("2026-01-01 {}", clock(ctx.uptime)),
            Profile::V6_42 | Profile::V6_45 => clock(ctx.uptime),
        };
        self.push_row(
            TableId::Log,
            vec![Some(time), Some(topics.into()), Some(message.into())],
        );
        self.log_total += 1;
        let log = self.table_mut(TableId::Log);
        while log.rows.len() > MAX_LOG {
            log.rows.pop_front();
        }
    }

    /// The value of a field of a row, or of `.id`.
    fn value<'r>(menu: &Menu, row: &'r Row, name: &str, id_buf: &'r mut String) -> Option<&'r str> {
        if name == ".id" {
            *id_buf = format_id(row.id);
            return Some(id_buf.as_str());
        }
        let (i, _) = menu.field(name)?;
        row.values.get(i)?.as_deref()
    }

    fn single_values(&self, menu: &Menu, ctx: &Ctx<'_>) -> Vec<Option<String>> {
        match menu.path {
            "system/identity" => vec![Some(self.identity.clone())],
            "system/clock" => {
                let now = Utc::now();
                let date = match ctx.profile {
                    Profile::V7_18 => now.format("%Y-%m-%d").to_string(),
                    Profile::V6_42 | Profile::V6_45 => {
                        now.format("%b/%d/%Y").to_string().to_ascii_lowercase()
                    }
                };
                vec![
                    Some(now.format("%H:%M:%S").to_string()),
                    Some(date),
                    Some("UTC".to_owned()),
                ]
            }
            _ => {
                let (version, build, arch) = match ctx.profile {
                    Profile::V6_42 => ("6.42.12 (long-term)", "Feb/12/2019 08:17:38", "x86"),
                    Profile::V6_45 => ("6.45.9 (long-term)", "Apr/30/2020 10:42:15", "x86"),
                    Profile::V7_18 => ("7.18.2 (stable)", "2025-03-11 11:59:04", "x86_64"),
                };
                let values = [
                    format_uptime(ctx.uptime),
                    version.into(),
                    build.into(),
                    build.into(),
                    "233017344".into(),
                    "268435456".into(),
                    "QEMU Virtual CPU version 2.5+".into(),
                    "1".into(),
                    "2400".into(),
                    "1".into(),
                    "85393408".into(),
                    "134217728".into(),
                    arch.into(),
                    "CHR".into(),
                    "MikroTik".into(),
                ];
                values.into_iter().map(Some).collect()
            }
        }
    }

    /// The rows of a menu as `(name, value)` pairs, filtered by the query and the proplist.
    pub fn print(
        &self,
        menu: &Menu,
        queries: &[Query<'_>],
        proplist: Option<&str>,
        ctx: &Ctx<'_>,
    ) -> Result<Vec<Vec<(String, String)>>, Trap> {
        let wanted: Option<Vec<&str>> =
            proplist.map(|p| p.split(',').filter(|s| !s.is_empty()).collect());
        let keep = |name: &str| wanted.as_ref().is_none_or(|w| w.contains(&name));
        let mut out = Vec::new();
        match menu.table() {
            None => {
                let values = self.single_values(menu, ctx);
                let row = Row { id: 0, values };
                let mut pairs = Vec::new();
                for (field, value) in menu.fields.iter().zip(&row.values) {
                    if let Some(v) = value
                        && keep(field.name)
                    {
                        pairs.push((field.name.to_owned(), v.clone()));
                    }
                }
                if matches_query(menu, &row, queries)? {
                    out.push(pairs);
                }
            }
            Some(table) => {
                for row in &self.table(table).rows {
                    if !matches_query(menu, row, queries)? {
                        continue;
                    }
                    let mut pairs = Vec::new();
                    if keep(".id") {
                        pairs.push((".id".to_owned(), format_id(row.id)));
                    }
                    for (field, value) in menu.fields.iter().zip(&row.values) {
                        if let Some(v) = value
                            && keep(field.name)
                        {
                            pairs.push((field.name.to_owned(), v.clone()));
                        }
                    }
                    out.push(pairs);
                }
            }
        }
        Ok(out)
    }

    /// Resolves `*1,ether2,0` to row ids: by id, by the menu's key, or by print position.
    pub fn resolve(&self, menu: &Menu, refs: &str) -> Result<Vec<u32>, Trap> {
        let table = self.table(menu.table().ok_or_else(Trap::no_such_item)?);
        let mut ids = Vec::new();
        for r in refs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let found = if let Some(id) = parse_id(r) {
                table.rows.iter().find(|row| row.id == id).map(|row| row.id)
            } else if let Some(row) = menu.key.and_then(|k| menu.field(k)).and_then(|(i, _)| {
                table
                    .rows
                    .iter()
                    .find(|row| row.values[i].as_deref() == Some(r))
            }) {
                Some(row.id)
            } else if let Ok(n) = r.parse::<usize>() {
                table.rows.get(n).map(|row| row.id)
            } else {
                None
            };
            ids.push(found.ok_or_else(Trap::no_such_item)?);
        }
        Ok(ids)
    }

    /// Rows whose fields equal every given value, for the console's `find`.
    pub fn find(&self, menu: &Menu, filters: &[(String, String)]) -> Result<Vec<u32>, Trap> {
        let Some(table) = menu.table() else {
            return Ok(Vec::new());
        };
        let mut ids = Vec::new();
        for row in &self.table(table).rows {
            let mut all = true;
            for (name, wanted) in filters {
                let mut buf = String::new();
                if menu.field(name).is_none() && name != ".id" {
                    return Err(Trap::unknown_parameter(name));
                }
                let v = Self::value(menu, row, name, &mut buf).unwrap_or("");
                all &= values_equal(v, wanted);
            }
            if all {
                ids.push(row.id);
            }
        }
        Ok(ids)
    }

    pub fn get(
        &self,
        menu: &Menu,
        id: Option<&str>,
        value_name: &str,
        ctx: &Ctx<'_>,
    ) -> Result<String, Trap> {
        match menu.table() {
            None => {
                let (i, _) = menu
                    .field(value_name)
                    .ok_or_else(|| Trap::unknown_parameter(value_name))?;
                Ok(self.single_values(menu, ctx)[i].clone().unwrap_or_default())
            }
            Some(table) => {
                let ids = self.resolve(menu, id.unwrap_or(""))?;
                let [id] = ids[..] else {
                    return Err(Trap::no_such_item());
                };
                let row = self
                    .table(table)
                    .rows
                    .iter()
                    .find(|r| r.id == id)
                    .ok_or_else(Trap::no_such_item)?;
                let mut buf = String::new();
                if value_name != ".id" && menu.field(value_name).is_none() {
                    return Err(Trap::unknown_parameter(value_name));
                }
                Ok(Self::value(menu, row, value_name, &mut buf)
                    .unwrap_or("")
                    .to_owned())
            }
        }
    }

    /// Checks and normalises values for `add` and `set`.
    fn check(
        &self,
        menu: &Menu,
        values: &mut [Option<String>],
        given: &[(String, String)],
    ) -> Result<(), Trap> {
        for (name, value) in given {
            let (i, field) = menu
                .field(name)
                .ok_or_else(|| Trap::unknown_parameter(name))?;
            if !field.writable {
                return Err(Trap::unknown_parameter(name));
            }
            let value = if field.boolean {
                normalize_bool(value)
                    .ok_or_else(|| Trap::new(1, format!("value of {name} must be yes or no")))?
                    .to_owned()
            } else {
                value.clone()
            };
            values[i] = if value.is_empty() && !field.required {
                None
            } else {
                Some(value)
            };
        }
        let missing: Vec<&str> = menu
            .fields
            .iter()
            .zip(values.iter())
            .filter(|(f, v)| f.required && v.as_deref().is_none_or(str::is_empty))
            .map(|(f, _)| f.name)
            .collect();
        if !missing.is_empty() {
            return Err(Trap::new(
                1,
                format!(
                    "failure: missing value(s) of argument(s) {}",
                    missing.join(", ")
                ),
            ));
        }
        if menu.path == "ip/address" {
            let address = values[0].clone().unwrap_or_default();
            let (ip, prefix) = parse_cidr(&address).ok_or_else(|| {
                Trap::new(1, format!("invalid value for argument address: {address}"))
            })?;
            values[0] = Some(format!("{ip}/{prefix}"));
            values[1] = Some(network_of(ip, prefix).to_string());
            let interface = values[2].clone().unwrap_or_default();
            let known = self
                .table(TableId::Interface)
                .rows
                .iter()
                .any(|r| r.values[0].as_deref() == Some(interface.as_str()));
            if !known {
                return Err(Trap::new(1, "input does not match any value of interface"));
            }
            values[3] = Some(interface);
        }
        if menu.path == "interface"
            && let Some(mtu) = &values[3]
        {
            let n: u32 = mtu
                .parse()
                .map_err(|_| Trap::new(1, "invalid value for argument mtu"))?;
            if !(68..=65535).contains(&n) {
                return Err(Trap::new(1, "invalid value for argument mtu"));
            }
            values[4] = Some(n.to_string());
        }
        Ok(())
    }

    fn key_taken(&self, menu: &Menu, values: &[Option<String>], except: Option<u32>) -> bool {
        let (Some(table), Some((i, _))) = (menu.table(), menu.key.and_then(|k| menu.field(k)))
        else {
            return false;
        };
        let Some(key) = values[i].as_deref() else {
            return false;
        };
        self.table(table)
            .rows
            .iter()
            .any(|r| Some(r.id) != except && r.values[i].as_deref() == Some(key))
    }

    pub fn add(
        &mut self,
        menu: &Menu,
        given: &[(String, String)],
        ctx: &Ctx<'_>,
    ) -> Result<String, Trap> {
        let MenuKind::Table {
            table, add: true, ..
        } = menu.kind
        else {
            return Err(Trap::new(0, "no such command"));
        };
        if self.table(table).rows.len() >= MAX_ROWS {
            return Err(Trap::new(4, "failure: not enough memory"));
        }
        let mut values = Self::defaults(menu);
        if table == TableId::Script {
            values[1] = Some(ctx.user.to_owned());
        }
        if table == TableId::Scheduler {
            values[5] = Some(ctx.user.to_owned());
        }
        self.check(menu, &mut values, given)?;
        if self.key_taken(menu, &values, None) {
            return Err(Trap::new(1, "failure: item with such name already exists"));
        }
        if table == TableId::Address {
            let dup = self
                .table(table)
                .rows
                .iter()
                .any(|r| r.values[0] == values[0] && r.values[2] == values[2]);
            if dup {
                return Err(Trap::new(1, "failure: already have such address"));
            }
        }
        Ok(format_id(self.push_row(table, values)))
    }

    pub fn set(
        &mut self,
        menu: &Menu,
        refs: Option<&str>,
        given: &[(String, String)],
    ) -> Result<(), Trap> {
        match menu.table() {
            None => {
                let [(name, value)] = given else {
                    return match given.first() {
                        Some((name, _)) if name != "name" => Err(Trap::unknown_parameter(name)),
                        _ => Ok(()),
                    };
                };
                if menu.path != "system/identity" || name != "name" {
                    return Err(Trap::unknown_parameter(name));
                }
                self.identity = value.chars().take(255).collect();
                Ok(())
            }
            Some(table) => {
                let ids = self.resolve(menu, refs.unwrap_or(""))?;
                for id in ids {
                    let Some(pos) = self.table(table).rows.iter().position(|r| r.id == id) else {
                        continue;
                    };
                    let mut values = self.table(table).rows[pos].values.clone();
                    self.check(menu, &mut values, given)?;
                    if self.key_taken(menu, &values, Some(id)) {
                        return Err(Trap::new(1, "failure: item with such name already exists"));
                    }
                    self.table_mut(table).rows[pos].values = values;
                }
                Ok(())
            }
        }
    }

    pub fn remove(&mut self, menu: &Menu, refs: &str) -> Result<(), Trap> {
        let MenuKind::Table {
            table,
            remove: true,
            ..
        } = menu.kind
        else {
            return Err(Trap::new(0, "no such command"));
        };
        let ids = self.resolve(menu, refs)?;
        self.table_mut(table).rows.retain(|r| !ids.contains(&r.id));
        Ok(())
    }

    /// Marks a script run, returning its source.
    pub fn start_script(&mut self, refs: &str, ctx: &Ctx<'_>) -> Result<String, Trap> {
        let menu = menu("system/script").ok_or_else(Trap::no_such_item)?;
        let ids = self.resolve(menu, refs)?;
        let [id] = ids[..] else {
            return Err(Trap::no_such_item());
        };
        let started = clock(ctx.uptime);
        let row = self
            .table_mut(TableId::Script)
            .rows
            .iter_mut()
            .find(|r| r.id == id)
            .ok_or_else(Trap::no_such_item)?;
        let count: u64 = row.values[4]
            .as_deref()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        row.values[4] = Some((count + 1).to_string());
        row.values[6] = Some(started);
        Ok(row.values[5].clone().unwrap_or_default())
    }

    /// Stores a file, replacing one of the same name.
    pub fn save_file(&mut self, name: &str, kind: &str, contents: &str, ctx: &Ctx<'_>) {
        let files = self.table_mut(TableId::File);
        files.rows.retain(|r| r.values[0].as_deref() != Some(name));
        if files.rows.len() >= MAX_ROWS {
            return;
        }
        let values = vec![
            Some(name.to_owned()),
            Some(kind.to_owned()),
            Some(contents.len().max(1).to_string()),
            Some(clock(ctx.uptime)),
            // Like RouterOS, only small files show their contents.
            (contents.len() < 4096).then(|| contents.to_owned()),
        ];
        self.push_row(TableId::File, values);
    }

    /// The configuration as `/export` prints it.
    pub fn export(&self, ctx: &Ctx<'_>) -> String {
        let version = match ctx.profile {
            Profile::V6_42 => "6.42.12",
            Profile::V6_45 => "6.45.9",
            Profile::V7_18 => "7.18.2",
        };
        let mut out = format!(
            "# {} by RouterOS {version}\r\n# software id = SIM-{:04X}\r\n#\r\n# model = CHR\r\n",
            clock(ctx.uptime),
            ctx.index
        );
        let iface = &MENUS[0];
        let changed: Vec<&Row> = self
            .table(TableId::Interface)
            .rows
            .iter()
            .filter(|r| {
                r.values[0] != r.values[1]
                    || r.values[3].as_deref() != Some("1500")
                    || r.values[7].as_deref() == Some("true")
                    || r.values[8].is_some()
            })
            .collect();
        if !changed.is_empty() {
            out.push_str("/interface ethernet\r\n");
            for row in changed {
                let _ = write!(
                    out,
                    "set [ find default-name={} ]",
                    row.values[1].as_deref().unwrap_or("")
                );
                let mut pairs: Vec<(&str, String)> = Vec::new();
                for (i, f) in iface.fields.iter().enumerate() {
                    if !f.writable {
                        continue;
                    }
                    if let Some(v) = &row.values[i]
                        && f.default != Some(v.as_str())
                        && !(f.name == "name" && row.values[1].as_ref() == Some(v))
                    {
                        pairs.push((f.name, export_value(f, v)));
                    }
                }
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                for (name, v) in pairs {
                    let _ = write!(out, " {name}={}", quote(&v));
                }
                out.push_str("\r\n");
            }
        }
        for (path, table) in [
            ("/ip address", TableId::Address),
            ("/ip firewall filter", TableId::Filter),
            ("/system script", TableId::Script),
        ] {
            let Some(menu) = MENUS.iter().find(|m| m.table() == Some(table)) else {
                continue;
            };
            let rows = &self.table(table).rows;
            if rows.is_empty() {
                continue;
            }
            let _ = write!(out, "{path}\r\n");
            for row in rows {
                out.push_str("add");
                let mut pairs: Vec<(&str, String)> = menu
                    .fields
                    .iter()
                    .zip(&row.values)
                    .filter_map(|(f, v)| {
                        let v = v.as_ref()?;
                        let shown = f.writable || f.name == "network" || f.name == "owner";
                        (shown && (f.required || f.default != Some(v.as_str())))
                            .then(|| (f.name, export_value(f, v)))
                    })
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                for (name, v) in pairs {
                    let _ = write!(out, " {name}={}", quote(&v));
                }
                out.push_str("\r\n");
            }
        }
        let disabled: Vec<&str> = self
            .table(TableId::Service)
            .rows
            .iter()
            .filter(|r| r.values[3].as_deref() == Some("true"))
            .filter_map(|r| r.values[0].as_deref())
            .collect();
        if !disabled.is_empty() {
            out.push_str("/ip service\r\n");
            for name in disabled {
                let _ = write!(out, "set {name} disabled=yes\r\n");
            }
        }
        let _ = write!(
            out,
            "/system identity\r\nset name={}\r\n",
            quote(&self.identity)
        );
        let scheduler = &self.table(TableId::Scheduler).rows;
        if let (false, Some(menu)) = (scheduler.is_empty(), menu("system/scheduler")) {
            out.push_str("/system scheduler\r\n");
            for row in scheduler {
                out.push_str("add");
                let mut pairs: Vec<(&str, String)> = menu
                    .fields
                    .iter()
                    .zip(&row.values)
                    .filter_map(|(f, v)| {
                        let v = v.as_ref()?;
                        (f.writable && (f.required || f.default != Some(v.as_str())))
                            .then(|| (f.name, export_value(f, v)))
                    })
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                for (name, v) in pairs {
                    let _ = write!(out, " {name}={}", quote(&v));
                }
                out.push_str("\r\n");
            }
        }
        out
    }
}

/// `5m`, `1h30m`, `1d`, `90s`, `00:05:00` or `0s`, as RouterOS writes an interval.
fn parse_interval(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.contains(':') {
        let parts: Vec<&str> = text.split(':').collect();
        let [h, m, s] = parts[..] else { return None };
        return Some(
            h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60 + s.parse::<i64>().ok()?,
        );
    }
    let mut total = 0i64;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        total += n * match c {
            'w' => 604_800,
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
    }
    if !digits.is_empty() {
        total += digits.parse::<i64>().ok()?;
    }
    Some(total)
}

/// A date as a router takes it: `2024-05-28` or `may/28/2024`.
fn parse_router_date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .or_else(|_| NaiveDate::parse_from_str(&text.to_ascii_lowercase(), "%b/%d/%Y"))
        .ok()
}

/// When a scheduler entry runs next, or `None` if it never will (disabled, run at
/// startup only, or a one-shot that has run).
fn due_at(row: &Row, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if row.values[9].as_deref() == Some("true") {
        return None;
    }
    let time = NaiveTime::parse_from_str(row.values[2].as_deref()?, "%H:%M:%S").ok()?;
    let date = match row.values[1].as_deref() {
        Some(d) if !d.is_empty() => parse_router_date(d)?,
        _ => now.date_naive(),
    };
    let start = date.and_time(time).and_utc();
    let interval = parse_interval(row.values[3].as_deref().unwrap_or("0s"))?;
    let runs: i64 = row.values[7]
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    if interval <= 0 {
        return (runs == 0).then_some(start);
    }
    Some(start + chrono::TimeDelta::seconds(interval.saturating_mul(runs)))
}

fn export_value(field: &Field, value: &str) -> String {
    if field.boolean {
        if value == "true" {
            "yes".into()
        } else {
            "no".into()
        }
    } else {
        value.to_owned()
    }
}

fn clock(uptime: Duration) -> String {
    let s = uptime.as_secs() + 12 * 3600;
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

/// Evaluates a print query against one row: a stack of booleans over an endless supply
/// of `true`, failing if any `false` remains.
fn matches_query(menu: &Menu, row: &Row, queries: &[Query<'_>]) -> Result<bool, Trap> {
    let mut stack: Vec<bool> = Vec::new();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    for q in queries {
        let mut buf = String::new();
        let result = match *q {
            Query::Has(name) => State::value(menu, row, &text(name), &mut buf).is_some(),
            Query::Lacks(name) => State::value(menu, row, &text(name), &mut buf).is_none(),
            Query::Equals { name, value } => {
                let name = text(name);
                let wanted = text(value);
                match State::value(menu, row, &name, &mut buf) {
                    Some(v) => values_equal(v, &wanted),
                    None => wanted.is_empty(),
                }
            }
            Query::Less { name, value } => State::value(menu, row, &text(name), &mut buf)
                .is_some_and(|v| compare(v, &text(value)).is_lt()),
            Query::Greater { name, value } => State::value(menu, row, &text(name), &mut buf)
                .is_some_and(|v| compare(v, &text(value)).is_gt()),
            Query::Operations(ops) => {
                apply_operations(&mut stack, ops)?;
                continue;
            }
        };
        if stack.len() >= 4096 {
            return Err(Trap::new(1, "query too long"));
        }
        stack.push(result);
    }
    Ok(stack.iter().all(|&b| b))
}

fn apply_operations(stack: &mut Vec<bool>, ops: &[u8]) -> Result<(), Trap> {
    let pop = |stack: &mut Vec<bool>| stack.pop().unwrap_or(true);
    let at = |stack: &Vec<bool>, i: usize| {
        if i < stack.len() {
            stack[stack.len() - 1 - i]
        } else {
            true
        }
    };
    let mut i = 0;
    while i < ops.len() {
        if ops[i].is_ascii_digit() {
            let start = i;
            while i < ops.len() && ops[i].is_ascii_digit() {
                i += 1;
            }
            let index: usize = std::str::from_utf8(&ops[start..i])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(usize::MAX);
            let value = at(stack, index);
            if i == ops.len() {
                stack.clear();
            }
            if stack.len() >= 4096 {
                return Err(Trap::new(1, "query too long"));
            }
            stack.push(value);
            continue;
        }
        match ops[i] {
            b'|' => {
                let (a, b) = (pop(stack), pop(stack));
                stack.push(a || b);
            }
            b'&' => {
                let (a, b) = (pop(stack), pop(stack));
                stack.push(a && b);
            }
            b'!' => {
                let a = pop(stack);
                stack.push(!a);
            }
            b'.' => {
                pop(stack);
            }
            other => {
                return Err(Trap::new(
                    1,
                    format!("unknown query operation {:?}", other as char),
                ));
            }
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yardmaster_plugin_sdk::routeros::{Word, parse_word};

    const CTX: Ctx<'static> = Ctx {
        profile: Profile::V7_18,
        index: 3,
        user: "admin",
        uptime: Duration::from_secs(3723),
    };

    fn q(words: &[&'static str]) -> Vec<Query<'static>> {
        words
            .iter()
            .map(|w| match parse_word(w.as_bytes()) {
                Word::Query(q) => q,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn names(rows: &[Vec<(String, String)>]) -> Vec<String> {
        rows.iter()
            .map(|r| {
                r.iter()
                    .find(|(n, _)| n == "name")
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            })
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn query_stack() {
        let mut s = State::new(0);
        let iface = menu("interface").expect("menu");
        s.set(iface, Some("ether2"), &pairs(&[("mtu", "1400")]))
            .expect("set");
        let print =
            |qs: &[&'static str]| names(&s.print(iface, &q(qs), None, &CTX).expect("print"));
        assert_eq!(print(&["?name=ether1"]), ["ether1"]);
        assert_eq!(
            print(&["?name=ether1", "?name=ether2", "?#|"]),
            ["ether1", "ether2"]
        );
        assert_eq!(
            print(&["?name=ether1", "?#!"]),
            ["ether2", "ether3", "ether4"]
        );
        assert_eq!(print(&["?<mtu=1500"]), ["ether2"]);
        assert_eq!(print(&["?>mtu=1400"]), ["ether1", "ether3", "ether4"]);
        assert_eq!(print(&["?-comment"]).len(), 4);
        assert_eq!(print(&["?comment"]).len(), 0);
        assert_eq!(print(&["?disabled=no"]).len(), 4);
        assert_eq!(
            print(&["?name=ether1", "?name=ether3", "?#|", "?mtu=1500", "?#&"]),
            ["ether1", "ether3"]
        );
        // `0` at the end of the word keeps only the top value.
        assert_eq!(print(&["?name=nope", "?name=ether4", "?#0"]), ["ether4"]);
        assert_eq!(print(&["?name=ether4", "?name=nope", "?#."]), ["ether4"]);
        assert!(s.print(iface, &q(&["?#x"]), None, &CTX).is_err());
    }

    #[test]
    fn add_set_remove_and_proplist() {
        let mut s = State::new(0);
        let addr = menu("ip/address").expect("menu");
        let id = s
            .add(
                addr,
                &pairs(&[("address", "10.0.0.1/24"), ("interface", "ether1")]),
                &CTX,
            )
            .expect("add");
        assert_eq!(id, "*1");
        let rows = s
            .print(addr, &[], Some(".id,network"), &CTX)
            .expect("print");
        assert_eq!(rows, vec![pairs(&[(".id", "*1"), ("network", "10.0.0.0")])]);
        assert_eq!(
            s.add(
                addr,
                &pairs(&[("address", "10.0.0.1/24"), ("interface", "ether1")]),
                &CTX
            )
            .map_err(|t| t.message),
            Err("failure: already have such address".into())
        );
        assert!(
            s.add(
                addr,
                &pairs(&[("address", "10.0.0.300/24"), ("interface", "ether1")]),
                &CTX
            )
            .is_err()
        );
        assert!(
            s.add(
                addr,
                &pairs(&[("address", "10.0.0.2/24"), ("interface", "nope")]),
                &CTX
            )
            .is_err()
        );
        assert!(
            s.add(addr, &pairs(&[("interface", "ether1")]), &CTX)
                .is_err()
        );
        assert!(s.add(addr, &pairs(&[("bogus", "1")]), &CTX).is_err());
        s.set(
            addr,
            Some("*1"),
            &pairs(&[("comment", "uplink"), ("disabled", "yes")]),
        )
        .expect("set");
        assert_eq!(s.get(addr, Some("*1"), "disabled", &CTX), Ok("true".into()));
        assert_eq!(s.remove(addr, "*2"), Err(Trap::no_such_item()));
        s.remove(addr, "*1").expect("remove");
        assert!(s.print(addr, &[], None, &CTX).expect("print").is_empty());
        assert_eq!(
            s.add(menu("interface").expect("menu"), &[], &CTX)
                .map_err(|t| t.category),
            Err(Some(0))
        );
    }

    #[test]
    fn export_lists_the_configuration() {
        let mut s = State::new(0);
        let addr = menu("ip/address").expect("menu");
        s.add(
            addr,
            &pairs(&[
                ("address", "10.0.0.1/24"),
                ("interface", "ether1"),
                ("comment", "two words"),
            ]),
            &CTX,
        )
        .expect("add");
        let text = s.export(&CTX);
        assert!(text.contains("/ip address\r\nadd address=10.0.0.1/24 comment=\"two words\" interface=ether1 network=10.0.0.0\r\n"), "{text}");
        assert!(text.contains("set name=router-0"));
    }

    #[test]
    fn log_is_capped() {
        let mut s = State::new(0);
        for i in 0..MAX_LOG + 5 {
            s.log("script,info", &format!("m{i}"), &CTX);
        }
        assert_eq!(s.table(TableId::Log).rows.len(), MAX_LOG);
        assert_eq!(s.log_total, (MAX_LOG + 5) as u64);
    }

    #[test]
    fn uptime_format() {
        assert_eq!(format_uptime(Duration::ZERO), "0s");
        assert_eq!(format_uptime(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(format_uptime(Duration::from_secs(691_200)), "1w1d");
    }
}
