//! Outgoing webhooks to the operator's platform.
