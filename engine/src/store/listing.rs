//! Filtered listing of an organization's scheduled scripts (seed 003): by ids, name,
//! type, frequency, creation time and creator, with a total for page numbers.
//!
//! A listing reads the records of its page and nothing else of the schedules: filters
//! are answered from indexes that the schedule writes (`schedules::save` and the delete)
//! keep in the transaction that writes the schedule:
//! - `SCHEDULES_BY_CREATOR`, (organization, creator) -> ids;
//! - `SCHEDULES_BY_FREQUENCY`, (organization, frequency code) -> ids. A type is the union
//!   of its codes (one-time is code 0, recurring codes 1 to 4) and a type with a
//!   frequency their intersection, so either is one list, or a few merged;
//! - `SCHEDULES_BY_CREATED`, (organization, creation time, id), for a creation range;
//! - `SCHEDULE_FACTS`, (organization, id) -> the few bytes the filters check: frequency,
//!   creation time, creator and the lowercased description. A name matches anywhere in
//!   the description, which no key order serves: a name filter walks these small values
//!   (never the records, whose scripts can be large).
//!
//! Ids begin with the millisecond they were made, so id order is creation order, the
//! order of every listing. The creation time a filter compares is the record's
//! `created_at`, which the caller gives and need not be that millisecond: hence an index
//! of its own rather than a range of ids.
//!
//! A listing takes its candidates from the smallest source it has: the ids asked for,
//! the creator's list, the frequency lists, the creation range (counted only up to the
//! best so far), or the organization's facts. A list that is the whole filter answers by
//! itself: redb keeps a list's length, which is the total, and the page is read from the
//! list. Otherwise each candidate's facts are checked and the matches counted. A
//! creation range comes in time order and is put back in id order in memory, so it is a
//! source only up to [`MAX_SORTED`] schedules; past that its condition is checked while
//! walking the facts.

use std::ops::Bound;

use chrono::{DateTime, Utc};
use redb::{
    MultimapTable, MultimapValue, ReadOnlyTable, ReadTransaction, ReadableTable, Table,
    WriteTransaction,
};

use super::Store;
use super::error::StoreError;
use super::records::{RecurrenceKind, ScheduledScript};
use super::tables::{
    SCHEDULE_FACTS, SCHEDULES, SCHEDULES_BY_CREATED, SCHEDULES_BY_CREATOR, SCHEDULES_BY_FREQUENCY,
    SCHEDULES_BY_ORG,
};
use super::txn::{decode, load};

const KIND: &str = "schedule";

/// The most schedules of a creation range a listing puts back in id order in memory.
const MAX_SORTED: u64 = 100_000;

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

const FREQUENCIES: [RecurrenceKind; 5] = [
    RecurrenceKind::OneTime,
    RecurrenceKind::Hourly,
    RecurrenceKind::Daily,
    RecurrenceKind::Weekly,
    RecurrenceKind::Monthly,
];

/// A frequency as `SCHEDULES_BY_FREQUENCY` and the facts store it: these codes are on disk.
pub(crate) fn frequency_code(kind: RecurrenceKind) -> u8 {
    match kind {
        RecurrenceKind::OneTime => 0,
        RecurrenceKind::Hourly => 1,
        RecurrenceKind::Daily => 2,
        RecurrenceKind::Weekly => 3,
        RecurrenceKind::Monthly => 4,
    }
}

pub(crate) fn frequency_of(s: &ScheduledScript) -> RecurrenceKind {
    s.recurrence
        .as_ref()
        .map_or(RecurrenceKind::OneTime, |r| r.kind)
}

fn type_of(frequency: RecurrenceKind) -> ScheduleType {
    if frequency == RecurrenceKind::OneTime {
        ScheduleType::OneTime
    } else {
        ScheduleType::Recurring
    }
}

/// An instant as the indexes order it: unix seconds, then nanoseconds.
fn instant(at: DateTime<Utc>) -> (i64, u32) {
    (at.timestamp(), at.timestamp_subsec_nanos())
}

impl ScheduleFilter {
    /// Whether `s` passes every condition.
    pub fn matches(&self, s: &ScheduledScript) -> bool {
        let frequency = frequency_of(s);
        self.ids.as_ref().is_none_or(|ids| ids.contains(&s.id))
            && self
                .name
                .as_ref()
                .is_none_or(|name| s.description.to_lowercase().contains(&name.to_lowercase()))
            && self.schedule_type.is_none_or(|t| t == type_of(frequency))
            && self.frequency.is_none_or(|f| f == frequency)
            && self.created_from.is_none_or(|from| s.created_at >= from)
            && self.created_to.is_none_or(|to| s.created_at <= to)
            && self
                .created_by
                .as_ref()
                .is_none_or(|by| *by == s.created_by)
    }

    /// The frequency codes the type and frequency conditions leave (all when neither is
    /// given: `None`).
    pub(crate) fn codes(&self) -> Option<Vec<u8>> {
        if self.frequency.is_none() && self.schedule_type.is_none() {
            return None;
        }
        Some(
            FREQUENCIES
                .into_iter()
                .filter(|&f| {
                    self.frequency.is_none_or(|want| want == f)
                        && self.schedule_type.is_none_or(|want| want == type_of(f))
                })
                .map(frequency_code)
                .collect(),
        )
    }
}

/// What the filters check of one schedule, as `SCHEDULE_FACTS` keeps it: the frequency
/// code, the creation time (seconds and nanoseconds, big-endian), the creator's length in
/// bytes (big-endian `u32`) and the creator, then the lowercased description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Facts<'a> {
    frequency: u8,
    created: (i64, u32),
    created_by: &'a str,
    name: &'a str,
}

const FACTS_HEAD: usize = 1 + 8 + 4 + 4;

impl<'a> Facts<'a> {
    fn encode(&self) -> Vec<u8> {
        let creator_len = u32::try_from(self.created_by.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(FACTS_HEAD + self.created_by.len() + self.name.len());
        out.push(self.frequency);
        out.extend_from_slice(&self.created.0.to_be_bytes());
        out.extend_from_slice(&self.created.1.to_be_bytes());
        out.extend_from_slice(&creator_len.to_be_bytes());
        out.extend_from_slice(self.created_by.as_bytes());
        out.extend_from_slice(self.name.as_bytes());
        out
    }

    fn decode(id: &str, bytes: &'a [u8]) -> Result<Facts<'a>, StoreError> {
        let corrupt = || StoreError::Corrupt {
            kind: "schedule facts",
            id: id.to_owned(),
            source: serde::de::Error::custom("not a schedule's listing facts"),
        };
        let (head, rest) = bytes.split_at_checked(FACTS_HEAD).ok_or_else(corrupt)?;
        let word = |at: usize| [head[at], head[at + 1], head[at + 2], head[at + 3]];
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&head[1..9]);
        let creator_len = usize::try_from(u32::from_be_bytes(word(13))).map_err(|_| corrupt())?;
        let (created_by, name) = rest.split_at_checked(creator_len).ok_or_else(corrupt)?;
        Ok(Facts {
            frequency: head[0],
            created: (i64::from_be_bytes(secs), u32::from_be_bytes(word(9))),
            created_by: std::str::from_utf8(created_by).map_err(|_| corrupt())?,
            name: std::str::from_utf8(name).map_err(|_| corrupt())?,
        })
    }
}

/// A schedule's entries in the listing's indexes.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'s> {
    organization: &'s str,
    id: &'s str,
    created_by: &'s str,
    frequency: u8,
    created: (i64, u32),
    facts: Vec<u8>,
}

impl<'s> Entry<'s> {
    fn of(s: &'s ScheduledScript) -> Entry<'s> {
        let frequency = frequency_code(frequency_of(s));
        let created = instant(s.created_at);
        let name = s.description.to_lowercase();
        let facts = Facts {
            frequency,
            created,
            created_by: &s.created_by,
            name: &name,
        }
        .encode();
        Entry {
            organization: &s.organization,
            id: &s.id,
            created_by: &s.created_by,
            frequency,
            created,
            facts,
        }
    }
}

/// The listing's index tables, open for writing.
struct Indexes<'tx> {
    by_creator: MultimapTable<'tx, (&'static str, &'static str), &'static str>,
    by_frequency: MultimapTable<'tx, (&'static str, u8), &'static str>,
    by_created: Table<'tx, (&'static str, i64, u32, &'static str), ()>,
    facts: Table<'tx, (&'static str, &'static str), &'static [u8]>,
}

impl<'tx> Indexes<'tx> {
    fn open(tx: &'tx WriteTransaction) -> Result<Indexes<'tx>, StoreError> {
        Ok(Indexes {
            by_creator: tx.open_multimap_table(SCHEDULES_BY_CREATOR)?,
            by_frequency: tx.open_multimap_table(SCHEDULES_BY_FREQUENCY)?,
            by_created: tx.open_table(SCHEDULES_BY_CREATED)?,
            facts: tx.open_table(SCHEDULE_FACTS)?,
        })
    }

    fn insert(&mut self, e: &Entry<'_>) -> Result<(), StoreError> {
        let (org, id) = (e.organization, e.id);
        self.by_creator.insert((org, e.created_by), id)?;
        self.by_frequency.insert((org, e.frequency), id)?;
        self.by_created
            .insert((org, e.created.0, e.created.1, id), ())?;
        self.facts.insert((org, id), e.facts.as_slice())?;
        Ok(())
    }

    fn remove(&mut self, e: &Entry<'_>) -> Result<(), StoreError> {
        let (org, id) = (e.organization, e.id);
        self.by_creator.remove((org, e.created_by), id)?;
        self.by_frequency.remove((org, e.frequency), id)?;
        self.by_created
            .remove((org, e.created.0, e.created.1, id))?;
        self.facts.remove((org, id))?;
        Ok(())
    }
}

/// Moves a schedule's listing entries from where `old` had them to where `new` has them
/// (`None`: not stored), in the transaction that writes it. Most writes (status, runs,
/// approvals) change nothing a listing filters on, and leave the indexes untouched.
pub(crate) fn reindex(
    tx: &WriteTransaction,
    old: Option<&ScheduledScript>,
    new: Option<&ScheduledScript>,
) -> Result<(), StoreError> {
    let old = old.map(Entry::of);
    let new = new.map(Entry::of);
    if old == new {
        return Ok(());
    }
    let mut indexes = Indexes::open(tx)?;
    if let Some(e) = &old {
        indexes.remove(e)?;
    }
    if let Some(e) = &new {
        indexes.insert(e)?;
    }
    Ok(())
}

/// Schema 5 -> 6: fills the listing's indexes from every stored schedule.
pub(crate) fn backfill(tx: &WriteTransaction) -> Result<u64, StoreError> {
    let schedules = tx.open_table(SCHEDULES)?;
    let mut indexes = Indexes::open(tx)?;
    let mut n = 0;
    for entry in schedules.iter()? {
        let (id, bytes) = entry?;
        let s: ScheduledScript = decode(KIND, id.value(), bytes.value())?;
        indexes.insert(&Entry::of(&s))?;
        n += 1;
    }
    Ok(n)
}

/// A key of `SCHEDULES_BY_CREATED`.
type CreatedKey<'o> = (&'o str, i64, u32, &'static str);

/// The conditions a candidate's facts are checked against (all but the ids).
struct Conditions {
    codes: Option<Vec<u8>>,
    created_by: Option<String>,
    from: Option<(i64, u32)>,
    to: Option<(i64, u32)>,
    name: Option<String>,
}

impl Conditions {
    fn of(filter: &ScheduleFilter) -> Conditions {
        Conditions {
            codes: filter.codes(),
            created_by: filter.created_by.clone(),
            from: filter.created_from.map(instant),
            to: filter.created_to.map(instant),
            name: filter.name.as_ref().map(|n| n.to_lowercase()),
        }
    }

    /// No schedule can pass: a type and a frequency that exclude each other, or a
    /// creation range that ends before it begins.
    fn impossible(&self) -> bool {
        self.codes.as_ref().is_some_and(Vec::is_empty)
            || matches!((self.from, self.to), (Some(from), Some(to)) if from > to)
    }

    fn hold(&self, f: &Facts<'_>) -> bool {
        self.codes.as_ref().is_none_or(|c| c.contains(&f.frequency))
            && self
                .created_by
                .as_deref()
                .is_none_or(|by| by == f.created_by)
            && self.from.is_none_or(|from| f.created >= from)
            && self.to.is_none_or(|to| f.created <= to)
            && self.name.as_deref().is_none_or(|n| f.name.contains(n))
    }

    /// The creation range as bounds of `SCHEDULES_BY_CREATED` within `organization`.
    fn created_range<'o>(
        &self,
        organization: &'o str,
    ) -> (Bound<CreatedKey<'o>>, Bound<CreatedKey<'o>>) {
        let (secs, nanos) = self.from.unwrap_or((i64::MIN, 0));
        let start = Bound::Included((organization, secs, nanos, ""));
        let end = match self.to {
            // Nanoseconds stay below 2e9: one more is still a `u32`.
            Some((secs, nanos)) => Bound::Excluded((organization, secs, nanos + 1, "")),
            None => Bound::Excluded((organization, i64::MAX, u32::MAX, "")),
        };
        (start, end)
    }
}

/// Lists of ids, each in id order, read as one list in id order.
struct Merged {
    lists: Vec<MultimapValue<'static, &'static str>>,
    heads: Vec<Option<String>>,
}

impl Merged {
    fn new(mut lists: Vec<MultimapValue<'static, &'static str>>) -> Result<Merged, StoreError> {
        let heads: Vec<Option<String>> = lists
            .iter_mut()
            .map(Merged::pull)
            .collect::<Result<_, _>>()?;
        Ok(Merged { lists, heads })
    }

    fn pull(list: &mut MultimapValue<'static, &'static str>) -> Result<Option<String>, StoreError> {
        Ok(list.next().transpose()?.map(|id| id.value().to_owned()))
    }

    fn next_id(&mut self) -> Result<Option<String>, StoreError> {
        let least = self
            .heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.as_ref().map(|id| (id, i)))
            .min()
            .map(|(_, i)| i);
        let Some(i) = least else { return Ok(None) };
        let next = Merged::pull(&mut self.lists[i])?;
        Ok(std::mem::replace(&mut self.heads[i], next))
    }
}

/// Where a listing's candidates come from.
enum Source<'f> {
    /// The ids asked for, sorted and each once.
    Ids(Vec<&'f str>),
    /// A creator's list, or the lists of the frequencies left.
    Lists(Vec<MultimapValue<'static, &'static str>>),
    /// The creation range.
    Created,
    /// The facts of every schedule of the organization.
    All,
}

/// The conditions a source answers by itself.
enum Covered {
    Nothing,
    Creator,
    Frequency,
    Created,
}

/// Counts matches in order and keeps the ids of the page.
struct Pager {
    offset: usize,
    limit: Option<usize>,
    total: u64,
    page: Vec<String>,
}

impl Pager {
    fn keep(&mut self, id: &str) {
        let index = usize::try_from(self.total).unwrap_or(usize::MAX);
        self.total += 1;
        if index >= self.offset && self.limit.is_none_or(|l| self.page.len() < l) {
            self.page.push(id.to_owned());
        }
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
            if *filter == ScheduleFilter::default() {
                // No condition: the index knows its length, and only the page is read
                // and decoded.
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
            let conditions = Conditions::of(filter);
            let mut pager = Pager {
                offset,
                limit,
                total: 0,
                page: Vec::new(),
            };
            if !conditions.impossible() {
                walk(tx, organization, filter, &conditions, &mut pager)?;
            }
            let mut items = Vec::with_capacity(pager.page.len());
            for id in &pager.page {
                if let Some(s) = load(&schedules, KIND, id)? {
                    items.push(s);
                }
            }
            Ok(ScheduleListing {
                items,
                total: pager.total,
            })
        })
    }
}

/// Counts the schedules of `organization` that match, in id order, into `pager`.
fn walk(
    tx: &ReadTransaction,
    organization: &str,
    filter: &ScheduleFilter,
    conditions: &Conditions,
    pager: &mut Pager,
) -> Result<(), StoreError> {
    let facts = tx.open_table(SCHEDULE_FACTS)?;
    let (source, mut rest) = source(tx, organization, filter, conditions)?;
    rest.ids = None;
    let complete = rest == ScheduleFilter::default();
    let holds = |id: &str| -> Result<bool, StoreError> {
        match facts.get((organization, id))? {
            Some(bytes) => Ok(conditions.hold(&Facts::decode(id, bytes.value())?)),
            // Not a schedule of this organization.
            None => Ok(false),
        }
    };
    match source {
        Source::Ids(ids) => {
            for id in ids {
                if holds(id)? {
                    pager.keep(id);
                }
            }
        }
        Source::Lists(lists) if complete => {
            pager.total = lists.iter().map(MultimapValue::len).sum();
            let mut ids = Merged::new(lists)?;
            let mut index = 0;
            while pager.limit.is_none_or(|l| pager.page.len() < l)
                && let Some(id) = ids.next_id()?
            {
                if index >= pager.offset {
                    pager.page.push(id);
                }
                index += 1;
            }
        }
        Source::Lists(lists) => {
            let mut ids = Merged::new(lists)?;
            while let Some(id) = ids.next_id()? {
                if holds(&id)? {
                    pager.keep(&id);
                }
            }
        }
        Source::Created => {
            let mut ids = Vec::new();
            for entry in tx
                .open_table(SCHEDULES_BY_CREATED)?
                .range(conditions.created_range(organization))?
            {
                let (key, _) = entry?;
                let id = key.value().3;
                if complete || holds(id)? {
                    ids.push(id.to_owned());
                }
            }
            ids.sort_unstable();
            for id in ids {
                pager.keep(&id);
            }
        }
        Source::All => all(&facts, organization, conditions, pager)?,
    }
    Ok(())
}

/// Walks the facts of every schedule of `organization`, in id order.
fn all(
    facts: &ReadOnlyTable<(&'static str, &'static str), &'static [u8]>,
    organization: &str,
    conditions: &Conditions,
    pager: &mut Pager,
) -> Result<(), StoreError> {
    for entry in facts.range((organization, "")..)? {
        let (key, bytes) = entry?;
        let (org, id) = key.value();
        if org != organization {
            break;
        }
        if conditions.hold(&Facts::decode(id, bytes.value())?) {
            pager.keep(id);
        }
    }
    Ok(())
}

/// The smallest source of candidates for `filter`, and the conditions it does not
/// answer by itself.
fn source<'f>(
    tx: &ReadTransaction,
    organization: &str,
    filter: &'f ScheduleFilter,
    conditions: &Conditions,
) -> Result<(Source<'f>, ScheduleFilter), StoreError> {
    let mut rest = filter.clone();
    if let Some(ids) = &filter.ids {
        let mut ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        ids.sort_unstable();
        ids.dedup();
        return Ok((Source::Ids(ids), rest));
    }
    let mut best = tx
        .open_multimap_table(SCHEDULES_BY_ORG)?
        .get(organization)?
        .len();
    let mut source = Source::All;
    let mut covered = Covered::Nothing;
    if let Some(by) = &filter.created_by {
        let list = tx
            .open_multimap_table(SCHEDULES_BY_CREATOR)?
            .get((organization, by.as_str()))?;
        if list.len() <= best {
            best = list.len();
            source = Source::Lists(vec![list]);
            covered = Covered::Creator;
        }
    }
    if let Some(codes) = &conditions.codes {
        let table = tx.open_multimap_table(SCHEDULES_BY_FREQUENCY)?;
        let lists = codes
            .iter()
            .map(|&code| table.get((organization, code)))
            .collect::<Result<Vec<_>, _>>()?;
        let len = lists.iter().map(MultimapValue::len).sum();
        if len <= best {
            best = len;
            source = Source::Lists(lists);
            covered = Covered::Frequency;
        }
    }
    if conditions.from.is_some() || conditions.to.is_some() {
        let bound = best.min(MAX_SORTED);
        let mut counted = 0u64;
        for entry in tx
            .open_table(SCHEDULES_BY_CREATED)?
            .range(conditions.created_range(organization))?
        {
            entry?;
            counted += 1;
            if counted >= bound {
                break;
            }
        }
        if counted < bound {
            source = Source::Created;
            covered = Covered::Created;
        }
    }
    match covered {
        Covered::Nothing => {}
        Covered::Creator => rest.created_by = None,
        Covered::Frequency => {
            rest.frequency = None;
            rest.schedule_type = None;
        }
        Covered::Created => {
            rest.created_from = None;
            rest.created_to = None;
        }
    }
    Ok((source, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::records::{Recurrence, ScheduleInput, SchedulePatch};
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
        daily.recurrence = Some(recurrence(RecurrenceKind::Daily));
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

    fn recurrence(kind: RecurrenceKind) -> Recurrence {
        Recurrence {
            kind,
            interval: None,
            days_of_week: Vec::new(),
            day_of_month: None,
            start_date: t(0).date_naive(),
            end_date: None,
            start_time: chrono::NaiveTime::MIN,
            timezone: "UTC".into(),
        }
    }

    /// A fixed pseudo-random sequence, so a failure reproduces.
    struct Dice(u64);

    impl Dice {
        fn roll(&mut self, sides: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % sides
        }

        fn pick<'a, T>(&mut self, of: &'a [T]) -> &'a T {
            &of[usize::try_from(self.roll(of.len() as u64)).expect("index")]
        }
    }

    const CREATORS: [&str; 3] = ["alice", "bob", "carol"];
    const NAMES: [&str; 4] = ["Backup", "Nightly CLEANUP", "Rotate keys", "backup-weekly"];

    /// `n` schedules of `org` in batches of ten, each batch created at its own instant
    /// (not in id order, with nanoseconds), with mixed creators, frequencies and names.
    fn generate(store: &Store, org: &str, n: usize, dice: &mut Dice) -> Vec<ScheduledScript> {
        let mut made = Vec::new();
        for batch in 0..n.div_ceil(10) {
            let inputs = (0..10.min(n - batch * 10))
                .map(|i| {
                    let name = format!("{} {org} {batch}.{i}", dice.pick(&NAMES));
                    let by = *dice.pick(&CREATORS);
                    let mut input = input(org, &name, by);
                    let frequency = dice.roll(6);
                    input.recurrence = FREQUENCIES
                        .get(usize::try_from(frequency).expect("index"))
                        .map(|&kind| recurrence(kind));
                    input
                })
                .collect();
            let at = t(i64::try_from(dice.roll(50)).expect("secs"))
                + chrono::Duration::nanoseconds(i64::try_from(dice.roll(3)).expect("nanos"));
            made.extend(store.create_schedules(inputs, at).expect("create"));
        }
        made
    }

    /// Filters that combine every condition with the others, their instants taken from
    /// the schedules so the bounds meet creation times exactly.
    fn filters(all: &[ScheduledScript], other: &ScheduledScript) -> Vec<ScheduleFilter> {
        let mut times: Vec<_> = all.iter().map(|s| s.created_at).collect();
        times.sort();
        let (early, late) = (times[times.len() / 4], times[times.len() * 3 / 4]);
        let creators = [None, Some("alice"), Some("carol"), Some("nobody")];
        let frequencies = [
            None,
            Some(RecurrenceKind::OneTime),
            Some(RecurrenceKind::Hourly),
            Some(RecurrenceKind::Daily),
            Some(RecurrenceKind::Weekly),
            Some(RecurrenceKind::Monthly),
        ];
        let types = [
            None,
            Some(ScheduleType::OneTime),
            Some(ScheduleType::Recurring),
        ];
        let ranges = [
            (None, None),
            (Some(early), None),
            (None, Some(late)),
            (Some(early), Some(late)),
            (Some(late), Some(early)),
        ];
        let names = [None, Some("BACKUP"), Some("cleanup"), Some("zzz")];
        let some_ids: Vec<String> = all
            .iter()
            .step_by(5)
            .map(|s| s.id.clone())
            .chain([other.id.clone(), "missing".into(), all[0].id.clone()])
            .collect();
        let ids = [None, Some(some_ids)];
        let mut out = Vec::new();
        for by in creators {
            for frequency in frequencies {
                for schedule_type in types {
                    for (created_from, created_to) in ranges {
                        for name in names {
                            for ids in &ids {
                                out.push(ScheduleFilter {
                                    ids: ids.clone(),
                                    name: name.map(str::to_owned),
                                    schedule_type,
                                    frequency,
                                    created_from,
                                    created_to,
                                    created_by: by.map(str::to_owned),
                                });
                            }
                        }
                    }
                }
            }
        }
        out
    }

    /// Every filter lists, page by page, what the predicate keeps of `all` (the
    /// organization's schedules), with the same total.
    fn agrees(store: &Store, org: &str, all: &[ScheduledScript], filters: &[ScheduleFilter]) {
        let mut all = all.to_vec();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        for filter in filters {
            let kept: Vec<&ScheduledScript> = all.iter().filter(|s| filter.matches(s)).collect();
            for (offset, limit) in [(0, None), (2, Some(3)), (0, Some(1))] {
                let got = store
                    .filter_schedules(org, filter, offset, limit)
                    .expect("list");
                let want: Vec<ScheduledScript> = kept
                    .iter()
                    .skip(offset)
                    .take(limit.unwrap_or(usize::MAX))
                    .map(|&s| s.clone())
                    .collect();
                assert_eq!(got.total, kept.len() as u64, "total of {filter:?}");
                assert_eq!(got.items, want, "page {offset}+{limit:?} of {filter:?}");
            }
        }
    }

    type Rows = (
        Vec<(String, String, String)>,
        Vec<(String, u8, String)>,
        Vec<(String, i64, u32, String)>,
        Vec<(String, String, Vec<u8>)>,
    );

    /// The listing's indexes as stored, and as the stored schedules say they should be.
    fn stored_and_recounted(store: &Store) -> (Rows, Rows) {
        use redb::ReadableMultimapTable;
        store
            .read(|tx| {
                let mut stored: Rows = Default::default();
                for entry in tx.open_multimap_table(SCHEDULES_BY_CREATOR)?.iter()? {
                    let (key, ids) = entry?;
                    let (org, by) = key.value();
                    for id in ids {
                        stored.0.push((org.into(), by.into(), id?.value().into()));
                    }
                }
                for entry in tx.open_multimap_table(SCHEDULES_BY_FREQUENCY)?.iter()? {
                    let (key, ids) = entry?;
                    let (org, code) = key.value();
                    for id in ids {
                        stored.1.push((org.into(), code, id?.value().into()));
                    }
                }
                for entry in tx.open_table(SCHEDULES_BY_CREATED)?.iter()? {
                    let (key, _) = entry?;
                    let (org, secs, nanos, id) = key.value();
                    stored.2.push((org.into(), secs, nanos, id.into()));
                }
                for entry in tx.open_table(SCHEDULE_FACTS)?.iter()? {
                    let (key, facts) = entry?;
                    let (org, id) = key.value();
                    stored
                        .3
                        .push((org.into(), id.into(), facts.value().to_vec()));
                }
                let mut recounted: Rows = Default::default();
                for entry in tx.open_table(SCHEDULES)?.iter()? {
                    let (id, bytes) = entry?;
                    let s: ScheduledScript = decode(KIND, id.value(), bytes.value())?;
                    let e = Entry::of(&s);
                    let (org, id) = (e.organization.to_owned(), e.id.to_owned());
                    recounted
                        .0
                        .push((org.clone(), e.created_by.into(), id.clone()));
                    recounted.1.push((org.clone(), e.frequency, id.clone()));
                    recounted
                        .2
                        .push((org.clone(), e.created.0, e.created.1, id.clone()));
                    recounted.3.push((org, id, e.facts.clone()));
                }
                recounted.0.sort();
                recounted.1.sort();
                recounted.2.sort();
                recounted.3.sort();
                Ok((stored, recounted))
            })
            .expect("read indexes")
    }

    fn assert_recounted(store: &Store) {
        let (stored, recounted) = stored_and_recounted(store);
        assert_eq!(stored, recounted, "the indexes are what the schedules say");
    }

    #[test]
    fn every_filter_lists_what_the_predicate_keeps_through_edits_and_deletes() {
        let (_dir, store) = open();
        let mut dice = Dice(7);
        let mut all = generate(&store, "acme", 60, &mut dice);
        let others = generate(&store, "other", 12, &mut dice);
        // One at a time, as the API creates them.
        for i in 0..3 {
            let s = store
                .create_schedule(input("acme", &format!("Backup single {i}"), "carol"), t(20))
                .expect("create");
            all.push(s);
        }
        assert_recounted(&store);
        let filters = filters(&all, &others[0]);
        agrees(&store, "acme", &all, &filters);

        // Edits that move a schedule between names and frequencies, and deletes.
        for (i, s) in all.iter_mut().enumerate().step_by(3) {
            let patch = SchedulePatch {
                description: Some(format!("{} renamed {i}", dice.pick(&NAMES))),
                recurrence: Some(match dice.roll(3) {
                    0 => None,
                    1 => Some(recurrence(RecurrenceKind::Weekly)),
                    _ => Some(recurrence(RecurrenceKind::OneTime)),
                }),
                ..SchedulePatch::default()
            };
            *s = store
                .update_schedule(&s.id, patch, "bob", t(60))
                .expect("update");
        }
        let gone: Vec<String> = all
            .iter()
            .skip(1)
            .step_by(4)
            .map(|s| s.id.clone())
            .collect();
        for id in &gone {
            store.delete_schedule(id, "bob", t(61)).expect("delete");
        }
        all.retain(|s| !gone.contains(&s.id));
        assert_recounted(&store);
        agrees(&store, "acme", &all, &filters);
        agrees(&store, "other", &others, &filters[..200]);
    }

    #[test]
    fn a_schema_5_database_gets_its_listing_indexes_from_its_schedules() {
        use crate::store::tables::{META, META_SCHEMA_VERSION, SCHEMA_VERSION};
        let (dir, store) = open();
        let mut dice = Dice(11);
        let all = generate(&store, "acme", 30, &mut dice);
        let others = generate(&store, "other", 5, &mut dice);
        let filters: Vec<_> = filters(&all, &others[0]).into_iter().step_by(7).collect();
        let before: Vec<_> = filters
            .iter()
            .map(|f| store.filter_schedules("acme", f, 1, Some(4)).expect("list"))
            .collect();
        let (indexes, _) = stored_and_recounted(&store);
        // Schema 5's layout: none of the listing's indexes.
        store
            .write(|tx| {
                tx.delete_multimap_table(SCHEDULES_BY_CREATOR)?;
                tx.delete_multimap_table(SCHEDULES_BY_FREQUENCY)?;
                tx.delete_table(SCHEDULES_BY_CREATED)?;
                tx.delete_table(SCHEDULE_FACTS)?;
                tx.open_table(META)?.insert(META_SCHEMA_VERSION, 5)?;
                Ok(())
            })
            .expect("schema 5 layout");
        drop(store);

        let store = Store::open(dir.path()).expect("migrated");
        assert_eq!(
            crate::store::test_support::schema_version(&store),
            Some(SCHEMA_VERSION)
        );
        assert_eq!(stored_and_recounted(&store).0, indexes);
        let after: Vec<_> = filters
            .iter()
            .map(|f| store.filter_schedules("acme", f, 1, Some(4)).expect("list"))
            .collect();
        assert_eq!(after, before);
        agrees(&store, "acme", &all, &filters);
    }
}
