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
//!   account links; transfers out of a charge's balance and their reversals
//!   (`transfers.rs`);
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

mod disputes;
mod http;
mod resources;
mod transfers;
mod webhooks;

use http::handle;
use webhooks::deliver_webhooks;

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
    /// Disputes (`dp_…`) by id.
    disputes: HashMap<String, Value>,
    /// Connect transfers by id (escrow payouts).
    transfers: HashMap<String, Value>,
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
        self.open_dispute(intent_id, reason).is_some()
    }

    /// Like [`FakeStripe::create_dispute`], returning the dispute's id.
    pub fn open_dispute(&self, intent_id: &str, reason: &str) -> Option<String> {
        let mut st = self.shared.lock();
        let pi = st.intents.get(intent_id).cloned()?;
        if pi["status"] != "succeeded" {
            return None;
        }
        let id = st.new_id("dp");
        let now = st.now();
        let dispute = disputes::new_dispute(&id, &pi, reason, now);
        st.disputes.insert(id.clone(), dispute.clone());
        let ev = st.event("charge.dispute.created", dispute, None);
        drop(st);
        let _ = self.shared.hooks.send(Hook::Event(ev));
        Some(id)
    }

    /// The dispute `id` as stored (evidence included).
    pub fn dispute(&self, id: &str) -> Option<Value> {
        self.shared.lock().disputes.get(id).cloned()
    }

    /// Simulates the card network's verdict: the dispute becomes `won` or
    /// `lost`; sends `charge.dispute.closed`. False if it is unknown or
    /// closed already.
    pub fn close_dispute(&self, id: &str, won: bool) -> bool {
        let mut st = self.shared.lock();
        let Some(d) = st.disputes.get_mut(id) else { return false };
        if matches!(d["status"].as_str(), Some("won" | "lost")) {
            return false;
        }
        d["status"] = json!(if won { "won" } else { "lost" });
        let obj = d.clone();
        let ev = st.event("charge.dispute.closed", obj, None);
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
