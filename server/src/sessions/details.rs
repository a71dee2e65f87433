//! A session's details as `GET /v1/sessions/{id}` and the recap show
//! them: state, billable seconds, outcome, hold, capture, fee, payout,
//! refunds, ledger and timeline.

use parley_domain::SessionId;
use parley_domain::protocol::rest::{SessionDetails, TimelineItem};
use parley_domain::protocol::{ErrorCode, Outcome, Role, UserInfo};
use parley_signaling::Store;

use crate::kernel::{ApiError, AppState};

/// Session `id` as `me` may see it: its participants and moderators;
/// 404 `unknown_session`, 403 `forbidden` for anyone else.
pub async fn details(s: &AppState, me: &UserInfo, id: &SessionId) -> Result<SessionDetails, ApiError> {
    let id = id.clone();
    let Some(stored) = s.store.session(&id).await? else {
        return Err(ApiError::NotFound(ErrorCode::UnknownSession, format!("no session {id}")));
    };
    let r = &stored.record;
    if me.role != Role::Moderator && me.id != r.seeker_id && me.id != r.consultant_id {
        return Err(ApiError::Forbidden(ErrorCode::Forbidden, format!("you are not a participant of session {id}")));
    }
    let settlement = s.billing.settlement(&id).await?;
    let ledger = s.billing.session_ledger(&id).await?;
    let sum = |kind: &str| {
        let mut items = ledger.iter().filter(|l| l.kind == kind).map(|l| l.amount);
        let first = items.next()?;
        items.try_fold(first, |a, b| a.checked_add(b).ok())
    };
    let billable_secs = match &settlement {
        Some(st) => st.billable_secs,
        None => s.meters.status(&id, s.clock.now()).map_or(0, |m| m.billable_secs),
    };
    let mut timeline: Vec<TimelineItem> = s
        .store
        .session_timeline(&id)
        .await?
        .into_iter()
        .map(|t| TimelineItem { at_ms: t.at.unix_millis(), kind: t.kind, user_id: t.user_id, detail: t.detail })
        .collect();
    timeline.extend(s.store.meter_timeline(&id).await?);
    timeline.sort_by_key(|t| t.at_ms);
    let payout = match (sum("earnings"), sum("earnings_reversal")) {
        (Some(e), Some(back)) => Some(parley_domain::Money::new(e.amount_minor - back.amount_minor, e.currency)),
        (e, _) => e,
    };
    Ok(SessionDetails {
        session_id: r.session_id.clone(),
        call_id: r.call_id.clone(),
        seeker_id: r.seeker_id.clone(),
        consultant_id: r.consultant_id.clone(),
        state: if stored.ended_at.is_some() { "ended" } else { "open" }.into(),
        opened_at_ms: r.opened_at.unix_millis(),
        ended_at_ms: stored.ended_at.map(|t| t.unix_millis()),
        end_reason: stored.end_reason.clone(),
        billable_secs,
        outcome: settlement.as_ref().map(|st| if st.outcome == "charged" { Outcome::Charged } else { Outcome::Free }),
        settlement_status: settlement.as_ref().map(|st| st.status.clone()),
        hold: s.billing.hold(&id).await?,
        captured: sum("capture"),
        fee: sum("fee"),
        payout,
        refunded: sum("refund"),
        ledger,
        timeline,
    })
}
