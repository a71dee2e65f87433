//! The links' journal in Redis (issue 16; `parley_signaling::journal`):
//! the hub node copies each seeker's and consultant's link there, so that
//! the next hub node resumes it after a crash or a drain.
//!
//! Per link, keyed by the SHA-256 of its resume token (the token itself is
//! a secret and never stored):
//! - `<prefix>:link:<hash>`, a hash: `user` (the `UserInfo` as JSON),
//!   `premium` and `available` (`0`/`1`), `term` (the hub core that wrote
//!   it last);
//! - `<prefix>:replay:<hash>`, a stream of the numbered messages (fields
//!   `s` = seq, `m` = the message as sent), trimmed to about the replay
//!   buffer's length (`MAXLEN ~`).
//!
//! One writer task pipelines what the links queue, in order (a link queues
//! under its own lock, so its messages are appended in `seq` order). Both
//! keys expire [`EXPIRY`] after the last refresh (at most every
//! [`EXPIRY_REFRESH`]): a link unused that long is not resumed; the
//! client rejoins. Redis commands per journaled message: one `XADD`
//! (pipelined), plus a refresh per link at most every five minutes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;
use parley_domain::protocol::UserInfo;
use parley_signaling::{JournalError, JournaledLink, LinkJournal};
use redis::aio::ConnectionManager;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

/// How long a journaled link outlives its last refresh.
const EXPIRY: Duration = Duration::from_secs(3600);
/// How often the writer pushes back a link's expiry while it is written to.
const EXPIRY_REFRESH: Duration = Duration::from_secs(300);
/// Operations the writer pipelines at most per round trip.
const BATCH: usize = 512;

/// One queued write (a link closed on purpose is deleted).
#[derive(Debug)]
enum Op {
    Opened { hash: Arc<str>, user: String, premium: bool, term: String },
    Appended { hash: Arc<str>, seq: u64, text: Utf8Bytes },
    Presence { hash: Arc<str>, available: bool },
    Closed { hash: Arc<str> },
}

/// The journal of one node's links, in the Redis behind a connection.
pub struct RedisJournal {
    prefix: String,
    /// Messages read back per link at most (the replay buffer's length).
    capacity: usize,
    redis: ConnectionManager,
    queue: mpsc::UnboundedSender<Op>,
}

impl std::fmt::Debug for RedisJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisJournal").field("prefix", &self.prefix).field("capacity", &self.capacity).finish()
    }
}

/// The SHA-256 of a resume token, hex.
fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn link_key(prefix: &str, hash: &str) -> String {
    format!("{prefix}:link:{hash}")
}

fn replay_key(prefix: &str, hash: &str) -> String {
    format!("{prefix}:replay:{hash}")
}

impl RedisJournal {
    /// A journal under keys starting with `prefix`, keeping about
    /// `capacity` messages per link (the replay buffer's length); spawns
    /// the writer task (it ends when the journal is dropped).
    pub fn start(redis: ConnectionManager, prefix: impl Into<String>, capacity: usize) -> RedisJournal {
        let prefix = prefix.into();
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(write(redis.clone(), prefix.clone(), capacity.max(1), rx));
        RedisJournal { prefix, capacity: capacity.max(1), redis, queue }
    }
}

#[async_trait]
impl LinkJournal for RedisJournal {
    /// The SHA-256 of the token, hex.
    fn key(&self, token: &str) -> Arc<str> {
        hash(token).into()
    }

    fn opened(&self, key: &Arc<str>, user: &UserInfo, premium: bool, term: &str) {
        let user = serde_json::to_string(user).expect("a user serialises");
        let _ = self.queue.send(Op::Opened { hash: key.clone(), user, premium, term: term.to_owned() });
    }

    fn appended(&self, key: &Arc<str>, seq: u64, text: &Utf8Bytes) {
        let _ = self.queue.send(Op::Appended { hash: key.clone(), seq, text: text.clone() });
    }

    fn presence(&self, key: &Arc<str>, available: bool) {
        let _ = self.queue.send(Op::Presence { hash: key.clone(), available });
    }

    fn closed(&self, key: &Arc<str>) {
        let _ = self.queue.send(Op::Closed { hash: key.clone() });
    }

    async fn load(&self, token: &str) -> Result<Option<JournaledLink>, JournalError> {
        let hash = hash(token);
        let mut redis = self.redis.clone();
        type Entries = Vec<(String, HashMap<String, String>)>;
        let (fields, entries): (HashMap<String, String>, Entries) = redis::pipe()
            .cmd("HGETALL")
            .arg(link_key(&self.prefix, &hash))
            .cmd("XREVRANGE")
            .arg(replay_key(&self.prefix, &hash))
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(self.capacity)
            .query_async(&mut redis)
            .await
            .map_err(|e| JournalError(e.to_string()))?;
        let Some(user) = fields.get("user") else { return Ok(None) };
        let user: UserInfo = serde_json::from_str(user).map_err(|e| JournalError(format!("user: {e}")))?;
        let mut messages = Vec::with_capacity(entries.len());
        for (_, mut entry) in entries.into_iter().rev() {
            let seq = entry.get("s").and_then(|s| s.parse::<u64>().ok());
            match (seq, entry.remove("m")) {
                (Some(seq), Some(text)) => messages.push((seq, text)),
                _ => return Err(JournalError("a replay entry without `s` or `m`".into())),
            }
        }
        Ok(Some(JournaledLink {
            user,
            term: fields.get("term").cloned().unwrap_or_default(),
            premium: fields.get("premium").is_some_and(|v| v == "1"),
            available: fields.get("available").is_some_and(|v| v == "1"),
            messages,
        }))
    }
}

/// The writer task: what was queued, a pipeline per batch, in order. A
/// batch Redis refused is logged and dropped (those links' resumes after a
/// hub node change then fail and the clients rejoin); the expiries of its
/// keys are set again with their next write.
async fn write(mut redis: ConnectionManager, prefix: String, capacity: usize, mut rx: mpsc::UnboundedReceiver<Op>) {
    let mut batch = Vec::with_capacity(BATCH);
    // Key → when its expiry was last pushed back.
    let mut refreshed: HashMap<String, Instant> = HashMap::new();
    let expiry_ms = EXPIRY.as_millis() as u64;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let now = Instant::now();
        refreshed.retain(|_, at| now.duration_since(*at) < EXPIRY_REFRESH);
        let mut pipe = redis::pipe();
        let mut due: HashSet<String> = HashSet::new();
        for op in &batch {
            let key = match op {
                Op::Opened { hash, user, premium, term } => {
                    let premium = if *premium { "1" } else { "0" };
                    let key = link_key(&prefix, hash);
                    pipe.cmd("HSET").arg(&key).arg("user").arg(user).arg("premium").arg(premium).arg("term").arg(term);
                    pipe.ignore();
                    pipe.cmd("HSETNX").arg(&key).arg("available").arg("0").ignore();
                    key
                }
                Op::Appended { hash, seq, text } => {
                    let key = replay_key(&prefix, hash);
                    pipe.cmd("XADD")
                        .arg(&key)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(capacity)
                        .arg("*")
                        .arg("s")
                        .arg(seq)
                        .arg("m")
                        .arg(text.as_str())
                        .ignore();
                    key
                }
                Op::Presence { hash, available } => {
                    let available = if *available { "1" } else { "0" };
                    let key = link_key(&prefix, hash);
                    pipe.cmd("HSET").arg(&key).arg("available").arg(available).ignore();
                    key
                }
                Op::Closed { hash } => {
                    pipe.cmd("DEL").arg(link_key(&prefix, hash)).arg(replay_key(&prefix, hash)).ignore();
                    continue;
                }
            };
            if !refreshed.contains_key(&key) {
                due.insert(key);
            }
        }
        for key in &due {
            pipe.cmd("PEXPIRE").arg(key).arg(expiry_ms).ignore();
        }
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) => refreshed.extend(due.into_iter().map(|key| (key, now))),
            Err(e) => {
                tracing::warn!(error = %e, writes = batch.len(), "cannot write the link journal; writes dropped");
                refreshed.clear();
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_stored_by_their_hash_only() {
        let h = hash("3f1c0c1d2e");
        assert_eq!(h.len(), 64);
        assert!(!h.contains("3f1c0c1d2e"));
        assert_eq!(h, hash("3f1c0c1d2e"), "the same token, the same key");
        assert_ne!(h, hash("3f1c0c1d2f"));
    }
}
