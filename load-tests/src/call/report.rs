//! What a `call` run measured: per call ([`CallRecord`]) and over the run
//! ([`CallReport`]: readable lines and the JSON line).

use super::*;

/// How one call went. Serialised in the report's `per_call` array; figures
/// not always known are `Option` (`null` in the JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallRecord {
    /// Index of the call in this run (0-based).
    pub id: usize,
    /// The synthetic seeker.
    pub seeker: String,
    /// The synthetic consultant.
    pub consultant: String,
    /// The session the call opened.
    pub session_id: Option<String>,
    /// Whether both peer connections reached `connected`.
    pub connected: bool,
    /// From `call.request` sent to the seeker's peer connection connected.
    pub setup_ms: Option<f64>,
    /// The signaling part of `setup_ms`: from `call.request` sent until the
    /// seeker, in the room with the consultant, starts its peer connection
    /// (sends the offer). The rest is offer/answer relay, ICE and DTLS.
    pub signaling_ms: Option<f64>,
    /// Opus RTP packets received, both sides together.
    pub audio_packets_received: u64,
    /// Opus RTP packets sent, both sides together.
    pub audio_packets_sent: u64,
    /// Data-channel round trips (seeker → consultant → seeker), ms.
    pub datachannel_rtt_ms: Vec<f64>,
    /// Whether both sides saw `session.ended` after the hang-up.
    pub session_ended: bool,
    /// The meter's outcome from `session.ended`: `free` or `charged`.
    pub outcome: Option<&'static str>,
    /// Billable seconds from `session.ended` (both present, DESIGN.md M5).
    pub billable_seconds: Option<u64>,
    /// Captured from the seeker once settled, minor units (0 when free).
    pub captured_minor: Option<i64>,
    /// The platform's commission of the capture, minor units.
    pub fee_minor: Option<i64>,
    /// Why the call failed (`stage: error`); `None` if it succeeded.
    pub error: Option<String>,
    /// Non-fatal problems (server errors seen, unclean close).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The step under way, named in `error`.
    #[serde(skip)]
    pub(crate) stage: &'static str,
}

impl CallRecord {
    /// A record for call `id` of run `run`, not yet started.
    pub fn new(id: usize, run: &str) -> CallRecord {
        CallRecord {
            id,
            seeker: format!("load-s-{run}-{id}"),
            consultant: format!("load-c-{run}-{id}"),
            stage: "start",
            ..CallRecord::default()
        }
    }
}

/// The result of a `call` run; serialised as the last line of stdout.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// Calls run.
    pub calls: usize,
    /// Calls whose peer connections both connected.
    pub connected: usize,
    /// Calls with an error.
    pub failed: usize,
    /// Audio duration asked for, seconds.
    pub duration_secs: f64,
    /// How tokens were obtained.
    pub token_source: String,
    /// Set-up time, median (ms).
    pub setup_ms_p50: Option<f64>,
    /// Set-up time, 99th percentile (ms).
    pub setup_ms_p99: Option<f64>,
    /// Set-up time, slowest (ms).
    pub setup_ms_max: Option<f64>,
    /// The signaling part of set-up (see [`CallRecord::signaling_ms`]), median.
    pub signaling_ms_p50: Option<f64>,
    /// The signaling part of set-up, 99th percentile.
    pub signaling_ms_p99: Option<f64>,
    /// Opus packets received, every call and side.
    pub audio_packets_received: u64,
    /// Opus packets sent, every call and side.
    pub audio_packets_sent: u64,
    /// Data-channel round trips timed.
    pub datachannel_rtt_samples: u64,
    /// Data-channel round trip, median (ms).
    pub datachannel_rtt_ms_p50: Option<f64>,
    /// Data-channel round trip, 99th percentile (ms).
    pub datachannel_rtt_ms_p99: Option<f64>,
    /// One entry per call, by id.
    pub per_call: Vec<CallRecord>,
}

impl CallReport {
    /// Builds the report from the per-call records.
    pub fn from_records(mut per_call: Vec<CallRecord>, duration: Duration, token_source: String) -> CallReport {
        per_call.sort_by_key(|r| r.id);
        let mut setup = Latencies::new();
        let mut signaling = Latencies::new();
        let mut rtt = Latencies::new();
        for r in &per_call {
            if let Some(ms) = r.setup_ms {
                setup.record(Duration::from_secs_f64(ms / 1000.0));
            }
            if let Some(ms) = r.signaling_ms {
                signaling.record(Duration::from_secs_f64(ms / 1000.0));
            }
            for ms in &r.datachannel_rtt_ms {
                rtt.record(Duration::from_secs_f64(ms / 1000.0));
            }
        }
        CallReport {
            calls: per_call.len(),
            connected: per_call.iter().filter(|r| r.connected).count(),
            failed: per_call.iter().filter(|r| r.error.is_some()).count(),
            duration_secs: duration.as_secs_f64(),
            token_source,
            setup_ms_p50: setup.quantile_ms(0.5),
            setup_ms_p99: setup.quantile_ms(0.99),
            setup_ms_max: setup.quantile_ms(1.0),
            signaling_ms_p50: signaling.quantile_ms(0.5),
            signaling_ms_p99: signaling.quantile_ms(0.99),
            audio_packets_received: per_call.iter().map(|r| r.audio_packets_received).sum(),
            audio_packets_sent: per_call.iter().map(|r| r.audio_packets_sent).sum(),
            datachannel_rtt_samples: rtt.count(),
            datachannel_rtt_ms_p50: rtt.quantile_ms(0.5),
            datachannel_rtt_ms_p99: rtt.quantile_ms(0.99),
            per_call,
        }
    }

    /// Whether every call succeeded.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The readable summary: one line per call, then the totals.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "call: {} calls, {:.1} s of audio each, tokens {}",
                self.calls, self.duration_secs, self.token_source
            ),
            format!(
                "{:>4}  {:<9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}  {:<5}  error",
                "call", "connected", "setup_ms", "signal_ms", "audio_rx", "audio_tx", "rtt_p50_ms", "ended"
            ),
        ];
        for r in &self.per_call {
            let mut rtt = Latencies::new();
            for ms in &r.datachannel_rtt_ms {
                rtt.record(Duration::from_secs_f64(ms / 1000.0));
            }
            out.push(format!(
                "{:>4}  {:<9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}  {:<5}  {}",
                r.id,
                if r.connected { "yes" } else { "no" },
                opt(r.setup_ms),
                opt(r.signaling_ms),
                r.audio_packets_received,
                r.audio_packets_sent,
                opt(rtt.quantile_ms(0.5)),
                if r.session_ended { "yes" } else { "no" },
                r.error.as_deref().unwrap_or("-")
            ));
            if let Some(outcome) = r.outcome {
                out.push(format!(
                    "      money: {outcome}, {} s billable, captured {} cents, fee {} cents",
                    int(r.billable_seconds),
                    int(r.captured_minor),
                    int(r.fee_minor)
                ));
            }
            for w in &r.warnings {
                out.push(format!("      warning: {w}"));
            }
        }
        out.push(format!("calls     {} connected, {} failed of {}", self.connected, self.failed, self.calls));
        out.push(format!(
            "setup     p50={} p99={} max={} ms (signaling part: p50={} p99={} ms)",
            opt(self.setup_ms_p50),
            opt(self.setup_ms_p99),
            opt(self.setup_ms_max),
            opt(self.signaling_ms_p50),
            opt(self.signaling_ms_p99)
        ));
        out.push(format!(
            "audio     {} packets received, {} sent",
            self.audio_packets_received, self.audio_packets_sent
        ));
        out.push(format!(
            "dc rtt    p50={} p99={} ms over {} round trips",
            opt(self.datachannel_rtt_ms_p50),
            opt(self.datachannel_rtt_ms_p99),
            self.datachannel_rtt_samples
        ));
        out
    }
}

fn int(x: Option<impl std::fmt::Display>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| x.to_string())
}
