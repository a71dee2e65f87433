//! The recording manifest: plain data describing a recording's files, written as JSON next to them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{MediaError, TrackSummary};

/// Describes one recording (one session): when it ran and which track files it produced.
/// Serialized as JSON with snake_case field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Manifest {
    /// The session's id.
    pub session_id: String,
    /// When the recording started, Unix time in ms. Track `start_ms` values count from here.
    pub started_at_ms: i64,
    /// When the recording ended, Unix time in ms.
    pub ended_at_ms: i64,
    /// One entry per track file.
    pub tracks: Vec<ManifestTrack>,
}

/// One track file of a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ManifestTrack {
    /// The participant whose track this is.
    pub participant_id: String,
    /// `"audio"` or `"video"`.
    pub kind: String,
    /// `"opus"` or `"vp8"`.
    pub codec: String,
    /// File name, relative to the manifest's directory.
    pub file: String,
    /// ms from the recording start to the file's media time 0.
    pub start_ms: u64,
    /// File size in bytes.
    pub bytes: u64,
    /// Media time covered by the file in ms, gaps included.
    pub duration_ms: u64,
    /// RTP packets received.
    pub packets: u64,
    /// Opus packets or video frames written.
    pub frames: u64,
    /// Video frames dropped (incomplete or undecodable); 0 for audio.
    pub dropped_frames: u64,
    /// RTP streams (1 + reconnects).
    pub streams: u32,
    /// Lost-packet runs.
    pub gaps: u32,
    /// Talk time in ms (audio only; 0 for video).
    pub speech_ms: u64,
}

impl ManifestTrack {
    /// The manifest entry for a finished track file.
    pub fn from_summary(participant_id: impl Into<String>, file: impl Into<String>, s: &TrackSummary) -> Self {
        ManifestTrack {
            participant_id: participant_id.into(),
            kind: s.codec.kind().to_owned(),
            codec: s.codec.as_str().to_owned(),
            file: file.into(),
            start_ms: s.start_ms,
            bytes: s.bytes,
            duration_ms: s.duration_ms,
            packets: s.packets,
            frames: s.frames,
            dropped_frames: s.dropped_frames,
            streams: s.streams,
            gaps: s.gaps,
            speech_ms: s.speech_ms,
        }
    }
}

impl Manifest {
    /// Write the manifest as pretty JSON to `path`: to a temporary file next to it, synced, then
    /// renamed over `path`, so readers never see a half-written manifest.
    pub fn write_json(&self, path: &Path) -> Result<(), MediaError> {
        let json = serde_json::to_vec_pretty(self)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let create = |source| MediaError::Create { path: tmp.clone(), source };
        let mut file = std::fs::File::create(&tmp).map_err(create)?;
        std::io::Write::write_all(&mut file, &json)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    }

    /// Read a manifest written by [`Manifest::write_json`].
    pub fn read_json(path: &Path) -> Result<Manifest, MediaError> {
        let bytes = std::fs::read(path)?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}
