//! The `sandbox` provider (DESIGN.md B8): the embedded default. It keeps
//! its PaymentIntents in the database and behaves like Stripe's test mode
//! for the test payment methods, with no network:
//!
//! | payment method | result |
//! |---|---|
//! | `pm_card_visa`, `pm_card_mastercard` | hold placed (`requires_capture`) |
//! | `pm_card_chargeDeclined` | declined, `generic_decline` |
//! | `pm_card_chargeDeclinedInsufficientFunds` | declined, `insufficient_funds` |
//! | `pm_card_authenticationRequired` | `requires_action` (3-D Secure) |
//! | anything else | rejected, `resource_missing` |
//!
//! Like Stripe (<https://docs.stripe.com/api/idempotent_requests>), a
//! repeated idempotency key with the same parameters returns the first
//! result, and with other parameters is refused (`idempotency_error`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::{Clock, Currency, Money, Timestamp};
use sqlx::{Any, AnyConnection, AnyPool, Row, Transaction};

use crate::commit::{Committer, Statement};
use crate::faults::Faults;
use crate::provider::{
    Account, AccountRequest, CaptureRequest, ChargeRequest, Charged, DisputeEvidence, DisputeState, HoldRequest,
    Intent, IntentStatus, MAX_EVIDENCE_CHARS, PaymentProvider, ProviderError, Refund, RefundRequest, Transfer,
    TransferRequest,
};
use keyed::Keyed;

mod keyed;

/// Card authorisations lapse after 7 days (DESIGN.md B6).
pub const HOLD_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The sandbox provider over the server's database.
#[derive(Clone)]
pub struct SandboxProvider {
    pool: AnyPool,
    /// Where its one-statement holds and cancellations are committed
    /// ([`keyed`]): with other writes, under load.
    commits: Arc<dyn Committer>,
    clock: Arc<dyn Clock>,
    faults: Faults,
}

fn db_err(e: sqlx::Error) -> ProviderError {
    ProviderError::Transient(format!("sandbox database: {e}"))
}

fn rejected(code: &str, message: impl Into<String>) -> ProviderError {
    ProviderError::Rejected { code: code.into(), message: message.into() }
}

/// An idempotent write, begun: either the stored outcome of an earlier
/// request with the same key, or an open transaction in which this request
/// has claimed the key and makes its effect.
enum Begun {
    Replay(Result<String, ProviderError>),
    Fresh(Transaction<'static, Any>),
}

/// A write whose effect ran first, ended by [`SandboxProvider::record`].
enum Recorded {
    /// Its outcome was stored and committed with its effect.
    Fresh,
    /// The key was recorded before: the effect was rolled back, this is
    /// the stored outcome.
    Replay(Result<String, ProviderError>),
}

impl SandboxProvider {
    /// A sandbox over `pool` (migrated by the server), reading `clock`,
    /// whose one-statement writes (a hold placed, a hold cancelled) are
    /// committed by `commits` (on the same database as `pool`).
    pub fn new(pool: AnyPool, commits: Arc<dyn Committer>, clock: Arc<dyn Clock>) -> Self {
        SandboxProvider { pool, commits, clock, faults: Faults::default() }
    }

    /// The same sandbox with crash points `faults` (tests of crash
    /// windows: `sandbox.hold`, `sandbox.capture`, `sandbox.cancel`,
    /// `sandbox.refund`, `sandbox.account`; see [`crate::faults`]).
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Begins a write under idempotency key `key` (Stripe's semantics): a
    /// replay with the same `request` fingerprint returns the stored outcome
    /// (an object id or an error), another fingerprint is refused. A fresh
    /// key is claimed by the first statement of a transaction, so two
    /// concurrent requests with one key run one after the other (PostgreSQL
    /// waits on the unique key, SQLite on its write lock) and the second
    /// replays the first's outcome: one effect.
    async fn begin(&self, key: &str, request: &str) -> Result<Begun, ProviderError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let claimed = sqlx::query(
            "INSERT INTO sandbox_idempotency (key, request, response) VALUES ($1, $2, '') ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(request)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if claimed.rows_affected() == 1 {
            return Ok(Begun::Fresh(tx));
        }
        drop(tx);
        self.replay(key, request).await.map(Begun::Replay)
    }

    /// The stored outcome of `key`, for a request with fingerprint
    /// `request`: `idempotency_error` if the key was used with another.
    async fn replay(&self, key: &str, request: &str) -> Result<Result<String, ProviderError>, ProviderError> {
        let row = sqlx::query("SELECT request, response FROM sandbox_idempotency WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(|| ProviderError::Transient(format!("idempotency key {key} vanished; retry")))?;
        let (req, resp): (String, String) = (row.get("request"), row.get("response"));
        if req != request {
            return Ok(Err(rejected(
                "idempotency_error",
                format!("Keys for idempotent requests can only be used with the same parameters ({key})"),
            )));
        }
        Ok(decode(&resp))
    }

    /// Ends a write whose effect ran first in `tx` (an effect whose first
    /// statement writes, or that writes nothing): stores `result` under
    /// `key` with one insert and commits it with the effect; one statement
    /// less than claiming the key first ([`Self::begin`]) and recording
    /// the outcome after ([`Self::finish`]). If `key` is recorded already
    /// (an earlier request, or a concurrent one: PostgreSQL waits on the
    /// unique key, SQLite on its write lock, taken by the effect's first
    /// write), the effect is rolled back and the stored outcome answered:
    /// one effect per key either way. A transient failure is not
    /// remembered. Crash point `point` fires before the commit of a fresh
    /// write: neither the effect nor its record is kept, as in
    /// [`Self::finish`]. Only for effects that write before they read: on
    /// SQLite a transaction that reads first cannot always take the write
    /// lock after another writer committed.
    async fn record(
        &self,
        mut tx: Transaction<'static, Any>,
        point: &str,
        key: &str,
        request: &str,
        result: &Result<String, ProviderError>,
    ) -> Result<Recorded, ProviderError> {
        if let Err(e @ ProviderError::Transient(_)) = result {
            return Err(e.clone());
        }
        let stored = sqlx::query(
            "INSERT INTO sandbox_idempotency (key, request, response) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(request)
        .bind(encode(result))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if stored.rows_affected() == 1 {
            if self.faults.fires(point) {
                drop(tx);
                return Err(ProviderError::Transient(format!("injected crash at {point}")));
            }
            tx.commit().await.map_err(db_err)?;
            return Ok(Recorded::Fresh);
        }
        drop(tx);
        self.replay(key, request).await.map(Recorded::Replay)
    }

    /// Ends a write begun by [`Self::begin`]: stores `result` under `key`
    /// and commits it together with the effect written in `tx`. A transient
    /// failure is not remembered (the transaction is rolled back, the retry
    /// runs again). Crash point `point` fires between the effect and the
    /// record: the transaction is abandoned as a killed process's would be.
    async fn finish(
        &self,
        mut tx: Transaction<'static, Any>,
        point: &str,
        key: &str,
        result: Result<String, ProviderError>,
    ) -> Result<String, ProviderError> {
        if matches!(result, Err(ProviderError::Transient(_))) {
            return result;
        }
        if self.faults.fires(point) {
            drop(tx);
            return Err(ProviderError::Transient(format!("injected crash at {point}")));
        }
        sqlx::query("UPDATE sandbox_idempotency SET response = $2 WHERE key = $1")
            .bind(key)
            .bind(encode(&result))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        result
    }

    async fn load_on(conn: &mut AnyConnection, id: &str) -> Result<Intent, ProviderError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {INTENT_COLUMNS} FROM sandbox_intents WHERE id = $1")))
                .bind(id)
                .fetch_optional(conn)
                .await
                .map_err(db_err)?
                .ok_or_else(|| rejected("resource_missing", format!("No such payment_intent: '{id}'")))?;
        Self::intent_from(&row)
    }

    /// An intent from a row of [`INTENT_COLUMNS`].
    fn intent_from(row: &sqlx::any::AnyRow) -> Result<Intent, ProviderError> {
        let status = IntentStatus::parse(row.get::<String, _>("status").as_str())
            .ok_or_else(|| ProviderError::Transient("bad stored status".into()))?;
        let currency = Currency::parse(&row.get::<String, _>("currency"))
            .map_err(|e| ProviderError::Transient(format!("bad stored currency: {e}")))?;
        let created = Timestamp::from_unix_millis(row.get("created_ms"));
        Ok(Intent {
            id: row.get("id"),
            status,
            amount: Money::new(row.get("amount_minor"), currency),
            amount_received: row.get("amount_received"),
            hold_expires_at: (status == IntentStatus::RequiresCapture).then(|| created.plus(HOLD_VALIDITY)),
        })
    }

    async fn load(&self, id: &str) -> Result<Intent, ProviderError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        Self::load_on(&mut conn, id).await
    }

    /// Moves intent `id` from one of `from` to `to` and returns it as it
    /// is now, in one statement; `None` if it was in none of `from`.
    async fn transition(
        conn: &mut AnyConnection,
        id: &str,
        from: &[IntentStatus],
        to: IntentStatus,
        set: &str,
    ) -> Result<Option<Intent>, ProviderError> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE sandbox_intents SET status = '{}'{set} WHERE id = $1 AND status IN ({}) RETURNING {INTENT_COLUMNS}",
            to.as_str(),
            allowed.join(", ")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await.map_err(db_err)?;
        row.as_ref().map(Self::intent_from).transpose()
    }
}

/// The statuses an intent can be cancelled from (Stripe: "cancel a
/// PaymentIntent").
const CANCELLABLE: [IntentStatus; 3] =
    [IntentStatus::RequiresCapture, IntentStatus::RequiresAction, IntentStatus::RequiresPaymentMethod];

/// The columns [`SandboxProvider::intent_from`] reads.
const INTENT_COLUMNS: &str = "id, status, amount_minor, currency, amount_received, created_ms";

fn encode(result: &Result<String, ProviderError>) -> String {
    match result {
        Ok(id) => serde_json::json!({ "ok": id }),
        Err(ProviderError::Declined { decline_code, message }) => {
            serde_json::json!({ "declined": { "code": decline_code, "message": message } })
        }
        Err(ProviderError::Rejected { code, message }) => {
            serde_json::json!({ "rejected": { "code": code, "message": message } })
        }
        Err(ProviderError::Transient(m)) => serde_json::json!({ "transient": m }),
    }
    .to_string()
}

fn decode(stored: &str) -> Result<String, ProviderError> {
    let v: serde_json::Value =
        serde_json::from_str(stored).map_err(|e| ProviderError::Transient(format!("bad stored response: {e}")))?;
    let text = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
    if let Some(id) = v["ok"].as_str() {
        Ok(id.to_owned())
    } else if v["declined"].is_object() {
        Err(ProviderError::Declined {
            decline_code: text(&v["declined"], "code"),
            message: text(&v["declined"], "message"),
        })
    } else if v["rejected"].is_object() {
        Err(rejected(&text(&v["rejected"], "code"), text(&v["rejected"], "message")))
    } else {
        Err(ProviderError::Transient(text(&v, "transient")))
    }
}

/// The charge of sandbox intent `pi_…`: `ch_…` with the same suffix.
pub fn intent_charge(intent_id: &str) -> String {
    format!("ch_{}", intent_id.strip_prefix("pi_").unwrap_or(intent_id))
}

/// The intent of sandbox charge `ch_…`.
fn charge_intent(charge_id: &str) -> Option<String> {
    charge_id.strip_prefix("ch_").map(|rest| format!("pi_{rest}"))
}

/// What the sandbox does with a hold on `payment_method` (the table of
/// the module doc): the new intent's status, or the card's refusal.
fn card_status(payment_method: &str) -> Result<IntentStatus, ProviderError> {
    match payment_method {
        "pm_card_visa" | "pm_card_mastercard" => Ok(IntentStatus::RequiresCapture),
        "pm_card_authenticationRequired" => Ok(IntentStatus::RequiresAction),
        "pm_card_chargeDeclined" => Err(ProviderError::Declined {
            decline_code: "generic_decline".into(),
            message: "Your card was declined.".into(),
        }),
        "pm_card_chargeDeclinedInsufficientFunds" => Err(ProviderError::Declined {
            decline_code: "insufficient_funds".into(),
            message: "Your card has insufficient funds.".into(),
        }),
        other => Err(rejected("resource_missing", format!("No such PaymentMethod: '{other}'"))),
    }
}

/// The insert of intent `id` in `status` for hold `req`, created at `now`;
/// with `fingerprint`, recorded under `req.idempotency_key` in the same
/// statement (a keyed write, [`keyed`]).
fn insert_intent(
    id: &str,
    status: IntentStatus,
    req: &HoldRequest,
    now: Timestamp,
    fingerprint: Option<&str>,
) -> Statement {
    Statement::insert(
        "sandbox_intents (id, status, amount_minor, currency, payment_method, destination, created_ms, last_key, \
         last_request)",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(req.amount.amount_minor)
    .bind(req.amount.currency.as_str())
    .bind(req.payment_method.as_str())
    .bind(req.destination.as_deref())
    .bind(now.unix_millis())
    .bind(fingerprint.map(|_| req.idempotency_key.as_str()))
    .bind(fingerprint)
}

/// The intent [`insert_intent`] inserts, as the provider answers it.
fn new_intent(id: String, status: IntentStatus, req: &HoldRequest, now: Timestamp) -> Intent {
    Intent {
        id,
        status,
        amount: req.amount,
        amount_received: 0,
        hold_expires_at: (status == IntentStatus::RequiresCapture).then(|| now.plus(HOLD_VALIDITY)),
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_sbx{}", uuid::Uuid::new_v4().simple())
}

/// Runs one idempotent write of `$sandbox` under `$key` with fingerprint
/// `$fp`: replays a stored outcome, or runs `$effect` (an expression using
/// the transaction's connection `$conn`) and commits it with its record.
macro_rules! idempotent {
    ($sandbox:expr, $point:literal, $key:expr, $fp:expr, |$conn:ident| $effect:expr) => {
        match $sandbox.begin($key, &$fp).await? {
            Begun::Replay(outcome) => outcome?,
            Begun::Fresh(mut tx) => {
                let result = {
                    let $conn: &mut AnyConnection = &mut tx;
                    $effect.await
                };
                $sandbox.finish(tx, $point, $key, result).await?
            }
        }
    };
}

/// An idempotent write of `$sandbox` whose `$effect` (using the
/// transaction's connection `$conn`) writes before it reads and returns the
/// intent it made or changed: the effect runs, then its record is stored
/// ([`SandboxProvider::record`]). A fresh write answers the effect's intent
/// without reading it back; a replay reads the stored intent.
macro_rules! effect_first {
    ($sandbox:expr, $point:literal, $key:expr, $fp:expr, |$conn:ident| $effect:expr) => {{
        let mut tx = $sandbox.pool.begin().await.map_err(db_err)?;
        let result: Result<Intent, ProviderError> = {
            let $conn: &mut AnyConnection = &mut tx;
            $effect.await
        };
        let outcome = result.as_ref().map(|intent| intent.id.clone()).map_err(Clone::clone);
        match $sandbox.record(tx, $point, $key, &$fp, &outcome).await? {
            Recorded::Fresh => result?,
            Recorded::Replay(stored) => $sandbox.load(&stored?).await?,
        }
    }};
}

impl SandboxProvider {
    /// A new intent for hold `req` in the caller's transaction (a charge's
    /// first step), or the card's refusal.
    async fn hold_effect(conn: &mut AnyConnection, req: &HoldRequest, now: Timestamp) -> Result<Intent, ProviderError> {
        let status = card_status(&req.payment_method)?;
        let id = new_id("pi");
        insert_intent(&id, status, req, now, None).run(conn).await.map_err(db_err)?;
        Ok(new_intent(id, status, req, now))
    }

    async fn capture_effect(
        conn: &mut AnyConnection,
        intent_id: &str,
        req: &CaptureRequest,
    ) -> Result<Intent, ProviderError> {
        let intent = Self::load_on(conn, intent_id).await?;
        if intent.status != IntentStatus::RequiresCapture {
            return Err(rejected(
                "payment_intent_unexpected_state",
                format!(
                    "This PaymentIntent could not be captured because it has a status of {}.",
                    intent.status.as_str()
                ),
            ));
        }
        if req.amount_to_capture <= 0 || req.amount_to_capture > intent.amount.amount_minor {
            return Err(rejected("amount_too_large", "amount_to_capture must be between 1 and amount_capturable"));
        }
        if let Some(fee) = req.application_fee_amount
            && !(0..=req.amount_to_capture).contains(&fee)
        {
            return Err(rejected("parameter_invalid_integer", "application_fee_amount exceeds the amount captured"));
        }
        let set = format!(
            ", amount_received = {}, fee_minor = {}",
            req.amount_to_capture,
            req.application_fee_amount.map_or("NULL".to_owned(), |f| f.to_string())
        );
        Self::transition(conn, intent_id, &[IntentStatus::RequiresCapture], IntentStatus::Succeeded, &set)
            .await?
            .ok_or_else(|| rejected("payment_intent_unexpected_state", "the PaymentIntent changed meanwhile"))
    }

    async fn release_effect(conn: &mut AnyConnection, intent_id: &str) -> Result<Intent, ProviderError> {
        match Self::transition(conn, intent_id, &CANCELLABLE, IntentStatus::Canceled, "").await? {
            Some(intent) => Ok(intent),
            None => {
                let intent = Self::load_on(conn, intent_id).await?;
                Err(rejected(
                    "payment_intent_unexpected_state",
                    format!(
                        "You cannot cancel this PaymentIntent because it has a status of {}.",
                        intent.status.as_str()
                    ),
                ))
            }
        }
    }

    async fn refund_effect(conn: &mut AnyConnection, req: &RefundRequest) -> Result<String, ProviderError> {
        let intent = Self::load_on(conn, &req.intent_id).await?;
        if intent.status != IntentStatus::Succeeded {
            return Err(rejected("charge_not_captured", "only captured payments can be refunded"));
        }
        // One statement checks and books the refund.
        let done = sqlx::query(
            "UPDATE sandbox_intents SET amount_refunded = amount_refunded + $2 \
             WHERE id = $1 AND $2 > 0 AND amount_refunded + $2 <= amount_received",
        )
        .bind(&req.intent_id)
        .bind(req.amount)
        .execute(conn)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            return Err(rejected("amount_too_large", "the refund exceeds what is left to refund"));
        }
        Ok(new_id("re"))
    }

    async fn charge_effect(
        conn: &mut AnyConnection,
        req: &ChargeRequest,
        now: Timestamp,
    ) -> Result<String, ProviderError> {
        let hold = HoldRequest {
            amount: req.amount,
            payment_method: req.payment_method.clone(),
            destination: None,
            description: req.description.clone(),
            metadata: req.metadata.clone(),
            idempotency_key: req.idempotency_key.clone(),
        };
        let id = Self::hold_effect(conn, &hold, now).await?.id;
        // Automatic capture: an authorised card is charged in full at once.
        let set = format!(", amount_received = {}", req.amount.amount_minor);
        Self::transition(conn, &id, &[IntentStatus::RequiresCapture], IntentStatus::Succeeded, &set).await?;
        Ok(id)
    }

    /// What charge `source` (`ch_…` of intent `pi_…`) has left to transfer:
    /// received − refunded − transferred (net of reversals).
    async fn source_left(conn: &mut AnyConnection, source: &str) -> Result<(i64, String), ProviderError> {
        let intent_id =
            charge_intent(source).ok_or_else(|| rejected("resource_missing", format!("No such charge: '{source}'")))?;
        let intent = Self::load_on(conn, &intent_id).await?;
        if intent.status != IntentStatus::Succeeded {
            return Err(rejected("resource_missing", format!("No such charge: '{source}'")));
        }
        let row = sqlx::query(
            "SELECT i.amount_received - i.amount_refunded - \
             (SELECT CAST(COALESCE(SUM(t.amount_minor - t.reversed_minor), 0) AS BIGINT) FROM sandbox_transfers t \
              WHERE t.source_transaction = $2) AS left_minor FROM sandbox_intents i WHERE i.id = $1",
        )
        .bind(&intent_id)
        .bind(source)
        .fetch_one(conn)
        .await
        .map_err(db_err)?;
        Ok((row.get("left_minor"), intent.amount.currency.as_str().to_owned()))
    }

    async fn transfer_effect(
        conn: &mut AnyConnection,
        req: &TransferRequest,
        now: Timestamp,
    ) -> Result<String, ProviderError> {
        if req.amount.amount_minor <= 0 {
            return Err(rejected("parameter_invalid_integer", "amount must be a positive integer"));
        }
        let known = sqlx::query("SELECT id FROM sandbox_accounts WHERE id = $1")
            .bind(&req.destination)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
        if known.is_none() {
            return Err(rejected("resource_missing", format!("No such destination: '{}'", req.destination)));
        }
        let (left, currency) = Self::source_left(conn, &req.source_transaction).await?;
        if currency != req.amount.currency.as_str() {
            return Err(rejected("parameter_invalid", "the transfer's currency differs from its source charge's"));
        }
        if req.amount.amount_minor > left {
            return Err(rejected(
                "balance_insufficient",
                format!("Insufficient funds: the source charge has {left} left, the transfer asks {}", req.amount),
            ));
        }
        let id = new_id("tr");
        sqlx::query(
            "INSERT INTO sandbox_transfers (id, source_transaction, destination, amount_minor, currency, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(&req.source_transaction)
        .bind(&req.destination)
        .bind(req.amount.amount_minor)
        .bind(req.amount.currency.as_str())
        .bind(now.unix_millis())
        .execute(conn)
        .await
        .map_err(db_err)?;
        Ok(id)
    }

    async fn reversal_effect(
        conn: &mut AnyConnection,
        transfer_id: &str,
        amount: i64,
    ) -> Result<String, ProviderError> {
        let done = sqlx::query(
            "UPDATE sandbox_transfers SET reversed_minor = reversed_minor + $2 \
             WHERE id = $1 AND $2 > 0 AND reversed_minor + $2 <= amount_minor",
        )
        .bind(transfer_id)
        .bind(amount)
        .execute(conn)
        .await
        .map_err(db_err)?;
        if done.rows_affected() != 1 {
            return Err(rejected("amount_too_large", "the reversal exceeds what is left of the transfer"));
        }
        Ok(transfer_id.to_owned())
    }

    async fn load_transfer(&self, id: &str) -> Result<Transfer, ProviderError> {
        let row = sqlx::query("SELECT amount_minor, currency, reversed_minor FROM sandbox_transfers WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .ok_or_else(|| rejected("resource_missing", format!("No such transfer: '{id}'")))?;
        let currency = Currency::parse(&row.get::<String, _>("currency"))
            .map_err(|e| ProviderError::Transient(format!("bad stored currency: {e}")))?;
        Ok(Transfer {
            id: id.to_owned(),
            amount: Money::new(row.get("amount_minor"), currency),
            amount_reversed: row.get("reversed_minor"),
        })
    }

    async fn account_effect(
        conn: &mut AnyConnection,
        req: &AccountRequest,
        now: Timestamp,
    ) -> Result<String, ProviderError> {
        let id = new_id("acct");
        sqlx::query("INSERT INTO sandbox_accounts (id, consultant_id, created_ms) VALUES ($1, $2, $3)")
            .bind(&id)
            .bind(&req.consultant_id)
            .bind(now.unix_millis())
            .execute(conn)
            .await
            .map_err(db_err)?;
        Ok(id)
    }
}

/// Every write (hold, capture, cancel, refund, account) makes its effect
/// and stores its idempotency record in one transaction, so a crash leaves
/// both or neither (issue 13): a retry after a crash runs the write again
/// instead of finding the effect without its record.
#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn name(&self) -> &'static str {
        "sandbox"
    }

    async fn place_hold(&self, req: &HoldRequest) -> Result<Intent, ProviderError> {
        if req.amount.amount_minor <= 0 {
            return Err(rejected("parameter_invalid_integer", "amount must be a positive integer"));
        }
        let fingerprint = format!(
            "hold|{}|{}|{}|{:?}",
            req.amount.amount_minor, req.amount.currency, req.payment_method, req.destination
        );
        let now = self.clock.now();
        let status = match card_status(&req.payment_method) {
            Ok(status) => status,
            // A refusal is recorded under the key too: a transaction with
            // no effect. Boxed, like the replay below: inline, its
            // transaction's futures would size every hold's future (1,848
            // bytes against 288), which each call being set up keeps while
            // its hold waits on the group commit (load-tests/README.md,
            // twenty-fifth run).
            Err(refusal) => {
                return Box::pin(async move {
                    Ok::<_, ProviderError>(effect_first!(
                        self,
                        "sandbox.hold",
                        &req.idempotency_key,
                        fingerprint,
                        |_conn| async { Err::<Intent, _>(refusal) }
                    ))
                })
                .await;
            }
        };
        // One statement: the intent and its record ([`keyed`]). The crash
        // point fires where a killed process would stop: before it.
        if self.faults.fires("sandbox.hold") {
            return Err(ProviderError::Transient("injected crash at sandbox.hold".into()));
        }
        match self.keyed_hold(req, status, &fingerprint, now).await? {
            Keyed::Fresh(intent) => Ok(intent),
            Keyed::Replay(stored) => Box::pin(self.load(&stored?)).await,
            Keyed::Unmatched => Err(ProviderError::Transient("a new intent matched nothing".into())),
        }
    }

    async fn capture(&self, intent_id: &str, req: &CaptureRequest) -> Result<Intent, ProviderError> {
        let fingerprint = format!("capture|{intent_id}|{}|{:?}", req.amount_to_capture, req.application_fee_amount);
        let id = idempotent!(self, "sandbox.capture", &req.idempotency_key, fingerprint, |conn| async {
            Self::capture_effect(conn, intent_id, req).await.map(|intent| intent.id)
        });
        self.load(&id).await
    }

    async fn release(&self, intent_id: &str, idempotency_key: &str) -> Result<Intent, ProviderError> {
        let fingerprint = format!("cancel|{intent_id}");
        if self.faults.fires("sandbox.cancel") {
            return Err(ProviderError::Transient("injected crash at sandbox.cancel".into()));
        }
        // One statement: the cancellation and its record ([`keyed`]). An
        // intent that cannot be cancelled (already cancelled by an earlier
        // request with this key, or captured) takes the transaction path,
        // which answers the stored outcome or records the refusal.
        match self.keyed_cancel(intent_id, &CANCELLABLE, idempotency_key, &fingerprint).await? {
            Keyed::Fresh(intent) => Ok(intent),
            Keyed::Replay(stored) => self.load(&stored?).await,
            Keyed::Unmatched => {
                Ok(effect_first!(self, "sandbox.cancel", idempotency_key, fingerprint, |conn| Self::release_effect(
                    conn, intent_id
                )))
            }
        }
    }

    async fn intent(&self, intent_id: &str) -> Result<Intent, ProviderError> {
        self.load(intent_id).await
    }

    async fn refund(&self, req: &RefundRequest) -> Result<Refund, ProviderError> {
        let fingerprint = format!("refund|{}|{}", req.intent_id, req.amount);
        let intent = self.load(&req.intent_id).await?;
        let id = idempotent!(self, "sandbox.refund", &req.idempotency_key, fingerprint, |conn| Self::refund_effect(
            conn, req
        ));
        Ok(Refund { id, amount: Money::new(req.amount, intent.amount.currency), status: "succeeded".into() })
    }

    /// The sandbox has no card network: the evidence is accepted (once per
    /// idempotency key) and the dispute is `under_review`.
    async fn submit_dispute_evidence(&self, evidence: &DisputeEvidence) -> Result<DisputeState, ProviderError> {
        if evidence.uncategorized_text.chars().count() > MAX_EVIDENCE_CHARS {
            return Err(rejected("parameter_invalid_string", "evidence exceeds 150000 characters"));
        }
        let fingerprint = format!("evidence|{}|{}", evidence.dispute_id, evidence.uncategorized_text.len());
        let id = idempotent!(self, "sandbox.evidence", &evidence.idempotency_key, fingerprint, |conn| async {
            let _ = conn;
            Ok::<String, ProviderError>(evidence.dispute_id.clone())
        });
        Ok(DisputeState { id, status: "under_review".into(), submission_count: 1 })
    }

    async fn charge(&self, req: &ChargeRequest) -> Result<Charged, ProviderError> {
        if req.amount.amount_minor <= 0 {
            return Err(rejected("parameter_invalid_integer", "amount must be a positive integer"));
        }
        let fingerprint = format!("charge|{}|{}|{}", req.amount.amount_minor, req.amount.currency, req.payment_method);
        let now = self.clock.now();
        let id = idempotent!(self, "sandbox.charge", &req.idempotency_key, fingerprint, |conn| {
            Self::charge_effect(conn, req, now)
        });
        let intent = self.load(&id).await?;
        let charge_id = (intent.status == IntentStatus::Succeeded).then(|| intent_charge(&id));
        Ok(Charged { intent, charge_id })
    }

    async fn transfer(&self, req: &TransferRequest) -> Result<Transfer, ProviderError> {
        let fingerprint = format!(
            "transfer|{}|{}|{}|{}",
            req.amount.amount_minor, req.amount.currency, req.destination, req.source_transaction
        );
        let now = self.clock.now();
        let id = idempotent!(self, "sandbox.transfer", &req.idempotency_key, fingerprint, |conn| {
            Self::transfer_effect(conn, req, now)
        });
        self.load_transfer(&id).await
    }

    async fn reverse_transfer(
        &self,
        transfer_id: &str,
        amount: i64,
        idempotency_key: &str,
    ) -> Result<Transfer, ProviderError> {
        let fingerprint = format!("reversal|{transfer_id}|{amount}");
        let id = idempotent!(self, "sandbox.reversal", idempotency_key, fingerprint, |conn| {
            Self::reversal_effect(conn, transfer_id, amount)
        });
        self.load_transfer(&id).await
    }

    async fn create_account(&self, req: &AccountRequest) -> Result<Account, ProviderError> {
        let fingerprint = format!("account|{}", req.consultant_id);
        let now = self.clock.now();
        let id = idempotent!(self, "sandbox.account", &req.idempotency_key, fingerprint, |conn| {
            Self::account_effect(conn, req, now)
        });
        // Sandbox accounts are ready at once.
        Ok(Account { id, charges_enabled: true, payouts_enabled: true, details_submitted: true })
    }

    async fn onboarding_link(
        &self,
        account_id: &str,
        _refresh: &str,
        return_url: &str,
    ) -> Result<String, ProviderError> {
        let known = sqlx::query("SELECT id FROM sandbox_accounts WHERE id = $1")
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        if known.is_none() {
            return Err(rejected("resource_missing", format!("No such account: '{account_id}'")));
        }
        // Nothing to fill in: the link leads straight back.
        Ok(format!("{return_url}{}sandbox_account={account_id}", if return_url.contains('?') { '&' } else { '?' }))
    }
}
