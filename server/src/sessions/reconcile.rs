//! Reconciliation of the ledger with the payment provider (issue 13): what
//! `parley reconcile` prints and the server checks every
//! [`RECONCILE_INTERVAL`] on its clock, with the gauge [`FINDINGS`] and a
//! `reconcile.findings` webhook event when something is found.
//!
//! [`check`] lists ([`ReconcileFindingKind`]):
//! - `orphan_hold`: a hold `held` whose session is not open, that no
//!   `confirmed`/`held` booking owns under that session id, with no pending
//!   settlement, older than [`ORPHAN_HOLD_AGE`]. The orphan sweep releases
//!   holds of calls that never became sessions after
//!   [`parley_billing::service::ORPHAN_AFTER`]; one still held at twice that
//!   age escaped it. A booking's hold placed before its room opens is owned
//!   by its confirmed booking; one left on a session its booking moved away
//!   from (a reschedule) is an orphan at once, not only when its old room
//!   would have opened.
//! - `ledger_without_provider_object`: a ledger row of a session that has no
//!   hold with a payment intent, or a hold, ledger row or paid promotion
//!   whose intent the provider answers `resource_missing` for.
//! - `provider_object_without_ledger` (sandbox only: Stripe's intents are not
//!   listed): an intent not `canceled`, older than [`INTENT_GRACE`], that no
//!   hold or promotion purchase records.
//! - `provider_state_mismatch`: a hold whose status disagrees with its
//!   intent's (`held` ↔ `requires_capture`, `captured` ↔ `succeeded` with
//!   `amount_received` = the ledger's capture, `released` ↔ `canceled`), a
//!   paid promotion not captured in full, and (sandbox) an intent whose
//!   `amount_refunded` differs from the ledger's refunds. Sessions whose
//!   settlement is pending are in flight and not judged.
//! - `capture_split` / `refund_split`: per session and currency, capture ≠
//!   fee + earnings, or refunds + lost chargebacks ≠ earnings reversals +
//!   fee reversals (B7, D6).
//!
//! Provider lookups are limited to objects touched in the last
//! [`LOOKBACK`]; the ledger's own sums are checked over all of it.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parley_billing::{IntentStatus, PaymentProvider, ProviderError};
use parley_domain::protocol::rest::{ReconcileFinding, ReconcileFindingKind, ReconcileFindingsData, WebhookEventType};
use parley_domain::{Clock, Timestamp};
use sqlx::{AnyPool, Row};

use crate::kernel::worker::{self, Job};
use crate::store::outbox::Outbox;

/// Gauge of the last check's findings, by `kind` (every kind is set, 0
/// when none).
pub const FINDINGS: &str = "parley_reconcile_findings";

/// Time between the server's checks (server clock).
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(3600);

/// A hold still authorised and owned by nothing at this age is an orphan:
/// twice the orphan sweep's age (the sweep runs once a minute).
pub const ORPHAN_HOLD_AGE: Duration = Duration::from_secs(2 * parley_billing::service::ORPHAN_AFTER.as_secs());

/// A sandbox intent younger than this may be waiting for its hold row
/// (written right after the provider answers).
pub const INTENT_GRACE: Duration = Duration::from_secs(60);

/// Provider objects touched longer ago than this are not looked up again.
pub const LOOKBACK: Duration = Duration::from_secs(35 * 24 * 3600);

/// At most this many findings go into one `reconcile.findings` event.
pub const MAX_EVENT_FINDINGS: usize = 100;

/// Why a check could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The database failed.
    #[error("reconcile: database: {0}")]
    Db(#[from] sqlx::Error),
    /// The provider could not answer (other than `resource_missing`).
    #[error("reconcile: provider: {0}")]
    Provider(#[from] ProviderError),
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn finding(
    kind: ReconcileFindingKind,
    session: Option<&str>,
    intent: Option<&str>,
    detail: String,
) -> ReconcileFinding {
    ReconcileFinding { kind, session_id: session.map(str::to_owned), intent_id: intent.map(str::to_owned), detail }
}

/// Compares the ledger (holds, ledger, settlements, promotion purchases)
/// with `provider`'s state as of `now`; see the module doc for what is
/// listed. Findings are in the order of the checks, each check's oldest
/// first. Errors: the database, or a provider error other than
/// `resource_missing` (then nothing is concluded).
pub async fn check(
    pool: &AnyPool,
    provider: &dyn PaymentProvider,
    now: Timestamp,
) -> Result<ReconcileFindingsData, ReconcileError> {
    use ReconcileFindingKind::*;
    let now_ms = now.unix_millis();
    let mut found = Vec::new();

    // Authorised holds owned by nothing live.
    let before = now_ms - ms(ORPHAN_HOLD_AGE);
    let rows = sqlx::query(
        "SELECT h.session_id, h.intent_id, h.amount_minor, h.currency, h.created_ms FROM holds h \
         WHERE h.status = 'held' AND h.created_ms < $1 \
         AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = h.session_id AND s.status = 'pending') \
         AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = h.session_id AND x.ended_ms IS NULL) \
         AND NOT EXISTS (SELECT 1 FROM bookings b WHERE b.session_id = h.session_id AND b.state IN ('confirmed', 'held')) \
         ORDER BY h.created_ms, h.session_id",
    )
    .bind(before)
    .fetch_all(pool)
    .await?;
    for r in rows {
        let sid: String = r.try_get("session_id")?;
        let intent: Option<String> = r.try_get("intent_id")?;
        let age = (now_ms - r.try_get::<i64, _>("created_ms")?) / 1000;
        let detail = format!(
            "hold of {} {} authorised {age} s ago; its session is not open, no booking owns it, no settlement is pending",
            r.try_get::<i64, _>("amount_minor")?,
            r.try_get::<String, _>("currency")?,
        );
        found.push(finding(OrphanHold, Some(&sid), intent.as_deref(), detail));
    }

    // Ledger rows of sessions without a payment intent.
    let rows = sqlx::query(
        "SELECT l.session_id, MIN(l.kind) AS kind, COUNT(*) AS n FROM ledger l WHERE l.kind <> 'promotion' \
         AND l.kind NOT LIKE 'escrow%' \
         AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = l.session_id AND h.intent_id IS NOT NULL) \
         GROUP BY l.session_id ORDER BY MIN(l.id)",
    )
    .fetch_all(pool)
    .await?;
    for r in rows {
        let sid: String = r.try_get("session_id")?;
        let detail = format!(
            "{} ledger row(s) (e.g. {}) but no hold with a payment intent",
            r.try_get::<i64, _>("n")?,
            r.try_get::<String, _>("kind")?
        );
        found.push(finding(LedgerWithoutProviderObject, Some(&sid), None, detail));
    }

    // The provider's view of every intent the ledger names lately.
    let since = now_ms - ms(LOOKBACK);
    let pending: BTreeSet<String> = sqlx::query("SELECT session_id FROM settlements WHERE status = 'pending'")
        .fetch_all(pool)
        .await?
        .iter()
        .map(|r| r.try_get("session_id"))
        .collect::<Result<_, _>>()?;
    let sums = ledger_sums(pool).await?;
    let holds = sqlx::query(
        "SELECT session_id, intent_id, status FROM holds WHERE intent_id IS NOT NULL AND updated_ms >= $1 \
         ORDER BY created_ms, session_id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut looked_up = BTreeSet::new();
    for r in holds {
        let sid: String = r.try_get("session_id")?;
        let intent_id: String = r.try_get("intent_id")?;
        let status: String = r.try_get("status")?;
        looked_up.insert(intent_id.clone());
        let Some(intent) = lookup(provider, &intent_id).await? else {
            let detail = format!("hold `{status}` names intent {intent_id}, which the provider does not know");
            found.push(finding(LedgerWithoutProviderObject, Some(&sid), Some(&intent_id), detail));
            continue;
        };
        if pending.contains(&sid) {
            continue; // being settled right now
        }
        let captured = sums.get(&sid).map_or(0, |s| s.capture);
        let agrees = match status.as_str() {
            "held" => intent.status == IntentStatus::RequiresCapture,
            "captured" => intent.status == IntentStatus::Succeeded && intent.amount_received == captured,
            "released" => intent.status == IntentStatus::Canceled,
            // Lapsed (B6): canceled by the provider, or past its validity here.
            "expired" => matches!(intent.status, IntentStatus::Canceled | IntentStatus::RequiresCapture),
            "requires_action" => matches!(intent.status, IntentStatus::Canceled | IntentStatus::RequiresAction),
            _ => true,
        };
        if !agrees {
            let detail = format!(
                "hold `{status}` (ledger captured {captured}) but the provider's intent is `{}` (received {})",
                intent.status.as_str(),
                intent.amount_received
            );
            found.push(finding(ProviderStateMismatch, Some(&sid), Some(&intent_id), detail));
        }
    }
    let promos = sqlx::query(
        "SELECT id, intent_id, amount_minor FROM promotion_purchases WHERE status = 'paid' AND intent_id IS NOT NULL \
         AND created_ms >= $1 ORDER BY created_ms, id",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    for r in promos {
        let id: String = r.try_get("id")?;
        let intent_id: String = r.try_get("intent_id")?;
        let amount: i64 = r.try_get("amount_minor")?;
        looked_up.insert(intent_id.clone());
        match lookup(provider, &intent_id).await? {
            None => {
                let detail = format!("paid promotion names intent {intent_id}, which the provider does not know");
                found.push(finding(LedgerWithoutProviderObject, Some(&id), Some(&intent_id), detail));
            }
            Some(i) if i.status != IntentStatus::Succeeded || i.amount_received != amount => {
                let detail = format!(
                    "paid promotion of {amount} but the provider's intent is `{}` (received {})",
                    i.status.as_str(),
                    i.amount_received
                );
                found.push(finding(ProviderStateMismatch, Some(&id), Some(&intent_id), detail));
            }
            Some(_) => {}
        }
    }
    let refs = sqlx::query(
        "SELECT session_id, provider_ref, MIN(id) AS first FROM ledger WHERE provider_ref LIKE 'pi_%' AND at_ms >= $1 \
         GROUP BY session_id, provider_ref ORDER BY MIN(id)",
    )
    .bind(since)
    .fetch_all(pool)
    .await?;
    for r in refs {
        let intent_id: String = r.try_get("provider_ref")?;
        if !looked_up.insert(intent_id.clone()) {
            continue;
        }
        if lookup(provider, &intent_id).await?.is_none() {
            let sid: String = r.try_get("session_id")?;
            let detail = format!("ledger rows name intent {intent_id}, which the provider does not know");
            found.push(finding(LedgerWithoutProviderObject, Some(&sid), Some(&intent_id), detail));
        }
    }

    if provider.name() == "sandbox" {
        // Intents nobody records.
        let rows = sqlx::query(
            "SELECT i.id, i.status, i.amount_minor, i.amount_received, i.currency FROM sandbox_intents i \
             WHERE i.status <> 'canceled' AND i.created_ms < $1 \
             AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.intent_id = i.id) \
             AND NOT EXISTS (SELECT 1 FROM promotion_purchases p WHERE p.intent_id = i.id) \
             AND NOT EXISTS (SELECT 1 FROM engagements e WHERE e.intent_id = i.id) \
             ORDER BY i.created_ms, i.id",
        )
        .bind(now_ms - ms(INTENT_GRACE))
        .fetch_all(pool)
        .await?;
        for r in rows {
            let id: String = r.try_get("id")?;
            let detail = format!(
                "intent `{}` of {} {} (received {}) that no hold or promotion records",
                r.try_get::<String, _>("status")?,
                r.try_get::<i64, _>("amount_minor")?,
                r.try_get::<String, _>("currency")?,
                r.try_get::<i64, _>("amount_received")?,
            );
            found.push(finding(ProviderObjectWithoutLedger, None, Some(&id), detail));
        }
        // Refunded there = refunded here.
        let rows = sqlx::query(
            "SELECT h.session_id, i.id, i.amount_refunded FROM holds h JOIN sandbox_intents i ON i.id = h.intent_id \
             ORDER BY h.created_ms, h.session_id",
        )
        .fetch_all(pool)
        .await?;
        for r in rows {
            let sid: String = r.try_get("session_id")?;
            let there: i64 = r.try_get("amount_refunded")?;
            let here = sums.get(&sid).map_or(0, |s| s.refund);
            if there != here {
                let id: String = r.try_get("id")?;
                let detail = format!("the provider refunded {there}, the ledger records {here}");
                found.push(finding(ProviderStateMismatch, Some(&sid), Some(&id), detail));
            }
        }
    }

    // Escrow (E8).
    found.extend(crate::engagements::reconcile::check(pool, provider.name() == "sandbox").await?);

    // The ledger's own sums (B7).
    for (sid, s) in &sums {
        if s.capture != s.fee + s.earnings {
            let detail = format!(
                "captured {} {} but fee {} + earnings {} = {}",
                s.capture,
                s.currency,
                s.fee,
                s.earnings,
                s.fee + s.earnings
            );
            found.push(finding(CaptureSplit, Some(sid), None, detail));
        }
        if s.refund + s.chargeback != s.reversal {
            let detail = format!(
                "refunded {} and lost {} in chargebacks ({}) but reversed {} (earnings + fee reversals)",
                s.refund, s.chargeback, s.currency, s.reversal
            );
            found.push(finding(RefundSplit, Some(sid), None, detail));
        }
    }

    Ok(ReconcileFindingsData {
        checked_at_ms: now_ms,
        provider: provider.name().to_owned(),
        total: found.len() as u64,
        findings: found,
    })
}

/// One session's ledger sums (minor units).
#[derive(Debug, Default)]
struct Sums {
    currency: String,
    capture: i64,
    fee: i64,
    earnings: i64,
    refund: i64,
    /// Lost card disputes (D6): reversed like refunds.
    chargeback: i64,
    reversal: i64,
}

async fn ledger_sums(pool: &AnyPool) -> Result<BTreeMap<String, Sums>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT session_id, MIN(currency) AS currency, \
         CAST(SUM(CASE WHEN kind = 'capture' THEN amount_minor ELSE 0 END) AS BIGINT) AS capture, \
         CAST(SUM(CASE WHEN kind = 'fee' THEN amount_minor ELSE 0 END) AS BIGINT) AS fee, \
         CAST(SUM(CASE WHEN kind = 'earnings' THEN amount_minor ELSE 0 END) AS BIGINT) AS earnings, \
         CAST(SUM(CASE WHEN kind = 'refund' THEN amount_minor ELSE 0 END) AS BIGINT) AS refund, \
         CAST(SUM(CASE WHEN kind = 'chargeback' THEN amount_minor ELSE 0 END) AS BIGINT) AS chargeback, \
         CAST(SUM(CASE WHEN kind IN ('earnings_reversal', 'fee_reversal') THEN amount_minor ELSE 0 END) AS BIGINT) AS reversal \
         FROM ledger WHERE kind IN ('capture', 'fee', 'earnings', 'refund', 'chargeback', 'earnings_reversal', 'fee_reversal') \
         GROUP BY session_id",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("session_id")?,
                Sums {
                    currency: r.try_get("currency")?,
                    capture: r.try_get("capture")?,
                    fee: r.try_get("fee")?,
                    earnings: r.try_get("earnings")?,
                    refund: r.try_get("refund")?,
                    chargeback: r.try_get("chargeback")?,
                    reversal: r.try_get("reversal")?,
                },
            ))
        })
        .collect()
}

/// The provider's intent `id`; `None` if it answers `resource_missing`.
async fn lookup(provider: &dyn PaymentProvider, id: &str) -> Result<Option<parley_billing::Intent>, ReconcileError> {
    match provider.intent(id).await {
        Ok(i) => Ok(Some(i)),
        Err(ProviderError::Rejected { code, .. }) if code == "resource_missing" => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The report as text for the operator: one line per finding, then a
/// summary by kind.
pub fn render(report: &ReconcileFindingsData) -> String {
    use std::fmt::Write;
    let at = u64::try_from(report.checked_at_ms)
        .map(|ms| humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string())
        .unwrap_or_else(|_| format!("{} ms", report.checked_at_ms));
    let mut out = String::new();
    if report.findings.is_empty() {
        let _ = writeln!(out, "reconcile ({}, as of {at}): the ledger and the provider agree", report.provider);
        return out;
    }
    let _ = writeln!(out, "reconcile ({}, as of {at}): {} finding(s)", report.provider, report.total);
    for f in &report.findings {
        let _ = write!(out, "  {:<31}", f.kind.as_str());
        if let Some(s) = &f.session_id {
            let _ = write!(out, " session={s}");
        }
        if let Some(i) = &f.intent_id {
            let _ = write!(out, " intent={i}");
        }
        let _ = writeln!(out, ": {}", f.detail);
    }
    for (kind, n) in counts(report) {
        if n > 0 {
            let _ = writeln!(out, "  {n} {}", kind.as_str());
        }
    }
    out
}

/// Findings by kind, every kind present.
pub fn counts(report: &ReconcileFindingsData) -> BTreeMap<ReconcileFindingKind, u64> {
    let mut by: BTreeMap<_, _> = ReconcileFindingKind::ALL.iter().map(|k| (*k, 0)).collect();
    for f in &report.findings {
        *by.entry(f.kind).or_default() += 1;
    }
    by
}

/// Publishes a check: sets the gauge [`FINDINGS`] for every kind, and when
/// something was found logs it and emits a `reconcile.findings` webhook
/// event (at most [`MAX_EVENT_FINDINGS`] findings, `total` counts all), at
/// most one per clock hour (every node of a cluster checks; the first
/// node's event of the hour is the one sent).
pub async fn publish(report: &ReconcileFindingsData, webhooks: &Outbox) {
    for (kind, n) in counts(report) {
        metrics::gauge!(FINDINGS, "kind" => kind.as_str()).set(n as f64);
    }
    if report.findings.is_empty() {
        return;
    }
    tracing::error!(findings = report.total, report = %render(report), "reconcile: the ledger and the provider disagree");
    let mut data = report.clone();
    data.findings.truncate(MAX_EVENT_FINDINGS);
    // One event per hour of server time, however many nodes check.
    let hour = report.checked_at_ms.div_euclid(ms(RECONCILE_INTERVAL));
    let key = format!("reconcile.findings:{hour}");
    if let Err(e) = webhooks.emit_once(&key, WebhookEventType::ReconcileFindings, &data).await {
        tracing::error!(error = %e, "reconcile: cannot store the reconcile.findings event");
    }
}

/// The hourly reconciliation as a deadline-driven [`Job`]: the first
/// check runs [`RECONCILE_INTERVAL`] after start, then one every interval;
/// its findings are published ([`publish`]).
pub struct Reconcile {
    pool: AnyPool,
    provider: Arc<dyn PaymentProvider>,
    webhooks: Arc<Outbox>,
    started: AtomicBool,
}

impl Job for Reconcile {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        if self.started.swap(true, Ordering::Relaxed) {
            match check(&self.pool, self.provider.as_ref(), now).await {
                Ok(report) => publish(&report, &self.webhooks).await,
                Err(e) => tracing::error!(error = %e, "reconcile check failed"),
            }
        }
        Some(now.plus(RECONCILE_INTERVAL))
    }
}

/// Checks on `clock` every [`RECONCILE_INTERVAL`] (the first one an
/// interval after start) until `shutdown` resolves.
pub async fn run(
    pool: AnyPool,
    provider: Arc<dyn PaymentProvider>,
    clock: Arc<dyn Clock>,
    webhooks: Arc<Outbox>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let job = Reconcile { pool, provider, webhooks, started: AtomicBool::new(false) };
    // Nothing adds work to reconciliation but the clock: its wake is never notified.
    worker::run(job, clock, worker::Wake::new(), shutdown).await;
}
