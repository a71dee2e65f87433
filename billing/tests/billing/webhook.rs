//! Stripe webhook verification and parsing (DESIGN.md B5), on hand-made
//! payloads and on the events the fake Stripe sends.

use crate::fake_stripe;

use crate::common::{hold, provider};

use std::sync::{Arc, Mutex};

use crate::fake_stripe::FakeStripe;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use parley_billing::webhook::{
    DEFAULT_TOLERANCE_SECS, DisputeChange, WebhookError, WebhookEvent, WebhookKind, parse, sign, verify,
};
use parley_billing::{AccountRequest, CaptureRequest, PaymentProvider, RefundRequest};
use serde_json::json;

const SECRET: &str = "whsec_test_secret";
const NOW: i64 = 1_800_000_000;
const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.canceled","created":1800000000,"data":{"object":{"id":"pi_1"}}}"#;

#[test]
fn a_good_signature_verifies() {
    let header = sign(BODY, SECRET, NOW);
    assert!(header.starts_with(&format!("t={NOW},v1=")));
    assert_eq!(verify(BODY, &header, SECRET, NOW, DEFAULT_TOLERANCE_SECS), Ok(()));
}

#[test]
fn a_signature_over_another_body_or_with_another_secret_is_bad() {
    let header = sign(BODY, SECRET, NOW);
    let mut tampered = BODY.to_vec();
    tampered[10] ^= 1;
    let err = verify(&tampered, &header, SECRET, NOW, DEFAULT_TOLERANCE_SECS).unwrap_err();
    assert_eq!(err.code().as_str(), "bad_signature");
    let err = verify(BODY, &header, "whsec_other", NOW, DEFAULT_TOLERANCE_SECS).unwrap_err();
    assert_eq!(err.code().as_str(), "bad_signature");
    // The timestamp is signed too: changing it breaks the signature.
    let moved = header.replacen(&NOW.to_string(), &(NOW + 1).to_string(), 1);
    assert_eq!(verify(BODY, &moved, SECRET, NOW, DEFAULT_TOLERANCE_SECS).unwrap_err().code().as_str(), "bad_signature");
}

#[test]
fn malformed_headers_are_bad_signatures() {
    for header in ["garbage", "t=abc,v1=00", "v1=00", &format!("t={NOW}"), &format!("t={NOW},v0=00"), "t=1,v1=zz"] {
        let err = verify(BODY, header, SECRET, NOW, DEFAULT_TOLERANCE_SECS).unwrap_err();
        assert_eq!(err.code().as_str(), "bad_signature", "{header}");
    }
}

#[test]
fn a_missing_header_is_missing_signature() {
    assert_eq!(verify(BODY, "", SECRET, NOW, 300), Err(WebhookError::MissingSignature));
    assert_eq!(verify(BODY, "  ", SECRET, NOW, 300).unwrap_err().code().as_str(), "missing_signature");
}

#[test]
fn timestamps_beyond_the_tolerance_are_refused_in_both_directions() {
    let header = sign(BODY, SECRET, NOW);
    assert_eq!(verify(BODY, &header, SECRET, NOW + 300, 300), Ok(()));
    assert_eq!(verify(BODY, &header, SECRET, NOW - 300, 300), Ok(()));
    let late = verify(BODY, &header, SECRET, NOW + 301, 300).unwrap_err();
    assert_eq!(late, WebhookError::TimestampOutOfTolerance { timestamp: NOW, now: NOW + 301, tolerance_secs: 300 });
    assert_eq!(late.code().as_str(), "timestamp_out_of_tolerance");
    let early = verify(BODY, &header, SECRET, NOW - 301, 300).unwrap_err();
    assert_eq!(early.code().as_str(), "timestamp_out_of_tolerance");
}

#[test]
fn any_matching_v1_is_accepted() {
    let good = sign(BODY, SECRET, NOW);
    let good_v1 = good.split_once(",v1=").unwrap().1;
    let old = sign(BODY, "whsec_old", NOW);
    let old_v1 = old.split_once(",v1=").unwrap().1;
    // The secret is being rolled: both signatures, in either order, plus a v0.
    let header = format!("t={NOW},v1={old_v1},v1={good_v1},v0=deadbeef");
    assert_eq!(verify(BODY, &header, SECRET, NOW, 300), Ok(()));
    let header = format!("t={NOW},v0=deadbeef,v1={good_v1},v1={old_v1}");
    assert_eq!(verify(BODY, &header, SECRET, NOW, 300), Ok(()));
    assert_eq!(verify(BODY, &header, "whsec_old", NOW, 300), Ok(()));
    assert_eq!(verify(BODY, &header, "whsec_third", NOW, 300).unwrap_err().code().as_str(), "bad_signature");
}

#[test]
fn malformed_payloads_are_refused_and_unknown_types_are_other() {
    assert_eq!(parse(b"not json").unwrap_err().code().as_str(), "malformed_payload");
    assert_eq!(parse(br#"{"id":"evt_1","type":"x"}"#).unwrap_err().code().as_str(), "malformed_payload");
    let no_amount = json!({"id":"evt_1","created":1,"type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}});
    assert_eq!(parse(no_amount.to_string().as_bytes()).unwrap_err().code().as_str(), "malformed_payload");
    let other = json!({"id":"evt_2","created":5,"type":"customer.created","data":{"object":{"id":"cus_1"}}});
    let event = parse(other.to_string().as_bytes()).unwrap();
    assert_eq!(
        event,
        WebhookEvent { id: "evt_2".into(), created: 5, kind: WebhookKind::Other("customer.created".into()) }
    );
}

#[test]
fn an_expanded_payment_intent_on_a_charge_is_read_by_id() {
    let ev = json!({"id":"evt_3","created":5,"type":"charge.refunded",
        "data":{"object":{"id":"ch_1","object":"charge","amount_refunded":700,"payment_intent":{"id":"pi_9","object":"payment_intent"}}}});
    let kind = parse(ev.to_string().as_bytes()).unwrap().kind;
    assert_eq!(kind, WebhookKind::Refunded { intent_id: "pi_9".into(), amount_refunded: 700 });
}

/// A webhook endpoint that verifies and parses what it receives, like the
/// server's.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Result<WebhookEvent, WebhookError>>>>);

async fn endpoint(State(rx): State<Received>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = headers.get("stripe-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let result = verify(&body, header, SECRET, now, DEFAULT_TOLERANCE_SECS).and_then(|()| parse(&body));
    let status = if result.is_ok() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    rx.0.lock().unwrap().push(result);
    status
}

async fn receiver() -> (String, Received) {
    let received = Received::default();
    let app = axum::Router::new().route("/webhooks/stripe", axum::routing::post(endpoint)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/stripe", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, received)
}

#[tokio::test]
async fn the_fakes_signed_events_verify_and_parse_into_each_kind() {
    let fake = FakeStripe::start().await;
    let (url, received) = receiver().await;
    fake.set_webhook_target(url, SECRET.into());
    let p = provider(&fake);

    let acct = p
        .create_account(&AccountRequest {
            consultant_id: "usr_c".into(),
            email: None,
            country: "DE".into(),
            idempotency_key: "acct:1".into(),
        })
        .await
        .unwrap();
    assert!(fake.complete_onboarding(&acct.id));
    let held = p.place_hold(&hold("pm_card_visa", "hold:1", Some(&acct.id))).await.unwrap();
    let capture =
        CaptureRequest { amount_to_capture: 4000, application_fee_amount: Some(800), idempotency_key: "s:1".into() };
    p.capture(&held.id, &capture).await.unwrap();
    let refund = RefundRequest {
        intent_id: held.id.clone(),
        amount: 1000,
        reverse_transfer: true,
        idempotency_key: "r:1".into(),
    };
    p.refund(&refund).await.unwrap();
    assert!(fake.create_dispute(&held.id, "fraudulent"));
    let released = p.place_hold(&hold("pm_card_visa", "hold:2", None)).await.unwrap();
    p.release(&released.id, "rel:2").await.unwrap();
    p.place_hold(&hold("pm_card_chargeDeclined", "hold:3", None)).await.unwrap_err();
    fake.flush_webhooks().await;

    let received: Vec<WebhookEvent> =
        received.0.lock().unwrap().iter().map(|r| r.clone().expect("verified and parsed")).collect();
    assert_eq!(received.len(), fake.events().len());
    assert!(fake.deliveries().iter().all(|d| d.status == Some(200)));
    let ids: Vec<_> = fake.events().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(received.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), ids, "delivered in order");
    assert!(received.iter().all(|e| e.created > 1_700_000_000));

    let kinds: Vec<WebhookKind> =
        received.into_iter().map(|e| e.kind).filter(|k| !matches!(k, WebhookKind::Other(_))).collect();
    let declined_id = fake
        .events()
        .iter()
        .find(|e| e["type"] == "payment_intent.payment_failed")
        .map(|e| e["data"]["object"]["id"].as_str().unwrap().to_owned())
        .unwrap();
    let dispute = fake
        .events()
        .iter()
        .find(|e| e["type"] == "charge.dispute.created")
        .map(|e| e["data"]["object"].clone())
        .unwrap();
    assert_eq!(
        kinds,
        vec![
            WebhookKind::AccountUpdated {
                account_id: acct.id.clone(),
                charges_enabled: true,
                payouts_enabled: true,
                details_submitted: true
            },
            WebhookKind::HoldConfirmed { intent_id: held.id.clone(), amount_capturable: 6000 },
            WebhookKind::Captured { intent_id: held.id.clone(), amount_received: 4000 },
            WebhookKind::Refunded { intent_id: held.id.clone(), amount_refunded: 1000 },
            WebhookKind::Dispute {
                change: DisputeChange::Created,
                dispute_id: dispute["id"].as_str().unwrap().to_owned(),
                intent_id: held.id.clone(),
                amount: 4000,
                reason: "fraudulent".into(),
                status: "needs_response".into(),
                due_by: dispute["evidence_details"]["due_by"].as_i64(),
            },
            WebhookKind::HoldConfirmed { intent_id: released.id.clone(), amount_capturable: 6000 },
            WebhookKind::Canceled { intent_id: released.id.clone() },
            WebhookKind::PaymentFailed { intent_id: declined_id, message: "Your card was declined.".into() },
        ]
    );

    // The events carry complete objects: the PaymentIntent as stored.
    let succeeded = fake.events().into_iter().find(|e| e["type"] == "payment_intent.succeeded").unwrap();
    assert_eq!(succeeded["object"], "event");
    assert_eq!(succeeded["livemode"], false);
    assert_eq!(succeeded["api_version"], fake_stripe::API_VERSION);
    assert_eq!(succeeded["data"]["object"]["object"], "payment_intent");
    assert_eq!(succeeded["data"]["object"]["application_fee_amount"], 800);
    assert_eq!(succeeded["data"]["object"]["transfer_data"]["destination"], acct.id.as_str());
}

#[tokio::test]
async fn a_resent_event_keeps_its_id_and_a_wrong_secret_is_refused_by_the_endpoint() {
    let fake = FakeStripe::start().await;
    let (url, received) = receiver().await;
    fake.set_webhook_target(url.clone(), SECRET.into());
    let p = provider(&fake);
    let held = p.place_hold(&hold("pm_card_visa", "hold:1", None)).await.unwrap();
    fake.flush_webhooks().await;
    let hold_event =
        fake.events().into_iter().find(|e| e["type"] == "payment_intent.amount_capturable_updated").unwrap();
    assert!(fake.resend_event(hold_event["id"].as_str().unwrap()));
    fake.flush_webhooks().await;
    fake.set_webhook_target(url, "whsec_wrong".into());
    p.release(&held.id, "rel:1").await.unwrap();
    fake.flush_webhooks().await;

    let got = received.0.lock().unwrap().clone();
    let ok: Vec<_> = got.iter().filter_map(|r| r.as_ref().ok()).filter(|e| e.id == hold_event["id"]).collect();
    assert_eq!(ok.len(), 2, "the same event id twice: the server dedupes by id");
    let last = got.last().unwrap().as_ref().unwrap_err();
    assert_eq!(last.code().as_str(), "bad_signature");
    assert_eq!(fake.deliveries().last().unwrap().status, Some(400));
}
