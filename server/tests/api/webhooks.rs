//! Outgoing webhooks (issue 4, docs/protocol.md §14): a real server with a
//! manual clock posts events to a local receiver that verifies them the way
//! an operator's platform would (HMAC-SHA256 over `"<t>.<raw body>"`,
//! constant-time compare, 5-minute tolerance), on both backends.

use crate::common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{
    TestApp, WAIT, fresh_postgres_url, open_session, settled, spawn_app, spawn_with_config, until, wait_ended,
};
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use parley_billing::insert_settlement;
use parley_domain::clock::{ManualClock, Wake};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{Outcome, Role, SessionBill};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};
use parley_sdk::ApiClient;
use parley_server::Config;
use parley_server::config::WebhookConfig;
use parley_server::webhooks::Webhooks;
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::mpsc;

const SECRET: &str = "operator-webhook-secret-0123456789abcdef";
const SECS: fn(u64) -> Duration = Duration::from_secs;

fn eur(minor: i64) -> Value {
    serde_json::to_value(Money::new(minor, Currency::parse("EUR").unwrap())).unwrap()
}

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    /// `Parley-Event-Id`.
    event_id: String,
    /// `t` of `Parley-Signature`.
    t: i64,
    /// The body, parsed.
    body: Value,
    /// Whether the signature verified.
    verified: bool,
    /// What the receiver answered.
    answered: u16,
}

impl Delivery {
    fn event_type(&self) -> &str {
        self.body["type"].as_str().unwrap_or_default()
    }
}

/// The operator's side: verifies `Parley-Signature` against its own copy
/// of the secret, independently of the server's code.
fn operator_verifies(secret: &str, header: &str, body: &[u8], now_secs: i64) -> Option<i64> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1.push(hex::decode(value).ok()?),
            _ => {}
        }
    }
    let t = t?;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    let ok = v1.iter().any(|sig| mac.clone().verify_slice(sig).is_ok());
    (ok && (now_secs - t).abs() <= 300).then_some(t)
}

/// A local receiver: answers 400 to a bad signature; otherwise 500 to the
/// first `fail_first` deliveries of each event id, then 200.
struct Receiver {
    url: String,
    deliveries: mpsc::UnboundedReceiver<Delivery>,
}

impl Receiver {
    async fn start(secret: &'static str, clock: Arc<ManualClock>, fail_first: usize) -> Receiver {
        let (tx, deliveries) = mpsc::unbounded_channel();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let (tx, seen, clock) = (tx.clone(), seen.clone(), clock.clone());
            async move {
                let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let signed = operator_verifies(secret, &header("parley-signature"), &body, clock.now().unix_secs());
                let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let answered = match signed {
                    None => 400,
                    Some(_) => {
                        let mut seen = seen.lock().unwrap();
                        let n = seen.entry(header("parley-event-id")).or_default();
                        *n += 1;
                        if *n <= fail_first { 500 } else { 200 }
                    }
                };
                let t = header("parley-signature")
                    .split(',')
                    .find_map(|p| p.strip_prefix("t=").and_then(|t| t.parse().ok()))
                    .unwrap_or_default();
                let _ = tx.send(Delivery {
                    event_id: header("parley-event-id"),
                    t,
                    body: parsed,
                    verified: signed.is_some(),
                    answered,
                });
                StatusCode::from_u16(answered).unwrap()
            }
        };
        let router = axum::Router::new().route("/hooks", axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, deliveries }
    }

    /// The next delivery of `event_type` (others are skipped).
    async fn next(&mut self, event_type: &str) -> Delivery {
        tokio::time::timeout(WAIT, async {
            loop {
                let d = self.deliveries.recv().await.expect("receiver alive");
                if d.event_type() == event_type {
                    return d;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {event_type} delivered"))
    }
}

/// A server posting to a receiver that knows `receiver_secret` (the
/// server signs with [`SECRET`]).
async fn app_with_receiver(postgres: bool, receiver_secret: &'static str, fail_first: usize) -> (TestApp, Receiver) {
    let clock = common::test_clock();
    let receiver = Receiver::start(receiver_secret, clock.clone(), fail_first).await;
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut config = Config::for_tests(dir.path());
    if postgres {
        config.database_url = fresh_postgres_url().await;
    }
    config.webhooks = WebhookConfig { url: Some(receiver.url.clone()), secret: Some(SECRET.into()) };
    (spawn_with_config(config, dir, clock).await, receiver)
}

/// `sam` calls `cora` (who charges `price` EUR minor units if given); she
/// accepts and both join.
async fn open_priced_session(app: &TestApp, price: Option<i64>) -> common::OpenSession {
    if let Some(minor) = price {
        let api = ApiClient::new(&app.base).unwrap();
        let amount = Money::new(minor, Currency::parse("EUR").unwrap());
        let price = ConsultantPrice { model: PriceModel::Fixed, amount };
        api.set_price(&app.token("cora", Role::Consultant), &price).await.unwrap();
    }
    open_session(app, price.map(|_| "pm_card_visa")).await
}

/// The outbox row of `event_id`: (status, attempts, next_attempt_ms, last_status).
async fn outbox_row(app: &TestApp, event_id: &str) -> (String, i64, i64, Option<i64>) {
    let row = sqlx::query("SELECT status, attempts, next_attempt_ms, last_status FROM webhook_outbox WHERE id = $1")
        .bind(event_id)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    (
        row.try_get("status").unwrap(),
        row.try_get("attempts").unwrap(),
        row.try_get("next_attempt_ms").unwrap(),
        row.try_get("last_status").unwrap(),
    )
}

/// Polls the outbox row of `event_id` until `done` accepts it.
async fn outbox_until(
    app: &TestApp,
    event_id: &str,
    done: impl Fn(&(String, i64, i64, Option<i64>)) -> bool,
) -> (String, i64, i64, Option<i64>) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let row = outbox_row(app, event_id).await;
        if done(&row) {
            return row;
        }
        assert!(tokio::time::Instant::now() < deadline, "outbox row of {event_id} stuck at {row:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A charged session from start to review: each fact arrives once, signed,
/// with its data.
async fn a_session_is_announced_from_start_to_review(postgres: bool) {
    let (app, mut receiver) = app_with_receiver(postgres, SECRET, 0).await;
    let (seeker, mut s_events, _consultant, _c_events, session_id) = open_priced_session(&app, Some(3000)).await;

    let started = receiver.next("session.started").await;
    assert!(started.verified, "{started:?}");
    assert_eq!(started.event_id, started.body["id"].as_str().unwrap(), "Parley-Event-Id is the body's id");
    assert!(started.event_id.starts_with("evt_") && started.event_id.len() == 36, "{}", started.event_id);
    let data = &started.body["data"];
    assert_eq!(data["session_id"], session_id.as_str());
    assert_eq!((data["seeker_id"].as_str(), data["consultant_id"].as_str()), (Some("sam"), Some("cora")));
    assert_eq!(data["recording"], false);
    let opened = data["opened_at_ms"].as_i64().unwrap();
    assert_eq!(started.body["created_ms"].as_i64(), Some(opened));

    app.advance(SECS(600)).await;
    seeker.end_session(&session_id).await.unwrap();
    wait_ended(&mut s_events).await;
    let ended = receiver.next("session.ended").await;
    assert!(ended.verified);
    let data = &ended.body["data"];
    assert_eq!(data["session_id"], session_id.as_str());
    assert_eq!((data["reason"].as_str(), data["ended_by"].as_str()), (Some("hangup"), Some("sam")));
    assert_eq!(data["opened_at_ms"].as_i64(), Some(opened));
    assert_eq!(data["ended_at_ms"].as_i64(), Some(opened + 600_000));
    assert_eq!(data["bill"], json!({"outcome": "charged", "billable_secs": 600, "charge": eur(3000)}));

    let settled_event = receiver.next("session.settled").await;
    assert!(settled_event.verified);
    let data = &settled_event.body["data"];
    assert_eq!(data["session_id"], session_id.as_str());
    assert_eq!((data["status"].as_str(), data["outcome"].as_str()), (Some("done"), Some("charged")));
    assert_eq!((data["billable_secs"].as_u64(), &data["amount"]), (Some(600), &eur(3000)));
    assert_eq!((&data["captured"], &data["fee"], &data["earnings"]), (&eur(3000), &eur(600), &eur(2400)));
    assert!(data["settled_at_ms"].as_i64().unwrap() >= opened + 600_000);

    let url = format!("{}/v1/sessions/{session_id}/review", app.base);
    let resp = reqwest::Client::new()
        .post(&url)
        .bearer_auth(app.token("sam", Role::Seeker))
        .json(&json!({"stars": 5, "text": "Clear and kind."}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let review: Value = resp.json().await.unwrap();
    let created = receiver.next("review.created").await;
    assert!(created.verified);
    let data = &created.body["data"];
    assert_eq!((data["review_id"].as_str(), data["stars"].as_u64()), (review["id"].as_str(), Some(5)));
    assert_eq!((data["seeker_id"].as_str(), data["consultant_id"].as_str()), (Some("sam"), Some("cora")));
    assert_eq!(data["text"], "Clear and kind.");

    // Each fact once, every event delivered at the first attempt.
    let pool = app.store.pool();
    let rows =
        sqlx::query("SELECT id, type FROM webhook_outbox ORDER BY created_ms, id").fetch_all(&pool).await.unwrap();
    let types: Vec<String> = rows.iter().map(|r| r.try_get("type").unwrap()).collect();
    assert_eq!(types, ["session.started", "session.ended", "session.settled", "review.created"]);
    for row in &rows {
        let id: String = row.try_get("id").unwrap();
        let (status, attempts, _, last_status) = outbox_until(&app, &id, |r| r.0 != "pending").await;
        assert_eq!((status.as_str(), attempts, last_status), ("delivered", 1, Some(200)), "{id}");
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_session_is_announced_from_start_to_review_on_sqlite() {
    a_session_is_announced_from_start_to_review(false).await;
}

#[tokio::test]
async fn a_session_is_announced_from_start_to_review_on_postgres() {
    a_session_is_announced_from_start_to_review(true).await;
}

#[tokio::test]
async fn a_failing_receiver_gets_the_same_event_again_after_each_backoff() {
    let (app, mut receiver) = app_with_receiver(false, SECRET, 2).await;
    let (_seeker, _s_events, _consultant, _c_events, session_id) = open_priced_session(&app, None).await;

    let first = receiver.next("session.started").await;
    assert_eq!((first.verified, first.answered), (true, 500));
    assert_eq!(first.body["data"]["session_id"], session_id.as_str());
    let t0 = app.clock.now().unix_millis();
    let row = outbox_until(&app, &first.event_id, |r| r.1 == 1).await;
    assert_eq!(row, ("pending".into(), 1, t0 + 30_000, Some(500)), "retried 30 s after the first attempt");

    app.advance(SECS(30)).await;
    let second = receiver.next("session.started").await;
    assert_eq!((second.event_id.as_str(), second.answered), (first.event_id.as_str(), 500), "same event id");
    assert_eq!(second.body, first.body, "the same body, byte for byte in meaning");
    assert_eq!(second.t, first.t + 30, "signed at the attempt's time");
    let row = outbox_until(&app, &first.event_id, |r| r.1 == 2).await;
    assert_eq!(row, ("pending".into(), 2, t0 + 30_000 + 60_000, Some(500)), "then 60 s");

    app.advance(SECS(59)).await;
    assert_eq!(outbox_row(&app, &first.event_id).await.1, 2, "not before its time");
    app.advance(SECS(1)).await;
    let third = receiver.next("session.started").await;
    assert_eq!((third.event_id.as_str(), third.answered, third.verified), (first.event_id.as_str(), 200, true));
    let row = outbox_until(&app, &first.event_id, |r| r.0 != "pending").await;
    assert_eq!((row.0.as_str(), row.1, row.3), ("delivered", 3, Some(200)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_receiver_with_another_secret_rejects_every_event_and_it_stays_pending() {
    let (app, mut receiver) = app_with_receiver(false, "not-the-secret-the-server-signs-with!!", 0).await;
    open_priced_session(&app, None).await;
    let d = receiver.next("session.started").await;
    assert_eq!((d.verified, d.answered), (false, 400), "the signature does not verify with another secret");
    let row = outbox_until(&app, &d.event_id, |r| r.1 == 1).await;
    assert_eq!((row.0.as_str(), row.3), ("pending", Some(400)), "retried later");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn without_a_url_events_are_stored_but_not_sent() {
    let app = spawn_app().await;
    let (seeker, mut s_events, _c, _ce, session_id) = open_priced_session(&app, None).await;
    seeker.end_session(&session_id).await.unwrap();
    wait_ended(&mut s_events).await;
    settled(&ApiClient::new(&app.base).unwrap(), &app.token("sam", Role::Seeker), &session_id).await;
    let pool = app.store.pool();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let rows = sqlx::query("SELECT type, status, attempts FROM webhook_outbox ORDER BY created_ms, id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let got: Vec<(String, String, i64)> = rows
            .iter()
            .map(|r| (r.try_get("type").unwrap(), r.try_get("status").unwrap(), r.try_get("attempts").unwrap()))
            .collect();
        if got.len() == 3 {
            let want = ["session.started", "session.ended", "session.settled"]
                .map(|t| (t.to_owned(), "pending".to_owned(), 0));
            assert_eq!(got, want);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "events not stored: {got:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.assert_reconciled().await;
}

/// `parley` itself refuses a webhook URL without a secret, naming the key.
fn refused_config(vars: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_parley"));
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("PARLEY_") || k == "DATABASE_URL") {
        cmd.env_remove(key);
    }
    cmd.current_dir(dir.path()).env("PARLEY_DATA_DIR", dir.path()).env("PARLEY_LISTEN", "127.0.0.1:0");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{vars:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_webhook_url_without_a_secret_stops_the_server_naming_the_key() {
    let e = refused_config(&[("PARLEY_WEBHOOK_URL", "https://platform.example/parley")]);
    assert!(e.contains("PARLEY_WEBHOOK_SECRET"), "{e}");
    let e = refused_config(&[
        ("PARLEY_WEBHOOK_URL", "https://platform.example/parley"),
        ("PARLEY_WEBHOOK_SECRET", "short"),
    ]);
    assert!(e.contains("PARLEY_WEBHOOK_SECRET") && e.contains("32 bytes"), "{e}");
    let e = refused_config(&[("PARLEY_WEBHOOK_URL", "platform.example"), ("PARLEY_WEBHOOK_SECRET", SECRET)]);
    assert!(e.contains("PARLEY_WEBHOOK_URL"), "{e}");
}

/// Waits until no webhook event of `app`'s database is pending.
async fn all_delivered(app: &TestApp) {
    common::until("every event delivered", || async {
        let pending: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE status = 'pending'")
            .fetch_one(&app.store.pool())
            .await
            .unwrap();
        pending == 0
    })
    .await;
}

/// Two nodes on one PostgreSQL database (issue 16) with one clock: sessions
/// end on either node; both nodes' settlement outboxes and webhook workers
/// scan the shared tables (each is woken by its own commits and rescans
/// every minute of server time). Every session is captured once and every
/// event reaches the operator once, at its first attempt.
#[tokio::test]
async fn two_nodes_on_one_database_settle_and_announce_each_session_once() {
    let clock = common::test_clock();
    let mut receiver = Receiver::start(SECRET, clock.clone(), 0).await;
    let url = fresh_postgres_url().await;
    let node = || {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config::for_tests(dir.path());
        config.database_url = url.clone();
        config.webhooks = WebhookConfig { url: Some(receiver.url.clone()), secret: Some(SECRET.into()) };
        spawn_with_config(config, dir, clock.clone())
    };
    let nodes = [node().await, node().await];
    let mut sessions = Vec::new();
    for round in 0..4 {
        let app = &nodes[round % 2];
        let (seeker, mut s_events, _c, _ce, session_id) = open_priced_session(app, Some(3000)).await;
        // The clock moves only once deliveries are done and recorded (a
        // signature is valid for 5 minutes of it, and a claim expires).
        receiver.next("session.started").await;
        all_delivered(app).await;
        app.advance(SECS(610)).await;
        seeker.end_session(&session_id).await.unwrap();
        wait_ended(&mut s_events).await;
        receiver.next("session.ended").await;
        let d = receiver.next("session.settled").await;
        assert_eq!(
            (d.body["data"]["session_id"].as_str(), d.body["data"]["status"].as_str()),
            (Some(session_id.as_str()), Some("done"))
        );
        sessions.push(session_id);
        all_delivered(app).await;
        // Every node rescans: both workers see every row.
        app.advance(SECS(61)).await;
    }
    let pool = nodes[0].store.pool();
    for session_id in &sessions {
        let captures: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE session_id = $1 AND kind = 'capture'")
                .bind(session_id.as_str())
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(captures, 1, "{session_id} captured once");
    }
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM webhook_outbox").fetch_all(&pool).await.unwrap();
    assert_eq!(ids.len(), sessions.len() * 3, "started, ended, settled per session");
    for id in &ids {
        let (status, attempts, _, last_status) = outbox_until(&nodes[0], id, |r| r.0 != "pending").await;
        assert_eq!((status.as_str(), attempts, last_status), ("delivered", 1, Some(200)), "{id}");
    }
    nodes[0].assert_reconciled().await;
}

/// `session.settled` is stored once per settlement however many workers
/// announce at once (several nodes on one database): each pass stores the
/// events, whose dedupe keys keep one each, and marks the settlements, in
/// one write of the store's writer.
/// Billing settles ten sessions (even ones charged, odd ones free); they
/// are then put back to "finished, not announced" (as after a crash before
/// the mark) and three passes race over them. Five rounds, both backends.
async fn racing_passes_announce_each_settlement_once(app: TestApp) {
    let euros = |minor| Money::new(minor, Currency::parse("EUR").unwrap());
    let (sam, cora) = (UserId::parse("sam").unwrap(), UserId::parse("cora").unwrap());
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: euros(3000) };
    app.billing.set_price(&cora, &price).await.unwrap();
    let pool = app.store.pool();
    for round in 0..5 {
        let mut sessions = Vec::new();
        for i in 0..10 {
            let sid = SessionId::parse(format!("ses_announce_{round}_{i}")).unwrap();
            let call = format!("call_announce_{round}_{i}");
            let hold = app.billing.place_hold(&sid, &call, &sam, &cora, Some("pm_card_visa")).await;
            assert!(hold.unwrap().is_some(), "hold placed");
            let charged = i % 2 == 0;
            let bill = if charged {
                SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: euros(3000) }
            } else {
                SessionBill { outcome: Outcome::Free, billable_secs: 0, charge: euros(0) }
            };
            let mut conn = pool.acquire().await.unwrap();
            insert_settlement(&mut conn, &sid, &bill, "hangup", app.clock.now()).await.unwrap();
            sessions.push((sid, charged));
        }
        app.billing.wake();
        let announced = || async {
            let n: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE announced = 1 AND session_id LIKE $1")
                    .bind(format!("ses_announce_{round}_%"))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
            n == 10
        };
        until("the server settles and announces the round", announced).await;
        sqlx::query("DELETE FROM webhook_outbox WHERE type = 'session.settled'").execute(&pool).await.unwrap();
        sqlx::query("UPDATE settlements SET announced = 0").execute(&pool).await.unwrap();

        let config = WebhookConfig::default();
        let workers: Vec<_> =
            (0..3).map(|_| Webhooks::new(&app.store, app.clock.clone(), &config, Wake::new()).unwrap()).collect();
        for pass in futures_util::future::join_all(workers.iter().map(|w| w.pass())).await {
            pass.expect("a pass");
        }
        let unmarked: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE announced = 0").fetch_one(&pool).await.unwrap();
        assert_eq!(unmarked, 0, "round {round}: every settlement marked");
        let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM webhook_outbox WHERE type = 'session.settled'")
            .fetch_all(&pool)
            .await
            .unwrap();
        let events: Vec<Value> =
            bodies.iter().map(|b| serde_json::from_str::<Value>(b).unwrap()["data"].clone()).collect();
        for (sid, charged) in &sessions {
            let mine: Vec<&Value> = events.iter().filter(|d| d["session_id"] == sid.as_str()).collect();
            assert_eq!(mine.len(), 1, "round {round}, {sid}: one session.settled");
            let data = mine[0];
            let (outcome, captured, fee, earnings) = if *charged {
                ("charged", eur(3000), eur(600), eur(2400))
            } else {
                ("free", Value::Null, Value::Null, Value::Null)
            };
            assert_eq!(
                (data["outcome"].as_str(), &data["captured"], &data["fee"], &data["earnings"]),
                (Some(outcome), &captured, &fee, &earnings),
                "round {round}, {sid}"
            );
        }
    }
    app.assert_reconciled().await;
}

/// More settlements finish than the webhook worker announces in one
/// statement (100) before its pass runs (wakes that come while a pass runs
/// make one more pass, however many settlements they stand for): the pass
/// announces every one, each with one `session.settled` event.
async fn one_pass_announces_more_settlements_than_a_batch(app: TestApp) {
    let pool = app.store.pool();
    let now = app.clock.now().unix_millis();
    for i in 0..250 {
        let sid = format!("ses_many_{i:03}");
        sqlx::query(
            "INSERT INTO holds (session_id, call_id, seeker_id, consultant_id, provider, status, amount_minor, \
             currency, price_model, price_minor, max_billable_secs, created_ms, updated_ms) \
             VALUES ($1, $2, 'sam', 'cora', 'sandbox', 'released', 3000, 'EUR', 'fixed', 3000, 3600, $3, $3)",
        )
        .bind(&sid)
        .bind(format!("call_many_{i:03}"))
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, \
             decided_ms, next_attempt_ms, status, attempts, done_ms) \
             VALUES ($1, 'free', 'hangup', 0, 0, 'EUR', $2, $2, 'done', 1, $2)",
        )
        .bind(&sid)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
    }
    let worker = Webhooks::new(&app.store, app.clock.clone(), &WebhookConfig::default(), Wake::new()).unwrap();
    worker.pass().await.expect("a pass");
    let unmarked: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE session_id LIKE 'ses_many_%' AND announced = 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(unmarked, 0, "every finished settlement is announced by one pass");
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM webhook_outbox WHERE type = 'session.settled' AND dedupe_key LIKE 'session.settled:ses_many_%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut sessions: Vec<String> = bodies
        .iter()
        .map(|b| serde_json::from_str::<Value>(b).unwrap()["data"]["session_id"].as_str().unwrap().to_owned())
        .collect();
    sessions.sort();
    sessions.dedup();
    assert_eq!((bodies.len(), sessions.len()), (250, 250), "one session.settled per session");
}

#[tokio::test]
async fn one_pass_announces_more_settlements_than_a_batch_on_sqlite() {
    one_pass_announces_more_settlements_than_a_batch(spawn_app().await).await;
}

#[tokio::test]
async fn one_pass_announces_more_settlements_than_a_batch_on_postgres() {
    one_pass_announces_more_settlements_than_a_batch(common::spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn racing_passes_announce_each_settlement_once_on_sqlite() {
    racing_passes_announce_each_settlement_once(spawn_app().await).await;
}

#[tokio::test]
async fn racing_passes_announce_each_settlement_once_on_postgres() {
    racing_passes_announce_each_settlement_once(common::spawn_app_on_postgres().await).await;
}
