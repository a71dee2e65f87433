//! Recording files (DESIGN.md §6) against a real server over HTTP: upload,
//! signed download links with HTTP Range, link expiry on the server clock,
//! and retention.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_with};
use parley_domain::protocol::{ErrorBody, ErrorCode};
use parley_domain::{Clock, SessionId, Timestamp};
use parley_server::files::{self, RecordingRow, new_recording_id};
use parley_server::retention;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, RANGE};

const DAY: Duration = Duration::from_secs(24 * 3600);

/// 1000 bytes that differ from position to position.
fn content(seed: u8) -> Vec<u8> {
    (0..1000u32).map(|i| (i.wrapping_mul(31) as u8) ^ seed).collect()
}

/// Uploads `bytes` as a participant's audio track of `session` and stores
/// its row, created at `created`.
async fn stored(app: &TestApp, session: &str, who: &str, bytes: &[u8], created: Timestamp) -> RecordingRow {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("track.ogg");
    std::fs::write(&local, bytes).unwrap();
    let key = format!("sessions/{session}/{who}-audio.ogg");
    let size = app.files.upload(&key, &local).await.unwrap();
    assert_eq!(size, bytes.len() as u64);
    let row = RecordingRow {
        id: new_recording_id(),
        session_id: session.into(),
        participant_id: Some(who.into()),
        kind: "audio".into(),
        codec: "opus".into(),
        content_type: "audio/ogg".into(),
        object_key: key,
        bytes: size as i64,
        duration_ms: 61_000,
        created_ms: created.unix_millis(),
        deleted_ms: None,
    };
    files::insert_recording(&app.store, &row).await.unwrap();
    row
}

/// A fresh signed link to `row`, as an absolute URL.
fn link(app: &TestApp, row: &RecordingRow) -> String {
    format!("{}{}", app.base, app.files.signed_url(&row.id, app.clock.now()).url)
}

async fn get(url: &str, range: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(r) = range {
        req = req.header(RANGE, r);
    }
    req.send().await.unwrap()
}

fn header(resp: &reqwest::Response, name: reqwest::header::HeaderName) -> String {
    resp.headers().get(&name).map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

async fn refused(resp: reqwest::Response, status: StatusCode, code: ErrorCode) {
    assert_eq!(resp.status(), status);
    let body: ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.code, code, "{}", body.message);
}

/// Downloads, ranges and refusals of one stored file.
async fn downloads_work(app: &TestApp) {
    let bytes = content(7);
    let row = stored(app, "ses_files", "seeker", &bytes, app.clock.now()).await;
    let url = link(app, &row);

    let whole = get(&url, None).await;
    assert_eq!(whole.status(), StatusCode::OK);
    assert_eq!(header(&whole, CONTENT_TYPE), "audio/ogg");
    assert_eq!(header(&whole, ACCEPT_RANGES), "bytes");
    assert_eq!(header(&whole, CONTENT_LENGTH), "1000");
    assert_eq!(header(&whole, CONTENT_DISPOSITION), "attachment; filename=\"seeker-audio.ogg\"");
    assert!(header(&whole, ETAG).starts_with('"'), "{}", header(&whole, ETAG));
    assert_eq!(whole.bytes().await.unwrap(), bytes);
    let head = reqwest::Client::new().head(&url).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, CONTENT_LENGTH), "1000");
    assert!(head.bytes().await.unwrap().is_empty());

    for (range, from, to) in [("bytes=10-19", 10, 19), ("bytes=-5", 995, 999), ("bytes=100-", 100, 999)] {
        let part = get(&url, Some(range)).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&part, CONTENT_RANGE), format!("bytes {from}-{to}/1000"), "{range}");
        assert_eq!(header(&part, CONTENT_LENGTH), (to - from + 1).to_string(), "{range}");
        assert_eq!(part.bytes().await.unwrap(), bytes[from..=to], "{range}");
    }
    // Several ranges: the whole file.
    let many = get(&url, Some("bytes=0-1,10-11")).await;
    assert_eq!(many.status(), StatusCode::OK);
    assert_eq!(many.bytes().await.unwrap(), bytes);

    let outside = get(&url, Some("bytes=1000-")).await;
    assert_eq!(header(&outside, CONTENT_RANGE), "bytes */1000");
    refused(outside, StatusCode::RANGE_NOT_SATISFIABLE, ErrorCode::RangeNotSatisfiable).await;

    // Tampering: the signature, the expiry, another recording's id.
    let (path, query) = url.split_once('?').unwrap();
    let (expires, sig) = query.split_once('&').unwrap();
    let flipped = format!("{}{}", &sig[..sig.len() - 1], if sig.ends_with('0') { '1' } else { '0' });
    let later: i64 = expires.trim_start_matches("expires=").parse::<i64>().unwrap() + 3600;
    let other = stored(app, "ses_files", "consultant", &content(9), app.clock.now()).await;
    for bad in [
        format!("{path}?{expires}&{flipped}"),
        format!("{path}?expires={later}&{sig}"),
        format!("{}/v1/files/{}?{query}", app.base, other.id),
        format!("{path}?{expires}"),
        path.to_owned(),
    ] {
        refused(get(&bad, None).await, StatusCode::FORBIDDEN, ErrorCode::BadSignature).await;
    }

    // A signed link to a recording that does not exist.
    let ghost = format!("{}{}", app.base, app.files.signed_url("rec_nothing", app.clock.now()).url);
    refused(get(&ghost, None).await, StatusCode::NOT_FOUND, ErrorCode::UnknownRecording).await;

    // The link works for 15 minutes of server time.
    app.advance(Duration::from_secs(14 * 60)).await;
    assert_eq!(get(&url, Some("bytes=0-0")).await.status(), StatusCode::PARTIAL_CONTENT);
    app.advance(Duration::from_secs(61)).await;
    refused(get(&url, None).await, StatusCode::FORBIDDEN, ErrorCode::LinkExpired).await;
    // A new link works again.
    assert_eq!(get(&link(app, &row), None).await.bytes().await.unwrap(), bytes);
}

/// Retention: of files aged 31 and 29 days, a 30-day sweep deletes the
/// first only, and a second sweep nothing.
async fn retention_works(app: &TestApp) {
    let now = app.clock.now();
    let old_bytes = content(1);
    let new_bytes = content(2);
    let old =
        stored(app, "ses_old", "seeker", &old_bytes, Timestamp::from_unix_millis(now.unix_millis() - 31 * 86_400_000))
            .await;
    let young = stored(
        app,
        "ses_young",
        "seeker",
        &new_bytes,
        Timestamp::from_unix_millis(now.unix_millis() - 29 * 86_400_000),
    )
    .await;
    let old_url = link(app, &old);

    let report = retention::sweep(&app.store, &app.files, now, 30).await.unwrap();
    assert_eq!(report, retention::SweepReport { deleted: 1, missing: 0, failed: 0 });
    let path = object_store::path::Path::from(old.object_key.as_str());
    let head = object_store::ObjectStoreExt::head(app.files.store().as_ref(), &path).await;
    assert!(matches!(head, Err(object_store::Error::NotFound { .. })), "{head:?}");
    let rows = files::recordings_of(&app.store, &SessionId::parse("ses_old").unwrap()).await.unwrap();
    assert_eq!(rows[0].deleted_ms, Some(now.unix_millis()));
    refused(get(&old_url, None).await, StatusCode::NOT_FOUND, ErrorCode::UnknownRecording).await;
    let kept = files::recordings_of(&app.store, &SessionId::parse("ses_young").unwrap()).await.unwrap();
    assert_eq!(kept, vec![young.clone()]);
    assert_eq!(get(&link(app, &young), None).await.bytes().await.unwrap(), new_bytes);

    let again = retention::sweep(&app.store, &app.files, now, 30).await.unwrap();
    assert_eq!(again, retention::SweepReport::default());

    // A file already gone still gets its row marked.
    let lost = stored(
        app,
        "ses_lost",
        "seeker",
        &content(3),
        Timestamp::from_unix_millis(now.unix_millis() - 40 * 86_400_000),
    )
    .await;
    assert!(app.files.delete(&lost.object_key).await.unwrap());
    let report = retention::sweep(&app.store, &app.files, now, 30).await.unwrap();
    assert_eq!(report, retention::SweepReport { deleted: 0, missing: 1, failed: 0 });
    let rows = files::recordings_of(&app.store, &SessionId::parse("ses_lost").unwrap()).await.unwrap();
    assert!(rows[0].deleted_ms.is_some());
}

#[tokio::test]
async fn signed_links_download_with_ranges_and_expire() {
    let app = spawn_app().await;
    downloads_work(&app).await;
}

#[tokio::test]
async fn signed_links_download_on_postgres() {
    // The server's own hourly sweep keeps 100 years here: `downloads_work`
    // moves the clock past its first sweep, which would otherwise race the
    // 30-day sweep `retention_works` runs itself for the old file.
    let url = common::fresh_postgres_url().await;
    let app = spawn_app_with(|c| {
        c.database_url = url;
        c.recordings.retention_days = 36_500;
    })
    .await;
    downloads_work(&app).await;
    retention_works(&app).await;
}

#[tokio::test]
async fn retention_deletes_only_old_files() {
    let app = spawn_app().await;
    retention_works(&app).await;
}

#[tokio::test]
async fn the_hourly_sweep_runs_on_the_server_clock() {
    let app = spawn_app().await;
    let now = app.clock.now();
    let old = stored(
        &app,
        "ses_old",
        "seeker",
        &content(4),
        Timestamp::from_unix_millis(now.unix_millis() - 31 * 86_400_000),
    )
    .await;
    let sid = SessionId::parse("ses_old").unwrap();
    app.advance(retention::FIRST_SWEEP_AFTER).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while files::recordings_of(&app.store, &sid).await.unwrap()[0].deleted_ms.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the periodic sweep did not delete {}", old.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A day and an hour on, the next sweep finds the 29-day-old file past 30 days.
    let young = stored(
        &app,
        "ses_young",
        "seeker",
        &content(5),
        Timestamp::from_unix_millis(now.unix_millis() - 29 * 86_400_000),
    )
    .await;
    let sid = SessionId::parse("ses_young").unwrap();
    app.advance(DAY + retention::SWEEP_INTERVAL).await;
    let deadline = tokio::time::Instant::now() + common::WAIT;
    while files::recordings_of(&app.store, &sid).await.unwrap()[0].deleted_ms.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the periodic sweep did not delete {}", young.id);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_download_route_is_in_the_openapi_document() {
    let app = spawn_app().await;
    let doc: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(doc["paths"]["/v1/files/{recording_id}"]["get"].is_object(), "GET /v1/files/{{recording_id}} missing");
}

/// `parley` itself refuses a bad recording setting, naming its variable.
fn refused_config(var: &str, value: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
    // Only this test's settings: the test command exports others (e.g.
    // PARLEY_CHROMIUM) that the server would refuse as unknown keys.
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PARLEY_") || k == "DATABASE_URL") {
        cmd.env_remove(key);
    }
    let out = cmd
        .current_dir(dir.path())
        .env("PARLEY_DATA_DIR", dir.path())
        .env("PARLEY_LISTEN", "127.0.0.1:0")
        .env(var, value)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{var}={value} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_recording_settings_are_refused_by_name() {
    let e = refused_config("PARLEY_RECORDING_RETENTION_DAYS", "0");
    assert!(e.contains("PARLEY_RECORDING_RETENTION_DAYS"), "{e}");
    if !cfg!(feature = "s3") {
        let e = refused_config("PARLEY_RECORDING_STORE", "s3://bucket/recordings");
        assert!(e.contains("PARLEY_RECORDING_STORE") && e.contains("`s3`"), "{e}");
    }
}
