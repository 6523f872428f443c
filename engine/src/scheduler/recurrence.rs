//! Recurrence rules (seed 004) and the arithmetic of their occurrences.
//!
//! A rule lays its occurrences on the local wall clock of its time zone as numbered
//! *slots*: slot `k` is a local date and time computed from `start_date`,
//! `start_time` and `k` alone, and `k` is the occurrence's [`Occurrence::index`].
//! Because the index depends on nothing but the rule and the local date and time, any
//! engine, before or after a restart, asking from any point in time, gives the same
//! occurrence the same index, and the run ledger can key on it.
//!
//! | `schedule_type` | slot `k`                                            | index           |
//! |-----------------|-----------------------------------------------------|-----------------|
//! | `ONE_TIME`      | `start_date` at `start_time`, only for `k = 0`     | 0               |
//! | `HOURLY`        | the first slot plus `k * hourly_interval` hours     | intervals since the first slot |
//! | `DAILY`         | `start_date + k` days at `start_time`               | days since `start_date` |
//! | `WEEKLY`        | as `DAILY`, kept only on `days_of_week`             | days since `start_date` |
//! | `MONTHLY`       | day `recurrence_date` of the `k`-th month from `start_date`'s, at `start_time`; a month without that day is skipped | months since `start_date`'s month |
//!
//! `HOURLY` steps on the wall clock, not on elapsed time, so "every 6 hours from
//! 00:00" stays on 00:00, 06:00, 12:00 and 18:00 local time through the year.
//!
//! `end_date` is inclusive: an occurrence whose local date is `end_date` runs. A seed
//! one-time schedule has `endDate` equal to `startDate`, which only reads right that
//! way.
//!
//! Daylight saving, applied to every slot alike:
//! - a local time that does not exist (clocks spring forward over it) runs once, at the
//!   first instant after the gap: in Europe/Berlin, 02:30 on 2026-03-29 runs at 03:00
//!   CEST;
//! - a local time that happens twice (clocks fall back) runs once, the first time;
//! - when several slots land on the same instant (hourly slots inside a gap), only the
//!   first of them is an occurrence, under its own index.

use std::fmt;
use std::str::FromStr;

use chrono::offset::LocalResult;
use chrono::{
    DateTime, Datelike, Days, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest `hourly_interval`: a leap year of hours. Longer periods are what
/// `DAILY`, `WEEKLY` and `MONTHLY` are for.
pub const MAX_HOURLY_INTERVAL: u32 = 8784;

/// The most occurrences one [`Recurrence::preview`] returns, whatever it is asked for,
/// because the count can come from an HTTP client.
pub const MAX_PREVIEW: usize = 1000;

/// How late an occurrence may be launched and still count as on time rather than
/// missed: a timer that fires a few seconds late under load must not skip it, and an
/// engine restarted within this window still runs it (once: the ledger has its index).
pub const ON_TIME: TimeDelta = TimeDelta::minutes(1);

/// How far around a point in time the slot search starts. Slot times are local, and
/// a local time and the UTC instant it resolves to differ by at most the largest UTC
/// offset (14 h) plus the largest daylight-saving gap (a day, Samoa 2011); three days
/// covers both with room to spare.
const SEARCH_MARGIN: TimeDelta = TimeDelta::days(3);

/// How many slots back the nearest earlier existing slot can be: six days without an
/// occurrence in a weekly rule, one month without the day in a monthly one.
const MAX_SKIPPED_SLOTS: usize = 7;

/// How a schedule recurs, spelled as in seed 004.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ScheduleType {
    OneTime,
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

impl ScheduleType {
    fn as_str(self) -> &'static str {
        match self {
            Self::OneTime => "ONE_TIME",
            Self::Hourly => "HOURLY",
            Self::Daily => "DAILY",
            Self::Weekly => "WEEKLY",
            Self::Monthly => "MONTHLY",
        }
    }
}

impl fmt::Display for ScheduleType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A recurrence as written by a client, not yet validated: seed 004's fields in
/// snake_case. The seed's camelCase spellings (`scheduleType`, `startDate`, ...) are
/// accepted too, so a body copied from the seed works.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecurrenceSpec {
    #[serde(alias = "scheduleType")]
    pub schedule_type: ScheduleType,
    /// The first local date an occurrence may fall on.
    #[serde(alias = "startDate")]
    pub start_date: NaiveDate,
    /// The last local date an occurrence may fall on (inclusive); none: no end.
    #[serde(default, alias = "endDate")]
    pub end_date: Option<NaiveDate>,
    /// Local wall-clock time, `HH:MM:SS` (or `HH:MM`); precise to the second.
    #[serde(alias = "startTime", with = "wall_time")]
    pub start_time: NaiveTime,
    /// IANA time zone name such as `Europe/Berlin`. Seed 004 has no time zone, so a
    /// body without one is in UTC.
    #[serde(default = "utc_name")]
    pub timezone: String,
    /// `HOURLY` only: hours between occurrences.
    #[serde(
        default,
        alias = "hourlyInterval",
        skip_serializing_if = "Option::is_none"
    )]
    pub hourly_interval: Option<u32>,
    /// `WEEKLY` only: ISO days, 1 = Monday to 7 = Sunday. English day names (`"MONDAY"`,
    /// `"mon"`) and a comma-separated string are read too.
    #[serde(
        default,
        alias = "daysOfWeek",
        deserialize_with = "days_of_week::deserialize",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub days_of_week: Vec<u32>,
    /// `MONTHLY` only: the day of the month, 1 to 31.
    #[serde(
        default,
        alias = "recurrenceDate",
        skip_serializing_if = "Option::is_none"
    )]
    pub recurrence_date: Option<u32>,
}

fn utc_name() -> String {
    "UTC".to_owned()
}

/// Why a [`RecurrenceSpec`] is not a valid recurrence; each message starts with the
/// field at fault, which [`RecurrenceError::field`] also gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecurrenceError {
    #[error("timezone: `{0}` is not an IANA time zone name such as Europe/Berlin")]
    UnknownTimezone(String),
    #[error("start_time: {0} is a leap second; use a time from 00:00:00 to 23:59:59")]
    LeapSecond(NaiveTime),
    #[error("end_date: {end} is before start_date {start}")]
    EndBeforeStart { start: NaiveDate, end: NaiveDate },
    #[error("hourly_interval: required when schedule_type is HOURLY")]
    MissingHourlyInterval,
    #[error("hourly_interval: must be from 1 to {MAX_HOURLY_INTERVAL} hours, not {0}")]
    HourlyIntervalOutOfRange(u32),
    #[error("days_of_week: at least one day is required when schedule_type is WEEKLY")]
    NoDaysOfWeek,
    #[error("days_of_week: {0} is not a day of the week (1 = Monday to 7 = Sunday)")]
    DayOfWeekOutOfRange(u32),
    #[error("recurrence_date: required when schedule_type is MONTHLY")]
    MissingRecurrenceDate,
    #[error("recurrence_date: must be a day of the month from 1 to 31, not {0}")]
    RecurrenceDateOutOfRange(u32),
    #[error("{field}: applies only when schedule_type is {applies_to}, not {schedule_type}")]
    NotApplicable {
        field: &'static str,
        applies_to: ScheduleType,
        schedule_type: ScheduleType,
    },
    #[error("end_date: no occurrence falls between start_date {start} and end_date {end}")]
    NoOccurrence { start: NaiveDate, end: NaiveDate },
}

impl RecurrenceError {
    /// The field at fault, as the JSON spells it.
    pub fn field(&self) -> &'static str {
        match self {
            Self::UnknownTimezone(_) => "timezone",
            Self::LeapSecond(_) => "start_time",
            Self::EndBeforeStart { .. } | Self::NoOccurrence { .. } => "end_date",
            Self::MissingHourlyInterval | Self::HourlyIntervalOutOfRange(_) => "hourly_interval",
            Self::NoDaysOfWeek | Self::DayOfWeekOutOfRange(_) => "days_of_week",
            Self::MissingRecurrenceDate | Self::RecurrenceDateOutOfRange(_) => "recurrence_date",
            Self::NotApplicable { field, .. } => field,
        }
    }
}

/// A validated recurrence. It (de)serializes as its [`RecurrenceSpec`], and
/// deserializing validates, so a `Recurrence` in hand is always a valid one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecurrenceSpec", into = "RecurrenceSpec")]
pub struct Recurrence {
    spec: RecurrenceSpec,
    tz: Tz,
    /// `WEEKLY`: bit `n` set for ISO day `n`.
    days: u8,
}

/// One occurrence of a recurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Occurrence {
    /// The occurrence's number in its rule (see the module's table): a pure function
    /// of the rule and the occurrence's local date and time, so it keys the run ledger.
    pub index: u64,
    /// When it runs.
    pub at: DateTime<Utc>,
}

/// What to do with occurrences that fell due while the engine was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedRuns {
    /// Missed occurrences do not run; the schedule waits for its next one.
    #[default]
    Skip,
    /// The most recent missed occurrence runs once if it is still within the grace
    /// window; older ones do not run.
    RunOnce,
}

/// What [`Recurrence::due`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// The one occurrence to launch now, if any.
    pub launch: Option<Occurrence>,
    /// The most recent occurrence that fell due after the last launched one and will
    /// not run (late beyond the policy's window), for the run history and audit log.
    pub missed: Option<Occurrence>,
    /// The next occurrence to wait for, strictly after `now`; none once the rule ends.
    pub next: Option<Occurrence>,
}

enum Slot {
    At(NaiveDateTime),
    /// No occurrence in this slot (a weekday not chosen, a month without the day), but
    /// later slots may have one.
    Skip,
    /// Past the end date: no later slot has an occurrence.
    End,
}

impl TryFrom<RecurrenceSpec> for Recurrence {
    type Error = RecurrenceError;

    fn try_from(spec: RecurrenceSpec) -> Result<Self, RecurrenceError> {
        Self::new(spec)
    }
}

impl From<Recurrence> for RecurrenceSpec {
    fn from(recurrence: Recurrence) -> Self {
        recurrence.spec
    }
}

impl Recurrence {
    /// Validates `spec`; the error names the first field at fault.
    pub fn new(spec: RecurrenceSpec) -> Result<Self, RecurrenceError> {
        use RecurrenceError as E;
        use ScheduleType as T;
        let tz =
            Tz::from_str(&spec.timezone).map_err(|_| E::UnknownTimezone(spec.timezone.clone()))?;
        if spec.start_time.nanosecond() >= 1_000_000_000 {
            return Err(E::LeapSecond(spec.start_time));
        }
        if let Some(end) = spec.end_date
            && end < spec.start_date
        {
            return Err(E::EndBeforeStart {
                start: spec.start_date,
                end,
            });
        }
        let kind = spec.schedule_type;
        let not_applicable = |field, applies_to| E::NotApplicable {
            field,
            applies_to,
            schedule_type: kind,
        };
        match (kind, spec.hourly_interval) {
            (T::Hourly, None) => return Err(E::MissingHourlyInterval),
            (T::Hourly, Some(n)) if !(1..=MAX_HOURLY_INTERVAL).contains(&n) => {
                return Err(E::HourlyIntervalOutOfRange(n));
            }
            (T::Hourly, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(not_applicable("hourly_interval", T::Hourly)),
        }
        let mut days = 0u8;
        for &day in &spec.days_of_week {
            if !(1..=7).contains(&day) {
                return Err(E::DayOfWeekOutOfRange(day));
            }
            days |= 1 << day;
        }
        match kind {
            T::Weekly if days == 0 => return Err(E::NoDaysOfWeek),
            T::Weekly => {}
            _ if days != 0 => return Err(not_applicable("days_of_week", T::Weekly)),
            _ => {}
        }
        match (kind, spec.recurrence_date) {
            (T::Monthly, None) => return Err(E::MissingRecurrenceDate),
            (T::Monthly, Some(d)) if !(1..=31).contains(&d) => {
                return Err(E::RecurrenceDateOutOfRange(d));
            }
            (T::Monthly, Some(_)) | (_, None) => {}
            (_, Some(_)) => return Err(not_applicable("recurrence_date", T::Monthly)),
        }
        let recurrence = Self {
            spec: RecurrenceSpec {
                start_time: spec
                    .start_time
                    .with_nanosecond(0)
                    .unwrap_or(spec.start_time),
                ..spec
            },
            tz,
            days,
        };
        if let Some(end) = recurrence.spec.end_date
            && recurrence.occurrences_from_slot(0).next().is_none()
        {
            return Err(E::NoOccurrence {
                start: recurrence.spec.start_date,
                end,
            });
        }
        Ok(recurrence)
    }

    /// The fields as validated.
    pub fn spec(&self) -> &RecurrenceSpec {
        &self.spec
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<Occurrence> {
        let from = after.checked_add_signed(TimeDelta::nanoseconds(1))?;
        self.occurrences(from).next()
    }

    /// The occurrences at or after `from`, in order. Without an end date it does not
    /// end: take what you need.
    pub fn occurrences(&self, from: DateTime<Utc>) -> Occurrences<'_> {
        let local = self.local(from);
        let start = local
            .checked_sub_signed(SEARCH_MARGIN)
            .unwrap_or(NaiveDateTime::MIN);
        Occurrences {
            next_slot: Some(self.slot_near(start)),
            from,
            rule: self,
        }
    }

    /// The next `n` occurrences at or after `from` (at most [`MAX_PREVIEW`]).
    pub fn preview(&self, from: DateTime<Utc>, n: usize) -> Vec<Occurrence> {
        self.occurrences(from).take(n.min(MAX_PREVIEW)).collect()
    }

    /// The most recent occurrence at or before `at`.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<Occurrence> {
        let local = self.local(at);
        let mut k = self.slot_near(
            local
                .checked_add_signed(SEARCH_MARGIN)
                .unwrap_or(NaiveDateTime::MAX),
        );
        // Past the end every slot is empty; start from the last one that may not be.
        if let Some(end) = self.spec.end_date {
            let after_end = end
                .checked_add_days(Days::new(1))
                .map_or(NaiveDateTime::MAX, |d| d.and_time(NaiveTime::MIN));
            k = k.min(self.slot_near(after_end));
        }
        loop {
            if let Some(o) = self.occurrence(k)
                && o.at <= at
            {
                return Some(o);
            }
            k = k.checked_sub(1)?;
        }
    }

    /// What to launch at `now`, given the index of the last occurrence launched (none
    /// if none ever was): at most one occurrence, never a burst of catch-up runs.
    ///
    /// Only the most recent occurrence at or before `now` is considered. It is
    /// launched if it comes after `last_launched` and is late by no more than
    /// [`ON_TIME`] (policy `skip`) or than `grace` (policy `run_once`; never less than
    /// [`ON_TIME`]). Older missed occurrences never run.
    pub fn due(
        &self,
        last_launched: Option<u64>,
        now: DateTime<Utc>,
        policy: MissedRuns,
        grace: TimeDelta,
    ) -> Due {
        let window = match policy {
            MissedRuns::Skip => ON_TIME,
            MissedRuns::RunOnce => grace.max(ON_TIME),
        };
        let pending = self
            .latest_at_or_before(now)
            .filter(|o| last_launched.is_none_or(|last| o.index > last));
        let (launch, missed) = match pending {
            Some(o) if now - o.at <= window => (Some(o), None),
            other => (None, other),
        };
        Due {
            launch,
            missed,
            next: self.next_after(now),
        }
    }

    /// `at` on the local wall clock; saturates at the ends of the calendar, where
    /// chrono's own conversion would panic on a date a client can send.
    fn local(&self, at: DateTime<Utc>) -> NaiveDateTime {
        let utc = at.naive_utc();
        let offset = self
            .tz
            .offset_from_utc_datetime(&utc)
            .fix()
            .local_minus_utc();
        utc.checked_add_signed(TimeDelta::seconds(i64::from(offset)))
            .unwrap_or(if offset < 0 {
                NaiveDateTime::MIN
            } else {
                NaiveDateTime::MAX
            })
    }

    fn first_slot(&self) -> NaiveDateTime {
        self.spec.start_date.and_time(self.spec.start_time)
    }

    /// The slot at or just before local time `local` (0 before the first).
    fn slot_near(&self, local: NaiveDateTime) -> u64 {
        let s = &self.spec;
        let k = match s.schedule_type {
            ScheduleType::OneTime => 0,
            ScheduleType::Hourly => {
                let interval = i64::from(s.hourly_interval.unwrap_or(1));
                (local - self.first_slot()).num_hours().div_euclid(interval)
            }
            ScheduleType::Daily | ScheduleType::Weekly => (local.date() - s.start_date).num_days(),
            ScheduleType::Monthly => month_number(local.date()) - month_number(s.start_date),
        };
        u64::try_from(k).unwrap_or(0)
    }

    fn slot(&self, k: u64) -> Slot {
        let s = &self.spec;
        let local = match s.schedule_type {
            ScheduleType::OneTime if k == 0 => self.first_slot(),
            ScheduleType::OneTime => return Slot::End,
            ScheduleType::Hourly => {
                let hours = k
                    .checked_mul(u64::from(s.hourly_interval.unwrap_or(1)))
                    .and_then(|h| i64::try_from(h).ok())
                    .and_then(TimeDelta::try_hours)
                    .and_then(|d| self.first_slot().checked_add_signed(d));
                match hours {
                    Some(local) => local,
                    None => return Slot::End,
                }
            }
            ScheduleType::Daily | ScheduleType::Weekly => {
                let Some(date) = s.start_date.checked_add_days(Days::new(k)) else {
                    return Slot::End;
                };
                if s.end_date.is_some_and(|end| date > end) {
                    return Slot::End;
                }
                if s.schedule_type == ScheduleType::Weekly
                    && self.days & (1 << date.weekday().number_from_monday()) == 0
                {
                    return Slot::Skip;
                }
                date.and_time(s.start_time)
            }
            ScheduleType::Monthly => {
                let Some((year, month)) = i64::try_from(k)
                    .ok()
                    .and_then(|k| month_number(s.start_date).checked_add(k))
                    .and_then(year_month)
                else {
                    return Slot::End;
                };
                let Some(first_of_month) = NaiveDate::from_ymd_opt(year, month, 1) else {
                    return Slot::End;
                };
                if s.end_date.is_some_and(|end| first_of_month > end) {
                    return Slot::End;
                }
                let day = s.recurrence_date.unwrap_or(1);
                match NaiveDate::from_ymd_opt(year, month, day) {
                    Some(date) if date >= s.start_date => date.and_time(s.start_time),
                    _ => return Slot::Skip,
                }
            }
        };
        if s.end_date.is_some_and(|end| local.date() > end) {
            return Slot::End;
        }
        Slot::At(local)
    }

    /// The occurrence in slot `k`: none if the slot is empty, or if it lands on the
    /// same instant as the slot before it (slots inside one daylight-saving gap).
    fn occurrence(&self, k: u64) -> Option<Occurrence> {
        let Slot::At(local) = self.slot(k) else {
            return None;
        };
        let at = self.resolve(local)?;
        // Resolution never goes backwards in time, so "not after" means "the same".
        let earlier = (0..k)
            .rev()
            .take(MAX_SKIPPED_SLOTS)
            .find_map(|j| match self.slot(j) {
                Slot::At(local) => Some(self.resolve(local)),
                _ => None,
            })
            .flatten();
        if earlier.is_some_and(|earlier| earlier >= at) {
            return None;
        }
        Some(Occurrence { index: k, at })
    }

    /// The instant a local time runs at: the first of two in a fold, the end of the
    /// gap for one that does not exist.
    fn resolve(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
            LocalResult::None => self.gap_end(local),
        }
    }

    /// The first valid instant after `local`, which lies in a gap. chrono-tz does not
    /// expose transitions, so the end is searched for: doubling steps find a valid local
    /// time past the gap, then bisection the first valid second.
    fn gap_end(&self, local: NaiveDateTime) -> Option<DateTime<Utc>> {
        let valid = |t: NaiveDateTime| self.tz.from_local_datetime(&t).earliest();
        let mut step = TimeDelta::minutes(1);
        let mut hi = loop {
            let t = local.checked_add_signed(step)?;
            if valid(t).is_some() {
                break t;
            }
            if step > SEARCH_MARGIN {
                return None;
            }
            step = step * 2;
        };
        let mut lo = local;
        while (hi - lo).num_seconds() > 1 {
            let mid = lo + TimeDelta::seconds((hi - lo).num_seconds() / 2);
            if valid(mid).is_some() {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        valid(hi).map(|t| t.with_timezone(&Utc))
    }

    fn occurrences_from_slot(&self, k: u64) -> Occurrences<'_> {
        Occurrences {
            rule: self,
            next_slot: Some(k),
            from: DateTime::<Utc>::MIN_UTC,
        }
    }
}

/// Occurrences of a [`Recurrence`] in order, from [`Recurrence::occurrences`].
#[derive(Debug, Clone)]
pub struct Occurrences<'a> {
    rule: &'a Recurrence,
    next_slot: Option<u64>,
    from: DateTime<Utc>,
}

impl Iterator for Occurrences<'_> {
    type Item = Occurrence;

    fn next(&mut self) -> Option<Occurrence> {
        loop {
            let k = self.next_slot?;
            self.next_slot = k.checked_add(1);
            match self.rule.slot(k) {
                Slot::End => {
                    self.next_slot = None;
                    return None;
                }
                Slot::Skip => {}
                Slot::At(_) => {
                    if let Some(o) = self.rule.occurrence(k)
                        && o.at >= self.from
                    {
                        return Some(o);
                    }
                }
            }
        }
    }
}

/// Months since year 0, so month arithmetic is integer arithmetic.
fn month_number(date: NaiveDate) -> i64 {
    i64::from(date.year()) * 12 + i64::from(date.month0())
}

fn year_month(n: i64) -> Option<(i32, u32)> {
    let year = i32::try_from(n.div_euclid(12)).ok()?;
    let month = u32::try_from(n.rem_euclid(12)).ok()? + 1;
    Some((year, month))
}

/// The `t_minus` countdown of seed 000, to the nearest unit: "in 2 days", "in 3 hours",
/// "in 5 minutes", "in 20 seconds", "now" (within a second either way), "2 hours ago".
pub fn t_minus(now: DateTime<Utc>, at: DateTime<Utc>) -> String {
    let seconds = (at - now).num_seconds();
    let abs = seconds.unsigned_abs();
    if abs < 1 {
        return "now".to_owned();
    }
    let rounded = |unit: u64| (abs + unit / 2) / unit;
    let (n, unit) = match (rounded(60), rounded(3600)) {
        // A launch a few seconds away is counted in seconds, so a countdown moves.
        _ if abs < 60 => (abs, "second"),
        (minutes, _) if minutes < 60 => (minutes, "minute"),
        (_, hours) if hours < 24 => (hours, "hour"),
        _ => (rounded(86_400), "day"),
    };
    let s = if n == 1 { "" } else { "s" };
    if seconds > 0 {
        format!("in {n} {unit}{s}")
    } else {
        format!("{n} {unit}{s} ago")
    }
}

/// `start_time` as seed 004 writes it, `HH:MM:SS`; `HH:MM` is read too.
mod wall_time {
    use super::*;

    pub fn serialize<S: Serializer>(time: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&time.format("%H:%M:%S"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let text = String::deserialize(d)?;
        NaiveTime::parse_from_str(&text, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(&text, "%H:%M"))
            .ok()
            .filter(|t| t.nanosecond() < 1_000_000_000)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "start_time: `{text}` is not a time of day as HH:MM:SS"
                ))
            })
    }
}

/// `days_of_week` as numbers, day names, or one comma-separated string of either.
mod days_of_week {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Day {
        Number(u32),
        Name(String),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Days {
        List(Vec<Day>),
        Text(String),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
        let days = match Option::<Days>::deserialize(d)? {
            None => return Ok(Vec::new()),
            Some(Days::List(days)) => days,
            Some(Days::Text(text)) => text
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Day::Name(t.to_owned()))
                .collect(),
        };
        days.into_iter()
            .map(|day| match day {
                Day::Number(n) => Ok(n),
                Day::Name(name) => parse(&name).ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "days_of_week: `{name}` is not a day of the week (1 = Monday to 7 = Sunday, or its name)"
                    ))
                }),
            })
            .collect()
    }

    fn parse(name: &str) -> Option<u32> {
        if let Ok(n) = name.parse::<u32>() {
            return Some(n);
        }
        name.parse::<Weekday>()
            .ok()
            .map(|day| day.number_from_monday())
    }
}

#[cfg(test)]
mod tests;
