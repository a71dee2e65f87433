use super::*;

fn record(id: usize, setup_ms: Option<f64>, error: Option<&str>) -> CallRecord {
    CallRecord {
        connected: setup_ms.is_some(),
        setup_ms,
        audio_packets_received: 500,
        audio_packets_sent: 510,
        datachannel_rtt_ms: vec![0.5, 0.7, 1.1],
        session_ended: error.is_none(),
        error: error.map(str::to_owned),
        ..CallRecord::new(id, "run1")
    }
}

#[test]
fn the_report_aggregates_calls_and_ends_in_one_json_line() {
    let report = CallReport::from_records(
        vec![record(1, Some(120.0), None), record(0, Some(80.0), None), record(2, None, Some("setup: boom"))],
        Duration::from_secs(5),
        "dev login".into(),
    );
    assert_eq!((report.calls, report.connected, report.failed), (3, 2, 1));
    assert!(!report.ok());
    assert_eq!(report.per_call.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(report.audio_packets_received, 1500);
    assert_eq!(report.datachannel_rtt_samples, 9);
    assert!((report.setup_ms_p50.unwrap() - 80.0).abs() < 0.1);
    assert!((report.setup_ms_p99.unwrap() - 120.0).abs() < 0.2);

    let line = crate::report::json_line(&report);
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in [
        "calls",
        "connected",
        "failed",
        "setup_ms_p50",
        "setup_ms_p99",
        "audio_packets_received",
        "datachannel_rtt_ms_p50",
        "per_call",
    ] {
        assert!(v.get(key).is_some(), "missing {key}: {line}");
    }
    let first = &v["per_call"][0];
    for key in ["id", "connected", "setup_ms", "audio_packets_received", "error"] {
        assert!(first.get(key).is_some(), "per_call lacks {key}: {first}");
    }
    assert_eq!(first["seeker"], "load-s-run1-0");
    assert!(first["error"].is_null());
    assert!(first.get("stage").is_none());
    assert_eq!(v["per_call"][2]["error"], "setup: boom");
    assert!(v["per_call"][2]["setup_ms"].is_null());
}

#[test]
fn the_summary_has_a_line_per_call() {
    let report =
        CallReport::from_records(vec![record(0, Some(80.0), None)], Duration::from_secs(5), "dev login".into());
    let lines = report.summary_lines();
    assert!(lines.iter().any(|l| l.trim_start().starts_with("0  yes")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.starts_with("setup     p50=80.0")), "{lines:#?}");
    assert!(report.ok());
}

#[test]
fn an_empty_run_has_null_percentiles() {
    let report = CallReport::from_records(vec![], Duration::from_secs(1), "dev login".into());
    let v: serde_json::Value = serde_json::from_str(&crate::report::json_line(&report)).unwrap();
    assert!(v["setup_ms_p50"].is_null());
    assert_eq!(v["per_call"].as_array().unwrap().len(), 0);
}
