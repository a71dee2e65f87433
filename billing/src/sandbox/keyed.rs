//! Keyed writes: a hold or a cancellation whose effect and idempotency
//! record are one statement. The statement sets the intent's `last_key`
//! and `last_request` (the key and the request's fingerprint), and a
//! trigger (migration 0019, `sandbox_intents_keyed`) stores the outcome
//! `{"ok": <intent id>}` under the key in the same statement.
//!
//! A key recorded already (an earlier request, or a concurrent one:
//! PostgreSQL waits on the unique key, SQLite on its write lock) fails the
//! statement with a unique violation, so nothing of it is kept and the
//! stored outcome is answered: one effect per key, as before. Being one
//! statement, the write goes to the sandbox's [`crate::Committer`], which
//! commits it with whatever other writes have queued up (the server's store
//! writer: other calls' holds, calls and sessions), instead of a commit of
//! its own per call; a paid call makes two (its hold and its release).
//! If the shared transaction fails, the committer runs the write again on
//! its own, so a unique violation answered is this write's own.
//! Writes that read before they write (captures, refunds) and
//! refusals (a declined card, an intent that cannot be cancelled) still
//! take the transaction paths of the parent module.

use super::{INTENT_COLUMNS, SandboxProvider, db_err, insert_intent, new_id, new_intent};
use crate::commit::{Done, Statement};
use crate::provider::{HoldRequest, Intent, IntentStatus, ProviderError};
use parley_domain::Timestamp;

/// What a keyed write did.
pub(super) enum Keyed {
    /// The effect and its record were committed: the intent as it is now.
    Fresh(Intent),
    /// The key was recorded before: nothing was written; the stored
    /// outcome (an intent id or a refusal).
    Replay(Result<String, ProviderError>),
    /// Nothing matched: the intent is in none of the statuses the write
    /// moves from (a cancellation only).
    Unmatched,
}

impl SandboxProvider {
    /// Places hold `req` as a new intent in `status` (a card the sandbox
    /// accepts), recorded under `req.idempotency_key` with `fingerprint`.
    /// Never [`Keyed::Unmatched`].
    ///
    /// # Errors
    ///
    /// [`ProviderError::Transient`]: the database failed.
    pub(super) async fn keyed_hold(
        &self,
        req: &HoldRequest,
        status: IntentStatus,
        fingerprint: &str,
        now: Timestamp,
    ) -> Result<Keyed, ProviderError> {
        let id = new_id("pi");
        match self.commits.commit_one(insert_intent(&id, status, req, now, Some(fingerprint))).await {
            Ok(_) => Ok(Keyed::Fresh(new_intent(id, status, req, now))),
            // Boxed: a replay's read is rare, and inline it would size the
            // future of every hold waiting on the commit.
            Err(e) if is_unique_violation(&e) => {
                Box::pin(self.replay(&req.idempotency_key, fingerprint)).await.map(Keyed::Replay)
            }
            Err(e) => Err(db_err(e)),
        }
    }

    /// Cancels intent `intent_id` if it is in one of `from`, recorded
    /// under `key` with `fingerprint`; [`Keyed::Unmatched`] if it is in
    /// none of them (or does not exist).
    ///
    /// # Errors
    ///
    /// [`ProviderError::Transient`]: the database failed, or the stored row
    /// is not an intent.
    pub(super) async fn keyed_cancel(
        &self,
        intent_id: &str,
        from: &[IntentStatus],
        key: &str,
        fingerprint: &str,
    ) -> Result<Keyed, ProviderError> {
        let allowed: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        let sql = format!(
            "UPDATE sandbox_intents SET status = '{}', last_key = $2, last_request = $3 \
             WHERE id = $1 AND status IN ({}) RETURNING {INTENT_COLUMNS}",
            IntentStatus::Canceled.as_str(),
            allowed.join(", ")
        );
        let cancel = Statement::new(sql).bind(intent_id).bind(key).bind(fingerprint).returning_row();
        match self.commits.commit_one(cancel).await {
            Ok(Done { row: Some(row), .. }) => Self::intent_from(&row).map(Keyed::Fresh),
            Ok(Done { row: None, .. }) => Ok(Keyed::Unmatched),
            Err(e) if is_unique_violation(&e) => Box::pin(self.replay(key, fingerprint)).await.map(Keyed::Replay),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// Whether `e` is a unique violation: here, the idempotency key recorded
/// already (the intent's own id is a fresh UUID).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}
