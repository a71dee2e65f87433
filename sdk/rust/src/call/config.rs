//! What a [`Call`] is set up with ([`CallConfig`]), what it exchanges
//! ([`Signal`]) and hands out ([`RemoteRtp`]), and how it fails
//! ([`CallError`]).

use super::*;

/// The kind of a received RTP packet's track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MediaKind {
    /// Audio (Opus).
    Audio,
    /// Video (VP8).
    Video,
}

/// One RTP packet received from the remote peer (see [`CallConfig::rtp_sink`]).
#[derive(Debug, Clone)]
pub struct RemoteRtp {
    /// The track's kind.
    pub kind: MediaKind,
    /// The track's codec, e.g. `audio/opus`, `video/VP8`.
    pub mime_type: String,
    /// The packet, header extensions included.
    pub packet: rtc::rtp::Packet,
    /// When it was handed out (monotonic).
    pub arrival: Instant,
}

/// A signal exchanged with the remote peer through the signaling server.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An SDP offer.
    Offer(String),
    /// An SDP answer.
    Answer(String),
    /// A trickled ICE candidate.
    Candidate(IceCandidate),
}

/// How to set up a [`Call`].
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// STUN/TURN servers (from the server's room join). Empty: host
    /// candidates only.
    pub ice_servers: Vec<IceServer>,
    /// `true`: this side makes the first offer (the seeker). `false`: it
    /// answers (the consultant). For renegotiation (perfect negotiation) the
    /// answerer is the polite peer.
    pub offerer: bool,
    /// Send an Opus audio track, one frame every [`AUDIO_FRAME_DURATION`],
    /// once connected. The audio transceiver is negotiated as send-receive
    /// either way, so the call always receives audio.
    pub send_audio: bool,
    /// Local UDP addresses to bind, e.g. `"127.0.0.1:0"` (loopback only, for
    /// tests and load tests) or `"0.0.0.0:0"` (every interface, for real
    /// calls). Must not be empty.
    pub udp_addrs: Vec<String>,
    /// Time without traffic on the selected candidate pair after which the
    /// connection is reported [`MediaState::Disconnected`] (default 5 s).
    pub ice_disconnected_timeout: Duration,
    /// Time after disconnection after which the connection is reported
    /// [`MediaState::Failed`] (default 25 s).
    pub ice_failed_timeout: Duration,
    /// Interval of ICE keep-alives on an idle connection (default 2 s).
    pub ice_keepalive_interval: Duration,
    /// Resolve remote `.local` (mDNS) host candidates, as browsers send them
    /// (default `true`). This binds an mDNS socket per call; load tests on
    /// loopback may turn it off.
    pub resolve_mdns_candidates: bool,
    /// The encoded Opus frame sent every 20 ms (default
    /// [`OPUS_SILENCE_FRAME`]). Can be changed later with
    /// [`Call::set_audio_payload`].
    pub audio_payload: Bytes,
    /// The RFC 6464 level (0–127, −dBov) sent with frames other than the
    /// silence frame, with the voice flag set (default 30).
    pub speech_audio_level: u8,
    /// Send a VP8 video track, [`CallConfig::video_payload`] every
    /// [`VIDEO_FRAME_DURATION`], once connected (default `false`).
    pub send_video: bool,
    /// The encoded VP8 frame sent (default [`VP8_GREY_KEY_FRAME`]).
    pub video_payload: Bytes,
    /// The offerer opens the [`DATA_CHANNEL_LABEL`] data channel (default
    /// `true`).
    pub data_channel: bool,
    /// Send nothing: offer receive-only audio and video transceivers (the
    /// recorder). Overrides `send_audio` and `send_video`.
    pub receive_only: bool,
    /// Where every received RTP packet is copied, if set.
    pub rtp_sink: Option<mpsc::UnboundedSender<RemoteRtp>>,
    /// Use relayed (TURN) candidates only (W3C `iceTransportPolicy:
    /// "relay"`; default `false`): for privacy, and to check a TURN server.
    pub relay_only: bool,
}

impl Default for CallConfig {
    /// Offerer, sending audio, loopback only, no ICE servers, webrtc's default
    /// ICE timeouts (5 s disconnected, 25 s failed, 2 s keep-alive).
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            offerer: true,
            send_audio: true,
            udp_addrs: vec!["127.0.0.1:0".to_owned()],
            ice_disconnected_timeout: Duration::from_secs(5),
            ice_failed_timeout: Duration::from_secs(25),
            ice_keepalive_interval: Duration::from_secs(2),
            resolve_mdns_candidates: true,
            audio_payload: Bytes::from_static(&OPUS_SILENCE_FRAME),
            speech_audio_level: 30,
            send_video: false,
            video_payload: Bytes::from_static(&VP8_GREY_KEY_FRAME),
            data_channel: true,
            receive_only: false,
            rtp_sink: None,
            relay_only: false,
        }
    }
}

/// Why a [`Call`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The WebRTC stack reported an error (bind failure, bad SDP, …).
    #[error("webrtc error: {0}")]
    WebRtc(String),
    /// The configuration cannot work.
    #[error("invalid call configuration: {0}")]
    Config(&'static str),
    /// Nothing happened within the given time; names what was awaited.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The peer connection failed (ICE found no working path, or lost it for
    /// longer than [`CallConfig::ice_failed_timeout`]).
    #[error("peer connection failed")]
    Failed,
    /// The call has been closed.
    #[error("call is closed")]
    Closed,
    /// The data channel is not open (yet, or any more).
    #[error("data channel is not open")]
    DataChannelNotOpen,
    /// The operation is not possible in the current negotiation state.
    #[error("invalid negotiation state: {0}")]
    InvalidState(&'static str),
}

impl From<webrtc::error::Error> for CallError {
    fn from(err: webrtc::error::Error) -> Self {
        CallError::WebRtc(err.to_string())
    }
}
