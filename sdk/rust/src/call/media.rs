//! The call's media tasks: the data channel reader, the remote track reader
//! and the audio pump. Each stops when the call is cancelled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use parley_domain::protocol::MediaState;
use rtc::media::Sample;
use rtc::rtp::extension::HeaderExtension;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::time::MissedTickBehavior;
use tracing::{Instrument, debug, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::rtp_transceiver::RtpSender;

use super::{
    AUDIO_FRAME_DURATION, CallError, ChannelState, MediaKind, OPUS_SILENCE_FRAME, RemoteRtp, Shared,
    VIDEO_FRAME_DURATION,
};

/// Reads the call's data channel: marks it open, forwards its messages to
/// [`super::Call::recv_data`], and ends that stream when the channel closes.
pub(super) fn spawn_data_channel_reader(shared: &Arc<Shared>, channel: Arc<dyn DataChannel>) {
    let taken = shared.data_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(data_tx) = taken else {
        // The call is closed, or a second channel with our label appeared.
        debug!(role = shared.role, "ignoring a data channel: none expected");
        return;
    };
    let shared = Arc::clone(shared);
    let span = shared.span();
    shared.tasks.clone().spawn(
        async move {
            loop {
                let event = tokio::select! {
                    _ = shared.cancel.cancelled() => break,
                    event = channel.poll() => event,
                };
                match event {
                    Some(DataChannelEvent::OnOpen) => {
                        debug!("data channel open");
                        shared.set_channel_open(Arc::clone(&channel));
                    }
                    Some(DataChannelEvent::OnMessage(message)) => {
                        let _ = data_tx.send(message.data.freeze());
                    }
                    Some(DataChannelEvent::OnClose) | None => {
                        debug!("data channel closed");
                        break;
                    }
                    Some(other) => debug!(?other, "data channel event"),
                }
            }
            shared.channel.send_replace(ChannelState::Closed);
        }
        .instrument(span),
    );
}

/// Reads a remote track until it ends, counting its RTP packets if it is
/// audio.
pub(super) fn spawn_track_reader(shared: &Arc<Shared>, track: Arc<dyn TrackRemote>) {
    if shared.cancel.is_cancelled() {
        return;
    }
    let shared = Arc::clone(shared);
    let span = shared.span();
    shared.tasks.clone().spawn(
        async move {
            let audio = track.kind().await == RtpCodecKind::Audio;
            let ssrc = track.ssrcs().await.first().copied();
            let mime_type = match ssrc {
                Some(ssrc) => track.codec(ssrc).await.map(|c| c.mime_type).unwrap_or_default(),
                None => String::new(),
            };
            let kind = if audio { MediaKind::Audio } else { MediaKind::Video };
            debug!(audio, mime_type, "remote track");
            if !audio {
                shared.remote_video.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&track));
            }
            loop {
                let event = tokio::select! {
                    _ = shared.cancel.cancelled() => break,
                    event = track.poll() => event,
                };
                match event {
                    Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                        if audio {
                            shared.audio_received.fetch_add(1, Ordering::Relaxed);
                        }
                        if let Some(sink) = &shared.rtp_sink {
                            let arrival = Instant::now();
                            let _ = sink.send(RemoteRtp { kind, mime_type: mime_type.clone(), packet, arrival });
                        }
                    }
                    Some(TrackRemoteEvent::OnEnded) | None => break,
                    Some(_) => {}
                }
            }
            if !audio {
                shared.remote_video.lock().unwrap_or_else(|e| e.into_inner()).retain(|t| !Arc::ptr_eq(t, &track));
            }
            debug!("remote track reader stopped");
        }
        .instrument(span),
    );
}

/// Sends one audio frame every 20 ms, from the first time the connection is
/// connected until the call closes. Each frame carries its RFC 6464 audio
/// level: 127 (silence, no voice) for the silence frame, else the call's
/// speech level with the voice flag.
pub(super) fn spawn_audio_pump(shared: &Arc<Shared>, track: Arc<TrackLocalStaticSample>, sender: Arc<dyn RtpSender>) {
    let pump = Pump { kind: MediaKind::Audio, every: AUDIO_FRAME_DURATION, track, sender };
    pump.spawn(shared, |shared| {
        let data = shared.audio_payload();
        let level = if data[..] == OPUS_SILENCE_FRAME {
            AudioLevelExtension { level: 127, voice: false }
        } else {
            AudioLevelExtension { level: shared.speech_audio_level, voice: true }
        };
        (data, vec![HeaderExtension::AudioLevel(level)])
    });
}

/// Sends `frame` every [`VIDEO_FRAME_DURATION`] from the first time the
/// connection is connected until the call closes.
pub(super) fn spawn_video_pump(
    shared: &Arc<Shared>,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    frame: Bytes,
) {
    let pump = Pump { kind: MediaKind::Video, every: VIDEO_FRAME_DURATION, track, sender };
    pump.spawn(shared, move |_| (frame.clone(), Vec::new()));
}

/// A local track fed one frame per interval.
struct Pump {
    /// Audio frames are counted ([`super::Call::audio_packets_sent`]).
    kind: MediaKind,
    every: std::time::Duration,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
}

impl Pump {
    /// Sends `next_frame(shared)` every interval, from the first time the
    /// connection is connected until the call closes. Re-reads the
    /// negotiated payload type after a failed write.
    fn spawn(
        self,
        shared: &Arc<Shared>,
        next_frame: impl Fn(&Shared) -> (Bytes, Vec<HeaderExtension>) + Send + 'static,
    ) {
        let shared = Arc::clone(shared);
        let span = shared.span();
        shared.tasks.clone().spawn(
            async move {
                let Pump { kind, every, track, sender } = self;
                tokio::select! {
                    _ = shared.cancel.cancelled() => return,
                    connected = wait_first_connected(&shared) => if !connected { return },
                }
                let Some(ssrc) = track.ssrcs().await.first().copied() else {
                    warn!(?kind, "local track has no SSRC; not sending");
                    return;
                };
                let mut ticker = tokio::time::interval(every);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                let mut payload_type = None;
                let mut failures: u64 = 0;
                debug!(?kind, ssrc, "sending");
                loop {
                    tokio::select! {
                        _ = shared.cancel.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    let pt = match payload_type {
                        Some(pt) => pt,
                        None => match negotiated_payload_type(sender.as_ref()).await {
                            Ok(pt) => *payload_type.insert(pt),
                            Err(err) => {
                                failures += 1;
                                if failures == 1 {
                                    warn!(?kind, %err, "no negotiated payload type");
                                }
                                continue;
                            }
                        },
                    };
                    let (data, extensions) = next_frame(&shared);
                    let sample = Sample { data, duration: every, ..Sample::new(Instant::now()) };
                    match track.write_sample(ssrc, pt, &sample, &extensions).await {
                        Ok(()) if kind == MediaKind::Audio => {
                            shared.audio_sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(()) => {}
                        Err(err) => {
                            failures += 1;
                            // Log the first failure and then every 250 of them.
                            if failures % 250 == 1 {
                                warn!(?kind, %err, failures, "cannot send a frame");
                            }
                            // The negotiated payload type may have changed.
                            payload_type = None;
                        }
                    }
                }
                debug!(?kind, "pump stopped");
            }
            .instrument(span),
        );
    }
}

/// Waits for the connection to be connected; `false` if the call closed
/// first.
async fn wait_first_connected(shared: &Shared) -> bool {
    let mut states = shared.media_state.subscribe();
    match states.wait_for(|state| matches!(state, MediaState::Connected | MediaState::Closed)).await {
        Ok(state) => *state == MediaState::Connected,
        Err(_) => false,
    }
}

/// The payload type negotiated for the sender's codec.
async fn negotiated_payload_type(sender: &dyn RtpSender) -> Result<u8, CallError> {
    sender
        .get_parameters()
        .await?
        .rtp_parameters
        .codecs
        .first()
        .map(|codec| codec.payload_type)
        .ok_or(CallError::InvalidState("no codec negotiated for audio"))
}
