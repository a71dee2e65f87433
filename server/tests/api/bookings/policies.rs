//! The cancel and reschedule policies.

use super::*;

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
    // The accept places the hold due at once, or finds the scheduler (woken
    // by the reschedule) placing it: either way it is held.
    assert_eq!(r.state, BookingState::Confirmed);
    assert!(["held", "placing"].contains(&r.hold_status.as_str()), "{r:?}");
    hold_becomes(&app, &r.session_id, "held").await;
    // The old slot is free again.
    assert_eq!(propose(&app, "ray", "rex", &[start]).await.0, StatusCode::CREATED);
    app.assert_reconciled().await;
}
