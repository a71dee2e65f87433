//! Recordings (DESIGN.md §6, docs/rules.md R1–R5): the recordings API and
//! the recap ([`http`]), signed downloads ([`download`]), the recorder's
//! sink ([`sink`]) and retention ([`retention`]). Consent and the files
//! themselves live in the store ([`crate::store::consent`],
//! [`crate::store::files`]).

pub mod download;
pub mod http;
pub mod retention;
pub mod sink;
pub mod storage;

pub use http::recap_markdown;
pub use sink::ServerSink;

use axum::Router;
use parley_domain::protocol::rest::RecordingFile;
use parley_domain::{SessionId, UserId};

use crate::kernel::{ApiError, AppState};
use crate::store::files;

/// The routes of the recordings area.
pub fn router(state: AppState) -> Router {
    http::router(state.clone()).merge(download::router(state))
}

/// The session's stored files (not deleted) with fresh signed links, each
/// valid `PARLEY_RECORDING_URL_TTL_SECS` of server time (R2).
pub(crate) async fn files_of(s: &AppState, id: &SessionId) -> Result<Vec<RecordingFile>, ApiError> {
    let rows = files::recordings_of(&s.store, id).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = s.clock.now();
    rows.into_iter()
        .filter(|r| r.deleted_ms.is_none())
        .map(|r| {
            let link = s.files.signed_url(&r.id, now);
            Ok(RecordingFile {
                participant_id: r
                    .participant_id
                    .map(UserId::parse)
                    .transpose()
                    .map_err(|e| ApiError::Internal(e.to_string()))?,
                id: r.id,
                kind: r.kind,
                codec: r.codec,
                content_type: r.content_type,
                bytes: u64::try_from(r.bytes).unwrap_or(0),
                duration_ms: u64::try_from(r.duration_ms).unwrap_or(0),
                url: link.url,
                url_expires_at_ms: link.expires_at_ms,
            })
        })
        .collect()
}
