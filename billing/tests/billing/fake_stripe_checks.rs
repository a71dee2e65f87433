//! The fake Stripe refuses what Stripe refuses: checked with raw HTTP
//! requests, since the typed client never sends them.

use crate::fake_stripe::FakeStripe;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A response: status, lower-cased headers, JSON body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends one HTTP/1.1 request and reads the whole response.
async fn send(fake: &FakeStripe, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let host = fake.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Resp { status, headers, body: serde_json::from_str(&body).unwrap_or(Value::Null) }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

const AUTH: (&str, &str) = ("Authorization", "Bearer sk_test_checks");
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

async fn post(fake: &FakeStripe, path: &str, key: Option<&str>, body: &str) -> Resp {
    let mut headers = vec![AUTH, FORM];
    if let Some(k) = key {
        headers.push(("Idempotency-Key", k));
    }
    send(fake, "POST", path, &headers, body).await
}

const HOLD: &str = "amount=2500&currency=usd&capture_method=manual&confirm=true&payment_method=pm_card_visa\
                    &payment_method_types%5B%5D=card&metadata%5Bsession_id%5D=ses+7&description=a%26b";

#[tokio::test]
async fn an_api_key_is_required() {
    let fake = FakeStripe::start().await;
    let none = send(&fake, "GET", "/v1/payment_intents/pi_1", &[], "").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["type"], "invalid_request_error");
    let live = send(&fake, "GET", "/v1/payment_intents/pi_1", &[("Authorization", "Bearer sk_live_1")], "").await;
    assert_eq!(live.status, 401);
    assert_eq!(fake.requests().len(), 2, "refused requests are recorded too");
}

#[tokio::test]
async fn form_bodies_with_bracket_keys_are_decoded() {
    let fake = FakeStripe::start().await;
    let r = post(&fake, "/v1/payment_intents", None, HOLD).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["status"], "requires_capture");
    assert_eq!(r.body["metadata"]["session_id"], "ses 7");
    assert_eq!(r.body["description"], "a&b");
    assert_eq!(r.body["payment_method_types"], serde_json::json!(["card"]));
    assert_eq!(r.body["amount_capturable"], 2500);
    let got = send(&fake, "GET", &format!("/v1/payment_intents/{}", r.body["id"].as_str().unwrap()), &[AUTH], "").await;
    assert_eq!(got.body, r.body);

    let json = send(&fake, "POST", "/v1/payment_intents", &[AUTH, ("Content-Type", "application/json")], "{}").await;
    assert_eq!(json.status, 400, "JSON bodies are refused");
}

#[tokio::test]
async fn missing_invalid_and_unknown_parameters_are_refused() {
    let fake = FakeStripe::start().await;
    let r = post(&fake, "/v1/payment_intents", None, "currency=usd").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.body["error"]["code"], "parameter_missing");
    assert_eq!(r.body["error"]["param"], "amount");
    let r = post(&fake, "/v1/payment_intents", None, "amount=0&currency=usd").await;
    assert_eq!(r.body["error"]["code"], "parameter_invalid_integer");
    let r = post(&fake, "/v1/payment_intents", None, "amount=12.5&currency=usd").await;
    assert_eq!(r.body["error"]["code"], "parameter_invalid_integer");
    let r = post(&fake, "/v1/payment_intents", None, "amount=100").await;
    assert_eq!(r.body["error"]["param"], "currency");
    let r = post(&fake, "/v1/payment_intents", None, "amount=100&currency=usd&colour=red").await;
    assert_eq!(r.body["error"]["code"], "parameter_unknown");
    let r =
        post(&fake, "/v1/payment_intents", None, "amount=100&currency=usd&transfer_data%5Bdestination%5D=acct_x").await;
    assert_eq!(r.body["error"]["code"], "resource_missing");
    let r = post(&fake, "/v1/accounts", None, "country=DE").await;
    assert_eq!(r.body["error"]["param"], "type");
    let acct = post(&fake, "/v1/accounts", None, "type=express&country=DE").await;
    let id = acct.body["id"].as_str().unwrap();
    let r =
        post(&fake, "/v1/account_links", None, &format!("account={id}&type=account_onboarding&refresh_url=x")).await;
    assert_eq!(r.body["error"]["param"], "return_url");
    let r = post(&fake, "/v1/payment_intents/pi_nope/capture", None, "").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn idempotency_keys_replay_the_stored_response_and_refuse_other_parameters() {
    let fake = FakeStripe::start().await;
    let first = post(&fake, "/v1/payment_intents", Some("k1"), HOLD).await;
    // The same parameters in another order are the same request.
    let mut pairs: Vec<&str> = HOLD.split('&').collect();
    pairs.reverse();
    let again = post(&fake, "/v1/payment_intents", Some("k1"), &pairs.join("&")).await;
    assert_eq!((again.status, &again.body), (first.status, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(fake.events().iter().filter(|e| e["type"] == "payment_intent.created").count(), 1);

    let other = post(&fake, "/v1/payment_intents", Some("k1"), &HOLD.replace("2500", "2600")).await;
    assert_eq!(other.status, 400);
    assert_eq!(other.body["error"]["type"], "idempotency_error");

    // A declined attempt is stored too: its replay is the same 402.
    let declined = HOLD.replace("pm_card_visa", "pm_card_chargeDeclined");
    let d1 = post(&fake, "/v1/payment_intents", Some("k2"), &declined).await;
    let d2 = post(&fake, "/v1/payment_intents", Some("k2"), &declined).await;
    assert_eq!(d1.status, 402);
    assert_eq!(d1.body["error"]["decline_code"], "generic_decline");
    assert_eq!(d1.body["error"]["payment_intent"]["status"], "requires_payment_method");
    assert_eq!((d2.status, d2.body), (402, d1.body));

    // A validation error is not stored: the key can still be used.
    let bad = post(&fake, "/v1/payment_intents", Some("k3"), "currency=usd").await;
    assert_eq!(bad.status, 400);
    let good = post(&fake, "/v1/payment_intents", Some("k3"), HOLD).await;
    assert_eq!(good.status, 200);

    // An injected failure is not stored either.
    fake.fail_next(2, 503);
    assert_eq!(post(&fake, "/v1/payment_intents", Some("k4"), HOLD).await.status, 503);
    assert_eq!(post(&fake, "/v1/payment_intents", Some("k4"), HOLD).await.status, 503);
    assert_eq!(post(&fake, "/v1/payment_intents", Some("k4"), HOLD).await.status, 200);
}

#[tokio::test]
async fn intents_follow_stripes_state_machine() {
    let fake = FakeStripe::start().await;
    let pi = post(&fake, "/v1/payment_intents", None, HOLD).await.body;
    let id = pi["id"].as_str().unwrap();
    let capture = format!("/v1/payment_intents/{id}/capture");
    let r = post(&fake, &capture, None, "amount_to_capture=2501").await;
    assert_eq!(r.body["error"]["code"], "amount_too_large");
    let r = post(&fake, &capture, None, "amount_to_capture=2000&application_fee_amount=100").await;
    assert_eq!(r.status, 400, "no fee without transfer_data");
    assert_eq!(r.body["error"]["param"], "application_fee_amount");
    let r = post(&fake, &capture, None, "amount_to_capture=2000").await;
    assert_eq!((r.status, &r.body["status"], &r.body["amount_received"]), (200, &"succeeded".into(), &2000.into()));
    let r = post(&fake, &capture, None, "amount_to_capture=2000").await;
    assert_eq!(r.body["error"]["code"], "payment_intent_unexpected_state");
    let r = post(&fake, &format!("/v1/payment_intents/{id}/cancel"), None, "").await;
    assert_eq!(r.body["error"]["code"], "payment_intent_unexpected_state");

    let r = post(&fake, "/v1/refunds", None, &format!("payment_intent={id}&amount=1500")).await;
    assert_eq!(r.status, 200);
    let r = post(&fake, "/v1/refunds", None, &format!("payment_intent={id}&amount=501")).await;
    assert_eq!(r.body["error"]["code"], "amount_too_large");
    let r = post(&fake, "/v1/refunds", None, &format!("payment_intent={id}")).await;
    assert_eq!(r.body["amount"], 500, "the rest");
    let r = post(&fake, "/v1/refunds", None, &format!("payment_intent={id}")).await;
    assert_eq!(r.body["error"]["code"], "charge_already_refunded");

    // An expired hold cannot be captured (B6).
    let pi = post(&fake, "/v1/payment_intents", None, HOLD).await.body;
    let id = pi["id"].as_str().unwrap();
    assert!(fake.expire_hold(id));
    let r = post(&fake, &format!("/v1/payment_intents/{id}/capture"), None, "").await;
    assert_eq!(r.body["error"]["code"], "payment_intent_unexpected_state");
    assert_eq!(fake.intent(id).unwrap()["cancellation_reason"], "automatic");
}
