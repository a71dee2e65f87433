//! The recording service: a signaling client with the `recorder` role that
//! records the sessions the server assigns it (DESIGN.md §6).
//!
//! The server sends `recording.assigned` for each open session with
//! recording consent. For each, a task joins the room and offers every
//! participant present a receive-only peer connection (webrtc-rs, through
//! the Rust SDK's [`Call`]); the participants' SDKs answer with their audio
//! (and video). Received RTP packets go, without transcoding, to one
//! [`TrackWriter`] per participant and track. A participant who drops and
//! rejoins gets a new connection (a new RTP stream), which the writer
//! places at its arrival time: a gap, not corruption. While a video
//! writer [wants a key frame](TrackWriter::wants_key_frame) (a new stream,
//! or a frame lost), the participant is asked for one with an RTCP picture
//! loss indication, at most every [`KEY_FRAME_REQUEST_INTERVAL`]. When the session
//! ends, the files are finished, a [`Manifest`] written, and everything
//! handed to the [`RecordingSink`] (the server uploads and registers it).
//!
//! Time: packet arrival is measured on the monotonic clock from the
//! recording's start; only the manifest's start and end are wall-clock.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parley_domain::protocol::{ErrorCode, ServerMessage, UserInfo};
use parley_domain::{SessionId, UserId};
use parley_sdk::call::{AUDIO_LEVEL_URI, Call, CallConfig, MediaKind, RemoteRtp, Signal};
use parley_sdk::session::signal_message;
use parley_sdk::{Event, SdkError, SignalingClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::media::{Manifest, ManifestTrack, TrackCodec, TrackWriter};

/// Least time between two key frame requests (RTCP PLI) to one participant
/// while their video writer wants a key frame: the request or the key frame
/// may be lost, so it is repeated, but a key frame takes a moment to arrive
/// and is expensive for the sender.
pub const KEY_FRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// When a participant was last asked for a key frame (recording time).
#[derive(Debug, Default)]
struct KeyFrameRequests {
    last: HashMap<UserId, Duration>,
}

impl KeyFrameRequests {
    /// Whether to ask `user` now (and if so, remember it): the first time,
    /// then at most every [`KEY_FRAME_REQUEST_INTERVAL`].
    fn due(&mut self, user: &UserId, now: Duration) -> bool {
        if self.last.get(user).is_some_and(|t| now.saturating_sub(*t) < KEY_FRAME_REQUEST_INTERVAL) {
            return false;
        }
        self.last.insert(user.clone(), now);
        true
    }

    /// A new connection to `user`: its first request goes out at once.
    fn reset(&mut self, user: &UserId) {
        self.last.remove(user);
    }
}

/// Where finished recordings go: the server uploads the files to storage
/// and registers them with the session.
#[async_trait]
pub trait RecordingSink: Send + Sync + 'static {
    /// A session's recording is finished: its files and `manifest.json` are
    /// in `dir`, described by `manifest`. The directory is removed after
    /// this returns `Ok`; on `Err` it is kept for an operator to retry.
    async fn finished(&self, session_id: &SessionId, dir: &Path, manifest: &Manifest) -> Result<(), String>;
}

/// Makes a fresh `recorder` token for each (re)connection.
pub type TokenSource = Arc<dyn Fn() -> String + Send + Sync>;

/// How to run the recorder.
#[derive(Clone)]
pub struct RecorderConfig {
    /// The signaling endpoint, e.g. `ws://127.0.0.1:8080/v1/signal`.
    pub signal_url: String,
    /// Tokens with the `recorder` role.
    pub token: TokenSource,
    /// Where session files are written while recording (one folder each).
    pub work_dir: PathBuf,
    /// Local UDP addresses for the peer connections (see
    /// [`CallConfig::udp_addrs`]).
    pub udp_addrs: Vec<String>,
    /// Pause before reconnecting after the connection is lost.
    pub reconnect_delay: Duration,
}

/// Runs the recorder until `shutdown`: connects, records what it is
/// assigned, reconnects when the connection is lost. Sessions being
/// recorded at shutdown are finished and handed to `sink`. While another
/// connection of the same recorder is live (`recorder_connected`: in a
/// cluster, another node's embedded recorder), it stands by, retrying
/// every `reconnect_delay` quietly, and takes over once that one is gone.
pub async fn run(config: RecorderConfig, sink: Arc<dyn RecordingSink>, shutdown: CancellationToken) {
    let mut sessions: HashMap<SessionId, mpsc::UnboundedSender<ServerMessage>> = HashMap::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<SessionId>();
    let tasks = tokio_util::task::TaskTracker::new();
    // Another connection of this recorder is live (in a cluster, every
    // node's embedded recorder is the same recorder, and the hub admits
    // one): this one stands by and connects once that one is gone.
    let mut standing_by = false;
    'connect: while !shutdown.is_cancelled() {
        let (client, mut events) = match SignalingClient::connect(&config.signal_url, &(config.token)()).await {
            Ok(c) => c,
            Err(err) => {
                match &err {
                    SdkError::Server { code: ErrorCode::RecorderConnected, .. } if standing_by => {
                        debug!(%err, "recorder standing by")
                    }
                    SdkError::Server { code: ErrorCode::RecorderConnected, .. } => {
                        standing_by = true;
                        info!("another connection of this recorder is live; standing by until it is gone");
                    }
                    _ => warn!(%err, "recorder cannot connect; retrying"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(config.reconnect_delay) => continue,
                }
            }
        };
        // This loop reconnects and rejoins on its own terms.
        client.set_auto_rejoin(false);
        standing_by = false;
        info!(user = %client.user().id, "recorder connected");
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => break 'connect,
                Some(done) = done_rx.recv() => {
                    sessions.remove(&done);
                    continue;
                }
                event = events.recv() => event,
            };
            let msg = match event {
                Some(Event::Server(msg)) => msg,
                Some(Event::Closed { reason }) | Some(Event::ResumeFailed { reason }) => {
                    warn!(reason, "recorder connection lost; reconnecting");
                    break;
                }
                None => break,
                Some(_) => continue,
            };
            if let ServerMessage::RecordingAssigned { session_id } = &msg {
                sessions.retain(|_, tx| !tx.is_closed());
                if let Some(tx) = sessions.get(session_id) {
                    // Assigned again (this recorder reconnected): rejoin.
                    let _ = tx.send(msg);
                    continue;
                }
                let (tx, rx) = mpsc::unbounded_channel();
                sessions.insert(session_id.clone(), tx);
                let recording = SessionRecording::new(&config, client.clone(), session_id.clone());
                let (sink, done, sid) = (Arc::clone(&sink), done_tx.clone(), session_id.clone());
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    recording.run(rx, sink, stop).await;
                    let _ = done.send(sid);
                });
                continue;
            }
            if let Some(tx) = session_of(&msg).and_then(|sid| sessions.get(sid)) {
                let _ = tx.send(msg);
            }
        }
        // The connection is gone: the sessions' tasks keep their files and
        // wait to be assigned again on the next connection.
        for tx in sessions.values() {
            let _ = tx.send(ServerMessage::ServerShutdown { message: "recorder reconnecting".into() });
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(config.reconnect_delay) => {}
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// The session a server message is about, if any.
fn session_of(msg: &ServerMessage) -> Option<&SessionId> {
    match msg {
        ServerMessage::ParticipantJoined { session_id, .. }
        | ServerMessage::ParticipantLeft { session_id, .. }
        | ServerMessage::SdpOffer { session_id, .. }
        | ServerMessage::SdpAnswer { session_id, .. }
        | ServerMessage::IceCandidate { session_id, .. }
        | ServerMessage::SessionEnded { session_id, .. } => Some(session_id),
        _ => None,
    }
}

/// One receive-only connection to a participant.
struct Peer {
    call: Call,
    inbound: mpsc::UnboundedSender<Signal>,
}

/// The recording of one session.
struct SessionRecording {
    client: SignalingClient,
    session_id: SessionId,
    dir: PathBuf,
    udp_addrs: Vec<String>,
    started: Instant,
    started_at_ms: i64,
    writers: HashMap<(UserId, MediaKind), TrackWriter>,
    peers: HashMap<UserId, Peer>,
    rtp_tx: mpsc::UnboundedSender<(UserId, RemoteRtp)>,
    rtp_rx: mpsc::UnboundedReceiver<(UserId, RemoteRtp)>,
    ice_servers: Vec<parley_domain::protocol::IceServer>,
    /// The audio-level extension id of our offers (RFC 6464, for talk time).
    level_id: Option<u8>,
    key_frames: KeyFrameRequests,
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl SessionRecording {
    fn new(config: &RecorderConfig, client: SignalingClient, session_id: SessionId) -> Self {
        let (rtp_tx, rtp_rx) = mpsc::unbounded_channel();
        SessionRecording {
            dir: config.work_dir.join(session_id.as_str()),
            client,
            session_id,
            udp_addrs: config.udp_addrs.clone(),
            started: Instant::now(),
            started_at_ms: unix_ms(),
            writers: HashMap::new(),
            peers: HashMap::new(),
            rtp_tx,
            rtp_rx,
            ice_servers: Vec::new(),
            level_id: None,
            key_frames: KeyFrameRequests::default(),
        }
    }

    async fn run(
        mut self,
        mut messages: mpsc::UnboundedReceiver<ServerMessage>,
        sink: Arc<dyn RecordingSink>,
        shutdown: CancellationToken,
    ) {
        if let Err(err) = std::fs::create_dir_all(&self.dir) {
            warn!(%err, dir = %self.dir.display(), "cannot create the recording folder");
            return;
        }
        let mut joined = self.join().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((user, rtp)) = self.rtp_rx.recv() => self.write(user, rtp),
                msg = messages.recv() => match msg {
                    None => break,
                    Some(ServerMessage::SessionEnded { .. }) => break,
                    Some(ServerMessage::RecordingAssigned { .. }) => joined = self.join().await,
                    Some(ServerMessage::ServerShutdown { .. }) => {
                        // Our connection dropped: the peers' media may go on
                        // (it does not pass the server); wait to be assigned again.
                        joined = false;
                    }
                    Some(msg) if joined => self.on_message(msg).await,
                    Some(_) => {}
                },
            }
        }
        self.finish(sink).await;
    }

    /// Joins the room and offers a connection to everyone present.
    async fn join(&mut self) -> bool {
        match self.client.join(&self.session_id).await {
            Ok(room) => {
                self.ice_servers = room.ice_servers.clone();
                for user in room.participants {
                    self.connect(&user).await;
                }
                info!(session = %self.session_id, "recording");
                true
            }
            Err(err) => {
                warn!(session = %self.session_id, %err, "recorder cannot join the room");
                false
            }
        }
    }

    async fn on_message(&mut self, msg: ServerMessage) {
        match msg {
            ServerMessage::ParticipantJoined { user, .. } => self.connect(&user).await,
            ServerMessage::ParticipantLeft { user_id, .. } => {
                if let Some(peer) = self.peers.remove(&user_id) {
                    let _ = peer.call.close().await;
                }
            }
            ServerMessage::SdpAnswer { from, sdp, .. } => self.signal(&from, Signal::Answer(sdp)),
            ServerMessage::SdpOffer { from, sdp, .. } => self.signal(&from, Signal::Offer(sdp)),
            ServerMessage::IceCandidate { from, candidate, .. } => self.signal(&from, Signal::Candidate(candidate)),
            _ => {}
        }
    }

    fn signal(&self, from: &UserId, signal: Signal) {
        if let Some(peer) = self.peers.get(from) {
            let _ = peer.inbound.send(signal);
        }
    }

    /// Offers `user` a fresh receive-only connection (replacing any old one).
    async fn connect(&mut self, user: &UserInfo) {
        if let Some(old) = self.peers.remove(&user.id) {
            let _ = old.call.close().await;
        }
        self.key_frames.reset(&user.id);
        let (sink_tx, mut sink_rx) = mpsc::unbounded_channel::<RemoteRtp>();
        let tagged = self.rtp_tx.clone();
        let id = user.id.clone();
        tokio::spawn(async move {
            while let Some(rtp) = sink_rx.recv().await {
                if tagged.send((id.clone(), rtp)).is_err() {
                    return;
                }
            }
        });
        let config = CallConfig {
            offerer: true,
            receive_only: true,
            send_audio: false,
            data_channel: false,
            ice_servers: self.ice_servers.clone(),
            udp_addrs: self.udp_addrs.clone(),
            resolve_mdns_candidates: false,
            rtp_sink: Some(sink_tx),
            ..CallConfig::default()
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let call = match Call::start(config, out_tx, in_rx).await {
            Ok(call) => call,
            Err(err) => {
                warn!(%err, user = %user.id, "recorder cannot start a connection");
                return;
            }
        };
        let (client, session_id, to) = (self.client.clone(), self.session_id.clone(), user.id.clone());
        tokio::spawn(async move {
            while let Some(signal) = out_rx.recv().await {
                if client.send(signal_message(session_id.clone(), signal, Some(to.clone()))).is_err() {
                    return;
                }
            }
        });
        // Our offer fixes the id; the answer echoes it.
        let level_id = call.local_extension_id(AUDIO_LEVEL_URI).await;
        if level_id.is_some() {
            self.level_id = level_id;
        }
        if let Some(w) = self.writers.get_mut(&(user.id.clone(), MediaKind::Audio)) {
            w.set_audio_level_extension_id(self.level_id);
        }
        debug!(user = %user.id, ?level_id, "recorder offered a connection");
        self.peers.insert(user.id.clone(), Peer { call, inbound: in_tx });
    }

    /// Writes one received packet to its participant's track file.
    fn write(&mut self, user: UserId, rtp: RemoteRtp) {
        let codec = match rtp.kind {
            MediaKind::Audio if rtp.mime_type.eq_ignore_ascii_case("audio/opus") => TrackCodec::Opus,
            MediaKind::Video if rtp.mime_type.eq_ignore_ascii_case("video/vp8") => TrackCodec::Vp8,
            _ => return,
        };
        let arrival = rtp.arrival.saturating_duration_since(self.started);
        let key = (user.clone(), rtp.kind);
        if !self.writers.contains_key(&key) {
            let path = self.dir.join(format!("{}-{}.{}", user, codec.kind(), codec.file_extension()));
            match TrackWriter::create(&path, codec) {
                Ok(mut w) => {
                    w.set_audio_level_extension_id(self.level_id);
                    self.writers.insert(key.clone(), w);
                }
                Err(err) => {
                    warn!(%err, "cannot create a track file");
                    return;
                }
            }
        }
        let Some(w) = self.writers.get_mut(&key) else { return };
        if let Err(err) = w.push(&rtp.packet, arrival) {
            debug!(%err, "packet not written");
        }
        if w.wants_key_frame()
            && self.key_frames.due(&user, arrival)
            && let Some(peer) = self.peers.get(&user)
        {
            let tracks = peer.call.request_key_frame();
            debug!(%user, tracks, "asked for a key frame");
        }
    }

    /// Closes the connections, finishes the files and hands them over.
    async fn finish(mut self, sink: Arc<dyn RecordingSink>) {
        for (_, peer) in self.peers.drain() {
            let _ = peer.call.close().await;
        }
        while let Ok((user, rtp)) = self.rtp_rx.try_recv() {
            self.write(user, rtp);
        }
        let mut tracks = Vec::new();
        for ((user, _), writer) in self.writers.drain() {
            let file = writer.path().file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            match writer.finish() {
                Ok(summary) => tracks.push(ManifestTrack::from_summary(user.as_str(), file, &summary)),
                Err(err) => warn!(%err, file, "cannot finish a track file"),
            }
        }
        tracks.sort_by(|a, b| (&a.participant_id, &a.kind).cmp(&(&b.participant_id, &b.kind)));
        let manifest = Manifest {
            session_id: self.session_id.to_string(),
            started_at_ms: self.started_at_ms,
            ended_at_ms: unix_ms(),
            tracks,
        };
        if let Err(err) = manifest.write_json(&self.dir.join("manifest.json")) {
            warn!(%err, "cannot write the manifest");
        }
        match sink.finished(&self.session_id, &self.dir, &manifest).await {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&self.dir);
                info!(session = %self.session_id, files = manifest.tracks.len(), "recording stored");
            }
            Err(err) => warn!(session = %self.session_id, %err, dir = %self.dir.display(), "recording kept locally"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_frames_are_asked_for_at_once_then_at_most_every_interval() {
        let (sam, cora) = (UserId::parse("sam").unwrap(), UserId::parse("cora").unwrap());
        let mut requests = KeyFrameRequests::default();
        let ms = Duration::from_millis;
        assert!(requests.due(&sam, ms(1000)), "the first request goes out at once");
        assert!(!requests.due(&sam, ms(1000) + KEY_FRAME_REQUEST_INTERVAL - ms(1)));
        assert!(requests.due(&cora, ms(1001)), "participants are throttled separately");
        assert!(requests.due(&sam, ms(1000) + KEY_FRAME_REQUEST_INTERVAL));
        assert!(!requests.due(&sam, ms(1600)));
        requests.reset(&sam);
        assert!(requests.due(&sam, ms(1601)), "a new connection is asked at once");
    }
}
