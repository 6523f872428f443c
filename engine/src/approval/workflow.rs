//! The three steps of the workflow: request, approve, cancel.
//!
//! Each step checks everything it can against one read of the schedule, then commits
//! through the store, whose own transactions re-check the state: a step that raced
//! another (two approvals, an approval and a cancel) fails with a conflict instead of
//! doing both. A step's audit line and outbox event are written in the transaction that
//! makes it, and an approval link is used up in the transaction that approves, so a
//! refusal for any reason (four eyes, state, an edit since the read, no future launch)
//! leaves the link usable and records nothing.

use chacha20poly1305::aead::{OsRng, rand_core::RngCore};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{
    ApprovalError, OrgPolicy, Principal, SCOPE_AUTHORIZE, SCOPE_CREATE, SCOPE_DELETE, SCOPE_UPDATE,
};
use crate::scheduler::{self, RecurrenceSpec, ScheduleType};
use crate::store::approvals::{ApprovalToken, Decision, TokenRejection};
use crate::store::backend::Approvals;
use crate::store::schedules::Refusal;
use crate::store::{
    AuditInput, Recurrence, RecurrenceKind, ScheduleStatus, ScheduledScript, Store,
};

/// Event announcing an approval request; its payload carries the link to deliver.
pub const EVENT_REQUESTED: &str = "script.authorization_requested";
pub const EVENT_AUTHORIZED: &str = "script.authorized";
pub const EVENT_CANCELLED: &str = "script.cancelled";

/// What [`request`] did. The link is not part of it: it goes only to the recipients,
/// through the outbox event, so the requester cannot approve with a link handed back.
#[derive(Debug, Clone)]
pub struct Requested {
    pub schedule: ScheduledScript,
    /// The outbox event that carries the link.
    pub event_id: u64,
    pub recipients: Vec<String>,
    pub expires_at: DateTime<Utc>,
}

/// What [`approve`] did.
#[derive(Debug, Clone)]
pub struct Approved {
    pub schedule: ScheduledScript,
    pub next_launch_at: DateTime<Utc>,
    /// Approved through a link rather than the `script:authorize` scope.
    pub via_link: bool,
}

/// Asks for approval of an unauthorized schedule: records the request, issues a link
/// valid for `link_ttl`, and emits [`EVENT_REQUESTED`] naming the recipients (the
/// schedule's `notify` users or, when it names none, every user of its organization).
///
/// Requires `script:create` or `script:update`: whoever may write a schedule may ask
/// for it to be approved.
pub fn request(
    store: &Store,
    schedule_id: &str,
    requester: &Principal,
    now: DateTime<Utc>,
    link_ttl: TimeDelta,
) -> Result<Requested, ApprovalError> {
    at_once(request_with(store, schedule_id, requester, now, link_ttl))
}

/// [`request`] on the PostgreSQL store.
pub async fn request_in(
    store: &crate::store::postgres::PgStore,
    schedule_id: &str,
    requester: &Principal,
    now: DateTime<Utc>,
    link_ttl: TimeDelta,
) -> Result<Requested, ApprovalError> {
    request_with(store, schedule_id, requester, now, link_ttl).await
}

pub(crate) async fn request_with(
    store: &impl Approvals,
    schedule_id: &str,
    requester: &Principal,
    now: DateTime<Utc>,
    link_ttl: TimeDelta,
) -> Result<Requested, ApprovalError> {
    let current = load(store, schedule_id, requester).await?;
    let asked = Ask::check(&current, requester, now, link_ttl)?;
    // Bound to the version this request reads, targets included: an edit of the
    // schedule or of a target site after this point changes the hash, and the links
    // stop approving.
    let (approval, _) = store
        .approval_binding(&current)
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))?;
    let users = if current.notify.is_empty() {
        store
            .organization_users(&current.organization)
            .await
            .map_err(ApprovalError::Store)?
    } else {
        Vec::new()
    };
    let (records, decision, requested) = asked.links(current, requester, approval, users, now);
    let (schedule, event_id) = store
        .request_authorization(schedule_id, &records, decision, now)
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))?;
    Ok(requested(schedule, event_id))
}

/// A request for approval that may be made: when its links expire, and what the linter
/// shows approvers.
struct Ask {
    expires_at: DateTime<Utc>,
    findings: serde_json::Value,
}

impl Ask {
    /// Whether `requester` may ask for approval of `current` now, with links valid for
    /// `link_ttl`.
    fn check(
        current: &ScheduledScript,
        requester: &Principal,
        now: DateTime<Utc>,
        link_ttl: TimeDelta,
    ) -> Result<Ask, ApprovalError> {
        let schedule_id = current.id.as_str();
        if !requester.has_scope(SCOPE_CREATE) && !requester.has_scope(SCOPE_UPDATE) {
            return Err(ApprovalError::Forbidden {
                scope: SCOPE_UPDATE,
            });
        }
        if link_ttl <= TimeDelta::zero() {
            return Err(ApprovalError::Invalid {
                field: "link_ttl",
                reason: "must be positive".into(),
            });
        }
        let expires_at =
            now.checked_add_signed(link_ttl)
                .ok_or_else(|| ApprovalError::Invalid {
                    field: "link_ttl",
                    reason: "ends beyond the calendar".into(),
                })?;
        if current.status != ScheduleStatus::Unauthorized {
            return Err(conflict(
                schedule_id,
                format!(
                    "is {}; only an unauthorized schedule asks for approval",
                    status_name(current.status)
                ),
            ));
        }
        // A schedule stored before the lint policy, or under older rules, is held to it
        // before anyone is asked to approve it.
        let lint = crate::lint::policy::check(&current.script, &current.acknowledged_risks)
            .map_err(ApprovalError::Policy)?;
        let findings = crate::lint::policy::shown_to_approvers(&lint);
        Ok(Ask {
            expires_at,
            findings: serde_json::to_value(findings).unwrap_or_default(),
        })
    }

    /// The links to `schedule` under `approval`, one per recipient (its `notify` users
    /// or, when it names none, `users`: every user of its organization), their records,
    /// the request's decision, and how to report it once stored.
    fn links(
        self,
        schedule: ScheduledScript,
        requester: &Principal,
        approval: String,
        users: Vec<crate::store::User>,
        now: DateTime<Utc>,
    ) -> (
        Vec<ApprovalToken>,
        Decision,
        impl FnOnce(ScheduledScript, u64) -> Requested,
    ) {
        let Ask {
            expires_at,
            findings,
        } = self;
        let (recipients, recipients_from): (Vec<String>, &str) = if schedule.notify.is_empty() {
            (users.into_iter().map(|u| u.id).collect(), "organization")
        } else {
            (schedule.notify.clone(), "notify")
        };
        // One link per recipient, bound to that recipient: a link forwarded to anyone
        // else approves nothing.
        let mut records = Vec::with_capacity(recipients.len());
        let mut links = serde_json::Map::new();
        for recipient in &recipients {
            let token = new_token();
            records.push(ApprovalToken {
                digest: digest(&token),
                schedule_id: schedule.id.clone(),
                organization: schedule.organization.clone(),
                approval: approval.clone(),
                requested_by: requester.user_id.clone(),
                recipient: Some(recipient.clone()),
                created_at: now,
                expires_at,
                used_at: None,
                used_by: None,
            });
            links.insert(
                recipient.clone(),
                format!("/scripts/scheduled/{}/authorize?token={token}", schedule.id).into(),
            );
        }
        let audit = AuditInput {
            at: now,
            organization: schedule.organization.clone(),
            actor: requester.user_id.clone(),
            action: EVENT_REQUESTED.into(),
            target: schedule.id.clone(),
            detail: json!({
                "approval": approval,
                "version": schedule.version,
                "recipients": recipients,
                "expires_at": expires_at,
            }),
        };
        // The outbox holds the links until the event is delivered and pruned; the token
        // table holds only their digests.
        let payload = json!({
            "schedule_id": schedule.id,
            "organization": schedule.organization,
            "description": schedule.description,
            "created_by": schedule.created_by,
            "editors": schedule.editors,
            "version": schedule.version,
            "requested_by": requester.user_id,
            "recipients": recipients,
            "recipients_from": recipients_from,
            "links": links,
            "expires_at": expires_at,
            "approval": approval,
            // What the approver accepts beside the script: the linter's critical and high
            // findings, and the risks the author acknowledged (covered by `approval`).
            "findings": findings,
            "acknowledged_risks": schedule.acknowledged_risks,
        });
        let decision = Decision {
            audit,
            event: EVENT_REQUESTED,
            payload,
        };
        let requested = move |schedule, event_id| Requested {
            schedule,
            event_id,
            recipients,
            expires_at,
        };
        (records, decision, requested)
    }
}

/// Approves an unauthorized schedule as it stands, and schedules its next launch.
///
/// The approver always needs `script:authorize`. A link (`token`) adds proof that the
/// approver is the recipient it was sent to: it is checked and used up in the
/// transaction that approves, and refused for anyone else. Nobody who created the
/// schedule or edited what the approval covers may approve it, unless `policy` allows
/// self-approval; the store checks that against the schedule it commits.
pub fn approve(
    store: &Store,
    schedule_id: &str,
    approver: &Principal,
    token: Option<&str>,
    policy: OrgPolicy,
    now: DateTime<Utc>,
) -> Result<Approved, ApprovalError> {
    at_once(approve_with(
        store,
        schedule_id,
        approver,
        token,
        policy,
        now,
    ))
}

/// [`approve`] on the PostgreSQL store: the same checks, decision and outcome, with the
/// approval committed by the PostgreSQL store under the same rules.
pub async fn approve_in(
    store: &crate::store::postgres::PgStore,
    schedule_id: &str,
    approver: &Principal,
    token: Option<&str>,
    policy: OrgPolicy,
    now: DateTime<Utc>,
) -> Result<Approved, ApprovalError> {
    approve_with(store, schedule_id, approver, token, policy, now).await
}

pub(crate) async fn approve_with(
    store: &impl Approvals,
    schedule_id: &str,
    approver: &Principal,
    token: Option<&str>,
    policy: OrgPolicy,
    now: DateTime<Utc>,
) -> Result<Approved, ApprovalError> {
    let current = load(store, schedule_id, approver).await?;
    check_approver(&current, approver, policy)?;
    let binding = store
        .approval_binding(&current)
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))?;
    let approval = Approval::prepare(&current, approver, token, binding, now)?;
    let decided = store
        .authorize_schedule(
            schedule_id,
            &approver.user_id,
            &approval.hash,
            policy.allow_self_approval,
            Some(approval.next_launch_at),
            approval.token_digest.as_deref(),
            approval.decision.clone(),
            now,
        )
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))?;
    approval.outcome(decided)
}

/// Whether `approver` may approve `current` as it was read: the scope, the status, the
/// self-approval policy and the lint policy. The store checks the same again against the
/// schedule it commits.
fn check_approver(
    current: &ScheduledScript,
    approver: &Principal,
    policy: OrgPolicy,
) -> Result<(), ApprovalError> {
    if !approver.has_scope(SCOPE_AUTHORIZE) {
        return Err(ApprovalError::Forbidden {
            scope: SCOPE_AUTHORIZE,
        });
    }
    if current.status != ScheduleStatus::Unauthorized {
        return Err(conflict(
            &current.id,
            format!(
                "is {}; only an unauthorized schedule can be approved",
                status_name(current.status)
            ),
        ));
    }
    if shaped_by(current, approver) && !policy.allow_self_approval {
        return Err(ApprovalError::SelfApproval);
    }
    // The binding computed next covers the script and the acknowledged list, and the
    // store refuses the approval if either changed since this read: checking them here
    // checks what is approved.
    crate::lint::policy::check(&current.script, &current.acknowledged_risks)
        .map(drop)
        .map_err(ApprovalError::Policy)
}

fn shaped_by(current: &ScheduledScript, approver: &Principal) -> bool {
    current.created_by == approver.user_id || current.editors.contains(&approver.user_id)
}

/// An approval as the approver asks for it, before the store decides.
struct Approval {
    hash: String,
    next_launch_at: DateTime<Utc>,
    token_digest: Option<String>,
    decision: Decision,
}

impl Approval {
    /// The approval of `current` under `binding` (its hash and targets as resolved now),
    /// with the decision's audit line and event.
    fn prepare(
        current: &ScheduledScript,
        approver: &Principal,
        token: Option<&str>,
        (approval, targets): (String, crate::store::Targets),
        now: DateTime<Utc>,
    ) -> Result<Approval, ApprovalError> {
        let next_launch_at = next_launch(current, now)?;
        let via = if token.is_some() { "link" } else { "scope" };
        let audit = AuditInput {
            at: now,
            organization: current.organization.clone(),
            actor: approver.user_id.clone(),
            action: EVENT_AUTHORIZED.into(),
            target: current.id.clone(),
            detail: json!({
                "approval": approval,
                "version": current.version,
                "editors": current.editors,
                "sites": targets.sites,
                "via": via,
                "self_approval": shaped_by(current, approver),
                "next_launch_at": next_launch_at,
            }),
        };
        let payload = json!({
            "schedule_id": current.id,
            "organization": current.organization,
            "description": current.description,
            "created_by": current.created_by,
            "authorized_by": approver.user_id,
            "authorized_at": now,
            "approval": approval,
            "version": current.version,
            "sites": targets.sites.len(),
            "next_launch_at": next_launch_at,
            "notify": current.notify,
        });
        Ok(Approval {
            hash: approval,
            next_launch_at,
            token_digest: token.map(digest),
            decision: Decision {
                audit,
                event: EVENT_AUTHORIZED,
                payload,
            },
        })
    }

    /// What the approver is told of the store's decision.
    fn outcome(self, decided: Result<ScheduledScript, Refusal>) -> Result<Approved, ApprovalError> {
        let schedule = match decided {
            Ok(schedule) => schedule,
            Err(Refusal::OwnWork) => return Err(ApprovalError::SelfApproval),
            Err(Refusal::Token(TokenRejection::Expired)) => {
                return Err(ApprovalError::ExpiredToken);
            }
            Err(Refusal::Token(TokenRejection::Used)) => {
                return Err(ApprovalError::InvalidToken {
                    reason: "it has already been used",
                });
            }
            Err(Refusal::Token(TokenRejection::Stale)) => {
                return Err(ApprovalError::InvalidToken {
                    reason: "the scheduled script or one of its target sites changed after the link was sent; request authorization again",
                });
            }
            Err(Refusal::Token(TokenRejection::NotRecipient)) => {
                return Err(ApprovalError::InvalidToken {
                    reason: "it was sent to another user; only its recipient may approve with it",
                });
            }
            Err(Refusal::Token(TokenRejection::Unknown)) => {
                return Err(ApprovalError::InvalidToken {
                    reason: "it does not belong to this scheduled script",
                });
            }
        };
        Ok(Approved {
            schedule,
            next_launch_at: self.next_launch_at,
            via_link: self.token_digest.is_some(),
        })
    }
}

/// Cancels a schedule that has not finished; a launched one stops before its unstarted
/// jobs. Requires `script:update` or `script:delete`: editing already de-authorizes a
/// schedule, and deleting a launched one requires cancelling it first.
pub fn cancel(
    store: &Store,
    schedule_id: &str,
    actor: &Principal,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, ApprovalError> {
    at_once(cancel_with(store, schedule_id, actor, now))
}

/// [`cancel`] on the PostgreSQL store.
pub async fn cancel_in(
    store: &crate::store::postgres::PgStore,
    schedule_id: &str,
    actor: &Principal,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, ApprovalError> {
    cancel_with(store, schedule_id, actor, now).await
}

pub(crate) async fn cancel_with(
    store: &impl Approvals,
    schedule_id: &str,
    actor: &Principal,
    now: DateTime<Utc>,
) -> Result<ScheduledScript, ApprovalError> {
    let current = load(store, schedule_id, actor).await?;
    let decision = cancellation(&current, actor, now)?;
    store
        .cancel_schedule(schedule_id, decision, now)
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))
}

/// The decision to cancel `current`, by `actor`, who needs `script:update` or
/// `script:delete`.
fn cancellation(
    current: &ScheduledScript,
    actor: &Principal,
    now: DateTime<Utc>,
) -> Result<Decision, ApprovalError> {
    if !actor.has_scope(SCOPE_UPDATE) && !actor.has_scope(SCOPE_DELETE) {
        return Err(ApprovalError::Forbidden {
            scope: SCOPE_UPDATE,
        });
    }
    let audit = AuditInput {
        at: now,
        organization: current.organization.clone(),
        actor: actor.user_id.clone(),
        action: EVENT_CANCELLED.into(),
        target: current.id.clone(),
        detail: json!({"previous_status": current.status}),
    };
    let payload = json!({
        "schedule_id": current.id,
        "organization": current.organization,
        "description": current.description,
        "cancelled_by": actor.user_id,
        "cancelled_at": now,
        "previous_status": current.status,
        "notify": current.notify,
    });
    Ok(Decision {
        audit,
        event: EVENT_CANCELLED,
        payload,
    })
}

/// The schedule an approval link was sent for, when the link would still approve it:
/// issued for this schedule, unused, unexpired, and the schedule unauthorized and
/// unchanged (targets included) since. Whoever holds such a link was sent it to review
/// the schedule, so its confirm page may show what is being approved; any other token
/// learns nothing.
pub fn linked_schedule(
    store: &Store,
    schedule_id: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<ScheduledScript>, ApprovalError> {
    at_once(linked_with(store, schedule_id, token, now))
}

/// [`linked_schedule`] on the PostgreSQL store.
pub async fn linked_schedule_in(
    store: &crate::store::postgres::PgStore,
    schedule_id: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<ScheduledScript>, ApprovalError> {
    linked_with(store, schedule_id, token, now).await
}

pub(crate) async fn linked_with(
    store: &impl Approvals,
    schedule_id: &str,
    token: &str,
    now: DateTime<Utc>,
) -> Result<Option<ScheduledScript>, ApprovalError> {
    let found = store
        .approval_token(&digest(token))
        .await
        .map_err(ApprovalError::Store)?;
    if !link_open(found.as_ref(), schedule_id, now) {
        return Ok(None);
    }
    let schedule = match store.get_schedule(schedule_id).await {
        Ok(s) if s.status == ScheduleStatus::Unauthorized => s,
        Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(ApprovalError::Store(e)),
    };
    let (approval, _) = store
        .approval_binding(&schedule)
        .await
        .map_err(|e| ApprovalError::from_store(schedule_id, e))?;
    Ok(found
        .filter(|link| link.approval == approval)
        .map(|_| schedule))
}

/// Whether `found` is a link issued for `schedule_id`, unused and unexpired at `now`.
fn link_open(found: Option<&ApprovalToken>, schedule_id: &str, now: DateTime<Utc>) -> bool {
    found.is_some_and(|t| t.schedule_id == schedule_id && t.used_at.is_none() && now < t.expires_at)
}

/// The schedule, if it exists and belongs to the caller's organization; any other
/// schedule is not found, so ids of other organizations cannot be probed.
async fn load(
    store: &impl Approvals,
    id: &str,
    who: &Principal,
) -> Result<ScheduledScript, ApprovalError> {
    match store.get_schedule(id).await {
        Ok(s) if s.organization == who.organization => Ok(s),
        Ok(_) => Err(ApprovalError::NotFound { id: id.to_owned() }),
        Err(e) => Err(ApprovalError::from_store(id, e)),
    }
}

/// When an approved schedule first launches: its recurrence's next occurrence after
/// `now`, or its `launch_at` if that is still ahead.
fn next_launch(s: &ScheduledScript, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApprovalError> {
    if let Some(rule) = &s.recurrence {
        return scheduler_rule(rule)?
            .next_after(now)
            .map(|o| o.at)
            .ok_or_else(|| ApprovalError::Invalid {
                field: "recurrence",
                reason: "has no occurrence in the future".into(),
            });
    }
    match s.launch_at {
        Some(at) if at > now => Ok(at),
        Some(at) => Err(ApprovalError::Invalid {
            field: "launch_at",
            reason: format!("{} is not in the future", at.to_rfc3339()),
        }),
        None => Err(ApprovalError::Invalid {
            field: "launch_at",
            reason: "a schedule needs launch_at or a recurrence".into(),
        }),
    }
}

/// The store's recurrence as the scheduler's validated rule.
pub(crate) fn scheduler_rule(r: &Recurrence) -> Result<scheduler::Recurrence, ApprovalError> {
    let schedule_type = match r.kind {
        RecurrenceKind::OneTime => ScheduleType::OneTime,
        RecurrenceKind::Hourly => ScheduleType::Hourly,
        RecurrenceKind::Daily => ScheduleType::Daily,
        RecurrenceKind::Weekly => ScheduleType::Weekly,
        RecurrenceKind::Monthly => ScheduleType::Monthly,
    };
    let hourly_interval = match (schedule_type, r.interval) {
        (ScheduleType::Hourly, n) => Some(n.unwrap_or(1)),
        (_, None | Some(1)) => None,
        (_, Some(_)) => {
            return Err(ApprovalError::Invalid {
                field: "recurrence.interval",
                reason: "only an HOURLY recurrence repeats every N; use 1 or leave it out".into(),
            });
        }
    };
    let spec = RecurrenceSpec {
        schedule_type,
        start_date: r.start_date,
        end_date: r.end_date,
        start_time: r.start_time,
        timezone: r.timezone.clone(),
        hourly_interval,
        days_of_week: r
            .days_of_week
            .iter()
            .map(|d| d.number_from_monday())
            .collect(),
        recurrence_date: r.day_of_month.map(u32::from),
    };
    scheduler::Recurrence::new(spec).map_err(|e| ApprovalError::Invalid {
        field: "recurrence",
        reason: e.to_string(),
    })
}

fn conflict(id: &str, reason: String) -> ApprovalError {
    ApprovalError::Conflict {
        id: id.to_owned(),
        reason,
    }
}

fn status_name(s: ScheduleStatus) -> &'static str {
    match s {
        ScheduleStatus::Unauthorized => "unauthorized",
        ScheduleStatus::Scheduled => "scheduled",
        ScheduleStatus::Launched => "launched",
        ScheduleStatus::Completed => "completed",
        ScheduleStatus::Failed => "failed",
        ScheduleStatus::PartiallyFailed => "partially failed",
        ScheduleStatus::Cancelled => "cancelled",
    }
}

/// 256 random bits from the operating system, as 64 hex digits for a URL.
fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The output of a workflow step on the redb store, whose operations never wait: the
/// step completes the first time it is polled.
fn at_once<T>(step: impl Future<Output = T>) -> T {
    let mut step = std::pin::pin!(step);
    let mut context = std::task::Context::from_waker(std::task::Waker::noop());
    match step.as_mut().poll(&mut context) {
        std::task::Poll::Ready(out) => out,
        // Unreachable: nothing in the redb store's operations returns `Pending`.
        std::task::Poll::Pending => unreachable!("a step on the redb store waited"),
    }
}
