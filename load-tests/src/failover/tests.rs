use super::*;

fn opts(trials: usize) -> FailoverOptions {
    FailoverOptions {
        target: crate::target::parse("http://127.0.0.1:18080").unwrap(),
        calls: 2,
        trials,
        kill: "scripts/cluster.sh kill-hub".into(),
        restart: "scripts/cluster.sh start-all".into(),
        hold: Duration::from_secs(12),
        hold_jitter: Duration::from_secs(10),
        trial_timeout: Duration::from_secs(45),
        ready_timeout: Duration::from_secs(120),
        command_timeout: Duration::from_secs(120),
        jwt_secret_file: PathBuf::from(".cluster/jwt-secret"),
        price_minor: 3000,
    }
}

fn outcome(id: usize, both: f64, billable: u64) -> CallOutcome {
    CallOutcome {
        both_in_room_secs: Some(both),
        billable_secs: Some(billable),
        billable_secs_lost: Some(both - billable as f64),
        state: Some("ended".into()),
        ..CallOutcome::failed(id, "run1", String::new())
    }
}

#[test]
fn the_report_takes_percentiles_over_every_return_and_ends_in_one_json_line() {
    let mut trials = Vec::new();
    for (k, (a, b)) in [(2000.0, 2500.0), (3000.0, 1000.0), (4000.0, 4100.0)].into_iter().enumerate() {
        let mut t = TrialRecord::new(k, 2);
        t.kill_cmd_ms = Some(30.0);
        t.back(0, a, "rejoined", Some(4.0));
        t.back(1, b, "rejoined", Some(6.0));
        t.restart_ms = Some(5000.0);
        trials.push(t);
    }
    assert_eq!(trials[1].failover_ms, Some(3000.0), "a trial's figure is its slowest call");
    let report =
        FailoverReport::new(&opts(3), "minted".into(), trials, vec![outcome(1, 60.4, 45), outcome(0, 70.9, 55)]);
    assert!(report.ok());
    assert_eq!((report.trials_run, report.trials_ok, report.failover_samples), (3, 3, 6));
    assert!((report.failover_ms_p50.unwrap() - 2500.0).abs() < 5.0);
    assert!((report.failover_ms_max.unwrap() - 4100.0).abs() < 5.0);
    assert_eq!(report.back_via.get("rejoined"), Some(&6));
    assert_eq!((report.lost_secs_per_failover_p50, report.lost_secs_per_failover_max), (Some(5.0), Some(6.0)));
    assert_eq!(report.billable_secs, 100);
    assert!((report.billable_secs_lost - 31.3).abs() < 1e-9);
    assert_eq!(report.per_call.iter().map(|c| c.id).collect::<Vec<_>>(), [0, 1]);

    let line = crate::report::json_line(&report);
    assert!(!line.contains('\n'));
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    for key in
        ["failover_ms_p50", "failover_ms_max", "billable_secs_lost", "both_in_room_secs", "per_trial", "per_call"]
    {
        assert!(v.get(key).is_some(), "missing {key}: {line}");
    }
    assert_eq!(v["per_trial"][0]["calls"][1]["via"], "rejoined");
    assert!(report.summary_lines().iter().any(|l| l.starts_with("failover  p50=")));
}

#[test]
fn a_lost_call_or_a_short_run_is_not_ok() {
    let mut t = TrialRecord::new(0, 2);
    t.back(0, 2000.0, "rejoined", None);
    t.lost(1, "trial 0: not back within 45s".into());
    assert!(!t.ok());
    assert_eq!(t.failover_ms, Some(2000.0));
    let mut failed = outcome(1, 10.0, 10);
    failed.error = t.calls[1].error.clone();
    let report = FailoverReport::new(&opts(5), "minted".into(), vec![t], vec![outcome(0, 10.0, 9), failed]);
    assert!(!report.ok());
    assert_eq!((report.trials_run, report.trials_ok, report.calls_ok, report.calls_failed), (1, 0, 1, 1));
    assert_eq!(report.billable_secs, 9, "failed calls are left out of the totals");
    assert_eq!(report.lost_secs_per_failover_p50, None);
}

#[test]
fn http_status_lines_are_read() {
    assert_eq!(status_code(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n"), Some(200));
    assert_eq!(status_code(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
    assert_eq!(status_code(b"SSH-2.0-OpenSSH"), None);
    assert_eq!(status_code(b""), None);
}

#[tokio::test]
async fn commands_report_failure_and_time_out() {
    command("true", Duration::from_secs(5)).await.unwrap();
    let e = command("echo boom >&2; exit 3", Duration::from_secs(5)).await.unwrap_err().to_string();
    assert!(e.contains("boom") && e.contains('3'), "{e}");
    let e = command("sleep 5", Duration::from_millis(100)).await.unwrap_err().to_string();
    assert!(e.contains("still running"), "{e}");
}
