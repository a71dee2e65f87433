//! One test binary for Parley's server through its public surfaces (REST, the signaling socket, the CLI), one module per area.
//! Each module was a test file of its own; one binary links once.

mod bookings;
mod call_gate;
mod chargebacks;
mod cluster;
mod cluster_faults;
mod cluster_hub;
mod common;
mod crash_windows;
mod directory;
mod disputes;
mod escrow;
#[path = "../../../billing/tests/billing/fake_stripe/mod.rs"]
mod fake_stripe;
mod files;
mod livekit;
mod load_call;
mod money;
mod outbox;
mod profile_races;
mod reconcile;
mod recording;
mod recording_rejoin;
mod recording_signaling;
mod rejoin;
mod restart;
mod reviews;
mod signaling;
mod signaling_edge;
mod store;
mod stripe;
mod turn;
mod webhooks;
mod webrtc_call;
mod ws_tickets;
