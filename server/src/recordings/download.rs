//! `GET /v1/files/{recording_id}`: a recording file through a signed,
//! expiring link (docs/rules.md R4), with HTTP Range.

use std::ops::RangeInclusive;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use parley_domain::protocol::{ErrorCode, Problem};
use serde::Deserialize;

use crate::kernel::{ApiError, AppState, problem};
use crate::store::files::{FilesError, RecordingRow, object_path, recording};

/// `/v1/files/{recording_id}`.
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
    let meta = match s.files.store().head(&location).await {
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
            let mut response = problem(
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
    let got = s.files.store().get_opts(&location, options).await.map_err(FilesError::from)?;
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
}
