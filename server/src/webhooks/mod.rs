//! Outgoing webhooks to the operator's platform (docs/protocol.md §14):
//! the delivery worker. Areas store events through
//! [`crate::store::outbox`]; this area delivers them, signed, with retries.

pub mod worker;

pub use worker::{
    DELIVERIES, MAX_ATTEMPTS, REQUEST_TIMEOUT, RETRY_BASE, RETRY_MAX, Webhooks, WebhooksError, backoff, sign,
};
