//! The approval binding: a sha256 of exactly what an approval lets run.
//!
//! An approval names this hash, and the store launches a schedule only while the hash,
//! computed again in the launch's own transaction, is the one it was approved with. So
//! anything that changes what runs, where, how the engine reaches it, or when, makes the
//! approval void. The hash is computed from a canonical encoding, never from serde
//! output, so a new optional field or a different JSON library cannot change it.
//!
//! Canonical form, version 3, fed to sha256 in this order:
//!
//! ```text
//! str("yardmaster/approval-binding/v3")
//! "schedule"         str(id)
//! "script"           str(script)                 exact bytes, no normalisation
//! "sites"            set(sites)
//! "tags"             set(tags)
//! "excluded_sites"   set(excluded_sites)
//! "test_site"        opt(str(test_site_id))
//! "launch_at"        opt(instant(launch_at))
//! "recurrence"       opt(kind, interval, days, day_of_month, start_date, end_date,
//!                        start_time, timezone)
//! "missed_runs"      str("skip" | "run_once")
//! "make_backup"      bool
//! "abort_if_offline" bool
//! ["rollback_after"  u32(seconds)]              only when a rollback window is set
//! "rollout"          u32(canary) opt(u32(halt_failure_percent)) u32(halt_min_finished)
//!                    opt(u32(max_concurrency))
//! "resolved"         set(resolved fleet site ids)
//! "endpoints"        u64(count), then for each target in site id order:
//!                    str(site_id) bool(missing) str(address) opt(u32(port)) str(transport)
//!                    str(username) bool(tls.enabled) bool(tls.verify)
//!                    opt(str(tls.pinned_sha256)) opt(str(tls.server_name))
//!                    opt(str(credential digest))
//!                    then, only for a site with pinned SSH host keys:
//!                    str("ssh_host_keys") set(host keys)
//! "acknowledged_risks" set(rule ids)                 since v3
//! ```
//!
//! - every field name is written as `str(name)` before its value;
//! - `str(s)`: the byte length as u64 big-endian, then the UTF-8 bytes, so no two
//!   sequences of strings encode alike;
//! - `set(v)`: the distinct values in byte order, their count as u64 big-endian, then
//!   each as `str`: target lists are sets, and order or repetition does not change
//!   where a script runs;
//! - `opt(x)`: byte 0 for none, byte 1 followed by `x`; `bool`: byte 0 or 1;
//! - `instant(t)`: unix seconds as i64 big-endian, then nanoseconds as u32 big-endian;
//! - recurrence: `str(kind)` as seed 004 spells it (`WEEKLY`); `u32` interval, 1 when
//!   absent (the store's meaning); `set` of ISO weekdays (1 = Monday) as u32; `opt(u32)`
//!   day of month; dates as `str("YYYY-MM-DD")`; start time as `str("HH:MM:SS")` then
//!   u32 nanoseconds; `str(timezone)` as written;
//! - a field in brackets is written (name and value) only when it is set, so the hashes
//!   of schedules without it are unchanged; its name cannot be mistaken for the field
//!   that follows it;
//! - the result is 64 lowercase hex digits.
//!
//! Targets are bound as resolved when the schedule is approved: tags are resolved to
//! sites then, and a site tagged afterwards is not covered; neither is a target whose
//! address, port, transport, TLS settings, user name, credential or pinned SSH host keys
//! changed. The credential is bound by a digest of its sealed form
//! ([`Endpoint::credential`]), never by the secret.
//!
//! Version 3 added the acknowledged risks: the approver accepts the script's findings
//! as listed, so a change of the list needs a new approval. As from v1 to v2, an approval
//! stored under an older version no longer matches the hash a launch computes: the launch
//! voids it (`script.approval_voided`) and the schedule needs a new approval.

use chrono::{DateTime, Timelike, Utc};
use sha2::{Digest, Sha256};

use crate::store::{
    Endpoint, MissedRunPolicy, Recurrence, RecurrenceKind, ScheduledScript, Targets,
};

/// Prefix of the encoding; a new canonical form gets a new version, and with it new hashes.
const DOMAIN: &str = "yardmaster/approval-binding/v3";

/// The approval hash of a schedule as it stands, with its targets as resolved now.
pub fn approval_hash(schedule: &ScheduledScript, targets: &Targets) -> String {
    let mut c = Canon(Sha256::new());
    c.str(DOMAIN);
    c.field("schedule").str(&schedule.id);
    c.field("script").str(&schedule.script);
    c.field("sites").set(&schedule.sites);
    c.field("tags").set(&schedule.tags);
    c.field("excluded_sites").set(&schedule.excluded_sites);
    c.field("test_site");
    match &schedule.test_site_id {
        Some(site) => c.some().str(site),
        None => c.none(),
    };
    c.field("launch_at");
    match schedule.launch_at {
        Some(at) => c.some().instant(at),
        None => c.none(),
    };
    c.field("recurrence");
    match &schedule.recurrence {
        Some(r) => c.some().recurrence(r),
        None => c.none(),
    };
    c.field("missed_runs").str(match schedule.missed_runs {
        MissedRunPolicy::Skip => "skip",
        MissedRunPolicy::RunOnce => "run_once",
    });
    c.field("make_backup").bool(schedule.make_backup);
    c.field("abort_if_offline").bool(schedule.abort_if_offline);
    if let Some(secs) = schedule.rollback_after_secs {
        c.field("rollback_after").u32(secs);
    }
    let rollout = schedule.rollout;
    c.field("rollout").u32(rollout.canary);
    match rollout.halt_failure_percent {
        Some(p) => c.some().u32(u32::from(p)),
        None => c.none(),
    };
    c.u32(rollout.halt_min_finished);
    match rollout.max_concurrency {
        Some(n) => c.some().u32(n),
        None => c.none(),
    };
    c.field("resolved").set(&targets.sites);
    let mut endpoints: Vec<&Endpoint> = targets.endpoints.iter().collect();
    endpoints.sort_by(|a, b| a.site_id.cmp(&b.site_id));
    endpoints.dedup_by(|a, b| a.site_id == b.site_id);
    c.field("endpoints").u64(endpoints.len() as u64);
    for e in endpoints {
        c.endpoint(e);
    }
    c.field("acknowledged_risks")
        .set(&schedule.acknowledged_risks);
    hex::encode(c.0.finalize())
}

struct Canon(Sha256);

impl Canon {
    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.0.update(b);
        self
    }

    fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }

    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }

    fn field(&mut self, name: &str) -> &mut Self {
        self.str(name)
    }

    fn bool(&mut self, v: bool) -> &mut Self {
        self.bytes(&[u8::from(v)])
    }

    fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.some().str(s),
            None => self.none(),
        }
    }

    fn endpoint(&mut self, e: &Endpoint) -> &mut Self {
        self.str(&e.site_id).bool(e.missing).str(&e.address);
        match e.port {
            Some(p) => self.some().u32(u32::from(p)),
            None => self.none(),
        };
        self.str(&e.transport)
            .str(&e.username)
            .bool(e.tls.enabled)
            .bool(e.tls.verify)
            .opt_str(e.tls.pinned_sha256.as_deref())
            .opt_str(e.tls.server_name.as_deref())
            .opt_str(e.credential.as_deref());
        // Written only when there are pins, so endpoints without them hash as before.
        if !e.host_keys.is_empty() {
            self.str("ssh_host_keys").set(&e.host_keys);
        }
        self
    }

    fn none(&mut self) -> &mut Self {
        self.bytes(&[0])
    }

    fn some(&mut self) -> &mut Self {
        self.bytes(&[1])
    }

    fn set<S: AsRef<str>>(&mut self, values: &[S]) -> &mut Self {
        let mut v: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        v.sort_unstable();
        v.dedup();
        self.u64(v.len() as u64);
        for s in v {
            self.str(s);
        }
        self
    }

    fn instant(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.bytes(&at.timestamp().to_be_bytes())
            .u32(at.timestamp_subsec_nanos())
    }

    fn recurrence(&mut self, r: &Recurrence) -> &mut Self {
        self.str(match r.kind {
            RecurrenceKind::OneTime => "ONE_TIME",
            RecurrenceKind::Hourly => "HOURLY",
            RecurrenceKind::Daily => "DAILY",
            RecurrenceKind::Weekly => "WEEKLY",
            RecurrenceKind::Monthly => "MONTHLY",
        });
        self.u32(r.interval.unwrap_or(1));
        let mut days: Vec<u32> = r
            .days_of_week
            .iter()
            .map(|d| d.number_from_monday())
            .collect();
        days.sort_unstable();
        days.dedup();
        self.u64(days.len() as u64);
        for d in days {
            self.u32(d);
        }
        match r.day_of_month {
            Some(d) => self.some().u32(u32::from(d)),
            None => self.none(),
        };
        self.str(&r.start_date.format("%Y-%m-%d").to_string());
        match r.end_date {
            Some(d) => self.some().str(&d.format("%Y-%m-%d").to_string()),
            None => self.none(),
        };
        self.str(&r.start_time.format("%H:%M:%S").to_string())
            .u32(r.start_time.nanosecond());
        self.str(&r.timezone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_support::t;
    use chrono::{NaiveDate, NaiveTime, Weekday};

    fn schedule() -> ScheduledScript {
        ScheduledScript {
            id: "0190-schedule".into(),
            organization: "org1".into(),
            description: "Nightly BGP peer maintenance".into(),
            script: "/routing bgp peer disable [find name=peer1]".into(),
            sites: vec!["site-a".into(), "site-b".into()],
            tags: vec!["core".into()],
            excluded_sites: vec!["site-z".into()],
            launch_at: Some(t(3600)),
            recurrence: None,
            make_backup: true,
            abort_if_offline: true,
            test_site_id: Some("site-a".into()),
            notify: vec!["u1".into()],
            summary: None,
            status: crate::store::ScheduleStatus::Unauthorized,
            created_by: "u1".into(),
            updated_by: None,
            editors: vec!["u1".into()],
            version: 1,
            authorization_requested_at: None,
            authorized_at: None,
            authorized_by: None,
            approval: None,
            approved_targets: None,
            cancelled_at: None,
            started_at: None,
            next_launch_at: None,
            missed_runs: MissedRunPolicy::Skip,
            rollout: crate::store::Rollout::default(),
            acknowledged_risks: vec!["factory-reset".into()],
            origin: None,
            rollback_after_secs: None,
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn targets() -> Targets {
        let endpoint = |id: &str| Endpoint {
            site_id: id.into(),
            missing: false,
            address: format!("{id}.example.net"),
            port: Some(8728),
            transport: "routeros-api".into(),
            username: "admin".into(),
            tls: crate::store::TlsSettings::default(),
            credential: Some("c0ffee".into()),
            host_keys: Vec::new(),
        };
        Targets {
            sites: vec!["site-a".into(), "site-b".into(), "site-c".into()],
            endpoints: vec![endpoint("site-a"), endpoint("site-b"), endpoint("site-c")],
        }
    }

    fn hash(s: &ScheduledScript) -> String {
        approval_hash(s, &targets())
    }

    fn weekly() -> Recurrence {
        Recurrence {
            kind: RecurrenceKind::Weekly,
            interval: None,
            days_of_week: vec![Weekday::Mon, Weekday::Thu],
            day_of_month: None,
            start_date: NaiveDate::from_ymd_opt(2027, 1, 1).expect("date"),
            end_date: NaiveDate::from_ymd_opt(2027, 6, 30),
            start_time: NaiveTime::from_hms_opt(4, 0, 0).expect("time"),
            timezone: "Europe/Berlin".into(),
        }
    }

    #[test]
    fn the_hash_is_64_hex_digits_and_pinned() {
        let h = hash(&schedule());
        assert_eq!(h.len(), 64);
        assert!(
            h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        // Pinned: a change of this value is a change of the canonical form, which makes
        // every stored approval stale. Bump DOMAIN's version when it is meant.
        assert_eq!(h, PINNED);
    }

    /// Computed apart from this code, from the form in the module documentation.
    const PINNED: &str = "c701b18ade266f6ecdfb71d0832db7a2272dd34da6e935dd3a83e078ee317515";

    #[test]
    fn the_same_inputs_hash_the_same() {
        assert_eq!(hash(&schedule()), hash(&schedule()));
        let mut with_rule = schedule();
        with_rule.recurrence = Some(weekly());
        assert_eq!(hash(&with_rule), hash(&with_rule.clone()));
    }

    type Edit = fn(&mut ScheduledScript);

    #[test]
    fn what_does_not_change_what_runs_does_not_change_the_hash() {
        let base = hash(&schedule());
        let same: Vec<(&str, Edit)> = vec![
            ("site order", |s| s.sites.reverse()),
            ("repeated site", |s| s.sites.push("site-a".into())),
            ("description", |s| s.description = "Renamed".into()),
            ("notify", |s| s.notify.push("u9".into())),
            ("summary", |s| s.summary = Some("adds a rule".into())),
            ("status", |s| {
                s.status = crate::store::ScheduleStatus::Scheduled
            }),
            ("updated_at", |s| s.updated_at = t(99)),
            ("acknowledged order", |s| {
                s.acknowledged_risks = vec!["factory-reset".into(), "factory-reset".into()]
            }),
        ];
        for (what, change) in same {
            let mut s = schedule();
            change(&mut s);
            assert_eq!(hash(&s), base, "{what}");
        }
        let mut a = schedule();
        a.recurrence = Some(weekly());
        let mut b = a.clone();
        if let Some(r) = b.recurrence.as_mut() {
            r.days_of_week = vec![Weekday::Thu, Weekday::Mon, Weekday::Thu];
            r.interval = Some(1);
        }
        assert_eq!(hash(&a), hash(&b), "day order, interval 1");
    }

    #[test]
    fn any_change_to_what_runs_changes_the_hash() {
        type Change = fn(&mut ScheduledScript);
        let changes: Vec<(&str, Change)> = vec![
            ("id", |s| s.id = "0190-other".into()),
            ("script", |s| s.script.push(' ')),
            ("script line ending", |s| s.script.push_str("\r\n")),
            ("site added", |s| s.sites.push("site-c".into())),
            ("site removed", |s| {
                s.sites.pop();
            }),
            ("tag", |s| s.tags = vec!["edge".into()]),
            ("tag case", |s| s.tags = vec!["Core".into()]),
            ("excluded", |s| s.excluded_sites.clear()),
            ("test site", |s| s.test_site_id = Some("site-b".into())),
            ("no test site", |s| s.test_site_id = None),
            ("launch_at", |s| s.launch_at = Some(t(3601))),
            ("launch_at nanos", |s| {
                s.launch_at = s.launch_at.map(|a| a + chrono::TimeDelta::nanoseconds(1))
            }),
            ("no launch_at", |s| s.launch_at = None),
            ("recurrence added", |s| s.recurrence = Some(weekly())),
            ("missed runs", |s| s.missed_runs = MissedRunPolicy::RunOnce),
            ("canary", |s| s.rollout.canary = 5),
            ("halt threshold", |s| {
                s.rollout.halt_failure_percent = Some(20)
            }),
            ("make_backup", |s| s.make_backup = false),
            ("abort_if_offline", |s| s.abort_if_offline = false),
            ("risk acknowledged", |s| {
                s.acknowledged_risks.push("user-change".into())
            }),
            ("no risk acknowledged", |s| s.acknowledged_risks.clear()),
            ("rollback window", |s| s.rollback_after_secs = Some(300)),
            ("longer rollback window", |s| {
                s.rollback_after_secs = Some(301)
            }),
            // A site id that moves between lists must not hash like the original.
            ("site to excluded", |s| {
                s.sites = vec!["site-a".into()];
                s.excluded_sites = vec!["site-b".into(), "site-z".into()];
            }),
            ("split string", |s| {
                s.sites = vec!["site-asite-b".into()];
            }),
        ];
        let base = hash(&schedule());
        let mut seen = std::collections::HashSet::from([base.clone()]);
        for (what, change) in changes {
            let mut s = schedule();
            change(&mut s);
            let h = hash(&s);
            assert!(seen.insert(h), "{what} hashes like an earlier variant");
        }
    }

    #[test]
    fn any_change_to_the_recurrence_changes_the_hash() {
        type Change = fn(&mut Recurrence);
        let changes: Vec<(&str, Change)> = vec![
            ("kind", |r| r.kind = RecurrenceKind::Daily),
            ("interval", |r| r.interval = Some(2)),
            ("day", |r| r.days_of_week.push(Weekday::Fri)),
            ("day of month", |r| r.day_of_month = Some(31)),
            ("start date", |r| {
                r.start_date = NaiveDate::from_ymd_opt(2027, 1, 2).expect("date")
            }),
            ("end date", |r| {
                r.end_date = NaiveDate::from_ymd_opt(2027, 7, 1)
            }),
            ("no end date", |r| r.end_date = None),
            ("start time", |r| {
                r.start_time = NaiveTime::from_hms_opt(4, 0, 1).expect("time")
            }),
            ("sub-second", |r| {
                r.start_time = NaiveTime::from_hms_nano_opt(4, 0, 0, 5).expect("time")
            }),
            ("timezone", |r| r.timezone = "Europe/Vienna".into()),
        ];
        let mut base = schedule();
        base.recurrence = Some(weekly());
        let mut seen = std::collections::HashSet::from([hash(&base)]);
        for (what, change) in changes {
            let mut s = base.clone();
            if let Some(r) = s.recurrence.as_mut() {
                change(r);
            }
            assert!(seen.insert(hash(&s)), "{what}");
        }
    }

    #[test]
    fn any_change_to_a_resolved_target_changes_the_hash() {
        type Change = fn(&mut Targets);
        let changes: Vec<(&str, Change)> = vec![
            ("site tagged since", |t| t.sites.push("site-d".into())),
            ("site untagged since", |t| {
                t.sites.pop();
            }),
            ("address", |t| t.endpoints[0].address = "203.0.113.9".into()),
            ("port", |t| t.endpoints[0].port = Some(8729)),
            ("no port", |t| t.endpoints[0].port = None),
            ("transport", |t| t.endpoints[0].transport = "ssh".into()),
            ("username", |t| t.endpoints[0].username = "root".into()),
            ("tls", |t| t.endpoints[0].tls.enabled = true),
            ("tls verify", |t| t.endpoints[0].tls.verify = true),
            ("tls pin", |t| {
                t.endpoints[0].tls.pinned_sha256 = Some("ab".repeat(32))
            }),
            ("tls name", |t| {
                t.endpoints[0].tls.server_name = Some("r1".into())
            }),
            ("new credential", |t| {
                t.endpoints[1].credential = Some("decaf".into())
            }),
            ("credential cleared", |t| t.endpoints[1].credential = None),
            ("host key pinned", |t| {
                t.endpoints[1].host_keys = vec!["SHA256:a".into()]
            }),
            ("pinned host keys changed", |t| {
                t.endpoints[1].host_keys = vec!["SHA256:a".into(), "SHA256:b".into()]
            }),
            ("site deleted", |t| t.endpoints[2].missing = true),
            ("endpoint added", |t| {
                let mut e = t.endpoints[0].clone();
                e.site_id = "site-e".into();
                t.endpoints.push(e);
            }),
        ];
        let s = schedule();
        let mut seen = std::collections::HashSet::from([hash(&s)]);
        for (what, change) in changes {
            let mut targets = targets();
            change(&mut targets);
            assert!(seen.insert(approval_hash(&s, &targets)), "{what}");
        }
        let mut reordered = targets();
        reordered.sites.reverse();
        reordered.endpoints.reverse();
        assert_eq!(
            approval_hash(&s, &reordered),
            hash(&s),
            "order is not meaning"
        );
    }
}
