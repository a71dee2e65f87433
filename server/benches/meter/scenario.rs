//! The meter scenario: many live sessions on one in-process meter driver.
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
use parley_load::report::{Counts, bump};
use parley_load::stats::{self, Latencies};
use parley_load::{procfs, run_id};
use parley_metering::{
    MeterEnd, MeterEvent, MeterSettings, MeterSink, MeterStore, MeterStoreError, Meters, OwnerEpoch, Price,
};
use parley_server::store::SqlStore;
use tokio::time::Instant;

use crate::report::MeterReport;

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
            || host.parse().is_ok_and(parley_load::target::is_loopback)
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
        epoch: OwnerEpoch,
        event: &MeterEvent,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        if matches!(event, MeterEvent::Checkpoint(_)) {
            self.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        self.counted(&self.latency, self.inner.meter_event(session_id, epoch, event, at)).await
    }

    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.settlements.fetch_add(1, Ordering::Relaxed);
        self.counted(&self.settlement_latency, self.inner.orphan_settlement(session_id, epoch, bill, reason, at)).await
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

    async fn end(&self, _session_id: &SessionId, end: &MeterEnd) -> bool {
        // No hub here: the session is "not open", so the driver stores the
        // settlement itself.
        match end.reason {
            SessionEndReason::Hangup => self.hangup_echoes.fetch_add(1, Ordering::Relaxed),
            _ => self.ended.fetch_add(1, Ordering::Relaxed),
        };
        false
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
pub fn start_offset(i: usize, n: usize, ramp: Duration) -> Duration {
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
    eprintln!("meter: opening {} sessions over {:.3} s ({database})", opts.sessions, opts.ramp.as_secs_f64());
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
        "meter: {} sessions live after {:.3} s; steady until {:.3} s",
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
    eprintln!("meter: hanging up {opened} sessions");
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
