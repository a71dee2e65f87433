//! Scheduled sessions through the API (issue 4, DESIGN.md §3): availability
//! and slots across a DST change, bookings, the booking race, holds, the
//! room opening 10 minutes before the start, reminders, no-shows, the
//! cancel and reschedule policies, and the bad-input codes — on SQLite and
//! PostgreSQL, with real SDK clients and the server's manual clock.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{TestApp, WAIT, spawn_app, spawn_app_on_postgres, spawn_app_with};
use chrono::{TimeZone, Utc};
use parley_domain::protocol::rest::{
    Booking, BookingRequest, BookingState, DirectoryQuery, ProfileUpdate, Purpose, ReviewRequest, SlotList,
};
use parley_domain::protocol::{ErrorCode, Role, ServerMessage, SessionEndReason};
use parley_domain::{Clock, SessionId, UserId};
use parley_sdk::{ApiClient, Event, Events, SdkError, SignalingClient};
use parley_server::config::SeekerNoShow;
use parley_signaling::Store;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod bad_input;
mod end_to_end;
mod no_shows;
mod package;
mod package_races;
mod policies;
mod pushed;
mod races;
mod two_nodes;

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

/// One side's app: its live connection and the last `booking.updated` of
/// each booking it got, by booking id.
struct Side {
    client: SignalingClient,
    events: Events,
    last: HashMap<String, Booking>,
}

impl Side {
    async fn connect(app: &TestApp, token: &str) -> Side {
        let (client, events) = SignalingClient::connect(&app.ws_url, token).await.expect("connects");
        Side { client, events, last: HashMap::new() }
    }

    /// Takes in every push the hub handed to this connection so far: a
    /// request's answer comes after them on the socket.
    async fn catch_up(&mut self) {
        self.client.ice_servers().await.expect("a round trip");
        while let Some(event) = self.events.try_recv() {
            self.take(event);
        }
    }

    fn take(&mut self, event: Event) {
        if let Event::Server(ServerMessage::BookingUpdated { booking }) = event {
            self.last.insert(booking.id.clone(), *booking);
        }
    }
}

/// Waits (on the real clock, at most [`WAIT`]) until the last
/// `booking.updated` both sides got for booking `id` is the booking as
/// stored: what their apps show once the dust settled. Checked with every
/// push handed over so far taken in, and again each time one arrives; a
/// stale last push fails at the deadline.
async fn pushes_show_stored(app: &TestApp, token: &str, id: &str, sides: [&mut Side; 2], context: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let [seeker, consultant] = sides;
    loop {
        seeker.catch_up().await;
        consultant.catch_up().await;
        let stored = booking(&call(app, token, Method::GET, &format!("/v1/bookings/{id}"), None).await.1);
        if seeker.last.get(id) == Some(&stored) && consultant.last.get(id) == Some(&stored) {
            return;
        }
        let next = tokio::time::timeout_at(deadline, async {
            tokio::select! {
                e = seeker.events.recv() => e.map(|e| seeker.take(e)),
                e = consultant.events.recv() => e.map(|e| consultant.take(e)),
            }
        })
        .await;
        assert!(
            next.is_ok(),
            "{context}: the last booking.updated is not the booking as stored: {stored:?}\n\
             seeker got {:?}\nconsultant got {:?}",
            seeker.last.get(id),
            consultant.last.get(id)
        );
        assert!(next.unwrap().is_some(), "{context}: a side's connection closed");
    }
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
