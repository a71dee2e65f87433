//! Talk-time detection for one Opus RTP packet.

use rtc::rtp::Packet;
use rtc::rtp::extension::audio_level_extension::AudioLevelExtension;
use rtc::shared::marshal::Unmarshal;

/// Quietest RFC 6464 audio level that counts as speech, in -dBov: 50, i.e. -50 dBov or louder counts
/// as speech even without the V flag. Speech on a
/// headset sits around -20..-40 dBov and digital silence is reported as 127; -50 dB is also the
/// default threshold of the widely used `hark` speaking detector.
pub const SPEECH_LEVEL_MAX: u8 = 50;

/// Largest Opus packet (bytes) treated as silence when no audio level is available: 1–3 byte packets
/// are DTX / comfort-noise frames, e.g. libwebrtc's 3-byte silence frame `F8 FF FE`.
pub const SILENCE_PACKET_MAX_BYTES: usize = 3;

/// Does this packet carry speech?
///
/// 1. With the negotiated `urn:ietf:params:rtp-hdrext:ssrc-audio-level` extension id and the
///    extension present (RFC 6464 §3): speech when the V (voice activity) flag is set or the level
///    is at most [`SPEECH_LEVEL_MAX`] -dBov.
/// 2. Otherwise, from Opus itself: a packet of at most [`SILENCE_PACKET_MAX_BYTES`] bytes is
///    silence, anything larger is speech. This over-counts when the sender does not use DTX (it then
///    sends full-size packets of background noise): treat it as an upper bound.
pub fn is_speech(packet: &Packet, audio_level_id: Option<u8>) -> bool {
    if let Some(level) = audio_level_id.and_then(|id| packet.header.get_extension(id))
        && let Ok(level) = AudioLevelExtension::unmarshal(&mut level.clone())
    {
        return level.voice || level.level <= SPEECH_LEVEL_MAX;
    }
    packet.payload.len() > SILENCE_PACKET_MAX_BYTES
}
