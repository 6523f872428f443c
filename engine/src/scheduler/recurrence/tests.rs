use super::*;
use serde_json::json;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn rule(v: serde_json::Value) -> Recurrence {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
}

fn rejected(v: serde_json::Value) -> RecurrenceError {
    let spec: RecurrenceSpec = serde_json::from_value(v).expect("a well-formed spec");
    Recurrence::new(spec).expect_err("an invalid recurrence")
}

/// `(index, instant)` pairs of the first `n` occurrences from `from`, for compact asserts.
fn firsts(r: &Recurrence, from: &str, n: usize) -> Vec<(u64, String)> {
    r.preview(utc(from), n)
        .into_iter()
        .map(|o| (o.index, o.at.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
        .collect()
}

fn pairs(v: &[(u64, &str)]) -> Vec<(u64, String)> {
    v.iter().map(|&(i, s)| (i, s.to_owned())).collect()
}

fn daily(tz: &str, start: &str, time: &str) -> Recurrence {
    rule(json!({"schedule_type": "DAILY", "start_date": start, "start_time": time, "timezone": tz}))
}

fn hourly(tz: &str, start: &str, time: &str, interval: u32) -> Recurrence {
    rule(json!({
        "schedule_type": "HOURLY", "start_date": start, "start_time": time,
        "timezone": tz, "hourly_interval": interval
    }))
}

// Daylight saving

#[test]
fn berlin_spring_forward_runs_a_missing_time_once_at_the_end_of_the_gap() {
    let r = daily("Europe/Berlin", "2026-03-27", "02:30:00");
    assert_eq!(
        firsts(&r, "2026-03-01T00:00:00Z", 4),
        pairs(&[
            (0, "2026-03-27T01:30:00Z"),
            (1, "2026-03-28T01:30:00Z"),
            // 02:30 does not exist on 2026-03-29: 03:00 CEST is the next valid instant.
            (2, "2026-03-29T01:00:00Z"),
            (3, "2026-03-30T00:30:00Z"),
        ])
    );
}

#[test]
fn berlin_fall_back_runs_a_doubled_time_once_the_first_time() {
    let r = daily("Europe/Berlin", "2026-10-24", "02:30");
    assert_eq!(
        firsts(&r, "2026-10-01T00:00:00Z", 3),
        pairs(&[
            (0, "2026-10-24T00:30:00Z"),
            // 02:30 CEST, not 02:30 CET an hour later.
            (1, "2026-10-25T00:30:00Z"),
            (2, "2026-10-26T01:30:00Z"),
        ])
    );
    // Asked between the two 02:30s, the doubled one is already past: no second run.
    assert_eq!(
        r.next_after(utc("2026-10-25T01:00:00Z")).map(|o| o.index),
        Some(2)
    );
}

#[test]
fn new_york_both_ways() {
    let spring = daily("America/New_York", "2026-03-07", "02:30:00");
    assert_eq!(
        firsts(&spring, "2026-03-01T00:00:00Z", 3),
        pairs(&[
            (0, "2026-03-07T07:30:00Z"),
            (1, "2026-03-08T07:00:00Z"),
            (2, "2026-03-09T06:30:00Z"),
        ])
    );
    let fall = daily("America/New_York", "2026-10-31", "01:30:00");
    assert_eq!(
        firsts(&fall, "2026-10-01T00:00:00Z", 3),
        pairs(&[
            (0, "2026-10-31T05:30:00Z"),
            (1, "2026-11-01T05:30:00Z"),
            (2, "2026-11-02T06:30:00Z"),
        ])
    );
}

#[test]
fn auckland_far_from_utc_both_ways() {
    let r = daily("Pacific/Auckland", "2026-04-04", "02:30:00");
    assert_eq!(
        firsts(&r, "2026-04-01T00:00:00Z", 3),
        pairs(&[
            (0, "2026-04-03T13:30:00Z"),
            // 02:30 happens twice on 2026-04-05: NZDT (+13) first.
            (1, "2026-04-04T13:30:00Z"),
            (2, "2026-04-05T14:30:00Z"),
        ])
    );
    let r = daily("Pacific/Auckland", "2026-09-26", "02:30:00");
    assert_eq!(
        firsts(&r, "2026-09-01T00:00:00Z", 3),
        pairs(&[
            (0, "2026-09-25T14:30:00Z"),
            // 02:30 does not exist on 2026-09-27: 03:00 NZDT.
            (1, "2026-09-26T14:00:00Z"),
            (2, "2026-09-27T13:30:00Z"),
        ])
    );
}

#[test]
fn kathmandu_quarter_hour_offset() {
    let r = daily("Asia/Kathmandu", "2026-05-11", "09:00:00");
    assert_eq!(
        firsts(&r, "2026-05-11T00:00:00Z", 2),
        pairs(&[(0, "2026-05-11T03:15:00Z"), (1, "2026-05-12T03:15:00Z")])
    );
}

#[test]
fn hourly_across_spring_forward_keeps_one_run_per_instant() {
    let r = hourly("Europe/Berlin", "2026-03-29", "00:00:00", 1);
    assert_eq!(
        firsts(&r, "2026-03-28T00:00:00Z", 5),
        pairs(&[
            (0, "2026-03-28T23:00:00Z"),
            (1, "2026-03-29T00:00:00Z"),
            // Slot 2 (02:00) falls in the gap and runs at 03:00 CEST, where slot 3
            // (03:00) also lands: one run, under the first slot's index.
            (2, "2026-03-29T01:00:00Z"),
            (4, "2026-03-29T02:00:00Z"),
            (5, "2026-03-29T03:00:00Z"),
        ])
    );
    // Whoever asks from inside the collision gets the same answer.
    assert_eq!(
        r.next_after(utc("2026-03-29T00:30:00Z")).map(|o| o.index),
        Some(2)
    );
    assert_eq!(
        r.next_after(utc("2026-03-29T01:00:00Z")).map(|o| o.index),
        Some(4)
    );
}

#[test]
fn hourly_across_fall_back_does_not_repeat_the_doubled_hour() {
    let r = hourly("Europe/Berlin", "2026-10-25", "00:00:00", 1);
    assert_eq!(
        firsts(&r, "2026-10-24T00:00:00Z", 5),
        pairs(&[
            (0, "2026-10-24T22:00:00Z"),
            (1, "2026-10-24T23:00:00Z"),
            (2, "2026-10-25T00:00:00Z"),
            // 02:00 CET (01:00Z) is the doubled hour's second pass: not run.
            (3, "2026-10-25T02:00:00Z"),
            (4, "2026-10-25T03:00:00Z"),
        ])
    );
}

#[test]
fn hourly_stays_on_the_local_grid_through_daylight_saving() {
    let r = hourly("Europe/Berlin", "2026-03-28", "00:00:00", 6);
    let local_hours: Vec<u32> = r
        .preview(utc("2026-03-27T00:00:00Z"), 12)
        .iter()
        .map(|o| o.at.with_timezone(&r.timezone()).hour())
        .collect();
    assert_eq!(local_hours, [0, 6, 12, 18].repeat(3));
    // An interval that does not divide a day walks around the clock.
    let r = hourly("UTC", "2026-01-01", "10:49:00", 5);
    assert_eq!(
        firsts(&r, "2026-01-01T00:00:00Z", 4),
        pairs(&[
            (0, "2026-01-01T10:49:00Z"),
            (1, "2026-01-01T15:49:00Z"),
            (2, "2026-01-01T20:49:00Z"),
            (3, "2026-01-02T01:49:00Z"),
        ])
    );
}

// Calendar

#[test]
fn monthly_31st_skips_short_months() {
    let r = rule(json!({
        "schedule_type": "MONTHLY", "start_date": "2026-01-01", "end_date": "2026-12-31",
        "start_time": "09:00:00", "timezone": "UTC", "recurrence_date": 31
    }));
    let all: Vec<(u64, String)> = r
        .occurrences(utc("2000-01-01T00:00:00Z"))
        .map(|o| (o.index, o.at.format("%m-%d").to_string()))
        .collect();
    assert_eq!(
        all,
        pairs(&[
            (0, "01-31"),
            (2, "03-31"),
            (4, "05-31"),
            (6, "07-31"),
            (7, "08-31"),
            (9, "10-31"),
            (11, "12-31"),
        ])
    );
}

#[test]
fn monthly_29th_runs_in_february_of_leap_years_only() {
    let r = rule(json!({
        "schedule_type": "MONTHLY", "start_date": "2027-01-01", "start_time": "09:00:00",
        "timezone": "UTC", "recurrence_date": 29
    }));
    let februaries: Vec<String> = r
        .preview(utc("2027-01-01T00:00:00Z"), 40)
        .iter()
        .filter(|o| o.at.month() == 2)
        .map(|o| o.at.format("%Y-%m-%d").to_string())
        .collect();
    assert_eq!(februaries, ["2028-02-29"]);
    let r = rule(json!({
        "schedule_type": "MONTHLY", "start_date": "2026-01-01", "start_time": "09:00:00",
        "timezone": "UTC", "recurrence_date": 30
    }));
    let months: Vec<u32> = r
        .preview(utc("2026-01-01T00:00:00Z"), 11)
        .iter()
        .map(|o| o.at.month())
        .collect();
    assert_eq!(months, [1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
}

#[test]
fn monthly_skips_the_first_month_when_its_day_is_before_start_date() {
    // The seed's example: from 2022-05-12 on the 7th.
    let r = rule(json!({
        "schedule_type": "MONTHLY", "start_date": "2022-05-12", "end_date": "2022-12-31",
        "start_time": "09:20:00", "recurrence_date": 7
    }));
    let first = r.next_after(utc("2022-01-01T00:00:00Z")).expect("one");
    assert_eq!((first.index, first.at), (1, utc("2022-06-07T09:20:00Z")));
    assert_eq!(r.occurrences(utc("2022-01-01T00:00:00Z")).count(), 7);
}

#[test]
fn weekly_on_several_days() {
    // Monday, Wednesday and Friday, from a Tuesday.
    let r = rule(json!({
        "schedule_type": "WEEKLY", "start_date": "2026-05-12", "start_time": "09:00:00",
        "timezone": "Asia/Kathmandu", "days_of_week": [1, 3, 5]
    }));
    assert_eq!(
        firsts(&r, "2026-05-01T00:00:00Z", 4),
        pairs(&[
            (1, "2026-05-13T03:15:00Z"),
            (3, "2026-05-15T03:15:00Z"),
            (6, "2026-05-18T03:15:00Z"),
            (8, "2026-05-20T03:15:00Z"),
        ])
    );
    let days: Vec<Weekday> = r
        .preview(utc("2026-05-01T00:00:00Z"), 30)
        .iter()
        .map(|o| o.at.with_timezone(&r.timezone()).weekday())
        .collect();
    assert!(
        days.iter()
            .all(|d| [Weekday::Mon, Weekday::Wed, Weekday::Fri].contains(d))
    );
}

#[test]
fn weekly_days_by_name_or_in_a_string() {
    let by_name = rule(json!({
        "scheduleType": "WEEKLY", "startDate": "2026-05-11", "startTime": "10:49:00",
        "daysOfWeek": ["MONDAY", "tue"]
    }));
    let in_string = rule(json!({
        "scheduleType": "WEEKLY", "startDate": "2026-05-11", "startTime": "10:49:00",
        "daysOfWeek": "1, 2"
    }));
    assert_eq!(by_name.spec().days_of_week, [1, 2]);
    assert_eq!(by_name, in_string);
    let err = serde_json::from_value::<Recurrence>(json!({
        "schedule_type": "WEEKLY", "start_date": "2026-05-11", "start_time": "10:49:00",
        "days_of_week": ["Funday"]
    }))
    .expect_err("not a day");
    assert!(
        err.to_string().starts_with("days_of_week: `Funday`"),
        "{err}"
    );
}

// End dates

#[test]
fn end_date_is_inclusive() {
    let r = rule(json!({
        "schedule_type": "DAILY", "start_date": "2022-05-11", "end_date": "2022-05-15",
        "start_time": "09:42:00", "timezone": "Europe/Berlin"
    }));
    let all: Vec<Occurrence> = r.occurrences(utc("2022-01-01T00:00:00Z")).collect();
    assert_eq!(all.len(), 5);
    assert_eq!(all[4].at, utc("2022-05-15T07:42:00Z"));
    assert_eq!(r.next_after(all[4].at), None);

    let hourly = rule(json!({
        "schedule_type": "HOURLY", "start_date": "2022-05-11", "end_date": "2022-05-16",
        "start_time": "10:49:00", "hourly_interval": 6
    }));
    let last = hourly
        .occurrences(utc("2022-01-01T00:00:00Z"))
        .last()
        .expect("some");
    assert_eq!(last.at, utc("2022-05-16T22:49:00Z"));

    // The seed's one-time schedule ends the day it starts.
    let once = rule(json!({
        "schedule_type": "ONE_TIME", "start_date": "2022-05-11", "end_date": "2022-05-11",
        "start_time": "07:25:00"
    }));
    assert_eq!(
        once.occurrences(utc("2000-01-01T00:00:00Z"))
            .collect::<Vec<_>>(),
        [Occurrence {
            index: 0,
            at: utc("2022-05-11T07:25:00Z")
        }]
    );
    assert_eq!(once.next_after(utc("2022-05-11T07:25:00Z")), None);
}

#[test]
fn weekly_seed_example_runs_on_its_only_monday() {
    // 2022-05-11 is a Wednesday; Monday 16th is the only chosen day before the end.
    let r = rule(json!({
        "schedule_type": "WEEKLY", "start_date": "2022-05-11", "end_date": "2022-05-16",
        "start_time": "10:49:00", "days_of_week": [1, 2]
    }));
    assert_eq!(
        firsts(&r, "2022-01-01T00:00:00Z", 10),
        pairs(&[(5, "2022-05-16T10:49:00Z")])
    );
}

// Stable indexes

#[test]
fn indexes_do_not_depend_on_when_one_asks() {
    let rules = [
        hourly("Europe/Berlin", "2026-03-20", "01:30:00", 1),
        hourly("America/New_York", "2026-10-20", "00:15:00", 7),
        daily("Pacific/Auckland", "2026-03-30", "02:30:00"),
        rule(json!({
            "schedule_type": "WEEKLY", "start_date": "2026-03-01", "start_time": "02:30:00",
            "timezone": "Europe/Berlin", "days_of_week": [7, 3]
        })),
        rule(json!({
            "schedule_type": "MONTHLY", "start_date": "2026-01-15", "start_time": "02:30:00",
            "timezone": "America/New_York", "recurrence_date": 31
        })),
    ];
    for r in &rules {
        let all = r.preview(utc("2026-01-01T00:00:00Z"), 400);
        assert!(
            all.windows(2)
                .all(|w| w[0].at < w[1].at && w[0].index < w[1].index)
        );
        for (i, o) in all.iter().enumerate().take(300) {
            // From just before, from long before, from the previous occurrence.
            assert_eq!(r.next_after(o.at - TimeDelta::seconds(1)), Some(*o));
            assert_eq!(
                r.preview(o.at - TimeDelta::days(9), 400)
                    .iter()
                    .find(|p| p.index == o.index),
                Some(o)
            );
            if i > 0 {
                assert_eq!(r.next_after(all[i - 1].at), Some(*o));
            }
            assert_eq!(r.latest_at_or_before(o.at), Some(*o));
            assert_eq!(
                r.latest_at_or_before(o.at + TimeDelta::seconds(1)),
                Some(*o)
            );
        }
        // A second engine reading the stored rule computes the same keys.
        let copy: Recurrence =
            serde_json::from_str(&serde_json::to_string(r).expect("serializes")).expect("reads");
        assert_eq!(copy.preview(utc("2026-01-01T00:00:00Z"), 400), all);
    }
}

#[test]
fn daily_index_is_days_since_start_date() {
    let r = daily("Asia/Kathmandu", "2026-01-01", "09:00:00");
    let o = r.next_after(utc("2026-12-31T00:00:00Z")).expect("one");
    assert_eq!(o.index, 364);
    assert_eq!(o.at, utc("2026-12-31T03:15:00Z"));
}

// Missed runs

fn nine_am() -> Recurrence {
    daily("UTC", "2026-06-01", "09:00:00")
}

#[test]
fn an_occurrence_reached_on_time_is_launched() {
    let r = nine_am();
    let due = r.due(
        Some(9),
        utc("2026-06-11T09:00:02Z"),
        MissedRuns::Skip,
        TimeDelta::zero(),
    );
    assert_eq!(
        due.launch,
        Some(Occurrence {
            index: 10,
            at: utc("2026-06-11T09:00:00Z")
        })
    );
    assert_eq!(due.missed, None);
    assert_eq!(due.next.map(|o| o.index), Some(11));
}

#[test]
fn skip_launches_nothing_after_downtime_and_waits_for_the_next() {
    let r = nine_am();
    // Down from the 8th to the 11th at noon: three occurrences were missed.
    let due = r.due(
        Some(7),
        utc("2026-06-11T12:00:00Z"),
        MissedRuns::Skip,
        TimeDelta::hours(6),
    );
    assert_eq!(due.launch, None);
    assert_eq!(due.missed.map(|o| o.index), Some(10));
    assert_eq!(
        due.next,
        Some(Occurrence {
            index: 11,
            at: utc("2026-06-12T09:00:00Z")
        })
    );
}

#[test]
fn run_once_launches_only_the_most_recent_missed_within_grace() {
    let r = nine_am();
    let due = r.due(
        Some(7),
        utc("2026-06-11T12:00:00Z"),
        MissedRuns::RunOnce,
        TimeDelta::hours(6),
    );
    assert_eq!(due.launch.map(|o| o.index), Some(10));
    assert_eq!(due.missed, None);
    assert_eq!(due.next.map(|o| o.index), Some(11));
    // Asked again after launching it: nothing more, no catch-up of 8 and 9.
    let again = r.due(
        Some(10),
        utc("2026-06-11T12:00:05Z"),
        MissedRuns::RunOnce,
        TimeDelta::hours(6),
    );
    assert_eq!((again.launch, again.missed), (None, None));
    assert_eq!(again.next.map(|o| o.index), Some(11));
}

#[test]
fn run_once_beyond_grace_is_a_miss() {
    let r = nine_am();
    let due = r.due(
        Some(7),
        utc("2026-06-11T15:00:01Z"),
        MissedRuns::RunOnce,
        TimeDelta::hours(6),
    );
    assert_eq!(due.launch, None);
    assert_eq!(due.missed.map(|o| o.index), Some(10));
}

#[test]
fn never_launched_and_before_the_start() {
    let r = nine_am();
    let due = r.due(
        None,
        utc("2026-05-01T00:00:00Z"),
        MissedRuns::RunOnce,
        TimeDelta::hours(6),
    );
    assert_eq!((due.launch, due.missed), (None, None));
    assert_eq!(due.next.map(|o| o.index), Some(0));
    let first = r.due(
        None,
        utc("2026-06-01T09:00:00Z"),
        MissedRuns::Skip,
        TimeDelta::zero(),
    );
    assert_eq!(first.launch.map(|o| o.index), Some(0));
}

#[test]
fn after_the_end_nothing_is_next() {
    let once = rule(json!({
        "schedule_type": "ONE_TIME", "start_date": "2026-06-01", "start_time": "09:00:00"
    }));
    let due = once.due(
        Some(0),
        utc("2026-06-01T09:00:03Z"),
        MissedRuns::Skip,
        TimeDelta::zero(),
    );
    assert_eq!((due.launch, due.missed, due.next), (None, None, None));
    let late = once.due(
        None,
        utc("2026-06-02T09:00:00Z"),
        MissedRuns::RunOnce,
        TimeDelta::days(2),
    );
    assert_eq!(late.launch.map(|o| o.index), Some(0));
    assert_eq!(late.next, None);
}

#[test]
fn missed_runs_policy_reads_as_snake_case() {
    assert_eq!(
        serde_json::from_value::<MissedRuns>(json!("run_once")).expect("reads"),
        MissedRuns::RunOnce
    );
    assert_eq!(MissedRuns::default(), MissedRuns::Skip);
}

// Validation

#[test]
fn every_invalid_field_is_named() {
    let base =
        json!({"schedule_type": "DAILY", "start_date": "2026-05-11", "start_time": "09:00:00"});
    let with = |extra: serde_json::Value| {
        let mut v = base.clone();
        for (k, x) in extra.as_object().expect("object") {
            v[k] = x.clone();
        }
        rejected(v)
    };
    let cases = [
        (
            json!({"timezone": "Mars/Olympus"}),
            "timezone",
            "timezone: `Mars/Olympus` is not an IANA time zone name such as Europe/Berlin",
        ),
        (
            json!({"end_date": "2026-05-10"}),
            "end_date",
            "end_date: 2026-05-10 is before start_date 2026-05-11",
        ),
        (
            json!({"schedule_type": "HOURLY"}),
            "hourly_interval",
            "hourly_interval: required when schedule_type is HOURLY",
        ),
        (
            json!({"schedule_type": "HOURLY", "hourly_interval": 0}),
            "hourly_interval",
            "hourly_interval: must be from 1 to 8784 hours, not 0",
        ),
        (
            json!({"schedule_type": "WEEKLY"}),
            "days_of_week",
            "days_of_week: at least one day is required when schedule_type is WEEKLY",
        ),
        (
            json!({"schedule_type": "WEEKLY", "days_of_week": []}),
            "days_of_week",
            "days_of_week: at least one day is required when schedule_type is WEEKLY",
        ),
        (
            json!({"schedule_type": "WEEKLY", "days_of_week": [1, 8]}),
            "days_of_week",
            "days_of_week: 8 is not a day of the week (1 = Monday to 7 = Sunday)",
        ),
        (
            json!({"schedule_type": "WEEKLY", "days_of_week": [0]}),
            "days_of_week",
            "days_of_week: 0 is not a day of the week (1 = Monday to 7 = Sunday)",
        ),
        (
            json!({"schedule_type": "MONTHLY"}),
            "recurrence_date",
            "recurrence_date: required when schedule_type is MONTHLY",
        ),
        (
            json!({"schedule_type": "MONTHLY", "recurrence_date": 0}),
            "recurrence_date",
            "recurrence_date: must be a day of the month from 1 to 31, not 0",
        ),
        (
            json!({"schedule_type": "MONTHLY", "recurrence_date": 32}),
            "recurrence_date",
            "recurrence_date: must be a day of the month from 1 to 31, not 32",
        ),
        (
            json!({"hourly_interval": 6}),
            "hourly_interval",
            "hourly_interval: applies only when schedule_type is HOURLY, not DAILY",
        ),
        (
            json!({"days_of_week": [1]}),
            "days_of_week",
            "days_of_week: applies only when schedule_type is WEEKLY, not DAILY",
        ),
        (
            json!({"recurrence_date": 7}),
            "recurrence_date",
            "recurrence_date: applies only when schedule_type is MONTHLY, not DAILY",
        ),
        (
            json!({"schedule_type": "WEEKLY", "days_of_week": [7], "end_date": "2026-05-15"}),
            "end_date",
            "end_date: no occurrence falls between start_date 2026-05-11 and end_date 2026-05-15",
        ),
        (
            json!({"schedule_type": "MONTHLY", "recurrence_date": 31, "start_date": "2026-02-01", "end_date": "2026-02-28"}),
            "end_date",
            "end_date: no occurrence falls between start_date 2026-02-01 and end_date 2026-02-28",
        ),
    ];
    for (extra, field, message) in cases {
        let err = with(extra.clone());
        assert_eq!(err.field(), field, "{extra}");
        assert_eq!(err.to_string(), message, "{extra}");
    }
    // Serde reports the same words when the whole rule is read at once.
    let err = serde_json::from_value::<Recurrence>(json!({
        "schedule_type": "HOURLY", "start_date": "2026-05-11", "start_time": "09:00:00",
        "hourly_interval": 0
    }))
    .expect_err("invalid");
    assert!(err.to_string().starts_with("hourly_interval: "), "{err}");
    let err = serde_json::from_value::<Recurrence>(json!({
        "schedule_type": "DAILY", "start_date": "2026-05-11", "start_time": "25:00"
    }))
    .expect_err("invalid");
    assert!(err.to_string().starts_with("start_time: `25:00`"), "{err}");
}

#[test]
fn empty_or_null_fields_of_other_kinds_are_accepted() {
    let r = rule(json!({
        "schedule_type": "DAILY", "start_date": "2026-05-11", "start_time": "09:00",
        "days_of_week": [], "hourly_interval": null, "recurrence_date": null, "end_date": null
    }));
    assert_eq!(
        r.spec().start_time,
        NaiveTime::from_hms_opt(9, 0, 0).expect("time")
    );
    assert_eq!(r.timezone(), Tz::UTC);
}

#[test]
fn seed_bodies_read_as_they_are() {
    // The recurrence fields of seed 004's monthly example, unknown fields and all.
    let r = rule(json!({
        "title": "<SCHEDULE TITLE>",
        "endDate": "2022-12-31",
        "startDate": "2022-05-12",
        "startTime": "09:20:00",
        "scheduleType": "MONTHLY",
        "recurrenceDate": 7,
        "recurrenceMonth": 1,
        "monthlyScheduleType": "MONTHLY_DATE_OF_MONTH_JOB"
    }));
    assert_eq!(r.spec().schedule_type, ScheduleType::Monthly);
    assert_eq!(r.spec().recurrence_date, Some(7));
    // Written back in snake_case, without the fields of other kinds.
    assert_eq!(
        serde_json::to_value(&r).expect("serializes"),
        json!({
            "schedule_type": "MONTHLY", "start_date": "2022-05-12", "end_date": "2022-12-31",
            "start_time": "09:20:00", "timezone": "UTC", "recurrence_date": 7
        })
    );
}

// Preview and the countdown

#[test]
fn preview_includes_its_start_and_is_capped() {
    let r = hourly("UTC", "2026-01-01", "00:00:00", 1);
    let p = r.preview(utc("2026-01-01T05:00:00Z"), 3);
    assert_eq!(p.iter().map(|o| o.index).collect::<Vec<_>>(), [5, 6, 7]);
    assert_eq!(
        r.preview(utc("2026-01-01T00:00:00Z"), usize::MAX).len(),
        MAX_PREVIEW
    );
    assert_eq!(r.preview(utc("2026-01-01T00:00:00Z"), 0), []);
}

#[test]
fn t_minus_words() {
    let now = utc("2026-05-11T12:00:00Z");
    let cases = [
        ("2026-05-13T12:00:00Z", "in 2 days"),
        ("2026-05-11T15:00:00Z", "in 3 hours"),
        ("2026-05-11T12:05:00Z", "in 5 minutes"),
        ("2026-05-11T12:00:10Z", "in 10 seconds"),
        ("2026-05-11T11:59:45Z", "15 seconds ago"),
        ("2026-05-11T12:00:00Z", "now"),
        ("2026-05-11T12:00:01Z", "in 1 second"),
        ("2026-05-11T10:00:00Z", "2 hours ago"),
        ("2026-05-11T12:01:00Z", "in 1 minute"),
        ("2026-05-11T12:59:40Z", "in 1 hour"),
        ("2026-05-12T11:40:00Z", "in 1 day"),
        ("2026-05-11T13:29:00Z", "in 1 hour"),
        ("2026-05-11T13:31:00Z", "in 2 hours"),
        ("2026-04-11T12:00:00Z", "30 days ago"),
    ];
    for (at, words) in cases {
        assert_eq!(t_minus(now, utc(at)), words, "{at}");
    }
}

#[test]
fn the_ends_of_the_calendar_do_not_panic() {
    let far = |start: NaiveDate, kind: &str| {
        rule(json!({
            "schedule_type": kind, "start_date": start, "start_time": "23:30:00",
            "timezone": "Pacific/Auckland", "hourly_interval": (kind == "HOURLY").then_some(1),
            "days_of_week": if kind == "WEEKLY" { json!([3]) } else { json!([]) },
            "recurrence_date": (kind == "MONTHLY").then_some(31)
        }))
    };
    for kind in ["ONE_TIME", "HOURLY", "DAILY", "WEEKLY", "MONTHLY"] {
        for start in [
            NaiveDate::MIN,
            NaiveDate::MAX,
            NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
        ] {
            let r = far(start, kind);
            for t in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
                let _ = r.preview(t, 3);
                let _ = r.next_after(t);
                let _ = r.latest_at_or_before(t);
                let _ = r.due(Some(0), t, MissedRuns::RunOnce, TimeDelta::MAX);
                let _ = t_minus(DateTime::<Utc>::MIN_UTC, t);
            }
        }
    }
}
