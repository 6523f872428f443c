//! When scheduled scripts run.
//!
//! [`recurrence`] is the calendar: a validated [`Recurrence`] (seed 004: one-time,
//! hourly, daily, weekly, monthly, in an IANA time zone) tells when each occurrence
//! falls, gives each one a stable [`Occurrence::index`] that keys the run ledger,
//! decides what to launch after downtime ([`Recurrence::due`]) and words the
//! `t_minus` countdown. [`launcher`] launches due schedules through the store and
//! the runner, a test site first when one is named. It is pure computation: the clock and the store are the
//! caller's, so two engines, or one restarted, agree on every occurrence.

pub mod launcher;
mod recurrence;

pub use recurrence::{
    Due, MAX_HOURLY_INTERVAL, MAX_PREVIEW, MissedRuns, ON_TIME, Occurrence, Occurrences,
    Recurrence, RecurrenceError, RecurrenceSpec, ScheduleType, t_minus,
};
