//! What the meter bills: the free window, per-minute pricing, grace,
//! limits, and checkpoints at shutdown (M1–M10 with B1 and B4).

use super::*;

#[tokio::test]
async fn m6_b4_a_session_ended_one_second_before_the_free_window_is_free_and_its_hold_released() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(599)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    let bill = SessionBill { outcome: Outcome::Free, billable_secs: 599, charge: eur(0) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::Hangup, Some(bill)));
    assert_eq!(ended(&mut s.c_events).await, (SessionEndReason::Hangup, Some(bill)), "both see the same bill");

    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!(d.outcome, Some(Outcome::Free));
    assert_eq!(d.billable_secs, 599);
    assert_eq!(d.settlement_status.as_deref(), Some("done"));
    let hold = d.hold.clone().expect("hold");
    assert_eq!((hold.status.as_str(), hold.amount, hold.provider.as_str()), ("released", eur(3000), "sandbox"));
    assert_eq!(kinds(&d), ["hold", "release"]);
    assert_eq!(d.captured, None, "nothing captured");
    let receipts = s.api.receipts(&s.seeker_token).await.unwrap();
    assert_eq!(receipts.len(), 1);
    assert_eq!((receipts[0].outcome, receipts[0].charged), (Some(Outcome::Free), eur(0)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m1_m6_m8_m10_b4_a_session_reaching_the_free_window_is_charged_with_the_commission() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    // Server time alone moves the meter (M1): one step to each notice.
    app.advance(SECS(30)).await;
    for events in [&mut s.s_events, &mut s.c_events] {
        let tick = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::MeterTick { billable_secs, .. } => Some(*billable_secs),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(tick, 30, "both see the same numbers (M8)");
    }
    app.advance(SECS(510)).await;
    for events in [&mut s.s_events, &mut s.c_events] {
        let warn = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::MeterFreeWindowEnding { billable_secs, free_window_secs, .. } => {
                    Some((*billable_secs, *free_window_secs))
                }
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(warn, (540, 600));
    }
    app.advance(SECS(60)).await;
    for events in [&mut s.s_events, &mut s.c_events] {
        let started = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::MeterBillingStarted { billable_secs, .. } => Some(*billable_secs),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(started, 600);
    }
    app.advance(SECS(125)).await;
    s.consultant.end_session(&s.session_id).await.unwrap();
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 725, charge: eur(3000) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::Hangup, Some(bill)), "exact to the second (M10)");

    let d = settled(&s.api, &s.consultant_token, &s.session_id).await;
    assert_eq!(d.outcome, Some(Outcome::Charged));
    assert_eq!(d.hold.as_ref().map(|h| h.status.as_str()), Some("captured"));
    assert_eq!((d.captured, d.fee, d.payout), (Some(eur(3000)), Some(eur(600)), Some(eur(2400))), "20 % commission");
    assert_eq!(kinds(&d), ["hold", "capture", "fee", "earnings"]);
    let notices: Vec<&str> = d.timeline.iter().map(|t| t.kind.as_str()).filter(|k| k.contains('_')).collect();
    assert_eq!(notices, ["free_window_ending", "billing_started"], "stored before they were sent (M9)");

    let earnings = s.api.earnings(&s.consultant_token, &uid("cora")).await.unwrap();
    assert_eq!(earnings.totals.len(), 1);
    assert_eq!((earnings.totals[0].earnings, earnings.totals[0].sessions), (eur(2400), 1));
    let receipts = s.api.receipts(&s.seeker_token).await.unwrap();
    assert_eq!((receipts[0].charged, receipts[0].billable_secs), (eur(3000), Some(725)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m2_the_meter_starts_when_the_second_participant_joins() {
    let app = spawn_app().await;
    let (api, _) = priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    app.advance(SECS(20)).await; // alone in the room: not billable
    consultant.join(&session_id).await.unwrap();
    app.advance(SECS(590)).await;
    seeker.end_session(&session_id).await.unwrap();
    let (_, bill) = ended(&mut s_events).await;
    assert_eq!(bill.map(|b| (b.outcome, b.billable_secs)), Some((Outcome::Free, 590)));
    let d = settled(&api, &app.token("sam", Role::Seeker), &session_id).await;
    assert_eq!(d.hold.unwrap().status, "released");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m7_b1_per_minute_charges_started_minutes_beyond_the_free_window() {
    let app = spawn_app().await;
    // 1.99 EUR a minute: the hold is 60 × 1.99 = 119.40 EUR (B2).
    let mut s = session_with(&app, PriceModel::PerMinute, 199).await;
    app.advance(SECS(600 + 61)).await; // two started minutes beyond F
    s.seeker.end_session(&s.session_id).await.unwrap();
    let (_, bill) = ended(&mut s.s_events).await;
    assert_eq!(bill, Some(SessionBill { outcome: Outcome::Charged, billable_secs: 661, charge: eur(398) }));
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!(d.hold.as_ref().map(|h| h.amount), Some(eur(11940)));
    // 20 % of 398 is 79.6: the commission rounds down to whole cents (B1).
    assert_eq!((d.captured, d.fee, d.payout), (Some(eur(398)), Some(eur(79)), Some(eur(319))));
    let release = d.ledger.iter().find(|l| l.kind == "release").map(|l| l.amount);
    assert_eq!(release, Some(eur(11940 - 398)), "the rest of the hold is released");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m4_m7_a_per_minute_session_is_warned_and_ended_when_its_hold_is_used_up() {
    let app = spawn_app_with(|c| c.billing.instant_max_minutes = 2).await;
    let mut s = session_with(&app, PriceModel::PerMinute, 100).await;
    app.advance(SECS(600 + 60)).await;
    let warned = s
        .s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::MeterHoldEnding { billable_secs, ends_at_billable_secs, .. } => {
                Some((*billable_secs, *ends_at_billable_secs))
            }
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(warned, (660, 720));
    app.advance(SECS(100)).await;
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 720, charge: eur(200) };
    assert_eq!(ended(&mut s.s_events).await, (SessionEndReason::HoldUsedUp, Some(bill)), "ended as of the limit");
    assert_eq!(ended(&mut s.c_events).await.0, SessionEndReason::HoldUsedUp);
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!((d.captured, d.end_reason.as_deref()), (Some(eur(200)), Some("hold_used_up")));
    assert_eq!(d.ledger.iter().filter(|l| l.kind == "release").count(), 0, "the whole hold was used");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m3_m5_an_absence_rejoined_within_grace_is_not_billed() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(300)).await;
    s.consultant.leave(&s.session_id).await.unwrap();
    app.advance(SECS(29)).await; // within G = 30 s
    let room = s.consultant.join(&s.session_id).await.unwrap();
    let meter = room.meter.expect("the ack tells the meter");
    assert_eq!((meter.free_window_secs, meter.billable_secs, meter.billing_started), (600, 300, false));
    app.advance(SECS(299)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    let (_, bill) = ended(&mut s.s_events).await;
    // 300 + 299 = 599 s both present: free, though 628 s passed.
    assert_eq!(bill.map(|b| (b.outcome, b.billable_secs)), Some((Outcome::Free, 599)));
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!(d.hold.unwrap().status, "released");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn m3_absent_beyond_grace_ends_the_session_as_of_the_drop() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(700)).await;
    s.seeker.close(); // the seeker's connection goes away
    s.c_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::ParticipantLeft { .. }).then_some(()))
        .await
        .expect("participant.left");
    app.advance(SECS(30)).await;
    let (reason, bill) = ended(&mut s.c_events).await;
    assert_eq!(reason, SessionEndReason::Abandoned);
    assert_eq!(bill.map(|b| (b.outcome, b.billable_secs)), Some((Outcome::Charged, 700)), "billed to the drop");
    let d = settled(&s.api, &s.consultant_token, &s.session_id).await;
    assert_eq!(d.captured, Some(eur(3000)));
    app.assert_reconciled().await;
}

/// The stored checkpoint of a session's billable time, ms.
async fn checkpoint_ms(app: &TestApp, session: &SessionId) -> Option<i64> {
    sqlx::query_scalar("SELECT billable_ms FROM meter_checkpoints WHERE session_id = $1")
        .bind(session.as_str())
        .fetch_optional(&app.store.pool())
        .await
        .unwrap()
}

/// A deploy (SIGTERM: the graceful stop) loses no metered time: 617 s of a
/// live session were metered, the last periodic checkpoint says 610 s, and
/// the stop stores 617 s, which the restarted server resumes from.
async fn shutdown_checkpoints_live_sessions(mut app: TestApp) {
    let s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(610)).await;
    common::until("the 610 s checkpoint", || async { checkpoint_ms(&app, &s.session_id).await == Some(610_000) }).await;
    app.advance(SECS(7)).await;
    app.stop().await;
    assert_eq!(checkpoint_ms(&app, &s.session_id).await, Some(617_000), "0 s lost to the stop");
    let session_id = s.session_id.clone();
    drop(s);
    let app = app.restart().await;
    let moderator = app.token("mo", Role::Moderator);
    let d = ApiClient::new(&app.base).unwrap().session(&moderator, &session_id).await.unwrap();
    assert_eq!(d.billable_secs, 617, "the restarted meter resumes from 617 s: {d:?}");
}

#[tokio::test]
async fn shutdown_checkpoints_live_sessions_on_sqlite() {
    shutdown_checkpoints_live_sessions(spawn_app().await).await;
}

#[tokio::test]
async fn shutdown_checkpoints_live_sessions_on_postgres() {
    shutdown_checkpoints_live_sessions(spawn_app_on_postgres().await).await;
}
