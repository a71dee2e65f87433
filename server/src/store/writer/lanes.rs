//! The writer's lanes: which queued writes may commit now, beside the
//! batches already committing, without reordering the writes about one
//! call, session or user.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

use super::{Job, MAX_BATCH, Write};
use crate::store::Backend;

/// Batches committed side by side at most on `backend`.
///
/// SQLite: 1. It has one writer at a time: a second transaction would only
/// wait for the first one's lock.
///
/// PostgreSQL: 4, each on a pooled connection of its own (of 16). With one
/// batch at a time the server waited on the database's round trips and
/// commits, the machine 75 % idle: 1,000 paid pairs at once were paired
/// into calls at 1,889 to 2,267 connections/s; with 4, 2,856 to 3,086 (2:
/// 2,530 to 2,821; 8: 3,017 to 3,113; 16: 2,601 to 2,704), alternating
/// fresh servers and databases (load-tests/README.md, "Twelfth run").
/// Batches side by side lock disjoint rows of calls, sessions and users
/// ([`keys`]); billing's statements of two batches may still wait on each
/// other's rows, and PostgreSQL ends a deadlock between them by failing
/// one batch, whose writes are then retried one by one.
pub(super) fn lanes(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 4,
    }
}

/// What a write is about, as hashes: the call, session or users whose rows
/// it writes (and locks). Writes with a key in common commit in queue
/// order, so the writes of one call or session are never reordered, and
/// batches committing side by side lock disjoint rows of these tables.
/// Billing's statements have none: each of billing's writers awaits its
/// statements before its next write. A collision of hashes only makes a
/// write wait.
pub(super) fn keys(write: &Write, hasher: &RandomState) -> Vec<u64> {
    let key = |kind: u8, id: &str| hasher.hash_one((kind, id));
    match write {
        Write::UsersSeen(users, _) => users.iter().map(|u| key(b'u', u.id.as_str())).collect(),
        Write::CreateCall(c) => vec![key(b'c', c.call_id.as_str()), key(b's', c.session_id.as_str())],
        Write::CallTransition(id, ..) => vec![key(b'c', id.as_str())],
        Write::CreateSession(s) | Write::Accept(s) => {
            vec![key(b's', s.session_id.as_str()), key(b'c', s.call_id.as_str())]
        }
        Write::SessionEvent(id, ..) | Write::MeterEvent(id, ..) | Write::Settlement(id, ..) => {
            vec![key(b's', id.as_str())]
        }
        Write::Statements(_) => Vec::new(),
    }
}

/// Takes from `waiting`, in order, up to [`MAX_BATCH`] writes that may
/// commit now: none with a key of a batch committing (`busy`) or of an
/// earlier write left waiting, so that per key the queue's order is kept.
pub(super) fn next_batch(waiting: &mut VecDeque<(Job, Vec<u64>)>, busy: &HashMap<u64, usize>) -> Vec<(Job, Vec<u64>)> {
    if busy.is_empty() {
        let n = waiting.len().min(MAX_BATCH);
        return waiting.drain(..n).collect();
    }
    let mut held = HashSet::new();
    let mut batch = Vec::new();
    let mut left = VecDeque::with_capacity(waiting.len());
    for (job, keys) in waiting.drain(..) {
        if batch.len() < MAX_BATCH && !keys.iter().any(|k| busy.contains_key(k) || held.contains(k)) {
            batch.push((job, keys));
        } else {
            held.extend(keys.iter().copied());
            left.push_back((job, keys));
        }
    }
    *waiting = left;
    batch
}
