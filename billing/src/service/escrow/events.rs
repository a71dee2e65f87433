//! Escrow's announcements (E9): each change of an engagement or milestone
//! is handed to the server's [`EscrowEvents`] inside the transaction that
//! makes it, so its outgoing webhook commits with it (docs/protocol.md
//! §14.1) — never announced without the change, never lost after it.

use std::sync::Arc;

use super::{Billing, BillingError};

/// What changed (E9). The server turns each into one webhook event:
/// `engagement.funded`, `engagement.cancelled`, `milestone.submitted`,
/// `milestone.released`, `milestone.disputed`, `milestone.resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowChange {
    /// The engagement's charge succeeded: `funding` → `active` (E1).
    Funded,
    /// The engagement was cancelled; what was unreleased is being refunded (E6).
    Cancelled,
    /// The consultant submitted a milestone (E3).
    Submitted,
    /// A milestone was released to the consultant: approved by the seeker
    /// (`auto` false, E3) or on its own (`auto` true, E4).
    Released {
        /// Released by the escrow worker, nobody having answered (E4).
        auto: bool,
    },
    /// A party disputed a milestone (E5).
    Disputed,
    /// A moderator resolved a disputed milestone (E5).
    Resolved,
}

/// Where escrow's changes are announced. Set once with
/// [`Billing::on_escrow_change`]; without it nothing is announced.
#[async_trait::async_trait]
pub trait EscrowEvents: Send + Sync {
    /// Stores the announcement of `change` to `engagement` (and `milestone`,
    /// for milestone changes) on `conn`, the deciding transaction, after the
    /// change is written in it. An error rolls the change back.
    async fn changed(
        &self,
        conn: &mut sqlx::AnyConnection,
        engagement: &str,
        milestone: Option<&str>,
        change: EscrowChange,
    ) -> Result<(), BillingError>;

    /// The transaction holding one or more announcements committed (e.g.
    /// wake the delivery worker).
    fn committed(&self);
}

impl Billing {
    /// Announces escrow's changes through `events` from now on (E9). A
    /// second call is ignored.
    pub fn on_escrow_change(&self, events: Arc<dyn EscrowEvents>) {
        let _ = self.escrow_events.set(events);
    }

    /// Hands `change` to the announcer, if any, inside `conn`'s transaction.
    pub(super) async fn announce(
        &self,
        conn: &mut sqlx::AnyConnection,
        engagement: &str,
        milestone: Option<&str>,
        change: EscrowChange,
    ) -> Result<(), BillingError> {
        match self.escrow_events.get() {
            Some(events) => events.changed(conn, engagement, milestone, change).await,
            None => Ok(()),
        }
    }

    /// After a commit that held announcements.
    pub(super) fn announced(&self) {
        if let Some(events) = self.escrow_events.get() {
            events.committed();
        }
    }
}
