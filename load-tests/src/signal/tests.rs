use super::*;

fn report() -> SignalReport {
    SignalReport {
        clients: 2000,
        pairs: 100,
        relay_window: 1,
        call_rate: None,
        calls_at_once: true,
        connected_secs: Some(0.25),
        paired_only: false,
        token_source: "minted with data/jwt-secret".into(),
        idle_connected: 2000,
        idle_failed: 0,
        idle_dropped: 0,
        accept_secs: 0.5,
        accept_rate_per_sec: 4000.0,
        server_rss_kib_before: Some(10_000),
        server_rss_kib_after: Some(30_000),
        rss_kib_per_idle_connection: Some(10.0),
        client_rss_kib_per_idle_connection: Some(12.5),
        pairs_set_up: 100,
        pairs_failed: 0,
        setup_ms_p50: Some(3.2),
        setup_ms_p99: Some(9.1),
        setup_ms_max: Some(9.5),
        setup_secs: 1.5,
        setup_connections_per_sec: Some(2.0),
        server_cpu_us_per_setup_connection: Some(400.0),
        server_cpu_percent_setup: Some(87.0),
        client_cpu_percent_setup: Some(64.0),
        server_cores_busy_percent_setup: Some(99.0),
        db_cpu_percent_setup: Some(61.5),
        server_rss_kib_calls: Some(90_000),
        rss_kib_per_call_connection: Some(9.5),
        setup_relay_messages: 4200,
        setup_relay_ms_p50: Some(0.2),
        setup_relay_ms_p99: Some(1.0),
        sdp_relay_ms_p50: Some(0.3),
        sdp_relay_ms_p99: Some(0.9),
        candidate_paced_relay_ms_p50: Some(0.2),
        candidate_paced_relay_ms_p99: Some(0.8),
        candidate_burst_relay_ms_p50: Some(0.4),
        candidate_burst_relay_ms_p99: Some(1.0),
        relay_secs: 10.001,
        relay_hops: 200_000,
        relay_lost: 0,
        relay_throughput_msgs_per_sec: 19_998.0,
        server_cpu_percent_relay: Some(99.0),
        server_cpu_percent_accept: Some(90.0),
        client_cpu_percent_accept: Some(60.0),
        client_cpu_percent_relay: Some(80.0),
        relay_ms_p50: Some(0.3),
        relay_ms_p90: Some(0.5),
        relay_ms_p99: Some(0.9),
        relay_ms_max: Some(4.0),
        errors: Counts::from([("rate_limited".to_owned(), 2)]),
        client_errors: Counts::new(),
        failures: vec![],
    }
}

#[test]
fn the_json_line_has_the_documented_fields() {
    let line = crate::report::json_line(&report());
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "clients",
        "pairs",
        "call_rate",
        "calls_at_once",
        "connected_secs",
        "paired_only",
        "accept_rate_per_sec",
        "rss_kib_per_idle_connection",
        "relay_ms_p50",
        "relay_ms_p99",
        "setup_ms_p50",
        "setup_ms_p99",
        "relay_throughput_msgs_per_sec",
        "rss_kib_per_call_connection",
        "server_cpu_percent_setup",
        "client_cpu_percent_setup",
        "server_cores_busy_percent_setup",
        "db_cpu_percent_setup",
        "errors",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {line}");
    }
    assert_eq!(v["errors"]["rate_limited"], 2);
    assert_eq!(v["paired_only"], false);
    let mut without_pid = report();
    without_pid.rss_kib_per_idle_connection = None;
    let v: serde_json::Value = serde_json::from_str(&crate::report::json_line(&without_pid)).unwrap();
    assert!(v["rss_kib_per_idle_connection"].is_null());
}

#[test]
fn failures_make_the_run_fail() {
    let mut r = report();
    assert!(r.ok());
    r.pairs_failed = 1;
    assert!(!r.ok());
    let mut r = report();
    r.idle_failed = 3;
    assert!(!r.ok());
}

#[test]
fn the_summary_names_every_phase() {
    let lines = report().summary_lines(&SignalStats::default());
    let text = lines.join("\n");
    for word in [
        "idle",
        "memory",
        "pairs",
        "2.000 connections/s into calls, server CPU 400.000 µs",
        "server RSS 90000 KiB with the calls open: 9.5 KiB per connection in a call",
        "during set-up: server 87 %, parley-load 64 % of one core",
        "during set-up: the server's cores 99 % busy, every process; the database 62 % of one core",
        "setup",
        "relay",
        "errors    rate_limited=2",
    ] {
        assert!(text.contains(word), "{word}: {text}");
    }
    assert!(!text.contains("paired only"), "{text}");
    let paired = SignalReport { paired_only: true, ..report() };
    let text = paired.summary_lines(&SignalStats::default()).join("\n");
    assert!(text.contains("100 pairs paired only (no SDP, no candidates)"), "{text}");
}

#[tokio::test]
async fn calls_at_once_start_when_every_pair_has_arrived_or_given_up() {
    use futures_util::FutureExt;
    let (mut lines, all_arrived) = start_lines(3, true);
    let mut all_arrived = Box::pin(all_arrived);
    let given_up = lines.pop().unwrap();
    let (mut first, mut second) = (lines.remove(0), lines.remove(0));
    // The first pair waits at the line while the others have not arrived.
    let mut first = Box::pin(first.line_up());
    assert!(first.as_mut().now_or_never().is_none());
    assert!(all_arrived.as_mut().now_or_never().is_none());
    let mut second = Box::pin(second.line_up());
    assert!(second.as_mut().now_or_never().is_none());
    assert!(all_arrived.as_mut().now_or_never().is_none());
    assert!(first.as_mut().now_or_never().is_none());
    // The third pair's connect failed: its line is dropped, and the two go.
    drop(given_up);
    assert!(all_arrived.as_mut().now_or_never().is_some());
    assert!(first.now_or_never().is_some() && second.now_or_never().is_some());
}

#[tokio::test]
async fn without_calls_at_once_no_pair_waits() {
    use futures_util::FutureExt;
    let (lines, all_arrived) = start_lines(2, false);
    for mut line in lines {
        assert!(line.line_up().now_or_never().is_some());
    }
    assert!(all_arrived.now_or_never().is_some());
}
