//! Changes announced between engines with PostgreSQL's LISTEN/NOTIFY, so a schedule
//! approved through one engine launches on time from another, and jobs queued through
//! one are taken at once by the others instead of at their next look.
//!
//! An announcement is a `NOTIFY` on one channel, [`CHANNEL`], whose payload names what
//! changed ([`Change`]). Sent inside a transaction, it is delivered only if that
//! transaction commits, and after it ([`announce_in`]). Each engine listens on a
//! connection of its own, outside the pool (a pooled connection is recycled between
//! uses and would drop its `LISTEN`). A notification sent while the listener is
//! disconnected is lost, so after every reconnection the listener reports every kind of
//! change: whoever waits reads the state again rather than trust that nothing happened.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{PgStore, pg};
use crate::store::error::StoreError;

/// The channel every engine of one database listens on.
pub const CHANNEL: &str = "yardmaster_changes";
/// Wait before connecting again after the listener's connection was lost.
const RECONNECT: Duration = Duration::from_millis(500);

/// What one engine tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// A schedule was created, edited, approved or cancelled: its next launch may have
    /// moved.
    Schedules,
    /// Jobs were queued or put back to pending.
    Jobs,
    /// Notification events were queued.
    Outbox,
}

impl Change {
    pub const ALL: [Change; 3] = [Change::Schedules, Change::Jobs, Change::Outbox];

    pub fn as_str(self) -> &'static str {
        match self {
            Change::Schedules => "schedules",
            Change::Jobs => "jobs",
            Change::Outbox => "outbox",
        }
    }

    fn parse(payload: &str) -> Option<Change> {
        Change::ALL.into_iter().find(|c| c.as_str() == payload)
    }
}

/// Announces `change` as part of `tx`: the other engines hear of it once `tx` commits,
/// and never if it rolls back.
pub(crate) async fn announce_in(
    tx: &tokio_postgres::Transaction<'_>,
    change: Change,
) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &change.as_str()])
        .await
        .map_err(pg("announce a change"))?;
    Ok(())
}

/// The changes other engines announce, as they arrive. Dropping it stops listening.
#[derive(Debug)]
pub struct Listener {
    changes: mpsc::Receiver<Change>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The next change, or `None` once the store is gone.
    pub async fn next(&mut self) -> Option<Change> {
        self.changes.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PgStore {
    /// Announces `change` to every engine listening, on its own.
    pub async fn announce(&self, change: Change) -> Result<(), StoreError> {
        transaction!(self, "announce a change", |tx| async {
            announce_in(tx, change).await
        })
    }

    /// Starts listening for changes on a connection of its own, once it is listening;
    /// it reconnects by itself after losing the server, and then reports every kind of
    /// change once.
    pub async fn listen(&self) -> Result<Listener, StoreError> {
        let (sender, changes) = mpsc::channel(64);
        let server = (self.config.clone(), self.address.clone());
        let (client, connection) = connect(&server).await?;
        let task = tokio::spawn(async move {
            let mut session = Some((client, connection));
            loop {
                let (client, connection) = match session.take() {
                    Some(live) => live,
                    None => {
                        tokio::time::sleep(RECONNECT).await;
                        match connect(&server).await {
                            Ok(live) => {
                                for change in Change::ALL {
                                    if sender.send(change).await.is_err() {
                                        return;
                                    }
                                }
                                live
                            }
                            Err(e) => {
                                tracing::debug!(error = %e, "listening for changes: reconnecting");
                                continue;
                            }
                        }
                    }
                };
                if !relay(client, connection, &sender).await {
                    return;
                }
                tracing::warn!("lost the connection that listens for other engines' changes");
            }
        });
        Ok(Listener { changes, task })
    }
}

type Live = (
    tokio_postgres::Client,
    tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
);

/// A connection that has issued `LISTEN`; its messages are read by [`relay`].
async fn connect((config, address): &(tokio_postgres::Config, String)) -> Result<Live, StoreError> {
    let (client, mut connection) =
        config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Unreachable {
                address: address.clone(),
                reason: crate::store::error::postgres_detail(&e),
            })?;
    // The `LISTEN` is answered through the connection, which nobody polls yet: poll it
    // here until the command has returned.
    let command = format!("LISTEN {CHANNEL}");
    {
        let listen = client.batch_execute(&command);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.map_err(pg("listen for changes"))?;
                    break;
                }
                message = std::future::poll_fn(|cx| connection.poll_message(cx)) => match message {
                    // Nothing is announced to this connection before its `LISTEN` returned.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(pg("listen for changes")(e)),
                    None => return Err(StoreError::Unreachable {
                        address: address.clone(),
                        reason: "the server closed the connection".into(),
                    }),
                },
            }
        }
    }
    Ok((client, connection))
}

/// Forwards the connection's notifications until it ends; false once nobody listens.
async fn relay(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<
        tokio_postgres::Socket,
        tokio_postgres::tls::NoTlsStream,
    >,
    sender: &mpsc::Sender<Change>,
) -> bool {
    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
        match message {
            Ok(AsyncMessage::Notification(note)) if note.channel() == CHANNEL => {
                match Change::parse(note.payload()) {
                    Some(change) => {
                        if sender.send(change).await.is_err() {
                            return false;
                        }
                    }
                    None => tracing::warn!(
                        payload = note.payload(),
                        "an announcement names no change this engine knows"
                    ),
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "the listening connection failed");
                break;
            }
        }
    }
    drop(client);
    !sender.is_closed()
}
