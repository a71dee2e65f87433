//! The `meter` scenario runs end to end: a small run on a real SQLite
//! store checkpoints its sessions and settles every one of them. Figures
//! (lateness, CPU, memory) are printed, never asserted.

use std::time::Duration;

use parley_load::meter::{self, MeterOptions};
use parley_server::store::SqlStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_are_checkpointed_and_all_settled() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meter.db").display());
    let mut opts = MeterOptions::new(50, Duration::from_secs(2));
    opts.settings.checkpoint_interval = Duration::from_secs(1);
    opts.settings.tick_interval = Duration::from_secs(1);
    opts.ramp = Duration::from_millis(500);
    opts.database_url = Some(url.clone());

    let report = meter::run(opts).await.unwrap();
    for line in report.summary_lines() {
        println!("{line}");
    }
    println!("{}", parley_load::report::json_line(&report));

    assert_eq!(report.opened, 50);
    assert_eq!((report.settlements, report.settlements_missing), (50, 0), "every ending returned a settlement");
    assert_eq!(report.db_errors, 0);
    assert!(report.checkpoints > 0, "the drivers stored checkpoints");
    assert!(report.billing_error_ms_max.is_some_and(|e| e < 1000), "M10: {:?}", report.billing_error_ms_max);
    assert_eq!((report.left_live, report.left_in_flight), (0, 0));
    assert_eq!(
        (report.hangup_echoes, report.settlement_writes),
        (0, 0),
        "a hang-up's end is not echoed back to signaling, nor its settlement stored twice"
    );
    assert!(report.ok());

    // The checkpoints are in the database, one row per session (M9).
    let store = SqlStore::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM meter_checkpoints WHERE session_id LIKE 'ses_load_%'")
        .fetch_one(&store.pool())
        .await
        .unwrap();
    assert!(rows > 0 && rows <= 50, "{rows} checkpoint rows");
    assert!(report.checkpoints >= rows as u64);
}
