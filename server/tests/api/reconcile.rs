//! Reconciliation (issue 13): `parley reconcile` and the server's hourly
//! check find what an operator must look at, and nothing after a clean
//! money path. On SQLite and PostgreSQL.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, ReconcileFindingKind, ReconcileFindingsData};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};
use parley_server::reconcile::{ORPHAN_HOLD_AGE, RECONCILE_INTERVAL};
use sqlx::Row;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Moves every hold and sandbox intent `by` into the past: the server
/// clock stays put, so no orphan sweep (at most once a minute of server
/// time) can run in between and release what the test plants.
async fn age_by(app: &TestApp, by: Duration) {
    let ms = by.as_millis() as i64;
    for table in ["holds", "sandbox_intents"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET created_ms = created_ms - $1")))
            .bind(ms)
            .execute(&app.store.pool())
            .await
            .unwrap();
    }
}

/// Runs `parley reconcile [extra]` against the test's database, as of the
/// test clock; returns the exit code and what it printed.
fn run_cli(app: &TestApp, extra: &[&str]) -> (i32, String) {
    let now = std::time::UNIX_EPOCH + Duration::from_millis(app.clock.now().unix_millis() as u64);
    let at = humantime::format_rfc3339_millis(now).to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
    // Only the settings below: the test command's own PARLEY_* variables
    // (PARLEY_CHROMIUM for the browser tests) are no server settings.
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("PARLEY_")) {
        cmd.env_remove(name);
    }
    let out = cmd
        .args(["reconcile", "--as-of", &at])
        .args(extra)
        .env("DATABASE_URL", &app.config.database_url)
        .env("PARLEY_DATA_DIR", &app.config.data_dir)
        .env("PARLEY_LOG", "error")
        .output()
        .expect("parley runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "the check ran: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().expect("exit code"), stdout)
}

/// `parley reconcile --json`: the exit code and the report.
fn cli(app: &TestApp) -> (i32, ReconcileFindingsData) {
    let (code, stdout) = run_cli(app, &["--json"]);
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("JSON report ({e}): {stdout}"));
    (code, report)
}

/// A hold placed for a call whose server died while it rang (no session,
/// no booking, no settlement), still authorised beyond the orphan age:
/// the check and the CLI (exit 1) list it; once the server is back and its
/// sweep releases the hold, nothing is found (exit 0).
async fn an_orphaned_hold_is_found_by_the_check_and_the_cli(app: TestApp) {
    app.assert_reconciled().await;
    let (code, report) = cli(&app);
    assert_eq!((code, report.total), (0, 0), "a fresh database reconciles: {report:?}");
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    app.billing.set_price(&uid("cora"), &price).await.unwrap();
    let orphan = SessionId::parse("ses_orphan_reconcile").unwrap();
    let held = app.billing.place_hold(&orphan, "call_orphan", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
    assert!(held.unwrap().is_some());
    let intent = app.billing.hold(&orphan).await.unwrap().unwrap().intent_id;
    // The server dies; the hold ages beyond any ring and the sweep's age.
    let mut app = app;
    app.stop().await;
    age_by(&app, ORPHAN_HOLD_AGE - Duration::from_secs(1)).await;
    assert_eq!(app.reconcile().await.total, 0, "not an orphan yet");
    age_by(&app, Duration::from_secs(2)).await;
    let report = app.reconcile().await;
    assert_eq!(report.total, 1, "{}", parley_server::reconcile::render(&report));
    let f = &report.findings[0];
    assert_eq!(f.kind, ReconcileFindingKind::OrphanHold);
    assert_eq!((f.session_id.as_deref(), &f.intent_id), (Some(orphan.as_str()), &intent));
    let (code, report) = cli(&app);
    assert_eq!(code, 1, "findings exit 1: {report:?}");
    assert_eq!(report.findings.iter().map(|f| f.kind).collect::<Vec<_>>(), [ReconcileFindingKind::OrphanHold]);
    assert_eq!(report.findings[0].session_id.as_deref(), Some(orphan.as_str()));
    let (code, text) = run_cli(&app, &[]);
    assert_eq!(code, 1);
    assert!(text.contains("1 finding(s)") && text.contains("orphan_hold"), "{text}");
    assert!(text.contains(&format!("session={orphan}")) && text.contains("3000 EUR"), "{text}");
    // Back up: the sweep releases the orphan; nothing is left to find.
    let app = app.restart().await;
    common::until("the sweep releases the orphaned hold", || async {
        app.billing.hold(&orphan).await.unwrap().unwrap().status == "released"
    })
    .await;
    app.assert_reconciled().await;
    let (code, report) = cli(&app);
    assert_eq!((code, report.total), (0, 0), "{report:?}");
    let (code, text) = run_cli(&app, &[]);
    assert_eq!(code, 0);
    assert!(text.contains("the ledger and the provider agree"), "{text}");
}

/// Each kind of finding, planted by hand in a stopped server's database,
/// is found; what a live thing owns is not.
async fn each_kind_of_finding_is_found_and_owned_holds_are_not(mut app: TestApp) {
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    app.billing.set_price(&uid("cora"), &price).await.unwrap();
    let hold = |name: &'static str| {
        let billing = app.billing.clone();
        async move {
            let sid = SessionId::parse(name).unwrap();
            let held = billing.place_hold(&sid, "call_x", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
            assert!(held.unwrap().is_some());
            billing.hold(&sid).await.unwrap().unwrap().intent_id.unwrap()
        }
    };
    let pool = app.store.pool();
    let now = app.clock.now().unix_millis();
    // Owned: an open session, a confirmed booking (its room opens next week).
    hold("ses_open").await;
    sqlx::query(
        "INSERT INTO sessions (id, call_id, seeker_id, consultant_id, opened_ms) VALUES ('ses_open', 'call_x', 'sam', 'cora', $1)",
    )
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    hold("ses_booked").await;
    sqlx::query(
        "INSERT INTO bookings (id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
         respond_by_ms, seeker_name, hold_status, created_ms, updated_ms) VALUES ('bkg_1', 'ses_booked', 'call_x', 'sam', \
         'cora', 'consultation', 30, '[]', 'confirmed', $1, 'Sam', 'held', $1, $1)",
    )
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    // Not owned: a booking that moved on (cancelled), and a captured intent
    // the ledger still calls held.
    hold("ses_moved").await;
    sqlx::query(
        "INSERT INTO bookings (id, session_id, call_id, seeker_id, consultant_id, purpose, length_min, proposed, state, \
         respond_by_ms, seeker_name, hold_status, created_ms, updated_ms) VALUES ('bkg_2', 'ses_moved', 'call_x', 'sam', \
         'cora', 'consultation', 30, '[]', 'cancelled', $1, 'Sam', 'held', $1, $1)",
    )
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    let captured_there = hold("ses_mismatch").await;
    sqlx::query("UPDATE sandbox_intents SET status = 'succeeded', amount_received = 3000 WHERE id = $1")
        .bind(&captured_there)
        .execute(&pool)
        .await
        .unwrap();
    // An intent at the provider that no hold records.
    let stray = app
        .billing
        .provider()
        .place_hold(&parley_billing::HoldRequest {
            amount: eur(500),
            payment_method: "pm_card_visa".into(),
            destination: None,
            description: "stray".into(),
            metadata: vec![],
            idempotency_key: "stray".into(),
        })
        .await
        .unwrap()
        .id;
    // A refund the ledger records without reversals, which the provider never made.
    sqlx::query(
        "INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id, at_ms) \
         VALUES ('refund:upto:100:ses_open', 'ses_open', 'refund', 100, 'EUR', 'sam', 'cora', $1)",
    )
    .bind(now)
    .execute(&pool)
    .await
    .unwrap();
    app.stop().await;
    age_by(&app, ORPHAN_HOLD_AGE + Duration::from_secs(1)).await;
    let report = app.reconcile().await;
    let got: Vec<(ReconcileFindingKind, Option<&str>, Option<&str>)> =
        report.findings.iter().map(|f| (f.kind, f.session_id.as_deref(), f.intent_id.as_deref())).collect();
    let text = parley_server::reconcile::render(&report);
    use ReconcileFindingKind::*;
    assert_eq!(got.len(), 6, "{text}");
    assert!(got.contains(&(RefundSplit, Some("ses_open"), None)), "{text}");
    let open_intent = app.billing.hold(&SessionId::parse("ses_open").unwrap()).await.unwrap().unwrap().intent_id;
    assert!(got.contains(&(ProviderStateMismatch, Some("ses_open"), open_intent.as_deref())), "{text}");
    assert!(got.iter().any(|f| f.0 == OrphanHold && f.1 == Some("ses_moved")), "{text}");
    assert!(got.iter().any(|f| f.0 == OrphanHold && f.1 == Some("ses_mismatch")), "{text}");
    assert!(got.contains(&(ProviderStateMismatch, Some("ses_mismatch"), Some(captured_there.as_str()))), "{text}");
    assert!(got.contains(&(ProviderObjectWithoutLedger, None, Some(stray.as_str()))), "{text}");
    let owned = |f: &&(ReconcileFindingKind, Option<&str>, Option<&str>)| {
        f.0 == OrphanHold && matches!(f.1, Some("ses_open" | "ses_booked"))
    };
    assert!(!got.iter().any(|f| owned(&f)), "owned holds are no orphans: {text}");
    assert!(!text.contains("ses_booked"), "{text}");
}

#[tokio::test]
async fn each_kind_of_finding_is_found_and_owned_holds_are_not_on_sqlite() {
    each_kind_of_finding_is_found_and_owned_holds_are_not(spawn_app().await).await;
}

#[tokio::test]
async fn each_kind_of_finding_is_found_and_owned_holds_are_not_on_postgres() {
    each_kind_of_finding_is_found_and_owned_holds_are_not(spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn an_orphaned_hold_is_found_by_the_check_and_the_cli_on_sqlite() {
    an_orphaned_hold_is_found_by_the_check_and_the_cli(spawn_app().await).await;
}

#[tokio::test]
async fn an_orphaned_hold_is_found_by_the_check_and_the_cli_on_postgres() {
    an_orphaned_hold_is_found_by_the_check_and_the_cli(spawn_app_on_postgres().await).await;
}

async fn gauge(app: &TestApp, kind: &str) -> Option<String> {
    let text = reqwest::get(format!("{}/metrics", app.base)).await.unwrap().text().await.unwrap();
    let prefix = format!("parley_reconcile_findings{{kind=\"{kind}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
}

async fn reconcile_events(app: &TestApp) -> Vec<serde_json::Value> {
    sqlx::query("SELECT body FROM webhook_outbox WHERE type = 'reconcile.findings' ORDER BY created_ms, id")
        .fetch_all(&app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| serde_json::from_str(&r.get::<String, _>("body")).unwrap())
        .collect()
}

/// The server checks every hour of its clock: a ledger whose capture is not
/// fee + earnings (and names no provider object) sets the gauge and emits
/// `reconcile.findings` (again the next hour while it lasts); once
/// repaired, the next check sets the gauge to 0 and emits nothing.
async fn the_hourly_check_reports_findings_by_metric_and_webhook(app: TestApp) {
    let pool = app.store.pool();
    for (kind, amount) in [("capture", 1000), ("fee", 200), ("earnings", 700)] {
        sqlx::query(
            "INSERT INTO ledger (entry_key, session_id, kind, amount_minor, currency, seeker_id, consultant_id, at_ms) \
             VALUES ($1, 'ses_bad_split', $2, $3, 'EUR', 'sam', 'cora', $4)",
        )
        .bind(format!("{kind}:ses_bad_split"))
        .bind(kind)
        .bind(amount)
        .bind(app.clock.now().unix_millis())
        .execute(&pool)
        .await
        .unwrap();
    }
    app.advance(RECONCILE_INTERVAL - Duration::from_secs(1)).await;
    assert!(reconcile_events(&app).await.is_empty(), "not checked before the hour");
    app.advance(Duration::from_secs(1)).await;
    common::until("a reconcile.findings event after the hour", || async { !reconcile_events(&app).await.is_empty() })
        .await;
    let events = reconcile_events(&app).await;
    assert_eq!(events.len(), 1);
    let data = &events[0]["data"];
    assert_eq!((data["total"].as_u64(), data["provider"].as_str()), (Some(2), Some("sandbox")), "{data}");
    let kinds: Vec<&str> = data["findings"].as_array().unwrap().iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["ledger_without_provider_object", "capture_split"]);
    assert_eq!(data["findings"][1]["session_id"], "ses_bad_split");
    assert_eq!(gauge(&app, "capture_split").await.as_deref(), Some("1"));
    // Still wrong an hour later: announced again, once.
    app.advance(RECONCILE_INTERVAL).await;
    common::until("a second reconcile.findings event", || async { reconcile_events(&app).await.len() >= 2 }).await;
    // Repaired: the next hour's check finds nothing and says so by the gauge only.
    sqlx::query("DELETE FROM ledger WHERE session_id = 'ses_bad_split'").execute(&pool).await.unwrap();
    app.advance(RECONCILE_INTERVAL).await;
    common::until("the gauge drops to 0", || async { gauge(&app, "capture_split").await.as_deref() == Some("0") })
        .await;
    assert_eq!(reconcile_events(&app).await.len(), 2, "no event when nothing is found");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_hourly_check_reports_findings_by_metric_and_webhook_on_sqlite() {
    the_hourly_check_reports_findings_by_metric_and_webhook(spawn_app().await).await;
}
