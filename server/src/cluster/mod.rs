//! Several nodes as one service (issue 16): what a node must agree on with
//! the others. Today: who meters each live session ([`lease`]). A node with
//! `REDIS_URL` set takes a lease in Redis on every session it meters and
//! keeps it alive; the store's owner epoch (`SqlStore::claim_session`)
//! fences off a node that lost its lease but still runs. Without
//! `REDIS_URL` the node is alone and every lease is its own
//! ([`lease::LocalLeases`]).

mod keeper;
pub mod lease;

pub use keeper::keep_leases;
pub use lease::{LeaseError, Leases, LocalLeases, RedisLeases};
