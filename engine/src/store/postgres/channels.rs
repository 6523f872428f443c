//! Notification channels and notify-url signing secrets in PostgreSQL.
//!
//! A channel's secret settings are sealed under the engines' shared key and bound to the
//! channel, by the redb store's own code (`channels::new_channel`, `channels::rotated`,
//! `channels::open_secrets`). An organization's channels are created one at a time (a
//! transaction-scoped advisory lock on the organization), so its limit of channels
//! holds when engines create them at once; a name is unique in it by a constraint.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use deadpool_postgres::Transaction;

use super::journal::push_audit;
use super::{PgStore, col, decode, encode, pg, take_turns};
use crate::store::channels::{
    MAX_CHANNELS_PER_ORG, Stored, name_taken, new_channel, next_generation, open_secrets, rotated,
    too_many,
};
use crate::store::error::StoreError;
use crate::store::{Channel, ChannelInput, SecretGeneration};

const KIND: &str = "channel";

impl PgStore {
    /// Which secret signs `organization`'s notify-url deliveries.
    pub async fn notify_secret_generation(
        &self,
        organization: &str,
    ) -> Result<SecretGeneration, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT record::text FROM notify_secrets WHERE organization = $1",
                &[&organization],
            )
            .await
            .map_err(pg("read a notify secret"))?;
        match row {
            Some(row) => decode("notify secret", organization, &col::<String>(&row, 0)?),
            None => Ok(SecretGeneration::default()),
        }
    }

    /// Moves `organization` to the next secret; the previous one keeps signing beside it
    /// for `grace`. Audited, by `actor`, in the same commit.
    pub async fn rotate_notify_secret(
        &self,
        organization: &str,
        actor: &str,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<SecretGeneration, StoreError> {
        transaction!(self, "rotate a notify secret", |tx| async {
            tx.execute(
                "INSERT INTO notify_secrets (organization, record) VALUES ($1, $2::text::jsonb)
                 ON CONFLICT (organization) DO NOTHING",
                &[
                    &organization,
                    &encode("notify secret", organization, &SecretGeneration::default())?,
                ],
            )
            .await
            .map_err(pg("start a notify secret"))?;
            let row = tx
                .query_one(
                    "SELECT record::text FROM notify_secrets WHERE organization = $1 FOR UPDATE",
                    &[&organization],
                )
                .await
                .map_err(pg("lock a notify secret"))?;
            let current: SecretGeneration =
                decode("notify secret", organization, &col::<String>(&row, 0)?)?;
            let (next, audit) = next_generation(organization, &current, actor, grace, now)?;
            tx.execute(
                "UPDATE notify_secrets SET record = $2::text::jsonb WHERE organization = $1",
                &[
                    &organization,
                    &encode("notify secret", organization, &next)?,
                ],
            )
            .await
            .map_err(pg("rotate a notify secret"))?;
            push_audit(tx, audit).await?;
            Ok(next)
        })
    }

    /// Stores a new channel; names are unique within an organization, which has at most
    /// [`MAX_CHANNELS_PER_ORG`].
    pub async fn create_channel(
        &self,
        input: ChannelInput,
        now: DateTime<Utc>,
    ) -> Result<Channel, StoreError> {
        let stored = new_channel(&self.vault, input, now);
        let channel = stored.channel.clone();
        let record = encode(KIND, &channel.id, &stored)?;
        transaction!(self, "create a channel", |tx| async {
            take_turns(tx, "channels", &channel.organization).await?;
            let row = tx
                .query_one(
                    "SELECT count(*), count(*) FILTER (WHERE name = $2)
                     FROM channels WHERE organization = $1",
                    &[&channel.organization, &channel.name],
                )
                .await
                .map_err(pg("count an organization's channels"))?;
            if col::<i64>(&row, 1)? > 0 {
                return Err(name_taken(&channel.name));
            }
            if col::<i64>(&row, 0)? >= MAX_CHANNELS_PER_ORG as i64 {
                return Err(too_many());
            }
            tx.execute(
                "INSERT INTO channels (id, organization, name, created_at, record)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb)",
                &[
                    &channel.id,
                    &channel.organization,
                    &channel.name,
                    &channel.created_at,
                    &record,
                ],
            )
            .await
            .map_err(pg("write a channel"))?;
            Ok(channel.clone())
        })
    }

    /// An organization's channels, in creation order.
    pub async fn list_channels(&self, organization: &str) -> Result<Vec<Channel>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT id, record::text FROM channels WHERE organization = $1
                 ORDER BY created_at, id",
                &[&organization],
            )
            .await
            .map_err(pg("list channels"))?;
        rows.iter().map(|row| Ok(stored_of(row)?.channel)).collect()
    }

    /// One channel of `organization`; another organization's is not found.
    pub async fn get_channel(&self, organization: &str, id: &str) -> Result<Channel, StoreError> {
        Ok(self.stored_channel(organization, id).await?.channel)
    }

    /// The channel's secret settings in the clear, for the deliverer; just after a
    /// rotation, `previous_secret` too.
    pub async fn channel_secrets(
        &self,
        organization: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        open_secrets(
            &self.vault,
            &self.stored_channel(organization, id).await?,
            now,
        )
    }

    /// Gives a webhook channel of `organization` the signing secret `secret`; the one it
    /// had keeps signing beside it for `grace`. Audited, by `actor`, in the same commit.
    #[allow(clippy::too_many_arguments)]
    pub async fn rotate_channel_secret(
        &self,
        organization: &str,
        id: &str,
        secret: &str,
        grace: TimeDelta,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<(Channel, Option<DateTime<Utc>>), StoreError> {
        transaction!(self, "rotate a channel secret", |tx| async {
            let stored = locked(tx, id).await?;
            let (stored, until, audit) =
                rotated(&self.vault, stored, organization, secret, grace, actor, now)?;
            tx.execute(
                "UPDATE channels SET record = $2::text::jsonb WHERE id = $1",
                &[&id, &encode(KIND, id, &stored)?],
            )
            .await
            .map_err(pg("rotate a channel secret"))?;
            push_audit(tx, audit).await?;
            Ok((stored.channel, until))
        })
    }

    /// Removes a channel of `organization`.
    pub async fn delete_channel(
        &self,
        organization: &str,
        id: &str,
    ) -> Result<Channel, StoreError> {
        transaction!(self, "delete a channel", |tx| async {
            let stored = locked(tx, id).await?;
            if stored.channel.organization != organization {
                return Err(StoreError::not_found(KIND, id));
            }
            tx.execute("DELETE FROM channels WHERE id = $1", &[&id])
                .await
                .map_err(pg("delete a channel"))?;
            Ok(stored.channel)
        })
    }

    async fn stored_channel(&self, organization: &str, id: &str) -> Result<Stored, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT id, record::text FROM channels WHERE id = $1",
                &[&id],
            )
            .await
            .map_err(pg("read a channel"))?
            .ok_or_else(|| StoreError::not_found(KIND, id))?;
        let stored = stored_of(&row)?;
        if stored.channel.organization != organization {
            return Err(StoreError::not_found(KIND, id));
        }
        Ok(stored)
    }
}

async fn locked(tx: &Transaction<'_>, id: &str) -> Result<Stored, StoreError> {
    let row = tx
        .query_opt(
            "SELECT id, record::text FROM channels WHERE id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(pg("read a channel"))?
        .ok_or_else(|| StoreError::not_found(KIND, id))?;
    stored_of(&row)
}

fn stored_of(row: &tokio_postgres::Row) -> Result<Stored, StoreError> {
    let id: String = col(row, 0)?;
    decode(KIND, &id, &col::<String>(row, 1)?)
}
