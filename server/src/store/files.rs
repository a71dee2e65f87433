//! Recording files (DESIGN.md §6): the object store they live in, expiring
//! signed download links, `GET /v1/files/{recording_id}` with HTTP Range,
//! and the `recordings` table (migration 0004).
//!
//! A download link is the path `/v1/files/{id}?expires={unix s}&sig={hex}`
//! where `sig` is the HMAC-SHA256, keyed with `PARLEY_RECORDING_URL_SECRET`,
//! of `{id}\n{expires}`. The signature is the authorisation (like an S3
//! presigned URL): whoever holds the link may download until it expires.
//! Only the recordings API hands links out, to those allowed to see them.

use std::ops::RangeInclusive;
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, WriteMultipart};
use parley_domain::protocol::{ErrorCode, Problem};
use parley_domain::{SessionId, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::AsyncReadExt;

use crate::config::{Config, RecordingStore};
use crate::routes::{ApiError, AppState};
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

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::BadSignature => ApiError::Forbidden(ErrorCode::BadSignature, e.to_string()),
            FilesError::LinkExpired { .. } => ApiError::Forbidden(ErrorCode::LinkExpired, e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
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

    /// The store `config` names (a local directory is created if missing),
    /// with its link secret (generated in the data dir in dev if unset).
    pub fn from_config(config: &Config) -> Result<RecordingFiles, FilesError> {
        let rec = &config.recordings;
        let secret = config
            .resolve_recording_url_secret()
            .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_URL_SECRET: {e}")))?;
        let store: Arc<dyn ObjectStore> = match &rec.store {
            RecordingStore::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    FilesError::Config(format!("PARLEY_RECORDING_STORE: cannot create {}: {e}", dir.display()))
                })?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_STORE: {e}")))?;
                Arc::new(fs.with_automatic_cleanup(true))
            }
            RecordingStore::S3 { bucket, prefix } => s3_store(bucket, prefix)?,
        };
        RecordingFiles::new(store, &secret, rec.url_ttl)
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

#[cfg(feature = "s3")]
fn s3_store(bucket: &str, prefix: &str) -> Result<Arc<dyn ObjectStore>, FilesError> {
    let s3 = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| FilesError::Config(format!("PARLEY_RECORDING_STORE: {e}")))?;
    if prefix.is_empty() { Ok(Arc::new(s3)) } else { Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix))) }
}

#[cfg(not(feature = "s3"))]
fn s3_store(_bucket: &str, _prefix: &str) -> Result<Arc<dyn ObjectStore>, FilesError> {
    Err(FilesError::Config("PARLEY_RECORDING_STORE: s3:// needs a server built with the `s3` cargo feature".into()))
}

fn object_path(key: &str) -> Result<ObjectPath, FilesError> {
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

/// The routes of this module.
pub fn router(state: AppState) -> Router {
    Router::new().route("/v1/files/{recording_id}", get(download)).with_state(state)
}

/// The query of a download link.
#[derive(Debug, Deserialize)]
pub(crate) struct LinkQuery {
    expires: Option<String>,
    sig: Option<String>,
}

/// What a request's `Range` asks for, against a file of some size.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    /// No `Range`, a malformed one, or several ranges: the whole file (200).
    Whole,
    /// One satisfiable range (206).
    Part(RangeInclusive<u64>),
    /// Outside the file (416).
    Unsatisfiable,
}

/// Reads a `Range` header (RFC 9110 §14) for a file of `size` bytes. A
/// header that does not parse is ignored (§14.2: the whole file); several
/// ranges are answered with the whole file.
fn wanted(range: Option<&HeaderValue>, size: u64) -> Wanted {
    let Some(text) = range.and_then(|r| r.to_str().ok()) else {
        return Wanted::Whole;
    };
    let parsed = match http_range_header::parse_range_header(text) {
        Ok(p) => p,
        // `bytes=-0` is well-formed but asks for nothing.
        Err(http_range_header::RangeUnsatisfiableError::ZeroSuffix) => return Wanted::Unsatisfiable,
        Err(_) => return Wanted::Whole,
    };
    if parsed.ranges.len() != 1 {
        return Wanted::Whole;
    }
    if size == 0 {
        return Wanted::Unsatisfiable;
    }
    match parsed.validate(size) {
        Ok(mut ranges) if ranges.len() == 1 => {
            let r = ranges.remove(0);
            if r.start() > r.end() || *r.start() >= size { Wanted::Unsatisfiable } else { Wanted::Part(r) }
        }
        _ => Wanted::Unsatisfiable,
    }
}

/// A `filename` safe to quote in `Content-Disposition`: the key's last
/// segment with anything but `[A-Za-z0-9._-]` replaced by `_`.
fn download_name(row: &RecordingRow) -> String {
    let base = row.object_key.rsplit('/').next().unwrap_or(&row.id);
    let name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if name.is_empty() { row.id.clone() } else { name }
}

fn header_value(s: &str) -> Result<HeaderValue, ApiError> {
    HeaderValue::from_str(s).map_err(|e| ApiError::Internal(format!("header value {s:?}: {e}")))
}

/// `GET /v1/files/{recording_id}?expires=…&sig=…`: a recording file, through
/// a signed link from the recordings API. No bearer token: the signature is
/// the authorisation. Supports a single `Range` (206 with `Content-Range`,
/// 416 with `Content-Range: bytes */{size}` outside the file); a request
/// for several ranges gets the whole file (200).
#[utoipa::path(get, path = "/v1/files/{recording_id}", tag = "recordings",
    params(("recording_id" = String, Path, description = "recording id (`rec_…`)"),
        ("expires" = i64, Query, description = "expiry of the link, Unix seconds"),
        ("sig" = String, Query, description = "hex HMAC-SHA256 of `{recording_id}\\n{expires}`"),
        ("Range" = Option<String>, Header, description = "one range: `bytes=a-b`, `bytes=a-` or `bytes=-n`")),
    responses((status = 200, description = "the whole file, `Content-Type` of the recording", content_type = "application/octet-stream"),
        (status = 206, description = "the range asked for, with `Content-Range`", content_type = "application/octet-stream"),
        (status = 403, description = "`bad_signature`: missing, tampered or foreign signature; `link_expired`", body = Problem),
        (status = 404, description = "`unknown_recording`: no such recording, or retention deleted it", body = Problem),
        (status = 416, description = "`range_not_satisfiable`, with `Content-Range: bytes */{size}`", body = Problem)))]
pub(crate) async fn download(
    State(s): State<AppState>,
    Path(recording_id): Path<String>,
    query: Result<Query<LinkQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(Query(q)) = query else {
        return Err(FilesError::BadSignature.into());
    };
    s.files.verify(&recording_id, q.expires.as_deref(), q.sig.as_deref(), s.clock.now())?;
    let gone = || ApiError::NotFound(ErrorCode::UnknownRecording, format!("no recording {recording_id}"));
    let row = match recording(&s.store, &recording_id).await? {
        Some(row) if row.deleted_ms.is_none() => row,
        _ => return Err(gone()),
    };
    let location = object_path(&row.object_key)?;
    let meta = match s.files.store.head(&location).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(recording_id = %row.id, key = %row.object_key, "recording row without its file");
            return Err(gone());
        }
        Err(e) => return Err(FilesError::from(e).into()),
    };
    let size = meta.size;
    let part = match wanted(headers.get(header::RANGE), size) {
        Wanted::Whole => None,
        Wanted::Part(r) => Some(r),
        Wanted::Unsatisfiable => {
            let mut response = crate::routes::problem(
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
                format!("the range is outside the file ({size} bytes)"),
            );
            response.headers_mut().insert(header::CONTENT_RANGE, header_value(&format!("bytes */{size}"))?);
            return Ok(response);
        }
    };
    let options = GetOptions {
        range: part.as_ref().map(|r| GetRange::Bounded(*r.start()..r.end() + 1)),
        // The object read is the one measured above.
        if_match: meta.e_tag.clone(),
        ..GetOptions::default()
    };
    let got = s.files.store.get_opts(&location, options).await.map_err(FilesError::from)?;
    let mut out = HeaderMap::new();
    out.insert(header::CONTENT_TYPE, header_value(&row.content_type)?);
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
    out.insert(
        header::CONTENT_DISPOSITION,
        header_value(&format!("attachment; filename=\"{}\"", download_name(&row)))?,
    );
    if let Some(tag) = &meta.e_tag {
        let quoted = if tag.starts_with('"') || tag.starts_with("W/") { tag.clone() } else { format!("\"{tag}\"") };
        out.insert(header::ETAG, header_value(&quoted)?);
    }
    let status = match &part {
        Some(r) => {
            out.insert(header::CONTENT_RANGE, header_value(&format!("bytes {}-{}/{size}", r.start(), r.end()))?);
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end() - r.start() + 1));
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            StatusCode::OK
        }
    };
    Ok((status, out, Body::from_stream(got.into_stream())).into_response())
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

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        let r = |s: &str| wanted(Some(&HeaderValue::from_str(s).unwrap()), 100);
        assert_eq!(wanted(None, 100), Wanted::Whole);
        assert_eq!(r("bytes=10-19"), Wanted::Part(10..=19));
        assert_eq!(r("bytes=90-"), Wanted::Part(90..=99));
        assert_eq!(r("bytes=-5"), Wanted::Part(95..=99));
        assert_eq!(r("bytes=-500"), Wanted::Unsatisfiable);
        assert_eq!(r("bytes=50-500"), Wanted::Part(50..=99));
        assert_eq!(r("bytes=100-"), Wanted::Unsatisfiable);
        assert_eq!(r("bytes=20-10"), Wanted::Unsatisfiable);
        assert_eq!(r("bytes=-0"), Wanted::Unsatisfiable);
        assert_eq!(r("bytes=0-1,5-6"), Wanted::Whole);
        assert_eq!(r("items=0-1"), Wanted::Whole);
        assert_eq!(r("bytes=x-1"), Wanted::Whole);
        assert_eq!(wanted(Some(&HeaderValue::from_static("bytes=0-")), 0), Wanted::Unsatisfiable);
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
