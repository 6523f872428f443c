//! The dead-man rollback on RouterOS: a binary backup saved first, then a one-shot
//! `/system scheduler` entry that loads it at the router's own clock plus the window.
//!
//! The order matters: the backup is taken before the entry exists, so when the router
//! loads it, the entry is gone with everything else made after it, and the restore
//! cannot fire twice. Disarming removes the entry and then the file, each by name, and
//! takes an entry or a file already gone as done.

use yardmaster_plugin_sdk::transport::{Armed, Target, TransportError};

use crate::session::Session;
use yardmaster_plugin_sdk::net::Connection;

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// A router's date as it writes it: `2024-05-28` (7.10 and later) or `may/28/2024`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateStyle {
    Iso,
    Legacy,
}

fn parse_date(text: &str) -> Option<(i64, u32, u32, DateStyle)> {
    let text = text.trim();
    if let [y, m, d] = text.split('-').collect::<Vec<_>>()[..] {
        return Some((
            y.parse().ok()?,
            m.parse().ok()?,
            d.parse().ok()?,
            DateStyle::Iso,
        ));
    }
    if let [m, d, y] = text.split('/').collect::<Vec<_>>()[..] {
        let month = MONTHS.iter().position(|n| n.eq_ignore_ascii_case(m))? as u32 + 1;
        return Some((y.parse().ok()?, month, d.parse().ok()?, DateStyle::Legacy));
    }
    None
}

fn format_date(y: i64, m: u32, d: u32, style: DateStyle) -> String {
    match style {
        DateStyle::Iso => format!("{y:04}-{m:02}-{d:02}"),
        DateStyle::Legacy => {
            let month = MONTHS.get(m.saturating_sub(1) as usize).unwrap_or(&"jan");
            format!("{month}/{d:02}/{y:04}")
        }
    }
}

fn parse_time(text: &str) -> Option<u32> {
    let [h, m, s] = text.trim().split(':').collect::<Vec<_>>()[..] else {
        return None;
    };
    let (h, m, s): (u32, u32, u32) = (h.parse().ok()?, m.parse().ok()?, s.parse().ok()?);
    (h < 24 && m < 60 && s < 60).then_some(h * 3600 + m * 60 + s)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The router's `date` and `time` plus `seconds`, written as the router writes them.
fn later(date: &str, time: &str, seconds: u32) -> Option<(String, String)> {
    let (y, m, d, style) = parse_date(date)?;
    let at = days_from_civil(y, m, d) * 86_400 + i64::from(parse_time(time)?) + i64::from(seconds);
    let (y, m, d) = civil_from_days(at.div_euclid(86_400));
    let t = at.rem_euclid(86_400);
    Some((
        format_date(y, m, d, style),
        format!("{:02}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60),
    ))
}

fn field<'a>(row: Option<&'a Vec<(String, String)>>, name: &str) -> Option<&'a str> {
    row?.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A name RouterOS takes as a file and a scheduler entry name as it is.
fn checked_name(name: &str) -> Result<&str, TransportError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(TransportError::Other(format!(
            "`{name}` is not a name for a backup and a scheduler entry: 1 to 64 letters, digits, `-` or `_`"
        )))
    }
}

pub(crate) fn arm(
    session: &mut Session<Connection>,
    target: &Target,
    name: &str,
    seconds: u32,
) -> Result<Armed, TransportError> {
    let name = checked_name(name)?;
    if seconds == 0 {
        return Err(TransportError::Other(
            "a rollback needs a window of at least one second".to_owned(),
        ));
    }
    let clock = session
        .command(&["/system/clock/print".to_owned()])?
        .into_reply()?;
    let row = clock.rows.first();
    let (date, time) = match (field(row, "date"), field(row, "time")) {
        (Some(date), Some(time)) => (date.to_owned(), time.to_owned()),
        _ => {
            return Err(TransportError::Protocol(format!(
                "site {}: /system/clock/print gave no date and time",
                target.site_id
            )));
        }
    };
    let (start_date, start_time) = later(&date, &time, seconds).ok_or_else(|| {
        TransportError::Protocol(format!(
            "site {}: cannot read the router's clock `{date} {time}`",
            target.site_id
        ))
    })?;
    // Before the entry exists, so that loading this backup takes the entry away too.
    session
        .command(&[
            "/system/backup/save".to_owned(),
            format!("=name={name}"),
            "=dont-encrypt=yes".to_owned(),
        ])?
        .into_reply()?;
    let backup_file = format!("{name}.backup");
    let added = session.command(&[
        "/system/scheduler/add".to_owned(),
        format!("=name={name}"),
        format!("=start-date={start_date}"),
        format!("=start-time={start_time}"),
        "=interval=0s".to_owned(),
        format!("=on-event=/system backup load name={backup_file} password=\"\""),
        "=comment=yardmaster dead-man rollback".to_owned(),
    ])?;
    if let Some(trap) = added.trap {
        // Without the entry nothing guards the script: take the backup away again.
        let _ = remove_by_name(session, "/file", &backup_file);
        return Err(TransportError::Trap(trap));
    }
    Ok(Armed {
        backup_file,
        scheduler_entry: name.to_owned(),
        fires_at: format!("{start_date} {start_time}"),
    })
}

/// Removes the row of `menu` named `name`, if there is one.
fn remove_by_name(
    session: &mut Session<Connection>,
    menu: &str,
    name: &str,
) -> Result<(), TransportError> {
    let found = session
        .command(&[
            format!("{menu}/print"),
            format!("?name={name}"),
            "=.proplist=.id".to_owned(),
        ])?
        .into_reply()?;
    for row in &found.rows {
        if let Some(id) = field(Some(row), ".id") {
            session
                .command(&[format!("{menu}/remove"), format!("=.id={id}")])?
                .into_reply()?;
        }
    }
    Ok(())
}

pub(crate) fn disarm(
    session: &mut Session<Connection>,
    armed: &Armed,
) -> Result<(), TransportError> {
    // The entry first: once it is gone, nothing will load the file.
    remove_by_name(
        session,
        "/system/scheduler",
        checked_name(&armed.scheduler_entry)?,
    )?;
    remove_by_name(session, "/file", &armed.backup_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deadline_is_written_as_the_router_writes_its_clock() {
        assert_eq!(
            later("2024-05-28", "08:05:28", 300),
            Some(("2024-05-28".into(), "08:10:28".into()))
        );
        assert_eq!(
            later("2024-12-31", "23:59:30", 45),
            Some(("2025-01-01".into(), "00:00:15".into()))
        );
        assert_eq!(
            later("feb/28/2024", "23:00:00", 3600),
            Some(("feb/29/2024".into(), "00:00:00".into()))
        );
        assert_eq!(later("yesterday", "08:00:00", 1), None);
        assert_eq!(later("2024-05-28", "25:00:00", 1), None);
    }

    #[test]
    fn names_are_plain() {
        assert!(checked_name("yardmaster-rollback-01ab").is_ok());
        assert!(checked_name("a b").is_err());
        assert!(checked_name("x\"; /system reset-configuration").is_err());
    }
}
