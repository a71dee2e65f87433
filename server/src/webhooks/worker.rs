//! The delivery worker of outgoing webhooks (docs/protocol.md §14). Events
//! are rows of the outbox ([`crate::store::outbox`]). `session.settled` comes
//! from a scan of settlements billing finished (`settlements.announced`,
//! set once the event is stored; its dedupe key keeps it to one): billing
//! does not know this module.
//!
//! The worker POSTs each pending event's stored body to
//! `PARLEY_WEBHOOK_URL`, signed like Stripe's webhooks
//! (`Parley-Signature: t=…,v1=…`); 2xx is delivered, anything else is
//! retried with exponential backoff on the server clock and given up after
//! [`MAX_ATTEMPTS`]. A row is leased while it is being delivered, so
//! several nodes can run the worker.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parley_billing::Committer;
use parley_domain::clock::Wake;
use parley_domain::protocol::Outcome;
use parley_domain::protocol::rest::{EVENT_ID_HEADER, SIGNATURE_HEADER, SessionSettledData, WebhookEventType};
use parley_domain::{Clock, Currency, Money, SessionId, Timestamp, UserId};
use sqlx::{AnyPool, Row};

use crate::config::WebhookConfig;
use crate::kernel::worker::{self, Job, earliest};
#[cfg(doc)]
use crate::store::outbox::Outbox;
use crate::store::outbox::{NewEvent, OutboxError, settled_statements};
use crate::store::{Backend, SqlStore};

/// Delivery attempts, by `result`: `delivered`, `retry` (failed, will be
/// retried), `failed` (the last attempt failed: given up) (counter).
pub const DELIVERIES: &str = "parley_webhook_deliveries_total";

/// The first retry comes this long after a failed attempt; each further
/// one waits twice as long, up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(30);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(3600);
/// Attempts before an event is given up (`failed`): about 5.3 hours.
pub const MAX_ATTEMPTS: i64 = 12;
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a worker owns an event it is delivering before another worker
/// (another node) may take it over.
const LEASE: Duration = Duration::from_secs(60);
/// The longest the worker waits without a pass (server clock): events
/// other nodes stored are delivered within this.
pub const RESCAN_EVERY: Duration = Duration::from_secs(60);
/// Events per pass; settlements announced per statement.
const BATCH: i64 = 100;
/// [`BATCH`] as a count of rows.
const BATCH_ROWS: usize = BATCH as usize;

/// The `Parley-Signature` value of `body` at Unix second `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` — Stripe's scheme,
/// so receivers can verify it as they verify Stripe's.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    parley_billing::webhook::sign(body, secret, t)
}

/// How long to wait after `attempts` failed attempts (1, 2, …): 30 s
/// doubling, capped at 1 h; `None` once [`MAX_ATTEMPTS`] have failed.
pub fn backoff(attempts: i64) -> Option<Duration> {
    if attempts >= MAX_ATTEMPTS {
        return None;
    }
    let exp = u32::try_from(attempts.max(1) - 1).unwrap_or(u32::MAX).min(20);
    Some(RETRY_BASE.saturating_mul(1 << exp).min(RETRY_MAX))
}

/// Where events go, if anywhere.
#[derive(Debug, Clone)]
struct Target {
    url: String,
    secret: String,
}

/// The delivery worker of the outbox ([`crate::store::outbox`]). Share
/// as `Arc<Webhooks>`.
pub struct Webhooks {
    pool: AnyPool,
    backend: Backend,
    committer: Arc<dyn Committer>,
    clock: Arc<dyn Clock>,
    target: Option<Target>,
    client: reqwest::Client,
    wake: Wake,
}

/// Why the webhook worker cannot be built ([`Webhooks::new`]).
#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    /// A URL is configured without a secret to sign the deliveries with.
    #[error("PARLEY_WEBHOOK_SECRET: is required when PARLEY_WEBHOOK_URL is set")]
    MissingSecret,
    /// The HTTP client could not be built (e.g. no TLS backend).
    #[error("PARLEY_WEBHOOK_URL: cannot build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// [`Webhooks`] as the kernel's [`Job`].
struct Worker(Arc<Webhooks>);

impl Job for Worker {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        self.0.step(now).await
    }
}

impl Webhooks {
    /// The worker over `store`'s outbox, delivering to `config.url` if
    /// set; the `session.settled` events it stores are committed by the
    /// store's writer. It wakes when `wake` is notified (the store after
    /// committing session events, the [`Outbox`] after storing one).
    ///
    /// # Errors
    ///
    /// [`WebhooksError`] if a URL is set without a secret, or the HTTP
    /// client cannot be built.
    pub fn new(
        store: &SqlStore,
        clock: Arc<dyn Clock>,
        config: &WebhookConfig,
        wake: Wake,
    ) -> Result<Arc<Webhooks>, WebhooksError> {
        let target = match (&config.url, &config.secret) {
            (Some(url), Some(secret)) => Some(Target { url: url.clone(), secret: secret.clone() }),
            (Some(_), None) => return Err(WebhooksError::MissingSecret),
            (None, _) => None,
        };
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("parley-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(WebhooksError::Client)?;
        if target.is_none() {
            tracing::info!("PARLEY_WEBHOOK_URL is not set: webhook events are stored but not delivered");
        }
        let (pool, backend) = (store.pool(), store.backend());
        let committer: Arc<dyn Committer> = Arc::new(store.clone());
        Ok(Arc::new(Webhooks { pool, backend, committer, clock, target, client, wake }))
    }

    /// Whether events are delivered (a URL is configured).
    pub fn delivering(&self) -> bool {
        self.target.is_some()
    }

    /// The worker until `shutdown` resolves: a deadline-driven [`Job`]
    /// woken by the outbox (an event was stored) and by billing (settlements
    /// finished, to announce), by the server clock
    /// reaching the next retry, and at the latest [`RESCAN_EVERY`] later
    /// (events other nodes stored).
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) {
        let (clock, wake) = (self.clock.clone(), self.wake.clone());
        worker::run(Worker(self), clock, wake, shutdown).await;
    }

    /// One step of the worker at `now`: a pass, then the next deadline.
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        if let Err(e) = self.pass().await {
            tracing::error!(error = %e, "webhook outbox pass failed");
        }
        let next = match self.next_due().await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox: cannot read the next retry");
                None
            }
        };
        earliest(next, Some(now.plus(RESCAN_EVERY)))
    }

    /// One pass: stores `session.settled` for settlements finished since
    /// the last pass, then delivers every event due now. Returns how many
    /// deliveries were attempted.
    pub async fn pass(&self) -> Result<usize, OutboxError> {
        self.announce_settlements().await?;
        match &self.target {
            Some(target) => self.deliver_due(target).await,
            None => Ok(0),
        }
    }

    /// The earliest retry time of a pending event, when delivering.
    async fn next_due(&self) -> Result<Option<Timestamp>, OutboxError> {
        if self.target.is_none() {
            return Ok(None);
        }
        let row = sqlx::query(
            "SELECT CAST(MIN(next_attempt_ms) AS BIGINT) AS next FROM webhook_outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        let next: Option<i64> = row.try_get("next")?;
        Ok(next.map(Timestamp::from_unix_millis))
    }

    /// `session.settled` for each settlement billing finished (done or
    /// failed) and not yet announced, [`BATCH`] at a time until fewer are
    /// left (wakes that came while a pass ran are one pass, which may find
    /// more than a batch).
    async fn announce_settlements(&self) -> Result<(), OutboxError> {
        while self.announce_batch().await? == BATCH_ROWS {}
        Ok(())
    }

    /// Up to [`BATCH`] finished settlements not yet announced: one scan
    /// (which also sums each one's ledger), then their events and the
    /// marks `announced` committed together through the store's writer
    /// (`Committer`: in the transaction of whatever else is being written,
    /// not a commit of their own): one multi-row insert and one update.
    /// The event's dedupe key (`session.settled:<session>`) keeps it to one
    /// per session, and the mark only sets what is unset, so passes that
    /// race (several nodes, or the writer retrying the batch) announce each
    /// settlement once. Calls that never became a session (`unanswered`)
    /// are marked without an event. Returns how many settlements it read.
    async fn announce_batch(&self) -> Result<usize, OutboxError> {
        let rows = sqlx::query(
            "SELECT s.session_id, s.outcome, s.billable_secs, s.amount_minor, s.currency, s.status, s.last_error, \
             s.done_ms, s.decided_ms, COALESCE(x.seeker_id, h.seeker_id) AS seeker_id, \
             COALESCE(x.consultant_id, h.consultant_id) AS consultant_id, \
             (SELECT CAST(SUM(l.amount_minor) AS BIGINT) FROM ledger l \
              WHERE l.session_id = s.session_id AND l.kind = 'capture') AS captured_minor, \
             (SELECT CAST(SUM(l.amount_minor) AS BIGINT) FROM ledger l \
              WHERE l.session_id = s.session_id AND l.kind = 'fee') AS fee_minor, \
             (SELECT CAST(SUM(l.amount_minor) AS BIGINT) FROM ledger l \
              WHERE l.session_id = s.session_id AND l.kind = 'earnings') AS earnings_minor, \
             (SELECT MIN(l.currency) FROM ledger l \
              WHERE l.session_id = s.session_id AND l.kind IN ('capture', 'fee', 'earnings')) AS ledger_currency \
             FROM settlements s LEFT JOIN sessions x ON x.id = s.session_id LEFT JOIN holds h ON h.session_id = s.session_id \
             WHERE s.announced = 0 AND s.status IN ('done', 'failed') ORDER BY s.done_ms, s.session_id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let read = rows.len();
        if read == 0 {
            return Ok(0);
        }
        let mut marked = Vec::with_capacity(read);
        let mut events = Vec::with_capacity(rows.len());
        for row in rows {
            let sid: String = row.try_get("session_id")?;
            match settled_event(&row) {
                Ok(Some(event)) => events.push(event),
                Ok(None) => {}
                Err(e) => tracing::error!(session_id = %sid, error = %e, "cannot build session.settled; not announced"),
            }
            marked.push(sid);
        }
        let stored = events.len();
        let done = self.committer.commit(settled_statements(self.backend, &events, marked)).await?;
        if stored > 0 && done.first().is_some_and(|d| d.rows_affected > 0) {
            self.wake.wake();
        }
        Ok(read)
    }

    /// Delivers every pending event due now, each claimed with a lease first.
    async fn deliver_due(&self, target: &Target) -> Result<usize, OutboxError> {
        let now = self.clock.now().unix_millis();
        let due = sqlx::query(
            "SELECT id FROM webhook_outbox WHERE status = 'pending' AND next_attempt_ms <= $1 \
             ORDER BY next_attempt_ms, id LIMIT $2",
        )
        .bind(now)
        .bind(BATCH)
        .fetch_all(&self.pool)
        .await?;
        let mut attempted = 0;
        for row in due {
            let id: String = row.try_get("id")?;
            let started = self.clock.now();
            let lease = started.plus(LEASE).unix_millis();
            let claimed = sqlx::query(
                "UPDATE webhook_outbox SET next_attempt_ms = $3 WHERE id = $1 AND status = 'pending' \
                 AND next_attempt_ms <= $2",
            )
            .bind(&id)
            .bind(started.unix_millis())
            .bind(lease)
            .execute(&self.pool)
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            let row = sqlx::query("SELECT type, body, attempts FROM webhook_outbox WHERE id = $1")
                .bind(&id)
                .fetch_one(&self.pool)
                .await?;
            let body: String = row.try_get("body")?;
            let event_type: String = row.try_get("type")?;
            let attempts = row.try_get::<i64, _>("attempts")? + 1;
            attempted += 1;
            let outcome = self.post(target, &id, body, started).await;
            self.record(&id, &event_type, attempts, started, outcome).await?;
        }
        Ok(attempted)
    }

    /// One attempt: the HTTP status, or why there was none.
    async fn post(&self, target: &Target, id: &str, body: String, at: Timestamp) -> Result<u16, String> {
        let signature = sign(&target.secret, at.unix_secs(), body.as_bytes());
        let response = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, id)
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                format!("request {kind}: {e}")
            })?;
        Ok(response.status().as_u16())
    }

    /// Stores the outcome of attempt number `attempts`, begun at `started`.
    async fn record(
        &self,
        id: &str,
        event_type: &str,
        attempts: i64,
        started: Timestamp,
        outcome: Result<u16, String>,
    ) -> Result<(), OutboxError> {
        let (status, error) = match outcome {
            Ok(code) if (200..300).contains(&code) => {
                sqlx::query(
                    "UPDATE webhook_outbox SET status = 'delivered', attempts = $2, last_status = $3, \
                     last_error = NULL, delivered_ms = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(attempts)
                .bind(i64::from(code))
                .bind(self.clock.now().unix_millis())
                .execute(&self.pool)
                .await?;
                metrics::counter!(DELIVERIES, "result" => "delivered").increment(1);
                return Ok(());
            }
            Ok(code) => (Some(i64::from(code)), format!("HTTP {code}")),
            Err(e) => (None, e),
        };
        match backoff(attempts) {
            Some(delay) => {
                metrics::counter!(DELIVERIES, "result" => "retry").increment(1);
                tracing::warn!(event_id = id, event_type, attempts, error = %error, retry_in = ?delay, "webhook delivery failed; will retry");
                sqlx::query(
                    "UPDATE webhook_outbox SET attempts = $2, next_attempt_ms = $3, last_status = $4, last_error = $5 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(attempts)
                // From the attempt's start: the schedule does not drift with slow receivers.
                .bind(started.plus(delay).unix_millis())
                .bind(status)
                .bind(&error)
                .execute(&self.pool)
                .await?;
            }
            None => {
                metrics::counter!(DELIVERIES, "result" => "failed").increment(1);
                tracing::error!(event_id = id, event_type, attempts, error = %error, "webhook delivery failed for good; giving up");
                sqlx::query(
                    "UPDATE webhook_outbox SET status = 'failed', attempts = $2, last_status = $3, last_error = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(attempts)
                .bind(status)
                .bind(&error)
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }
}

/// The `session.settled` event of a finished settlement row, or `None` for
/// a call that never became a session.
fn settled_event(row: &sqlx::any::AnyRow) -> Result<Option<NewEvent>, OutboxError> {
    let sid: String = row.try_get("session_id")?;
    let outcome = match row.try_get::<String, _>("outcome")?.as_str() {
        "charged" => Outcome::Charged,
        "free" => Outcome::Free,
        _ => return Ok(None),
    };
    let (Some(seeker), Some(consultant)) =
        (row.try_get::<Option<String>, _>("seeker_id")?, row.try_get::<Option<String>, _>("consultant_id")?)
    else {
        return Ok(None);
    };
    let bad = |e: parley_domain::IdError| OutboxError::Data(e.to_string());
    let currency =
        Currency::parse(&row.try_get::<String, _>("currency")?).map_err(|e| OutboxError::Data(e.to_string()))?;
    // Every entry of a session is in its hold's currency (B7).
    let ledger_currency = row
        .try_get::<Option<String>, _>("ledger_currency")?
        .map(|c| Currency::parse(&c).map_err(|e| OutboxError::Data(e.to_string())))
        .transpose()?;
    let sum = |column: &str| -> Result<Option<Money>, OutboxError> {
        let total: Option<i64> = row.try_get(column)?;
        Ok(total.zip(ledger_currency).map(|(minor, c)| Money::new(minor, c)))
    };
    let done: Option<i64> = row.try_get("done_ms")?;
    let settled_at = done.unwrap_or(row.try_get("decided_ms")?);
    let data = SessionSettledData {
        session_id: SessionId::parse(sid.clone()).map_err(bad)?,
        seeker_id: UserId::parse(seeker).map_err(bad)?,
        consultant_id: UserId::parse(consultant).map_err(bad)?,
        status: row.try_get("status")?,
        outcome,
        billable_secs: u64::try_from(row.try_get::<i64, _>("billable_secs")?).unwrap_or(0),
        amount: Money::new(row.try_get("amount_minor")?, currency),
        captured: sum("captured_minor")?,
        fee: sum("fee_minor")?,
        earnings: sum("earnings_minor")?,
        settled_at_ms: settled_at,
        error: row.try_get("last_error")?,
    };
    let key = format!("session.settled:{sid}");
    let at = Timestamp::from_unix_millis(settled_at);
    Ok(Some(NewEvent::new(WebhookEventType::SessionSettled, &data, at, Some(key))?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body_and_verifies_like_stripes() {
        let secret = "whsec-parley-test-secret-0123456789";
        let body = br#"{"id":"evt_1","type":"session.ended","created_ms":1,"data":{}}"#;
        let header = sign(secret, 1_700_000_000, body);
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(b"1700000000.");
        mac.update(body);
        let want = hex::encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("t=1700000000,v1={want}"));
        // A receiver's Stripe-style verification accepts it, within tolerance only.
        parley_billing::webhook::verify(body, &header, secret, 1_700_000_100, 300).unwrap();
        assert!(parley_billing::webhook::verify(body, &header, secret, 1_700_000_400, 300).is_err());
        assert!(
            parley_billing::webhook::verify(body, &header, "another-secret-another-secret-00", 1_700_000_000, 300)
                .is_err()
        );
        let tampered = br#"{"id":"evt_1","type":"session.ended","created_ms":2,"data":{}}"#;
        assert!(parley_billing::webhook::verify(tampered, &header, secret, 1_700_000_000, 300).is_err());
    }

    #[test]
    fn backoff_doubles_from_30_s_caps_at_an_hour_and_gives_up_after_12_attempts() {
        let secs: Vec<u64> = (1..MAX_ATTEMPTS).map(|n| backoff(n).unwrap().as_secs()).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600, 3600]);
        assert_eq!(backoff(MAX_ATTEMPTS), None);
        assert_eq!(backoff(100), None);
        let total: u64 = secs.iter().sum();
        assert!((5 * 3600..6 * 3600).contains(&total), "retries span {total} s");
    }
}
