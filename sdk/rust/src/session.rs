//! [`SessionCall`]: a [`Call`] wired to a session room through a
//! [`SignalingClient`]. Outgoing offers, answers and candidates are sent as
//! `sdp.offer` / `sdp.answer` / `ice.candidate`; relayed ones are fed in
//! with [`SessionCall::handle`]; media state changes are reported as
//! `media.state` (DESIGN.md M11).
//!
//! The offerer (the seeker) should start once the other participant is in
//! the room — the room's `participants`, or a `participant.joined` event —
//! because the server relays only to participants who are present.
//!
//! # Recording
//!
//! When the session is recorded, the server sends `recording.started` with
//! the recorder's id, and the recorder offers a receive-only connection.
//! [`SessionCall::handle`] answers it with a second, send-only [`Call`]
//! (the *uplink*) carrying the same audio (and video) as the main call;
//! its signals go to the recorder (`to`). A new offer from the recorder (it
//! reconnects after a drop) replaces the uplink; `recording.stopped` closes
//! it. The main call is never touched by any of this.
//!
//! # Rejoin and fresh TURN credentials
//!
//! Feed the client's other events to [`SessionCall::handle_event`] too.
//! After a failed resume the [`SignalingClient`] rejoins the room by itself
//! ([`Event::Rejoined`]): the call switches to the room's fresh ICE servers
//! and, on the seeker's side, makes a new offer with an ICE restart as soon
//! as the consultant is present (at once if the rejoin found them there,
//! else on their `participant.joined`) — docs/protocol.md 8.3 and 8.13. A
//! resume's fresh ICE servers ([`Event::Resumed`]) are applied too.
//! [`SessionCall::restart_ice`] asks the server for fresh servers
//! (`ice.servers`) before it restarts ICE, so TURN credentials older than
//! their TTL are never reused.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use parley_domain::protocol::{ClientMessage, ServerMessage};
use parley_domain::{SessionId, UserId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::call::{Call, CallConfig, Signal};
use crate::{Event, RoomInfo, SdkError, SignalingClient};

/// A WebRTC call in a session room.
pub struct SessionCall {
    /// The peer connection.
    pub call: Call,
    session_id: SessionId,
    inbound: mpsc::UnboundedSender<Signal>,
    tasks: [JoinHandle<()>; 2],
    uplink: Arc<Uplink>,
    client: SignalingClient,
    /// This side makes the offers (the seeker).
    offerer: bool,
    /// Rejoined while the other participant was away: offer (ICE restart)
    /// when they join.
    offer_when_peer_joins: AtomicBool,
    /// Offers received from the other participant so far.
    offers_received: std::sync::atomic::AtomicU64,
}

/// The send-only connection to the recorder, if recording is on.
struct Uplink {
    client: SignalingClient,
    session_id: SessionId,
    /// The main call's configuration, the base of the uplink's (its ICE
    /// servers follow the freshest ones received).
    config: Mutex<CallConfig>,
    state: Mutex<UplinkState>,
}

#[derive(Default)]
struct UplinkState {
    /// The recorder's id, from `recording.started`.
    recorder: Option<UserId>,
    /// Where the recorder's signals for the current uplink go.
    inbound: Option<mpsc::UnboundedSender<Signal>>,
    /// The current uplink call, once started.
    call: Option<Arc<Call>>,
    /// Bumped for every new uplink, so a slow start does not install a
    /// replaced one.
    generation: u64,
}

impl Uplink {
    fn lock(&self) -> std::sync::MutexGuard<'_, UplinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Closes the current uplink, if any.
    fn close_current(&self) {
        let call = {
            let mut st = self.lock();
            st.inbound = None;
            st.generation += 1;
            st.call.take()
        };
        if let Some(call) = call {
            tokio::spawn(async move {
                let _ = call.close().await;
            });
        }
    }

    /// A new offer from the recorder: replaces the uplink with a fresh
    /// answerer that sends the main call's media.
    fn start(self: &Arc<Self>, recorder: UserId, offer: String, audio_payload: bytes::Bytes) {
        self.close_current();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let _ = in_tx.send(Signal::Offer(offer));
        let generation = {
            let mut st = self.lock();
            st.inbound = Some(in_tx);
            st.generation
        };
        let config = CallConfig {
            offerer: false,
            data_channel: false,
            send_audio: true,
            receive_only: false,
            rtp_sink: None,
            audio_payload,
            ..self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
        };
        let uplink = Arc::clone(self);
        tokio::spawn(async move {
            let (out_tx, mut out_rx) = mpsc::unbounded_channel();
            let call = match Call::start(config, out_tx, in_rx).await {
                Ok(call) => Arc::new(call),
                Err(err) => {
                    warn!(%err, "cannot answer the recorder");
                    return;
                }
            };
            let current = {
                let mut st = uplink.lock();
                let current = st.generation == generation;
                if current {
                    st.call = Some(Arc::clone(&call));
                }
                current
            };
            if !current {
                let _ = call.close().await;
                return;
            }
            while let Some(signal) = out_rx.recv().await {
                let msg = signal_message(uplink.session_id.clone(), signal, Some(recorder.clone()));
                if uplink.client.send(msg).is_err() {
                    return;
                }
            }
        });
    }
}

/// The signaling message carrying `signal` for `session_id`, addressed to
/// `to` (`None`: the other participant).
pub fn signal_message(session_id: SessionId, signal: Signal, to: Option<UserId>) -> ClientMessage {
    match signal {
        Signal::Offer(sdp) => ClientMessage::SdpOffer { session_id, sdp, to },
        Signal::Answer(sdp) => ClientMessage::SdpAnswer { session_id, sdp, to },
        Signal::Candidate(candidate) => ClientMessage::IceCandidate { session_id, candidate, to },
    }
}

impl SessionCall {
    /// Starts a call in `room` (whose `offerer` and `ice_servers` override
    /// those in `config`). Peer to peer only: a room whose media runs on
    /// LiveKit (`room.media` set) is refused with [`SdkError::Call`].
    pub async fn start(
        client: &SignalingClient,
        room: &RoomInfo,
        mut config: CallConfig,
    ) -> Result<SessionCall, SdkError> {
        if room.media.is_some() {
            // The session's media runs on a LiveKit SFU: the `livekit` crate
            // needs a prebuilt libwebrtc, so this SDK calls peer to peer only.
            return Err(SdkError::Call(
                "this session's media runs on LiveKit: join it with a LiveKit client (url and token in RoomInfo::media)"
                    .into(),
            ));
        }
        config.offerer = room.offerer;
        config.ice_servers = room.ice_servers.clone();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let call = Call::start(config.clone(), out_tx, in_rx).await.map_err(|e| SdkError::Call(e.to_string()))?;
        let session_id = room.session_id.clone();
        let signals = {
            let client = client.clone();
            let session_id = session_id.clone();
            tokio::spawn(async move {
                while let Some(signal) = out_rx.recv().await {
                    if client.send(signal_message(session_id.clone(), signal, None)).is_err() {
                        return;
                    }
                }
            })
        };
        let reports = {
            let client = client.clone();
            let session_id = session_id.clone();
            let mut state = call.media_state();
            tokio::spawn(async move {
                while state.changed().await.is_ok() {
                    let report =
                        ClientMessage::MediaStateReport { session_id: session_id.clone(), state: *state.borrow() };
                    if client.send(report).is_err() {
                        return;
                    }
                }
            })
        };
        let offerer = config.offerer;
        let uplink = Arc::new(Uplink {
            client: client.clone(),
            session_id: session_id.clone(),
            config: Mutex::new(config),
            state: Mutex::new(UplinkState::default()),
        });
        Ok(SessionCall {
            call,
            session_id,
            inbound: in_tx,
            tasks: [signals, reports],
            uplink,
            client: client.clone(),
            offerer,
            offer_when_peer_joins: AtomicBool::new(false),
            offers_received: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Feeds any client event to the call: server messages as
    /// [`SessionCall::handle`] does (the return value says whether one was
    /// consumed), plus what keeps the call alive across reconnects:
    ///
    /// * [`Event::Rejoined`] for this session (consumed): switch to the
    ///   room's fresh ICE servers; the seeker restarts ICE with a new offer
    ///   once the consultant is present (now, or on their
    ///   `participant.joined`, which is not consumed).
    /// * [`Event::Resumed`] (not consumed): switch to its fresh ICE servers.
    /// * A renegotiation offer from the other participant (any offer on the
    ///   seeker's side, any after the first on the consultant's), when the
    ///   call uses TURN: fetch fresh ICE servers (`ice.servers`) first, so
    ///   the answer's relayed candidates are allocated with valid
    ///   credentials even hours into the session.
    ///
    /// Awaited in the event loop, so the servers are in place before the
    /// next relayed offer is handled.
    pub async fn handle_event(&self, event: &Event) -> bool {
        match event {
            Event::Server(msg) => {
                if let ServerMessage::SdpOffer { session_id, from, .. } = msg
                    && *session_id == self.session_id
                    && self.uplink.lock().recorder.as_ref() != Some(from)
                {
                    let before = self.offers_received.fetch_add(1, Ordering::AcqRel);
                    if (self.offerer || before > 0) && self.uses_turn() {
                        match self.client.ice_servers().await {
                            Ok(servers) => self.use_ice_servers(&servers).await,
                            Err(err) => warn!(%err, "cannot fetch fresh ICE servers before answering"),
                        }
                    }
                }
                if let ServerMessage::ParticipantJoined { session_id, .. } = msg
                    && *session_id == self.session_id
                    && self.offerer
                    && self.offer_when_peer_joins.swap(false, Ordering::AcqRel)
                {
                    self.renegotiate().await;
                }
                self.handle(msg)
            }
            Event::Rejoined { room } if room.session_id == self.session_id => {
                self.use_ice_servers(&room.ice_servers).await;
                if self.offerer {
                    if room.participants.is_empty() {
                        self.offer_when_peer_joins.store(true, Ordering::Release);
                    } else {
                        self.renegotiate().await;
                    }
                }
                true
            }
            Event::Resumed { ice_servers, .. } => {
                self.use_ice_servers(ice_servers).await;
                false
            }
            _ => false,
        }
    }

    /// Whether the call's ICE servers include one with credentials (TURN).
    fn uses_turn(&self) -> bool {
        self.uplink.config.lock().unwrap_or_else(|e| e.into_inner()).ice_servers.iter().any(|s| s.credential.is_some())
    }

    /// Switches the call (and the next recorder uplink) to `servers`, if any.
    async fn use_ice_servers(&self, servers: &[parley_domain::protocol::IceServer]) {
        if servers.is_empty() {
            return;
        }
        self.uplink.config.lock().unwrap_or_else(|e| e.into_inner()).ice_servers = servers.to_vec();
        if let Err(err) = self.call.set_ice_servers(servers).await {
            warn!(%err, "cannot switch to the fresh ICE servers");
        }
    }

    /// The seeker's new offer after a rejoin: an ICE restart (anything
    /// relayed before is lost, and the paths may have changed).
    async fn renegotiate(&self) {
        if let Err(err) = self.call.restart_ice().await {
            warn!(%err, "cannot restart ICE after the rejoin");
        }
    }

    /// Restarts ICE with fresh STUN/TURN servers: asks the server for them
    /// (`ice.servers`), switches the call to them, then sends the restart
    /// offer ([`Call::restart_ice`]). Use it instead of
    /// [`Call::restart_ice`] when the connection failed late in a session,
    /// when the TURN credentials of the `room.join` may have expired.
    ///
    /// # Errors
    ///
    /// The `ice.servers` request's ([`SdkError`]), or the restart's
    /// ([`SdkError::Call`]).
    pub async fn restart_ice(&self) -> Result<(), SdkError> {
        let servers = self.client.ice_servers().await?;
        if !servers.is_empty() {
            self.uplink.config.lock().unwrap_or_else(|e| e.into_inner()).ice_servers = servers.clone();
            self.call.set_ice_servers(&servers).await.map_err(|e| SdkError::Call(e.to_string()))?;
        }
        self.call.restart_ice().await.map_err(|e| SdkError::Call(e.to_string()))
    }

    /// Feeds a server message to the call: returns `true` if it was for
    /// this session's media (an offer, answer or candidate, from the other
    /// participant or the recorder, or `recording.started` / `stopped`) and
    /// was consumed.
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        let recorder = self.uplink.lock().recorder.clone();
        let from_recorder = |from: &UserId| recorder.as_ref() == Some(from);
        let signal = match msg {
            ServerMessage::RecordingStarted { session_id, recorder_id } if *session_id == self.session_id => {
                self.uplink.lock().recorder = Some(recorder_id.clone());
                return true;
            }
            ServerMessage::RecordingStopped { session_id, .. } if *session_id == self.session_id => {
                self.uplink.close_current();
                self.uplink.lock().recorder = None;
                return true;
            }
            ServerMessage::SdpOffer { session_id, sdp, from } if *session_id == self.session_id => {
                if from_recorder(from) {
                    self.uplink.start(from.clone(), sdp.clone(), self.call.audio_payload());
                    return true;
                }
                Signal::Offer(sdp.clone())
            }
            ServerMessage::SdpAnswer { session_id, sdp, from } if *session_id == self.session_id => {
                if from_recorder(from) {
                    return true; // the uplink never offers
                }
                Signal::Answer(sdp.clone())
            }
            ServerMessage::IceCandidate { session_id, candidate, from } if *session_id == self.session_id => {
                if from_recorder(from) {
                    if let Some(tx) = &self.uplink.lock().inbound {
                        let _ = tx.send(Signal::Candidate(candidate.clone()));
                    }
                    return true;
                }
                Signal::Candidate(candidate.clone())
            }
            _ => return false,
        };
        let _ = self.inbound.send(signal);
        true
    }

    /// Replaces the encoded Opus frame sent every 20 ms, on the call and on
    /// the recorder's uplink (see [`Call::set_audio_payload`]).
    pub fn set_audio_payload(&self, frame: bytes::Bytes) {
        self.call.set_audio_payload(frame.clone());
        if let Some(uplink) = &self.uplink.lock().call {
            uplink.set_audio_payload(frame);
        }
    }

    /// The recorder's uplink call, while recording is on and it has started.
    pub fn recording_uplink(&self) -> Option<Arc<Call>> {
        self.uplink.lock().call.clone()
    }

    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Closes the peer connection (and the recorder's uplink) and stops
    /// forwarding. Idempotent.
    pub async fn close(&self) -> Result<(), SdkError> {
        for t in &self.tasks {
            t.abort();
        }
        self.uplink.close_current();
        self.call.close().await.map_err(|e| SdkError::Call(e.to_string()))
    }
}
