//! What a `failover` run measured: per trial ([`TrialRecord`]), per call
//! ([`CallOutcome`]) and over the run ([`FailoverReport`]: readable lines
//! and the JSON line).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::FailoverOptions;
use crate::report::opt;
use crate::stats::{Latencies, round3};

/// One call's return in one trial.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialCall {
    /// The call (index in the run).
    pub call: usize,
    /// From the kill command's start until both participants were back in
    /// the room, ms; `null` if the call did not come back.
    pub failover_ms: Option<f64>,
    /// `rejoined` (resume refused, `room.join` again) or `resumed`.
    pub via: Option<&'static str>,
    /// Billable seconds this failover lost: both-in-room time at the kill
    /// minus the billable seconds the rejoined meter restored, less what
    /// earlier failovers lost. `null` without a rejoin's meter.
    pub lost_secs: Option<f64>,
    /// Why the call was given up in this trial.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One kill and restart.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialRecord {
    /// The trial's index (0-based).
    pub trial: usize,
    /// How long the kill command ran, ms (the failover clock starts before it).
    pub kill_cmd_ms: Option<f64>,
    /// The slowest call's failover time in this trial, ms.
    pub failover_ms: Option<f64>,
    /// Restart command + readiness (`/readyz` 200 several times in a row), ms.
    pub restart_ms: Option<f64>,
    /// Each live call's return.
    pub calls: Vec<TrialCall>,
    /// What stopped the trial (a command failed, the cluster not ready).
    pub error: Option<String>,
}

impl TrialRecord {
    /// Trial `trial`, nothing measured yet.
    pub fn new(trial: usize, calls: usize) -> TrialRecord {
        TrialRecord { trial, calls: Vec::with_capacity(calls), ..TrialRecord::default() }
    }

    /// Call `call` came back after `failover_ms`.
    pub fn back(&mut self, call: usize, failover_ms: f64, via: &'static str, lost_secs: Option<f64>) {
        self.failover_ms = Some(self.failover_ms.map_or(failover_ms, |m| m.max(failover_ms)));
        self.calls.push(TrialCall {
            call,
            failover_ms: Some(failover_ms),
            via: Some(via),
            lost_secs: lost_secs.map(round3),
            error: None,
        });
    }

    /// Call `call` did not come back.
    pub fn lost(&mut self, call: usize, error: String) {
        self.calls.push(TrialCall { call, error: Some(error), ..TrialCall::default() });
    }

    /// Whether the trial ran through and every call came back.
    pub fn ok(&self) -> bool {
        self.error.is_none() && !self.calls.is_empty() && self.calls.iter().all(|c| c.error.is_none())
    }

    /// One readable line.
    pub fn line(&self) -> String {
        let lost: Vec<String> = self.calls.iter().filter_map(|c| c.lost_secs).map(|l| format!("{l:.1}")).collect();
        format!(
            "trial {:>2}: failover {} ms ({} of {} back), lost {} s, kill {} ms, restart+ready {} ms{}",
            self.trial,
            opt(self.failover_ms),
            self.calls.iter().filter(|c| c.error.is_none()).count(),
            self.calls.len(),
            if lost.is_empty() { "-".into() } else { lost.join("/") },
            opt(self.kill_cmd_ms),
            opt(self.restart_ms),
            self.error.as_ref().map_or(String::new(), |e| format!("; error: {e}"))
        )
    }
}

/// How one call ended, read back as a moderator.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallOutcome {
    /// Index of the call in this run.
    pub id: usize,
    /// The synthetic seeker.
    pub seeker: String,
    /// The synthetic consultant.
    pub consultant: String,
    /// The session.
    pub session_id: Option<String>,
    /// Wall-clock seconds both participants were in the room, as the
    /// clients saw it (set-up to first kill, each return to the next kill,
    /// the last return to the hang-up).
    pub both_in_room_secs: Option<f64>,
    /// Billable seconds of the ended session (`GET /v1/sessions/{id}`).
    pub billable_secs: Option<u64>,
    /// `both_in_room_secs − billable_secs`: what the failovers cost (≤ 10 s
    /// each by rule M9, plus < 1 s of rounding down).
    pub billable_secs_lost: Option<f64>,
    /// `open` or `ended`.
    pub state: Option<String>,
    /// Why the session ended (`hangup` expected).
    pub end_reason: Option<String>,
    /// `free` or `charged`.
    pub outcome: Option<&'static str>,
    /// `pending`, `done` or `failed`.
    pub settlement_status: Option<String>,
    /// Rooms rejoined, links resumed and resumes refused, both sides together.
    pub rejoins: u32,
    /// See `rejoins`.
    pub resumes: u32,
    /// See `rejoins`.
    pub resume_failures: u32,
    /// Why the call failed; `null` if it went through.
    pub error: Option<String>,
    /// Server errors seen and other notes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl CallOutcome {
    /// Call `id` of run `run` that failed with `error` (before or without a session).
    pub fn failed(id: usize, run: &str, error: String) -> CallOutcome {
        CallOutcome {
            id,
            seeker: format!("load-s-{run}-{id}"),
            consultant: format!("load-c-{run}-{id}"),
            error: (!error.is_empty()).then_some(error),
            ..CallOutcome::default()
        }
    }
}

/// The result of a `failover` run; serialised as the last line of stdout.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    /// Calls asked for.
    pub calls: usize,
    /// Trials asked for.
    pub trials: usize,
    /// Trials run (fewer when a command failed or every call was lost).
    pub trials_run: usize,
    /// Trials that ran through with every call back.
    pub trials_ok: usize,
    /// The kill command.
    pub kill: String,
    /// The restart command.
    pub restart: String,
    /// Minimum and random extra hold before each kill, seconds.
    pub hold_secs: f64,
    /// See `hold_secs`.
    pub hold_jitter_secs: f64,
    /// How tokens were obtained.
    pub token_source: String,
    /// Failover samples (one per call per trial that came back).
    pub failover_samples: u64,
    /// Failover time (kill command's start → both back in the room), median, ms.
    pub failover_ms_p50: Option<f64>,
    /// 90th percentile, ms.
    pub failover_ms_p90: Option<f64>,
    /// Slowest, ms.
    pub failover_ms_max: Option<f64>,
    /// How the calls came back: `rejoined` / `resumed` → count.
    pub back_via: BTreeMap<&'static str, u64>,
    /// Kill command duration, median, ms.
    pub kill_cmd_ms_p50: Option<f64>,
    /// Restart command + readiness, median, ms.
    pub restart_ms_p50: Option<f64>,
    /// Billable seconds lost per failover (from the rejoined meters), median.
    pub lost_secs_per_failover_p50: Option<f64>,
    /// The same, largest.
    pub lost_secs_per_failover_max: Option<f64>,
    /// Both-in-room wall time over the calls that went through, seconds.
    pub both_in_room_secs: f64,
    /// Their sessions' billable seconds, summed.
    pub billable_secs: u64,
    /// `both_in_room_secs − billable_secs`.
    pub billable_secs_lost: f64,
    /// Calls that went through (back after every trial, hung up, read).
    pub calls_ok: usize,
    /// Calls with an `error`.
    pub calls_failed: usize,
    /// One entry per trial.
    pub per_trial: Vec<TrialRecord>,
    /// One entry per call.
    pub per_call: Vec<CallOutcome>,
}

impl FailoverReport {
    /// Builds the report.
    pub fn new(
        opts: &FailoverOptions,
        token_source: String,
        per_trial: Vec<TrialRecord>,
        mut per_call: Vec<CallOutcome>,
    ) -> FailoverReport {
        per_call.sort_by_key(|c| c.id);
        let mut failover = Latencies::new();
        let mut kill = Latencies::new();
        let mut restart = Latencies::new();
        let mut lost = Vec::new();
        let mut back_via = BTreeMap::new();
        let from_ms = |ms: f64| Duration::from_secs_f64(ms.max(0.0) / 1000.0);
        for t in &per_trial {
            if let Some(k) = t.kill_cmd_ms {
                kill.record(from_ms(k));
            }
            if let Some(r) = t.restart_ms {
                restart.record(from_ms(r));
            }
            for c in &t.calls {
                if let Some(f) = c.failover_ms {
                    failover.record(from_ms(f));
                }
                if let Some(via) = c.via {
                    *back_via.entry(via).or_default() += 1;
                }
                lost.extend(c.lost_secs);
            }
        }
        lost.sort_by(f64::total_cmp);
        let ok: Vec<&CallOutcome> = per_call.iter().filter(|c| c.error.is_none()).collect();
        let both: f64 = ok.iter().filter_map(|c| c.both_in_room_secs).sum();
        let billable: u64 = ok.iter().filter_map(|c| c.billable_secs).sum();
        FailoverReport {
            calls: opts.calls,
            trials: opts.trials,
            trials_run: per_trial.len(),
            trials_ok: per_trial.iter().filter(|t| t.ok()).count(),
            kill: opts.kill.clone(),
            restart: opts.restart.clone(),
            hold_secs: opts.hold.as_secs_f64(),
            hold_jitter_secs: opts.hold_jitter.as_secs_f64(),
            token_source,
            failover_samples: failover.count(),
            failover_ms_p50: failover.quantile_ms(0.5),
            failover_ms_p90: failover.quantile_ms(0.9),
            failover_ms_max: failover.quantile_ms(1.0),
            back_via,
            kill_cmd_ms_p50: kill.quantile_ms(0.5),
            restart_ms_p50: restart.quantile_ms(0.5),
            lost_secs_per_failover_p50: median(&lost),
            lost_secs_per_failover_max: lost.last().copied(),
            both_in_room_secs: round3(both),
            billable_secs: billable,
            billable_secs_lost: round3(both - billable as f64),
            calls_ok: ok.len(),
            calls_failed: per_call.len() - ok.len(),
            per_trial,
            per_call,
        }
    }

    /// Whether every trial ran through, every call came back each time and
    /// every session was hung up and read.
    pub fn ok(&self) -> bool {
        self.trials_run == self.trials && self.trials_ok == self.trials && self.calls_failed == 0
    }

    /// The readable summary.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = vec![format!(
            "failover: {} call(s), {} of {} trials ran, {} ok; kill `{}`, restart `{}`; tokens {}",
            self.calls, self.trials_run, self.trials, self.trials_ok, self.kill, self.restart, self.token_source
        )];
        out.extend(self.per_trial.iter().map(TrialRecord::line));
        for c in &self.per_call {
            out.push(format!(
                "call {:>2}: session {}, both in room {} s, billable {} s, lost {} s, {} / {} / settlement {}, \
                 {} rejoins, {} resumes{}",
                c.id,
                c.session_id.as_deref().unwrap_or("-"),
                opt(c.both_in_room_secs),
                c.billable_secs.map_or("-".into(), |b| b.to_string()),
                opt(c.billable_secs_lost),
                c.end_reason.as_deref().unwrap_or("-"),
                c.outcome.unwrap_or("-"),
                c.settlement_status.as_deref().unwrap_or("-"),
                c.rejoins,
                c.resumes,
                c.error.as_ref().map_or(String::new(), |e| format!("; error: {e}"))
            ));
            for w in &c.warnings {
                out.push(format!("      warning: {w}"));
            }
        }
        out.push(format!(
            "failover  p50={} p90={} max={} ms over {} samples ({})",
            opt(self.failover_ms_p50),
            opt(self.failover_ms_p90),
            opt(self.failover_ms_max),
            self.failover_samples,
            self.back_via.iter().map(|(k, v)| format!("{v} {k}")).collect::<Vec<_>>().join(", ")
        ));
        out.push(format!(
            "lost      {} s billable of {} s both in room ({} billed); per failover p50={} max={} s",
            round3(self.billable_secs_lost),
            round3(self.both_in_room_secs),
            self.billable_secs,
            opt(self.lost_secs_per_failover_p50),
            opt(self.lost_secs_per_failover_max)
        ));
        out.push(format!(
            "commands  kill p50={} ms, restart+ready p50={} ms",
            opt(self.kill_cmd_ms_p50),
            opt(self.restart_ms_p50)
        ));
        out
    }
}

/// The median of sorted `xs`, `None` when empty.
fn median(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let n = xs.len();
    Some(round3(if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }))
}
