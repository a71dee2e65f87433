//! A fake Stripe API for tests: an axum app on 127.0.0.1 that checks what
//! Stripe checks (STACK.md "Stripe, offline") for the calls Parley makes.
//!
//! - `Authorization: Bearer sk_test_…` (401 otherwise);
//! - `application/x-www-form-urlencoded` bodies with bracket keys
//!   (`metadata[k]`, `payment_method_types[0]`, `transfer_data[destination]`);
//! - required and unknown parameters, with Stripe-shaped errors
//!   `{"error":{"type","code","param","message"}}`;
//! - `Idempotency-Key` replay: same key and parameters → the stored status
//!   and body (`Idempotent-Replayed: true`); same key, other parameters →
//!   400 `idempotency_error`. Parameter-validation errors and injected
//!   failures are not stored, as on Stripe;
//! - test payment methods: `pm_card_visa` / `pm_card_mastercard` (hold
//!   placed), `pm_card_chargeDeclined` (402 `generic_decline`),
//!   `pm_card_chargeDeclinedInsufficientFunds` (402 `insufficient_funds`),
//!   `pm_card_authenticationRequired` (`requires_action`);
//! - PaymentIntent transitions (capture from `requires_capture` only, at most
//!   `amount_capturable`, `application_fee_amount` only with
//!   `transfer_data` and at most the capture; cancel before success),
//!   refunds of captured intents up to what remains, Connect accounts and
//!   account links;
//! - signed webhooks (`Stripe-Signature`) after each state change, delivered
//!   in order by one background task to [`FakeStripe::set_webhook_target`].
//!
//! Self-contained: it uses only `axum`, `tokio`, `serde_json` and
//! `parley_billing::webhook::sign`, so other crates' tests can include it
//! with `#[path = "…/billing/tests/billing/fake_stripe/mod.rs"] mod fake_stripe;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The API version the fake reports in events (async-stripe 1.0.0-rc.10's).
pub const API_VERSION: &str = "2026-09-30.endive";

/// One request the fake received, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`…
    pub method: String,
    /// The path without the query, e.g. `/v1/payment_intents`.
    pub path: String,
    /// The `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// The decoded form body (or query for a GET), in order.
    pub form: Vec<(String, String)>,
}

/// One webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// `evt_…`.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The HTTP status the target answered; `None` if it could not be reached.
    pub status: Option<u16>,
}

/// A stored idempotent result.
struct Saved {
    method: String,
    path: String,
    params: Vec<(String, String)>,
    status: u16,
    body: Value,
}

#[derive(Default)]
struct Inner {
    /// Stripe's clock, Unix seconds (the system clock unless the test
    /// gives its server's clock: signatures and `created` use it).
    clock: Option<Arc<dyn Fn() -> i64 + Send + Sync>>,
    seq: u64,
    intents: HashMap<String, Value>,
    /// Per intent: amount refunded so far.
    refunded: HashMap<String, i64>,
    accounts: HashMap<String, Value>,
    idempotency: HashMap<String, Saved>,
    requests: Vec<RecordedRequest>,
    fail_next: Option<(usize, u16)>,
    webhook: Option<(String, String)>,
    events: Vec<Value>,
    deliveries: Vec<Delivery>,
}

enum Hook {
    Event(Value),
    Flush(oneshot::Sender<()>),
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    hooks: mpsc::UnboundedSender<Hook>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running fake Stripe API. Dropping it stops the server.
pub struct FakeStripe {
    addr: SocketAddr,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        self.server.abort();
        self.worker.abort();
    }
}

impl FakeStripe {
    /// Starts the fake on `127.0.0.1:0`.
    ///
    /// # Panics
    /// If it cannot bind.
    pub async fn start() -> FakeStripe {
        Self::start_inner(None).await
    }

    /// Starts the fake with `now` (Unix seconds) as Stripe's clock: a test
    /// whose server runs on a manual clock gives it the same one, as the
    /// real Stripe and a real server share real time.
    pub async fn start_with_clock(now: impl Fn() -> i64 + Send + Sync + 'static) -> FakeStripe {
        Self::start_inner(Some(Arc::new(now))).await
    }

    async fn start_inner(clock: Option<Arc<dyn Fn() -> i64 + Send + Sync>>) -> FakeStripe {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Stripe");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Shared { inner: Arc::new(Mutex::new(Inner { clock, ..Inner::default() })), hooks: tx };
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let worker = tokio::spawn(deliver_webhooks(shared.inner.clone(), rx));
        FakeStripe { addr, shared, server, worker }
    }

    /// The API base URL, `http://127.0.0.1:PORT` (for `StripeConfig::api_base`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends a signed webhook for every later state change to `url`, signed
    /// with `secret` (`whsec_…`).
    pub fn set_webhook_target(&self, url: String, secret: String) {
        self.shared.lock().webhook = Some((url, secret));
    }

    /// The next `n` write requests (POST) fail with HTTP `status` and a
    /// Stripe `api_error` body, without being carried out and without
    /// storing an idempotent result.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared.lock().fail_next = (n > 0).then_some((n, status));
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests had `method` and a path starting with `path_prefix`.
    pub fn count(&self, method: &str, path_prefix: &str) -> usize {
        self.shared.lock().requests.iter().filter(|r| r.method == method && r.path.starts_with(path_prefix)).count()
    }

    /// The PaymentIntent `id` as stored (the JSON the API returns).
    pub fn intent(&self, id: &str) -> Option<Value> {
        self.shared.lock().intents.get(id).cloned()
    }

    /// The connected account `id` as stored.
    pub fn account(&self, id: &str) -> Option<Value> {
        self.shared.lock().accounts.get(id).cloned()
    }

    /// Every event generated so far (delivered or not), in order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// Every webhook delivery attempt so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Waits until every event generated so far has been delivered (or its
    /// delivery has failed).
    pub async fn flush_webhooks(&self) {
        let (tx, rx) = oneshot::channel();
        if self.shared.hooks.send(Hook::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends the stored event `event_id` again, as Stripe does when it
    /// retries (same id and body, fresh signature).
    pub fn resend_event(&self, event_id: &str) -> bool {
        let event = self.shared.lock().events.iter().find(|e| e["id"] == event_id).cloned();
        match event {
            Some(e) => self.shared.hooks.send(Hook::Event(e)).is_ok(),
            None => false,
        }
    }

    /// Simulates the consultant finishing onboarding: the account's
    /// `charges_enabled`, `payouts_enabled` and `details_submitted` become
    /// true, capabilities active; sends `account.updated`.
    pub fn complete_onboarding(&self, account_id: &str) -> bool {
        let mut st = self.shared.lock();
        let Some(acct) = st.accounts.get_mut(account_id) else { return false };
        acct["charges_enabled"] = json!(true);
        acct["payouts_enabled"] = json!(true);
        acct["details_submitted"] = json!(true);
        acct["capabilities"] = json!({"card_payments": "active", "transfers": "active"});
        let obj = acct.clone();
        let ev = st.event("account.updated", obj, None);
        drop(st);
        let _ = self.shared.hooks.send(Hook::Event(ev));
        true
    }

    /// Simulates the authorisation lapsing (DESIGN.md B6): a
    /// `requires_capture` intent becomes `canceled` with
    /// `cancellation_reason=automatic`; sends `payment_intent.canceled`.
    pub fn expire_hold(&self, intent_id: &str) -> bool {
        let mut st = self.shared.lock();
        let now = st.now();
        let Some(pi) = st.intents.get_mut(intent_id) else { return false };
        if pi["status"] != "requires_capture" {
            return false;
        }
        pi["status"] = json!("canceled");
        pi["amount_capturable"] = json!(0);
        pi["canceled_at"] = json!(now);
        pi["cancellation_reason"] = json!("automatic");
        let obj = pi.clone();
        let ev = st.event("payment_intent.canceled", obj, None);
        drop(st);
        let _ = self.shared.hooks.send(Hook::Event(ev));
        true
    }

    /// Simulates the seeker disputing a captured intent's charge; sends
    /// `charge.dispute.created` with a Dispute object.
    pub fn create_dispute(&self, intent_id: &str, reason: &str) -> bool {
        let mut st = self.shared.lock();
        let Some(pi) = st.intents.get(intent_id).cloned() else { return false };
        if pi["status"] != "succeeded" {
            return false;
        }
        let id = st.new_id("dp");
        let now = st.now();
        let dispute = json!({
            "id": id, "object": "dispute", "amount": pi["amount_received"], "currency": pi["currency"],
            "charge": pi["latest_charge"], "payment_intent": intent_id, "reason": reason,
            "status": "needs_response", "created": now, "livemode": false, "metadata": {},
            "is_charge_refundable": false, "balance_transactions": [],
            "evidence_details": {"due_by": now + 7 * 86_400, "has_evidence": false, "past_due": false, "submission_count": 0},
        });
        let ev = st.event("charge.dispute.created", dispute, None);
        drop(st);
        let _ = self.shared.hooks.send(Hook::Event(ev));
        true
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

impl Inner {
    /// Stripe's now, Unix seconds.
    fn now(&self) -> i64 {
        self.clock.as_ref().map_or_else(unix_now, |c| c())
    }

    fn new_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}_3Fake{:019}", self.seq)
    }

    fn event(&mut self, kind: &str, object: Value, idempotency_key: Option<&str>) -> Value {
        let id = self.new_id("evt");
        let req = self.new_id("req");
        let ev = json!({
            "id": id, "object": "event", "api_version": API_VERSION, "created": self.now(),
            "data": {"object": object}, "livemode": false, "pending_webhooks": 1,
            "request": {"id": req, "idempotency_key": idempotency_key}, "type": kind,
        });
        self.events.push(ev.clone());
        ev
    }
}

// ---------------------------------------------------------------------------
// Webhook delivery
// ---------------------------------------------------------------------------

async fn deliver_webhooks(inner: Arc<Mutex<Inner>>, mut rx: mpsc::UnboundedReceiver<Hook>) {
    while let Some(msg) = rx.recv().await {
        let event = match msg {
            Hook::Event(e) => e,
            Hook::Flush(done) => {
                let _ = done.send(());
                continue;
            }
        };
        let (target, now) = {
            let st = inner.lock().unwrap_or_else(|p| p.into_inner());
            (st.webhook.clone(), st.now())
        };
        let Some((url, secret)) = target else { continue };
        let body = serde_json::to_vec(&event).unwrap_or_default();
        let signature = parley_billing::webhook::sign(&body, &secret, now);
        let status = tokio::time::timeout(Duration::from_secs(10), post(&url, &body, &signature)).await.ok().flatten();
        let delivery = Delivery {
            event_id: event["id"].as_str().unwrap_or_default().to_owned(),
            event_type: event["type"].as_str().unwrap_or_default().to_owned(),
            status,
        };
        inner.lock().unwrap_or_else(|p| p.into_inner()).deliveries.push(delivery);
    }
}

/// POSTs `body` as JSON to an `http://host:port/path` URL over HTTP/1.1;
/// returns the response status.
async fn post(url: &str, body: &[u8], signature: &str) -> Option<u16> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Stripe/1.0 (+https://stripe.com/docs/webhooks)\r\n\
         Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {signature}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------

/// An API outcome: status, body, events to send, and whether an idempotent
/// result is stored (not for parameter-validation errors).
struct Outcome {
    status: u16,
    body: Value,
    events: Vec<(&'static str, Value)>,
    store: bool,
}

impl Outcome {
    fn ok(body: Value) -> Self {
        Outcome { status: 200, body, events: Vec::new(), store: true }
    }
    fn with_event(mut self, kind: &'static str, object: Value) -> Self {
        self.events.push((kind, object));
        self
    }
}

fn error_body(kind: &str, code: Option<&str>, param: Option<&str>, message: &str) -> Value {
    let mut e = json!({"type": kind, "message": message});
    if let Some(c) = code {
        e["code"] = json!(c);
        e["doc_url"] = json!(format!("https://docs.stripe.com/error-codes/{}", c.replace('_', "-")));
    }
    if let Some(p) = param {
        e["param"] = json!(p);
    }
    json!({ "error": e })
}

/// A parameter-validation error (400, not stored for idempotency).
fn invalid(code: &str, param: &str, message: &str) -> Outcome {
    Outcome {
        status: 400,
        body: error_body("invalid_request_error", Some(code), Some(param), message),
        events: Vec::new(),
        store: false,
    }
}

fn missing(param: &str) -> Outcome {
    invalid("parameter_missing", param, &format!("Missing required param: {param}."))
}

/// A refusal after the endpoint started (stored for idempotency).
fn refused(status: u16, code: Option<&str>, param: Option<&str>, message: &str) -> Outcome {
    Outcome { status, body: error_body("invalid_request_error", code, param, message), events: Vec::new(), store: true }
}

fn no_such(kind: &str, id: &str, param: Option<&str>) -> Outcome {
    let mut o = refused(404, Some("resource_missing"), param, &format!("No such {kind}: '{id}'"));
    if param.is_some() {
        o.status = 400;
    }
    o
}

fn unexpected_state(pi: &Value, action: &str, allowed: &str) -> Outcome {
    let status = pi["status"].as_str().unwrap_or_default();
    let mut o = refused(
        400,
        Some("payment_intent_unexpected_state"),
        None,
        &format!(
            "This PaymentIntent could not be {action} because it has a status of {status}. \
             Only a PaymentIntent with one of the following statuses may be {action}: {allowed}."
        ),
    );
    o.body["error"]["payment_intent"] = pi.clone();
    o
}

/// Decodes `application/x-www-form-urlencoded` pairs (`+` is a space).
fn parse_form(s: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// Typed access to a decoded form.
struct Form<'a>(&'a [(String, String)]);

impl Form<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// `key[sub]` pairs as a map (`metadata[k]=v`).
    fn map(&self, key: &str) -> serde_json::Map<String, Value> {
        let prefix = format!("{key}[");
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let sub = k.strip_prefix(&prefix)?.strip_suffix(']')?;
                Some((sub.to_owned(), json!(v)))
            })
            .collect()
    }

    /// `key[]=a` or `key[0]=a` pairs as a list, in order.
    fn list(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}[");
        self.0
            .iter()
            .filter(|(k, _)| {
                k.strip_prefix(&prefix)
                    .and_then(|r| r.strip_suffix(']'))
                    .is_some_and(|i| i.is_empty() || i.bytes().all(|b| b.is_ascii_digit()))
            })
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Top-level parameter names (`metadata[k]` → `metadata`).
    fn unknown(&self, allowed: &[&str]) -> Option<String> {
        self.0
            .iter()
            .map(|(k, _)| k.split('[').next().unwrap_or_default())
            .find(|k| !allowed.contains(k))
            .map(str::to_owned)
    }

    /// An integer parameter: `Ok(None)` if absent.
    fn int(&self, key: &str) -> Result<Option<i64>, Outcome> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| invalid("parameter_invalid_integer", key, &format!("Invalid integer: {v}"))),
        }
    }

    /// A boolean parameter: `Ok(None)` if absent.
    fn bool(&self, key: &str) -> Result<Option<bool>, Outcome> {
        match self.get(key) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(invalid("parameter_invalid_boolean", key, &format!("Invalid boolean: {v}"))),
        }
    }
}

fn json_response(status: u16, body: &Value, replayed: bool, key: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (code, [("content-type", "application/json")], body.to_string()).into_response();
    let headers = resp.headers_mut();
    headers.insert("stripe-version", HeaderValue::from_static(API_VERSION));
    if let Some(k) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
        headers.insert("idempotency-key", k);
    }
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}

async fn handle(
    AxumState(shared): AxumState<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let is_write = method == Method::POST || method == Method::DELETE;
    let raw =
        if is_write { String::from_utf8_lossy(&body).into_owned() } else { uri.query().unwrap_or_default().to_owned() };
    let form = parse_form(&raw);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);

    let mut st = shared.lock();
    st.requests.push(RecordedRequest {
        method: method.as_str().to_owned(),
        path: path.clone(),
        idempotency_key: key.clone(),
        form: form.clone(),
    });

    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let secret = auth.strip_prefix("Bearer ").unwrap_or_default();
    if secret.strip_prefix("sk_test_").is_none_or(str::is_empty) {
        let msg = if auth.is_empty() {
            "You did not provide an API key.".to_owned()
        } else {
            "Invalid API Key provided.".to_owned()
        };
        return json_response(401, &error_body("invalid_request_error", None, None, &msg), false, None);
    }
    if is_write && !body.is_empty() {
        let ctype = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !ctype.starts_with("application/x-www-form-urlencoded") {
            let msg = format!("Invalid request: unsupported Content-Type {ctype}.");
            return json_response(400, &error_body("invalid_request_error", None, None, &msg), false, None);
        }
    }
    if is_write && let Some((n, status)) = st.fail_next {
        st.fail_next = (n > 1).then_some((n - 1, status));
        let body = match status {
            500.. => error_body("api_error", None, None, "Fake Stripe: injected failure."),
            429 => error_body("invalid_request_error", Some("rate_limit"), None, "Fake Stripe: too many requests."),
            _ => error_body("invalid_request_error", None, None, "Fake Stripe: injected failure."),
        };
        return json_response(status, &body, false, key.as_deref());
    }

    let mut params = form.clone();
    params.sort();
    if is_write
        && let Some(k) = &key
        && let Some(saved) = st.idempotency.get(k)
    {
        if saved.method == method.as_str() && saved.path == path && saved.params == params {
            return json_response(saved.status, &saved.body, true, Some(k));
        }
        let msg = format!(
            "Keys for idempotent requests can only be used with the same parameters they were first used with. \
             Try using a key other than '{k}' if you meant to execute a different request."
        );
        return json_response(400, &error_body("idempotency_error", None, None, &msg), false, Some(k));
    }

    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let f = Form(&form);
    let outcome = match (method.as_str(), segments.as_slice()) {
        ("POST", ["v1", "payment_intents"]) => create_intent(&mut st, &f),
        ("GET", ["v1", "payment_intents", id]) => match st.intents.get(*id) {
            Some(pi) => Outcome::ok(pi.clone()),
            None => no_such("payment_intent", id, None),
        },
        ("POST", ["v1", "payment_intents", id, "capture"]) => capture_intent(&mut st, id, &f),
        ("POST", ["v1", "payment_intents", id, "cancel"]) => cancel_intent(&mut st, id, &f),
        ("POST", ["v1", "refunds"]) => create_refund(&mut st, &f),
        ("POST", ["v1", "accounts"]) => create_account(&mut st, &f),
        ("GET", ["v1", "accounts", id]) => match st.accounts.get(*id) {
            Some(a) => Outcome::ok(a.clone()),
            None => no_such("account", id, None),
        },
        ("POST", ["v1", "account_links"]) => create_account_link(&mut st, &f),
        _ => refused(
            404,
            None,
            None,
            &format!("Unrecognized request URL ({} {path}). The fake Stripe does not implement it.", method.as_str()),
        ),
    };
    let Outcome { status, body, events, store } = outcome;
    if is_write
        && store
        && let Some(k) = &key
    {
        let saved = Saved { method: method.as_str().to_owned(), path, params, status, body: body.clone() };
        st.idempotency.insert(k.clone(), saved);
    }
    let events: Vec<Value> = events.into_iter().map(|(kind, obj)| st.event(kind, obj, key.as_deref())).collect();
    drop(st);
    for ev in events {
        let _ = shared.hooks.send(Hook::Event(ev));
    }
    json_response(status, &body, false, key.as_deref())
}

fn try_outcome(f: impl FnOnce() -> Result<Outcome, Outcome>) -> Outcome {
    f().unwrap_or_else(|e| e)
}

const INTENT_PARAMS: &[&str] = &[
    "amount",
    "currency",
    "capture_method",
    "confirm",
    "confirmation_method",
    "payment_method",
    "payment_method_types",
    "allowed_payment_method_types",
    "description",
    "metadata",
    "transfer_data",
    "application_fee_amount",
    "on_behalf_of",
    "customer",
    "receipt_email",
    "statement_descriptor_suffix",
    "transfer_group",
    "return_url",
    "error_on_requires_action",
    "use_stripe_sdk",
    "expand",
];

fn create_intent(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(INTENT_PARAMS) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let amount = f.int("amount")?.ok_or_else(|| missing("amount"))?;
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount",
                "This value must be greater than or equal to 1.",
            ));
        }
        let currency = f.get("currency").ok_or_else(|| missing("currency"))?.to_ascii_lowercase();
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid("parameter_invalid_string", "currency", &format!("Invalid currency: {currency}.")));
        }
        let capture_method = f.get("capture_method").unwrap_or("automatic").to_owned();
        if !["automatic", "automatic_async", "manual"].contains(&capture_method.as_str()) {
            return Err(invalid("parameter_invalid_string", "capture_method", "Invalid capture_method."));
        }
        let confirm = f.bool("confirm")?.unwrap_or(false);
        let mut types = f.list("payment_method_types");
        types.extend(f.list("allowed_payment_method_types"));
        if types.is_empty() {
            types.push("card".to_owned());
        }
        if let Some(t) = types.iter().find(|t| t.as_str() != "card") {
            return Err(invalid(
                "payment_method_unactivated",
                "payment_method_types",
                &format!("The payment method type \"{t}\" is not activated for the fake Stripe."),
            ));
        }
        let fee = f.int("application_fee_amount")?;
        let transfer = f.map("transfer_data");
        let destination = transfer.get("destination").and_then(Value::as_str).map(str::to_owned);
        if !transfer.is_empty() && destination.is_none() {
            return Err(missing("transfer_data[destination]"));
        }
        if let Some(d) = &destination
            && !st.accounts.contains_key(d)
        {
            return Err(no_such("destination", d, Some("transfer_data[destination]")));
        }
        if fee.is_some() && destination.is_none() && f.get("on_behalf_of").is_none() {
            return Err(fee_without_transfer());
        }
        let pm = f.get("payment_method").map(str::to_owned);
        if confirm && pm.is_none() {
            return Err(missing("payment_method"));
        }
        let id = st.new_id("pi");
        let now = st.now();
        let mut pi = json!({
            "id": id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
            "amount_details": null, "amount_received": 0, "application": null,
            "application_fee_amount": fee, "automatic_payment_methods": null, "canceled_at": null,
            "cancellation_reason": null, "capture_method": capture_method,
            "client_secret": format!("{id}_secret_fake"), "confirmation_method": "automatic",
            "created": now, "currency": currency, "customer": null, "description": f.get("description"),
            "last_payment_error": null, "latest_charge": null, "livemode": false,
            "metadata": Value::Object(f.map("metadata")), "next_action": null,
            "on_behalf_of": f.get("on_behalf_of"), "payment_method": pm, "payment_method_options": null,
            "payment_method_types": types, "processing": null, "receipt_email": f.get("receipt_email"),
            "review": null, "setup_future_usage": null, "shipping": null, "source": null,
            "statement_descriptor": null, "statement_descriptor_suffix": f.get("statement_descriptor_suffix"),
            "status": if pm.is_some() { "requires_confirmation" } else { "requires_payment_method" },
            "transfer_data": destination.as_ref().map(|d| json!({"destination": d})),
            "transfer_group": f.get("transfer_group"),
        });
        if !confirm {
            st.intents.insert(id, pi.clone());
            return Ok(Outcome::ok(pi.clone()).with_event("payment_intent.created", pi));
        }
        let pm = pm.unwrap_or_default();
        let created = pi.clone();
        let decline = |code: &str, decline_code: &str, message: &str| {
            (code.to_owned(), decline_code.to_owned(), message.to_owned())
        };
        let declined = match pm.as_str() {
            "pm_card_visa" | "pm_card_mastercard" => None,
            "pm_card_chargeDeclined" => Some(decline("card_declined", "generic_decline", "Your card was declined.")),
            "pm_card_chargeDeclinedInsufficientFunds" => {
                Some(decline("card_declined", "insufficient_funds", "Your card has insufficient funds."))
            }
            "pm_card_authenticationRequired" => {
                pi["status"] = json!("requires_action");
                pi["next_action"] = json!({
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": "https://hooks.stripe.com/fake/3ds"},
                });
                st.intents.insert(id, pi.clone());
                return Ok(Outcome::ok(pi.clone())
                    .with_event("payment_intent.created", created)
                    .with_event("payment_intent.requires_action", pi));
            }
            other => {
                st.intents.remove(&id);
                return Err(refused(
                    400,
                    Some("resource_missing"),
                    Some("payment_method"),
                    &format!("No such PaymentMethod: '{other}'"),
                ));
            }
        };
        let charge = st.new_id("ch");
        pi["latest_charge"] = json!(charge);
        if let Some((code, decline_code, message)) = declined {
            let error = json!({
                "type": "card_error", "code": code, "decline_code": decline_code, "message": message,
                "charge": charge, "doc_url": "https://docs.stripe.com/error-codes/card-declined",
            });
            pi["status"] = json!("requires_payment_method");
            pi["last_payment_error"] = error.clone();
            st.intents.insert(id, pi.clone());
            let mut body = json!({ "error": error });
            body["error"]["payment_intent"] = pi.clone();
            return Ok(Outcome { status: 402, body, events: Vec::new(), store: true }
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.payment_failed", pi));
        }
        if capture_method == "manual" {
            pi["status"] = json!("requires_capture");
            pi["amount_capturable"] = json!(amount);
            st.intents.insert(id, pi.clone());
            Ok(Outcome::ok(pi.clone())
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.amount_capturable_updated", pi))
        } else {
            pi["status"] = json!("succeeded");
            pi["amount_received"] = json!(amount);
            st.intents.insert(id, pi.clone());
            Ok(Outcome::ok(pi.clone())
                .with_event("payment_intent.created", created)
                .with_event("payment_intent.succeeded", pi))
        }
    })
}

fn fee_without_transfer() -> Outcome {
    refused(
        400,
        None,
        Some("application_fee_amount"),
        "Can only apply an application_fee_amount when the PaymentIntent is attempting a direct payment \
         (using an OAuth key or Stripe-Account header) or destination payment (using `transfer_data[destination]`).",
    )
}

fn capture_intent(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) =
            f.unknown(&["amount_to_capture", "application_fee_amount", "metadata", "expand", "final_capture"])
        {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let to_capture = f.int("amount_to_capture")?;
        let fee = f.int("application_fee_amount")?;
        let Some(pi) = st.intents.get(id).cloned() else { return Err(no_such("payment_intent", id, None)) };
        if pi["status"] != "requires_capture" {
            return Err(unexpected_state(&pi, "captured", "requires_capture"));
        }
        let capturable = pi["amount_capturable"].as_i64().unwrap_or(0);
        let amount = to_capture.unwrap_or(capturable);
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount_to_capture",
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > capturable {
            return Err(refused(
                400,
                Some("amount_too_large"),
                Some("amount_to_capture"),
                &format!("The amount to capture ({amount}) cannot exceed the amount capturable ({capturable})."),
            ));
        }
        if let Some(fee) = fee {
            if pi["transfer_data"].is_null() && pi["on_behalf_of"].is_null() {
                return Err(fee_without_transfer());
            }
            if fee < 0 || fee > amount {
                return Err(refused(
                    400,
                    None,
                    Some("application_fee_amount"),
                    &format!(
                        "The application_fee_amount ({fee}) must be between 0 and the amount captured ({amount})."
                    ),
                ));
            }
        }
        let mut pi = pi;
        pi["status"] = json!("succeeded");
        pi["amount_capturable"] = json!(0);
        pi["amount_received"] = json!(amount);
        if let Some(fee) = fee {
            pi["application_fee_amount"] = json!(fee);
        }
        let meta = f.map("metadata");
        if let Some(m) = pi["metadata"].as_object_mut() {
            m.extend(meta);
        }
        st.intents.insert(id.to_owned(), pi.clone());
        Ok(Outcome::ok(pi.clone()).with_event("payment_intent.succeeded", pi))
    })
}

fn cancel_intent(st: &mut Inner, id: &str, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(&["cancellation_reason", "expand"]) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let reason = f.get("cancellation_reason");
        if let Some(r) = reason
            && !["duplicate", "fraudulent", "requested_by_customer", "abandoned"].contains(&r)
        {
            return Err(invalid("parameter_invalid_string", "cancellation_reason", "Invalid cancellation_reason."));
        }
        let Some(mut pi) = st.intents.get(id).cloned() else {
            return Err(no_such("payment_intent", id, None));
        };
        let cancelable = ["requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"];
        if !cancelable.iter().any(|s| pi["status"] == *s) {
            return Err(unexpected_state(&pi, "canceled", &cancelable.join(", ")));
        }
        pi["status"] = json!("canceled");
        pi["amount_capturable"] = json!(0);
        pi["canceled_at"] = json!(st.now());
        pi["cancellation_reason"] = json!(reason);
        pi["next_action"] = Value::Null;
        st.intents.insert(id.to_owned(), pi.clone());
        Ok(Outcome::ok(pi.clone()).with_event("payment_intent.canceled", pi))
    })
}

fn create_refund(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        let allowed = [
            "payment_intent",
            "charge",
            "amount",
            "reason",
            "metadata",
            "reverse_transfer",
            "refund_application_fee",
            "expand",
        ];
        if let Some(p) = f.unknown(&allowed) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let amount = f.int("amount")?;
        let reverse = f.bool("reverse_transfer")?.unwrap_or(false);
        let refund_fee = f.bool("refund_application_fee")?.unwrap_or(false);
        let intent_id = match (f.get("payment_intent"), f.get("charge")) {
            (Some(pi), _) => pi.to_owned(),
            (None, Some(ch)) => st
                .intents
                .values()
                .find(|pi| pi["latest_charge"] == ch)
                .and_then(|pi| pi["id"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| no_such("charge", ch, Some("charge")))?,
            (None, None) => return Err(missing("payment_intent")),
        };
        let Some(pi) = st.intents.get(&intent_id).cloned() else {
            return Err(no_such("payment_intent", &intent_id, Some("payment_intent")));
        };
        if pi["status"] != "succeeded" {
            return Err(refused(
                400,
                Some("charge_not_refundable"),
                None,
                &format!("This PaymentIntent ({intent_id}) does not have a successful charge to refund."),
            ));
        }
        if (reverse || refund_fee) && pi["transfer_data"].is_null() {
            let param = if reverse { "reverse_transfer" } else { "refund_application_fee" };
            return Err(refused(
                400,
                None,
                Some(param),
                "This charge has no transfer to reverse and no application fee to refund.",
            ));
        }
        let received = pi["amount_received"].as_i64().unwrap_or(0);
        let already = st.refunded.get(&intent_id).copied().unwrap_or(0);
        let remaining = received - already;
        if remaining <= 0 {
            return Err(refused(
                400,
                Some("charge_already_refunded"),
                None,
                &format!("Charge {} has already been refunded.", pi["latest_charge"].as_str().unwrap_or_default()),
            ));
        }
        let amount = amount.unwrap_or(remaining);
        if amount < 1 {
            return Err(invalid(
                "parameter_invalid_integer",
                "amount",
                "This value must be greater than or equal to 1.",
            ));
        }
        if amount > remaining {
            return Err(refused(
                400,
                Some("amount_too_large"),
                Some("amount"),
                &format!("Refund amount ({amount}) is greater than unrefunded amount on charge ({remaining})"),
            ));
        }
        let total = already + amount;
        st.refunded.insert(intent_id.clone(), total);
        let id = st.new_id("re");
        let now = st.now();
        let refund = json!({
            "id": id, "object": "refund", "amount": amount, "balance_transaction": null,
            "charge": pi["latest_charge"], "created": now, "currency": pi["currency"],
            "metadata": Value::Object(f.map("metadata")), "payment_intent": intent_id,
            "reason": f.get("reason"), "receipt_number": null, "source_transfer_reversal": null,
            "status": "succeeded", "transfer_reversal": null,
        });
        let charge = json!({
            "id": pi["latest_charge"], "object": "charge", "amount": pi["amount"],
            "amount_captured": received, "amount_refunded": total, "application_fee_amount": pi["application_fee_amount"],
            "captured": true, "created": pi["created"], "currency": pi["currency"], "disputed": false,
            "livemode": false, "metadata": pi["metadata"], "paid": true, "payment_intent": intent_id,
            "payment_method": pi["payment_method"], "refunded": total == received, "status": "succeeded",
            "transfer_data": pi["transfer_data"],
        });
        Ok(Outcome::ok(refund).with_event("charge.refunded", charge))
    })
}

fn create_account(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        let allowed =
            ["type", "country", "email", "capabilities", "metadata", "business_type", "business_profile", "expand"];
        if let Some(p) = f.unknown(&allowed) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let kind = f.get("type").ok_or_else(|| missing("type"))?;
        if !["express", "standard", "custom"].contains(&kind) {
            return Err(invalid("parameter_invalid_string", "type", &format!("Invalid type: {kind}")));
        }
        let country = f.get("country").unwrap_or("US").to_ascii_uppercase();
        if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid("country_unsupported", "country", &format!("Country '{country}' is unknown.")));
        }
        let default_currency = match country.as_str() {
            "US" => "usd",
            "GB" => "gbp",
            "CH" => "chf",
            _ => "eur",
        };
        let mut capabilities = serde_json::Map::new();
        for name in ["card_payments", "transfers"] {
            if f.get(&format!("capabilities[{name}][requested]")) == Some("true") {
                capabilities.insert(name.to_owned(), json!("inactive"));
            }
        }
        let id = st.new_id("acct");
        let acct = json!({
            "id": id, "object": "account", "type": kind, "country": country, "email": f.get("email"),
            "charges_enabled": false, "payouts_enabled": false, "details_submitted": false,
            "capabilities": capabilities, "metadata": Value::Object(f.map("metadata")),
            "created": st.now(), "default_currency": default_currency, "business_type": null,
        });
        st.accounts.insert(id, acct.clone());
        Ok(Outcome::ok(acct))
    })
}

fn create_account_link(st: &mut Inner, f: &Form<'_>) -> Outcome {
    try_outcome(|| {
        if let Some(p) = f.unknown(&["account", "type", "refresh_url", "return_url", "collect", "expand"]) {
            return Err(invalid("parameter_unknown", &p, &format!("Received unknown parameter: {p}")));
        }
        let account = f.get("account").ok_or_else(|| missing("account"))?;
        let kind = f.get("type").ok_or_else(|| missing("type"))?;
        if !["account_onboarding", "account_update"].contains(&kind) {
            return Err(invalid("parameter_invalid_string", "type", &format!("Invalid type: {kind}")));
        }
        f.get("refresh_url").ok_or_else(|| missing("refresh_url"))?;
        f.get("return_url").ok_or_else(|| missing("return_url"))?;
        if !st.accounts.contains_key(account) {
            return Err(no_such("account", account, Some("account")));
        }
        let token = st.new_id("link");
        let now = st.now();
        Ok(Outcome::ok(json!({
            "object": "account_link", "created": now, "expires_at": now + 300,
            "url": format!("https://connect.stripe.com/setup/e/{account}/{token}"),
        })))
    })
}
