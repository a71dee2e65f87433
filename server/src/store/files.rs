//! Recording files (DESIGN.md §6): the object store they live in, expiring
//! signed download links, and the `recordings` table (migration 0004).
//! `GET /v1/files/{recording_id}` is served by the recordings area.
//!
//! A download link is the path `/v1/files/{id}?expires={unix s}&sig={hex}`
//! where `sig` is the HMAC-SHA256, keyed with `PARLEY_RECORDING_URL_SECRET`,
//! of `{id}\n{expires}`. The signature is the authorisation (like an S3
//! presigned URL): whoever holds the link may download until it expires.
//! Only the recordings API hands links out, to those allowed to see them.

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use parley_domain::{SessionId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use crate::store::SqlStore;

type HmacSha256 = Hmac<Sha256>;

/// Bytes read from a local file per part of an upload (multipart chunks of
/// object_store's default 5 MiB are assembled from these).
const UPLOAD_READ_BYTES: usize = 256 * 1024;

/// Parts of one upload in flight at most.
const UPLOAD_CONCURRENCY: usize = 4;

/// A failure of recording storage, links or the `recordings` table.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The object store failed (or has no such object).
    #[error("recording store: {0}")]
    Store(#[from] object_store::Error),
    /// An object key that is not a valid store path (empty segments, `..`).
    #[error("invalid object key {key:?}: {why}")]
    BadKey {
        /// The key given.
        key: String,
        /// Why it was refused.
        why: String,
    },
    /// A local file could not be read (upload).
    #[error("{path}: {source}")]
    Io {
        /// The local file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `recordings` table could not be read or written.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The store configuration cannot be used (names the key).
    #[error("{0}")]
    Config(String),
    /// A download link without `expires`/`sig`, or whose signature does
    /// not match its recording id and expiry.
    #[error("bad or missing link signature")]
    BadSignature,
    /// A download link past its expiry (Unix seconds).
    #[error("the link expired at {expires} (Unix seconds)")]
    LinkExpired {
        /// The link's `expires`, Unix seconds.
        expires: i64,
    },
}

/// A signed, expiring download link of one recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUrl {
    /// A path relative to the server's base URL:
    /// `/v1/files/{recording_id}?expires={unix s}&sig={hex}`.
    pub url: String,
    /// When the link stops working, server Unix milliseconds (a whole second).
    pub expires_at_ms: i64,
}

/// The recordings' object store, with the key and lifetime of download
/// links. Shared (`Arc`) by the routes, the recorder and retention.
pub struct RecordingFiles {
    store: Arc<dyn ObjectStore>,
    /// HMAC-SHA256 keyed with `PARLEY_RECORDING_URL_SECRET` (or the dev one).
    key: HmacSha256,
    /// Lifetime of a signed link.
    ttl: Duration,
}

impl std::fmt::Debug for RecordingFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingFiles").field("store", &self.store.to_string()).field("ttl", &self.ttl).finish()
    }
}

impl RecordingFiles {
    /// Files in `store`, links signed with `secret` and valid for `ttl`.
    pub fn new(store: Arc<dyn ObjectStore>, secret: &[u8], ttl: Duration) -> Result<RecordingFiles, FilesError> {
        let key = <HmacSha256 as Mac>::new_from_slice(secret)
            .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_URL_SECRET: {e}")))?;
        Ok(RecordingFiles { store, key, ttl })
    }

    /// The object store: the recorder writes through it (keys as in
    /// [`RecordingRow::object_key`]).
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.store.clone()
    }

    /// How long a signed link works.
    pub fn link_ttl(&self) -> Duration {
        self.ttl
    }

    /// Streams the local file `local` into the store under `key` (a
    /// multipart upload, so large files never sit in memory); returns its
    /// size in bytes. A failed upload is aborted and leaves no object.
    pub async fn upload(&self, key: &str, local: &FsPath) -> Result<u64, FilesError> {
        let location = object_path(key)?;
        let io = |source| FilesError::Io { path: local.display().to_string(), source };
        let mut file = tokio::fs::File::open(local).await.map_err(io)?;
        let upload = self.store.put_multipart(&location).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut buf = vec![0u8; UPLOAD_READ_BYTES];
        let mut total: u64 = 0;
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(io(e));
                }
            };
            if let Err(e) = writer.wait_for_capacity(UPLOAD_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(e.into());
            }
            writer.write(&buf[..n]);
            total += n as u64;
        }
        writer.finish().await?;
        Ok(total)
    }

    /// A download link of `recording_id`, valid from `now` (server clock)
    /// for [`RecordingFiles::link_ttl`]. It does not check that the
    /// recording exists: the route does, when the link is used.
    pub fn signed_url(&self, recording_id: &str, now: Timestamp) -> SignedUrl {
        let expires = now.plus(self.ttl).unix_secs();
        let sig = hex::encode(self.mac(recording_id, expires).finalize().into_bytes());
        SignedUrl {
            url: format!("/v1/files/{recording_id}?expires={expires}&sig={sig}"),
            expires_at_ms: expires.saturating_mul(1000),
        }
    }

    /// Checks a link's `expires` (Unix seconds) and `sig` for
    /// `recording_id` at `now`: the signature first (in constant time),
    /// then the expiry.
    pub fn verify(
        &self,
        recording_id: &str,
        expires: Option<&str>,
        sig: Option<&str>,
        now: Timestamp,
    ) -> Result<(), FilesError> {
        let expires: i64 = expires.and_then(|e| e.parse().ok()).ok_or(FilesError::BadSignature)?;
        let sig = sig.and_then(|s| hex::decode(s).ok()).ok_or(FilesError::BadSignature)?;
        self.mac(recording_id, expires).verify_slice(&sig).map_err(|_| FilesError::BadSignature)?;
        if now.unix_millis() >= expires.saturating_mul(1000) {
            return Err(FilesError::LinkExpired { expires });
        }
        Ok(())
    }

    /// Deletes the object at `key`: `Ok(true)` if it was there, `Ok(false)`
    /// if it was already gone (stores such as S3 delete missing objects
    /// without complaint, so a `HEAD` comes first).
    pub async fn delete(&self, key: &str) -> Result<bool, FilesError> {
        let location = object_path(key)?;
        match self.store.head(&location).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        match self.store.delete(&location).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn mac(&self, recording_id: &str, expires: i64) -> HmacSha256 {
        let mut mac = self.key.clone();
        mac.update(recording_id.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }
}

pub(crate) fn object_path(key: &str) -> Result<ObjectPath, FilesError> {
    if key.is_empty() {
        return Err(FilesError::BadKey { key: key.into(), why: "empty".into() });
    }
    ObjectPath::parse(key).map_err(|e| FilesError::BadKey { key: key.into(), why: e.to_string() })
}

/// A new recording id: `rec_` and a UUIDv7 in hex (time-ordered).
pub fn new_recording_id() -> String {
    format!("rec_{}", uuid::Uuid::now_v7().simple())
}

/// One row of `recordings`: a stored file, a participant's track or a
/// session's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct RecordingRow {
    /// `rec_<uuid>` ([`new_recording_id`]).
    pub id: String,
    /// The session recorded.
    pub session_id: String,
    /// Whose track; `None` for the manifest.
    pub participant_id: Option<String>,
    /// `audio`, `video` or `manifest`.
    pub kind: String,
    /// `opus`, `vp8`, `json`.
    pub codec: String,
    /// Served as `Content-Type`: `audio/ogg`, `video/x-ivf`, `application/json`.
    pub content_type: String,
    /// Key in the object store, e.g. `sessions/<session>/<participant>-audio.ogg`; unique.
    pub object_key: String,
    /// Size, bytes.
    pub bytes: i64,
    /// Length of the recording, milliseconds (0 for a manifest).
    pub duration_ms: i64,
    /// When the file was stored, server Unix ms (retention counts from here).
    pub created_ms: i64,
    /// When retention deleted the file, server Unix ms; `None` while it exists.
    pub deleted_ms: Option<i64>,
}

/// Inserts `row` into `recordings` (after its file is in the store).
pub async fn insert_recording(store: &SqlStore, row: &RecordingRow) -> Result<(), FilesError> {
    sqlx::query(
        "INSERT INTO recordings (id, session_id, participant_id, kind, codec, content_type, object_key, bytes, \
         duration_ms, created_ms, deleted_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&row.id)
    .bind(&row.session_id)
    .bind(&row.participant_id)
    .bind(&row.kind)
    .bind(&row.codec)
    .bind(&row.content_type)
    .bind(&row.object_key)
    .bind(row.bytes)
    .bind(row.duration_ms)
    .bind(row.created_ms)
    .bind(row.deleted_ms)
    .execute(&store.pool())
    .await?;
    Ok(())
}

/// Every recording of `session_id` (deleted ones too: see
/// [`RecordingRow::deleted_ms`]), oldest first.
pub async fn recordings_of(store: &SqlStore, session_id: &SessionId) -> Result<Vec<RecordingRow>, FilesError> {
    let rows = sqlx::query_as::<_, RecordingRow>(
        "SELECT id, session_id, participant_id, kind, codec, content_type, object_key, bytes, duration_ms, \
         created_ms, deleted_ms FROM recordings WHERE session_id = $1 ORDER BY created_ms, id",
    )
    .bind(session_id.as_str())
    .fetch_all(&store.pool())
    .await?;
    Ok(rows)
}

/// The recording `id`, deleted or not.
pub async fn recording(store: &SqlStore, id: &str) -> Result<Option<RecordingRow>, FilesError> {
    let row = sqlx::query_as::<_, RecordingRow>(
        "SELECT id, session_id, participant_id, kind, codec, content_type, object_key, bytes, duration_ms, \
         created_ms, deleted_ms FROM recordings WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&store.pool())
    .await?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> RecordingFiles {
        let store = Arc::new(object_store::memory::InMemory::new());
        RecordingFiles::new(store, b"0123456789abcdef0123456789abcdef", Duration::from_secs(900)).unwrap()
    }

    fn query(url: &str) -> (String, String) {
        let q = url.split_once('?').unwrap().1;
        let (e, s) = q.split_once('&').unwrap();
        (e.strip_prefix("expires=").unwrap().into(), s.strip_prefix("sig=").unwrap().into())
    }

    #[test]
    fn a_link_verifies_until_it_expires() {
        let f = files();
        let now = Timestamp::from_unix_millis(1_700_000_000_500);
        let link = f.signed_url("rec_1", now);
        assert_eq!(link.expires_at_ms, 1_700_000_900_000);
        assert!(link.url.starts_with("/v1/files/rec_1?expires=1700000900&sig="), "{}", link.url);
        let (e, s) = query(&link.url);
        f.verify("rec_1", Some(&e), Some(&s), now).unwrap();
        let last = Timestamp::from_unix_millis(link.expires_at_ms - 1);
        f.verify("rec_1", Some(&e), Some(&s), last).unwrap();
        let at = Timestamp::from_unix_millis(link.expires_at_ms);
        assert!(matches!(f.verify("rec_1", Some(&e), Some(&s), at), Err(FilesError::LinkExpired { .. })));
        for (id, e, s) in [
            ("rec_2", e.as_str(), s.as_str()),
            ("rec_1", "1700000901", s.as_str()),
            ("rec_1", e.as_str(), &s[2..]),
            ("rec_1", e.as_str(), "zz"),
        ] {
            assert!(matches!(f.verify(id, Some(e), Some(s), now), Err(FilesError::BadSignature)), "{id} {e} {s}");
        }
        assert!(matches!(f.verify("rec_1", None, Some(&s), now), Err(FilesError::BadSignature)));
        assert!(matches!(f.verify("rec_1", Some(&e), None, now), Err(FilesError::BadSignature)));
    }

    #[tokio::test]
    async fn delete_tells_whether_the_object_was_there() {
        let f = files();
        f.store().put(&ObjectPath::from("a/b.ogg"), vec![1u8, 2, 3].into()).await.unwrap();
        assert!(f.delete("a/b.ogg").await.unwrap());
        assert!(!f.delete("a/b.ogg").await.unwrap());
        assert!(matches!(f.delete("a/../b").await, Err(FilesError::BadKey { .. })));
    }
}
