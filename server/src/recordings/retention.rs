//! Retention of recordings (DESIGN.md §6): files older than
//! `PARLEY_RECORDING_RETENTION_DAYS` are deleted from the object store and
//! their rows marked `deleted_ms` (the rows stay, for the recap's history).
//! [`run`] sweeps on the server clock: 5 minutes after start, then hourly.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use parley_domain::{Clock, Timestamp};
use sqlx::Row;

use crate::files::{FilesError, RecordingFiles};
use crate::store::SqlStore;

/// Counter of files deleted by retention (a missing file counts too).
pub const RECORDINGS_DELETED: &str = "parley_recordings_deleted_total";

/// Time between sweeps.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);

/// Time from start to the first sweep (not at once: a restart loop would
/// otherwise sweep on every start).
pub const FIRST_SWEEP_AFTER: Duration = Duration::from_secs(300);

const DAY_MS: i64 = 24 * 3600 * 1000;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Rows marked deleted whose file was deleted now.
    pub deleted: u64,
    /// Rows marked deleted whose file was already gone.
    pub missing: u64,
    /// Rows left for the next sweep because the store failed to delete.
    pub failed: u64,
}

/// Deletes every live recording created more than `days` days before
/// `now` (server clock): its object first, then `deleted_ms = now` on its
/// row. A file already gone still gets its row marked. A file the store
/// fails to delete is logged, counted in [`SweepReport::failed`] and left
/// for the next sweep. Due rows are read in one query (an hour's worth).
pub async fn sweep(
    store: &SqlStore,
    files: &RecordingFiles,
    now: Timestamp,
    days: u32,
) -> Result<SweepReport, FilesError> {
    let cutoff = now.unix_millis().saturating_sub(i64::from(days).saturating_mul(DAY_MS));
    let due = sqlx::query(
        "SELECT id, session_id, object_key, created_ms FROM recordings \
         WHERE deleted_ms IS NULL AND created_ms < $1 ORDER BY created_ms, id",
    )
    .bind(cutoff)
    .fetch_all(&store.pool())
    .await?;
    let mut report = SweepReport::default();
    for row in due {
        let id: String = row.try_get("id")?;
        let session_id: String = row.try_get("session_id")?;
        let key: String = row.try_get("object_key")?;
        let created_ms: i64 = row.try_get("created_ms")?;
        let age_days = now.unix_millis().saturating_sub(created_ms) / DAY_MS;
        let existed = match files.delete(&key).await {
            Ok(existed) => existed,
            Err(e) => {
                tracing::warn!(recording_id = %id, %session_id, %key, error = %e, "retention: cannot delete; next sweep retries");
                report.failed += 1;
                continue;
            }
        };
        sqlx::query("UPDATE recordings SET deleted_ms = $1 WHERE id = $2 AND deleted_ms IS NULL")
            .bind(now.unix_millis())
            .bind(&id)
            .execute(&store.pool())
            .await?;
        tracing::info!(recording_id = %id, %session_id, %key, age_days, existed, "retention: recording deleted");
        metrics::counter!(RECORDINGS_DELETED).increment(1);
        if existed {
            report.deleted += 1;
        } else {
            report.missing += 1;
        }
    }
    Ok(report)
}

/// Sweeps with `days` on `clock`, [`FIRST_SWEEP_AFTER`] after start and
/// then every [`SWEEP_INTERVAL`], until `shutdown` resolves.
pub async fn run(
    store: SqlStore,
    files: Arc<RecordingFiles>,
    clock: Arc<dyn Clock>,
    days: u32,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut next = clock.now().plus(FIRST_SWEEP_AFTER);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = clock.sleep_until(next) => {}
        }
        let now = clock.now();
        match sweep(&store, &files, now, days).await {
            Ok(r) if r == SweepReport::default() => {}
            Ok(r) => tracing::info!(deleted = r.deleted, missing = r.missing, failed = r.failed, "retention sweep"),
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
        next = now.plus(SWEEP_INTERVAL);
    }
}
