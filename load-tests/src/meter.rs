//! `parley-load meter`: many live sessions on one in-process meter driver.
//!
//! Runs the server's own [`Meters`] (one driver task per session) with the
//! system clock and a real [`SqlStore`] (SQLite in a temp dir, or the
//! database `--database-url` names), without signaling or WebSockets:
//!
//! 1. **Ramp.** `sessions` sessions open, each with a fixed price and the
//!    60 min instant-call limit ([`Meters::expect`], [`Meters::opened`]) and
//!    both participants join at once ([`Meters::joined`] × 2). Session `i`
//!    starts `i / sessions × ramp` in, so their 10 s checkpoints and 30 s
//!    ticks are spread evenly instead of firing together.
//! 2. **Steady.** Every session stays live until `secs` after the start:
//!    the driver wakes each meter at its deadlines, stores checkpoints
//!    through the store's group-commit writer and sends `meter.tick`s to a
//!    counting [`MeterSink`] (no hub, nothing is sent anywhere).
//! 3. **End.** Every session hangs up ([`Meters::ending`]), which must
//!    return its settlement; the run waits (bounded) for the drivers' last
//!    writes.
//!
//! Measured: deadline lateness (server clock now − deadline, per
//! [`Meters::observe_lateness`]; 1 ms resolution, the clock's), store calls
//! and their latency (a counting [`MeterStore`] around the [`SqlStore`]),
//! notices, this process's CPU, and its RSS growth per live session.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::clock::SystemClock;
use parley_domain::protocol::{Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Clock, Currency, Money, SessionId, Timestamp};
use parley_metering::{MeterEvent, MeterSettings, MeterSink, MeterStore, MeterStoreError, Meters, Price};
use parley_server::store::SqlStore;
use serde::Serialize;
use tokio::time::Instant;

use crate::report::{Counts, bump, opt};
use crate::stats::{self, Latencies};
use crate::{procfs, run_id};

/// The lateness the meter should stay within at the 99th percentile, ms.
pub const LATENESS_TARGET_P99_MS: f64 = 50.0;
/// How often the ramp opens the sessions that are due.
const RAMP_STEP: Duration = Duration::from_millis(5);
/// Hang-ups between two yields to the runtime: in the server they come
/// from many connection tasks, not one loop that starves the drivers.
const ENDINGS_PER_YIELD: usize = 100;
/// How long the drivers may take to finish their last writes after the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The price of every session: a fixed amount (minor units, EUR).
const PRICE_MINOR: i64 = 5_000;
/// The instant-call maximum length (DESIGN.md M7): the sessions' limit.
const MAX_LENGTH: Duration = Duration::from_secs(3600);

/// What to run.
#[derive(Debug, Clone)]
pub struct MeterOptions {
    /// Concurrent live sessions.
    pub sessions: usize,
    /// Length of the run, from the first session opening to the hang-ups.
    pub duration: Duration,
    /// Over how long the sessions open (evenly); shorter than `duration`.
    pub ramp: Duration,
    /// The meter settings (checkpoint and tick intervals: DESIGN.md M8, M9).
    pub settings: MeterSettings,
    /// `sqlite:` or `postgres://` URL; `None`: a fresh SQLite file in a
    /// temp dir, removed afterwards.
    pub database_url: Option<String>,
}

impl MeterOptions {
    /// `sessions` sessions for `duration` with the default settings and the
    /// ramp [`default_ramp`] gives, on a temp SQLite database.
    pub fn new(sessions: usize, duration: Duration) -> Self {
        let settings = MeterSettings::default();
        MeterOptions { sessions, duration, ramp: default_ramp(&settings, duration), settings, database_url: None }
    }
}

/// The default ramp: one checkpoint interval (so checkpoints are spread
/// evenly over it), at most half the run.
pub fn default_ramp(settings: &MeterSettings, duration: Duration) -> Duration {
    settings.checkpoint_interval.min(duration / 2)
}

/// Checks `--database-url` and names its backend: `sqlite:` (a local
/// file), or `postgres://` / `postgresql://` on this machine (a loopback
/// host, `localhost`, or a Unix socket). The run writes thousands of rows a
/// second; like the rest of `parley-load` it never leaves this machine.
pub fn check_database_url(url: &str) -> anyhow::Result<&'static str> {
    if url.starts_with("sqlite:") {
        return Ok("sqlite");
    }
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        anyhow::bail!("--database-url: expected a sqlite: or postgres:// URL");
    }
    let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--database-url is not a URL: {e}"))?;
    let local = |host: &str| {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host.is_empty()
            || host.starts_with('/')
            || host.eq_ignore_ascii_case("localhost")
            || host.parse().is_ok_and(crate::target::is_loopback)
    };
    let query_hosts: Vec<String> =
        parsed.query_pairs().filter(|(k, _)| k == "host" || k == "hostaddr").map(|(_, v)| v.into_owned()).collect();
    if !local(parsed.host_str().unwrap_or_default()) || !query_hosts.iter().all(|h| local(h)) {
        anyhow::bail!(
            "--database-url: refusing a non-local PostgreSQL host: parley-load only talks to this machine \
             (127.x.x.x, ::1, localhost or a Unix socket)"
        );
    }
    Ok("postgres")
}

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

/// A [`MeterStore`] that counts and times the calls it passes on.
struct CountingStore {
    inner: Arc<dyn MeterStore>,
    writes: AtomicU64,
    checkpoints: AtomicU64,
    settlements: AtomicU64,
    errors: AtomicU64,
    in_flight: AtomicI64,
    /// Latency of `meter_event` calls (checkpoints, notices).
    latency: Mutex<Latencies>,
    /// Latency of `orphan_settlement` calls.
    settlement_latency: Mutex<Latencies>,
}

impl CountingStore {
    fn new(inner: Arc<dyn MeterStore>) -> Self {
        CountingStore {
            inner,
            writes: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            settlements: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            in_flight: AtomicI64::new(0),
            latency: Mutex::new(Latencies::new()),
            settlement_latency: Mutex::new(Latencies::new()),
        }
    }

    /// Counts `write` and records its latency into `latency`.
    async fn counted(
        &self,
        latency: &Mutex<Latencies>,
        write: impl Future<Output = Result<(), MeterStoreError>>,
    ) -> Result<(), MeterStoreError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = write.await;
        lock(latency).record(started.elapsed());
        self.writes.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        result
    }
}

#[async_trait]
impl MeterStore for CountingStore {
    async fn meter_event(
        &self,
        session_id: &SessionId,
        event: &MeterEvent,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        if matches!(event, MeterEvent::Checkpoint(_)) {
            self.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        self.counted(&self.latency, self.inner.meter_event(session_id, event, at)).await
    }

    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.settlements.fetch_add(1, Ordering::Relaxed);
        self.counted(&self.settlement_latency, self.inner.orphan_settlement(session_id, bill, reason, at)).await
    }
}

/// A [`MeterSink`] in place of the signaling hub: counts what it would send.
#[derive(Default)]
struct CountingSink {
    sent: AtomicU64,
    by_type: Mutex<Counts>,
    /// `end` calls for a reason other than a hang-up.
    ended: AtomicU64,
    /// `end` calls for a hang-up.
    hangup_echoes: AtomicU64,
}

#[async_trait]
impl MeterSink for CountingSink {
    fn send(&self, _session_id: &SessionId, msg: ServerMessage) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        bump(&mut lock(&self.by_type), msg.type_name());
    }

    async fn end(&self, _session_id: &SessionId, reason: SessionEndReason) {
        // No hub here: the session is "not open", so the driver stores the
        // settlement itself.
        match reason {
            SessionEndReason::Hangup => self.hangup_echoes.fetch_add(1, Ordering::Relaxed),
            _ => self.ended.fetch_add(1, Ordering::Relaxed),
        };
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// CPU used between two readings (seconds) over `wall` seconds, as percent
/// of one core; `None` without both readings or wall time.
fn cpu_percent(before: Option<f64>, after: Option<f64>, wall: f64) -> Option<f64> {
    match (before, after) {
        (Some(b), Some(a)) if wall > 0.0 => Some(stats::round3((a - b) / wall * 100.0)),
        _ => None,
    }
}

fn per_sec(count: u64, secs: f64) -> f64 {
    if secs > 0.0 { stats::round3(count as f64 / secs) } else { 0.0 }
}

/// When session `i` of `n` opens, `ramp` spreading them evenly.
fn start_offset(i: usize, n: usize, ramp: Duration) -> Duration {
    if n == 0 { Duration::ZERO } else { ramp.mul_f64(i as f64 / n as f64) }
}

/// Runs the scenario.
pub async fn run(opts: MeterOptions) -> anyhow::Result<MeterReport> {
    anyhow::ensure!(opts.sessions > 0, "--sessions must be at least 1");
    anyhow::ensure!(
        opts.ramp < opts.duration,
        "the ramp ({:?}) must be shorter than the run ({:?})",
        opts.ramp,
        opts.duration
    );
    // For PostgreSQL over TLS (sqlx's rustls needs a process-wide provider).
    let _ = rustls::crypto::ring::default_provider().install_default();

    if let Some(url) = &opts.database_url {
        check_database_url(url)?;
    }
    let temp_dir = match opts.database_url {
        Some(_) => None,
        None => Some(tempfile::tempdir()?),
    };
    let (url, database) = match (&opts.database_url, &temp_dir) {
        (Some(url), _) => (url.clone(), check_database_url(url)?.to_owned()),
        (None, Some(dir)) => {
            (format!("sqlite://{}?mode=rwc", dir.path().join("meter.db").display()), "sqlite (temp dir)".to_owned())
        }
        (None, None) => unreachable!("a temp dir is made when no URL is given"),
    };
    let sql = SqlStore::connect(&url).await?;
    let store = Arc::new(CountingStore::new(Arc::new(sql.clone())));
    let sink = Arc::new(CountingSink::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let eur = Currency::parse("EUR").expect("valid currency");
    let meters = Meters::new(opts.settings, eur, clock.clone(), store.clone());
    meters.set_sink(sink.clone());
    let lateness = Arc::new(Mutex::new(Latencies::new()));
    {
        let lateness = lateness.clone();
        meters.observe_lateness(move |d| lock(&lateness).record(d));
    }
    let cfg = opts.settings.config(Price::Fixed { amount: Money::new(PRICE_MINOR, eur) }, Some(MAX_LENGTH));
    let run = run_id();
    let ids: Vec<SessionId> = (0..opts.sessions)
        .map(|i| SessionId::parse(format!("ses_load_{run}_{i}")).expect("valid session id"))
        .collect();
    let mut joined_at: Vec<Option<Timestamp>> = vec![None; opts.sessions];

    // ----- ramp -----------------------------------------------------------
    let rss_before = procfs::own_rss_kib();
    let cpu_start = procfs::own_cpu_secs();
    eprintln!(
        "parley-load: meter: opening {} sessions over {:.3} s ({database})",
        opts.sessions,
        opts.ramp.as_secs_f64()
    );
    let started = Instant::now();
    let end_at = started + opts.duration;
    let mut next = 0;
    // Bounded: each pass opens every session due by now; all are due at `ramp`.
    while next < opts.sessions && Instant::now() < end_at {
        let elapsed = started.elapsed();
        while next < opts.sessions && start_offset(next, opts.sessions, opts.ramp) <= elapsed {
            let now = clock.now();
            meters.expect(&ids[next], cfg);
            meters.opened(&ids[next], now);
            meters.joined(&ids[next], Role::Consultant, now);
            meters.joined(&ids[next], Role::Seeker, now);
            joined_at[next] = Some(now);
            next += 1;
        }
        if next < opts.sessions {
            tokio::time::sleep(RAMP_STEP).await;
        }
    }
    let opened = next as u64;
    let steady_start = Instant::now();
    let rss_live = procfs::own_rss_kib();
    let cpu_steady = procfs::own_cpu_secs();
    let (writes_steady, notices_steady) = (store.writes.load(Ordering::Relaxed), sink.sent.load(Ordering::Relaxed));
    eprintln!(
        "parley-load: meter: {} sessions live after {:.3} s; steady until {:.3} s",
        meters.live_sessions(),
        started.elapsed().as_secs_f64(),
        opts.duration.as_secs_f64()
    );

    // ----- steady ---------------------------------------------------------
    tokio::time::sleep_until(end_at).await;
    let steady_secs = steady_start.elapsed().as_secs_f64();
    let rss_end = procfs::own_rss_kib();
    let cpu_end = procfs::own_cpu_secs();
    let (writes_end, notices_end) = (store.writes.load(Ordering::Relaxed), sink.sent.load(Ordering::Relaxed));

    // ----- end ------------------------------------------------------------
    eprintln!("parley-load: meter: hanging up {opened} sessions");
    let checkpoint_ms = opts.settings.checkpoint_interval.as_millis().max(1) as u64;
    let (mut settlements, mut missing, mut checkpoints_expected) = (0u64, 0u64, 0u64);
    let mut billing_error_ms_max: Option<i64> = None;
    for (i, (id, joined)) in ids.iter().zip(&joined_at).enumerate() {
        if i % ENDINGS_PER_YIELD == 0 {
            tokio::task::yield_now().await;
        }
        let Some(joined) = *joined else { continue };
        let now = clock.now();
        checkpoints_expected += now.since(joined).as_millis() as u64 / checkpoint_ms;
        match meters.ending(id, SessionEndReason::Hangup, Some(Role::Seeker), now) {
            Some(bill) => {
                settlements += 1;
                let truth = now.unix_millis() - joined.unix_millis();
                let billed = i64::try_from(bill.billable_secs).unwrap_or(i64::MAX).saturating_mul(1000);
                let error = (truth - billed).abs();
                billing_error_ms_max = Some(billing_error_ms_max.map_or(error, |m| m.max(error)));
            }
            None => missing += 1,
        }
    }
    // The drivers store what came before each end, then stop: wait for them.
    let drain_until = Instant::now() + DRAIN_TIMEOUT;
    while (meters.driver_tasks() > 0 || store.in_flight.load(Ordering::Relaxed) > 0) && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let duration_secs = started.elapsed().as_secs_f64();
    let cpu_total = procfs::own_cpu_secs();

    let lateness = lock(&lateness).clone();
    let latency = lock(&store.latency).clone();
    let settlement_latency = lock(&store.settlement_latency).clone();
    let lateness_p99 = lateness.quantile_ms(0.99);
    let rss_kib_per_session = match (rss_before, rss_live) {
        (Some(b), Some(l)) if opened > 0 => Some(stats::round3((l as f64 - b as f64) / opened as f64)),
        _ => None,
    };
    let notices: BTreeMap<String, u64> = lock(&sink.by_type).clone();
    let report = MeterReport {
        sessions: opts.sessions,
        secs: opts.duration.as_secs_f64(),
        checkpoint_secs: opts.settings.checkpoint_interval.as_secs_f64(),
        tick_secs: opts.settings.tick_interval.as_secs_f64(),
        ramp_secs: opts.ramp.as_secs_f64(),
        database,
        opened,
        duration_secs: stats::round3(duration_secs),
        steady_secs: stats::round3(steady_secs),
        cpu_percent: cpu_percent(cpu_steady, cpu_end, steady_secs),
        cpu_percent_total: cpu_percent(cpu_start, cpu_total, duration_secs),
        db_writes_per_sec: per_sec(writes_end - writes_steady, steady_secs),
        db_writes: store.writes.load(Ordering::Relaxed),
        checkpoints: store.checkpoints.load(Ordering::Relaxed),
        checkpoints_expected,
        db_errors: store.errors.load(Ordering::Relaxed),
        db_write_ms_p50: latency.quantile_ms(0.50),
        db_write_ms_p99: latency.quantile_ms(0.99),
        db_write_ms_max: latency.quantile_ms(1.0),
        settlement_write_ms_p99: settlement_latency.quantile_ms(0.99),
        deadlines: lateness.count(),
        lateness_ms_p50: lateness.quantile_ms(0.50),
        lateness_ms_p90: lateness.quantile_ms(0.90),
        lateness_ms_p99: lateness_p99,
        lateness_ms_max: lateness.quantile_ms(1.0),
        lateness_within_target: lateness_p99.map(|p99| p99 <= LATENESS_TARGET_P99_MS),
        rss_kib_before: rss_before,
        rss_kib_live: rss_live,
        rss_kib_end: rss_end,
        rss_kib_per_session,
        notices_per_sec: per_sec(notices_end - notices_steady, steady_secs),
        notices,
        settlements,
        settlements_missing: missing,
        meter_ended: sink.ended.load(Ordering::Relaxed),
        hangup_echoes: sink.hangup_echoes.load(Ordering::Relaxed),
        settlement_writes: store.settlements.load(Ordering::Relaxed),
        billing_error_ms_max,
        left_live: meters.live_sessions(),
        left_in_flight: store.in_flight.load(Ordering::Relaxed),
    };
    drop((meters, store));
    sql.pool().close().await;
    drop(temp_dir);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_json_line_has_the_documented_fields() {
        let line = crate::report::json_line(&report());
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

    #[test]
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

    #[test]
    fn the_summary_names_every_figure() {
        let text = report().summary_lines().join("\n");
        for word in ["cpu", "lateness", "store", "notices", "memory", "settled", "meter.tick=20000"] {
            assert!(text.contains(word), "{word}: {text}");
        }
    }

    #[test]
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

    #[test]
    fn sessions_start_evenly_over_the_ramp() {
        let ramp = Duration::from_secs(10);
        assert_eq!(start_offset(0, 4, ramp), Duration::ZERO);
        assert_eq!(start_offset(2, 4, ramp), Duration::from_secs(5));
        assert!(start_offset(3, 4, ramp) < ramp);
        let settings = MeterSettings::default();
        assert_eq!(default_ramp(&settings, Duration::from_secs(60)), Duration::from_secs(10));
        assert_eq!(default_ramp(&settings, Duration::from_secs(4)), Duration::from_secs(2));
    }
}
