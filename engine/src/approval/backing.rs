//! What the approval workflow asks of a store, so each step of it is written once for
//! both: the redb store answers at once (its operations are synchronous), the PostgreSQL
//! store over its connections.

use chrono::{DateTime, Utc};

use crate::store::approvals::{ApprovalToken, Decision};
use crate::store::postgres::PgStore;
use crate::store::schedules::Refusal;
use crate::store::{ScheduledScript, Store, StoreError, Targets, User};

/// The store operations the approval workflow uses, with the meaning the stores document.
pub(crate) trait Backing {
    async fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError>;
    async fn approval_binding(
        &self,
        schedule: &ScheduledScript,
    ) -> Result<(String, Targets), StoreError>;
    async fn organization_users(&self, organization: &str) -> Result<Vec<User>, StoreError>;
    async fn approval_token(&self, digest: &str) -> Result<Option<ApprovalToken>, StoreError>;
    async fn request_authorization(
        &self,
        id: &str,
        tokens: &[ApprovalToken],
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<(ScheduledScript, u64), StoreError>;
    #[allow(clippy::too_many_arguments)]
    async fn authorize_schedule(
        &self,
        id: &str,
        by: &str,
        approval: &str,
        allow_self_approval: bool,
        next_launch_at: Option<DateTime<Utc>>,
        token: Option<&str>,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<Result<ScheduledScript, Refusal>, StoreError>;
    async fn cancel_schedule(
        &self,
        id: &str,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<ScheduledScript, StoreError>;
}

/// Declares each operation of [`Backing`] for a store by calling its own operation of the
/// same name; `await` is given for a store whose operations are async.
macro_rules! backing {
    ($store:ty $(, $await:ident)?) => {
        impl Backing for $store {
            async fn get_schedule(&self, id: &str) -> Result<ScheduledScript, StoreError> {
                <$store>::get_schedule(self, id)$(.$await)?
            }
            async fn approval_binding(
                &self,
                schedule: &ScheduledScript,
            ) -> Result<(String, Targets), StoreError> {
                <$store>::approval_binding(self, schedule)$(.$await)?
            }
            async fn organization_users(
                &self,
                organization: &str,
            ) -> Result<Vec<User>, StoreError> {
                <$store>::organization_users(self, organization)$(.$await)?
            }
            async fn approval_token(
                &self,
                digest: &str,
            ) -> Result<Option<ApprovalToken>, StoreError> {
                <$store>::approval_token(self, digest)$(.$await)?
            }
            async fn request_authorization(
                &self,
                id: &str,
                tokens: &[ApprovalToken],
                decision: Decision,
                now: DateTime<Utc>,
            ) -> Result<(ScheduledScript, u64), StoreError> {
                <$store>::request_authorization(self, id, tokens, decision, now)$(.$await)?
            }
            async fn authorize_schedule(
                &self,
                id: &str,
                by: &str,
                approval: &str,
                allow_self_approval: bool,
                next_launch_at: Option<DateTime<Utc>>,
                token: Option<&str>,
                decision: Decision,
                now: DateTime<Utc>,
            ) -> Result<Result<ScheduledScript, Refusal>, StoreError> {
                <$store>::authorize_schedule(
                    self,
                    id,
                    by,
                    approval,
                    allow_self_approval,
                    next_launch_at,
                    token,
                    decision,
                    now,
                )$(.$await)?
            }
            async fn cancel_schedule(
                &self,
                id: &str,
                decision: Decision,
                now: DateTime<Utc>,
            ) -> Result<ScheduledScript, StoreError> {
                <$store>::cancel_schedule(self, id, decision, now)$(.$await)?
            }
        }
    };
}

backing!(Store);
backing!(PgStore, await);

/// The output of a workflow step on the redb store, whose operations never wait: the
/// step completes the first time it is polled.
pub(crate) fn at_once<T>(step: impl Future<Output = T>) -> T {
    let mut step = std::pin::pin!(step);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match step.as_mut().poll(&mut context) {
        std::task::Poll::Ready(out) => out,
        // Unreachable: nothing in the redb store's operations returns `Pending`.
        std::task::Poll::Pending => unreachable!("a step on the redb store waited"),
    }
}
