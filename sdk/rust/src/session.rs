//! [`SessionCall`]: a [`Call`] wired to a session room through a
//! [`SignalingClient`]. Outgoing offers, answers and candidates are sent as
//! `sdp.offer` / `sdp.answer` / `ice.candidate`; relayed ones are fed in
//! with [`SessionCall::handle`]; media state changes are reported as
//! `media.state` (DESIGN.md M11).
//!
//! The offerer (the seeker) should start once the other participant is in
//! the room — the room's `participants`, or a `participant.joined` event —
//! because the server relays only to participants who are present.

use parley_domain::SessionId;
use parley_domain::protocol::{ClientMessage, ServerMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::call::{Call, CallConfig, Signal};
use crate::{RoomInfo, SdkError, SignalingClient};

/// A WebRTC call in a session room.
pub struct SessionCall {
    /// The peer connection.
    pub call: Call,
    session_id: SessionId,
    inbound: mpsc::UnboundedSender<Signal>,
    tasks: [JoinHandle<()>; 2],
}

impl SessionCall {
    /// Starts a call in `room` (whose `offerer` and `ice_servers` override
    /// those in `config`).
    pub async fn start(
        client: &SignalingClient,
        room: &RoomInfo,
        mut config: CallConfig,
    ) -> Result<SessionCall, SdkError> {
        config.offerer = room.offerer;
        config.ice_servers = room.ice_servers.clone();
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let call = Call::start(config, out_tx, in_rx).await.map_err(|e| SdkError::Call(e.to_string()))?;
        let session_id = room.session_id.clone();
        let signals = {
            let client = client.clone();
            let session_id = session_id.clone();
            tokio::spawn(async move {
                while let Some(signal) = out_rx.recv().await {
                    let session_id = session_id.clone();
                    let msg = match signal {
                        Signal::Offer(sdp) => ClientMessage::SdpOffer { session_id, sdp },
                        Signal::Answer(sdp) => ClientMessage::SdpAnswer { session_id, sdp },
                        Signal::Candidate(candidate) => ClientMessage::IceCandidate { session_id, candidate },
                    };
                    if client.send(msg).is_err() {
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
        Ok(SessionCall { call, session_id, inbound: in_tx, tasks: [signals, reports] })
    }

    /// Feeds a server message to the call: returns `true` if it was an
    /// offer, answer or candidate for this session (and was consumed).
    pub fn handle(&self, msg: &ServerMessage) -> bool {
        let signal = match msg {
            ServerMessage::SdpOffer { session_id, sdp, .. } if *session_id == self.session_id => {
                Signal::Offer(sdp.clone())
            }
            ServerMessage::SdpAnswer { session_id, sdp, .. } if *session_id == self.session_id => {
                Signal::Answer(sdp.clone())
            }
            ServerMessage::IceCandidate { session_id, candidate, .. } if *session_id == self.session_id => {
                Signal::Candidate(candidate.clone())
            }
            _ => return false,
        };
        let _ = self.inbound.send(signal);
        true
    }

    /// The session.
    pub fn session_id(&self) -> &SessionId {
        &self.session_id
    }

    /// Closes the peer connection and stops forwarding. Idempotent.
    pub async fn close(&self) -> Result<(), SdkError> {
        for t in &self.tasks {
            t.abort();
        }
        self.call.close().await.map_err(|e| SdkError::Call(e.to_string()))
    }
}
