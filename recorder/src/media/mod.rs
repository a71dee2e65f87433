//! Media writers: one received track (one participant, one kind) → one file, without transcoding.
//!
//! - Opus → Ogg Opus (RFC 7845), see [`TrackCodec::Opus`].
//! - VP8 → IVF, see [`TrackCodec::Vp8`].
//!
//! The caller (the network side) pushes every RTP packet of the track as it arrives, with its
//! arrival time since the recording started, then calls [`TrackWriter::finish`]. The writer puts
//! packets back in order, handles loss, timestamp wraparound and reconnects (a new SSRC in the same
//! writer), and returns a [`TrackSummary`] that goes into the recording's [`Manifest`].
//!
//! Timing rules (same for audio and video):
//! - Media time 0 of a file is the arrival of its first packet; [`TrackSummary::start_ms`] says
//!   where that is in the recording, so tracks can be lined up.
//! - Within one RTP stream (SSRC) media time follows the RTP timestamps (u32 wraparound handled),
//!   so a lost run leaves a hole of the right length.
//! - A new SSRC (the participant rejoined) starts at its arrival time: the wall-clock absence
//!   becomes a media-time gap. Media time never goes backwards.
//! - Packets are reordered by sequence number (u16 wraparound handled) in a small buffer
//!   ([`AUDIO_REORDER_DEPTH`], [`VIDEO_REORDER_DEPTH`] packets); a packet that comes later than
//!   that, or twice, is discarded and counted in [`TrackSummary::discarded_packets`].
//!
//! The caller must push only the media stream's packets (not RTX or FEC streams, which have their
//! own SSRC and would be taken for a reconnect); payload types are not checked.

mod ivf;
mod manifest;
mod ogg_opus;
pub mod opus;
mod sequencer;
pub mod speech;
mod timeline;
pub mod vp8;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rtc::rtp::Packet;
use serde::{Deserialize, Serialize};

pub use manifest::{Manifest, ManifestTrack};
pub use sequencer::MAX_MISORDER;
pub use timeline::{MAX_AHEAD, MAX_BACKWARD};

use ivf::IvfFile;
use ogg_opus::OggOpusFile;
use opus::{MIN_FRAME_SAMPLES, OPUS_CLOCK_RATE};
use sequencer::{Released, Sequencer};
use timeline::Timeline;
use vp8::VP8_CLOCK_RATE;

/// Reorder buffer depth for audio, in packets: 10 (200 ms of 20 ms packets). A missing packet is
/// declared lost once this many later packets wait behind it.
pub const AUDIO_REORDER_DEPTH: usize = 10;

/// Reorder buffer depth for video, in packets: 16 (about 5 frames of 3 packets). Larger would
/// tolerate more reordering but delay loss detection, and with it [`TrackWriter::wants_key_frame`].
pub const VIDEO_REORDER_DEPTH: usize = 16;

/// Errors from writing a track or a manifest.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The output file could not be created.
    #[error("cannot create {path}: {source}")]
    Create {
        /// The path given to [`TrackWriter::create`] or [`Manifest::write_json`].
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing, flushing or syncing the file failed. The file is then incomplete; finish or drop
    /// the writer.
    #[error("writing media file: {0}")]
    Io(#[from] std::io::Error),
    /// The manifest could not be serialized.
    #[error("serializing manifest: {0}")]
    Json(#[from] serde_json::Error),
}

/// The codec of a track, which decides the file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackCodec {
    /// Opus audio (RFC 7587 RTP payload: one Opus packet per RTP packet, 48 kHz clock), written as
    /// Ogg Opus (RFC 7845), file extension `.ogg` (or `.opus`).
    Opus,
    /// VP8 video (RFC 7741 RTP payload, 90 kHz clock), written as IVF (fourcc `VP80`, timebase
    /// 1/90000 s), file extension `.ivf`.
    Vp8,
}

impl TrackCodec {
    /// `"opus"` or `"vp8"`, as in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackCodec::Opus => "opus",
            TrackCodec::Vp8 => "vp8",
        }
    }

    /// `"audio"` or `"video"`, as in the manifest.
    pub fn kind(self) -> &'static str {
        match self {
            TrackCodec::Opus => "audio",
            TrackCodec::Vp8 => "video",
        }
    }

    /// RTP clock rate in Hz: 48000 for Opus (RFC 7587 §4.1), 90000 for VP8 (RFC 7741 §4.1).
    pub fn clock_rate(self) -> u32 {
        match self {
            TrackCodec::Opus => OPUS_CLOCK_RATE,
            TrackCodec::Vp8 => VP8_CLOCK_RATE,
        }
    }

    /// Usual file extension, without the dot: `"ogg"` or `"ivf"`.
    pub fn file_extension(self) -> &'static str {
        match self {
            TrackCodec::Opus => "ogg",
            TrackCodec::Vp8 => "ivf",
        }
    }
}

/// What a finished track file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackSummary {
    /// The track's codec.
    pub codec: TrackCodec,
    /// Where the file's media time 0 sits, in ms since the recording started: the arrival of the
    /// track's first packet.
    pub start_ms: u64,
    /// RTP packets pushed, including discarded ones.
    pub packets: u64,
    /// Packets discarded: duplicates, too late for the reorder buffer, malformed payloads, or from
    /// an SSRC already replaced by a newer one.
    pub discarded_packets: u64,
    /// Media units written from received data: Opus packets (audio) or video frames. Excludes the
    /// loss-concealment packets inserted into gaps.
    pub frames: u64,
    /// Video frames received but not written (0 for audio): incomplete (a packet of the frame
    /// was lost), or inter frames before the first key frame of a stream.
    pub dropped_frames: u64,
    /// Media time covered by the file in ms, from media time 0 to the end of the last packet or
    /// frame, gaps included.
    pub duration_ms: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// RTP streams (SSRCs) seen: 1 + reconnects; 0 if no packet came.
    pub streams: u32,
    /// Runs of lost packets detected by sequence number within a stream (reconnects are counted in
    /// `streams`, not here).
    pub gaps: u32,
    /// Audio only (0 for video): ms of packets judged to carry speech, see
    /// [`speech::is_speech`].
    pub speech_ms: u64,
}

/// Writes one participant's one track to one file, without transcoding.
///
/// Not thread-safe by itself; the owner pushes from one task. Dropping a writer without
/// [`TrackWriter::finish`] leaves a file without its end (Ogg: no end-of-stream page; IVF: frame
/// count and size 0 in the header), which most players still read.
pub struct TrackWriter {
    path: PathBuf,
    codec: TrackCodec,
    sequencer: Sequencer,
    timeline: Timeline,
    packets: u64,
    discarded: u64,
    frames: u64,
    released: Vec<Released>,
    inner: Inner,
}

enum Inner {
    Audio(AudioState),
    Video(VideoState),
}

struct AudioState {
    file: OggOpusFile,
    /// 48 kHz samples written so far, PLC fill included: the granule position.
    granule: u64,
    last_toc: Option<u8>,
    speech_samples: u64,
    audio_level_id: Option<u8>,
}

struct FrameInProgress {
    ts: u32,
    pos: u64,
    data: Vec<u8>,
    corrupt: bool,
}

struct VideoState {
    file: IvfFile,
    current: Option<FrameInProgress>,
    need_key_frame: bool,
    dropped_since_key: bool,
    dropped_frames: u64,
    last_pts: Option<u64>,
    last_frame_ticks: u64,
    size: Option<(u16, u16)>,
}

impl TrackWriter {
    /// Create (truncate) `path` and start a track file.
    ///
    /// Opus → Ogg Opus (RFC 7845: `OpusHead`/`OpusTags` pages with granule 0, granule positions in
    /// 48 kHz samples, gaps filled with packet-loss-concealment packets per RFC 7845 §4.1).
    /// VP8 → IVF (fourcc `VP80`, timebase 1/90000 s, frame timestamps in 90 kHz units).
    pub fn create(path: &Path, codec: TrackCodec) -> Result<TrackWriter, MediaError> {
        let file = File::create(path).map_err(|source| MediaError::Create { path: path.to_owned(), source })?;
        let file = BufWriter::new(file);
        let (inner, depth) = match codec {
            TrackCodec::Opus => {
                let serial = ogg_serial(path);
                let audio = AudioState {
                    file: OggOpusFile::new(file, serial),
                    granule: 0,
                    last_toc: None,
                    speech_samples: 0,
                    audio_level_id: None,
                };
                (Inner::Audio(audio), AUDIO_REORDER_DEPTH)
            }
            TrackCodec::Vp8 => {
                let video = VideoState {
                    file: IvfFile::create(file, VP8_CLOCK_RATE)?,
                    current: None,
                    need_key_frame: true,
                    dropped_since_key: false,
                    dropped_frames: 0,
                    last_pts: None,
                    last_frame_ticks: 0,
                    size: None,
                };
                (Inner::Video(video), VIDEO_REORDER_DEPTH)
            }
        };
        Ok(TrackWriter {
            path: path.to_owned(),
            codec,
            sequencer: Sequencer::new(depth),
            timeline: Timeline::new(codec.clock_rate()),
            packets: 0,
            discarded: 0,
            frames: 0,
            released: Vec::new(),
            inner,
        })
    }

    /// Set the negotiated RTP header extension id (1..=14 one-byte, 1..=255 two-byte, RFC 8285) of
    /// `urn:ietf:params:rtp-hdrext:ssrc-audio-level` (RFC 6464), used for talk time. `None` (the
    /// default) makes talk time fall back to Opus packet sizes. Ignored for video.
    pub fn set_audio_level_extension_id(&mut self, id: Option<u8>) {
        if let Inner::Audio(audio) = &mut self.inner {
            audio.audio_level_id = id;
        }
    }

    /// The track's codec.
    pub fn codec(&self) -> TrackCodec {
        self.codec
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Video: does the writer need a key frame? True before the first key frame of a stream (inter
    /// frames are being dropped) and after a frame was dropped for loss (the picture is damaged
    /// until the next key frame). The network side should then send a PLI (RFC 4585 §6.3.1).
    /// Always false for audio.
    pub fn wants_key_frame(&self) -> bool {
        match &self.inner {
            Inner::Video(v) => v.need_key_frame || v.dropped_since_key,
            Inner::Audio(_) => false,
        }
    }

    /// One received RTP packet (as webrtc-rs 0.21's remote track gives it: header parsed, padding
    /// removed) with its `arrival` time since the recording started (server clock). Packets may be
    /// out of order, duplicated, or belong to a new SSRC after a reconnect; see the module docs.
    /// Malformed payloads are counted and skipped, never an error; errors are I/O only.
    pub fn push(&mut self, packet: &Packet, arrival: Duration) -> Result<(), MediaError> {
        self.packets += 1;
        let mut released = std::mem::take(&mut self.released);
        self.sequencer.push(packet, arrival, &mut released);
        let result = self.write_released(&mut released);
        self.released = released;
        result
    }

    /// Write out everything still buffered, close the stream properly (Ogg: end-of-stream page;
    /// IVF: frame count, width and height fixed up in the header), sync the file, and summarize it.
    pub fn finish(mut self) -> Result<TrackSummary, MediaError> {
        let mut released = std::mem::take(&mut self.released);
        self.sequencer.flush(&mut released);
        self.write_released(&mut released)?;
        let (duration_ms, dropped_frames, speech_ms) = match self.inner {
            Inner::Audio(audio) => {
                audio.file.finish()?;
                (
                    audio.granule * 1000 / u64::from(OPUS_CLOCK_RATE),
                    0,
                    audio.speech_samples * 1000 / u64::from(OPUS_CLOCK_RATE),
                )
            }
            Inner::Video(mut video) => {
                if video.current.take().is_some() {
                    // Last frame never saw its marker bit.
                    video.dropped_frames += 1;
                }
                let (width, height) = video.size.unwrap_or((0, 0));
                video.file.finish(width, height)?;
                let end = video.last_pts.map_or(0, |pts| pts + video.last_frame_ticks);
                (end * 1000 / u64::from(VP8_CLOCK_RATE), video.dropped_frames, 0)
            }
        };
        let bytes = std::fs::metadata(&self.path)?.len();
        Ok(TrackSummary {
            codec: self.codec,
            start_ms: self.timeline.origin().map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            packets: self.packets,
            discarded_packets: self.sequencer.discarded + self.discarded,
            frames: self.frames,
            dropped_frames,
            duration_ms,
            bytes,
            streams: self.sequencer.streams,
            gaps: self.sequencer.gaps,
            speech_ms,
        })
    }

    fn write_released(&mut self, released: &mut Vec<Released>) -> Result<(), MediaError> {
        for r in released.drain(..) {
            let written = match &mut self.inner {
                Inner::Audio(audio) => audio.write(&mut self.timeline, &r)?,
                Inner::Video(video) => video.write(&mut self.timeline, &r)?,
            };
            match written {
                Written::Unit => self.frames += 1,
                Written::Malformed => self.discarded += 1,
                Written::Nothing => {}
            }
        }
        Ok(())
    }
}

enum Written {
    /// An Opus packet or a video frame went into the file.
    Unit,
    /// The packet was not valid for the codec.
    Malformed,
    /// Nothing (yet): a video packet inside a frame, or a dropped frame.
    Nothing,
}

impl AudioState {
    fn write(&mut self, timeline: &mut Timeline, r: &Released) -> Result<Written, MediaError> {
        let payload = &r.packet.payload;
        let (Some(samples), Some(&toc)) = (opus::packet_samples(payload), payload.first()) else {
            return Ok(Written::Malformed);
        };
        let target = timeline.place(r.packet.header.timestamp, r.arrival, r.new_stream, self.granule);
        if !self.file.headers_written() {
            self.file.write_headers(if opus::is_stereo(payload) { 2 } else { 1 })?;
        }
        if target > self.granule {
            // A hole (loss, DTX, reconnect): fill it with PLC packets so granule positions stay equal
            // to the samples in the stream (RFC 7845 §4, §4.1). Rounded down to 2.5 ms.
            let hole = target - self.granule;
            if hole >= u64::from(MIN_FRAME_SAMPLES) {
                for (packet, samples) in opus::plc_packets(self.last_toc.unwrap_or(toc), hole) {
                    self.granule += u64::from(samples);
                    self.file.write_audio(packet.to_vec(), self.granule)?;
                }
            }
        }
        self.granule += u64::from(samples);
        self.file.write_audio(payload.to_vec(), self.granule)?;
        self.last_toc = Some(toc);
        if speech::is_speech(&r.packet, self.audio_level_id) {
            self.speech_samples += u64::from(samples);
        }
        Ok(Written::Unit)
    }
}

impl VideoState {
    /// Media position (90 kHz) before which nothing new may be placed.
    fn end(&self) -> u64 {
        self.last_pts.map_or(0, |pts| pts + 1)
    }

    fn drop_frame(&mut self) {
        self.dropped_frames += 1;
        self.dropped_since_key = true;
    }

    fn write(&mut self, timeline: &mut Timeline, r: &Released) -> Result<Written, MediaError> {
        let ts = r.packet.header.timestamp;
        let pos = timeline.place(ts, r.arrival, r.new_stream, self.end());
        if r.new_stream {
            if self.current.take().is_some() {
                self.drop_frame();
            }
            // A new stream's inter frames refer to pictures this file never had.
            self.need_key_frame = true;
        }
        if r.after_loss
            && let Some(frame) = self.current.as_mut()
        {
            frame.corrupt = true;
        }
        if self.current.as_ref().is_some_and(|f| f.ts != ts) {
            // The previous frame never saw its marker bit: its last packet was lost.
            self.current = None;
            self.drop_frame();
        }
        let Some(desc) = vp8::parse_descriptor(&r.packet.payload) else {
            let frame =
                self.current.get_or_insert_with(|| FrameInProgress { ts, pos, data: Vec::new(), corrupt: true });
            frame.corrupt = true;
            return Ok(Written::Malformed);
        };
        let frame = self.current.get_or_insert_with(|| FrameInProgress {
            ts,
            pos,
            data: Vec::new(),
            // Starting mid-frame means the frame's first packet was lost.
            corrupt: !desc.starts_frame(),
        });
        frame.data.extend_from_slice(&r.packet.payload[desc.len..]);
        if !r.packet.header.marker {
            return Ok(Written::Nothing);
        }
        let Some(frame) = self.current.take() else { return Ok(Written::Nothing) };
        let key = vp8::is_key_frame(&frame.data);
        if frame.corrupt || (self.need_key_frame && !key) {
            self.drop_frame();
            return Ok(Written::Nothing);
        }
        let pts = match self.last_pts {
            Some(last) => frame.pos.max(last + 1),
            None => frame.pos,
        };
        self.file.write_frame(&frame.data, pts)?;
        if let Some(last) = self.last_pts {
            let delta = pts - last;
            // Duration of the last frame, for the file's duration: the last frame interval, if sane (≤ 1 s).
            self.last_frame_ticks = if delta <= u64::from(VP8_CLOCK_RATE) { delta } else { 0 };
        }
        self.last_pts = Some(pts);
        if key {
            self.need_key_frame = false;
            self.dropped_since_key = false;
            if self.size.is_none() {
                self.size = vp8::key_frame_size(&frame.data);
            }
        }
        Ok(Written::Unit)
    }
}

/// An Ogg stream serial number (RFC 3533 §6: should be random) for a file.
fn ogg_serial(path: &Path) -> u32 {
    use std::hash::BuildHasher;
    let hash = std::collections::hash_map::RandomState::new().hash_one(path);
    // Only 32 bits are wanted.
    #[allow(clippy::cast_possible_truncation)]
    let serial = hash as u32;
    serial
}
