//! Meter transitions per second: the cost of the pure [`Meter`] state
//! machine, without the driver, the clock or the store.
//!
//! * `session_script/*`: one whole session per iteration — open, two joins,
//!   20 [`Input::Timeout`]s at successive deadlines (checkpoints every 10 s,
//!   ticks every 30 s), a leave, a rejoin and a hang-up: 25 inputs,
//!   reported as elements (inputs handled) per second. Once with a fixed
//!   price and a 60 min limit, once per-minute (more thresholds to check).
//! * `timeout/at_deadline`: `handle(Timeout)` on a live meter at its next
//!   deadline (emits a checkpoint and/or tick each time).
//! * `timeout/not_due`: `handle(Timeout)` on a live meter before any
//!   deadline (the driver's wake-up when nothing is due).
//! * `next_deadline/live`: [`Meter::next_deadline`] on a live meter.
//!
//! Run with `cargo bench -p parley-metering` (about 30 s in all).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use parley_domain::{Currency, Money, Timestamp};
use parley_metering::{Input, Meter, MeterConfig, Party, Price};

/// Server time of the first input, Unix ms.
const T0: i64 = 1_800_000_000_000;
/// Timeouts per scripted session (20 × 10 s: 200 s of billable time).
const TIMEOUTS: usize = 20;
/// Inputs per scripted session: 2 joins, the timeouts, leave, rejoin, end.
const SCRIPT_INPUTS: u64 = 2 + TIMEOUTS as u64 + 3;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").expect("valid currency"))
}

fn fixed() -> MeterConfig {
    MeterConfig::new(Price::Fixed { amount: eur(5_000) }, Some(Duration::from_secs(3600)))
}

fn per_minute() -> MeterConfig {
    MeterConfig::new(Price::PerMinute { rate: eur(200), hold: eur(12_000) }, None)
}

fn at_ms(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms)
}

/// One whole session; returns the number of outputs (so nothing is
/// optimised away).
fn session_script(cfg: MeterConfig) -> usize {
    let mut meter = Meter::new(cfg, at_ms(0));
    let mut outputs = meter.handle(Input::Join(Party::Consultant), at_ms(500)).len();
    outputs += meter.handle(Input::Join(Party::Seeker), at_ms(1_000)).len();
    let mut now = at_ms(1_000);
    for _ in 0..TIMEOUTS {
        now = meter.next_deadline().expect("a live meter has a deadline");
        outputs += meter.handle(Input::Timeout, now).len();
    }
    now = now.plus(Duration::from_millis(250));
    outputs += meter.handle(Input::Leave(Party::Seeker), now).len();
    now = now.plus(Duration::from_secs(5));
    outputs += meter.handle(Input::Join(Party::Seeker), now).len();
    now = now.plus(Duration::from_secs(3));
    outputs += meter.handle(Input::End(Party::Seeker), now).len();
    debug_assert!(meter.settlement().is_some());
    outputs
}

/// A meter with both participants joined at `at_ms(0)`.
fn live(cfg: MeterConfig) -> Meter {
    let mut meter = Meter::new(cfg, at_ms(0));
    meter.handle(Input::Join(Party::Seeker), at_ms(0));
    meter.handle(Input::Join(Party::Consultant), at_ms(0));
    meter
}

fn bench_script(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_script");
    group.throughput(Throughput::Elements(SCRIPT_INPUTS));
    group.bench_function("fixed", |b| b.iter(|| session_script(black_box(fixed()))));
    group.bench_function("per_minute", |b| b.iter(|| session_script(black_box(per_minute()))));
    group.finish();
}

fn bench_timeout(c: &mut Criterion) {
    let mut group = c.benchmark_group("timeout");
    group.throughput(Throughput::Elements(1));
    // Runs one long session: a checkpoint every 10 s of server time, ticks,
    // the free-window notices once; never reaches an end (no limit).
    let mut meter = live(MeterConfig::new(Price::Fixed { amount: eur(5_000) }, None));
    group.bench_function("at_deadline", |b| {
        b.iter(|| {
            let now = meter.next_deadline().expect("live");
            black_box(meter.handle(Input::Timeout, now))
        })
    });
    let mut meter = live(fixed());
    let now = at_ms(1);
    group.bench_function("not_due", |b| b.iter(|| black_box(meter.handle(Input::Timeout, black_box(now)))));
    group.finish();
}

fn bench_next_deadline(c: &mut Criterion) {
    let mut group = c.benchmark_group("next_deadline");
    group.throughput(Throughput::Elements(1));
    let fixed_live = live(fixed());
    group.bench_function("live_fixed", |b| b.iter(|| black_box(&fixed_live).next_deadline()));
    let per_minute_live = live(per_minute());
    group.bench_function("live_per_minute", |b| b.iter(|| black_box(&per_minute_live).next_deadline()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30);
    targets = bench_script, bench_timeout, bench_next_deadline
}
criterion_main!(benches);
