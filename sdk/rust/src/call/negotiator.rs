//! The negotiator task: the one place that touches SDP and ICE candidates.
//!
//! Running every offer, answer, rollback and candidate through one task
//! makes each step atomic with respect to the others, so the
//! perfect-negotiation bookkeeping needs no `makingOffer` race handling:
//! an offer collides exactly when one of ours is still waiting for its
//! answer.

use std::sync::Arc;

use parley_domain::protocol::IceCandidate;
use rtc::peer_connection::configuration::RTCOfferOptions;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};
use webrtc::peer_connection::{PeerConnection, RTCIceCandidateInit, RTCSessionDescription};

use super::handler::PcEvent;
use super::{CallError, Shared, Signal};

/// Most remote candidates held back at once; older ones are dropped first.
const MAX_BUFFERED_CANDIDATES: usize = 256;

/// Requests from the [`super::Call`] handle.
pub(super) enum Command {
    /// Restart ICE; the reply says whether the offer went out (or was queued).
    RestartIce(oneshot::Sender<Result<(), CallError>>),
}

pub(super) struct Negotiator {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    outbound: mpsc::UnboundedSender<Signal>,
    /// Perfect negotiation: the polite peer (the answerer) yields on glare.
    polite: bool,
    /// An offer of ours waits for its answer (signaling state
    /// `have-local-offer`).
    local_offer_pending: bool,
    /// Whether that pending offer restarts ICE.
    pending_offer_restarts_ice: bool,
    /// An ICE restart to offer once the current exchange completes.
    restart_queued: bool,
    /// A remote description has been applied (candidates can be added).
    have_remote_description: bool,
    /// The remote ICE username fragment in effect.
    remote_ufrag: Option<String>,
    /// The local ICE username fragment and first media id, stamped on the
    /// candidates we send.
    local_ufrag: Option<String>,
    local_mid: Option<String>,
    /// Remote candidates waiting for their description.
    buffered: Vec<IceCandidate>,
}

impl Negotiator {
    /// `polite`: this side yields on offer collisions (the answerer).
    pub(super) fn new(
        pc: Arc<dyn PeerConnection>,
        shared: Arc<Shared>,
        outbound: mpsc::UnboundedSender<Signal>,
        polite: bool,
    ) -> Self {
        Self {
            pc,
            shared,
            outbound,
            polite,
            local_offer_pending: false,
            pending_offer_restarts_ice: false,
            restart_queued: false,
            have_remote_description: false,
            remote_ufrag: None,
            local_ufrag: None,
            local_mid: None,
            buffered: Vec::new(),
        }
    }

    /// The offerer's first offer, sent from `Call::start` so that a failure
    /// reaches the caller.
    pub(super) async fn send_first_offer(&mut self) -> Result<(), CallError> {
        self.send_offer(false).await
    }

    /// Processes remote signals, local connection events and commands until
    /// the call is cancelled.
    pub(super) async fn run(
        mut self,
        mut inbound: mpsc::UnboundedReceiver<Signal>,
        mut events: mpsc::UnboundedReceiver<PcEvent>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        let cancel = self.shared.cancel.clone();
        let mut inbound_open = true;
        loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                Some(event) = events.recv() => self.on_event(event).await,
                Some(command) = commands.recv() => self.on_command(command).await,
                signal = inbound.recv(), if inbound_open => match signal {
                    Some(signal) => self.on_signal(signal).await,
                    None => {
                        debug!("inbound signal channel closed");
                        inbound_open = false;
                    }
                },
                else => break,
            }
        }
        debug!("negotiator stopped");
    }

    async fn on_event(&mut self, event: PcEvent) {
        match event {
            PcEvent::LocalCandidate(candidate) => {
                let candidate = IceCandidate {
                    candidate: candidate.candidate,
                    // webrtc-rs reports mid "" and no ufrag; browsers need a
                    // real mid, and the ufrag tells generations apart.
                    sdp_mid: self.local_mid.clone().or(candidate.sdp_mid.filter(|mid| !mid.is_empty())),
                    sdp_m_line_index: candidate.sdp_mline_index.or(Some(0)),
                    username_fragment: self.local_ufrag.clone(),
                };
                debug!(candidate = %candidate.candidate, "local candidate");
                self.send(Signal::Candidate(candidate));
            }
            PcEvent::NegotiationNeeded => {
                // The media and data layout is fixed when the call starts and
                // the offerer's first offer covers it, so there is nothing to
                // renegotiate here; offers after that are explicit
                // (`restart_ice`).
                debug!("negotiation needed (ignored: layout is fixed)");
            }
        }
    }

    async fn on_command(&mut self, command: Command) {
        match command {
            Command::RestartIce(reply) => {
                let result = self.restart_ice().await;
                let _ = reply.send(result);
            }
        }
    }

    async fn restart_ice(&mut self) -> Result<(), CallError> {
        if self.local_offer_pending {
            debug!("ICE restart queued behind the pending offer");
            self.restart_queued = true;
            return Ok(());
        }
        if !self.have_remote_description {
            return Err(CallError::InvalidState("ICE restart before the first offer/answer exchange"));
        }
        info!("restarting ICE");
        self.send_offer(true).await
    }

    async fn on_signal(&mut self, signal: Signal) {
        let result = match signal {
            Signal::Offer(sdp) => self.on_remote_offer(sdp).await,
            Signal::Answer(sdp) => self.on_remote_answer(sdp).await,
            Signal::Candidate(candidate) => {
                self.on_remote_candidate(candidate).await;
                Ok(())
            }
        };
        if let Err(err) = result {
            warn!(%err, "cannot apply a remote signal");
        }
    }

    /// Creates, applies and sends an offer.
    async fn send_offer(&mut self, ice_restart: bool) -> Result<(), CallError> {
        let options = ice_restart.then_some(RTCOfferOptions { ice_restart: true });
        let offer = self.pc.create_offer(options).await?;
        self.pc.set_local_description(offer.clone()).await?;
        self.local_offer_pending = true;
        self.pending_offer_restarts_ice = ice_restart;
        let restarted = self.note_local_description(&offer.sdp);
        debug!(ice_restart, "sending offer");
        self.send(Signal::Offer(offer.sdp));
        if restarted {
            self.announce_known_candidates().await;
        }
        Ok(())
    }

    async fn on_remote_offer(&mut self, sdp: String) -> Result<(), CallError> {
        let offer = RTCSessionDescription::offer(sdp)?;
        if self.local_offer_pending {
            if !self.polite {
                // Glare, impolite side: keep our offer; the polite peer
                // rolls back and answers it.
                info!("offer collision: ignoring the remote offer");
                return Ok(());
            }
            info!("offer collision: rolling back our offer");
            self.pc.set_local_description(RTCSessionDescription::rollback(None)?).await?;
            self.local_offer_pending = false;
            if self.pending_offer_restarts_ice {
                self.restart_queued = true;
            }
        }

        let ufrag = sdp_attribute(&offer.sdp, "ice-ufrag").map(str::to_owned);
        let remote_restarts_ice = self.remote_ufrag.is_some() && ufrag != self.remote_ufrag;
        self.pc.set_remote_description(offer).await?;
        self.remote_description_applied(ufrag).await;

        let answer = self.pc.create_answer(None).await?;
        self.pc.set_local_description(answer.clone()).await?;
        let restarted = self.note_local_description(&answer.sdp);
        debug!(remote_restarts_ice, "sending answer");
        self.send(Signal::Answer(answer.sdp));
        if restarted {
            self.announce_known_candidates().await;
        }

        if remote_restarts_ice {
            // The remote offer restarted ICE on both sides already.
            self.restart_queued = false;
        }
        self.send_queued_restart().await
    }

    async fn on_remote_answer(&mut self, sdp: String) -> Result<(), CallError> {
        if !self.local_offer_pending {
            // E.g. the answer to an offer we rolled back.
            info!("ignoring an answer: no offer of ours is pending");
            return Ok(());
        }
        let answer = RTCSessionDescription::answer(sdp)?;
        let ufrag = sdp_attribute(&answer.sdp, "ice-ufrag").map(str::to_owned);
        if let Err(err) = self.pc.set_remote_description(answer).await {
            // Back to stable, so that later offers (ours or theirs) work.
            self.local_offer_pending = false;
            if let Ok(rollback) = RTCSessionDescription::rollback(None)
                && let Err(rollback_err) = self.pc.set_local_description(rollback).await
            {
                warn!(%rollback_err, "cannot roll back after a bad answer");
            }
            return Err(err.into());
        }
        self.local_offer_pending = false;
        self.remote_description_applied(ufrag).await;
        self.send_queued_restart().await
    }

    async fn send_queued_restart(&mut self) -> Result<(), CallError> {
        if self.restart_queued && !self.local_offer_pending {
            self.restart_queued = false;
            info!("restarting ICE (queued)");
            self.send_offer(true).await?;
        }
        Ok(())
    }

    async fn on_remote_candidate(&mut self, candidate: IceCandidate) {
        if candidate.candidate.trim().is_empty() {
            // End of candidates: nothing to add.
            return;
        }
        if !self.have_remote_description || !self.is_current_generation(&candidate) {
            debug!(candidate = %candidate.candidate, "holding back a remote candidate");
            if self.buffered.len() >= MAX_BUFFERED_CANDIDATES {
                self.buffered.remove(0);
            }
            self.buffered.push(candidate);
            return;
        }
        self.add_remote_candidate(candidate).await;
    }

    /// After a remote offer or answer was applied: adopt its ICE ufrag and
    /// add the held-back candidates that belong to it. Others are stale
    /// (an older generation) and dropped.
    async fn remote_description_applied(&mut self, ufrag: Option<String>) {
        self.have_remote_description = true;
        if ufrag.is_some() {
            self.remote_ufrag = ufrag;
        }
        let buffered = std::mem::take(&mut self.buffered);
        for candidate in buffered {
            if self.is_current_generation(&candidate) {
                self.add_remote_candidate(candidate).await;
            } else {
                debug!(candidate = %candidate.candidate, "dropping a stale remote candidate");
            }
        }
    }

    /// A candidate without a ufrag is taken to belong to the current
    /// generation.
    fn is_current_generation(&self, candidate: &IceCandidate) -> bool {
        match (&candidate.username_fragment, &self.remote_ufrag) {
            (Some(theirs), Some(current)) => theirs == current,
            _ => true,
        }
    }

    async fn add_remote_candidate(&mut self, candidate: IceCandidate) {
        debug!(candidate = %candidate.candidate, "adding remote candidate");
        let init = RTCIceCandidateInit {
            candidate: candidate.candidate,
            sdp_mid: candidate.sdp_mid,
            sdp_mline_index: candidate.sdp_m_line_index,
            username_fragment: candidate.username_fragment,
            ..Default::default()
        };
        if let Err(err) = self.pc.add_ice_candidate(init).await {
            warn!(%err, "cannot add a remote candidate");
        }
    }

    /// Adopts the ICE ufrag and first media id of a description we applied
    /// locally. Returns whether it restarted ICE (the ufrag changed).
    fn note_local_description(&mut self, sdp: &str) -> bool {
        if let Some(mid) = sdp_attribute(sdp, "mid") {
            self.local_mid = Some(mid.to_owned());
        }
        let Some(ufrag) = sdp_attribute(sdp, "ice-ufrag") else {
            return false;
        };
        let restarted = self.local_ufrag.as_deref().is_some_and(|previous| previous != ufrag);
        self.local_ufrag = Some(ufrag.to_owned());
        restarted
    }

    /// After an ICE restart, sends the local candidates the connection
    /// already has again, under the new ufrag.
    ///
    /// webrtc-rs keeps its host candidates across a restart and does not
    /// report them again, while the remote peer (a browser in particular)
    /// drops the previous generation's candidates; without this it could
    /// only reach us through peer-reflexive candidates.
    async fn announce_known_candidates(&mut self) {
        let Some(description) = self.pc.local_description().await else {
            return;
        };
        let mut candidates: Vec<String> = Vec::new();
        for line in description.sdp.lines() {
            let Some(candidate) = line.trim_end().strip_prefix("a=") else {
                continue;
            };
            // RTP is muxed with RTCP: component 1 only (the description also
            // lists component 2 copies).
            let component = candidate.strip_prefix("candidate:").and_then(|value| value.split_whitespace().nth(1));
            if component == Some("1") && !candidates.iter().any(|known| known == candidate) {
                candidates.push(candidate.to_owned());
            }
        }
        debug!(count = candidates.len(), "re-announcing local candidates");
        for candidate in candidates {
            self.on_event(PcEvent::LocalCandidate(RTCIceCandidateInit { candidate, ..Default::default() })).await;
        }
    }

    fn send(&self, signal: Signal) {
        if self.outbound.send(signal).is_err() {
            debug!("outbound signal channel closed; dropping a signal");
        }
    }
}

/// The value of the first `a=<name>:<value>` line of an SDP.
fn sdp_attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|line| line.trim_end().strip_prefix("a=")?.strip_prefix(name)?.strip_prefix(':'))
}

#[cfg(test)]
mod tests {
    use super::sdp_attribute;

    #[test]
    fn finds_first_attribute_value() {
        let sdp = "v=0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
                   a=ice-ufrag:abcd\r\na=mid:0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
                   a=ice-ufrag:efgh\r\na=mid:1\r\n";
        assert_eq!(sdp_attribute(sdp, "ice-ufrag"), Some("abcd"));
        assert_eq!(sdp_attribute(sdp, "mid"), Some("0"));
        assert_eq!(sdp_attribute(sdp, "ice-pwd"), None);
        // A longer attribute name with the same prefix does not match.
        assert_eq!(sdp_attribute("a=midx:3\r\n", "mid"), None);
    }
}
