//! Filtered listing of an organization's scheduled scripts (seed 003): by ids, name,
//! type, frequency, creation time and creator, with a total for page numbers.
//!
//! One read transaction walks the organization's schedule ids in creation order (ids
//! begin with their creation time), decodes each record once and keeps those that match;
//! a listing by ids reads only those ids. Without a filter, the index gives the total and
//! only the page's schedules are read: a page costs the same whatever the table holds.

use chrono::{DateTime, Utc};

use super::Store;
use super::error::StoreError;
use super::records::{RecurrenceKind, ScheduledScript};
use super::tables::{SCHEDULES, SCHEDULES_BY_ORG};
use super::txn::load;

const KIND: &str = "schedule";

/// Whether a schedule runs once or recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleType {
    /// A `launch_at` without recurrence, or a `ONE_TIME` recurrence.
    OneTime,
    /// An hourly, daily, weekly or monthly recurrence.
    Recurring,
}

/// What a listing keeps; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleFilter {
    /// Only these ids (listed in creation order all the same).
    pub ids: Option<Vec<String>>,
    /// Part of the description, compared without regard to case.
    pub name: Option<String>,
    pub schedule_type: Option<ScheduleType>,
    /// The frequency; a schedule without recurrence is `ONE_TIME`.
    pub frequency: Option<RecurrenceKind>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created at or before.
    pub created_to: Option<DateTime<Utc>>,
    /// Created by this user id, exactly.
    pub created_by: Option<String>,
}

/// One page of a filtered listing, and how many schedules match in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleListing {
    pub items: Vec<ScheduledScript>,
    pub total: u64,
}

impl ScheduleFilter {
    /// Whether `s` passes every condition.
    pub fn matches(&self, s: &ScheduledScript) -> bool {
        let frequency = s
            .recurrence
            .as_ref()
            .map_or(RecurrenceKind::OneTime, |r| r.kind);
        let schedule_type = if frequency == RecurrenceKind::OneTime {
            ScheduleType::OneTime
        } else {
            ScheduleType::Recurring
        };
        self.ids.as_ref().is_none_or(|ids| ids.contains(&s.id))
            && self
                .name
                .as_ref()
                .is_none_or(|name| s.description.to_lowercase().contains(&name.to_lowercase()))
            && self.schedule_type.is_none_or(|t| t == schedule_type)
            && self.frequency.is_none_or(|f| f == frequency)
            && self.created_from.is_none_or(|from| s.created_at >= from)
            && self.created_to.is_none_or(|to| s.created_at <= to)
            && self
                .created_by
                .as_ref()
                .is_none_or(|by| *by == s.created_by)
    }
}

impl Store {
    /// The schedules of `organization` that match `filter`, in creation order, skipping
    /// `offset` of them and returning at most `limit` (all when `None`), with the number
    /// that match in all.
    pub fn filter_schedules(
        &self,
        organization: &str,
        filter: &ScheduleFilter,
        offset: usize,
        limit: Option<usize>,
    ) -> Result<ScheduleListing, StoreError> {
        self.read(|tx| {
            let schedules = tx.open_table(SCHEDULES)?;
            let mut total = 0u64;
            let mut items = Vec::new();
            let mut keep = |s: ScheduledScript| {
                if s.organization != organization || !filter.matches(&s) {
                    return;
                }
                total += 1;
                let index = usize::try_from(total - 1).unwrap_or(usize::MAX);
                if index >= offset && limit.is_none_or(|l| items.len() < l) {
                    items.push(s);
                }
            };
            match &filter.ids {
                Some(ids) => {
                    let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    for id in ids {
                        if let Some(s) = load(&schedules, KIND, id)? {
                            keep(s);
                        }
                    }
                }
                None if *filter == ScheduleFilter::default() => {
                    // No condition: the index knows its length, and only the page is
                    // read and decoded.
                    let ids = tx
                        .open_multimap_table(SCHEDULES_BY_ORG)?
                        .get(organization)?;
                    let total = ids.len();
                    let mut page = Vec::new();
                    for id in ids.skip(offset).take(limit.unwrap_or(usize::MAX)) {
                        if let Some(s) = load(&schedules, KIND, id?.value())? {
                            page.push(s);
                        }
                    }
                    return Ok(ScheduleListing { items: page, total });
                }
                None => {
                    for id in tx
                        .open_multimap_table(SCHEDULES_BY_ORG)?
                        .get(organization)?
                    {
                        let id = id?;
                        if let Some(s) = load(&schedules, KIND, id.value())? {
                            keep(s);
                        }
                    }
                }
            }
            Ok(ScheduleListing { items, total })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Recurrence, ScheduleInput};
    use crate::store::test_support::{open, t};

    fn input(org: &str, name: &str, by: &str) -> ScheduleInput {
        ScheduleInput {
            organization: org.into(),
            description: name.into(),
            script: ":log info x".into(),
            sites: vec!["s1".into()],
            launch_at: Some(t(3600)),
            created_by: by.into(),
            ..ScheduleInput::default()
        }
    }

    #[test]
    fn filters_pages_and_counts_within_one_organization() {
        let (_dir, store) = open();
        let mut ids = Vec::new();
        for i in 0..5 {
            // Ids begin with the creation millisecond: one apart keeps their order.
            std::thread::sleep(std::time::Duration::from_millis(2));
            let by = if i % 2 == 0 { "alice" } else { "bob" };
            let s = store
                .create_schedule(input("acme", &format!("Backup {i}"), by), t(i))
                .expect("create");
            ids.push(s.id);
        }
        let mut daily = input("acme", "Nightly cleanup", "alice");
        daily.recurrence = Some(Recurrence {
            kind: RecurrenceKind::Daily,
            interval: None,
            days_of_week: Vec::new(),
            day_of_month: None,
            start_date: t(0).date_naive(),
            end_date: None,
            start_time: chrono::NaiveTime::MIN,
            timezone: "UTC".into(),
        });
        std::thread::sleep(std::time::Duration::from_millis(2));
        let daily = store.create_schedule(daily, t(10)).expect("create");
        store
            .create_schedule(input("other", "Backup 9", "alice"), t(11))
            .expect("create");

        let all = store
            .filter_schedules("acme", &ScheduleFilter::default(), 0, None)
            .expect("list");
        assert_eq!(all.total, 6);
        assert_eq!(all.items.len(), 6);

        let page = store
            .filter_schedules("acme", &ScheduleFilter::default(), 2, Some(2))
            .expect("list");
        assert_eq!(page.total, 6);
        let names: Vec<_> = page.items.iter().map(|s| s.description.as_str()).collect();
        assert_eq!(names, ["Backup 2", "Backup 3"]);

        let by_name = ScheduleFilter {
            name: Some("backup".into()),
            created_by: Some("alice".into()),
            ..ScheduleFilter::default()
        };
        let found = store
            .filter_schedules("acme", &by_name, 0, None)
            .expect("list");
        assert_eq!(found.total, 3, "Backup 0, 2 and 4; not the other org's");

        let recurring = ScheduleFilter {
            schedule_type: Some(ScheduleType::Recurring),
            ..ScheduleFilter::default()
        };
        let found = store
            .filter_schedules("acme", &recurring, 0, None)
            .expect("list");
        assert_eq!(found.items.len(), 1);
        assert_eq!(found.items[0].id, daily.id);

        let window = ScheduleFilter {
            created_from: Some(t(1)),
            created_to: Some(t(3)),
            frequency: Some(RecurrenceKind::OneTime),
            ..ScheduleFilter::default()
        };
        assert_eq!(
            store
                .filter_schedules("acme", &window, 0, None)
                .expect("list")
                .total,
            3
        );

        let by_ids = ScheduleFilter {
            ids: Some(vec![ids[4].clone(), ids[1].clone(), "missing".into()]),
            ..ScheduleFilter::default()
        };
        let found = store
            .filter_schedules("acme", &by_ids, 0, None)
            .expect("list");
        assert_eq!(found.total, 2);
        assert_eq!(found.items[0].id, ids[1], "creation order");
        assert!(
            store
                .filter_schedules("other", &by_ids, 0, None)
                .expect("list")
                .items
                .is_empty(),
            "another organization's ids are not listed"
        );
    }
}
