//! The settlement outbox (DESIGN.md B3, B4, B6): settlement decisions
//! stored with the session's end, carried out exactly once by a worker
//! that sleeps until the next one is due on the injected clock.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use parley_domain::clock::{Wake, run_worker};
use parley_domain::protocol::{Outcome, SessionBill};
use parley_domain::{Money, SessionId, Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::ledger::Entry;
use super::{Billing, BillingError, LEASE, ORPHAN_AFTER, SETTLEMENT_RETRIES, SETTLEMENTS, money};
use crate::commit::{Statement, numbered};
use crate::provider::CaptureRequest;

/// How often, at most, holds are swept for orphans (server time); also the
/// longest the outbox worker sleeps.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Settlements claimed at most per pass of the outbox worker.
const CLAIM_BATCH: i64 = 100;

/// Settlements of a pass carried out at once: their provider calls (a
/// capture or a release, each a round trip to Stripe) overlap, and the
/// records of their outcomes share commits ([`crate::commit`]).
const CARRY_OUT_AT_ONCE: usize = 16;

/// The settlement of a session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSettlement {
    /// `free`, `charged` or `unanswered`.
    pub outcome: String,
    /// Billable seconds.
    pub billable_secs: u64,
    /// Amount to capture.
    pub amount: Money,
    /// `pending`, `done`, `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    /// The last error, if an attempt failed.
    pub last_error: Option<String>,
}

/// Stores a settlement decision (B3) inside the caller's transaction; a
/// second decision for the same session is ignored. `reason` is the end
/// reason's wire name.
pub async fn insert_settlement(
    conn: &mut sqlx::AnyConnection,
    session_id: &SessionId,
    bill: &SessionBill,
    reason: &str,
    at: Timestamp,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, decided_ms, next_attempt_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (session_id) DO NOTHING",
    )
    .bind(session_id.as_str())
    .bind(bill.outcome.as_str())
    .bind(reason)
    .bind(i64::try_from(bill.billable_secs).unwrap_or(i64::MAX))
    .bind(bill.charge.amount_minor)
    .bind(bill.charge.currency.as_str())
    .bind(at.unix_millis())
    .execute(conn)
    .await
    .map(|_| ())
}

impl Billing {
    /// Wakes the outbox worker: a settlement was stored. (A hold placed
    /// needs no wake: it becomes an orphan [`ORPHAN_AFTER`] later, and the
    /// worker looks again within one sweep interval.)
    pub fn wake(&self) {
        self.wake.wake();
    }

    /// Has `wake` woken whenever the outbox finishes settlements (captured,
    /// released or failed for good), so whoever announces them (the
    /// server's `session.settled` webhook) needs no polling. Set once; a
    /// second call is ignored.
    pub fn on_settled(&self, wake: Wake) {
        let _ = self.settled.set(wake);
    }

    /// The outbox worker: carries out due settlements until `shutdown`
    /// resolves ([`run_worker`]). After each pass it sleeps on the injected
    /// clock until [`Billing::next_outbox_deadline`] (the next retry or
    /// lease expiry, the next orphaned hold), or until [`Billing::wake`].
    pub async fn run_outbox(self: Arc<Self>, shutdown: impl Future<Output = ()>) {
        let (clock, wake) = (Arc::clone(&self.clock), self.wake.clone());
        run_worker(clock, wake, shutdown, |now| {
            let billing = Arc::clone(&self);
            async move { billing.outbox_pass(now).await }
        })
        .await;
    }

    /// One pass of the worker at `now`; returns when the next is due.
    async fn outbox_pass(&self, now: Timestamp) -> Option<Timestamp> {
        if let Err(e) = self.settle_due().await {
            tracing::error!(error = %e, "settlement outbox pass failed");
        }
        match self.next_outbox_deadline(now).await {
            Ok(next) => Some(next),
            Err(e) => {
                tracing::error!(error = %e, "settlement outbox cannot read its next deadline");
                Some(now.plus(self.cfg.retry_base))
            }
        }
    }

    /// When the outbox has work next, as of `now`: the earliest pending
    /// settlement's attempt (a new one, a retry after its backoff, or a
    /// claim whose lease ran out), the moment the oldest unsettled hold
    /// without a session becomes an orphan (not before the sweep may run
    /// again), and at the latest one sweep interval from `now` (60 s of
    /// server time: settlements stored by other nodes are picked up).
    /// Never earlier than `now`.
    pub async fn next_outbox_deadline(&self, now: Timestamp) -> Result<Timestamp, BillingError> {
        let due: Option<i64> =
            sqlx::query("SELECT MIN(next_attempt_ms) AS due FROM settlements WHERE status = 'pending'")
                .fetch_one(&self.pool)
                .await?
                .try_get("due")?;
        let since: Option<i64> = sqlx::query(
            "SELECT MIN(CASE WHEN h.opens_ms IS NOT NULL AND h.opens_ms > h.created_ms THEN h.opens_ms \
             ELSE h.created_ms END) AS since FROM holds h WHERE h.status = 'held' \
             AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = h.session_id) \
             AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = h.session_id)",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("since")?;
        let last_sweep = *self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
        let orphan = since.map(|since| {
            // The sweep takes holds created strictly before now − ORPHAN_AFTER.
            let ripe = Timestamp::from_unix_millis(since).plus(ORPHAN_AFTER).plus(Duration::from_millis(1));
            last_sweep.map_or(ripe, |t| ripe.max(t.plus(SWEEP_EVERY)))
        });
        let latest = now.plus(SWEEP_EVERY);
        let next = [due.map(Timestamp::from_unix_millis), orphan].into_iter().flatten().fold(latest, Timestamp::min);
        Ok(next.max(now))
    }

    /// Carries out every settlement due now (at most [`CLAIM_BATCH`] per
    /// pass); returns how many were done (succeeded or failed for good) in
    /// this pass. The due settlements are claimed with one statement: each
    /// gets a lease ([`LEASE`] of server time) by moving its next attempt
    /// past it, so another worker (another node) skips it. Up to
    /// [`CARRY_OUT_AT_ONCE`] are carried out at once. A pass that has run
    /// for half the lease starts no more of its batch, leaving the rest to
    /// the next claim after their leases end, so no carry-out outlives its
    /// lease. A carry-out that fails (the database) does not stop the
    /// others; the pass answers the first such error.
    pub async fn settle_due(&self) -> Result<usize, BillingError> {
        let claimed_at = self.clock.now();
        let now = claimed_at.unix_millis();
        let lease = now + i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let due = sqlx::query(
            "UPDATE settlements SET next_attempt_ms = $2 WHERE status = 'pending' AND next_attempt_ms <= $1 \
             AND session_id IN (SELECT session_id FROM settlements WHERE status = 'pending' AND next_attempt_ms <= $1 \
             ORDER BY next_attempt_ms LIMIT $3) RETURNING session_id",
        )
        .bind(now)
        .bind(lease)
        .bind(CLAIM_BATCH)
        .fetch_all(&self.pool)
        .await?;
        self.sweep_orphan_holds().await?;
        let due = due
            .iter()
            .map(|row| Ok(SessionId::parse(row.try_get::<String, _>("session_id")?)?))
            .collect::<Result<Vec<_>, BillingError>>()?;
        let mut claimed = self.claimed(&due).await?;
        let carried: Vec<Result<bool, BillingError>> = futures_util::stream::iter(due)
            .map(|session_id| {
                let row = claimed.remove(session_id.as_str());
                async move {
                    if self.clock.now().since(claimed_at) >= LEASE / 2 {
                        return Ok(false);
                    }
                    self.carry_out(&session_id, row.ok_or(sqlx::Error::RowNotFound)?).await
                }
            })
            .buffer_unordered(CARRY_OUT_AT_ONCE)
            .collect()
            .await;
        let finished = carried.iter().filter(|c| matches!(c, Ok(true))).count();
        if finished > 0
            && let Some(wake) = self.settled.get()
        {
            wake.wake();
        }
        match carried.into_iter().find_map(Result::err) {
            Some(e) => Err(e),
            None => Ok(finished),
        }
    }

    /// Holds of calls that never became a session and were never released
    /// (the server that placed them died while they rang): released through
    /// the outbox, at most once a minute, for holds older than
    /// [`ORPHAN_AFTER`] (far beyond any ring); a booking's hold only once its
    /// room is that late to open.
    async fn sweep_orphan_holds(&self) -> Result<(), BillingError> {
        let now = self.clock.now();
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| now.since(t) < SWEEP_EVERY) {
                return Ok(());
            }
            *last = Some(now);
        }
        let before = now.unix_millis() - i64::try_from(ORPHAN_AFTER.as_millis()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "INSERT INTO settlements (session_id, outcome, reason, billable_secs, amount_minor, currency, decided_ms, next_attempt_ms) \
             SELECT h.session_id, 'unanswered', 'orphaned', 0, 0, h.currency, $2, $2 FROM holds h \
             WHERE h.status = 'held' AND h.created_ms < $1 AND (h.opens_ms IS NULL OR h.opens_ms < $1) \
             AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.session_id = h.session_id) \
             AND NOT EXISTS (SELECT 1 FROM sessions x WHERE x.id = h.session_id) \
             ON CONFLICT (session_id) DO NOTHING",
        )
        .bind(before)
        .bind(now.unix_millis())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() > 0 {
            tracing::warn!(holds = done.rows_affected(), "releasing holds of calls that never became sessions");
        }
        Ok(())
    }

    /// The claimed settlements of `sessions` with their holds, read in one
    /// statement (not one per carry-out), by session id. The claim's lease
    /// keeps every other worker from carrying them out; the decision and
    /// the hold's amount, intent and expiry are written once, before. A
    /// hold's status may still change under a claim (a provider's webhook
    /// marks it expired, B6): the provider then refuses the keyed capture
    /// or release, as it would have a moment after a read made just before.
    async fn claimed(&self, sessions: &[SessionId]) -> Result<HashMap<String, AnyRow>, BillingError> {
        if sessions.is_empty() {
            return Ok(HashMap::new());
        }
        let sql = format!(
            "SELECT s.session_id, s.outcome, s.amount_minor, s.currency, s.attempts, h.intent_id, \
             h.status AS hold_status, h.amount_minor AS hold_minor, h.currency AS hold_currency, h.destination, \
             h.expires_ms, h.seeker_id, h.consultant_id FROM settlements s LEFT JOIN holds h \
             ON h.session_id = s.session_id WHERE s.session_id IN ({})",
            numbered(sessions.len())
        );
        // Not kept prepared: each count of sessions is another text.
        let rows = sessions
            .iter()
            .fold(sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(false), |q, id| q.bind(id.as_str()))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(|row| Ok((row.try_get::<String, _>("session_id")?, row))).collect()
    }

    /// Carries out one claimed settlement, `s` its row as
    /// [`Billing::claimed`] read it; true when it is finished (done or
    /// failed for good), false when it will be retried.
    async fn carry_out(&self, session_id: &SessionId, s: AnyRow) -> Result<bool, BillingError> {
        let now = self.clock.now();
        let attempts: i64 = s.try_get("attempts")?;
        let hold_status: Option<String> = s.try_get("hold_status")?;
        let intent_id: Option<String> = s.try_get("intent_id")?;
        if hold_status.as_deref() == Some("expired") && s.try_get::<String, _>("outcome")? == Outcome::Charged.as_str()
        {
            // B6: the provider let the authorisation lapse; nothing to capture.
            self.finish(session_id, "failed", Some("the hold expired before capture (DESIGN.md B6)")).await?;
            return Ok(true);
        }
        if hold_status.as_deref() == Some("escrow") {
            // A package session: paid from its engagement, not a hold (E2).
            let outcome: String = s.try_get("outcome")?;
            return self.settle_from_escrow(session_id, &outcome, s.try_get("amount_minor")?).await;
        }
        let (Some("held"), Some(intent_id)) = (hold_status.as_deref(), intent_id) else {
            // No hold in place (a free consultant, or already settled).
            self.finish(session_id, "done", None).await?;
            return Ok(true);
        };
        let amount = money(&s, "amount_minor", "currency")?;
        let hold = money(&s, "hold_minor", "hold_currency")?;
        let seeker = UserId::parse(s.try_get::<String, _>("seeker_id")?)?;
        let consultant = UserId::parse(s.try_get::<String, _>("consultant_id")?)?;
        let destination: Option<String> = s.try_get("destination")?;
        let expires: Option<i64> = s.try_get("expires_ms")?;
        let outcome: String = s.try_get("outcome")?;
        let key = format!("settle:{session_id}");
        let capture = outcome == Outcome::Charged.as_str() && amount.amount_minor > 0;

        if capture && expires.is_some_and(|e| e <= now.unix_millis()) {
            // B6: an expired authorisation is never captured.
            self.set_hold_status(session_id, "expired").await?;
            self.finish(session_id, "failed", Some("the hold expired before capture (DESIGN.md B6)")).await?;
            return Ok(true);
        }
        let result = if capture {
            let amount = Money::new(amount.amount_minor.min(hold.amount_minor), hold.currency);
            let fee = amount.basis_points(self.cfg.commission_bps)?;
            let req = CaptureRequest {
                amount_to_capture: amount.amount_minor,
                application_fee_amount: destination.as_ref().map(|_| fee.amount_minor),
                idempotency_key: key,
            };
            match self.provider.capture(&intent_id, &req).await {
                Ok(_) => {
                    let earnings = Money::new(amount.amount_minor - fee.amount_minor, amount.currency);
                    let r = Some(intent_id.as_str());
                    // The capture's ledger rows, the hold's status and `done`
                    // commit together: no reader sees half a settlement.
                    let entry = Entry { session_id, seeker: &seeker, consultant: &consultant, at: now };
                    let mut writes = vec![
                        entry.statement("capture", "capture", amount, r),
                        entry.statement("fee", "fee", fee, r),
                        entry.statement("earnings", "earnings", earnings, r),
                    ];
                    let rest = hold.amount_minor - amount.amount_minor;
                    if rest > 0 {
                        writes.push(entry.statement("release", "release", Money::new(rest, hold.currency), r));
                    }
                    writes.extend(self.settled_on(session_id, "captured"));
                    self.commits.commit(writes).await?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        } else {
            match self.provider.release(&intent_id, &key).await {
                Ok(_) => {
                    // The hold's change to `released` books its ledger
                    // entry (trigger `holds_released`, migration 0018).
                    self.commits.commit(self.settled_on(session_id, "released").into()).await?;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(()) => {
                metrics::counter!(SETTLEMENTS, "outcome" => if capture { "captured" } else { "released" }).increment(1);
                Ok(true)
            }
            Err(e) if e.is_transient() => {
                metrics::counter!(SETTLEMENT_RETRIES).increment(1);
                let attempts = attempts + 1;
                let exp = u32::try_from(attempts - 1).unwrap_or(u32::MAX).min(20);
                let delay = self.cfg.retry_base.saturating_mul(1 << exp).min(self.cfg.retry_max);
                tracing::warn!(%session_id, attempts, error = %e, retry_in = ?delay, "settlement failed; will retry");
                sqlx::query(
                    "UPDATE settlements SET attempts = $2, next_attempt_ms = $3, last_error = $4 WHERE session_id = $1",
                )
                .bind(session_id.as_str())
                .bind(attempts)
                .bind(now.plus(delay).unix_millis())
                .bind(e.to_string())
                .execute(&self.pool)
                .await?;
                Ok(false)
            }
            Err(e) => {
                metrics::counter!(SETTLEMENTS, "outcome" => "failed").increment(1);
                tracing::error!(%session_id, error = %e, "settlement refused by the provider; needs attention");
                self.finish(session_id, "failed", Some(&e.to_string())).await?;
                Ok(true)
            }
        }
    }

    async fn finish(&self, session_id: &SessionId, status: &str, error: Option<&str>) -> Result<(), BillingError> {
        sqlx::query(
            "UPDATE settlements SET status = $2, attempts = attempts + 1, last_error = COALESCE($3, last_error), \
             done_ms = $4 WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .bind(status)
        .bind(error)
        .bind(self.clock.now().unix_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The statements that mark the hold `hold_status` and the settlement
    /// `done`, to be committed together (with the capture's ledger rows).
    fn settled_on(&self, session_id: &SessionId, hold_status: &str) -> [Statement; 2] {
        let now = self.clock.now().unix_millis();
        [
            Statement::new("UPDATE holds SET status = $2, updated_ms = $3 WHERE session_id = $1")
                .bind(session_id.as_str())
                .bind(hold_status)
                .bind(now),
            Statement::new(
                "UPDATE settlements SET status = 'done', attempts = attempts + 1, done_ms = $2 WHERE session_id = $1",
            )
            .bind(session_id.as_str())
            .bind(now),
        ]
    }

    async fn set_hold_status(&self, session_id: &SessionId, status: &str) -> Result<(), BillingError> {
        sqlx::query("UPDATE holds SET status = $2, updated_ms = $3 WHERE session_id = $1")
            .bind(session_id.as_str())
            .bind(status)
            .bind(self.clock.now().unix_millis())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The settlement of `session_id`, if decided.
    pub async fn settlement(&self, session_id: &SessionId) -> Result<Option<StoredSettlement>, BillingError> {
        let row = sqlx::query(
            "SELECT outcome, billable_secs, amount_minor, currency, status, attempts, last_error FROM settlements \
             WHERE session_id = $1",
        )
        .bind(session_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredSettlement {
                outcome: r.try_get("outcome")?,
                billable_secs: u64::try_from(r.try_get::<i64, _>("billable_secs")?).unwrap_or(0),
                amount: money(&r, "amount_minor", "currency")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                last_error: r.try_get("last_error")?,
            })
        })
        .transpose()
    }
}
