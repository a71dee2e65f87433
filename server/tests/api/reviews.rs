//! Reviews, reputation and consultant metrics (issue 4) over REST, on
//! SQLite and PostgreSQL: real sessions through SDK clients, older ones
//! written through the store with chosen times.

use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming, open_session, settled, spawn_app, spawn_app_on_postgres, wait_ended};
use parley_domain::protocol::rest::{ConsultantMetrics, ConsultantPrice, PriceModel, Review, ReviewPage};
use parley_domain::protocol::{CallEndReason, ErrorCode, Outcome, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::reputation::bayesian_average;
use parley_domain::{CallId, Clock, Currency, Money, SessionId, Timestamp, UserId};
use parley_sdk::ApiClient;
use parley_signaling::Store;
use parley_signaling::store::{SessionEvent, SessionRecord};
use serde_json::{Value, json};
use sqlx::Row;

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// Unix ms of 00:00 UTC on the first of `month` of `year` (2024 only).
fn ms_2024(month: u32, day: i64) -> i64 {
    let days_before = [0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335]; // a leap year
    (19_723 + days_before[month as usize - 1] + day - 1) * 86_400_000
}

/// A REST call: status and JSON body.
async fn call(app: &TestApp, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", app.base);
    let mut req = match method {
        "GET" => client.get(&url),
        _ => client.post(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Expects a refusal with `status` and `code`.
async fn refused(app: &TestApp, method: &str, path: &str, token: Option<&str>, body: Option<Value>, want: (u16, &str)) {
    let (status, body) = call(app, method, path, token, body).await;
    assert_eq!((status, body["code"].as_str().unwrap_or_default()), want, "{method} {path}: {body}");
}

/// A session of `seeker` with `consultant` opened at `opened_ms` and ended
/// `secs` later (all billable, free), written through the store.
async fn stored_session(
    app: &TestApp,
    id: &str,
    seeker: &str,
    consultant: &str,
    opened_ms: i64,
    secs: u64,
) -> SessionId {
    let session_id = SessionId::parse(format!("ses_{id}")).unwrap();
    let record = SessionRecord {
        session_id: session_id.clone(),
        call_id: CallId::parse(format!("call_{id}")).unwrap(),
        seeker_id: uid(seeker),
        consultant_id: uid(consultant),
        opened_at: Timestamp::from_unix_millis(opened_ms),
        recording: false,
        scheduled: false,
    };
    app.store.create_session(&record).await.unwrap();
    let bill = SessionBill { outcome: Outcome::Free, billable_secs: secs, charge: eur(0) };
    let end = SessionEvent::Ended { reason: SessionEndReason::Hangup, by: None, bill: Some(bill) };
    let at = Timestamp::from_unix_millis(opened_ms + i64::try_from(secs).unwrap() * 1000);
    app.store.session_event(&session_id, &end, at).await.unwrap();
    session_id
}

async fn reviews_flow(app: TestApp) {
    let sam = app.token("sam", Role::Seeker);
    let cora = app.token("cora", Role::Consultant);
    let (seeker, mut s_events, _consultant, _c_events, session_id) = open_session(&app, None).await;
    let review_path = format!("/v1/sessions/{session_id}/review");
    let good = json!({"stars": 4, "text": "é".repeat(2000)});

    // Not yet, not you, not this.
    refused(&app, "POST", &review_path, Some(&sam), Some(good.clone()), (409, "session_not_completed")).await;
    refused(&app, "POST", &review_path, Some(&cora), Some(good.clone()), (403, "wrong_role")).await;
    let eve = app.token("eve", Role::Seeker);
    refused(&app, "POST", &review_path, Some(&eve), Some(good.clone()), (403, "forbidden")).await;
    refused(&app, "POST", &review_path, None, Some(good.clone()), (401, "missing_token")).await;
    refused(&app, "POST", "/v1/sessions/ses_nope/review", Some(&sam), Some(good.clone()), (404, "unknown_session"))
        .await;
    refused(&app, "POST", "/v1/sessions/bad%20id/review", Some(&sam), Some(good.clone()), (400, "invalid_field")).await;
    for bad in [json!({"stars": 0}), json!({"stars": 6}), json!({"stars": -1}), json!({"text": "no stars"})] {
        refused(&app, "POST", &review_path, Some(&sam), Some(bad), (400, "invalid_field")).await;
    }
    let long = json!({"stars": 3, "text": "x".repeat(2001)});
    refused(&app, "POST", &review_path, Some(&sam), Some(long), (400, "invalid_field")).await;

    seeker.end_session(&session_id).await.unwrap();
    wait_ended(&mut s_events).await;
    let before = app.clock.now().unix_millis();
    let (status, body) = call(&app, "POST", &review_path, Some(&sam), Some(good.clone())).await;
    assert_eq!(status, 201, "{body}");
    let first: Review = serde_json::from_value(body).unwrap();
    assert!(first.id.starts_with("rev_"), "{}", first.id);
    assert_eq!((first.session_id.as_str(), first.seeker_id.as_str()), (session_id.as_str(), "sam"));
    assert_eq!((first.consultant_id.as_str(), first.stars, first.created_at_ms), ("cora", 4, before));
    assert_eq!(first.text.chars().count(), 2000, "2000 characters (4000 bytes) are allowed");
    assert_eq!(first.reply, None);
    refused(&app, "POST", &review_path, Some(&sam), Some(good.clone()), (409, "review_exists")).await;

    // The consultant replies once.
    let reply_path = format!("/v1/reviews/{}/reply", first.id);
    let thanks = json!({"text": "Thank you, Sam."});
    refused(&app, "POST", &reply_path, Some(&sam), Some(thanks.clone()), (403, "wrong_role")).await;
    let otto = app.token("otto", Role::Consultant);
    refused(&app, "POST", &reply_path, Some(&otto), Some(thanks.clone()), (403, "forbidden")).await;
    refused(&app, "POST", "/v1/reviews/rev_nope/reply", Some(&cora), Some(thanks.clone()), (404, "unknown_review"))
        .await;
    refused(&app, "POST", &reply_path, Some(&cora), Some(json!({"text": "  "})), (400, "invalid_field")).await;
    let long = json!({"text": "x".repeat(2001)});
    refused(&app, "POST", &reply_path, Some(&cora), Some(long), (400, "invalid_field")).await;
    app.advance(SECS(5)).await;
    let (status, body) = call(&app, "POST", &reply_path, Some(&cora), Some(thanks.clone())).await;
    assert_eq!(status, 200, "{body}");
    let replied: Review = serde_json::from_value(body).unwrap();
    let reply = replied.reply.clone().expect("the reply");
    assert_eq!((reply.text.as_str(), reply.created_at_ms), ("Thank you, Sam.", before + 5_000));
    refused(&app, "POST", &reply_path, Some(&cora), Some(thanks), (409, "review_exists")).await;

    // Three more reviews of earlier sessions, a second apart.
    let mut ids = vec![first.id.clone()];
    for (i, stars) in [5, 2, 5].into_iter().enumerate() {
        let s = stored_session(&app, &format!("old{i}"), "sam", "cora", before - 86_400_000, 60).await;
        app.advance(SECS(1)).await;
        let (status, body) =
            call(&app, "POST", &format!("/v1/sessions/{s}/review"), Some(&sam), Some(json!({"stars": stars}))).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["text"], "", "text may be omitted");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }

    // Anyone signed in reads them, newest first, in pages.
    let (status, body) = call(&app, "GET", "/v1/consultants/cora/reviews?limit=3", Some(&eve), None).await;
    assert_eq!(status, 200, "{body}");
    let page: ReviewPage = serde_json::from_value(body).unwrap();
    let got: Vec<&str> = page.reviews.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got, [ids[3].as_str(), ids[2].as_str(), ids[1].as_str()]);
    assert_eq!(page.reputation.count, 4);
    assert_eq!(page.reputation.mean, Some(4.0));
    assert!((page.reputation.score - bayesian_average(4, 16)).abs() < 1e-9, "{:?}", page.reputation);
    let cursor = page.next_cursor.expect("a second page");
    let (status, body) =
        call(&app, "GET", &format!("/v1/consultants/cora/reviews?limit=3&cursor={cursor}"), Some(&cora), None).await;
    assert_eq!(status, 200, "{body}");
    let page: ReviewPage = serde_json::from_value(body).unwrap();
    assert_eq!(page.reviews, vec![replied], "the oldest, with its reply");
    assert_eq!(page.next_cursor, None, "the last page");
    let (_, body) = call(&app, "GET", "/v1/consultants/cora/reviews", Some(&eve), None).await;
    assert_eq!(body["reviews"].as_array().unwrap().len(), 4, "default page size 20");

    for bad in ["limit=0", "limit=101", "limit=x", "cursor=zz", "cursor=00"] {
        refused(&app, "GET", &format!("/v1/consultants/cora/reviews?{bad}"), Some(&eve), None, (400, "invalid_field"))
            .await;
    }
    refused(&app, "GET", "/v1/consultants/nobody/reviews", Some(&eve), None, (404, "unknown_consultant")).await;
    refused(&app, "GET", "/v1/consultants/sam/reviews", Some(&eve), None, (404, "unknown_consultant")).await;
    refused(&app, "GET", "/v1/consultants/cora/reviews", None, None, (401, "missing_token")).await;

    // The directory's view: many consultants at once, the prior without reviews.
    let all = parley_server::reviews::reputations(&app.store.pool(), &[uid("cora"), uid("nobody")]).await.unwrap();
    assert_eq!((all[&uid("cora")].count, all[&uid("cora")].mean), (4, Some(4.0)));
    assert_eq!((all[&uid("nobody")].count, all[&uid("nobody")].mean, all[&uid("nobody")].score), (0, None, 3.5));

    // Each review was announced once (no webhook URL here: stored only).
    let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhook_outbox WHERE type = 'review.created'")
        .fetch_one(&app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(n, 4);
}

#[tokio::test]
async fn reviews_and_replies_on_sqlite() {
    reviews_flow(spawn_app().await).await;
}

#[tokio::test]
async fn reviews_and_replies_on_postgres() {
    reviews_flow(spawn_app_on_postgres().await).await;
}

async fn metrics_flow(app: TestApp) {
    // Earlier sessions of cora (Jan and Mar 2024) and one of otto.
    stored_session(&app, "jan", "sam", "cora", ms_2024(1, 15), 120).await;
    stored_session(&app, "mar", "sam", "cora", ms_2024(3, 10), 300).await;
    stored_session(&app, "otto", "sam", "otto", ms_2024(2, 1), 900).await;

    // A charged session now, refunded in part.
    let api = ApiClient::new(&app.base).unwrap();
    let cora = app.token("cora", Role::Consultant);
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    api.set_price(&cora, &price).await.unwrap();
    let (seeker, mut s_events, consultant, mut c_events, session_id) = open_session(&app, Some("pm_card_visa")).await;
    app.advance(SECS(600)).await;
    seeker.end_session(&session_id).await.unwrap();
    wait_ended(&mut s_events).await;
    let moderator = app.token("mo", Role::Moderator);
    settled(&api, &moderator, &session_id).await;
    api.refund(&moderator, &session_id, Some(1000)).await.unwrap();
    let sam = app.token("sam", Role::Seeker);
    let (status, _) =
        call(&app, "POST", &format!("/v1/sessions/{session_id}/review"), Some(&sam), Some(json!({"stars": 4}))).await;
    assert_eq!(status, 201);

    // A declined call, a call that rang out, a cancelled one (not counted).
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, _) = incoming(&mut c_events).await;
    consultant.decline(&call_id, None).await.unwrap();
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    incoming(&mut c_events).await;
    app.advance(SECS(30)).await;
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::CallEnded { reason: CallEndReason::Timeout, .. }).then_some(()))
        .await
        .expect("rang out");
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, _) = incoming(&mut c_events).await;
    seeker.cancel(&call_id).await.unwrap();

    let (status, body) = call(&app, "GET", "/v1/consultants/cora/metrics", Some(&cora), None).await;
    assert_eq!(status, 200, "{body}");
    let m: ConsultantMetrics = serde_json::from_value(body).unwrap();
    assert_eq!((m.consultant_id.as_str(), m.from_ms, m.to_ms), ("cora", None, None));
    assert_eq!((m.sessions, m.billable_secs, m.billable_minutes), (3, 1020, 17));
    assert_eq!(m.earnings, vec![eur(2400 - 800)], "net of the 20 % commission and the refund's share");
    assert_eq!((m.rating.count, m.rating.mean), (1, Some(4.0)));
    assert!((m.rating.score - bayesian_average(1, 4)).abs() < 1e-9);
    let acc = &m.acceptance.instant_calls;
    assert_eq!((acc.accepted, acc.declined, acc.timed_out), (1, 1, 1));
    assert!((acc.rate.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    // Every month from January 2024 to now, gaps included.
    assert_eq!(m.months.first().map(|x| x.month.as_str()), Some("2024-01"));
    assert_eq!(m.months[1].month, "2024-02");
    assert_eq!((m.months[1].sessions, m.months[1].billable_secs), (0, 0), "otto's session is not cora's");
    let now_month = m.months.last().unwrap();
    assert!(now_month.start_ms <= app.clock.now().unix_millis(), "{now_month:?}");
    assert_eq!((now_month.sessions, now_month.billable_minutes), (1, 10));
    assert_eq!(now_month.earnings, vec![eur(1600)]);
    assert_eq!(m.months.iter().map(|x| x.sessions).sum::<u64>(), 3);
    let starts: Vec<i64> = m.months.iter().map(|x| x.start_ms).collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1] && w[1] - w[0] <= 31 * 86_400_000), "contiguous months");

    // A period: Q1 2024 only.
    let (from, to) = (ms_2024(1, 1), ms_2024(4, 1));
    let (status, body) =
        call(&app, "GET", &format!("/v1/consultants/cora/metrics?from={from}&to={to}"), Some(&moderator), None).await;
    assert_eq!(status, 200, "{body}");
    let q1: ConsultantMetrics = serde_json::from_value(body).unwrap();
    assert_eq!((q1.from_ms, q1.to_ms), (Some(from), Some(to)));
    assert_eq!((q1.sessions, q1.billable_secs, q1.billable_minutes), (2, 420, 7));
    assert_eq!((q1.earnings.len(), q1.rating.count, q1.rating.score), (0, 0, 3.5));
    assert_eq!(q1.acceptance.instant_calls.rate, None, "no calls rang then");
    let months: Vec<(&str, u64, i64)> = q1.months.iter().map(|x| (x.month.as_str(), x.sessions, x.start_ms)).collect();
    assert_eq!(months, [("2024-01", 1, ms_2024(1, 1)), ("2024-02", 0, ms_2024(2, 1)), ("2024-03", 1, ms_2024(3, 1))]);

    // Who may ask, and bad periods.
    let path = "/v1/consultants/cora/metrics";
    refused(&app, "GET", path, Some(&sam), None, (403, "forbidden")).await;
    refused(&app, "GET", path, Some(&app.token("otto", Role::Consultant)), None, (403, "forbidden")).await;
    refused(&app, "GET", path, None, None, (401, "missing_token")).await;
    refused(&app, "GET", "/v1/consultants/nobody/metrics", Some(&moderator), None, (404, "unknown_consultant")).await;
    for bad in [format!("from={to}&to={from}"), format!("from={from}&to={from}"), "from=soon".into(), "to=-5".into()] {
        refused(&app, "GET", &format!("{path}?{bad}"), Some(&cora), None, (400, "invalid_field")).await;
    }
}

#[tokio::test]
async fn consultant_metrics_on_sqlite() {
    metrics_flow(spawn_app().await).await;
}

#[tokio::test]
async fn consultant_metrics_on_postgres() {
    metrics_flow(spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn the_openapi_document_describes_reviews_and_metrics() {
    let app = spawn_app().await;
    let doc: Value = reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    for (method, path) in [
        ("post", "/v1/sessions/{id}/review"),
        ("post", "/v1/reviews/{id}/reply"),
        ("get", "/v1/consultants/{id}/reviews"),
        ("get", "/v1/consultants/{id}/metrics"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from /openapi.json");
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["Review", "ReviewPage", "Reputation", "ConsultantMetrics", "MonthMetrics", "SessionEndedData"] {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    let _ = ErrorCode::UnknownReview;
}
