//! Card chargebacks (docs/rules.md D5, D6) against the fake Stripe: a
//! `charge.dispute.created` webhook marks the session's funds disputed,
//! tells the operator, and Parley submits the session's evidence once
//! (the fake checks the fields and the idempotency key as Stripe does);
//! `charge.dispute.closed` books won or lost, with the consultant's share
//! recovered or not by `PARLEY_CHARGEBACK_RECOVERY`; on both databases.

use std::time::Duration;

use crate::common::{self, TestApp, WAIT, incoming, until};
use crate::fake_stripe::{FakeStripe, RecordedRequest};
use parley_billing::ChargebackRecovery;
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{Role, ServerMessage};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};
use parley_sdk::ApiClient;
use parley_server::config::Payments;

const WEBHOOK_SECRET: &str = "whsec_parley_test";

async fn stripe_app(postgres: bool, recovery: ChargebackRecovery) -> (TestApp, FakeStripe) {
    let clock = common::test_clock();
    let stripe_clock = clock.clone();
    let fake = FakeStripe::start_with_clock(move || stripe_clock.now().unix_secs()).await;
    let api_base = Some(fake.base_url());
    let url = if postgres { Some(common::fresh_postgres_url().await) } else { None };
    let app = common::spawn_app_with_clock(clock, |c| {
        c.payments =
            Payments::Stripe { secret_key: "sk_test_parley".into(), webhook_secret: WEBHOOK_SECRET.into(), api_base };
        c.meter.free_window = Duration::from_secs(20);
        c.meter.warn_before = Duration::from_secs(10);
        c.billing.chargeback_recovery = recovery;
        if let Some(url) = url {
            c.database_url = url;
        }
    })
    .await;
    fake.set_webhook_target(format!("{}/v1/webhooks/stripe", app.base), WEBHOOK_SECRET.into());
    (app, fake)
}

/// A charged session of EUR 30.00 between `sam` and `cora`, settled, with
/// a chat line; returns its details (as a moderator sees them).
async fn charged(app: &TestApp) -> SessionDetails {
    let api = ApiClient::new(&app.base).unwrap();
    let cora = app.token("cora", Role::Consultant);
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: Money::new(3000, Currency::parse("EUR").unwrap()) };
    api.set_price(&cora, &price).await.unwrap();
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.expect("hold placed");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    app.advance(Duration::from_secs(25)).await;
    seeker.end_session(&session_id).await.unwrap();
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(()))
        .await
        .expect("session.ended");
    common::settled(&api, &app.token("mo", Role::Moderator), &session_id).await
}

fn field<'a>(r: &'a RecordedRequest, key: &str) -> Option<&'a str> {
    r.form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

fn evidence_posts(fake: &FakeStripe, dispute: &str) -> Vec<RecordedRequest> {
    let path = format!("/v1/disputes/{dispute}");
    fake.requests().into_iter().filter(|r| r.method == "POST" && r.path == path).collect()
}

async fn ledger(app: &TestApp, sid: &SessionId) -> Vec<(String, i64)> {
    app.billing.session_ledger(sid).await.unwrap().into_iter().map(|l| (l.kind, l.amount.amount_minor)).collect()
}

async fn outbox_count(app: &TestApp, kind: &str, dispute: &str) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM webhook_outbox WHERE type = $1 AND body LIKE $2")
        .bind(kind)
        .bind(format!("%{dispute}%"))
        .fetch_one(&app.store.pool())
        .await
        .unwrap()
}

/// D5, D6: a chargeback of a charged session → the funds are marked
/// disputed, the operator told once, the evidence submitted once with
/// Stripe's fields (a redelivered event and a second attempt submit
/// nothing more); lost → the loss and who bears it in the ledger; a second
/// session's chargeback won → the funds back; reconcile finds nothing.
async fn chargebacks(postgres: bool) {
    let (app, fake) = stripe_app(postgres, ChargebackRecovery::Consultant).await;
    let d = charged(&app).await;
    let sid = d.session_id.clone();
    let intent = d.hold.as_ref().and_then(|h| h.intent_id.clone()).expect("intent");
    let dp = fake.open_dispute(&intent, "product_not_received").expect("a dispute of a captured payment");
    fake.flush_webhooks().await;
    until("evidence submitted", || async { evidence_posts(&fake, &dp).len() == 1 }).await;
    let post = &evidence_posts(&fake, &dp)[0];
    assert_eq!(post.idempotency_key.as_deref(), Some(format!("evidence:{dp}").as_str()));
    assert_eq!(field(post, "submit"), Some("true"));
    let text = field(post, "evidence[uncategorized_text]").expect("the bundle");
    for part in [sid.as_str(), "## Money and the meter", "| captured | EUR 30.00 |", "## Timeline (UTC)", "## History"]
    {
        assert!(text.contains(part), "{part} in\n{text}");
    }
    let date = parley_server::disputes::bundle::utc(d.opened_at_ms);
    assert_eq!(field(post, "evidence[service_date]"), Some(&date[..10]));
    assert!(field(post, "evidence[access_activity_log]").is_some_and(|l| l.contains("joined")), "{post:?}");
    assert!(field(post, "evidence[product_description]").is_some_and(|p| p.contains(sid.as_str())));
    assert_eq!(field(post, "evidence[customer_communication]"), None, "a file id or nothing");
    // Stripe's side: one submission, under review, reported back.
    let stored = fake.dispute(&dp).unwrap();
    assert_eq!(stored["evidence_details"]["submission_count"], 1);
    assert_eq!(stored["status"], "under_review");
    fake.flush_webhooks().await;
    until("under review here too", || async {
        app.billing.chargebacks_of(&sid).await.unwrap().first().is_some_and(|c| c.status == "under_review")
    })
    .await;
    assert!(ledger(&app, &sid).await.contains(&("dispute".to_owned(), 3000)), "marked disputed");
    until("operator told", || async { outbox_count(&app, "chargeback.opened", &dp).await == 1 }).await;

    // Redelivered, retried: nothing more at Stripe.
    let created = fake.events().into_iter().find(|e| e["type"] == "charge.dispute.created").unwrap();
    assert!(fake.resend_event(created["id"].as_str().unwrap()));
    fake.flush_webhooks().await;
    let row = app.billing.chargebacks_of(&sid).await.unwrap().remove(0);
    assert!(row.evidence_submitted_ms.is_some());
    let again = parley_billing::DisputeEvidence {
        dispute_id: dp.clone(),
        uncategorized_text: "again".into(),
        service_date: String::new(),
        product_description: String::new(),
        access_activity_log: String::new(),
        customer_communication: None,
        service_documentation: None,
        idempotency_key: String::new(),
    };
    assert!(!app.billing.submit_chargeback_evidence(again).await.unwrap(), "submitted once");
    assert_eq!(evidence_posts(&fake, &dp).len(), 1);

    // Lost: the consultant gives back their share, the platform its fee.
    let earned: i64 = ledger(&app, &sid).await.iter().filter(|(k, _)| k == "earnings").map(|(_, a)| a).sum();
    assert!(fake.close_dispute(&dp, false));
    fake.flush_webhooks().await;
    until("operator told of the loss", || async { outbox_count(&app, "chargeback.closed", &dp).await == 1 }).await;
    let l = ledger(&app, &sid).await;
    for entry in [("chargeback", 3000), ("earnings_reversal", earned), ("fee_reversal", 3000 - earned)] {
        assert!(l.contains(&(entry.0.to_owned(), entry.1)), "{entry:?} in {l:?}");
    }
    let row = app.billing.chargebacks_of(&sid).await.unwrap().remove(0);
    assert_eq!(row.outcome.as_deref(), Some("lost"));
    assert!(!fake.close_dispute(&dp, true), "closed once");

    // A second session's chargeback, won: the funds are back.
    let d2 = charged(&app).await;
    let intent2 = d2.hold.as_ref().and_then(|h| h.intent_id.clone()).unwrap();
    let dp2 = fake.open_dispute(&intent2, "fraudulent").unwrap();
    fake.flush_webhooks().await;
    until("second evidence", || async { evidence_posts(&fake, &dp2).len() == 1 }).await;
    fake.flush_webhooks().await;
    assert!(fake.close_dispute(&dp2, true));
    fake.flush_webhooks().await;
    until("won", || async { outcome(&app, &d2.session_id).await.as_deref() == Some("won") }).await;
    let l2 = ledger(&app, &d2.session_id).await;
    assert!(l2.contains(&("dispute_won".to_owned(), 3000)), "{l2:?}");
    assert!(!l2.iter().any(|(k, _)| k == "chargeback" || k.ends_with("_reversal")), "{l2:?}");
    until("operator told of the win", || async { outbox_count(&app, "chargeback.closed", &dp2).await == 1 }).await;
    app.assert_reconciled().await;
}

async fn outcome(app: &TestApp, sid: &SessionId) -> Option<String> {
    app.billing.chargebacks_of(sid).await.unwrap().first().and_then(|c| c.outcome.clone())
}

#[tokio::test]
async fn chargebacks_on_sqlite() {
    chargebacks(false).await;
}

#[tokio::test]
async fn chargebacks_on_postgres() {
    chargebacks(true).await;
}

/// D6: with `PARLEY_CHARGEBACK_RECOVERY=platform` a lost chargeback is the
/// platform's alone: the consultant keeps their earnings.
#[tokio::test]
async fn a_lost_chargeback_is_the_platforms_under_the_platform_policy() {
    let (app, fake) = stripe_app(false, ChargebackRecovery::Platform).await;
    let d = charged(&app).await;
    let intent = d.hold.as_ref().and_then(|h| h.intent_id.clone()).unwrap();
    let dp = fake.open_dispute(&intent, "fraudulent").unwrap();
    fake.flush_webhooks().await;
    until("evidence submitted", || async { evidence_posts(&fake, &dp).len() == 1 }).await;
    fake.flush_webhooks().await;
    assert!(fake.close_dispute(&dp, false));
    fake.flush_webhooks().await;
    until("lost", || async { outcome(&app, &d.session_id).await.as_deref() == Some("lost") }).await;
    let l = ledger(&app, &d.session_id).await;
    for entry in [("chargeback", 3000), ("earnings_reversal", 0), ("fee_reversal", 3000)] {
        assert!(l.contains(&(entry.0.to_owned(), entry.1)), "{entry:?} in {l:?}");
    }
    let earnings = app.billing.earnings(&UserId::parse("cora").unwrap()).await.unwrap();
    let earned: i64 = l.iter().filter(|(k, _)| k == "earnings").map(|(_, a)| a).sum();
    assert_eq!(earnings.totals[0].earnings.amount_minor, earned, "the consultant keeps it");
    app.assert_reconciled().await;
}
