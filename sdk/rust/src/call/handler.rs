//! The peer connection's event handler.
//!
//! webrtc-rs calls it on the connection's driver task, so every method
//! returns quickly: state goes into watches, SDP-relevant events go to the
//! negotiator task, and data channels and tracks get reader tasks of their
//! own.

use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::{debug, warn};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnectionEventHandler, RTCIceCandidateInit, RTCIceConnectionState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSignalingState,
};

use super::{DATA_CHANNEL_LABEL, Shared, media, media_state_of};

/// Events the negotiator acts on.
pub(super) enum PcEvent {
    /// A local ICE candidate was gathered; send it to the remote peer.
    LocalCandidate(RTCIceCandidateInit),
    /// The connection wants a new offer/answer exchange.
    NegotiationNeeded,
}

pub(super) struct Handler {
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<PcEvent>,
}

impl Handler {
    pub(super) fn new(shared: Arc<Shared>, events: mpsc::UnboundedSender<PcEvent>) -> Self {
        Self { shared, events }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_negotiation_needed(&self) {
        let _ = self.events.send(PcEvent::NegotiationNeeded);
    }

    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(candidate) => {
                let _ = self.events.send(PcEvent::LocalCandidate(candidate));
            }
            Err(err) => warn!(role = self.shared.role, %err, "cannot serialise a local candidate"),
        }
    }

    async fn on_signaling_state_change(&self, state: RTCSignalingState) {
        debug!(role = self.shared.role, %state, "signaling state");
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        debug!(role = self.shared.role, %state, "ICE connection state");
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(role = self.shared.role, %state, "peer connection state");
        self.shared.set_media_state(media_state_of(state));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        match channel.label().await {
            Ok(label) if label == DATA_CHANNEL_LABEL => {
                media::spawn_data_channel_reader(&self.shared, channel);
            }
            Ok(label) => {
                warn!(role = self.shared.role, %label, "ignoring an unexpected data channel");
            }
            Err(err) => debug!(role = self.shared.role, %err, "data channel gone before use"),
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        media::spawn_track_reader(&self.shared, track);
    }
}
