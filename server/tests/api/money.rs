//! The money path end to end (issue 3): a real server with the sandbox
//! provider (DESIGN.md B8) and a manual clock, real SDK clients. Each test
//! names the rules of DESIGN.md §4 (M…) and §5 (B…) it checks.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming, settled, spawn_app, spawn_app_on_postgres, spawn_app_with};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{ErrorCode, Outcome, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::{ApiClient, Events, SdkError, SignalingClient};
use sqlx::Row;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A seeker and a consultant in the room of a session whose hold is placed.
struct Session {
    api: ApiClient,
    seeker: SignalingClient,
    s_events: Events,
    consultant: SignalingClient,
    c_events: Events,
    session_id: SessionId,
    seeker_token: String,
    consultant_token: String,
}

async fn priced(app: &TestApp, consultant: &str, model: PriceModel, minor: i64) -> (ApiClient, String) {
    let api = ApiClient::new(&app.base).unwrap();
    let token = app.token(consultant, Role::Consultant);
    let price = ConsultantPrice { model, amount: eur(minor) };
    assert_eq!(api.set_price(&token, &price).await.unwrap(), price);
    (api, token)
}

/// `cora` charges `price`; `sam` calls her with `pm_card_visa`; she
/// accepts; the seeker joins first, then the consultant (the meter starts).
async fn session_with(app: &TestApp, model: PriceModel, minor: i64) -> Session {
    let (api, consultant_token) = priced(app, "cora", model, minor).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.expect("hold placed, call rings");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    Session {
        api,
        seeker,
        s_events,
        consultant,
        c_events,
        session_id,
        seeker_token: app.token("sam", Role::Seeker),
        consultant_token,
    }
}

async fn ended(events: &mut Events) -> (SessionEndReason, Option<SessionBill>) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, bill, .. } => Some((*reason, *bill)),
            _ => None,
        })
        .await
        .expect("session.ended")
}

fn kinds(d: &SessionDetails) -> Vec<&str> {
    d.ledger.iter().map(|l| l.kind.as_str()).collect()
}

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
async fn b2_b8_a_declined_card_never_rings_the_consultant() {
    let app = spawn_app().await;
    priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    let cases = [
        ("pm_card_chargeDeclined", ErrorCode::PaymentDeclined, "declined"),
        ("pm_card_authenticationRequired", ErrorCode::PaymentActionRequired, "authentication"),
        ("pm_card_unknown", ErrorCode::PaymentDeclined, "No such PaymentMethod"),
    ];
    for (pm, code, words) in cases {
        match seeker.call(&uid("cora"), Some(pm)).await {
            Err(SdkError::Server { code: got, message }) => {
                assert_eq!(got, code, "{pm}: {message}");
                assert!(message.contains(words), "{pm}: readable reason: {message}");
            }
            other => panic!("{pm}: expected a refusal, got {other:?}"),
        }
    }
    match seeker.call(&uid("cora"), None).await {
        Err(SdkError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::MissingField);
            assert!(message.contains("payment_method") && message.contains("30"), "{message}");
        }
        other => panic!("expected missing_field, got {other:?}"),
    }
    // The consultant heard nothing and is still available for a funded call.
    assert!(c_events.try_recv().is_none(), "the consultant was disturbed");
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.expect("a good card rings");
    incoming(&mut c_events).await;
    let receipts = ApiClient::new(&app.base).unwrap().receipts(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!(receipts.len(), 1, "refused holds are no receipts");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_an_unanswered_call_releases_its_hold_once() {
    let app = spawn_app().await;
    let (api, _) = priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.decline(&call_id, Some("busy")).await.unwrap();
    let billing = app.billing.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while billing.settlement(&session_id).await.unwrap().is_none_or(|s| s.status != "done") {
        assert!(tokio::time::Instant::now() < deadline, "release not carried out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settlement = billing.settlement(&session_id).await.unwrap().unwrap();
    assert_eq!((settlement.outcome.as_str(), settlement.attempts), ("unanswered", 1));
    assert_eq!(billing.hold(&session_id).await.unwrap().unwrap().status, "released");
    let ledger = billing.session_ledger(&session_id).await.unwrap();
    assert_eq!(ledger.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(), ["hold", "release"]);
    let receipts = api.receipts(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!((receipts[0].outcome, receipts[0].charged), (Some(Outcome::Free), eur(0)));
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

#[tokio::test]
async fn m4_b7_a_moderator_ends_a_session_and_refunds_part_of_it() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    let moderator = app.token("mo", Role::Moderator);
    // Only moderators refund; nothing to refund yet.
    let err = s.api.refund(&s.seeker_token, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongRole));
    let err = s.api.refund(&moderator, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotCharged));

    app.advance(SECS(650)).await;
    let url = format!("{}/v1/sessions/{}/end", app.base, s.session_id);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(ended(&mut s.s_events).await.0, SessionEndReason::Moderator);
    assert_eq!(ended(&mut s.c_events).await.0, SessionEndReason::Moderator);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 409, "a second end is refused");
    settled(&s.api, &moderator, &s.session_id).await;

    let err = s.api.refund(&moderator, &s.session_id, Some(3001)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RefundExceedsCapture), "more than was captured");
    let err = s.api.refund(&moderator, &s.session_id, Some(0)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidField), "nothing");
    let refund = s.api.refund(&moderator, &s.session_id, Some(1000)).await.unwrap();
    assert_eq!(refund.amount, eur(1000));
    let d = s.api.session(&moderator, &s.session_id).await.unwrap();
    assert_eq!(d.refunded, Some(eur(1000)));
    // The consultant gives back their 80 % share of the refund.
    assert_eq!(d.payout, Some(eur(2400 - 800)));
    let earnings = s.api.earnings(&s.consultant_token, &uid("cora")).await.unwrap();
    assert_eq!(earnings.totals[0].earnings, eur(1600));
    let receipts = s.api.receipts(&s.seeker_token).await.unwrap();
    assert_eq!((receipts[0].charged, receipts[0].refunded), (eur(3000), eur(1000)));
    // The rest, then nothing left.
    assert_eq!(s.api.refund(&moderator, &s.session_id, None).await.unwrap().amount, eur(2000));
    let err = s.api.refund(&moderator, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RefundExceedsCapture));
    // Strangers see nothing of it.
    let err = s.api.session(&app.token("eve", Role::Seeker), &s.session_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = s.api.earnings(&app.token("eve", Role::Consultant), &uid("cora")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b6_an_expired_hold_is_never_captured() {
    // A deployment allowing sessions longer than a card authorisation lasts.
    let app = spawn_app_with(|c| c.billing.instant_max_minutes = 8 * 24 * 60).await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(7 * 24 * 3600 + 1)).await; // the 7-day hold has lapsed
    s.seeker.end_session(&s.session_id).await.unwrap();
    let (_, bill) = ended(&mut s.s_events).await;
    assert_eq!(bill.map(|b| b.outcome), Some(Outcome::Charged));
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!(d.settlement_status.as_deref(), Some("failed"));
    assert_eq!(d.hold.map(|h| h.status), Some("expired".to_owned()));
    assert_eq!(d.captured, None, "never captured");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_rest_api_refuses_bad_prices_and_wrong_roles() {
    let app = spawn_app().await;
    let api = ApiClient::new(&app.base).unwrap();
    let seeker = app.token("sam", Role::Seeker);
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    assert_eq!(api.set_price(&seeker, &price).await.unwrap_err().code(), Some(ErrorCode::WrongRole));
    let cora = app.token("cora", Role::Consultant);
    let zero = ConsultantPrice { model: PriceModel::Fixed, amount: eur(0) };
    assert_eq!(api.set_price(&cora, &zero).await.unwrap_err().code(), Some(ErrorCode::InvalidPrice));
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/consultants/me/price", app.base))
        .bearer_auth(&cora)
        .header("content-type", "application/json")
        .body(r#"{"model":"hourly","amount":{"amount_minor":5,"currency":"EUR"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let unknown = SessionId::parse("ses_nope").unwrap();
    assert_eq!(api.session(&seeker, &unknown).await.unwrap_err().code(), Some(ErrorCode::UnknownSession));
    // Payout onboarding on the sandbox: an account and a link back.
    let link = api.payout_link(&cora).await.unwrap();
    assert!(link.account_id.starts_with("acct_") && link.url.contains(&link.account_id), "{link:?}");
    assert_eq!(api.payout_link(&cora).await.unwrap().account_id, link.account_id, "one account per consultant");
    // Retried with an Idempotency-Key: the same answer, replayed.
    let body = serde_json::json!({"return_url": "https://example.com/back"});
    let first = app.post_keyed(&cora, "/v1/consultants/me/payout-account", "acct-1", &body).await;
    let again = app.post_keyed(&cora, "/v1/consultants/me/payout-account", "acct-1", &body).await;
    assert_eq!((first.0, first.2, again.0, again.2), (200, false, 200, true), "{first:?} {again:?}");
    assert_eq!(first.1, again.1);
    // The price shows in the directory.
    api.set_price(&cora, &price).await.unwrap();
    let _online = app.available_consultant("cora").await;
    let list = api.consultants(&seeker).await.unwrap();
    assert_eq!(list.iter().find(|c| c.id.as_str() == "cora").and_then(|c| c.price), Some(price));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b4_a_consultant_with_a_payout_account_is_the_captures_destination() {
    let app = spawn_app().await;
    let (api, token) = priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let link = api.payout_link(&token).await.unwrap();
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(600)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    ended(&mut s.s_events).await;
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!((d.captured, d.fee), (Some(eur(3000)), Some(eur(600))));
    // The sandbox's PaymentIntent was destined for the consultant's account
    // and captured with the platform's fee (B4).
    let intent_id = d.hold.and_then(|h| h.intent_id).expect("intent");
    let row = sqlx::query("SELECT destination, amount_received, fee_minor FROM sandbox_intents WHERE id = $1")
        .bind(&intent_id)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    let destination: Option<String> = row.get("destination");
    assert_eq!(destination.as_deref(), Some(link.account_id.as_str()));
    assert_eq!((row.get::<i64, _>("amount_received"), row.get::<Option<i64>, _>("fee_minor")), (3000, Some(600)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_money_path_works_on_postgres() {
    let app = spawn_app_on_postgres().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(600)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) };
    assert_eq!(ended(&mut s.s_events).await.1, Some(bill), "charged at exactly F (M6)");
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!((d.captured, d.fee, d.payout), (Some(eur(3000)), Some(eur(600)), Some(eur(2400))));
    let refund = s.api.refund(&app.token("mo", Role::Moderator), &s.session_id, None).await.unwrap();
    assert_eq!(refund.amount, eur(3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_openapi_document_describes_every_rest_route() {
    let app = spawn_app().await;
    let doc: serde_json::Value =
        reqwest::get(format!("{}/openapi.json", app.base)).await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap_or_default().starts_with("3."), "{doc}");
    let routes = [
        ("get", "/v1/consultants"),
        ("post", "/v1/dev/login"),
        ("get", "/v1/sessions/{id}"),
        ("post", "/v1/sessions/{id}/refund"),
        ("post", "/v1/sessions/{id}/end"),
        ("get", "/v1/consultants/me/price"),
        ("put", "/v1/consultants/me/price"),
        ("delete", "/v1/consultants/me/price"),
        ("post", "/v1/consultants/me/payout-account"),
        ("get", "/v1/consultants/{id}/earnings"),
        ("get", "/v1/seekers/me/receipts"),
        ("post", "/v1/webhooks/stripe"),
        ("put", "/v1/consultants/me/availability"),
        ("get", "/v1/consultants/{id}/slots"),
        ("post", "/v1/bookings"),
        ("post", "/v1/bookings/{id}/accept"),
    ];
    for (method, path) in routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} missing from /openapi.json");
    }
    let schemas = &doc["components"]["schemas"];
    for name in
        ["SessionDetails", "Money", "Problem", "ConsultantPrice", "Receipt", "Earnings", "Booking", "Availability"]
    {
        assert!(schemas[name].is_object(), "schema {name} missing");
    }
    assert_eq!(schemas["Currency"]["type"], "string", "currencies are ISO 4217 strings: {}", schemas["Money"]);
}

/// Issue 13 §8: every route of /openapi.json, called without a token and
/// with a malformed body, answers an RFC 9457 problem: 401 for every route
/// behind a bearer token (the token is checked before the body is read),
/// a coded 4xx for the three that are not (dev login, the Stripe webhook,
/// signed download links). Bodies over 1 MiB get 413, unknown routes 404,
/// wrong methods 405 and a body that is not JSON 415: problems all.
#[tokio::test]
async fn every_route_answers_problems_and_checks_the_token_before_the_body() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value =
        http.get(format!("{}/openapi.json", app.base)).send().await.unwrap().json().await.unwrap();
    let without_bearer = ["/v1/dev/login", "/v1/webhooks/stripe", "/v1/files/{recording_id}"];
    let problem_of = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let ct = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        let text = r.text().await.unwrap();
        assert_eq!(ct, "application/problem+json", "{status} {text}");
        let p: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(p["status"], status, "{p}");
        assert!(p["code"].is_string() && p["type"].is_string() && p["title"].is_string(), "{p}");
        (status, p["code"].as_str().unwrap().to_owned())
    };
    let mut walked = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let url = format!("{}{}", app.base, path.replace(['{', '}'], ""));
        for (method, op) in ops.as_object().unwrap() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = http
                .request(method.clone(), &url)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap();
            let (status, code) = problem_of(r).await;
            if without_bearer.contains(&path.as_str()) {
                assert!((400..500).contains(&status), "{method} {path}: {status} {code}");
            } else {
                assert_eq!((status, code.as_str()), (401, "missing_token"), "{method} {path}");
                assert!(op["security"].is_array(), "{method} {path} does not declare its bearer token");
            }
            walked += 1;
        }
    }
    assert!(walked >= 40, "walked only {walked} operations");

    // Past the token: a malformed, a non-JSON and an oversized body.
    let consultant = app.token("cora", Role::Consultant);
    let payout = format!("{}/v1/consultants/me/payout-account", app.base);
    let send = |url: &str, ct: &str, body: Vec<u8>, token: Option<&str>| {
        let mut req = http.post(url).header("content-type", ct).body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let huge = vec![b' '; 2 * 1024 * 1024];
    type Case<'a> = (&'a str, &'a str, Vec<u8>, Option<&'a str>, (u16, &'a str));
    let cases: [Case; 6] = [
        (&payout, "application/json", b"{not json".to_vec(), Some(&consultant), (400, "malformed_json")),
        (&payout, "application/json", br#"{"return_url": 5}"#.to_vec(), Some(&consultant), (400, "invalid_field")),
        (&payout, "text/plain", b"{}".to_vec(), Some(&consultant), (415, "unsupported_media_type")),
        (&payout, "application/json", huge.clone(), Some(&consultant), (413, "payload_too_large")),
        (&payout, "application/json", huge.clone(), None, (401, "missing_token")),
        (
            &format!("{}/v1/webhooks/stripe", app.base),
            "application/json",
            huge.clone(),
            None,
            (413, "payload_too_large"),
        ),
    ];
    for (url, ct, body, token, want) in cases {
        let got = problem_of(send(url, ct, body, token).await.unwrap()).await;
        assert_eq!((got.0, got.1.as_str()), want, "{url} {ct} token={}", token.is_some());
    }
    let r = http
        .put(format!("{}/v1/consultants/me/price", app.base))
        .bearer_auth(&consultant)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(problem_of(r).await, (413, "payload_too_large".to_owned()));

    // axum's own answers.
    let r = http.get(format!("{}/v1/nothing/here", app.base)).send().await.unwrap();
    assert_eq!(problem_of(r).await, (404, "unknown_route".to_owned()));
    let r = http.get(format!("{}/v1/sessions/ses_1/refund", app.base)).send().await.unwrap();
    assert!(r.headers().contains_key("allow"), "405 keeps Allow");
    assert_eq!(problem_of(r).await, (405, "method_not_allowed".to_owned()));
    let r = http.get(format!("{}/v1/signal", app.base)).send().await.unwrap();
    assert_eq!(problem_of(r).await, (401, "missing_token".to_owned()));
    let r = http.get(format!("{}/v1/signal", app.base)).bearer_auth(&consultant).send().await.unwrap();
    assert_eq!(problem_of(r).await.1, "invalid_field", "a plain GET is not an upgrade");
}

#[tokio::test]
async fn b3_a_hold_whose_call_never_became_a_session_is_released_after_a_crash() {
    let app = spawn_app().await;
    priced(&app, "cora", PriceModel::Fixed, 3000).await;
    // A hold placed by a server that died while the call rang: no session,
    // no release.
    let orphan = SessionId::parse("ses_orphan").unwrap();
    let held = app.billing.place_hold(&orphan, "call_orphan", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
    assert!(held.unwrap().is_some());
    app.advance(SECS(301)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.billing.hold(&orphan).await.unwrap().unwrap().status != "released" {
        assert!(tokio::time::Instant::now() < deadline, "the orphaned hold was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = app.billing.settlement(&orphan).await.unwrap().unwrap();
    assert_eq!((s.outcome.as_str(), s.status.as_str()), ("unanswered", "done"));
    app.assert_reconciled().await;
}

// ----- refunds under concurrency and Idempotency-Key (issue 13) -------------

/// A charged session of 3000 (fixed price), ended by a moderator past F and
/// settled; returns it with the moderator's token.
async fn charged_session(app: &TestApp) -> (Session, String) {
    let mut s = session_with(app, PriceModel::Fixed, 3000).await;
    let moderator = app.token("mo", Role::Moderator);
    app.advance(SECS(650)).await;
    let url = format!("{}/v1/sessions/{}/end", app.base, s.session_id);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    ended(&mut s.s_events).await;
    let d = settled(&s.api, &moderator, &s.session_id).await;
    assert_eq!(d.captured, Some(eur(3000)));
    (s, moderator)
}

/// What the payment provider (the sandbox) has refunded of the session's
/// payment, and what Parley's ledger says was refunded.
async fn refunded(app: &TestApp, s: &Session, moderator: &str) -> (i64, i64) {
    let provider: i64 = sqlx::query_scalar(
        "SELECT i.amount_refunded FROM sandbox_intents i JOIN holds h ON h.intent_id = i.id WHERE h.session_id = $1",
    )
    .bind(s.session_id.as_str())
    .fetch_one(&app.store.pool())
    .await
    .unwrap();
    let d = s.api.session(moderator, &s.session_id).await.unwrap();
    (provider, d.refunded.map_or(0, |m| m.amount_minor))
}

/// A moderator double-clicking: five refunds of 500 at once are five
/// distinct refunds (2500 at the provider and in the ledger); then ten full
/// refunds at once: one refunds the 500 left, nine are refused with
/// `refund_exceeds_capture` — never a 502, never more than the capture.
async fn concurrent_refunds(app: TestApp) {
    let (s, moderator) = charged_session(&app).await;
    let five = futures_util::future::join_all((0..5).map(|_| s.api.refund(&moderator, &s.session_id, Some(500)))).await;
    let mut ids: Vec<String> = five.into_iter().map(|r| r.expect("each refund of 500 fits").refund_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "five 200s are five distinct refunds");
    assert_eq!(refunded(&app, &s, &moderator).await, (2500, 2500));

    let ten = futures_util::future::join_all((0..10).map(|_| s.api.refund(&moderator, &s.session_id, None))).await;
    let (ok, refused): (Vec<_>, Vec<_>) = ten.into_iter().partition(Result::is_ok);
    let ok: Vec<_> = ok.into_iter().map(Result::unwrap).collect();
    assert_eq!(ok.len(), 1, "one full refund gets what is left: {ok:?}");
    assert_eq!(ok[0].amount, eur(500));
    for e in refused {
        assert_eq!(e.unwrap_err().code(), Some(ErrorCode::RefundExceedsCapture));
    }
    assert_eq!(refunded(&app, &s, &moderator).await, (3000, 3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn concurrent_refunds_on_sqlite() {
    concurrent_refunds(spawn_app().await).await;
}

#[tokio::test]
async fn concurrent_refunds_on_postgres() {
    concurrent_refunds(spawn_app_on_postgres().await).await;
}

/// A retried refund with the same Idempotency-Key replays the first
/// response and refunds nothing more; the key with another body is a 422;
/// five sends of one new key at once refund once (the others replay it or
/// are told it is in use).
async fn idempotent_refunds(app: TestApp) {
    let (s, moderator) = charged_session(&app).await;
    let path = format!("/v1/sessions/{}/refund", s.session_id);
    let body = serde_json::json!({"amount_minor": 700});
    let first = app.post_keyed(&moderator, &path, "refund-1", &body).await;
    assert_eq!((first.0, first.2), (200, false), "{first:?}");
    let again = app.post_keyed(&moderator, &path, "refund-1", &body).await;
    assert_eq!((again.0, again.2), (200, true), "a replay: {again:?}");
    assert_eq!(again.1["refund_id"], first.1["refund_id"]);
    assert_eq!(refunded(&app, &s, &moderator).await, (700, 700), "the retry moved no money");

    let other = app.post_keyed(&moderator, &path, "refund-1", &serde_json::json!({"amount_minor": 800})).await;
    assert_eq!(other.0, 422, "{other:?}");
    assert_eq!(other.1["code"], "idempotency_key_reused");
    // Another caller's key of the same name is theirs.
    let other_mod = app.token("mia", Role::Moderator);
    let theirs = app.post_keyed(&other_mod, &path, "refund-1", &body).await;
    assert_eq!((theirs.0, theirs.2), (200, false), "{theirs:?}");
    assert_eq!(refunded(&app, &s, &moderator).await, (1400, 1400));

    let b300 = serde_json::json!({"amount_minor": 300});
    let at_once =
        futures_util::future::join_all((0..5).map(|_| app.post_keyed(&moderator, &path, "refund-2", &b300))).await;
    let mut ids = Vec::new();
    for (status, v, _) in &at_once {
        match status {
            200 => ids.push(v["refund_id"].as_str().unwrap().to_owned()),
            409 => assert_eq!(v["code"], "idempotency_key_in_use", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    ids.dedup();
    assert!(ids.len() <= 1, "one refund behind every 200: {ids:?}");
    // Whatever the interleaving, a later retry gets the one refund.
    let later = app.post_keyed(&moderator, &path, "refund-2", &b300).await;
    assert_eq!(later.0, 200, "{later:?}");
    if let Some(id) = ids.first() {
        assert_eq!(later.1["refund_id"].as_str(), Some(id.as_str()));
    }
    assert_eq!(refunded(&app, &s, &moderator).await, (1700, 1700), "refund-2 refunded once");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn idempotent_refunds_on_sqlite() {
    idempotent_refunds(spawn_app().await).await;
}

#[tokio::test]
async fn idempotent_refunds_on_postgres() {
    idempotent_refunds(spawn_app_on_postgres().await).await;
}

// ----- graceful shutdown (issue 13) -------------------------------------------

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
