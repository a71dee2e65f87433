//! Retention of recordings (DESIGN.md §6): files older than
//! `PARLEY_RECORDING_RETENTION_DAYS` are deleted from the object store and
//! their rows marked `deleted_ms` (the rows stay, for the recap's history).
//! [`run`] sweeps on the server clock: 5 minutes after start, then hourly.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parley_domain::{Clock, Timestamp};
use sqlx::Row;

use crate::kernel::worker::{self, Job};
use crate::store::SqlStore;
use crate::store::files::{FilesError, RecordingFiles};

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

/// Retention as a deadline-driven [`Job`]: its first step only schedules
/// the first sweep ([`FIRST_SWEEP_AFTER`] after start); each sweep then
/// schedules the next one [`SWEEP_INTERVAL`] later.
pub struct Retention {
    store: SqlStore,
    files: Arc<RecordingFiles>,
    days: u32,
    started: AtomicBool,
}

impl Retention {
    /// Retention of files older than `days` days.
    pub fn new(store: SqlStore, files: Arc<RecordingFiles>, days: u32) -> Retention {
        Retention { store, files, days, started: AtomicBool::new(false) }
    }
}

impl Job for Retention {
    async fn step(&self, now: Timestamp) -> Option<Timestamp> {
        if !self.started.swap(true, Ordering::Relaxed) {
            return Some(now.plus(FIRST_SWEEP_AFTER));
        }
        match sweep(&self.store, &self.files, now, self.days).await {
            Ok(r) if r == SweepReport::default() => {}
            Ok(r) => tracing::info!(deleted = r.deleted, missing = r.missing, failed = r.failed, "retention sweep"),
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
        Some(now.plus(SWEEP_INTERVAL))
    }
}

/// Sweeps with `days` on `clock`, [`FIRST_SWEEP_AFTER`] after start and
/// then every [`SWEEP_INTERVAL`], until `shutdown` resolves.
pub async fn run(
    store: SqlStore,
    files: Arc<RecordingFiles>,
    clock: Arc<dyn Clock>,
    days: u32,
    shutdown: impl Future<Output = ()> + Send,
) {
    // Nothing adds work to retention but the clock: its wake is never notified.
    let wake = worker::Wake::new();
    worker::run(Retention::new(store, files, days), clock, wake, shutdown).await;
}
