//! Escrow's outgoing webhooks (E9, docs/protocol.md §14.3):
//! `engagement.funded`, `engagement.cancelled`, `milestone.submitted`,
//! `milestone.released`, `milestone.disputed`, `milestone.resolved`. Billing
//! hands each change to [`EscrowWebhooks`] inside the transaction that makes
//! it; the event is stored there, once per engagement or milestone.

use std::sync::Arc;

use parley_billing::{BillingError, EscrowChange, EscrowEvents};
use parley_domain::protocol::rest::{EngagementEventData, WebhookEventType};

use super::sql;
use crate::store::outbox::{NewEvent, Outbox, insert_event};

/// Stores escrow's webhook events in billing's deciding transactions and
/// wakes the delivery worker after they commit.
pub struct EscrowWebhooks {
    clock: Arc<dyn parley_domain::Clock>,
    outbox: Arc<Outbox>,
}

impl EscrowWebhooks {
    /// Events created at `clock`'s time, delivered by `outbox`'s worker.
    pub fn new(clock: Arc<dyn parley_domain::Clock>, outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(EscrowWebhooks { clock, outbox })
    }
}

/// The event type of `change`.
pub fn event_type(change: EscrowChange) -> WebhookEventType {
    match change {
        EscrowChange::Funded => WebhookEventType::EngagementFunded,
        EscrowChange::Cancelled => WebhookEventType::EngagementCancelled,
        EscrowChange::Submitted => WebhookEventType::MilestoneSubmitted,
        EscrowChange::Released { .. } => WebhookEventType::MilestoneReleased,
        EscrowChange::Disputed => WebhookEventType::MilestoneDisputed,
        EscrowChange::Resolved => WebhookEventType::MilestoneResolved,
    }
}

#[async_trait::async_trait]
impl EscrowEvents for EscrowWebhooks {
    async fn changed(
        &self,
        conn: &mut sqlx::AnyConnection,
        engagement: &str,
        milestone: Option<&str>,
        change: EscrowChange,
    ) -> Result<(), BillingError> {
        let kind = event_type(change);
        let data = EngagementEventData {
            milestone_id: milestone.map(str::to_owned),
            auto: match change {
                EscrowChange::Released { auto } => Some(auto),
                _ => None,
            },
            engagement: sql::load(conn, engagement)
                .await
                .map_err(|e| BillingError::Data(format!("{e:?}")))?
                .ok_or_else(|| BillingError::Data(format!("engagement {engagement} vanished")))?,
        };
        // Each engagement is funded and cancelled once, each milestone
        // submitted, released, disputed and resolved once: one event each.
        let key = format!("{}:{}", kind.as_str(), milestone.unwrap_or(engagement));
        let event =
            NewEvent::new(kind, &data, self.clock.now(), Some(key)).map_err(|e| BillingError::Data(e.to_string()))?;
        insert_event(conn, &event).await?;
        Ok(())
    }

    fn committed(&self) {
        self.outbox.wake();
    }
}
