//! Where signaling, the meter and billing meet (DESIGN.md §1: they never
//! import each other). Signaling reports room events through
//! [`MeterHooks`] and asks [`BillingGate`] for the hold before ringing; the
//! meter sends notices and ends sessions (with their bill) through
//! [`HubSink`].

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parley_billing::{Billing, Held};
use parley_domain::protocol::rest::PriceModel;
use parley_domain::protocol::{CallEndReason, MeterStatus, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{SessionId, Timestamp};
use parley_metering::{MeterConfig, MeterEnd, MeterSettings, MeterSink, Meters, Price};
use parley_signaling::store::{CallRecord, SessionHooks, SessionRecord};
use parley_signaling::{CallGate, GateRefusal, Hub};

/// The meter's view of signaling's rooms.
pub struct MeterHooks(pub Arc<Meters>);

impl SessionHooks for MeterHooks {
    fn opened(&self, session: &SessionRecord, at: Timestamp) {
        self.0.opened(&session.session_id, at);
    }

    fn joined(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        self.0.joined(session_id, role, at);
    }

    fn absent(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        self.0.absent(session_id, role, at);
    }

    fn status(&self, session_id: &SessionId, at: Timestamp) -> Option<MeterStatus> {
        self.0.status(session_id, at)
    }

    fn ending(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<Role>,
        at: Timestamp,
    ) -> Option<SessionBill> {
        self.0.ending(session_id, reason, by, at)
    }
}

/// The hub as the meter's sink. Weak: the hub owns the hooks that own the
/// meters.
pub struct HubSink(pub Weak<Hub>);

#[async_trait]
impl MeterSink for HubSink {
    fn send(&self, session_id: &SessionId, msg: ServerMessage) {
        if let Some(hub) = self.0.upgrade() {
            hub.notify_session(session_id, &msg);
        }
    }

    async fn end(&self, session_id: &SessionId, end: &MeterEnd) -> bool {
        match self.0.upgrade() {
            Some(hub) => hub.end_metered_session(session_id, end.reason, end.bill).await,
            None => false,
        }
    }
}

/// The meter configuration of a session with a hold (DESIGN.md M7): a
/// fixed price ends at the instant-call maximum of billable time; a
/// per-minute one when its hold (rate × that maximum, beyond the free
/// window) is used up.
pub fn meter_config(settings: &MeterSettings, held: &Held) -> MeterConfig {
    let amount = held.price.amount;
    match held.price.model {
        PriceModel::Fixed => {
            settings.config(Price::Fixed { amount }, Some(Duration::from_secs(u64::from(held.max_minutes) * 60)))
        }
        PriceModel::PerMinute => settings.config(Price::PerMinute { rate: amount, hold: held.hold }, None),
    }
}

/// The payment seam: places the hold before the consultant is rung (B2)
/// and tells the meter the session's price.
pub struct BillingGate {
    /// Billing.
    pub billing: Arc<Billing>,
    /// The meters.
    pub meters: Arc<Meters>,
    /// Recording consent, checked before the hold for calls asking to be
    /// recorded (DESIGN.md §6).
    pub consent: crate::store::consent::Consent,
}

#[async_trait]
impl CallGate for BillingGate {
    async fn before_ring(&self, call: &CallRecord, payment_method: Option<&str>) -> Result<(), GateRefusal> {
        if call.recording {
            self.consent
                .check_request(&call.seeker_id, call.seeker_premium, &call.consultant_id)
                .await
                .map_err(|(code, message)| GateRefusal { code, message })?;
        }
        let held = self
            .billing
            .place_hold(&call.session_id, call.call_id.as_str(), &call.seeker_id, &call.consultant_id, payment_method)
            .await;
        match held {
            Ok(None) => Ok(()),
            Ok(Some(h)) => {
                let cfg = meter_config(self.meters.settings(), &h);
                self.meters.expect(&call.session_id, cfg);
                Ok(())
            }
            Err(refusal) => {
                let code = refusal.code();
                tracing::info!(call_id = %call.call_id, code = code.as_str(), reason = %refusal, "hold refused");
                Err(GateRefusal { code, message: refusal.to_string() })
            }
        }
    }

    async fn call_unanswered(&self, call: &CallRecord, reason: CallEndReason) {
        self.meters.forget(&call.session_id);
        if let Err(e) = self.billing.call_unanswered(&call.session_id, reason.as_str()).await {
            tracing::error!(call_id = %call.call_id, error = %e, "failed to queue the hold's release");
        }
    }
}
