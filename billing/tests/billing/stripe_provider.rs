//! `StripeProvider` (async-stripe's real client path) against the fake
//! Stripe API: holds, captures with fees, releases, idempotent retries,
//! refunds and Connect onboarding (DESIGN.md B2–B4, B6).

use crate::common::{eur, hold, provider};

use std::time::Duration;

use crate::fake_stripe::FakeStripe;
use parley_billing::stripe::{StripeConfig, StripeProvider};
use parley_billing::{
    AccountRequest, CaptureRequest, DisputeEvidence, IntentStatus, PaymentProvider, ProviderError, RefundRequest,
};

fn capture(amount: i64, fee: Option<i64>, key: &str) -> CaptureRequest {
    CaptureRequest { amount_to_capture: amount, application_fee_amount: fee, idempotency_key: key.into() }
}

fn form_value<'a>(form: &'a [(String, String)], key: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn account(p: &StripeProvider, key: &str) -> String {
    let req = AccountRequest {
        consultant_id: "usr_consultant".into(),
        email: Some("c@example.com".into()),
        country: "DE".into(),
        idempotency_key: key.into(),
    };
    p.create_account(&req).await.unwrap().id
}

#[tokio::test]
async fn hold_with_a_good_card_is_requires_capture_and_expires_after_seven_days() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    assert_eq!(intent.status, IntentStatus::RequiresCapture);
    assert_eq!(intent.amount, eur(6000));
    assert_eq!(intent.amount_received, 0);

    let stored = fake.intent(&intent.id).unwrap();
    let created_ms = stored["created"].as_i64().unwrap() * 1000;
    let expires = intent.hold_expires_at.unwrap();
    assert_eq!(expires.unix_millis() - created_ms, 7 * 24 * 3600 * 1000);

    let req = &fake.requests()[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/payment_intents"));
    assert_eq!(req.idempotency_key.as_deref(), Some("hold:1"));
    assert_eq!(form_value(&req.form, "amount"), Some("6000"));
    assert_eq!(form_value(&req.form, "currency"), Some("eur"));
    assert_eq!(form_value(&req.form, "capture_method"), Some("manual"));
    assert_eq!(form_value(&req.form, "confirm"), Some("true"));
    assert_eq!(form_value(&req.form, "payment_method"), Some("pm_card_visa"));
    assert_eq!(form_value(&req.form, "metadata[session_id]"), Some("ses_1"));
    assert_eq!(form_value(&req.form, "description"), Some("Parley call"));
    assert_eq!(stored["payment_method_types"], serde_json::json!(["card"]));

    // Reading it back goes through GET.
    let read = p.intent(&intent.id).await.unwrap();
    assert_eq!(read, intent);
    assert_eq!(fake.count("GET", "/v1/payment_intents/"), 1);
}

#[tokio::test]
async fn a_declined_card_is_declined_with_the_decline_code() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let err = p.place_hold(&hold("pm_card_chargeDeclined", "hold:d", None)).await.unwrap_err();
    let ProviderError::Declined { decline_code, message } = &err else {
        panic!("not a decline: {err:?}")
    };
    assert_eq!(decline_code, "generic_decline");
    assert_eq!(message, "Your card was declined.");
    assert!(!err.is_transient());

    let err = p.place_hold(&hold("pm_card_chargeDeclinedInsufficientFunds", "hold:i", None)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Declined { ref decline_code, .. } if decline_code == "insufficient_funds"));
}

#[tokio::test]
async fn a_card_needing_authentication_is_requires_action_without_a_hold() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_authenticationRequired", "hold:a", None)).await.unwrap();
    assert_eq!(intent.status, IntentStatus::RequiresAction);
    assert_eq!(intent.hold_expires_at, None);
    assert_eq!(fake.intent(&intent.id).unwrap()["next_action"]["type"], "use_stripe_sdk");
}

#[tokio::test]
async fn an_unknown_payment_method_is_rejected() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let err = p.place_hold(&hold("pm_nope", "hold:x", None)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "resource_missing"), "{err:?}");
}

#[tokio::test]
async fn capture_with_fee_pays_the_destination() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let acct = account(&p, "acct:1").await;
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", Some(&acct))).await.unwrap();

    let created = &fake.requests().into_iter().find(|r| r.path == "/v1/payment_intents").unwrap();
    assert_eq!(form_value(&created.form, "transfer_data[destination]"), Some(acct.as_str()));

    let captured = p.capture(&intent.id, &capture(4500, Some(900), "settle:ses_1")).await.unwrap();
    assert_eq!(captured.status, IntentStatus::Succeeded);
    assert_eq!(captured.amount_received, 4500);
    assert_eq!(captured.hold_expires_at, None);

    let req = fake.requests().into_iter().find(|r| r.path.ends_with("/capture")).unwrap();
    assert_eq!(req.path, format!("/v1/payment_intents/{}/capture", intent.id));
    assert_eq!(req.idempotency_key.as_deref(), Some("settle:ses_1"));
    assert_eq!(form_value(&req.form, "amount_to_capture"), Some("4500"));
    assert_eq!(form_value(&req.form, "application_fee_amount"), Some("900"));

    let stored = fake.intent(&intent.id).unwrap();
    assert_eq!(stored["application_fee_amount"], 900);
    assert_eq!(stored["transfer_data"]["destination"], acct.as_str());
}

#[tokio::test]
async fn a_fee_without_a_destination_or_above_the_capture_is_rejected() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    let err = p.capture(&intent.id, &capture(4500, Some(900), "settle:a")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");

    let acct = account(&p, "acct:1").await;
    let intent = p.place_hold(&hold("pm_card_visa", "hold:2", Some(&acct))).await.unwrap();
    let err = p.capture(&intent.id, &capture(4500, Some(4501), "settle:b")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
    let err = p.capture(&intent.id, &capture(6001, None, "settle:c")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "amount_too_large"), "{err:?}");
    // Still capturable after the refusals.
    assert_eq!(p.intent(&intent.id).await.unwrap().status, IntentStatus::RequiresCapture);
}

#[tokio::test]
async fn release_cancels_the_hold_and_a_captured_intent_cannot_be_released() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    let released = p.release(&intent.id, "release:ses_1").await.unwrap();
    assert_eq!(released.status, IntentStatus::Canceled);
    let req = fake.requests().into_iter().last().unwrap();
    assert_eq!(req.path, format!("/v1/payment_intents/{}/cancel", intent.id));
    assert_eq!(req.idempotency_key.as_deref(), Some("release:ses_1"));

    // Capturing a released hold fails.
    let err = p.capture(&intent.id, &capture(100, None, "settle:1")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state"));

    let intent = p.place_hold(&hold("pm_card_visa", "hold:2", None)).await.unwrap();
    p.capture(&intent.id, &capture(100, None, "settle:2")).await.unwrap();
    let err = p.release(&intent.id, "release:2").await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state"));
}

#[tokio::test]
async fn capturing_twice_with_the_same_key_captures_once_and_returns_the_same_result() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    let first = p.capture(&intent.id, &capture(3000, None, "settle:ses_1")).await.unwrap();
    let second = p.capture(&intent.id, &capture(3000, None, "settle:ses_1")).await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.intent(&intent.id).unwrap()["amount_received"], 3000);
    let captured_events = fake.events().iter().filter(|e| e["type"] == "payment_intent.succeeded").count();
    assert_eq!(captured_events, 1);

    // Another key is another capture: refused, the intent is captured.
    let err = p.capture(&intent.id, &capture(3000, None, "settle:other")).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "payment_intent_unexpected_state"));
}

#[tokio::test]
async fn a_5xx_is_transient_and_the_retry_with_the_same_key_captures_exactly_once() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();

    fake.fail_next(1, 500);
    let err = p.capture(&intent.id, &capture(3000, None, "settle:ses_1")).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(fake.intent(&intent.id).unwrap()["status"], "requires_capture");

    let captured = p.capture(&intent.id, &capture(3000, None, "settle:ses_1")).await.unwrap();
    assert_eq!(captured.status, IntentStatus::Succeeded);

    let captures: Vec<_> = fake.requests().into_iter().filter(|r| r.path.ends_with("/capture")).collect();
    assert_eq!(captures.len(), 2);
    assert!(captures.iter().all(|r| r.idempotency_key.as_deref() == Some("settle:ses_1")));
    assert_eq!(fake.events().iter().filter(|e| e["type"] == "payment_intent.succeeded").count(), 1);

    fake.fail_next(1, 429);
    let err = p.intent(&intent.id).await;
    assert!(err.is_ok(), "reads are not writes: {err:?}");
    let err = p.release(&intent.id, "release:x").await.unwrap_err();
    assert!(err.is_transient(), "429 is transient: {err:?}");
}

#[tokio::test]
async fn a_network_error_is_transient() {
    // A port nothing listens on: the connection is refused.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let p = StripeProvider::new(&StripeConfig { secret_key: "sk_test_x".into(), api_base: Some(base) }).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), p.intent("pi_1")).await.unwrap().unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn the_same_key_with_other_parameters_is_rejected() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let a = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    let again = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    assert_eq!(a, again, "a replay returns the stored intent");
    assert_eq!(fake.count("POST", "/v1/payment_intents"), 2);

    let mut other = hold("pm_card_visa", "hold:1", None);
    other.amount = eur(7000);
    let err = p.place_hold(&other).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "idempotency_error"), "{err:?}");
}

#[tokio::test]
async fn a_bad_api_key_is_rejected() {
    let fake = FakeStripe::start().await;
    let p = StripeProvider::new(&StripeConfig { secret_key: "sk_live_nope".into(), api_base: Some(fake.base_url()) })
        .unwrap();
    let err = p.intent("pi_1").await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { .. }), "{err:?}");
}

#[tokio::test]
async fn account_and_onboarding_link() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let req = AccountRequest {
        consultant_id: "usr_c1".into(),
        email: Some("c@example.com".into()),
        country: "DE".into(),
        idempotency_key: "account:usr_c1".into(),
    };
    let acct = p.create_account(&req).await.unwrap();
    assert!(acct.id.starts_with("acct_"));
    assert!(!acct.charges_enabled && !acct.payouts_enabled && !acct.details_submitted);
    let again = p.create_account(&req).await.unwrap();
    assert_eq!(again, acct, "same key: the same account");

    let sent = &fake.requests()[0];
    assert_eq!(sent.path, "/v1/accounts");
    assert_eq!(sent.idempotency_key.as_deref(), Some("account:usr_c1"));
    assert_eq!(form_value(&sent.form, "type"), Some("express"));
    assert_eq!(form_value(&sent.form, "country"), Some("DE"));
    assert_eq!(form_value(&sent.form, "email"), Some("c@example.com"));
    assert_eq!(form_value(&sent.form, "capabilities[card_payments][requested]"), Some("true"));
    assert_eq!(form_value(&sent.form, "capabilities[transfers][requested]"), Some("true"));
    assert_eq!(form_value(&sent.form, "metadata[consultant_id]"), Some("usr_c1"));

    let url = p.onboarding_link(&acct.id, "https://parley.test/refresh", "https://parley.test/done").await.unwrap();
    assert!(url.starts_with(&format!("https://connect.stripe.com/setup/e/{}/", acct.id)), "{url}");
    let link = fake.requests().into_iter().last().unwrap();
    assert_eq!(form_value(&link.form, "type"), Some("account_onboarding"));
    assert_eq!(form_value(&link.form, "refresh_url"), Some("https://parley.test/refresh"));
    assert_eq!(form_value(&link.form, "return_url"), Some("https://parley.test/done"));

    let err = p.onboarding_link("acct_missing", "https://a", "https://b").await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "resource_missing"), "{err:?}");
}

#[tokio::test]
async fn refund_of_a_capture_up_to_what_remains() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let acct = account(&p, "acct:1").await;
    let intent = p.place_hold(&hold("pm_card_visa", "hold:1", Some(&acct))).await.unwrap();

    let early = RefundRequest {
        intent_id: intent.id.clone(),
        amount: 100,
        reverse_transfer: true,
        idempotency_key: "r:0".into(),
    };
    assert!(matches!(p.refund(&early).await, Err(ProviderError::Rejected { .. })), "not captured yet");

    p.capture(&intent.id, &capture(5000, Some(1000), "settle:1")).await.unwrap();
    let first = RefundRequest {
        intent_id: intent.id.clone(),
        amount: 2000,
        reverse_transfer: true,
        idempotency_key: "r:1".into(),
    };
    let refund = p.refund(&first).await.unwrap();
    assert!(refund.id.starts_with("re_"));
    assert_eq!(refund.amount, eur(2000));
    assert_eq!(refund.status, "succeeded");
    let req = fake.requests().into_iter().last().unwrap();
    assert_eq!(req.path, "/v1/refunds");
    assert_eq!(req.idempotency_key.as_deref(), Some("r:1"));
    assert_eq!(form_value(&req.form, "payment_intent"), Some(intent.id.as_str()));
    assert_eq!(form_value(&req.form, "amount"), Some("2000"));
    assert_eq!(form_value(&req.form, "reverse_transfer"), Some("true"));
    assert_eq!(form_value(&req.form, "refund_application_fee"), Some("true"));

    // Replaying the same refund does not refund twice.
    assert_eq!(p.refund(&first).await.unwrap(), refund);
    let too_much = RefundRequest { amount: 3001, idempotency_key: "r:2".into(), ..first.clone() };
    let err = p.refund(&too_much).await.unwrap_err();
    assert!(matches!(err, ProviderError::Rejected { ref code, .. } if code == "amount_too_large"), "{err:?}");
    let rest = RefundRequest { amount: 3000, idempotency_key: "r:3".into(), ..first };
    assert_eq!(p.refund(&rest).await.unwrap().amount, eur(3000));
}

fn evidence(dispute: &str, key: &str) -> DisputeEvidence {
    DisputeEvidence {
        dispute_id: dispute.into(),
        uncategorized_text: "# Evidence\n\nThe session ran 25 minutes.".into(),
        service_date: "2026-11-02".into(),
        product_description: "A video consultation".into(),
        access_activity_log: "2026-11-02 12:00:00 UTC joined sam".into(),
        customer_communication: None,
        service_documentation: None,
        idempotency_key: key.into(),
    }
}

/// D5: evidence goes to `POST /v1/disputes/{id}` as Stripe's text fields
/// with `submit=true`; a retry with the same key is the same submission;
/// once under review nothing more is accepted; a file field takes a file
/// id only, as on Stripe.
#[tokio::test]
async fn dispute_evidence_is_submitted_once_with_stripes_fields() {
    let fake = FakeStripe::start().await;
    let p = provider(&fake);
    let held = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    p.capture(&held.id, &capture(4000, None, "settle:1")).await.unwrap();
    let dp = fake.open_dispute(&held.id, "fraudulent").unwrap();

    let mut bad = evidence(&dp, "evidence:bad");
    bad.customer_communication = Some("the chat, as text".into());
    match p.submit_dispute_evidence(&bad).await {
        Err(ProviderError::Rejected { code, .. }) => assert_eq!(code, "resource_missing"),
        other => panic!("a text in a file field: {other:?}"),
    }

    let state = p.submit_dispute_evidence(&evidence(&dp, &format!("evidence:{dp}"))).await.unwrap();
    assert_eq!((state.id.as_str(), state.status.as_str(), state.submission_count), (dp.as_str(), "under_review", 1));
    let again = p.submit_dispute_evidence(&evidence(&dp, &format!("evidence:{dp}"))).await.unwrap();
    assert_eq!(again, state, "the same key replays the first answer");
    let stored = fake.dispute(&dp).unwrap();
    assert_eq!(stored["evidence_details"]["submission_count"], 1);
    assert_eq!(stored["evidence"]["service_date"], "2026-11-02");
    assert_eq!(stored["evidence"]["uncategorized_text"], "# Evidence\n\nThe session ran 25 minutes.");
    let post = fake.requests().into_iter().rfind(|r| r.path == format!("/v1/disputes/{dp}")).unwrap();
    assert_eq!(form_value(&post.form, "submit"), Some("true"));
    assert_eq!(form_value(&post.form, "evidence[access_activity_log]"), Some("2026-11-02 12:00:00 UTC joined sam"));

    match p.submit_dispute_evidence(&evidence(&dp, "evidence:other")).await {
        Err(ProviderError::Rejected { code, .. }) => assert_eq!(code, "dispute_already_submitted"),
        other => panic!("a second submission: {other:?}"),
    }
}
