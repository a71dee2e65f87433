//! A scheduled session end to end (propose, accept, hold, reminders, the
//! room opening, the bill) on both databases, and slots across a DST change.

use super::*;

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
        engagement_id: None,
    };
    let b = api.book(&s_token, &request).await.expect("booked");
    assert_eq!((b.state, b.proposed.clone()), (BookingState::Pending, vec![start, other]), "slots sorted");
    assert_eq!(b.hold_status, "scheduled");
    assert_eq!(b.price.as_ref().map(|p| p.amount.amount_minor), Some(3000));
    let mine = api.bookings(&c_token).await.expect("the consultant's bookings");
    assert!(mine.bookings.iter().any(|x| x.id == b.id && x.state == BookingState::Pending), "{mine:?}");

    let b = api.accept_booking(&c_token, &b.id, start).await.expect("accepted");
    assert_eq!(b.state, BookingState::Confirmed);
    // The start is within 6 days: held at confirmation — by the accept
    // itself, or by the scheduler it woke, which the accept then finds
    // placing it.
    assert!(["held", "placing"].contains(&b.hold_status.as_str()), "{b:?}");
    hold_becomes(&app, &b.session_id, "held").await;
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
