//! The media backend's settings (`PARLEY_MEDIA`, `LIVEKIT_*`; issue 18).

use std::time::Duration;

use super::{ConfigError, Raw};

/// The LiveKit settings read from the environment as is (no `PARLEY_`).
pub(super) const RAW_LIVEKIT_KEYS: [&str; 3] = ["livekit_url", "livekit_api_key", "livekit_api_secret"];

/// Where sessions' media runs (`PARLEY_MEDIA`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Media {
    /// `p2p`, the default: media flows peer to peer; the signaling room's
    /// joins and drops feed the meter.
    P2p,
    /// `livekit`: each session's media runs in a LiveKit room; LiveKit's
    /// webhooks (and a poll of its participants) feed the meter.
    Livekit(LivekitConfig),
}

/// A LiveKit server (self-hosted or Cloud) and its API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LivekitConfig {
    /// `LIVEKIT_URL`: the server's URL as clients use it (`wss://…` or
    /// `ws://…`; `https://`/`http://` accepted too). The Twirp API is called
    /// on the same host over HTTP(S).
    pub url: String,
    /// `LIVEKIT_API_KEY`: signs API calls and access tokens, and names the
    /// key webhooks are signed with.
    pub api_key: String,
    /// `LIVEKIT_API_SECRET` (at least 32 bytes, as LiveKit requires).
    pub api_secret: String,
    /// `PARLEY_LIVEKIT_POLL_SECS` (default 30): how often the participants
    /// of open LiveKit sessions are listed, to catch a lost
    /// `participant_left` webhook. Server time.
    pub poll_interval: Duration,
}

pub(super) fn media_config(raw: &Raw) -> Result<Media, ConfigError> {
    let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
    match raw.media.as_str() {
        "p2p" => return Ok(Media::P2p),
        "livekit" => {}
        _ => return bad("PARLEY_MEDIA", "expected `p2p` or `livekit`"),
    }
    let url = raw.livekit_url.as_deref().map(str::trim).unwrap_or_default();
    if url.is_empty() {
        return bad("LIVEKIT_URL", "is required when PARLEY_MEDIA=livekit");
    }
    let scheme_ok = ["ws://", "wss://", "http://", "https://"].iter().any(|s| url.starts_with(s));
    if !scheme_ok || url.parse::<axum::http::Uri>().map_or(true, |u| u.host().is_none()) {
        return bad("LIVEKIT_URL", "expected a ws://, wss://, http:// or https:// URL with a host");
    }
    let Some(api_key) = raw.livekit_api_key.as_deref().map(str::trim).filter(|k| !k.is_empty()) else {
        return bad("LIVEKIT_API_KEY", "is required when PARLEY_MEDIA=livekit");
    };
    let Some(api_secret) = raw.livekit_api_secret.as_deref().filter(|k| !k.is_empty()) else {
        return bad("LIVEKIT_API_SECRET", "is required when PARLEY_MEDIA=livekit");
    };
    if api_secret.len() < 32 {
        return bad("LIVEKIT_API_SECRET", "must be at least 32 bytes (LiveKit refuses shorter secrets)");
    }
    if raw.livekit_poll_secs == 0 {
        return bad("PARLEY_LIVEKIT_POLL_SECS", "must be at least 1");
    }
    Ok(Media::Livekit(LivekitConfig {
        url: url.to_owned(),
        api_key: api_key.to_owned(),
        api_secret: api_secret.to_owned(),
        poll_interval: Duration::from_secs(raw.livekit_poll_secs),
    }))
}
