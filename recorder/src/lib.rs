//! Parley's session recorder (DESIGN.md §6).
//!
//! [`media`] turns the RTP packets of one received track into a file without transcoding:
//! Opus → Ogg Opus (RFC 7845), VP8 → IVF. It knows nothing about rooms or peer connections;
//! the network side feeds it packets with their arrival times.
//!
//! [`service`] is the network side: a signaling client with the `recorder`
//! role that joins the rooms it is assigned, offers each participant a
//! receive-only peer connection, feeds [`media`], and hands finished
//! recordings to a [`service::RecordingSink`]. It runs inside the server
//! (the embedded default) or as its own process (`parley recorder`).

pub mod media;
pub mod service;
