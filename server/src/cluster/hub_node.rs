//! Which node of a cluster runs the hub core (docs/rules.md C7): the holder
//! of one Redis lease, `<prefix>:hub` (`SET PX`, taken only when free,
//! extended only by its holder, like the session leases). Every node runs
//! [`elect`]: every `ttl / 3` it takes or extends the lease, reads who holds
//! it and tells its [`Hub`]. The node that takes it re-opens the open
//! sessions first (their rooms and meters, from the last checkpoints), then
//! serves; a node that loses it (another holds it, or it could not extend
//! it for a whole `ttl`) forgets its rooms and links and stops metering.
//! An edge that cannot read the lease for a whole `ttl` forgets the hub
//! node too: Redis is away, and nothing it forwards would arrive.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parley_domain::SessionId;
use parley_signaling::{Hub, HubChange};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::lease::RELEASE;
use crate::recovery::Recovery;

/// Take the lease if free, extend it if ours; answer the holder.
const HOLD: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return ARGV[1]
end
return holder";

/// The hub lease of one node.
#[derive(Clone)]
pub struct HubLease {
    redis: ConnectionManager,
    key: String,
    node: String,
}

impl std::fmt::Debug for HubLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubLease").field("key", &self.key).field("node", &self.node).finish()
    }
}

impl HubLease {
    /// Node `node`'s view of the hub lease under `prefix`.
    pub fn new(redis: ConnectionManager, prefix: &str, node: impl Into<String>) -> HubLease {
        HubLease { redis, key: format!("{prefix}:hub"), node: node.into() }
    }

    /// Takes or extends the lease for `ttl`; returns who holds it now.
    ///
    /// # Errors
    ///
    /// Redis could not be asked.
    pub async fn hold(&self, ttl: Duration) -> Result<String, redis::RedisError> {
        let mut redis = self.redis.clone();
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::Script::new(HOLD).key(&self.key).arg(&self.node).arg(ms).invoke_async(&mut redis).await
    }

    /// Gives the lease up if this node holds it.
    ///
    /// # Errors
    ///
    /// Redis could not be asked (the lease then lapses after its TTL).
    pub async fn release(&self) -> Result<(), redis::RedisError> {
        let mut redis = self.redis.clone();
        let _: i64 = redis::Script::new(RELEASE).key(&self.key).arg(&self.node).invoke_async(&mut redis).await?;
        Ok(())
    }
}

/// This node's part of the election of the hub node.
pub struct Election {
    lease: HubLease,
    recovery: Recovery,
    ttl: Duration,
    /// When the lease was last taken or extended (or read held by another).
    extended: Instant,
    /// Sessions another node still held when this one took over.
    left: HashSet<SessionId>,
}

impl Election {
    /// The election of `lease`'s node, whose lease lasts `ttl`; `recovery`
    /// re-opens the open sessions when it becomes the hub node.
    pub fn new(lease: HubLease, recovery: Recovery, ttl: Duration) -> Election {
        Election { lease, recovery, ttl, extended: Instant::now(), left: HashSet::new() }
    }

    /// One beat: takes or extends the lease, learns who holds it, and
    /// acts on a change (re-open the sessions before serving as the hub
    /// node; forget and stop metering when no longer it); retries the
    /// sessions whose lease another node still held.
    pub async fn beat(&mut self) {
        let hub: &Arc<Hub> = &self.recovery.hub;
        let holder = match self.lease.hold(self.ttl).await {
            Ok(holder) => {
                self.extended = Instant::now();
                Some(holder)
            }
            Err(e) => {
                tracing::warn!(error = %e, node = %self.lease.node, "cannot hold or read the hub lease");
                // Whoever holds it keeps it until it lapses. A node that
                // could not read it for a whole TTL must assume it lapsed:
                // a hub node steps down (its meters checkpoint and stop),
                // an edge closes what it forwarded, and both refuse new
                // sockets until a hub node is known again.
                if self.extended.elapsed() < self.ttl {
                    return;
                }
                None
            }
        };
        let me = holder.as_deref() == Some(self.lease.node.as_str());
        if me && !hub.is_hub_node() {
            // Re-open the sessions before anyone is served here.
            match self.recovery.run(None).await {
                Ok(rest) => self.left = rest.into_iter().collect(),
                Err(e) => tracing::error!(error = %e, "cannot re-open the open sessions; retried"),
            }
        }
        match hub.set_hub_node(holder) {
            HubChange::Promoted => tracing::info!(node = %self.lease.node, "this node runs the hub now"),
            HubChange::Demoted => {
                self.left.clear();
                let meters = &self.recovery.meters;
                let sessions = meters.sessions();
                let drained = meters.drain().await;
                tracing::warn!(node = %self.lease.node, sessions = drained, "this node no longer runs the hub");
                for session in sessions {
                    let _ = self.recovery.leases.release(&session).await;
                }
            }
            HubChange::Moved | HubChange::Same => {}
        }
        if hub.is_hub_node() && !self.left.is_empty() {
            match self.recovery.run(Some(&self.left)).await {
                Ok(rest) => self.left = rest.into_iter().collect(),
                Err(e) => tracing::error!(error = %e, "cannot re-open the open sessions; retried"),
            }
        }
    }

    /// Beats every `ttl / 3` (real time: Redis expires the lease on its own
    /// clock) until `stop` is cancelled, then gives the lease up if this
    /// node holds it (after the server's drain: another node takes over at
    /// its next beat).
    pub async fn run(mut self, stop: CancellationToken) {
        let mut beat = tokio::time::interval(self.ttl / 3);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat.tick().await; // the first tick is now: `build` has just beaten
        loop {
            tokio::select! {
                _ = beat.tick() => self.beat().await,
                () = stop.cancelled() => break,
            }
        }
        if self.recovery.hub.is_hub_node()
            && let Err(e) = self.lease.release().await
        {
            tracing::warn!(error = %e, "cannot release the hub lease; it lapses");
        }
    }
}
