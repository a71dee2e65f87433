//! A WebRTC peer connection for one 1:1 Parley call, on webrtc-rs 0.21.
//!
//! [`Call`] drives a single real peer connection: an Opus audio transceiver
//! (send and receive) plus one data channel labelled [`DATA_CHANNEL_LABEL`].
//! It does not talk to the network signaling itself. Signals for the remote
//! peer ([`Signal`]: SDP offers and answers, trickled ICE candidates) leave
//! through an `outbound` channel and the remote peer's signals come in through
//! an `inbound` channel, so the caller decides how they travel — over the
//! Parley signaling WebSocket in production, or straight into another `Call`
//! in tests.
//!
//! # Negotiation
//!
//! The side with [`CallConfig::offerer`] set (the seeker) sends the first
//! offer as soon as the call starts. Any later offer, from either side, is
//! answered; renegotiation follows the *perfect negotiation* pattern, where
//! the answerer (`offerer == false`, the consultant) is the polite peer: when
//! both sides offer at once, the polite peer rolls its own offer back and
//! answers, while the impolite peer ignores the colliding offer.
//!
//! Remote ICE candidates that arrive before the description they belong to
//! (before the first offer or answer, or tagged with an ICE username fragment
//! that is not yet known) are held back and applied once that description is
//! in place.
//!
//! # Media
//!
//! Once the connection first reaches [`MediaState::Connected`], a call with
//! [`CallConfig::send_audio`] sends one Opus frame every 20 ms. There is no
//! Opus encoder here: by default the frame is the 3-byte Opus comfort-noise /
//! silence frame [`OPUS_SILENCE_FRAME`], a valid packet every decoder accepts.
//! [`Call::set_audio_payload`] swaps in other pre-encoded frames. Every frame
//! carries the RFC 6464 audio-level header extension: 127 (silence) for the
//! silence frame, [`CallConfig::speech_audio_level`] for anything else, so a
//! receiver (the recorder's talk time) can tell speech from silence.
//! [`CallConfig::send_video`] adds a VP8 track sending a pre-encoded frame
//! every [`VIDEO_FRAME_DURATION`]. A receiver asks for a key frame with
//! [`Call::request_key_frame`] (RTCP PLI); a sender sees the requests in
//! [`Call::key_frame_requests_received`] (its frames are all key frames). Received audio RTP packets are counted
//! ([`Call::audio_packets_received`]), and every received RTP packet can be
//! handed out through [`CallConfig::rtp_sink`].
//!
//! A [`CallConfig::receive_only`] call (the recorder's side) sends nothing:
//! it offers receive-only audio and video and hands out what arrives.
//!
//! # webrtc-rs 0.21 behaviour this module works around
//!
//! Found while building it; keep them in mind when changing it.
//! - `RTCIceCandidate::to_json()` gives `sdp_mid: Some("")` and no ufrag;
//!   browsers reject an empty mid, so both are filled from the local SDP.
//! - After an ICE restart webrtc-rs keeps its host candidates and reports
//!   none again; browsers drop the old generation's, so the candidates in
//!   the new local description are re-sent (component 1 only).
//! - Given new TURN credentials, an ICE restart re-signs the live TURN
//!   allocations with them, which TURN servers refuse (441, RFC 8656 §5):
//!   the peer connection is built to rebind its sockets at every restart
//!   (`with_discard_local_candidates_during_ice_restart`), so a restart
//!   makes new allocations instead.
//! - `add_ice_candidate` before a remote description fails and the
//!   candidate is lost: remote candidates are buffered here, keyed by ufrag.
//! - There is no `signaling_state()` getter and its event arrives late: one
//!   negotiator task tracks "our offer is pending" itself.
//! - `on_negotiation_needed` fires at start on both sides (from `add_track`
//!   and `create_data_channel`); acting on it would make the answerer offer
//!   too, so it is ignored (the media layout never changes after start).
//! - Event-handler callbacks run on the connection's driver task: they must
//!   not block, and `close()` from inside one only detaches the driver.
//! - Dropping a peer connection does not stop it, and data channel →
//!   connection → handler → data channel is a cycle: `close()` (also run by
//!   `Drop`) releases them explicitly.
//! - `on_track` fires on the first RTP packet, not at negotiation.
//! - `TrackLocalStaticSample::new` needs the SSRC set in the encoding.
//! - Rollback is explicit: `set_local_description(RTCSessionDescription::rollback(None))`.
//! - mDNS query mode is the default and binds a 5353 socket per connection
//!   ([`CallConfig::resolve_mdns_candidates`] turns it off for load tests).
//! - A remote hang-up is not reported as Closed: the data channel closes at
//!   once, the connection state only after the ICE timeouts.
//! - `RTCOfferOptions` is imported from `rtc::peer_connection::configuration`.
//!
//! # Example
//!
//! Two calls wired to each other in memory (see also
//! `examples/loopback_call.rs`):
//!
//! ```no_run
//! use std::time::Duration;
//! use parley_sdk::call::{Call, CallConfig};
//! use tokio::sync::mpsc::unbounded_channel;
//!
//! # async fn demo() -> Result<(), parley_sdk::call::CallError> {
//! let (a_out, b_in) = unbounded_channel();
//! let (b_out, a_in) = unbounded_channel();
//! let seeker = Call::start(CallConfig::default(), a_out, a_in).await?;
//! let consultant = Call::start(
//!     CallConfig { offerer: false, ..CallConfig::default() },
//!     b_out,
//!     b_in,
//! )
//! .await?;
//! seeker.wait_data_channel_open(Duration::from_secs(10)).await?;
//! seeker.send_data(b"hello").await?;
//! assert_eq!(consultant.recv_data().await.as_deref(), Some(&b"hello"[..]));
//! seeker.close().await?;
//! consultant.close().await?;
//! # Ok(())
//! # }
//! ```

mod config;
mod feedback;
mod handler;
mod media;
mod negotiator;
mod peer;

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parley_domain::protocol::{IceCandidate, IceServer, MediaState};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, warn};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, RTCConfiguration, RTCConfigurationBuilder, RTCIceServer,
    RTCIceTransportPolicy, RTCPeerConnectionState, Registry, SettingEngineBuilder, register_default_interceptors,
};

pub use self::config::{CallConfig, CallError, MediaKind, RemoteRtp, Signal};
use self::handler::Handler;
use self::negotiator::{Command, Negotiator};
use self::peer::{build_peer_connection, media_state_of, new_track, opus_codec, rtc_configuration, vp8_codec};

/// The label of the call's data channel. The offerer creates it (in-band,
/// DCEP); the answerer picks it up. Data channels with other labels are
/// ignored.
pub const DATA_CHANNEL_LABEL: &str = "parley";

/// The Opus silence (comfort noise) frame: TOC byte `0xF8` (CELT-only,
/// fullband, 20 ms, mono, one frame) followed by an empty-frame payload. It is
/// what [`Call`] sends unless told otherwise ([`CallConfig::audio_payload`]).
pub const OPUS_SILENCE_FRAME: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Duration of one audio frame; one frame is sent per interval.
pub const AUDIO_FRAME_DURATION: Duration = Duration::from_millis(20);

/// Interval between video frames (10 frames per second).
pub const VIDEO_FRAME_DURATION: Duration = Duration::from_millis(100);

/// A 64×48 grey VP8 key frame (36 bytes, made with libvpx's `vpxenc`): what
/// a call with [`CallConfig::send_video`] sends unless told otherwise.
pub const VP8_GREY_KEY_FRAME: [u8; 36] = [
    0xb0, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x00, 0x30, 0x00, 0x00, 0x47, 0x08, 0x85, 0x85, 0x88, 0x85, 0x84, 0x88,
    0x02, 0x02, 0x00, 0x06, 0x8e, 0x4f, 0xcc, 0xc7, 0x9b, 0xf1, 0x58, 0x00, 0xfe, 0xfd, 0x83, 0x78, 0x00,
];

/// The RTP header extension carrying the audio level (RFC 6464).
pub const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

/// How long [`Call::close`] waits for the call's tasks to finish.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The data channel as [`Call`] sees it.
#[derive(Clone)]
enum ChannelState {
    /// Not open yet.
    Pending,
    /// Open and usable.
    Open(Arc<dyn DataChannel>),
    /// Closed (by either side, or by [`Call::close`]); final.
    Closed,
}

/// State shared by the [`Call`] handle, its tasks and its event handler.
///
/// Holds no reference to the peer connection: the connection owns the event
/// handler, which owns this, and a reference back would be a cycle.
struct Shared {
    /// `"offerer"` or `"answerer"`, for logs.
    role: &'static str,
    /// Cancelled when the call closes; every task stops on it.
    cancel: CancellationToken,
    /// Every task of this call.
    tasks: TaskTracker,
    /// Set once by `close` or `Drop`.
    closed: AtomicBool,
    /// The connection state; `Closed` is final.
    media_state: watch::Sender<MediaState>,
    /// The data channel.
    channel: watch::Sender<ChannelState>,
    /// Where received data-channel messages go. Taken by the task reading
    /// the data channel, so the receiver sees the end of the stream when that
    /// task ends (or when the call closes before a channel appeared).
    data_tx: StdMutex<Option<mpsc::UnboundedSender<Bytes>>>,
    /// RTP audio packets received.
    audio_received: AtomicU64,
    /// Audio frames (one RTP packet each) sent.
    audio_sent: AtomicU64,
    /// The frame sent every 20 ms.
    audio_payload: StdMutex<Bytes>,
    /// [`CallConfig::speech_audio_level`].
    speech_audio_level: u8,
    /// [`CallConfig::rtp_sink`].
    rtp_sink: Option<mpsc::UnboundedSender<RemoteRtp>>,
    /// The remote video tracks being read, for key frame requests.
    remote_video: StdMutex<Vec<Arc<dyn TrackRemote>>>,
    /// Key frame requests (PLI, FIR) received, counted by an interceptor.
    key_frame_requests: Arc<AtomicU64>,
    /// [`CallConfig::relay_only`], kept for [`Call::set_ice_servers`].
    relay_only: bool,
}

impl Shared {
    /// Records a new connection state, unless the call is already closed.
    fn set_media_state(&self, state: MediaState) {
        self.media_state.send_if_modified(|current| {
            if *current == MediaState::Closed || *current == state {
                false
            } else {
                *current = state;
                true
            }
        });
    }

    /// Marks the data channel open, unless it was closed meanwhile.
    fn set_channel_open(&self, channel: Arc<dyn DataChannel>) {
        self.channel.send_if_modified(|current| {
            if matches!(current, ChannelState::Closed) {
                false
            } else {
                *current = ChannelState::Open(channel);
                true
            }
        });
    }

    /// Final bookkeeping of a closed call: states to `Closed`, the data
    /// stream ended. Also drops the data channel handle, which would
    /// otherwise keep the peer connection alive through a reference cycle.
    fn finish(&self) {
        self.set_media_state(MediaState::Closed);
        self.channel.send_replace(ChannelState::Closed);
        self.data_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    fn audio_payload(&self) -> Bytes {
        self.audio_payload.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A span carrying this call's role, for the call's tasks.
    fn span(&self) -> tracing::Span {
        tracing::info_span!("call", role = self.role)
    }
}

/// One 1:1 WebRTC call: a peer connection with Opus audio and the
/// [`DATA_CHANNEL_LABEL`] data channel, signaled through channels.
///
/// Create with [`Call::start`]; end with [`Call::close`]. Dropping a `Call`
/// without closing it stops its tasks and closes the connection in the
/// background (inside a Tokio runtime).
pub struct Call {
    shared: Arc<Shared>,
    pc: Arc<dyn PeerConnection>,
    commands: mpsc::UnboundedSender<Command>,
    data_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Bytes>>,
}

impl Call {
    /// Builds the peer connection — an Opus audio transceiver (send-receive)
    /// and, on the offerer, the [`DATA_CHANNEL_LABEL`] data channel — and
    /// starts processing `inbound`. The offerer sends its offer on `outbound`
    /// before this returns; the answerer waits for the remote offer.
    ///
    /// Must be called inside a Tokio runtime; the call's tasks run on it.
    ///
    /// # Errors
    ///
    /// [`CallError::Config`] if `udp_addrs` is empty; [`CallError::WebRtc`]
    /// if the connection cannot be built (e.g. an address cannot be bound) or
    /// the first offer cannot be created.
    pub async fn start(
        config: CallConfig,
        outbound: mpsc::UnboundedSender<Signal>,
        inbound: mpsc::UnboundedReceiver<Signal>,
    ) -> Result<Call, CallError> {
        if config.udp_addrs.is_empty() {
            return Err(CallError::Config("udp_addrs is empty"));
        }

        let (data_tx, data_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            role: if config.offerer { "offerer" } else { "answerer" },
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            closed: AtomicBool::new(false),
            media_state: watch::channel(MediaState::New).0,
            channel: watch::channel(ChannelState::Pending).0,
            data_tx: StdMutex::new(Some(data_tx)),
            audio_received: AtomicU64::new(0),
            audio_sent: AtomicU64::new(0),
            audio_payload: StdMutex::new(config.audio_payload.clone()),
            speech_audio_level: config.speech_audio_level.min(127),
            rtp_sink: config.rtp_sink.clone(),
            remote_video: StdMutex::new(Vec::new()),
            key_frame_requests: Arc::new(AtomicU64::new(0)),
            relay_only: config.relay_only,
        });

        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler::new(Arc::clone(&shared), events_tx));
        let pc = build_peer_connection(&config, handler, Arc::clone(&shared.key_frame_requests)).await?;

        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let call = Call {
            shared: Arc::clone(&shared),
            pc: Arc::clone(&pc),
            commands: commands_tx,
            data_rx: tokio::sync::Mutex::new(data_rx),
        };

        // On error `call` is dropped, which stops whatever was started and
        // closes the connection.
        let mut audio = None;
        let mut video = None;
        if config.receive_only {
            for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
                let init =
                    RTCRtpTransceiverInit { direction: RTCRtpTransceiverDirection::Recvonly, ..Default::default() };
                pc.add_transceiver_from_kind(kind, Some(init)).await?;
            }
        } else {
            let track = new_track(RtpCodecKind::Audio, opus_codec())?;
            let sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await?;
            audio = Some((track, sender));
            if config.send_video {
                let track = new_track(RtpCodecKind::Video, vp8_codec())?;
                let sender = pc.add_track(Arc::clone(&track) as Arc<dyn TrackLocal>).await?;
                video = Some((track, sender));
            }
        }
        if config.offerer && config.data_channel {
            let channel = pc.create_data_channel(DATA_CHANNEL_LABEL, None).await?;
            media::spawn_data_channel_reader(&shared, channel);
        }

        let mut negotiator = Negotiator::new(Arc::clone(&pc), Arc::clone(&shared), outbound, !config.offerer);
        if config.offerer {
            negotiator.send_first_offer().instrument(shared.span()).await?;
        }
        shared.tasks.spawn(negotiator.run(inbound, events_rx, commands_rx).instrument(shared.span()));

        if let Some((track, sender)) = audio
            && config.send_audio
        {
            media::spawn_audio_pump(&shared, track, sender);
        }
        if let Some((track, sender)) = video {
            media::spawn_video_pump(&shared, track, sender, config.video_payload.clone());
        }
        debug!(role = shared.role, "call started");
        Ok(call)
    }

    /// Waits until the peer connection is connected (ICE and DTLS done).
    /// Returns at once if it already is.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] after `timeout`; [`CallError::Failed`] if the
    /// connection fails first; [`CallError::Closed`] if the call is closed.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), CallError> {
        let mut states = self.shared.media_state.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            states.wait_for(|state| matches!(state, MediaState::Connected | MediaState::Failed | MediaState::Closed)),
        )
        .await;
        let state = match waited {
            Err(_) => return Err(CallError::Timeout("the peer connection to connect")),
            Ok(Err(_)) => return Err(CallError::Closed),
            Ok(Ok(state)) => *state,
        };
        match state {
            MediaState::Connected => Ok(()),
            MediaState::Failed => Err(CallError::Failed),
            _ => Err(CallError::Closed),
        }
    }

    /// Waits until the data channel is open. Returns at once if it is.
    ///
    /// # Errors
    ///
    /// [`CallError::Timeout`] after `timeout`; [`CallError::Closed`] if the
    /// channel or the call closed first.
    pub async fn wait_data_channel_open(&self, timeout: Duration) -> Result<(), CallError> {
        let mut channel = self.shared.channel.subscribe();
        let waited =
            tokio::time::timeout(timeout, channel.wait_for(|state| !matches!(state, ChannelState::Pending))).await;
        match waited {
            Err(_) => Err(CallError::Timeout("the data channel to open")),
            Ok(Err(_)) => Err(CallError::Closed),
            Ok(Ok(state)) => match &*state {
                ChannelState::Open(_) => Ok(()),
                _ => Err(CallError::Closed),
            },
        }
    }

    /// Sends `data` as one binary message on the data channel (reliable,
    /// ordered). Queues it and returns; does not wait for delivery.
    ///
    /// # Errors
    ///
    /// [`CallError::DataChannelNotOpen`] before the channel opened;
    /// [`CallError::Closed`] once it or the call closed;
    /// [`CallError::WebRtc`] if the stack refuses the message (e.g. larger
    /// than the negotiated maximum message size).
    pub async fn send_data(&self, data: &[u8]) -> Result<(), CallError> {
        let channel = match &*self.shared.channel.borrow() {
            ChannelState::Open(channel) => Arc::clone(channel),
            ChannelState::Pending => return Err(CallError::DataChannelNotOpen),
            ChannelState::Closed => return Err(CallError::Closed),
        };
        channel
            .send(BytesMut::from(data))
            .await
            .map_err(|err| if self.shared.closed.load(Ordering::Acquire) { CallError::Closed } else { err.into() })
    }

    /// The next message received on the data channel, in order; `None` once
    /// the channel or the call is closed and every received message has been
    /// returned. Concurrent callers are served one after the other.
    pub async fn recv_data(&self) -> Option<Bytes> {
        self.data_rx.lock().await.recv().await
    }

    /// Number of RTP audio packets received from the remote peer so far.
    pub fn audio_packets_received(&self) -> u64 {
        self.shared.audio_received.load(Ordering::Relaxed)
    }

    /// Number of audio packets sent so far (one RTP packet per 20 ms frame).
    pub fn audio_packets_sent(&self) -> u64 {
        self.shared.audio_sent.load(Ordering::Relaxed)
    }

    /// Replaces the encoded Opus frame sent every 20 ms from the next frame
    /// on (e.g. non-silent pre-encoded audio). Must be one valid 20 ms Opus
    /// packet; it is sent as is, in one RTP packet.
    pub fn set_audio_payload(&self, frame: Bytes) {
        *self.shared.audio_payload.lock().unwrap_or_else(|e| e.into_inner()) = frame;
    }

    /// Asks the remote peer for a video key frame: an RTCP picture loss
    /// indication (PLI, RFC 4585 §6.3.1; `nack pli` is negotiated for
    /// video) for each remote video stream received so far. Written in the
    /// background; returns how many remote video tracks it goes to (0
    /// before any video arrived, or once the call is closed).
    pub fn request_key_frame(&self) -> usize {
        if self.shared.closed.load(Ordering::Acquire) {
            return 0;
        }
        let tracks = self.shared.remote_video.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if tracks.is_empty() {
            return 0;
        }
        let count = tracks.len();
        let span = self.shared.span();
        self.shared.tasks.spawn(
            async move {
                for track in tracks {
                    for media_ssrc in track.ssrcs().await {
                        let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                        if let Err(err) = track.write_rtcp(vec![Box::new(pli)]).await {
                            debug!(%err, media_ssrc, "cannot send a key frame request");
                        }
                    }
                }
            }
            .instrument(span),
        );
        count
    }

    /// Key frame requests (RTCP PLI or FIR) the remote peer sent about the
    /// video this call sends. The call's frames are all pre-encoded, so
    /// nothing answers them; an encoder would send a key frame.
    pub fn key_frame_requests_received(&self) -> u64 {
        self.shared.key_frame_requests.load(Ordering::Relaxed)
    }

    /// The encoded Opus frame currently sent every 20 ms.
    pub fn audio_payload(&self) -> Bytes {
        self.shared.audio_payload()
    }

    /// The id the local description gives the RTP header extension `uri`
    /// (its `a=extmap` line, RFC 8285), e.g. [`AUDIO_LEVEL_URI`]; `None`
    /// before there is a local description or if it lacks the extension.
    /// On the offerer, the answer uses the same id.
    pub async fn local_extension_id(&self, uri: &str) -> Option<u8> {
        let sdp = self.pc.local_description().await?.sdp;
        sdp.lines().find_map(|line| {
            let (id, rest) = line.strip_prefix("a=extmap:")?.split_once(' ')?;
            if rest.split_whitespace().next()? != uri {
                return None;
            }
            id.split('/').next()?.parse().ok()
        })
    }

    /// A watch of the peer connection state (`RTCPeerConnection.connectionState`).
    /// Starts at [`MediaState::New`]; [`MediaState::Closed`] is final.
    pub fn media_state(&self) -> watch::Receiver<MediaState> {
        self.shared.media_state.subscribe()
    }

    /// Replaces the STUN/TURN servers (W3C `setConfiguration`), e.g. with
    /// fresh TURN credentials from a rejoin, a resume or `ice.servers`.
    /// The current connection is untouched; the next ICE gathering (an ICE
    /// restart, [`Call::restart_ice`]) uses them. An empty list keeps the
    /// current servers (W3C). An ICE restart binds new local sockets, so
    /// a TURN server gets a new allocation made with these credentials
    /// (an allocation belongs to the username that made it, RFC 8656 §5:
    /// re-signing the old one would be refused with 441); the previous
    /// generation's allocations are released.
    ///
    /// # Errors
    ///
    /// [`CallError::Closed`] if the call is closed; [`CallError::WebRtc`]
    /// if the stack refuses a server (e.g. a `turn:` URL without credentials).
    pub async fn set_ice_servers(&self, servers: &[IceServer]) -> Result<(), CallError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(CallError::Closed);
        }
        self.pc.set_configuration(rtc_configuration(servers, self.shared.relay_only)).await?;
        Ok(())
    }

    /// Restarts ICE: creates an offer with fresh ICE credentials and sends
    /// it; the connection is re-established over whatever paths the new
    /// candidates allow. Meant for the offerer (the seeker) after the
    /// connection became [`MediaState::Disconnected`] or
    /// [`MediaState::Failed`], but works on either side (colliding offers are
    /// resolved by perfect negotiation). If an offer of this side is still
    /// waiting for its answer, the restart offer is sent once the answer has
    /// arrived.
    ///
    /// Returns when the offer has been handed to `outbound` (or queued); use
    /// [`Call::wait_connected`] or [`Call::media_state`] to follow the result.
    ///
    /// # Errors
    ///
    /// [`CallError::InvalidState`] before any offer/answer exchange has
    /// started; [`CallError::Closed`] if the call is closed;
    /// [`CallError::WebRtc`] if the offer cannot be created or applied.
    pub async fn restart_ice(&self) -> Result<(), CallError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(CallError::Closed);
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        self.commands.send(Command::RestartIce(reply_tx)).map_err(|_| CallError::Closed)?;
        reply_rx.await.map_err(|_| CallError::Closed)?
    }

    /// Closes the peer connection and stops every task of this call. After
    /// it returns, [`Call::media_state`] is [`MediaState::Closed`] and
    /// [`Call::recv_data`] returns `None` once drained. Idempotent.
    ///
    /// The remote peer is not told by the connection itself; it learns it
    /// through signaling or, at the latest, through its ICE timeouts.
    ///
    /// # Errors
    ///
    /// [`CallError::WebRtc`] if the stack reports an error while closing;
    /// [`CallError::Timeout`] if the call's tasks did not stop within 5 s.
    /// The call is closed either way.
    pub async fn close(&self) -> Result<(), CallError> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.shared.cancel.cancel();
        let closed = self.pc.close().await;
        self.shared.finish();
        self.shared.tasks.close();
        if tokio::time::timeout(TASK_STOP_TIMEOUT, self.shared.tasks.wait()).await.is_err() {
            warn!(role = self.shared.role, "call tasks did not stop in time");
            return Err(CallError::Timeout("the call's tasks to stop"));
        }
        debug!(role = self.shared.role, "call closed");
        closed.map_err(Into::into)
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.cancel.cancel();
        self.shared.tasks.close();
        self.shared.finish();
        // webrtc's driver task keeps running (and holding its sockets) until
        // the connection is closed explicitly.
        let pc = Arc::clone(&self.pc);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(err) = pc.close().await {
                        debug!(%err, "closing a dropped call");
                    }
                });
            }
            Err(_) => warn!(
                role = self.shared.role,
                "Call dropped outside a Tokio runtime without close(); its connection stays open"
            ),
        }
    }
}
