//! The recorder's sink on the server: each finished recording's files are
//! uploaded to the recordings store and registered, and its manifest kept
//! for the recap.

use std::path::Path as FsPath;
use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::{Clock, SessionId};
use parley_recorder::media::Manifest;
use parley_recorder::service::RecordingSink;

use crate::store::SqlStore;
use crate::store::files::{self, RecordingFiles, RecordingRow};

/// Where the in-process (or `parley recorder`) recorder hands finished
/// recordings: each file is uploaded to the recordings store under
/// `sessions/<session>/<file>`, registered in `recordings`, and the
/// manifest kept for the recap.
pub struct ServerSink {
    /// The database.
    pub store: SqlStore,
    /// The recordings' storage.
    pub files: Arc<RecordingFiles>,
    /// The server clock (retention counts from the stored time).
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl RecordingSink for ServerSink {
    async fn finished(&self, session_id: &SessionId, dir: &FsPath, manifest: &Manifest) -> Result<(), String> {
        let now = self.clock.now().unix_millis();
        let mut rows = Vec::new();
        for track in &manifest.tracks {
            let key = format!("sessions/{session_id}/{}/{}", manifest.started_at_ms, track.file);
            let bytes = self.files.upload(&key, &dir.join(&track.file)).await.map_err(|e| e.to_string())?;
            let content_type = if track.codec == "opus" { "audio/ogg" } else { "video/x-ivf" };
            rows.push(RecordingRow {
                id: files::new_recording_id(),
                session_id: session_id.to_string(),
                participant_id: Some(track.participant_id.clone()),
                kind: track.kind.clone(),
                codec: track.codec.clone(),
                content_type: content_type.into(),
                object_key: key,
                bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
                duration_ms: i64::try_from(track.duration_ms).unwrap_or(i64::MAX),
                created_ms: now,
                deleted_ms: None,
            });
        }
        let key = format!("sessions/{session_id}/{}/manifest.json", manifest.started_at_ms);
        let bytes = self.files.upload(&key, &dir.join("manifest.json")).await.map_err(|e| e.to_string())?;
        rows.push(RecordingRow {
            id: files::new_recording_id(),
            session_id: session_id.to_string(),
            participant_id: None,
            kind: "manifest".into(),
            codec: "json".into(),
            content_type: "application/json".into(),
            object_key: key,
            bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
            duration_ms: 0,
            created_ms: now,
            deleted_ms: None,
        });
        for row in &rows {
            files::insert_recording(&self.store, row).await.map_err(|e| e.to_string())?;
        }
        let json = serde_json::to_string(manifest).map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT INTO recording_manifests (session_id, manifest, created_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (session_id) DO UPDATE SET manifest = excluded.manifest",
        )
        .bind(session_id.as_str())
        .bind(json)
        .bind(now)
        .execute(&self.store.pool())
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}
