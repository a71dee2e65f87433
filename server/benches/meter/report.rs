//! What a meter run measured: [`MeterReport`], its verdict and its
//! readable summary (the JSON line is its serialisation).

use parley_load::report::{Counts, opt};
use serde::Serialize;

use crate::scenario::LATENESS_TARGET_P99_MS;

/// The result of a `meter` run; serialised as the last line of stdout.
/// Rates are per second of the steady phase (every session live);
/// latencies are milliseconds (`null` without samples).
#[derive(Debug, Clone, Serialize)]
pub struct MeterReport {
    /// Sessions asked for.
    pub sessions: usize,
    /// `--secs`: the run's length asked for, seconds.
    pub secs: f64,
    /// Checkpoint interval, seconds.
    pub checkpoint_secs: f64,
    /// `meter.tick` interval, seconds.
    pub tick_secs: f64,
    /// Ramp length, seconds.
    pub ramp_secs: f64,
    /// `sqlite (temp dir)`, `sqlite` or `postgres`.
    pub database: String,
    /// Sessions opened (and joined by both participants).
    pub opened: u64,
    /// Wall time from the first open to the last hang-up, seconds.
    pub duration_secs: f64,
    /// Wall time with every session live (ramp done → hang-ups), seconds.
    pub steady_secs: f64,
    /// This process's CPU in the steady phase, percent of one core.
    pub cpu_percent: Option<f64>,
    /// This process's CPU over the whole run (ramp, steady, end), percent of one core.
    pub cpu_percent_total: Option<f64>,
    /// `MeterStore` calls (one stored row each; many share a transaction)
    /// per second of the steady phase.
    pub db_writes_per_sec: f64,
    /// `MeterStore` calls over the whole run.
    pub db_writes: u64,
    /// Checkpoints stored over the whole run.
    pub checkpoints: u64,
    /// Checkpoints due over the whole run: Σ ⌊live time / interval⌋. A few
    /// more or fewer than `checkpoints` is a race with the hang-up.
    pub checkpoints_expected: u64,
    /// `MeterStore` calls that failed.
    pub db_errors: u64,
    /// Latency of one checkpoint or notice write (`meter_event`: writer
    /// queue + group commit), median, ms.
    pub db_write_ms_p50: Option<f64>,
    /// The same, 99th percentile, ms.
    pub db_write_ms_p99: Option<f64>,
    /// The same, slowest, ms.
    pub db_write_ms_max: Option<f64>,
    /// Latency of one settlement write (`orphan_settlement`, all at the
    /// end), 99th percentile, ms.
    pub settlement_write_ms_p99: Option<f64>,
    /// Deadlines the drivers handled (lateness samples).
    pub deadlines: u64,
    /// Deadline lateness (clock now − deadline, 1 ms resolution), median, ms.
    pub lateness_ms_p50: Option<f64>,
    /// The same, 90th percentile, ms.
    pub lateness_ms_p90: Option<f64>,
    /// The same, 99th percentile, ms (target: ≤ 50).
    pub lateness_ms_p99: Option<f64>,
    /// The same, largest, ms.
    pub lateness_ms_max: Option<f64>,
    /// `lateness_ms_p99 ≤ 50` (null without samples). Reported, not a failure.
    pub lateness_within_target: Option<bool>,
    /// VmRSS before the first session opened, KiB.
    pub rss_kib_before: Option<u64>,
    /// VmRSS with every session live (end of the ramp), KiB.
    pub rss_kib_live: Option<u64>,
    /// VmRSS just before the hang-ups, KiB.
    pub rss_kib_end: Option<u64>,
    /// (`rss_kib_live` − `rss_kib_before`) / `opened`, KiB per live session.
    pub rss_kib_per_session: Option<f64>,
    /// Meter notices sent to the sink per second of the steady phase.
    pub notices_per_sec: f64,
    /// Meter notices over the whole run, by message type.
    pub notices: Counts,
    /// Sessions whose `ending` returned a settlement.
    pub settlements: u64,
    /// Sessions whose `ending` returned none (should be 0).
    pub settlements_missing: u64,
    /// Sessions the meter ended by itself (a limit or abandonment: the
    /// driver asked the sink to end them for a reason other than a
    /// hang-up; should be 0).
    pub meter_ended: u64,
    /// `MeterSink::end` calls for a hang-up: a hang-up's end echoed back to
    /// signaling by the driver (should be 0; see the README).
    pub hangup_echoes: u64,
    /// `MeterStore::orphan_settlement` calls (part of `db_writes`).
    pub settlement_writes: u64,
    /// Largest |true both-present time − billed time| over the settlements,
    /// ms (billed seconds are rounded down, so below 1000: DESIGN.md M10).
    pub billing_error_ms_max: Option<i64>,
    /// Sessions still metered after the hang-ups (should be 0).
    pub left_live: usize,
    /// Store calls still in flight when the run gave up waiting (should be 0).
    pub left_in_flight: i64,
}

impl MeterReport {
    /// Whether every session opened, was checkpointed without store errors,
    /// and settled within M10's ±1 s. Lateness is reported, not judged.
    pub fn ok(&self) -> bool {
        self.opened == self.sessions as u64
            && self.settlements == self.opened
            && self.db_errors == 0
            && self.meter_ended == 0
            && self.left_live == 0
            && self.left_in_flight == 0
            && self.billing_error_ms_max.is_none_or(|e| e < 1000)
    }

    /// The readable summary lines.
    pub fn summary_lines(&self) -> Vec<String> {
        let notices: u64 = self.notices.values().sum();
        let mut out = vec![
            format!(
                "meter: {} sessions for {} s (ramp {} s), checkpoints every {} s, ticks every {} s, {}",
                self.sessions, self.secs, self.ramp_secs, self.checkpoint_secs, self.tick_secs, self.database
            ),
            format!(
                "run       {} opened; {:.3} s in all, {:.3} s with all live",
                self.opened, self.duration_secs, self.steady_secs
            ),
            format!(
                "cpu       {} % of one core while all live ({} % over the whole run)",
                opt(self.cpu_percent),
                opt(self.cpu_percent_total)
            ),
            format!(
                "lateness  n={} p50={} p90={} p99={} max={} ms (target p99 <= {LATENESS_TARGET_P99_MS} ms: {})",
                self.deadlines,
                opt(self.lateness_ms_p50),
                opt(self.lateness_ms_p90),
                opt(self.lateness_ms_p99),
                opt(self.lateness_ms_max),
                match self.lateness_within_target {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "-",
                }
            ),
            format!(
                "store     {:.1} writes/s while all live; {} writes ({} checkpoints, {} due), {} errors; \
                 write p50={} p99={} max={} ms",
                self.db_writes_per_sec,
                self.db_writes,
                self.checkpoints,
                self.checkpoints_expected,
                self.db_errors,
                opt(self.db_write_ms_p50),
                opt(self.db_write_ms_p99),
                opt(self.db_write_ms_max)
            ),
            format!(
                "notices   {:.1}/s while all live; {notices} in all ({})",
                self.notices_per_sec,
                counts_line(&self.notices)
            ),
        ];
        match (self.rss_kib_before, self.rss_kib_live) {
            (Some(before), Some(live)) => out.push(format!(
                "memory    RSS {before} KiB -> {live} KiB with all live ({} KiB at the end): {} KiB per live session",
                self.rss_kib_end.map_or_else(|| "-".to_owned(), |k| k.to_string()),
                opt(self.rss_kib_per_session)
            )),
            _ => out.push("memory    RSS not readable (/proc/self/status)".to_owned()),
        }
        out.push(format!(
            "settled   {} of {} ({} missing, {} ended by the meter); billing error max {} ms",
            self.settlements,
            self.opened,
            self.settlements_missing,
            self.meter_ended,
            self.billing_error_ms_max.map_or_else(|| "-".to_owned(), |e| e.to_string())
        ));
        out.push(format!(
            "echoes    {} hang-ups echoed to the sink by the driver, {} settlements stored by it (p99 {} ms)",
            self.hangup_echoes,
            self.settlement_writes,
            opt(self.settlement_write_ms_p99)
        ));
        if self.left_live > 0 || self.left_in_flight > 0 {
            out.push(format!(
                "leftover  {} sessions still metered, {} store calls in flight",
                self.left_live, self.left_in_flight
            ));
        }
        out
    }
}

fn counts_line(counts: &Counts) -> String {
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}
