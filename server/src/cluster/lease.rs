//! Session leases: at most one node meters a live session at a time.
//!
//! A lease is a Redis key per session (`<prefix>:lease:session:<id>`) whose
//! value is the holding node's id, set with `NX` and a time-to-live in
//! milliseconds (`PX`), the single-instance lock of the Redis documentation
//! ("Distributed Locks with Redis"): only the holder extends or deletes it
//! (compare-and-set scripts), and a holder that stops renewing loses it
//! after the TTL. A lease alone cannot stop a holder that was paused past
//! its TTL from writing; the store's owner epoch does (the fencing token a
//! new holder takes with `SqlStore::claim_session`).

use std::time::Duration;

use async_trait::async_trait;
use parley_domain::SessionId;
use redis::aio::ConnectionManager;

/// Redis could not be asked (unreachable, or it answered an error).
#[derive(Debug, thiserror::Error)]
#[error("redis: {0}")]
pub struct LeaseError(#[from] pub redis::RedisError);

/// Who meters which live session, across the nodes of a cluster.
#[async_trait]
pub trait Leases: Send + Sync + 'static {
    /// This node's id, the value of the leases it holds.
    fn node(&self) -> &str;

    /// Takes `session`'s lease for `ttl`, or extends it if this node holds
    /// it already. `Ok(false)`: another node holds it.
    ///
    /// # Errors
    ///
    /// [`LeaseError`] when Redis cannot be asked; the caller must then act
    /// as if it did not get the lease.
    async fn acquire(&self, session: &SessionId, ttl: Duration) -> Result<bool, LeaseError>;

    /// Extends this node's leases on `sessions` by `ttl` from now (taking
    /// the ones nobody holds); returns those another node holds now.
    ///
    /// # Errors
    ///
    /// [`LeaseError`] when Redis cannot be asked (no lease was extended).
    async fn renew(&self, sessions: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, LeaseError>;

    /// Gives `session`'s lease up, if this node holds it.
    ///
    /// # Errors
    ///
    /// [`LeaseError`] when Redis cannot be asked (the lease then lapses
    /// after its TTL).
    async fn release(&self, session: &SessionId) -> Result<(), LeaseError>;
}

/// A node on its own (no `REDIS_URL`): every lease is its own. Restarts are
/// fenced by the store's owner epoch alone.
#[derive(Debug, Clone)]
pub struct LocalLeases {
    node: String,
}

impl LocalLeases {
    /// The leases of the one node `node`.
    pub fn new(node: impl Into<String>) -> LocalLeases {
        LocalLeases { node: node.into() }
    }
}

#[async_trait]
impl Leases for LocalLeases {
    fn node(&self) -> &str {
        &self.node
    }

    async fn acquire(&self, _: &SessionId, _: Duration) -> Result<bool, LeaseError> {
        Ok(true)
    }

    async fn renew(&self, _: &[SessionId], _: Duration) -> Result<Vec<SessionId>, LeaseError> {
        Ok(Vec::new())
    }

    async fn release(&self, _: &SessionId) -> Result<(), LeaseError> {
        Ok(())
    }
}

/// Take the lease if free, extend it if ours; 1 if ours now, else 0.
const ACQUIRE: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0";

/// ACQUIRE for each key; the 1-based indices of the keys held by others.
const RENEW: &str = r"
local lost = {}
for i, key in ipairs(KEYS) do
  local holder = redis.call('GET', key)
  if holder == false or holder == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost";

/// Delete the lease only if ours (also the hub lease's, `hub_node`).
pub(crate) const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Leases in Redis, shared by every node using the same server and prefix.
#[derive(Clone)]
pub struct RedisLeases {
    node: String,
    prefix: String,
    redis: ConnectionManager,
    acquire: redis::Script,
    renew: redis::Script,
    release: redis::Script,
}

impl std::fmt::Debug for RedisLeases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeases").field("node", &self.node).field("prefix", &self.prefix).finish()
    }
}

impl RedisLeases {
    /// The leases of node `node` in the Redis behind `redis`, under keys
    /// starting with `prefix` (one prefix per cluster).
    pub fn new(redis: ConnectionManager, prefix: impl Into<String>, node: impl Into<String>) -> RedisLeases {
        RedisLeases {
            node: node.into(),
            prefix: prefix.into(),
            redis,
            acquire: redis::Script::new(ACQUIRE),
            renew: redis::Script::new(RENEW),
            release: redis::Script::new(RELEASE),
        }
    }

    fn key(&self, session: &SessionId) -> String {
        format!("{}:lease:session:{}", self.prefix, session.as_str())
    }
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Leases for RedisLeases {
    fn node(&self) -> &str {
        &self.node
    }

    async fn acquire(&self, session: &SessionId, ttl: Duration) -> Result<bool, LeaseError> {
        let mut redis = self.redis.clone();
        let got: i64 =
            self.acquire.key(self.key(session)).arg(&self.node).arg(millis(ttl)).invoke_async(&mut redis).await?;
        Ok(got == 1)
    }

    async fn renew(&self, sessions: &[SessionId], ttl: Duration) -> Result<Vec<SessionId>, LeaseError> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut redis = self.redis.clone();
        let mut call = self.renew.prepare_invoke();
        for session in sessions {
            call.key(self.key(session));
        }
        let lost: Vec<usize> = call.arg(&self.node).arg(millis(ttl)).invoke_async(&mut redis).await?;
        Ok(lost.into_iter().filter_map(|i| sessions.get(i.checked_sub(1)?).cloned()).collect())
    }

    async fn release(&self, session: &SessionId) -> Result<(), LeaseError> {
        let mut redis = self.redis.clone();
        let _: i64 = self.release.key(self.key(session)).arg(&self.node).invoke_async(&mut redis).await?;
        Ok(())
    }
}
