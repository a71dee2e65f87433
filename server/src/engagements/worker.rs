//! The escrow worker (E4): releases submitted milestones left unanswered
//! past their auto-release time, and retries escrow movements the provider
//! failed, sleeping on the server clock until the next is due (woken when a
//! milestone is submitted).

use std::sync::Arc;

use parley_billing::Billing;
use parley_domain::Timestamp;

use crate::kernel::worker::Job;

/// The escrow worker as a [`Job`]; run it with
/// [`crate::kernel::worker::run`] on the state's `escrow_wake`. Every pass
/// is conditional updates under the engagements' locks, so several nodes
/// may run it.
pub struct EscrowWorker(pub Arc<Billing>);

impl Job for EscrowWorker {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        match self.0.escrow_pass(now).await {
            Ok(next) => Some(next),
            Err(e) => {
                tracing::error!(error = %e, "escrow pass failed");
                Some(now.plus(std::time::Duration::from_secs(1)))
            }
        }
    }
}
