//! The LiveKit webhook events applied (table `livekit_events`, migration
//! 0015): the de-duplication of rule L2.

use parley_domain::Timestamp;

use crate::store::SqlStore;

/// Records LiveKit's event `id` as applied; `false` if it already was (a
/// repeated delivery: the caller applies nothing). Both backends: one
/// `INSERT … ON CONFLICT DO NOTHING`.
///
/// # Errors
///
/// The database failed; nothing was recorded (LiveKit retries).
pub async fn first_delivery(
    store: &SqlStore,
    id: &str,
    event: &str,
    room: &str,
    created_at: i64,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO livekit_events (id, event, room, created_at, received_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(event)
    .bind(room)
    .bind(created_at)
    .bind(now.unix_millis())
    .execute(&store.pool())
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Forgets that `id` was applied: its application failed, so LiveKit's
/// retry applies it.
///
/// # Errors
///
/// The database failed.
pub async fn forget(store: &SqlStore, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM livekit_events WHERE id = $1").bind(id).execute(&store.pool()).await?;
    Ok(())
}
