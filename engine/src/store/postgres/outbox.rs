//! The transactional outbox in PostgreSQL, delivered by several engines.
//!
//! An event is written with the change that causes it and delivered at least once: an
//! engine claims due events with a lease (`FOR UPDATE SKIP LOCKED`, owner and expiry in
//! the claim's transaction), delivers them, and records the attempt; an engine that dies
//! mid-delivery leaves its claims to lapse, and the events go to the next claimer. The
//! events of one job are delivered in order: an event is not claimed while an earlier
//! event of its job is still pending (claimed by someone, or waiting for a retry).

use super::changes::{Change, announce_in};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{PgStore, big, col, col_u64, decode, encode, lease_millis, pg};
use crate::store::error::StoreError;
use crate::store::journal::{EventAttempt, apply_attempt, new_event, revived};
use crate::store::records::{OutboxEvent, OutboxState, Page};

const KIND: &str = "event";

impl PgStore {
    /// Appends an event outside any other change.
    pub async fn append_event(
        &self,
        kind: &str,
        payload: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        transaction!(self, "append an event", |tx| push_event(
            tx,
            kind,
            payload.clone(),
            now
        ))
    }

    /// Events in id order, whatever their state; the cursor is the last id seen.
    pub async fn list_events(&self, page: &Page<u64>) -> Result<Vec<OutboxEvent>, StoreError> {
        let after = big(KIND, "after", page.after.unwrap_or(0))?;
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )
            .await
            .map_err(pg("list events"))?;
        rows.iter()
            .map(|row| {
                let id: i64 = col(row, 0)?;
                decode(KIND, &id.to_string(), &col::<String>(row, 1)?)
            })
            .collect()
    }

    pub async fn get_event(&self, id: u64) -> Result<OutboxEvent, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM outbox WHERE id = $1",
                &[&big(KIND, "id", id)?],
            )
            .await
            .map_err(pg("read an event"))?
            .ok_or_else(|| StoreError::not_found(KIND, id.to_string()))?;
        decode(KIND, &id.to_string(), &col::<String>(&row, 0)?)
    }

    /// Takes up to `limit` pending events due at `now` for `engine`, oldest due first,
    /// each held until `ttl` from now by the database's clock. Skipped: events another
    /// engine holds under a live lease or is claiming at this moment, and events of a job
    /// with an earlier event still pending.
    pub async fn claim_events(
        &self,
        engine: &str,
        now: DateTime<Utc>,
        limit: usize,
        ttl: Duration,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, crate::store::MAX_PAGE)).unwrap_or(1);
        let ttl = lease_millis(ttl);
        transaction!(self, "claim events", |tx| async {
            let rows = tx
                .query(
                    "SELECT o.id, o.record::text FROM outbox o
                     WHERE o.state = 'pending' AND o.next_attempt_at <= $1
                       AND (o.owner IS NULL OR o.lease_expires_at < statement_timestamp())
                       AND (o.job_id IS NULL OR NOT EXISTS (
                           SELECT 1 FROM outbox e
                           WHERE e.job_id = o.job_id AND e.state = 'pending' AND e.id < o.id))
                     ORDER BY o.next_attempt_at, o.id
                     LIMIT $2 FOR UPDATE SKIP LOCKED",
                    &[&now, &limit],
                )
                .await
                .map_err(pg("find due events"))?;
            let ids = rows
                .iter()
                .map(|row| col::<i64>(row, 0))
                .collect::<Result<Vec<i64>, _>>()?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            tx.execute(
                "UPDATE outbox SET owner = $2,
                     lease_expires_at = statement_timestamp() + $3::bigint * interval '1 millisecond'
                 WHERE id = ANY($1)",
                &[&ids, &engine, &ttl],
            )
            .await
            .map_err(pg("claim events"))?;
            rows.iter()
                .zip(&ids)
                .map(|(row, id)| decode(KIND, &id.to_string(), &col::<String>(row, 1)?))
                .collect()
        })
    }

    /// Extends `engine`'s leases on the events `ids` it still holds to `ttl` from now (a
    /// delivery taking longer than a lease, or events waiting their turn in a round).
    /// Returns the ids renewed: an event missing from them lapsed and may have gone to
    /// another engine.
    pub async fn renew_event_claims(
        &self,
        engine: &str,
        ids: &[u64],
        ttl: Duration,
    ) -> Result<Vec<u64>, StoreError> {
        let ids = ids
            .iter()
            .map(|&id| big(KIND, "id", id))
            .collect::<Result<Vec<i64>, _>>()?;
        let ttl = lease_millis(ttl);
        transaction!(self, "renew event claims", |tx| async {
            let rows = tx
                .query(
                    "UPDATE outbox
                     SET lease_expires_at = statement_timestamp() + $3::bigint * interval '1 millisecond'
                     WHERE owner = $1 AND state = 'pending' AND id = ANY($2)
                     RETURNING id",
                    &[&engine, &ids, &ttl],
                )
                .await
                .map_err(pg("renew event claims"))?;
            rows.iter().map(|row| col_u64(row, 0)).collect()
        })
    }

    /// Lets go of an event `engine` holds without attempting it, to be taken again at
    /// `at` (a delivery that must wait for an earlier one). Refused as
    /// [`PgStore::record_event_attempt`] is when the event is not `engine`'s.
    pub async fn defer_event(
        &self,
        engine: &str,
        id: u64,
        at: DateTime<Utc>,
    ) -> Result<OutboxEvent, StoreError> {
        self.let_go(engine, id, "defer an event", |event| {
            event.next_attempt_at = at
        })
        .await
    }

    /// Records `engine`'s attempt at an event it holds, as the redb store's
    /// `record_event_attempt` does (delivered, retried at `retry_at`, or dead), and lets go
    /// of it. Refused when the event is not `engine`'s any more (its lease lapsed and it
    /// went to another engine, or it was settled): the other engine's attempt counts.
    pub async fn record_event_attempt(
        &self,
        engine: &str,
        id: u64,
        attempt: &EventAttempt<'_>,
    ) -> Result<OutboxEvent, StoreError> {
        self.let_go(engine, id, "record an event attempt", |event| {
            apply_attempt(event, attempt)
        })
        .await
    }

    /// Changes an event `engine` holds with `change` and lets go of it, in one
    /// transaction; refused ([`StoreError::NotHeld`]) when the event is not `engine`'s.
    async fn let_go(
        &self,
        engine: &str,
        id: u64,
        operation: &'static str,
        change: impl Fn(&mut OutboxEvent) + Sync,
    ) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        let id = big(KIND, "id", id)?;
        transaction!(self, operation, |tx| async {
            let row = tx
                .query_opt(
                    "SELECT record::text, owner FROM outbox WHERE id = $1 FOR UPDATE",
                    &[&id],
                )
                .await
                .map_err(pg("lock an event"))?
                .ok_or_else(|| StoreError::not_found(KIND, key.clone()))?;
            let mut event: OutboxEvent = decode(KIND, &key, &col::<String>(&row, 0)?)?;
            let owner: Option<String> = col(&row, 1)?;
            if event.state != OutboxState::Pending || owner.as_deref() != Some(engine) {
                return Err(StoreError::NotHeld {
                    kind: KIND,
                    id: key.clone(),
                    engine: engine.to_owned(),
                });
            }
            change(&mut event);
            tx.execute(
                "UPDATE outbox SET state = $2, next_attempt_at = $3, record = $4::text::jsonb,
                     organization = $5, owner = NULL, lease_expires_at = NULL
                 WHERE id = $1",
                &[
                    &id,
                    &state_name(event.state),
                    &event.next_attempt_at,
                    &encode(KIND, &key, &event)?,
                    &event.organization,
                ],
            )
            .await
            .map_err(pg(operation))?;
            Ok(event)
        })
    }
}

impl PgStore {
    /// An organization's dead letters, oldest first; the cursor is the last id seen.
    pub async fn dead_events(
        &self,
        organization: &str,
        page: &Page<u64>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let after = big(KIND, "after", page.after.unwrap_or(0))?;
        let limit = page.capped_limit() as i64;
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM outbox
                 WHERE state = 'dead' AND organization = $1 AND id > $2
                 ORDER BY id LIMIT $3",
                &[&organization, &after, &limit],
            )
            .await
            .map_err(pg("list dead letters"))?;
        rows.iter()
            .map(|row| {
                let id: i64 = col(row, 0)?;
                decode(KIND, &id.to_string(), &col::<String>(row, 1)?)
            })
            .collect()
    }

    /// Puts a dead letter of `organization` back in the queue, due at `now`, with a fresh
    /// count of attempts (`journal::revived`), and announces it. Deliveries it already
    /// completed are not repeated. Another organization's event, or one that is not dead,
    /// is not found.
    pub async fn retry_dead_event(
        &self,
        organization: &str,
        id: u64,
        now: DateTime<Utc>,
    ) -> Result<OutboxEvent, StoreError> {
        let key = id.to_string();
        let id = big(KIND, "id", id)?;
        transaction!(self, "retry a dead letter", |tx| async {
            let row = tx
                .query_opt(
                    "SELECT record::text FROM outbox
                     WHERE id = $1 AND state = 'dead' AND organization = $2 FOR UPDATE",
                    &[&id, &organization],
                )
                .await
                .map_err(pg("lock a dead letter"))?
                .ok_or_else(|| StoreError::not_found("dead letter", key.clone()))?;
            let mut event: OutboxEvent = decode(KIND, &key, &col::<String>(&row, 0)?)?;
            revived(&mut event, now);
            tx.execute(
                "UPDATE outbox SET state = 'pending', next_attempt_at = $2,
                     record = $3::text::jsonb
                 WHERE id = $1",
                &[&id, &event.next_attempt_at, &encode(KIND, &key, &event)?],
            )
            .await
            .map_err(pg("retry a dead letter"))?;
            announce_in(tx, Change::Outbox).await?;
            Ok(event)
        })
    }

    /// Removes up to `limit` delivered events created before `before`, oldest first, and
    /// returns how many went; pending events and dead letters are never removed.
    pub async fn prune_events(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let client = self.client().await?;
        // Events are numbered in creation order, so the oldest delivered ones come first;
        // `created_at` is read from the record, as the redb store reads it.
        let n = client
            .execute(
                "DELETE FROM outbox WHERE id IN (
                     SELECT id FROM outbox
                     WHERE state = 'delivered'
                       AND (record->>'created_at')::timestamptz < $1
                     ORDER BY id LIMIT $2
                 )",
                &[&before, &limit],
            )
            .await
            .map_err(pg("prune delivered events"))?;
        Ok(n as usize)
    }
}

/// Appends an event in the caller's transaction, with the change that causes it, and
/// announces it to the engines; returns its id.
pub(super) async fn push_event(
    tx: &deadpool_postgres::Transaction<'_>,
    kind: &str,
    payload: serde_json::Value,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let mut ids = push_events(tx, vec![(kind, payload)], now).await?;
    ids.pop()
        .ok_or_else(|| StoreError::not_found(KIND, "new event"))
}

/// Appends events in the caller's transaction, in order (their ids increase in the
/// order given), in one statement, and announces them once; returns their ids.
pub(super) async fn push_events(
    tx: &deadpool_postgres::Transaction<'_>,
    events: Vec<(&str, serde_json::Value)>,
    now: DateTime<Utc>,
) -> Result<Vec<u64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let rows = tx
        .query(
            "SELECT nextval('outbox_seq') FROM generate_series(1, $1::bigint)",
            &[&(events.len() as i64)],
        )
        .await
        .map_err(pg("take event ids"))?;
    let mut ids = Vec::with_capacity(events.len());
    let mut jobs: Vec<Option<String>> = Vec::with_capacity(events.len());
    let mut records = Vec::with_capacity(events.len());
    for (row, (kind, payload)) in rows.iter().zip(events) {
        let event = new_event(col_u64(row, 0)?, kind, payload, now);
        let id = big(KIND, "id", event.id)?;
        jobs.push(
            event
                .payload
                .get("job_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        );
        records.push(encode(KIND, &id.to_string(), &event)?);
        ids.push(id);
    }
    tx.execute(
        "INSERT INTO outbox (id, job_id, state, next_attempt_at, record)
         SELECT id, job_id, 'pending', $3, record::jsonb
         FROM unnest($1::bigint[], $2::text[], $4::text[]) AS t(id, job_id, record)",
        &[&ids, &jobs, &now, &records],
    )
    .await
    .map_err(pg("append events"))?;
    announce_in(tx, Change::Outbox).await?;
    Ok(ids.into_iter().map(|id| id.max(0) as u64).collect())
}

fn state_name(state: OutboxState) -> &'static str {
    match state {
        OutboxState::Pending => "pending",
        OutboxState::Delivered => "delivered",
        OutboxState::Dead => "dead",
    }
}
