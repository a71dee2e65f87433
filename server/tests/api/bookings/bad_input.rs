//! Bad input gets problems with stable codes, and every problem type is
//! documented.

use super::*;

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
    // Refused by the accept itself, or by the scheduler it woke, which the
    // accept then finds placing it.
    assert!(["failed", "placing"].contains(&d.hold_status.as_str()), "{d:?}");
    let path = format!("/v1/bookings/{}", d.id);
    common::until("the hold is refused", || async {
        booking(&call(&app, &token, Method::GET, &path, None).await.1).hold_status == "failed"
    })
    .await;
    let d = booking(&call(&app, &token, Method::GET, &path, None).await.1);
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
