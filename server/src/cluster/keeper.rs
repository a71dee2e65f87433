//! The lease keeper: one task per node that keeps the leases of the
//! sessions this node meters.

use std::sync::Arc;
use std::time::Duration;

use parley_metering::Meters;

use super::Leases;

/// Every `ttl / 3` of real time (Redis expires leases on its own clock),
/// extends this node's leases on every session it meters, and stops
/// metering the ones another node holds now (its lease lapsed and was
/// taken: the taker meters and settles it; issue 16). A Redis error is
/// logged and retried at the next beat; while Redis is away nobody can
/// take a lease, and a lease that lapsed meanwhile is taken back if nobody
/// else did. When `stop` resolves (after the shutdown's checkpoints, which
/// also stop the meters), gives up every lease it held at its last renewal,
/// so another node can take the sessions over at once.
pub async fn keep_leases(
    leases: Arc<dyn Leases>,
    meters: Arc<Meters>,
    ttl: Duration,
    stop: impl Future<Output = ()> + Send,
) {
    let mut beat = tokio::time::interval(ttl / 3);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut held = Vec::new();
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            () = &mut stop => break,
        }
        held = meters.sessions();
        match leases.renew(&held, ttl).await {
            Ok(lost) => {
                for session in lost {
                    tracing::warn!(session_id = %session, node = leases.node(), "lease taken by another node; no longer metered here");
                    meters.relinquish(&session);
                }
            }
            Err(e) => tracing::warn!(error = %e, sessions = held.len(), "cannot renew session leases"),
        }
    }
    held.extend(meters.sessions());
    held.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    held.dedup();
    for session in held {
        if let Err(e) = leases.release(&session).await {
            tracing::warn!(session_id = %session, error = %e, "cannot release the session lease; it lapses");
        }
    }
}
