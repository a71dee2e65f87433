//! Card chargebacks carried through (D5, D6): the operator is told when
//! one opens and when it closes (`chargeback.opened` / `chargeback.closed`
//! webhooks, once each), and the session's evidence is submitted to the
//! provider once, before the due date. Woken by the Stripe webhook route;
//! rescans every [`RESCAN`] of server time and retries a failed submission
//! after [`RETRY`].

use std::future::Future;
use std::time::Duration;

use parley_billing::{Billing, ChargebackRow, DisputeEvidence};
use parley_domain::Timestamp;
use parley_domain::protocol::rest::WebhookEventType;
use parley_domain::protocol::{Role, UserInfo};

use super::{bundle, sql};
use crate::kernel::worker::{self, Job};
use crate::kernel::{ApiError, AppState};
use crate::sessions::details::details;

/// How often the worker looks again without being woken (server time).
pub const RESCAN: Duration = Duration::from_secs(3600);

/// Delay before a failed provider submission is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

/// The longest Markdown evidence sent, in characters (Stripe allows
/// 150,000 for all fields together; the timeline is sent beside it).
pub const MAX_BUNDLE_CHARS: usize = 100_000;

/// The chargeback worker.
pub struct Chargebacks {
    state: AppState,
}

/// The identity the worker reads sessions with (a moderator's view).
fn platform() -> UserInfo {
    UserInfo {
        id: parley_domain::UserId::parse("parley").unwrap_or_else(|_| unreachable!("a valid id")),
        name: "Parley".into(),
        role: Role::Moderator,
    }
}

/// The evidence for chargeback `c`, from what Parley recorded of its
/// session (the dispute's bundle if one was opened), without recording
/// links.
pub async fn evidence_for(s: &AppState, c: &ChargebackRow) -> Result<DisputeEvidence, ApiError> {
    let me = platform();
    let mut text = String::new();
    let (log, service_date) = match details(s, &me, &c.session_id).await {
        Ok(mut session) => {
            let (chat, notes) = bundle::split_chat(&mut session);
            let pool = s.store.pool();
            let history = vec![
                sql::history(&pool, &c.seeker_id, "seeker").await?,
                sql::history(&pool, &c.consultant_id, "consultant").await?,
            ];
            let chargebacks: Vec<_> =
                s.billing.chargebacks_of(&c.session_id).await?.iter().map(bundle::chargeback).collect();
            let dispute = {
                let mut conn = pool.acquire().await.map_err(|e| ApiError::Internal(e.to_string()))?;
                let id: Option<String> = sqlx::query_scalar("SELECT id FROM disputes WHERE session_id = $1")
                    .bind(c.session_id.as_str())
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                match id {
                    Some(id) => sql::load(&mut conn, &id).await?,
                    None => None,
                }
            };
            let _ = std::fmt::Write::write_fmt(
                &mut text,
                format_args!("# Evidence for card dispute {} — session {}\n\n", c.id, c.session_id),
            );
            if let Some(d) = dispute {
                text.push_str(&format!(
                    "A dispute was opened on Parley by `{}` ({}), status {}{}.\n\n",
                    d.opened_by,
                    d.reason.as_str(),
                    d.status.as_str(),
                    d.decision.map(|x| format!(", decided: {}", x.as_str())).unwrap_or_default()
                ));
            }
            let parts = bundle::Parts {
                session: &session,
                chat: &chat,
                notes: &notes,
                recordings: &[],
                history: &history,
                chargebacks: &chargebacks,
            };
            bundle::evidence(&mut text, &parts);
            let date = bundle::utc(session.opened_at_ms).chars().take(10).collect::<String>();
            (bundle::activity_log(&session), date)
        }
        Err(e) => {
            tracing::warn!(session_id = %c.session_id, error = %e, "chargeback of a session without its record");
            text.push_str(&format!("Payment for Parley session {} (no session record).\n", c.session_id));
            (String::new(), String::new())
        }
    };
    let text: String = text.chars().take(MAX_BUNDLE_CHARS).collect();
    Ok(DisputeEvidence {
        dispute_id: c.id.clone(),
        uncategorized_text: text,
        service_date,
        product_description: format!(
            "A live video consultation on Parley (session {}) between seeker {} and consultant {}, billed by the \
             minute of both being present beyond a free window; the timeline below is the server's record.",
            c.session_id, c.seeker_id, c.consultant_id
        ),
        access_activity_log: log,
        customer_communication: None,
        service_documentation: None,
        idempotency_key: format!("evidence:{}", c.id),
    })
}

impl Chargebacks {
    async fn carry(&self, billing: &Billing, c: &ChargebackRow, now: Timestamp) -> Result<(), ApiError> {
        let s = &self.state;
        if !c.opened_notified {
            let key = format!("chargeback.opened:{}", c.id);
            s.webhooks
                .emit_once(&key, WebhookEventType::ChargebackOpened, &bundle::chargeback(c))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            billing.chargeback_notified(&c.id, false).await?;
        }
        if c.needs_evidence(now) {
            let evidence = evidence_for(s, c).await?;
            if billing.submit_chargeback_evidence(evidence).await? {
                tracing::info!(dispute = %c.id, session_id = %c.session_id, "chargeback evidence submitted");
            }
        }
        if c.outcome.is_some() && !c.closed_notified {
            let key = format!("chargeback.closed:{}", c.id);
            s.webhooks
                .emit_once(&key, WebhookEventType::ChargebackClosed, &bundle::chargeback(c))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            billing.chargeback_notified(&c.id, true).await?;
        }
        Ok(())
    }
}

impl Job for Chargebacks {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        let billing = self.state.billing.clone();
        let pending = match billing.chargebacks_pending().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "chargebacks: scan failed");
                return Some(now.plus(RETRY));
            }
        };
        let mut next = now.plus(RESCAN);
        for c in &pending {
            if let Err(e) = self.carry(&billing, c, now).await {
                tracing::warn!(dispute = %c.id, error = %e, "chargeback: will retry");
                next = next.min(now.plus(RETRY));
            }
        }
        Some(next)
    }
}

/// Runs the chargeback worker on `state`'s clock until `shutdown`,
/// woken by `state`'s disputes signal.
pub async fn run(state: AppState, shutdown: impl Future<Output = ()> + Send) {
    let (clock, wake) = (state.clock.clone(), state.disputes_wake.clone());
    worker::run(Chargebacks { state }, clock, wake, shutdown).await;
}
