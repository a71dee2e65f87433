//! E2: the sessions of a package are counted under the engagement's lock.
//! Rival bookings of one package, many rounds, on both databases: N+2 at
//! once on a package with N sessions left get exactly N through (the
//! others 409 `engagement_state`); a cancel racing a booking of the last
//! session leaves the package consistent (never more bookings than
//! sessions, and the session given back is bookable again).

use super::*;

const ROUNDS: usize = 8;

/// A package of `sessions` 60-minute sessions of `seeker` with
/// `consultant` (who has a payout account), funded; returns its id.
async fn package(app: &TestApp, seeker: &str, consultant: &str, sessions: u32) -> String {
    let token = app.token(seeker, Role::Seeker);
    let body = json!({"consultant_id": consultant, "title": "Mentorship", "payment_method": "pm_card_visa",
        "package": {"sessions": sessions, "minutes": 60, "price": {"amount_minor": 5000, "currency": "EUR"}}});
    let (status, v) = call(app, &token, Method::POST, "/v1/engagements", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sessions_left"].as_u64(), Some(u64::from(sessions)), "{v}");
    v["id"].as_str().unwrap().to_owned()
}

/// A booking of one package session at `start`.
async fn book(app: &TestApp, token: &str, consultant: &str, engagement: &str, start: i64) -> (StatusCode, Value) {
    let body = json!({"consultant_id": consultant, "slots": [start], "length_min": 60, "engagement_id": engagement});
    call(app, token, Method::POST, "/v1/bookings", Some(body)).await
}

/// The package's `sessions_left` as the API shows it.
async fn sessions_left(app: &TestApp, token: &str, engagement: &str) -> Option<u64> {
    let (status, v) = call(app, token, Method::GET, &format!("/v1/engagements/{engagement}"), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["sessions_left"].as_u64()
}

/// The package's bookings that hold a session (pending, confirmed, held).
async fn live_bookings(app: &TestApp, engagement: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) FROM bookings WHERE engagement_id = $1 \
         AND state IN ('pending', 'confirmed', 'held')",
    )
    .bind(engagement)
    .fetch_one(&app.store.pool())
    .await
    .unwrap()
}

async fn setup(app: &TestApp) -> (String, i64) {
    let pia = consultant(app, "pia", "UTC").await;
    let (status, v) = call(app, &pia, Method::POST, "/v1/consultants/me/payout-account", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let seeker = app.token("pat", Role::Seeker);
    let start = slot_after(app, &seeker, "pia", DAY + HOUR).await;
    (seeker, start)
}

/// N+2 bookings of a package with N sessions left, sent at once: exactly N
/// are created, the others are 409 `engagement_state`; cancelling one
/// gives its session back.
async fn package_overbooking(app: TestApp) {
    let (seeker, start) = setup(&app).await;
    const N: usize = 3;
    for round in 0..ROUNDS {
        let id = package(&app, "pat", "pia", N as u32).await;
        // Pending proposals may share a slot: only the package limits them.
        let rivals = (0..N + 2).map(|_| book(&app, &seeker, "pia", &id, start));
        let answers = futures_util::future::join_all(rivals).await;
        let created: Vec<&Value> = answers.iter().filter(|(s, _)| *s == StatusCode::CREATED).map(|(_, v)| v).collect();
        assert_eq!(created.len(), N, "round {round}: exactly {N} of {} get through: {answers:?}", N + 2);
        for (status, v) in answers.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
            assert_problem(&(*status, v.clone()), StatusCode::CONFLICT, ErrorCode::EngagementState);
        }
        assert_eq!(live_bookings(&app, &id).await, N as i64, "round {round}");
        assert_eq!(sessions_left(&app, &seeker, &id).await, Some(0), "round {round}");
        // Declining one gives its session back: one more booking, no more.
        let pia = app.token("pia", Role::Consultant);
        let first = booking(created[0]);
        let (status, v) = call(&app, &pia, Method::POST, &format!("/v1/bookings/{}/decline", first.id), None).await;
        assert_eq!(status, StatusCode::OK, "round {round}: {v}");
        assert_eq!(sessions_left(&app, &seeker, &id).await, Some(1), "round {round}: the session is given back");
        let (status, v) = book(&app, &seeker, "pia", &id, start).await;
        assert_eq!(status, StatusCode::CREATED, "round {round}: the declined session is bookable again: {v}");
        assert_problem(&book(&app, &seeker, "pia", &id, start).await, StatusCode::CONFLICT, ErrorCode::EngagementState);
    }
}

#[tokio::test]
async fn package_overbooking_on_sqlite() {
    package_overbooking(spawn_app().await).await;
}

#[tokio::test]
async fn package_overbooking_on_postgres() {
    package_overbooking(spawn_app_on_postgres().await).await;
}

/// The last session of a package is booked; its cancel and a new booking
/// race: the cancel always succeeds, the booking gets through or is 409
/// `engagement_state`, and afterwards the package holds at most one live
/// booking and one more booking succeeds exactly when the rival did not.
async fn cancel_against_last_booking(app: TestApp) {
    let (seeker, start) = setup(&app).await;
    for round in 0..ROUNDS {
        let id = package(&app, "pat", "pia", 1).await;
        let (status, v) = book(&app, &seeker, "pia", &id, start).await;
        assert_eq!(status, StatusCode::CREATED, "round {round}: {v}");
        let last = booking(&v);
        let cancel = format!("/v1/bookings/{}/cancel", last.id);
        let (cancelled, rival) = tokio::join!(
            call(&app, &seeker, Method::POST, &cancel, Some(json!({}))),
            book(&app, &seeker, "pia", &id, start)
        );
        assert_eq!(cancelled.0, StatusCode::OK, "round {round}: {}", cancelled.1);
        let rival_won = match rival.0 {
            StatusCode::CREATED => true,
            _ => {
                assert_problem(&rival, StatusCode::CONFLICT, ErrorCode::EngagementState);
                false
            }
        };
        assert_eq!(live_bookings(&app, &id).await, i64::from(rival_won), "round {round}");
        let again = book(&app, &seeker, "pia", &id, start).await;
        if rival_won {
            assert_problem(&again, StatusCode::CONFLICT, ErrorCode::EngagementState);
        } else {
            assert_eq!(again.0, StatusCode::CREATED, "round {round}: the session given back is bookable: {}", again.1);
        }
        assert_eq!(live_bookings(&app, &id).await, 1, "round {round}: one session, one booking");
    }
}

#[tokio::test]
async fn cancel_against_last_booking_on_sqlite() {
    cancel_against_last_booking(spawn_app().await).await;
}

#[tokio::test]
async fn cancel_against_last_booking_on_postgres() {
    cancel_against_last_booking(spawn_app_on_postgres().await).await;
}
