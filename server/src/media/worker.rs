//! The participant poll (L1): every `PARLEY_LIVEKIT_POLL_SECS` of server
//! time while LiveKit sessions are open, `ListParticipants` of each room,
//! so a lost `participant_left` cannot keep a session billing.

use std::future::Future;
use std::sync::Arc;

use parley_domain::Timestamp;

use super::livekit::Livekit;
use crate::kernel::worker::{Job, run};

struct Poll(Arc<Livekit>);

impl Job for Poll {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        self.0.poll_once(now).await
    }
}

/// Runs the poll until `shutdown`; woken when a session opens.
pub async fn run_poll(livekit: Arc<Livekit>, shutdown: impl Future<Output = ()>) {
    let (clock, wake) = (livekit.clock.clone(), livekit.poll.clone());
    run(Poll(livekit), clock, wake, shutdown).await;
}
