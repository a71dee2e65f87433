//! Parley's session recorder (DESIGN.md §6).
//!
//! [`media`] turns the RTP packets of one received track into a file without transcoding:
//! Opus → Ogg Opus (RFC 7845), VP8 → IVF. It knows nothing about rooms or peer connections;
//! the network side feeds it packets with their arrival times.

pub mod media;
