//! No-shows (consultant, seeker under each policy), an early leave across a
//! restart, and unanswered bookings expiring.

use super::*;

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
