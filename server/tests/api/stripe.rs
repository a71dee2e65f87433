//! The money path against Stripe's API (issue 3): the real `stripe`
//! provider (async-stripe) talks to a local fake Stripe that checks what
//! Stripe checks and sends signed webhooks back to the server. The free
//! window is 20 s here so that webhooks stay within their 300 s tolerance
//! of the server's manual clock.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming};
use crate::fake_stripe::{FakeStripe, RecordedRequest};
use parley_domain::Clock;
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{ErrorCode, Outcome, Role, ServerMessage};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::{ApiClient, Events, SdkError, SignalingClient};
use parley_server::config::Payments;

const WEBHOOK_SECRET: &str = "whsec_parley_test";

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

async fn stripe_app() -> (TestApp, FakeStripe) {
    // Stripe and the server agree on the time, as real ones do.
    let clock = common::test_clock();
    let stripe_clock = clock.clone();
    let fake = FakeStripe::start_with_clock(move || stripe_clock.now().unix_secs()).await;
    let api_base = Some(fake.base_url());
    let app = common::spawn_app_with_clock(clock, |c| {
        c.payments =
            Payments::Stripe { secret_key: "sk_test_parley".into(), webhook_secret: WEBHOOK_SECRET.into(), api_base };
        c.meter.free_window = Duration::from_secs(20);
        c.meter.warn_before = Duration::from_secs(10);
    })
    .await;
    fake.set_webhook_target(format!("{}/v1/webhooks/stripe", app.base), WEBHOOK_SECRET.into());
    (app, fake)
}

struct Call {
    api: ApiClient,
    seeker: SignalingClient,
    s_events: Events,
    _consultant: (SignalingClient, Events),
    session_id: SessionId,
    token: String,
}

/// `cora` (EUR 30.00 fixed) is called by `sam` with `pm_card_visa`; both join.
async fn call(app: &TestApp) -> Call {
    let api = ApiClient::new(&app.base).unwrap();
    let cora = app.token("cora", Role::Consultant);
    api.set_price(&cora, &ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) }).await.unwrap();
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.expect("hold placed");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    Call {
        api,
        seeker,
        s_events,
        _consultant: (consultant, c_events),
        session_id,
        token: app.token("sam", Role::Seeker),
    }
}

async fn end(c: &mut Call) {
    c.seeker.end_session(&c.session_id).await.unwrap();
    c.s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(()))
        .await
        .expect("session.ended");
}

async fn settled(c: &Call) -> SessionDetails {
    common::settled(&c.api, &c.token, &c.session_id).await
}

fn field<'a>(r: &'a RecordedRequest, key: &str) -> Option<&'a str> {
    r.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn posts(fake: &FakeStripe, path_suffix: &str) -> Vec<RecordedRequest> {
    fake.requests().into_iter().filter(|r| r.method == "POST" && r.path.ends_with(path_suffix)).collect()
}

#[tokio::test]
async fn b2_b4_b5_a_charged_call_is_captured_with_the_fee_for_the_consultants_account() {
    let (app, fake) = stripe_app().await;
    // Payout onboarding: an Express account, finished on Stripe's side and
    // reported back by `account.updated`.
    let cora = app.token("cora", Role::Consultant);
    let link = ApiClient::new(&app.base).unwrap().payout_link(&cora).await.unwrap();
    assert!(link.url.starts_with("https://connect.stripe.com/"), "{link:?}");
    assert_eq!(app.billing.payout_account(&uid("cora")).await.unwrap(), Some((link.account_id.clone(), false)));
    assert!(fake.complete_onboarding(&link.account_id));
    fake.flush_webhooks().await;
    assert_eq!(app.billing.payout_account(&uid("cora")).await.unwrap(), Some((link.account_id.clone(), true)));

    let mut c = call(&app).await;
    app.advance(Duration::from_secs(25)).await;
    end(&mut c).await;
    let d = settled(&c).await;
    assert_eq!(d.outcome, Some(Outcome::Charged));
    assert_eq!((d.captured, d.fee, d.payout), (Some(eur(3000)), Some(eur(600)), Some(eur(2400))));
    let intent_id = d.hold.as_ref().and_then(|h| h.intent_id.clone()).expect("intent");
    assert_eq!(d.hold.as_ref().map(|h| h.provider.as_str()), Some("stripe"));

    let created = posts(&fake, "/v1/payment_intents");
    assert_eq!(created.len(), 1);
    let hold = &created[0];
    assert_eq!(hold.idempotency_key.as_deref(), Some(format!("hold:{}", c.session_id).as_str()));
    assert_eq!(field(hold, "capture_method"), Some("manual"));
    assert_eq!(field(hold, "confirm"), Some("true"));
    assert_eq!((field(hold, "amount"), field(hold, "currency")), (Some("3000"), Some("eur")));
    assert_eq!(field(hold, "payment_method"), Some("pm_card_visa"));
    assert_eq!(field(hold, "transfer_data[destination]"), Some(link.account_id.as_str()), "destination at creation");
    assert_eq!(field(hold, "metadata[session_id]"), Some(c.session_id.as_str()));

    let captures = posts(&fake, "/capture");
    assert_eq!(captures.len(), 1);
    assert_eq!(captures[0].idempotency_key.as_deref(), Some(format!("settle:{}", c.session_id).as_str()));
    assert_eq!(field(&captures[0], "amount_to_capture"), Some("3000"));
    assert_eq!(field(&captures[0], "application_fee_amount"), Some("600"));
    let pi = fake.intent(&intent_id).unwrap();
    assert_eq!((pi["status"].as_str(), pi["amount_received"].as_i64()), (Some("succeeded"), Some(3000)));

    fake.flush_webhooks().await;
    assert!(fake.deliveries().iter().all(|d| d.status == Some(200)), "{:?}", fake.deliveries());
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_a_provider_500_then_success_captures_exactly_once_with_one_idempotency_key() {
    let (app, fake) = stripe_app().await;
    let mut c = call(&app).await;
    app.advance(Duration::from_secs(21)).await;
    fake.fail_next(1, 500);
    end(&mut c).await;
    // The first attempt fails and is scheduled again (1 s of server time).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = app.billing.settlement(&c.session_id).await.unwrap().expect("decided");
        if s.attempts == 1 {
            assert_eq!(s.status, "pending");
            assert!(s.last_error.as_deref().unwrap_or_default().contains("unavailable"), "{s:?}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no failed attempt: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.advance(Duration::from_secs(2)).await;
    let d = settled(&c).await;
    assert_eq!(d.settlement_status.as_deref(), Some("done"));
    assert_eq!(d.captured, Some(eur(3000)));
    assert_eq!(d.ledger.iter().filter(|l| l.kind == "capture").count(), 1);
    let captures = posts(&fake, "/capture");
    assert_eq!(captures.len(), 2, "one failed attempt, one retry");
    let key = format!("settle:{}", c.session_id);
    assert!(captures.iter().all(|r| r.idempotency_key.as_deref() == Some(key.as_str())), "one key: {captures:?}");
    let intent_id = d.hold.and_then(|h| h.intent_id).unwrap();
    assert_eq!(fake.intent(&intent_id).unwrap()["amount_received"].as_i64(), Some(3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b4_a_free_call_cancels_its_payment_intent() {
    let (app, fake) = stripe_app().await;
    let mut c = call(&app).await;
    app.advance(Duration::from_secs(19)).await;
    end(&mut c).await;
    let d = settled(&c).await;
    assert_eq!((d.outcome, d.captured), (Some(Outcome::Free), None));
    let cancels = posts(&fake, "/cancel");
    assert_eq!(cancels.len(), 1);
    assert_eq!(cancels[0].idempotency_key.as_deref(), Some(format!("settle:{}", c.session_id).as_str()));
    let intent_id = d.hold.and_then(|h| h.intent_id).unwrap();
    assert_eq!(fake.intent(&intent_id).unwrap()["status"].as_str(), Some("canceled"));
    assert_eq!(posts(&fake, "/capture").len(), 0);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b2_a_card_declined_by_stripe_never_rings_the_consultant() {
    let (app, fake) = stripe_app().await;
    let api = ApiClient::new(&app.base).unwrap();
    let cora = app.token("cora", Role::Consultant);
    api.set_price(&cora, &ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) }).await.unwrap();
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s) = app.client("sam", Role::Seeker).await;
    for (pm, code) in [
        ("pm_card_chargeDeclined", ErrorCode::PaymentDeclined),
        ("pm_card_authenticationRequired", ErrorCode::PaymentActionRequired),
    ] {
        match seeker.call(&uid("cora"), Some(pm)).await {
            Err(SdkError::Server { code: got, .. }) => assert_eq!(got, code, "{pm}"),
            other => panic!("{pm}: {other:?}"),
        }
    }
    assert!(c_events.try_recv().is_none(), "the consultant was disturbed");
    // The intent that needed authentication was cancelled, not left held.
    let cancelled = posts(&fake, "/cancel");
    assert_eq!(cancelled.len(), 1);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b6_a_hold_stripe_lets_lapse_is_never_captured() {
    let (app, fake) = stripe_app().await;
    let mut c = call(&app).await;
    let intent_id = app.billing.hold(&c.session_id).await.unwrap().and_then(|h| h.intent_id).unwrap();
    assert!(fake.expire_hold(&intent_id));
    fake.flush_webhooks().await;
    assert_eq!(app.billing.hold(&c.session_id).await.unwrap().unwrap().status, "expired");
    app.advance(Duration::from_secs(25)).await;
    end(&mut c).await;
    let d = settled(&c).await;
    assert_eq!((d.outcome, d.settlement_status.as_deref()), (Some(Outcome::Charged), Some("failed")));
    assert_eq!(posts(&fake, "/capture").len(), 0, "never captured");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b5_a_webhook_with_a_bad_signature_is_refused_and_a_repeated_one_is_processed_once() {
    let (app, fake) = stripe_app().await;
    let mut c = call(&app).await;
    app.advance(Duration::from_secs(21)).await;
    end(&mut c).await;
    settled(&c).await;
    fake.flush_webhooks().await;
    let before = app.billing.webhooks_processed().await.unwrap();

    // Forged, unsigned and stale deliveries change nothing.
    let body = serde_json::json!({
        "id": "evt_forged", "object": "event", "type": "charge.dispute.created", "created": 1,
        "data": { "object": { "id": "dp_1", "object": "dispute", "payment_intent": "pi_x", "amount": 3000, "reason": "fraudulent" } }
    })
    .to_string();
    let now = app.clock.now().unix_secs();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/webhooks/stripe", app.base);
    let cases = [
        (Some(parley_billing::webhook::sign(body.as_bytes(), "whsec_wrong", now)), "bad_signature"),
        (None, "missing_signature"),
        (Some(parley_billing::webhook::sign(body.as_bytes(), WEBHOOK_SECRET, now - 301)), "timestamp_out_of_tolerance"),
    ];
    for (sig, code) in cases {
        let mut req = http.post(&url).body(body.clone());
        if let Some(sig) = sig {
            req = req.header("Stripe-Signature", sig);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 400, "{code}");
        let err: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(err["code"], code);
    }
    assert_eq!(app.billing.webhooks_processed().await.unwrap(), before, "nothing processed");

    // A dispute, delivered twice: one ledger entry.
    let intent_id = app.billing.hold(&c.session_id).await.unwrap().and_then(|h| h.intent_id).unwrap();
    assert!(fake.create_dispute(&intent_id, "fraudulent"));
    fake.flush_webhooks().await;
    let event = fake.events().into_iter().rev().find(|e| e["type"] == "charge.dispute.created").unwrap();
    let event_id = event["id"].as_str().unwrap().to_owned();
    assert!(fake.resend_event(&event_id));
    fake.flush_webhooks().await;
    let deliveries: Vec<_> = fake.deliveries().into_iter().filter(|d| d.event_id == event_id).collect();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d.status == Some(200)), "duplicates are acknowledged: {deliveries:?}");
    let d = c.api.session(&c.token, &c.session_id).await.unwrap();
    assert_eq!(d.ledger.iter().filter(|l| l.kind == "dispute").count(), 1, "processed once: {:?}", d.ledger);
    // The dispute's own event counts once; the chargeback worker's evidence
    // may bring a `charge.dispute.updated` of its own at any moment after.
    assert!(app.billing.webhooks_processed().await.unwrap() > before);
    app.assert_reconciled().await;
}
