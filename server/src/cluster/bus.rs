//! The cluster's bus over Redis streams: one stream per node
//! (`<prefix>:bus:<node>`), appended to with `XADD` by every other node and
//! read by its node with a blocking `XREAD`.
//!
//! Streams rather than pub/sub: a reader that falls behind is not cut off
//! (Redis closes a pub/sub client whose output buffer passes
//! `client-output-buffer-limit pubsub`, 32 MiB by default, and its
//! messages are gone); it reads on from where it was, within the stream's
//! length cap ([`MAX_LEN`] entries, trimmed approximately). One writer task
//! per node pipelines its appends in the order they were queued, so what a
//! node sends another arrives in order (docs/rules.md C7).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parley_signaling::{Bus, Hub};
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Entries a node's stream keeps at most (about; `MAXLEN ~`). At ~300 bytes
/// an entry, ~60 MiB: minutes of a saturated node's traffic.
const MAX_LEN: u64 = 200_000;
/// A stream nobody appends to goes away after this (a node that left).
const IDLE_EXPIRY_MS: u64 = 3_600_000;
/// How often a writer pushes back the expiry of a stream it appends to.
const EXPIRY_REFRESH: Duration = Duration::from_secs(300);
/// Entries read at most per `XREAD`.
const READ_COUNT: u64 = 1024;
/// How long one `XREAD` blocks (below the connection's response timeout).
const READ_BLOCK_MS: u64 = 1000;

/// One node's end of the bus: [`Bus::send`] queues for the writer task.
pub struct RedisBus {
    node: String,
    prefix: String,
    queue: mpsc::UnboundedSender<(String, Vec<u8>)>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBus").field("node", &self.node).field("prefix", &self.prefix).finish()
    }
}

fn stream(prefix: &str, node: &str) -> String {
    format!("{prefix}:bus:{node}")
}

impl RedisBus {
    /// Node `node`'s bus in the Redis behind `redis`, under keys starting
    /// with `prefix`; spawns the writer task (it ends when the bus is dropped).
    pub fn start(redis: ConnectionManager, prefix: impl Into<String>, node: impl Into<String>) -> Arc<RedisBus> {
        let (queue, rx) = mpsc::unbounded_channel();
        let prefix = prefix.into();
        tokio::spawn(write(redis, rx));
        Arc::new(RedisBus { node: node.into(), prefix, queue })
    }

    /// Reads this node's stream and hands every payload to `hub`, in order,
    /// until `stop` is cancelled. Starts at Redis's current time: what was
    /// sent to this node before it started is not its business. A Redis
    /// error is logged and the read retried (from where it was) after a
    /// short pause.
    pub async fn read(&self, mut redis: ConnectionManager, hub: Weak<Hub>, stop: CancellationToken) {
        let key = stream(&self.prefix, &self.node);
        let mut last = loop {
            match redis::cmd("TIME").query_async::<(u64, u64)>(&mut redis).await {
                Ok((secs, micros)) => break format!("{}-0", secs * 1000 + micros / 1000),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read Redis's time; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        };
        type Reply = Option<Vec<(String, Vec<(String, Vec<Vec<u8>>)>)>>;
        loop {
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT").arg(READ_COUNT).arg("BLOCK").arg(READ_BLOCK_MS).arg("STREAMS").arg(&key).arg(&last);
            let reply = tokio::select! {
                () = stop.cancelled() => return,
                reply = cmd.query_async::<Reply>(&mut redis) => reply,
            };
            match reply {
                Ok(streams) => {
                    let Some(hub) = hub.upgrade() else { return };
                    for (_, entries) in streams.unwrap_or_default() {
                        for (id, fields) in entries {
                            // Fields are `p <payload>`.
                            if let Some(payload) = fields.get(1) {
                                hub.on_bus(payload);
                            }
                            last = id;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the bus; retrying");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                }
            }
        }
    }
}

impl Bus for RedisBus {
    fn node(&self) -> &str {
        &self.node
    }

    fn send(&self, to: &str, payload: Vec<u8>) {
        let _ = self.queue.send((stream(&self.prefix, to), payload));
    }
}

/// The writer task: appends what was queued, a pipeline per batch, in order.
/// A stream's expiry is pushed back at most every [`EXPIRY_REFRESH`] (not
/// with every batch: at low load that would be one more command per
/// message). A batch Redis refused is logged and dropped (at most once: the
/// hub node is re-elected or kept, and clients resume or rejoin); its
/// streams' expiries are refreshed with the next batch (Redis may have
/// restarted empty).
async fn write(mut redis: ConnectionManager, mut rx: mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let mut batch = Vec::with_capacity(512);
    let mut refreshed: HashMap<String, Instant> = HashMap::new();
    while rx.recv_many(&mut batch, 512).await > 0 {
        let now = Instant::now();
        let mut pipe = redis::pipe();
        let mut keys: Vec<&str> = Vec::new();
        for (key, payload) in &batch {
            pipe.cmd("XADD").arg(key).arg("MAXLEN").arg("~").arg(MAX_LEN).arg("*").arg("p").arg(payload).ignore();
            let due = refreshed.get(key).is_none_or(|at| now.duration_since(*at) >= EXPIRY_REFRESH);
            if due && !keys.contains(&key.as_str()) {
                keys.push(key);
            }
        }
        for key in &keys {
            pipe.cmd("PEXPIRE").arg(key).arg(IDLE_EXPIRY_MS).ignore();
        }
        match pipe.query_async::<()>(&mut redis).await {
            Ok(()) => refreshed.extend(keys.into_iter().map(|k| (k.to_owned(), now))),
            Err(e) => {
                tracing::warn!(error = %e, messages = batch.len(), "cannot send on the bus; messages dropped");
                refreshed.clear();
            }
        }
        batch.clear();
    }
}
