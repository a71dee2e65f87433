//! Concurrency: the booking race, idempotent booking requests and rival
//! bookings of one slot, many rounds on both databases.

use super::*;

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
/// rounds, each ending in one consistent state with its holds, and with the
/// last `booking.updated` both sides got showing that state.
async fn booking_rivals(app: TestApp, rounds: usize) {
    consultant(&app, "riv", "UTC").await;
    let s_token = app.token("sia", Role::Seeker);
    let c_token = app.token("riv", Role::Consultant);
    let (mut s_side, mut c_side) = (Side::connect(&app, &s_token).await, Side::connect(&app, &c_token).await);
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
        // What both apps show: the last push each side got (pushes of rival
        // changes arrive in the order they were read).
        pushes_show_stored(&app, &s_token, &b.id, [&mut s_side, &mut c_side], &format!("round {round}")).await;
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

/// A confirmed booking (its hold placed) moved by its consultant while its
/// seeker moves it too and, every other round, cancels it: many rounds,
/// each ending in one consistent state with its holds (the held hold is
/// released once whichever change wins; a later acceptance holds again).
async fn consultant_reschedule_rivals(app: TestApp, rounds: usize) {
    consultant(&app, "cri", "UTC").await;
    let s_token = app.token("csa", Role::Seeker);
    let c_token = app.token("cri", Role::Consultant);
    let (mut s_side, mut c_side) = (Side::connect(&app, &s_token).await, Side::connect(&app, &c_token).await);
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        let slots = free_slots(&app, &s_token, "cri", 2 * DAY, 3).await;
        let b = booking(&propose(&app, "csa", "cri", &slots[..1]).await.1);
        assert_eq!(accept(&app, "cri", &b.id, slots[0]).await.0, StatusCode::OK, "round {round}");
        let [cancel, reschedule] = ["cancel", "reschedule"].map(|w| format!("/v1/bookings/{}/{w}", b.id));
        let (by_consultant, by_seeker, cancelled) = tokio::join!(
            call(&app, &c_token, Method::POST, &reschedule, Some(json!({"slots": [slots[1]]}))),
            call(&app, &s_token, Method::POST, &reschedule, Some(json!({"slots": [slots[2]]}))),
            maybe(round % 2 == 0, call(&app, &s_token, Method::POST, &cancel, None)),
        );
        for got in [&by_consultant, &by_seeker, &cancelled] {
            let fine = [StatusCode::OK, StatusCode::CONFLICT, StatusCode::BAD_REQUEST];
            assert!(fine.contains(&got.0), "round {round}: every rival gets an answer: {got:?}");
        }
        // Moving a booking the other side just moved is allowed (it is
        // pending); only a cancel that came first refuses it.
        assert!(
            by_consultant.0 == StatusCode::OK || cancelled.0 == StatusCode::OK,
            "round {round}: the consultant's reschedule was refused without a cancel: {by_consultant:?}"
        );
        let now = booking(&call(&app, &s_token, Method::GET, &format!("/v1/bookings/{}", b.id), None).await.1);
        match now.state {
            BookingState::Pending => {
                assert!(now.proposed == vec![slots[1]] || now.proposed == vec![slots[2]], "round {round}: {now:?}");
                accept(&app, "cri", &b.id, now.proposed[0]).await;
            }
            BookingState::Cancelled => assert_eq!(cancelled.0, StatusCode::OK, "round {round}"),
            other => panic!("round {round}: {other:?}"),
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
        pushes_show_stored(&app, &s_token, &b.id, [&mut s_side, &mut c_side], &format!("round {round}")).await;
    }
    eprintln!("consultant reschedule rivals, final states: {outcomes:?}");
    app.assert_reconciled().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consultant_reschedule_rivals_on_sqlite() {
    consultant_reschedule_rivals(spawn_app().await, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consultant_reschedule_rivals_on_postgres() {
    consultant_reschedule_rivals(spawn_app_on_postgres().await, 12).await;
}
