//! `parley-load call` (the load generator's call scenario, an external
//! client) against a real server with a 4 s free window (issue 3): a 2 s
//! call ends free and its hold is released; a 6 s call is charged EUR 30.00
//! with the 20 % fee. Real WebRTC calls on loopback; the server runs on the
//! system clock here, because the generator's calls last real seconds.

use std::time::Duration;

use parley_load::call::{self, CallOptions};
use parley_load::target;
use parley_server::{Application, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_call_is_free_and_a_long_one_is_charged_with_the_fee() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::for_tests(dir.path());
    config.meter.free_window = Duration::from_secs(4);
    config.meter.warn_before = Duration::from_secs(2);
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, config.jwt_secret.clone().unwrap()).unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let mut seen = Vec::new();
    for secs in [2, 6] {
        let report = call::run(CallOptions {
            target: target::parse(&base).unwrap(),
            calls: 1,
            duration: Duration::from_secs(secs),
            jwt_secret_file: Some(secret_file.clone()),
            price_minor: 3000,
        })
        .await
        .unwrap();
        for line in report.summary_lines() {
            println!("{line}");
        }
        let c = &report.per_call[0];
        assert!(c.error.is_none(), "{secs} s call failed: {:?}", c.error);
        seen.push((c.outcome, c.captured_minor, c.fee_minor, c.billable_seconds.unwrap_or(0) >= secs));
    }
    assert_eq!(seen[0], (Some("free"), Some(0), Some(0), true), "2 s: free, hold released");
    assert_eq!(seen[1], (Some("charged"), Some(3000), Some(600), true), "6 s: charged with the fee");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// `parley-load signal --price-minor` (issue 17's set-up figures) against a
/// real server: each consultant's price is set first, so every pair's call
/// places a hold before its consultant is rung, and each pair hangs up
/// inside the free window, so each hold is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signal_scenario_with_a_price_places_and_releases_a_hold_per_call() {
    use parley_load::signal::{self, SignalOptions};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::for_tests(dir.path());
    let secret_file = dir.path().join("jwt-secret");
    std::fs::write(&secret_file, config.jwt_secret.clone().unwrap()).unwrap();
    let app = Application::build(config).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let pool = app.store().pool();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let pairs = 4;
    let (report, _) = signal::run(SignalOptions {
        target: target::parse(&base).unwrap(),
        clients: 0,
        pairs,
        server_pid: None,
        db_pid: None,
        relay_secs: 0,
        relay_window: 1,
        call_rate: None,
        // Parley's side of the common start: presence set, then the calls together.
        calls_at_once: true,
        price_minor: 2500,
        jwt_secret_file: Some(secret_file),
        connect_concurrency: 2,
        setup: signal::PairSetup::Full,
    })
    .await
    .unwrap();
    assert_eq!((report.pairs_set_up, report.pairs_failed), (pairs as u64, 0), "{:?}", report.failures);
    assert!(report.setup_connections_per_sec.is_some_and(|c| c > 0.0), "set-up rate reported");
    // The releases go through billing's outbox: wait for all of them.
    let holds = || async {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT status, amount_minor FROM holds ORDER BY status").fetch_all(&pool).await.unwrap();
        rows
    };
    crate::common::until("every hold released", || async {
        let seen = holds().await;
        seen.len() == pairs && seen.iter().all(|(status, _)| status == "released")
    })
    .await;
    let seen = holds().await;
    assert!(seen.iter().all(|(_, amount)| *amount == 2500), "the price was held: {seen:?}");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
