//! Several nodes as one service (issue 16; docs/rules.md C6, C7). With
//! `REDIS_URL` set, the nodes elect one *hub node* ([`hub_node`]) that runs
//! the signaling hub's core and meters every live session; every node
//! accepts sockets and forwards them to it over the [`bus`] (Redis
//! streams). Each metered session has a lease ([`lease`]) kept alive by
//! its node, and the store's owner epoch (`SqlStore::claim_session`)
//! fences off a node that lost its lease but still runs; the hub node
//! copies its clients' links to the [`journal`], so the next one resumes
//! them. Without
//! `REDIS_URL` the node is alone: it is the hub node and every lease is its
//! own ([`lease::LocalLeases`]).

pub mod bus;
pub mod hub_node;
pub mod journal;
mod keeper;
pub mod lease;

pub use bus::RedisBus;
pub use hub_node::{Election, HubLease};
pub use journal::RedisJournal;
pub use keeper::keep_leases;
pub use lease::{LeaseError, Leases, LocalLeases, RedisLeases};
