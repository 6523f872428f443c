//! Authorization of scheduled scripts (issue 4, point 5): nothing runs unapproved.
//!
//! - [`request`] records that a schedule asks for approval, issues a single-use,
//!   expiring approval link and emits `script.authorization_requested` for the
//!   notifiers to deliver.
//! - [`approve`] moves a schedule from `unauthorized` to `scheduled`: always by a user
//!   with [`SCOPE_AUTHORIZE`], through a link only by the recipient it was sent to; never
//!   by anyone who created it or edited what the approval covers, unless the
//!   organization allows self-approval (four eyes). The approval is bound to
//!   [`approval_hash`] of the schedule as it stands with its targets resolved (tags
//!   frozen, each site's endpoint and credential identity), so an edit of what runs
//!   (which the store answers by returning the schedule to `unauthorized`) needs a new
//!   approval, a link sent out before the edit no longer approves, and a launch whose
//!   targets changed since does not start.
//! - Both [`request`] and [`approve`] hold the schedule to the lint policy
//!   ([`crate::lint::policy`]): a script that does not parse, or critical findings not
//!   listed in `acknowledged_risks`, are refused (422). The request's event carries the
//!   critical and high findings and the acknowledged list for the approvers, and the
//!   binding covers the list.
//! - [`cancel`] stops a schedule that has not finished.
//!
//! Every decision is audited and announced in the outbox. Errors are [`ApprovalError`],
//! whose variants map one-to-one onto HTTP statuses ([`ApprovalError::http_status`]).
//! A schedule of another organization is reported as not found, never as forbidden, so
//! its existence does not leak.

mod binding;
mod workflow;

#[cfg(test)]
mod tests;

use chrono::TimeDelta;

pub use binding::approval_hash;
pub use workflow::{
    Approved, EVENT_AUTHORIZED, EVENT_CANCELLED, EVENT_REQUESTED, Requested, approve, approve_in,
    cancel, cancel_in, linked_schedule, linked_schedule_in, request, request_in,
};
pub(crate) use workflow::{approve_with, cancel_with, linked_with, request_with, scheduler_rule};

use crate::store::StoreError;

/// Scope that lets a user approve schedules without a link.
pub const SCOPE_AUTHORIZE: &str = "script:authorize";
/// Scope that lets a user edit a schedule; editing already de-authorizes, so it also
/// lets the user request authorization and cancel.
pub const SCOPE_UPDATE: &str = "script:update";
/// Scope that lets a user create schedules, and so ask for their approval.
pub const SCOPE_CREATE: &str = "script:create";
/// Scope that lets a user delete schedules; a launched one must be cancelled first, so
/// it also lets the user cancel.
pub const SCOPE_DELETE: &str = "script:delete";

/// How long an approval link stays valid when the caller has no setting of its own.
pub const DEFAULT_LINK_TTL: TimeDelta = TimeDelta::days(3);

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub organization: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// An organization's approval rules.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrgPolicy {
    /// Whether the creator of a schedule may approve it. Off by default: four eyes.
    pub allow_self_approval: bool,
}

/// Why an authorization step was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The caller lacks every scope that allows the step.
    #[error("missing scope: {scope}")]
    Forbidden { scope: &'static str },

    #[error(
        "you created or edited this scheduled script, so you cannot approve it; ask another user"
    )]
    SelfApproval,

    /// No such schedule, or one of another organization.
    #[error("scheduled script not found: {id}")]
    NotFound { id: String },

    /// The schedule's state does not allow the step.
    #[error("scheduled script {id}: {reason}")]
    Conflict { id: String, reason: String },

    #[error("the approval link has expired; request authorization again")]
    ExpiredToken,

    #[error("the approval link is not valid: {reason}")]
    InvalidToken { reason: &'static str },

    /// The schedule cannot be approved as it stands (no launch in the future).
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },

    /// The script or its acknowledged risks do not pass the lint policy: it cannot be
    /// sent for approval or approved as it stands.
    #[error(transparent)]
    Policy(crate::lint::policy::PolicyError),

    #[error(transparent)]
    Store(StoreError),
}

impl ApprovalError {
    /// The HTTP status the API answers with.
    pub fn http_status(&self) -> u16 {
        match self {
            ApprovalError::Forbidden { .. }
            | ApprovalError::SelfApproval
            | ApprovalError::InvalidToken { .. } => 403,
            ApprovalError::NotFound { .. } => 404,
            ApprovalError::Conflict { .. } => 409,
            ApprovalError::ExpiredToken => 410,
            ApprovalError::Invalid { .. } | ApprovalError::Policy(_) => 422,
            ApprovalError::Store(_) => 500,
        }
    }

    /// A store error in terms of this workflow: a missing or conflicting schedule keeps
    /// its meaning, anything else is the store's own failure.
    fn from_store(id: &str, e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApprovalError::NotFound { id: id.to_owned() },
            StoreError::ScheduleState { reason, .. } => ApprovalError::Conflict {
                id: id.to_owned(),
                reason,
            },
            StoreError::LintPolicy(e) => ApprovalError::Policy(e),
            other => ApprovalError::Store(other),
        }
    }
}
