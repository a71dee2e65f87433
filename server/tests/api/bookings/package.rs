//! E2, E6: a package of 3 escrowed sessions booked like any scheduled
//! session: no hold is placed; a session that ends free uses nothing, a
//! charged one draws its price from the escrow (a transfer less the
//! commission); cancelling refunds the sessions left, once.

use super::*;

/// One package session of `seeker` with `consultant`: booked on
/// `engagement`, accepted, run for `minutes` together and hung up. Returns
/// its session id once settled.
async fn package_session(app: &TestApp, engagement: &str, seeker: &str, consultant: &str, minutes: u64) -> SessionId {
    let token = app.token(seeker, Role::Seeker);
    let start = slot_after(app, &token, consultant, DAY + HOUR).await;
    let body = json!({"consultant_id": consultant, "slots": [start], "length_min": 60, "engagement_id": engagement});
    let (status, v) = call(app, &token, Method::POST, "/v1/bookings", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let b = booking(&v);
    let b = booking(&accept(app, consultant, &b.id, start).await.1);
    set_clock(app, start - 10 * 60_000).await;
    wait_state(app, &token, &b.id, BookingState::Held).await;
    let hold = app.billing.hold(&b.session_id).await.unwrap().expect("a record of its price");
    assert_eq!((hold.status.as_str(), hold.intent_id), ("escrow", None), "no card hold for a package session");
    let (s, mut s_events) = app.client(seeker, Role::Seeker).await;
    let (c, _c_events) = app.client(consultant, Role::Consultant).await;
    join_when_open(&s, &b.session_id, "the seeker joins").await;
    join_when_open(&c, &b.session_id, "the consultant joins").await;
    app.advance(Duration::from_secs(minutes * 60)).await;
    if minutes > 10 {
        s_events
            .wait_for(WAIT, |m| matches!(m, ServerMessage::MeterBillingStarted { .. }).then_some(()))
            .await
            .expect("billing starts at F");
    }
    s.end_session(&b.session_id).await.expect("hang up");
    let outcome = if minutes > 10 { "drawn" } else { "unused" };
    hold_becomes(app, &b.session_id, outcome).await;
    b.session_id
}

#[tokio::test]
async fn e2_e6_a_package_of_three_sessions_one_free_two_charged_then_cancelled() {
    let app = spawn_app().await;
    consultant(&app, "pia", "UTC").await;
    let pia = app.token("pia", Role::Consultant);
    let (status, v) = call(&app, &pia, Method::POST, "/v1/consultants/me/payout-account", Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let seeker = app.token("pat", Role::Seeker);
    let body = json!({"consultant_id": "pia", "title": "Mentorship", "payment_method": "pm_card_visa",
        "package": {"sessions": 3, "minutes": 60, "price": {"amount_minor": 5000, "currency": "EUR"}}});
    let (status, v) = call(&app, &seeker, Method::POST, "/v1/engagements", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!((v["funded"]["amount_minor"].as_i64(), v["sessions_left"].as_u64()), (Some(15_000), Some(3)));
    // Only its seeker books on it, only with its consultant, for its length.
    let start = slot_after(&app, &seeker, "pia", DAY + HOUR).await;
    let other = json!({"consultant_id": "pia", "slots": [start], "length_min": 60, "engagement_id": id});
    assert_problem(
        &call(&app, &app.token("eve", Role::Seeker), Method::POST, "/v1/bookings", Some(other.clone())).await,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownEngagement,
    );
    let mut short = other.clone();
    short["length_min"] = json!(30);
    assert_problem(
        &call(&app, &seeker, Method::POST, "/v1/bookings", Some(short)).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );

    // A free session (5 minutes) uses nothing; two charged ones draw 5 000 each.
    package_session(&app, &id, "pat", "pia", 5).await;
    package_session(&app, &id, "pat", "pia", 11).await;
    package_session(&app, &id, "pat", "pia", 12).await;
    let path = format!("/v1/engagements/{id}");
    let (_, v) = call(&app, &seeker, Method::GET, &path, None).await;
    assert_eq!((v["sessions_used"].as_u64(), v["sessions_left"].as_u64()), (Some(2), Some(1)), "{v}");
    assert_eq!(v["released"]["amount_minor"].as_i64(), Some(10_000));
    let charge: String = sqlx::query_scalar("SELECT charge_id FROM engagements WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    let transfers = || async {
        sqlx::query_scalar::<_, i64>("SELECT amount_minor FROM sandbox_transfers WHERE source_transaction = $1")
            .bind(&charge)
            .fetch_all(&app.store.pool())
            .await
            .unwrap()
    };
    // The outbox settles a session, then asks for its transfer.
    common::until("both charged sessions are transferred", || async { transfers().await.len() == 2 }).await;
    assert_eq!(transfers().await, [4_000, 4_000], "each less the 20 % commission");

    // While its last session is booked, the package cannot be cancelled.
    let start = slot_after(&app, &seeker, "pia", DAY + HOUR).await;
    let last = json!({"consultant_id": "pia", "slots": [start], "length_min": 60, "engagement_id": id});
    let (status, v) = call(&app, &seeker, Method::POST, "/v1/bookings", Some(last.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let booked = booking(&v);
    let mut again = last;
    again["slots"] = json!([start + DAY]);
    assert_problem(
        &call(&app, &seeker, Method::POST, "/v1/bookings", Some(again)).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    let cancel = format!("/v1/engagements/{id}/cancel");
    assert_problem(
        &call(&app, &seeker, Method::POST, &cancel, Some(json!({}))).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    let (status, v) =
        call(&app, &seeker, Method::POST, &format!("/v1/bookings/{}/cancel", booked.id), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");

    // Cancelling refunds the session left (less the seeker's 5 % fee), once.
    let (status, v) = call(&app, &seeker, Method::POST, &cancel, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!((v["state"].as_str(), v["refunded"]["amount_minor"].as_i64()), (Some("cancelled"), Some(4_750)));
    assert_eq!(v["escrowed"]["amount_minor"].as_i64(), Some(0));
    assert_problem(
        &call(&app, &seeker, Method::POST, &cancel, Some(json!({}))).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    let refunded: i64 = sqlx::query_scalar(
        "SELECT i.amount_refunded FROM sandbox_intents i JOIN engagements e ON e.intent_id = i.id WHERE e.id = $1",
    )
    .bind(&id)
    .fetch_one(&app.store.pool())
    .await
    .unwrap();
    assert_eq!(refunded, 4_750, "refunded once");
    app.assert_reconciled().await;
}
