//! The quick check `cargo test --benches` runs in place of the benchmark:
//! a small run end to end, and the pure parts. Each check panics on
//! failure (this bench target has no test harness).

use std::time::Duration;

use clap::Parser;
use parley_load::report::Counts;
use parley_metering::MeterSettings;
use parley_server::store::SqlStore;

use crate::Cli;
use crate::report::MeterReport;
use crate::scenario::{self, MeterOptions, check_database_url, default_ramp, start_offset};

/// Runs every check; panics on the first failure.
pub async fn run() {
    the_json_line_has_the_documented_fields();
    missing_settlements_and_store_errors_fail_the_run_but_lateness_does_not();
    the_summary_names_every_figure();
    only_local_databases_are_accepted();
    sessions_start_evenly_over_the_ramp();
    the_defaults_are_the_servers();
    fifty_sessions_are_checkpointed_and_all_settled().await;
    println!("meter: every check passed");
}

/// The former end-to-end test: a small run on a real SQLite store
/// checkpoints its sessions and settles every one of them. Figures
/// (lateness, CPU, memory) are printed, never asserted.
async fn fifty_sessions_are_checkpointed_and_all_settled() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("meter.db").display());
    let mut opts = MeterOptions::new(50, Duration::from_secs(2));
    opts.settings.checkpoint_interval = Duration::from_secs(1);
    opts.settings.tick_interval = Duration::from_secs(1);
    opts.ramp = Duration::from_millis(500);
    opts.database_url = Some(url.clone());

    let report = scenario::run(opts).await.unwrap();
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

fn the_defaults_are_the_servers() {
    let opts = Cli::try_parse_from(["meter"]).unwrap().options();
    assert_eq!((opts.sessions, opts.duration), (10_000, Duration::from_secs(60)));
    assert_eq!(opts.settings, MeterSettings::default());
    assert_eq!(opts.ramp, Duration::from_secs(10));
    let cli = Cli::try_parse_from([
        "meter",
        "--sessions",
        "50",
        "--secs",
        "4",
        "--checkpoint-secs",
        "1",
        "--tick-secs",
        "2",
        "--bench",
    ])
    .unwrap();
    assert!(cli.bench);
    let opts = cli.options();
    assert_eq!(opts.settings.checkpoint_interval, Duration::from_secs(1));
    assert_eq!(opts.settings.tick_interval, Duration::from_secs(2));
    assert_eq!(opts.ramp, Duration::from_secs(1));
    assert!(Cli::try_parse_from(["meter", "--sessions", "0"]).is_err());
}

fn report() -> MeterReport {
    MeterReport {
        sessions: 10_000,
        secs: 60.0,
        checkpoint_secs: 10.0,
        tick_secs: 30.0,
        ramp_secs: 10.0,
        database: "sqlite (temp dir)".into(),
        opened: 10_000,
        duration_secs: 60.2,
        steady_secs: 50.0,
        cpu_percent: Some(12.5),
        cpu_percent_total: Some(14.0),
        db_writes_per_sec: 1000.0,
        db_writes: 55_000,
        checkpoints: 55_000,
        checkpoints_expected: 55_000,
        db_errors: 0,
        db_write_ms_p50: Some(2.0),
        db_write_ms_p99: Some(9.0),
        db_write_ms_max: Some(20.0),
        settlement_write_ms_p99: Some(150.0),
        deadlines: 70_000,
        lateness_ms_p50: Some(1.0),
        lateness_ms_p90: Some(1.0),
        lateness_ms_p99: Some(2.0),
        lateness_ms_max: Some(30.0),
        lateness_within_target: Some(true),
        rss_kib_before: Some(20_000),
        rss_kib_live: Some(40_000),
        rss_kib_end: Some(41_000),
        rss_kib_per_session: Some(2.0),
        notices_per_sec: 333.3,
        notices: Counts::from([("meter.tick".to_owned(), 20_000)]),
        settlements: 10_000,
        settlements_missing: 0,
        meter_ended: 0,
        hangup_echoes: 10_000,
        settlement_writes: 10_000,
        billing_error_ms_max: Some(999),
        left_live: 0,
        left_in_flight: 0,
    }
}

fn the_json_line_has_the_documented_fields() {
    let line = parley_load::report::json_line(&report());
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "sessions",
        "duration_secs",
        "cpu_percent",
        "db_writes_per_sec",
        "lateness_ms_p50",
        "lateness_ms_p99",
        "lateness_ms_max",
        "rss_kib_per_session",
        "notices_per_sec",
        "settlements",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {line}");
    }
    assert_eq!(v["notices"]["meter.tick"], 20_000);
}

fn missing_settlements_and_store_errors_fail_the_run_but_lateness_does_not() {
    let mut r = report();
    assert!(r.ok());
    r.lateness_within_target = Some(false);
    assert!(r.ok());
    r.settlements = 9_999;
    assert!(!r.ok());
    let mut r = report();
    r.db_errors = 1;
    assert!(!r.ok());
    let mut r = report();
    r.billing_error_ms_max = Some(1_000);
    assert!(!r.ok());
}

fn the_summary_names_every_figure() {
    let text = report().summary_lines().join("\n");
    for word in ["cpu", "lateness", "store", "notices", "memory", "settled", "meter.tick=20000"] {
        assert!(text.contains(word), "{word}: {text}");
    }
}

fn only_local_databases_are_accepted() {
    assert_eq!(check_database_url("sqlite:///tmp/x.db?mode=rwc").unwrap(), "sqlite");
    for ok in [
        "postgres://parley:pw@127.0.0.1:5432/parley",
        "postgresql://localhost/parley",
        "postgres://[::1]:5432/parley",
        "postgres:///parley?host=/var/run/postgresql",
    ] {
        assert_eq!(check_database_url(ok).unwrap(), "postgres", "{ok}");
    }
    for bad in [
        "postgres://db.example.com/parley",
        "postgres://10.0.0.5/parley",
        "postgres://localhost/parley?host=db.example.com",
        "mysql://127.0.0.1/parley",
    ] {
        assert!(check_database_url(bad).is_err(), "{bad}");
    }
}

fn sessions_start_evenly_over_the_ramp() {
    let ramp = Duration::from_secs(10);
    assert_eq!(start_offset(0, 4, ramp), Duration::ZERO);
    assert_eq!(start_offset(2, 4, ramp), Duration::from_secs(5));
    assert!(start_offset(3, 4, ramp) < ramp);
    let settings = MeterSettings::default();
    assert_eq!(default_ramp(&settings, Duration::from_secs(60)), Duration::from_secs(10));
    assert_eq!(default_ramp(&settings, Duration::from_secs(4)), Duration::from_secs(2));
}
