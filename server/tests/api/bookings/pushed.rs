//! Bookings pushed over the socket (`booking.updated`) to both sides as
//! they change, with both display names, and in order when both sides move
//! a booking at once; the policy terms and the purpose prices a seeker
//! reads before booking.

use super::*;
use parley_domain::protocol::rest::Policy;
use parley_sdk::Events;

/// The next `booking.updated` for booking `id` in `state`.
async fn pushed(events: &mut Events, id: &str, state: BookingState) -> Booking {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::BookingUpdated { booking } if booking.id == id && booking.state == state => {
                Some((**booking).clone())
            }
            _ => None,
        })
        .await
        .unwrap_or_else(|e| panic!("booking.updated {id} {state:?}: {e:?}"))
}

async fn bookings_are_pushed_to_both_sides_with_names(app: TestApp) {
    let rae = consultant(&app, "rae", "UTC").await;
    let (_c, mut c_events) = SignalingClient::connect(&app.ws_url, &rae).await.unwrap();
    let ann = app.token("ann", Role::Seeker);
    let (_s, mut s_events) = SignalingClient::connect(&app.ws_url, &ann).await.unwrap();
    let start = slot_after(&app, &ann, "rae", 2 * DAY).await;
    let later = slot_after(&app, &ann, "rae", 4 * DAY).await;

    // Proposed: both hear of it, names included.
    let b = booking(&propose(&app, "ann", "rae", &[start]).await.1);
    assert_eq!((b.seeker_name.as_str(), b.consultant_name.as_str()), ("ann name", "rae name"));
    for events in [&mut s_events, &mut c_events] {
        let p = pushed(events, &b.id, BookingState::Pending).await;
        assert_eq!((p.seeker_name.as_str(), p.consultant_name.as_str()), ("ann name", "rae name"));
    }
    // Accepted, then the hold placed: pushed as it is in the store.
    let (status, v) = accept(&app, "rae", &b.id, start).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    pushed(&mut s_events, &b.id, BookingState::Confirmed).await;
    let held = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::BookingUpdated { booking } if booking.id == b.id && booking.hold_status == "held" => {
                Some(())
            }
            _ => None,
        })
        .await;
    assert!(held.is_ok(), "the hold placed is pushed: {held:?}");
    // The consultant reschedules: pending again, to both.
    let path = format!("/v1/bookings/{}/reschedule", b.id);
    let (status, v) = call(&app, &rae, Method::POST, &path, Some(json!({"slots": [later]}))).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let r = pushed(&mut s_events, &b.id, BookingState::Pending).await;
    assert_eq!(r.proposed, vec![later]);
    pushed(&mut c_events, &b.id, BookingState::Pending).await;
    // Declined.
    let (status, v) = call(&app, &rae, Method::POST, &format!("/v1/bookings/{}/decline", b.id), None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    pushed(&mut s_events, &b.id, BookingState::Declined).await;
    pushed(&mut c_events, &b.id, BookingState::Declined).await;
    // The list carries the names; a profile's display name wins.
    let profile = json!({"display_name": "Rae Q.", "time_zone": "UTC", "session_minutes": [30, 60]});
    let (status, v) = call(&app, &rae, Method::PUT, "/v1/consultants/me/profile", Some(profile)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, list) = call(&app, &ann, Method::GET, "/v1/bookings", None).await;
    assert_eq!(list["bookings"][0]["consultant_name"], "Rae Q.");
    assert_eq!(list["bookings"][0]["seeker_name"], "ann name");
    // A stranger is told nothing.
    let (_x, mut x_events) = app.client("xav", Role::Seeker).await;
    let b2 = booking(&propose(&app, "ann", "rae", &[later]).await.1);
    pushed(&mut s_events, &b2.id, BookingState::Pending).await;
    let leak = x_events
        .wait_for(Duration::from_millis(300), |m| matches!(m, ServerMessage::BookingUpdated { .. }).then_some(()))
        .await;
    assert!(leak.is_err(), "no booking.updated for a stranger");
}

#[tokio::test]
async fn bookings_are_pushed_to_both_sides_with_names_on_sqlite() {
    bookings_are_pushed_to_both_sides_with_names(spawn_app().await).await;
}

#[tokio::test]
async fn bookings_are_pushed_to_both_sides_with_names_on_postgres() {
    bookings_are_pushed_to_both_sides_with_names(spawn_app_on_postgres().await).await;
}

/// For each of several bookings at once, its seeker and its consultant
/// move it back and forth at the same time (each move is stored and pushed
/// while the other's push may still be on its way): once they stop, the
/// last `booking.updated` each side got is the booking as stored.
async fn rival_moves_are_pushed_in_order(app: TestApp) {
    const BOOKINGS: usize = 12;
    const MOVES: usize = 4;
    let one = |i: usize| {
        let app = &app;
        async move {
            let (c_id, s_id) = (format!("rae{i}"), format!("ann{i}"));
            let rae = consultant(app, &c_id, "UTC").await;
            let ann = app.token(&s_id, Role::Seeker);
            let (mut s_side, mut c_side) = (Side::connect(app, &ann).await, Side::connect(app, &rae).await);
            let first = slot_after(app, &ann, &c_id, 2 * DAY).await;
            let by_seeker = slot_after(app, &ann, &c_id, 3 * DAY).await;
            let by_consultant = slot_after(app, &ann, &c_id, 4 * DAY).await;
            let b = booking(&propose(app, &s_id, &c_id, &[first]).await.1);
            let path = format!("/v1/bookings/{}/reschedule", b.id);
            let moves = |token: &str, slot: i64| {
                let (path, token) = (&path, token.to_owned());
                async move {
                    for _ in 0..MOVES {
                        let (status, v) = call(app, &token, Method::POST, path, Some(json!({"slots": [slot]}))).await;
                        assert_eq!(status, StatusCode::OK, "{v}");
                    }
                }
            };
            tokio::join!(moves(&ann, by_seeker), moves(&rae, by_consultant));
            pushes_show_stored(app, &ann, &b.id, [&mut s_side, &mut c_side], &format!("booking {i}")).await;
        }
    };
    futures_util::future::join_all((0..BOOKINGS).map(one)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rival_moves_are_pushed_in_order_on_sqlite() {
    rival_moves_are_pushed_in_order(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rival_moves_are_pushed_in_order_on_postgres() {
    rival_moves_are_pushed_in_order(spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn the_policy_and_the_purpose_prices_are_readable_before_a_call() {
    let app = spawn_app_with(|c| {
        c.late_cancel_fee_percent = 40;
        c.meter.free_window = Duration::from_secs(420);
        c.billing.instant_max_minutes = 45;
    })
    .await;
    let rae = consultant(&app, "rae", "UTC").await;
    let ann = app.token("ann", Role::Seeker);
    let (status, v) = call(&app, &ann, Method::GET, "/v1/policy", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let policy: Policy = serde_json::from_value(v).unwrap();
    assert_eq!((policy.free_window_secs, policy.instant_max_minutes), (420, 45));
    assert_eq!(policy.late_cancel_fee_percent, 40);
    assert_eq!((policy.free_cancel_before_secs, policy.room_opens_before_secs), (24 * 3600, 600));
    let (status, _) = call(&app, "", Method::GET, "/v1/policy", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let profile = json!({"display_name": "Rae", "time_zone": "UTC", "session_minutes": [60]});
    assert_eq!(call(&app, &rae, Method::PUT, "/v1/consultants/me/profile", Some(profile)).await.0, StatusCode::OK);
    // Defaults: mentorship at the consultation price, interviews free.
    let (_, p) = call(&app, &ann, Method::GET, "/v1/consultants/rae/profile", None).await;
    assert_eq!(p["purpose_prices"]["mentorship"]["amount"]["amount_minor"], 3000, "{p}");
    assert!(p["purpose_prices"].get("interview").is_none(), "{p}");
    let interview = json!({"model": "per_minute", "amount": {"amount_minor": 150, "currency": "EUR"}});
    let (status, v) = call(&app, &rae, Method::PUT, "/v1/consultants/me/prices/interview", Some(interview)).await;
    assert!(status.is_success(), "{v}");
    let (_, p) = call(&app, &ann, Method::GET, "/v1/consultants/rae/profile", None).await;
    assert_eq!(p["purpose_prices"]["interview"]["model"], "per_minute", "{p}");
    assert_eq!(p["purpose_prices"]["interview"]["amount"]["amount_minor"], 150, "{p}");
}
