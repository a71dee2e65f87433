//! Scheduled sessions through the API (issue 4, DESIGN.md §3): availability
//! and slots across a DST change, bookings, the booking race, holds, the
//! room opening 10 minutes before the start, reminders, no-shows, the
//! cancel and reschedule policies, and the bad-input codes — on SQLite and
//! PostgreSQL, with real SDK clients and the server's manual clock.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, WAIT, spawn_app, spawn_app_on_postgres, spawn_app_with};
use chrono::{TimeZone, Utc};
use parley_domain::protocol::rest::{
    Booking, BookingRequest, BookingState, DirectoryQuery, ProfileUpdate, Purpose, ReviewRequest, SlotList,
};
use parley_domain::protocol::{ErrorCode, Role, ServerMessage, SessionEndReason};
use parley_domain::{Clock, SessionId, UserId};
use parley_sdk::{ApiClient, SdkError, SignalingClient};
use parley_server::config::SeekerNoShow;
use parley_signaling::Store;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

/// One REST call; returns the status and the JSON body (null if none).
async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Asserts an RFC 9457 problem with `code`.
#[track_caller]
fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: ErrorCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code.as_str(), "{}", got.1);
    assert_eq!(got.1["type"], format!("/problems/{}", code.as_str()));
    assert_eq!(got.1["status"], status.as_u16());
    assert!(got.1["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

fn booking(v: &Value) -> Booking {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("a booking: {e}: {v}"))
}

/// The Unix ms of a UTC date-time.
fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap().timestamp_millis()
}

/// A consultant `id` bookable every day 09:00–17:00 in `tz`, for 30 or 60
/// minutes, at a fixed 30.00 EUR (dev login creates them).
async fn consultant(app: &TestApp, id: &str, tz: &str) -> String {
    let token = app.token(id, Role::Consultant);
    app.store.users_seen(&[common::user(id, Role::Consultant)], app.clock.now()).await.unwrap();
    let days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let weekly: Vec<Value> = days.iter().map(|d| json!({"weekday": d, "start": "09:00", "end": "17:00"})).collect();
    let body = json!({"time_zone": tz, "session_lengths_min": [60, 30], "weekly": weekly});
    let (status, saved) = call(app, &token, Method::PUT, "/v1/consultants/me/availability", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert_eq!(saved["session_lengths_min"], json!([30, 60]), "lengths are stored sorted");
    let price = json!({"model": "fixed", "amount": {"amount_minor": 3000, "currency": "EUR"}});
    let (status, _) = call(app, &token, Method::PUT, "/v1/consultants/me/price", Some(price)).await;
    assert_eq!(status, StatusCode::OK);
    token
}

/// The first free slot of `consultant` at least `after_ms` from now.
async fn slot_after(app: &TestApp, token: &str, consultant: &str, after_ms: i64) -> i64 {
    let from = app.clock.now().unix_millis() + after_ms;
    let path = format!("/v1/consultants/{consultant}/slots?from_ms={from}&length_min=60");
    let (status, v) = call(app, token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let list: SlotList = serde_json::from_value(v).unwrap();
    list.slots.first().expect("a free slot").start_ms
}

async fn propose(app: &TestApp, seeker: &str, consultant: &str, slots: &[i64]) -> (StatusCode, Value) {
    let token = app.token(seeker, Role::Seeker);
    let body = json!({"consultant_id": consultant, "slots": slots, "length_min": 60, "payment_method": "pm_card_visa"});
    call(app, &token, Method::POST, "/v1/bookings", Some(body)).await
}

async fn accept(app: &TestApp, consultant: &str, id: &str, start: i64) -> (StatusCode, Value) {
    let token = app.token(consultant, Role::Consultant);
    call(app, &token, Method::POST, &format!("/v1/bookings/{id}/accept"), Some(json!({"start_ms": start}))).await
}

/// Waits (on the real clock) until the booking reaches `state`.
async fn wait_state(app: &TestApp, token: &str, id: &str, state: BookingState) -> Booking {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = call(app, token, Method::GET, &format!("/v1/bookings/{id}"), None).await;
        let b = booking(&v);
        if b.state == state {
            return b;
        }
        assert!(tokio::time::Instant::now() < deadline, "booking never became {state:?}: {v}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A booking of `seeker` with `consultant` (available every day in UTC) a
/// day or more ahead, accepted, with the clock moved to its room's
/// opening: returns it once `held`, with its start (Unix ms).
async fn room_opening(app: &TestApp, consultant_id: &str, seeker: &str) -> (Booking, i64) {
    consultant(app, consultant_id, "UTC").await;
    let token = app.token(seeker, Role::Seeker);
    let start = slot_after(app, &token, consultant_id, DAY + HOUR).await;
    let b = booking(&propose(app, seeker, consultant_id, &[start]).await.1);
    let b = booking(&accept(app, consultant_id, &b.id, start).await.1);
    set_clock(app, start - 10 * 60_000).await;
    (wait_state(app, &token, &b.id, BookingState::Held).await, start)
}

/// Joins the booked session's room, retrying while it is opening (the
/// booking is `held` a moment before its room admits joins).
async fn join_when_open(client: &SignalingClient, session: &SessionId, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match client.join(session).await {
            Ok(_) => return,
            Err(SdkError::Server { code: ErrorCode::RoomNotOpen, message }) if message.contains("is opening") => {
                assert!(tokio::time::Instant::now() < deadline, "{what}: the room never opened");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// Waits (on the real clock) until the session's hold has `status`
/// (the settlement outbox carries releases and captures out).
async fn hold_becomes(app: &TestApp, session: &SessionId, status: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let hold = app.billing.hold(session).await.unwrap();
        if hold.as_ref().is_some_and(|h| h.status == status) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the hold never became {status}: {hold:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The types of the stored webhook events about booking `id`.
async fn webhook_types(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT type FROM webhook_outbox WHERE body LIKE $1")
        .bind(format!("%\"{id}\"%"))
        .fetch_all(&app.store.pool())
        .await
        .expect("the outbox is readable")
}

/// Moves the server clock to `at` (Unix ms).
async fn set_clock(app: &TestApp, at: i64) {
    let now = app.clock.now().unix_millis();
    assert!(at >= now, "the clock only moves forward");
    app.advance(Duration::from_millis((at - now) as u64)).await;
}

// ----- the whole path ------------------------------------------------------

/// The whole journey, through the SDK's REST client and signaling
/// clients: a seeker finds a consultant in the directory, books a slot; the
/// consultant accepts and the hold is placed; joins before the room opens
/// are refused; at 10 minutes before the start both get the reminder and
/// join; 11 minutes of both present are charged and the settlement captures
/// the fixed price; the seeker reviews the session, and the consultant's
/// metrics show the session, its minutes, the earnings, the rating and the
/// accepted booking.
async fn scheduled_session_end_to_end(app: TestApp) {
    consultant(&app, "cleo", "Europe/Paris").await;
    let api = ApiClient::new(&app.base).unwrap();
    let c_token = app.token("cleo", Role::Consultant);
    let profile = ProfileUpdate {
        display_name: "Cleo Martin".into(),
        headline: "Pension and retirement planning".into(),
        bio: "Twenty years advising on pensions.".into(),
        tags: vec!["pensions".into(), "retirement".into()],
        languages: vec!["fr".into(), "en".into()],
        time_zone: "Europe/Paris".into(),
        session_minutes: vec![30, 60],
    };
    api.set_profile(&c_token, &profile).await.expect("the consultant's profile");
    let cleo: UserId = "cleo".parse().unwrap();

    // The seeker searches the directory and finds her.
    let s_token = app.token("sid", Role::Seeker);
    let query = DirectoryQuery { q: Some("retirement".into()), language: Some("fr".into()), ..Default::default() };
    let page = api.directory(&s_token, &query).await.expect("a directory page");
    let found: Vec<&str> = page.items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(found, ["cleo"], "{page:?}");
    assert_eq!(page.items[0].price.as_ref().map(|p| p.amount.amount_minor), Some(3000));

    let slots = |after_ms: i64| {
        let from = app.clock.now().unix_millis() + after_ms;
        let api = &api;
        let (token, cleo) = (&s_token, &cleo);
        async move { api.slots(token, cleo, Some(from), None, Some(60)).await.expect("slots").slots[0].start_ms }
    };
    let start = slots(2 * DAY).await;
    let other = slots(3 * DAY).await;
    let request = BookingRequest {
        consultant_id: cleo.clone(),
        slots: vec![other, start],
        length_min: 60,
        purpose: Purpose::Consultation,
        payment_method: Some("pm_card_visa".into()),
        record: false,
    };
    let b = api.book(&s_token, &request).await.expect("booked");
    assert_eq!((b.state, b.proposed.clone()), (BookingState::Pending, vec![start, other]), "slots sorted");
    assert_eq!(b.hold_status, "scheduled");
    assert_eq!(b.price.as_ref().map(|p| p.amount.amount_minor), Some(3000));
    let mine = api.bookings(&c_token).await.expect("the consultant's bookings");
    assert!(mine.bookings.iter().any(|x| x.id == b.id && x.state == BookingState::Pending), "{mine:?}");

    let b = api.accept_booking(&c_token, &b.id, start).await.expect("accepted");
    assert_eq!(b.state, BookingState::Confirmed);
    assert_eq!(b.hold_status, "held", "the start is within 6 days: held at confirmation");
    assert_eq!(b.opens_at_ms, Some(start - 10 * 60_000));
    let hold = app.billing.hold(&b.session_id).await.unwrap().expect("a hold");
    assert_eq!((hold.status.as_str(), hold.amount.amount_minor), ("held", 3000));

    // The slot is no longer offered, nor bookable.
    let free = api.slots(&s_token, &cleo, Some(start - HOUR), Some(start + 2 * HOUR), Some(60)).await.unwrap();
    assert!(free.slots.iter().all(|s| s.start_ms != start), "{free:?}");
    assert_problem(&propose(&app, "sam", "cleo", &[start]).await, StatusCode::CONFLICT, ErrorCode::SlotTaken);

    // Too early: the room is not open.
    set_clock(&app, start - 11 * 60_000).await;
    let (seeker, mut s_events) = app.client("sid", Role::Seeker).await;
    let (consultant_client, mut c_events) = app.client("cleo", Role::Consultant).await;
    match seeker.join(&b.session_id).await {
        Err(SdkError::Server { code, message }) => assert_eq!(code, ErrorCode::RoomNotOpen, "{message}"),
        other => panic!("join before the room opens: {other:?}"),
    }
    let (stranger, _e) = app.client("eve", Role::Seeker).await;
    match stranger.join(&b.session_id).await {
        Err(SdkError::Server { code, .. }) => assert_eq!(code, ErrorCode::Forbidden),
        other => panic!("a stranger's join: {other:?}"),
    }

    // The room opens 10 minutes before: both are reminded.
    set_clock(&app, start - 10 * 60_000).await;
    for events in [&mut s_events, &mut c_events] {
        let reminder = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::BookingReminder { session_id, start_ms, opens_at_ms, .. } => {
                    Some((session_id.clone(), *start_ms, *opens_at_ms))
                }
                _ => None,
            })
            .await
            .expect("booking.reminder");
        assert_eq!(reminder, (b.session_id.clone(), start, start - 10 * 60_000));
    }
    wait_state(&app, &s_token, &b.id, BookingState::Held).await;
    join_when_open(&seeker, &b.session_id, "the seeker joins on time").await;
    join_when_open(&consultant_client, &b.session_id, "the consultant joins on time").await;

    // 11 minutes together, past the free window: charged.
    app.advance(Duration::from_secs(11 * 60)).await;
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::MeterBillingStarted { .. }).then_some(()))
        .await
        .expect("billing starts at F");
    seeker.end_session(&b.session_id).await.expect("hang up");
    let ended = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, bill, .. } => Some((*reason, *bill)),
            _ => None,
        })
        .await
        .expect("session.ended");
    assert_eq!(ended.0, SessionEndReason::Hangup);
    let bill = ended.1.expect("a bill");
    assert_eq!((bill.outcome.as_str(), bill.charge.amount_minor), ("charged", 3000));
    let details = common::settled(&api, &s_token, &b.session_id).await;
    assert_eq!(details.captured.map(|m| m.amount_minor), Some(3000), "{details:?}");
    let payout = details.payout.expect("the consultant's share");
    assert!(payout.amount_minor > 0 && payout.amount_minor < 3000, "less the commission: {payout:?}");
    let stored = app.store.session(&b.session_id).await.unwrap().expect("the session is stored");
    assert!(stored.record.scheduled, "stored as a scheduled session");

    // The seeker reviews it; the consultant replies.
    let review = ReviewRequest { stars: 5, text: "Clear and practical.".into() };
    let r = api.review(&s_token, &b.session_id, &review).await.expect("reviewed");
    assert_eq!((r.stars, r.consultant_id.as_str()), (5, "cleo"));
    match api.review(&s_token, &b.session_id, &review).await {
        Err(SdkError::Server { code, .. }) => assert_eq!(code, ErrorCode::ReviewExists),
        other => panic!("a second review: {other:?}"),
    }
    api.reply(&c_token, &r.id, "Thank you!").await.expect("replied");
    let listed = api.reviews(&s_token, &cleo).await.expect("reviews");
    assert_eq!(listed.reviews.len(), 1);
    assert_eq!(listed.reviews[0].reply.as_ref().map(|x| x.text.as_str()), Some("Thank you!"));
    let shown = api.profile(&s_token, &cleo).await.expect("the profile");
    assert_eq!((shown.rating.count, shown.rating.mean), (1, Some(5.0)), "the profile shows the review");

    // The consultant sees it all in their metrics.
    let m = api.metrics(&c_token, &cleo).await.expect("metrics");
    assert_eq!((m.sessions, m.billable_minutes), (1, 11), "{m:?}");
    assert_eq!(m.earnings, vec![payout], "earnings net of commission");
    assert_eq!((m.rating.count, m.rating.mean), (1, Some(5.0)));
    let booked = &m.acceptance.bookings;
    assert_eq!((booked.accepted, booked.declined, booked.timed_out, booked.rate), (1, 0, 0, Some(1.0)));
    assert_eq!(m.acceptance.all.accepted, 1);
    assert_eq!(m.months.len(), 1);
    assert_eq!((m.months[0].sessions, m.months[0].billable_minutes), (1, 11));
    match api.metrics(&s_token, &cleo).await {
        Err(SdkError::Server { code, .. }) => assert_eq!(code, ErrorCode::Forbidden, "a seeker cannot see them"),
        other => panic!("a seeker asking for metrics: {other:?}"),
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn scheduled_session_end_to_end_on_sqlite() {
    scheduled_session_end_to_end(spawn_app().await).await;
}

#[tokio::test]
async fn scheduled_session_end_to_end_on_postgres() {
    scheduled_session_end_to_end(spawn_app_on_postgres().await).await;
}

// ----- DST ---------------------------------------------------------------------

/// Booked in November for 09:00 Paris time on the Monday after the March
/// change: the slot is 08:00Z before the change and 07:00Z after it; the
/// hold is placed 24 h before (more than 6 days ahead), the room opens at
/// 08:50 local = 06:50Z.
#[tokio::test]
async fn booking_across_a_dst_change() {
    let app = spawn_app().await;
    consultant(&app, "paz", "Europe/Paris").await;
    let token = app.token("sue", Role::Seeker);
    assert!(app.clock.now().unix_millis() < utc(2027, 3, 1, 0, 0), "this test books ahead of March 2027");
    let path = format!(
        "/v1/consultants/paz/slots?from_ms={}&to_ms={}&length_min=60",
        utc(2027, 3, 26, 0, 0),
        utc(2027, 3, 30, 0, 0)
    );
    let (status, v) = call(&app, &token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let list: SlotList = serde_json::from_value(v).unwrap();
    assert_eq!(list.time_zone, "Europe/Paris");
    // Paris changes on Sunday 2027-03-28: the day's first slot (09:00
    // local) is 08:00Z on Friday and Saturday, 07:00Z on Sunday and Monday.
    let first_of = |day: u32| {
        let (from, to) = (utc(2027, 3, day, 0, 0), utc(2027, 3, day, 0, 0) + DAY);
        list.slots.iter().map(|s| s.start_ms).filter(|s| (from..to).contains(s)).min()
    };
    let firsts: Vec<Option<i64>> = [26, 27, 28, 29].into_iter().map(first_of).collect();
    let expected = [utc(2027, 3, 26, 8, 0), utc(2027, 3, 27, 8, 0), utc(2027, 3, 28, 7, 0), utc(2027, 3, 29, 7, 0)];
    assert_eq!(firsts, expected.map(Some).to_vec());
    assert_eq!(
        list.slots.iter().filter(|s| s.start_ms >= utc(2027, 3, 29, 0, 0)).count(),
        8,
        "09:00–17:00 is 8 hour slots"
    );

    let start = utc(2027, 3, 29, 7, 0);
    let (status, v) = propose(&app, "sue", "paz", &[start]).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let b = booking(&v);
    let (_, v) = accept(&app, "paz", &b.id, start).await;
    let b = booking(&v);
    assert_eq!((b.state, b.hold_status.as_str()), (BookingState::Confirmed, "scheduled"), "more than 6 days ahead");

    // 25 h before: still no hold. 24 h before: held, and the first reminder.
    set_clock(&app, start - 25 * HOUR).await;
    app.scheduler_caught_up().await;
    assert!(app.billing.hold(&b.session_id).await.unwrap().is_none(), "not placed early");
    set_clock(&app, start - 24 * HOUR).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.billing.hold(&b.session_id).await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the hold was not placed 24 h before");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let token = app.token("sue", Role::Seeker);
    let (seeker, _events) = app.client("sue", Role::Seeker).await;
    set_clock(&app, utc(2027, 3, 29, 6, 49)).await;
    match seeker.join(&b.session_id).await {
        Err(SdkError::Server { code, .. }) => assert_eq!(code, ErrorCode::RoomNotOpen),
        other => panic!("08:49 local is too early: {other:?}"),
    }
    set_clock(&app, utc(2027, 3, 29, 6, 50)).await;
    wait_state(&app, &token, &b.id, BookingState::Held).await;
    join_when_open(&seeker, &b.session_id, "08:50 local: open").await;
}

// ----- the race --------------------------------------------------------------

/// Two seekers ask for the same slot and the consultant accepts both at
/// once: one is confirmed, the other gets `slot_taken` and stays pending.
async fn booking_race(app: TestApp) {
    consultant(&app, "rae", "UTC").await;
    let token = app.token("ann", Role::Seeker);
    let start = slot_after(&app, &token, "rae", DAY).await;
    let a = booking(&propose(&app, "ann", "rae", &[start]).await.1);
    let b = booking(&propose(&app, "bob", "rae", &[start]).await.1);
    let (ra, rb) = tokio::join!(accept(&app, "rae", &a.id, start), accept(&app, "rae", &b.id, start));
    let statuses = [ra.0, rb.0];
    assert!(statuses.contains(&StatusCode::OK), "{ra:?} {rb:?}");
    let loser = if ra.0 == StatusCode::OK { rb } else { ra };
    assert_problem(&loser, StatusCode::CONFLICT, ErrorCode::SlotTaken);
    let (_, mine) = call(&app, &app.token("rae", Role::Consultant), Method::GET, "/v1/bookings", None).await;
    let states: Vec<String> =
        mine["bookings"].as_array().unwrap().iter().map(|b| b["state"].as_str().unwrap().to_owned()).collect();
    assert_eq!(states.iter().filter(|s| *s == "confirmed").count(), 1, "{states:?}");
    assert_eq!(states.iter().filter(|s| *s == "pending").count(), 1, "{states:?}");
}

#[tokio::test]
async fn booking_race_on_sqlite() {
    booking_race(spawn_app().await).await;
}

#[tokio::test]
async fn booking_race_on_postgres() {
    booking_race(spawn_app_on_postgres().await).await;
}

// ----- rivals on one booking (issue 13) -----------------------------------------

/// The first `n` free 60-minute slots of `consultant` at least `after_ms`
/// from now.
async fn free_slots(app: &TestApp, token: &str, consultant: &str, after_ms: i64, n: usize) -> Vec<i64> {
    let from = app.clock.now().unix_millis() + after_ms;
    let path = format!("/v1/consultants/{consultant}/slots?from_ms={from}&length_min=60");
    let (status, v) = call(app, token, Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let list: SlotList = serde_json::from_value(v).unwrap();
    let slots: Vec<i64> = list.slots.iter().take(n).map(|s| s.start_ms).collect();
    assert_eq!(slots.len(), n, "{n} free slots");
    slots
}

/// Checks what a user and the payment provider would see of booking `b`'s
/// holds once the dust settled: a booking that is not confirmed has no
/// authorised hold; a confirmed one at most one, on its current session
/// (and one if it says `held`); every other hold placed for it is released
/// at the provider too; no hold is left `placing`.
async fn booking_holds_consistent(app: &TestApp, token: &str, id: &str) -> Result<Booking, String> {
    let (_, v) = call(app, token, Method::GET, &format!("/v1/bookings/{id}"), None).await;
    let b = booking(&v);
    let rows = sqlx::query(
        "SELECT h.session_id, h.status, i.status AS intent FROM holds h \
         LEFT JOIN sandbox_intents i ON i.id = h.intent_id \
         WHERE h.call_id = (SELECT call_id FROM bookings WHERE id = $1)",
    )
    .bind(id)
    .fetch_all(&app.store.pool())
    .await
    .unwrap();
    use sqlx::Row;
    let holds: Vec<(String, String, Option<String>)> =
        rows.iter().map(|r| (r.get("session_id"), r.get("status"), r.get("intent"))).collect();
    let authorised: Vec<&(String, String, Option<String>)> =
        holds.iter().filter(|h| h.1 == "held" || h.2.as_deref() == Some("requires_capture")).collect();
    let what = format!("booking {:?} hold_status {} session {}: holds {holds:?}", b.state, b.hold_status, b.session_id);
    if b.hold_status == "placing" {
        return Err(format!("still placing: {what}"));
    }
    for h in &holds {
        if (h.1 == "held") != (h.2.as_deref() == Some("requires_capture")) {
            return Err(format!("Parley and the provider disagree: {what}"));
        }
    }
    match b.state {
        BookingState::Confirmed => {
            if authorised.len() > 1 || authorised.iter().any(|h| h.0 != b.session_id.as_str()) {
                return Err(format!("a confirmed booking holds more than its own session: {what}"));
            }
            if (b.hold_status == "held") != (authorised.len() == 1) {
                return Err(format!("the booking's hold_status is not its hold: {what}"));
            }
        }
        _ if !authorised.is_empty() => return Err(format!("an authorised hold without a confirmed booking: {what}")),
        _ => {}
    }
    Ok(b)
}

/// A seeker's app retrying a booking request (Idempotency-Key), five times
/// at once and once more later: one booking, the same one in every 201;
/// the key with other slots is refused.
async fn idempotent_booking_requests(app: TestApp) {
    consultant(&app, "ida", "UTC").await;
    let token = app.token("ike", Role::Seeker);
    let slots = free_slots(&app, &token, "ida", 2 * DAY, 2).await;
    let body = json!({"consultant_id": "ida", "slots": [slots[0]], "length_min": 60, "payment_method": "pm_card_visa"});
    let tries =
        futures_util::future::join_all((0..5).map(|_| app.post_keyed(&token, "/v1/bookings", "book-1", &body))).await;
    let later = app.post_keyed(&token, "/v1/bookings", "book-1", &body).await;
    assert_eq!((later.0, later.2), (201, true), "{later:?}");
    for (status, v, _) in &tries {
        match status {
            201 => assert_eq!(v["id"], later.1["id"], "every 201 is the one booking"),
            409 => assert_eq!(v["code"], "idempotency_key_in_use"),
            other => panic!("{other}: {v}"),
        }
    }
    let (_, mine) = call(&app, &token, Method::GET, "/v1/bookings", None).await;
    assert_eq!(mine["bookings"].as_array().map(Vec::len), Some(1), "one booking: {mine}");
    let other =
        json!({"consultant_id": "ida", "slots": [slots[1]], "length_min": 60, "payment_method": "pm_card_visa"});
    let reused = app.post_keyed(&token, "/v1/bookings", "book-1", &other).await;
    assert_eq!((reused.0, reused.1["code"].as_str()), (422, Some("idempotency_key_reused")), "{reused:?}");
}

#[tokio::test]
async fn idempotent_booking_requests_on_sqlite() {
    idempotent_booking_requests(spawn_app().await).await;
}

#[tokio::test]
async fn idempotent_booking_requests_on_postgres() {
    idempotent_booking_requests(spawn_app_on_postgres().await).await;
}

/// `request` if `on`, else a 409 as if it had lost its race.
async fn maybe(on: bool, request: impl std::future::Future<Output = (StatusCode, Value)>) -> (StatusCode, Value) {
    if on { request.await } else { (StatusCode::CONFLICT, Value::Null) }
}

/// Accept (either slot), decline, cancel and reschedule of one booking, all
/// at once, then accept-again (against a cancel every other round): many
/// rounds, each ending in one consistent state with its holds.
async fn booking_rivals(app: TestApp, rounds: usize) {
    consultant(&app, "riv", "UTC").await;
    let s_token = app.token("sia", Role::Seeker);
    let c_token = app.token("riv", Role::Consultant);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let slots = free_slots(&app, &s_token, "riv", 2 * DAY, 3).await;
        let b = booking(&propose(&app, "sia", "riv", &slots[..2]).await.1);
        let [cancel, decline, reschedule] =
            ["cancel", "decline", "reschedule"].map(|w| format!("/v1/bookings/{}/{w}", b.id));
        // Which rivals race this round: all five, or a subset so that some
        // rounds end confirmed (a cancel in the race always wins at last).
        let rivals = [0b11111, 0b10011, 0b10101, 0b11011][round % 4];
        let on = |bit: u32| rivals & (1 << bit) != 0;
        let (a1, a2, c, d, r) = tokio::join!(
            maybe(on(0), accept(&app, "riv", &b.id, slots[0])),
            maybe(on(1), accept(&app, "riv", &b.id, slots[1])),
            maybe(on(2), call(&app, &s_token, Method::POST, &cancel, None)),
            maybe(on(3), call(&app, &c_token, Method::POST, &decline, None)),
            maybe(on(4), call(&app, &s_token, Method::POST, &reschedule, Some(json!({"slots": [slots[2]]})))),
        );
        for got in [&a1, &a2, &c, &d, &r] {
            // 400: a slot no longer proposed (a reschedule came first).
            let fine = [StatusCode::OK, StatusCode::CONFLICT, StatusCode::BAD_REQUEST];
            assert!(fine.contains(&got.0), "round {round}: every rival gets an answer: {got:?}");
        }
        assert!(a1.0 != StatusCode::OK || a2.0 != StatusCode::OK, "round {round}: one slot confirmed, not two");
        // Accept again whatever is pending now, in half the rounds against
        // a cancel.
        let now = booking(&call(&app, &s_token, Method::GET, &format!("/v1/bookings/{}", b.id), None).await.1);
        if now.state == BookingState::Pending {
            let start = now.proposed[0];
            if round % 8 < 4 {
                accept(&app, "riv", &b.id, start).await;
            } else {
                let _ =
                    tokio::join!(accept(&app, "riv", &b.id, start), call(&app, &s_token, Method::POST, &cancel, None));
            }
        }
        let deadline = tokio::time::Instant::now() + WAIT;
        let settled = loop {
            match booking_holds_consistent(&app, &s_token, &b.id).await {
                Ok(b) => break b,
                Err(e) if tokio::time::Instant::now() >= deadline => panic!("round {round}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        *outcomes.entry(format!("{:?}/{}", settled.state, settled.hold_status)).or_default() += 1;
    }
    eprintln!("booking rivals, final states: {outcomes:?}");
    app.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn booking_rivals_on_sqlite() {
    booking_rivals(spawn_app().await, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn booking_rivals_on_postgres() {
    booking_rivals(spawn_app_on_postgres().await, 16).await;
}

// ----- no-show -----------------------------------------------------------------

/// The consultant never joins: 15 minutes after the start the session ends
/// `no_show` and the hold is released.
#[tokio::test]
async fn consultant_no_show_releases_the_hold() {
    let app = spawn_app().await;
    let (b, start) = room_opening(&app, "noel", "nia").await;
    let token = app.token("nia", Role::Seeker);
    let (seeker, mut events) = app.client("nia", Role::Seeker).await;
    join_when_open(&seeker, &b.session_id, "joins on time").await;
    // 14 minutes after the start the consultant may still come: the end
    // below is stamped at the no-show time, not before.
    set_clock(&app, start + 14 * 60_000).await;
    set_clock(&app, start + 15 * 60_000).await;
    let reason = events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, bill, ended_by, .. } => {
                Some((*reason, bill.map(|b| b.outcome.as_str()), ended_by.as_ref().map(|u| u.as_str().to_owned())))
            }
            _ => None,
        })
        .await
        .expect("session.ended");
    assert_eq!(reason, (SessionEndReason::NoShow, Some("free"), Some("noel".to_owned())), "ended_by: who did not come");
    let details = common::settled(&ApiClient::new(&app.base).unwrap(), &token, &b.session_id).await;
    assert_eq!(details.hold.map(|h| h.status), Some("released".to_owned()));
    assert_eq!(details.end_reason.as_deref(), Some("no_show"));
    assert_eq!(details.ended_at_ms, Some(start + 15 * 60_000), "ended at the no-show time, not earlier");
    // The operator hears of it once, as booking.no_show (and of the booking's
    // other steps once each).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if webhook_types(&app, &b.id).await.contains(&"booking.no_show".to_owned()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no booking.no_show event");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // The scheduler's passes after it announce nothing again.
    app.advance(Duration::from_secs(1)).await;
    app.scheduler_caught_up().await;
    app.advance(Duration::from_secs(1)).await;
    app.scheduler_caught_up().await;
    let mut types = webhook_types(&app, &b.id).await;
    types.sort();
    let expected = ["booking.confirmed", "booking.no_show", "booking.reminder", "booking.requested"];
    assert_eq!(types, expected, "each step once; one reminder (the room opened within 24 h)");
    app.assert_reconciled().await;
}

/// The seeker never joins while the consultant waits: under the default
/// policy the hold is released; under `charge` the seeker pays the
/// late-cancellation fee (50 % of the 30.00 EUR hold), which is captured.
async fn seeker_no_show(policy: SeekerNoShow) {
    let app = spawn_app_with(|c| c.seeker_no_show = policy).await;
    let (b, start) = room_opening(&app, "wes", "ola").await;
    let token = app.token("ola", Role::Seeker);
    let (consultant_client, mut events) = app.client("wes", Role::Consultant).await;
    join_when_open(&consultant_client, &b.session_id, "the consultant joins on time").await;
    set_clock(&app, start + 15 * 60_000).await;
    let (reason, by, bill) = events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, ended_by, bill, .. } => Some((*reason, ended_by.clone(), *bill)),
            _ => None,
        })
        .await
        .expect("session.ended");
    assert_eq!((reason, by.as_ref().map(|u| u.as_str())), (SessionEndReason::NoShow, Some("ola")));
    let bill = bill.expect("a bill");
    let details = common::settled(&ApiClient::new(&app.base).unwrap(), &token, &b.session_id).await;
    match policy {
        SeekerNoShow::Release => {
            assert_eq!((bill.outcome.as_str(), bill.charge.amount_minor), ("free", 0));
            assert_eq!(details.hold.map(|h| h.status), Some("released".to_owned()));
            assert_eq!(details.captured, None);
        }
        SeekerNoShow::Charge => {
            assert_eq!((bill.outcome.as_str(), bill.charge.amount_minor, bill.billable_secs), ("charged", 1500, 0));
            assert_eq!(
                details.captured.map(|m| (m.amount_minor, m.currency.as_str().to_owned())),
                Some((1500, "EUR".into()))
            );
            let payout = details.payout.map(|m| m.amount_minor).unwrap_or(0);
            assert!(payout > 0 && payout < 1500, "the consultant earns the fee less commission: {details:?}");
        }
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn seeker_no_show_is_free_by_default() {
    seeker_no_show(SeekerNoShow::Release).await;
}

#[tokio::test]
async fn seeker_no_show_pays_the_late_fee_under_the_charge_policy() {
    seeker_no_show(SeekerNoShow::Charge).await;
}

/// Before the start, leaving the open room and a server restart do not end
/// the booked session (`G` counts from the no-show time, not from the
/// leave or the restart); the seeker who never comes back is a no-show.
#[tokio::test]
async fn an_early_leave_and_a_restart_keep_the_booked_room_until_the_no_show_time() {
    let app = spawn_app().await;
    let (b, start) = room_opening(&app, "rae", "ivo").await;

    // The seeker looks in early, leaves; 2 minutes (> G = 30 s) later the
    // consultant finds the room still open.
    let (seeker, _s_events) = app.client("ivo", Role::Seeker).await;
    join_when_open(&seeker, &b.session_id, "the seeker looks in").await;
    let (consultant_client, mut c_events) = app.client("rae", Role::Consultant).await;
    consultant_client.join(&b.session_id).await.expect("the consultant joins");
    seeker.leave(&b.session_id).await.expect("the seeker leaves");
    let grace = c_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::ParticipantLeft { grace_secs, .. } => Some(*grace_secs),
            _ => None,
        })
        .await
        .expect("participant.left");
    assert_eq!(grace, 25 * 60 + 30, "until the no-show time (start + 15 min), plus G");
    // Were the room abandoned after G, the restart below would not restore
    // it and the end would not be a no-show at start + 15 min.
    app.advance(Duration::from_secs(120)).await;
    consultant_client.leave(&b.session_id).await.expect("the consultant leaves too");
    drop((seeker, consultant_client));

    // A restart 8 minutes before the start: the room is restored with its
    // no-show time, not G.
    let app = app.restart().await;
    app.advance(Duration::from_secs(5 * 60)).await;
    let (consultant_client, mut c_events) = app.client("rae", Role::Consultant).await;
    consultant_client.join(&b.session_id).await.expect("5 minutes after the restart the room is still open");

    // 15 minutes after the start the seeker has not come back: a no-show.
    set_clock(&app, start + 15 * 60_000).await;
    let (reason, by, bill) = c_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, ended_by, bill, .. } => Some((*reason, ended_by.clone(), *bill)),
            _ => None,
        })
        .await
        .expect("session.ended");
    assert_eq!((reason, by.as_ref().map(|u| u.as_str())), (SessionEndReason::NoShow, Some("ivo")));
    assert_eq!(bill.map(|b| b.outcome.as_str()), Some("free"));
    hold_becomes(&app, &b.session_id, "released").await;
    let details =
        common::settled(&ApiClient::new(&app.base).unwrap(), &app.token("rae", Role::Consultant), &b.session_id).await;
    assert_eq!(details.ended_at_ms, Some(start + 15 * 60_000), "kept open until the no-show time");
    app.assert_reconciled().await;
}

// ----- expiry, decline, cancel, reschedule -------------------------------

#[tokio::test]
async fn unanswered_bookings_expire_after_72_hours() {
    let app = spawn_app().await;
    consultant(&app, "xia", "UTC").await;
    let token = app.token("xan", Role::Seeker);
    let start = slot_after(&app, &token, "xia", 5 * DAY).await;
    let b = booking(&propose(&app, "xan", "xia", &[start]).await.1);
    assert_eq!(b.respond_by_ms, b.created_ms + 72 * HOUR);
    set_clock(&app, b.respond_by_ms).await;
    wait_state(&app, &token, &b.id, BookingState::Expired).await;
    assert_problem(&accept(&app, "xia", &b.id, start).await, StatusCode::CONFLICT, ErrorCode::BookingNotPending);
}

#[tokio::test]
async fn cancel_policy_free_early_fee_late_and_decline() {
    let app = spawn_app().await;
    consultant(&app, "cal", "UTC").await;
    let token = app.token("cat", Role::Seeker);

    // Early: free, the hold released.
    let start = slot_after(&app, &token, "cal", 3 * DAY).await;
    let b = booking(&propose(&app, "cat", "cal", &[start]).await.1);
    booking(&accept(&app, "cal", &b.id, start).await.1);
    let (status, v) = call(&app, &token, Method::POST, &format!("/v1/bookings/{}/cancel", b.id), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let c = booking(&v);
    assert_eq!(
        (c.state, c.cancellation_fee, c.cancelled_by.as_ref().map(|u| u.as_str())),
        (BookingState::Cancelled, None, Some("cat"))
    );
    hold_becomes(&app, &b.session_id, "released").await;
    assert_problem(
        &call(&app, &token, Method::POST, &format!("/v1/bookings/{}/cancel", b.id), None).await,
        StatusCode::CONFLICT,
        ErrorCode::BookingNotPending,
    );

    // Late (within 24 h), by the seeker: 50 % of the hold is captured.
    let start = slot_after(&app, &token, "cal", 20 * HOUR).await;
    let b = booking(&propose(&app, "cat", "cal", &[start]).await.1);
    booking(&accept(&app, "cal", &b.id, start).await.1);
    let (_, v) =
        call(&app, &token, Method::POST, &format!("/v1/bookings/{}/cancel", b.id), Some(json!({"reason": "ill"})))
            .await;
    let c = booking(&v);
    assert_eq!(c.cancellation_fee.map(|f| f.amount_minor), Some(1500));
    hold_becomes(&app, &b.session_id, "captured").await;
    let captured: i64 = app
        .billing
        .session_ledger(&b.session_id)
        .await
        .unwrap()
        .iter()
        .filter(|l| l.kind == "capture")
        .map(|l| l.amount.amount_minor)
        .sum();
    assert_eq!(captured, 1500);

    // Late, by the consultant: free for the seeker.
    let start = slot_after(&app, &token, "cal", 21 * HOUR).await;
    let b = booking(&propose(&app, "cat", "cal", &[start]).await.1);
    booking(&accept(&app, "cal", &b.id, start).await.1);
    let c_token = app.token("cal", Role::Consultant);
    let (_, v) = call(&app, &c_token, Method::POST, &format!("/v1/bookings/{}/cancel", b.id), None).await;
    assert_eq!(booking(&v).cancellation_fee, None);
    hold_becomes(&app, &b.session_id, "released").await;

    // Decline: only the consultant, only while pending.
    let start = slot_after(&app, &token, "cal", 4 * DAY).await;
    let b = booking(&propose(&app, "cat", "cal", &[start]).await.1);
    assert_problem(
        &call(&app, &token, Method::POST, &format!("/v1/bookings/{}/decline", b.id), None).await,
        StatusCode::FORBIDDEN,
        ErrorCode::WrongRole,
    );
    let (_, v) =
        call(&app, &c_token, Method::POST, &format!("/v1/bookings/{}/decline", b.id), Some(json!({"reason": "away"})))
            .await;
    let d = booking(&v);
    assert_eq!((d.state, d.reason.as_deref()), (BookingState::Declined, Some("away")));
    assert_problem(&accept(&app, "cal", &b.id, start).await, StatusCode::CONFLICT, ErrorCode::BookingNotPending);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn reschedule_releases_the_hold_and_waits_for_the_consultant() {
    let app = spawn_app().await;
    consultant(&app, "rex", "UTC").await;
    let token = app.token("roy", Role::Seeker);
    let start = slot_after(&app, &token, "rex", 2 * DAY).await;
    let later = slot_after(&app, &token, "rex", 4 * DAY).await;
    let b = booking(&propose(&app, "roy", "rex", &[start]).await.1);
    let b = booking(&accept(&app, "rex", &b.id, start).await.1);
    let (status, v) =
        call(&app, &token, Method::POST, &format!("/v1/bookings/{}/reschedule", b.id), Some(json!({"slots": [later]})))
            .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let r = booking(&v);
    assert_eq!((r.state, r.proposed.clone(), r.start_ms), (BookingState::Pending, vec![later], None));
    assert_ne!(r.session_id, b.session_id, "a new session id");
    hold_becomes(&app, &b.session_id, "released").await;
    let r = booking(&accept(&app, "rex", &r.id, later).await.1);
    assert_eq!((r.state, r.hold_status.as_str()), (BookingState::Confirmed, "held"));
    // The old slot is free again.
    assert_eq!(propose(&app, "ray", "rex", &[start]).await.0, StatusCode::CREATED);
    app.assert_reconciled().await;
}

// ----- bad input ---------------------------------------------------------------

#[tokio::test]
async fn bad_input_gets_problems_with_stable_codes() {
    let app = spawn_app().await;
    let c_token = consultant(&app, "bea", "UTC").await;
    let token = app.token("ben", Role::Seeker);
    let ok = slot_after(&app, &token, "bea", DAY).await;
    let now = app.clock.now().unix_millis();

    // Availability.
    let put = |body: Value| call(&app, &c_token, Method::PUT, "/v1/consultants/me/availability", Some(body));
    let p = put(json!({"time_zone": "Mars/Olympus", "session_lengths_min": [30]})).await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::UnknownTimeZone);
    let p = put(json!({"time_zone": "UTC", "session_lengths_min": [30], "weekly": [{"weekday": "mon", "start": "10:00", "end": "09:00"}]})).await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    assert!(p.1["detail"].as_str().unwrap().contains("weekly[0]"));
    let p = put(json!({"time_zone": "UTC", "session_lengths_min": [5]})).await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    let p = call(
        &app,
        &token,
        Method::PUT,
        "/v1/consultants/me/availability",
        Some(json!({"time_zone": "UTC", "session_lengths_min": [30]})),
    )
    .await;
    assert_problem(&p, StatusCode::FORBIDDEN, ErrorCode::WrongRole);
    let p = call(
        &app,
        &c_token,
        Method::PUT,
        "/v1/consultants/me/prices/interview",
        Some(json!({"model": "fixed", "amount": {"amount_minor": -5, "currency": "EUR"}})),
    )
    .await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::InvalidPrice);

    // Proposals.
    assert_problem(&propose(&app, "ben", "bea", &[now - HOUR]).await, StatusCode::BAD_REQUEST, ErrorCode::SlotInPast);
    let night = ok - (ok % DAY) + DAY + 2 * HOUR; // 02:00 UTC, outside 09:00–17:00
    assert_problem(&propose(&app, "ben", "bea", &[night]).await, StatusCode::BAD_REQUEST, ErrorCode::SlotUnavailable);
    assert_problem(
        &propose(&app, "ben", "bea", &[ok, ok + DAY, ok + 2 * DAY, ok + 3 * DAY]).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );
    assert_problem(&propose(&app, "ben", "bea", &[]).await, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    assert_problem(&propose(&app, "ben", "bea", &[ok, ok]).await, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    assert_problem(&propose(&app, "ben", "nobody", &[ok]).await, StatusCode::NOT_FOUND, ErrorCode::UnknownConsultant);
    let body = json!({"consultant_id": "bea", "slots": [ok], "length_min": 45, "payment_method": "pm_card_visa"});
    assert_problem(
        &call(&app, &token, Method::POST, "/v1/bookings", Some(body)).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::SlotUnavailable,
    );
    let body = json!({"consultant_id": "bea", "slots": [ok], "length_min": 60});
    assert_problem(
        &call(&app, &token, Method::POST, "/v1/bookings", Some(body)).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::MissingField,
    );
    let body = json!({"consultant_id": "bea", "slots": [ok], "length_min": 60, "payment_method": "pm_card_visa", "record": true});
    assert_problem(
        &call(&app, &token, Method::POST, "/v1/bookings", Some(body)).await,
        StatusCode::FORBIDDEN,
        ErrorCode::PremiumRequired,
    );
    let body = json!({"consultant_id": "bea", "slots": [ok], "length_min": 60, "payment_method": "pm_card_visa"});
    assert_problem(
        &call(&app, &c_token, Method::POST, "/v1/bookings", Some(body)).await,
        StatusCode::FORBIDDEN,
        ErrorCode::WrongRole,
    );
    assert_problem(
        &call(&app, &token, Method::POST, "/v1/bookings", Some(json!({"slots": "soon"}))).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );

    // Bookings.
    let b = booking(&propose(&app, "ben", "bea", &[ok]).await.1);
    assert_problem(&accept(&app, "bea", &b.id, ok + HOUR).await, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    let p = call(&app, &app.token("eve", Role::Seeker), Method::GET, &format!("/v1/bookings/{}", b.id), None).await;
    assert_problem(&p, StatusCode::NOT_FOUND, ErrorCode::UnknownBooking);
    let p =
        call(&app, &token, Method::POST, &format!("/v1/bookings/{}/accept", b.id), Some(json!({"start_ms": ok}))).await;
    assert_problem(&p, StatusCode::FORBIDDEN, ErrorCode::WrongRole);
    assert_problem(
        &call(&app, &token, Method::GET, "/v1/bookings/bkg_nope", None).await,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownBooking,
    );
    let p = call(
        &app,
        &token,
        Method::POST,
        &format!("/v1/bookings/{}/cancel", b.id),
        Some(json!({"reason": "x".repeat(201)})),
    )
    .await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    let c_token = app.token("bea", Role::Consultant);
    let p =
        call(&app, &c_token, Method::POST, &format!("/v1/bookings/{}/decline", b.id), Some(json!({"reason": 5}))).await;
    assert_problem(&p, StatusCode::BAD_REQUEST, ErrorCode::InvalidField);
    let no_body = call(&app, &c_token, Method::POST, &format!("/v1/bookings/{}/decline", b.id), None).await;
    assert_eq!(
        (no_body.0, booking(&no_body.1).state),
        (StatusCode::OK, BookingState::Declined),
        "the body is optional"
    );

    // A declined card flags the booking; its room never opens.
    let body = json!({"consultant_id": "bea", "slots": [ok + DAY], "length_min": 60, "payment_method": "pm_card_chargeDeclined"});
    let d = booking(&call(&app, &token, Method::POST, "/v1/bookings", Some(body)).await.1);
    let d = booking(&accept(&app, "bea", &d.id, ok + DAY).await.1);
    assert_eq!(d.hold_status, "failed");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !webhook_types(&app, &d.id).await.contains(&"booking.hold_failed".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "the operator hears of the refused hold");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(d.hold_error.as_deref().is_some_and(|e| !e.is_empty()));
    set_clock(&app, ok + DAY - 10 * 60_000).await;
    let d = wait_state(&app, &token, &d.id, BookingState::Cancelled).await;
    assert!(d.reason.unwrap().contains("payment hold failed"));
    assert!(app.store.session(&d.session_id).await.unwrap().is_none(), "no session was opened");
}

/// RFC 9457: the problem type leads to its documentation.
#[tokio::test]
async fn problem_types_are_documented() {
    let app = spawn_app().await;
    let res = reqwest::get(format!("{}/v1/bookings", app.base)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let body: Value = res.json().await.unwrap();
    assert_eq!((body["code"].as_str(), body["title"].as_str()), (Some("missing_token"), Some("Missing token")));
    let doc = reqwest::get(format!("{}{}", app.base, body["type"].as_str().unwrap())).await.unwrap();
    assert_eq!(doc.status(), StatusCode::OK);
    let text = doc.text().await.unwrap();
    assert!(text.contains("missing_token") && text.contains("bearer"), "{text}");
    let unknown = reqwest::get(format!("{}/problems/no_such_code", app.base)).await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}
