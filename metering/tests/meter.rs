//! The session meter against DESIGN.md §4 (M2–M9): table tests of each
//! rule, and property tests over random interleavings checked against an
//! independent model of when both participants were present; and its
//! driver against a sink and a store (an end the meter decides leaves it
//! once, with its bill).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::clock::ManualClock;
use parley_domain::protocol::{Outcome as WireOutcome, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Clock, Currency, Money, SessionId, Timestamp};
use parley_metering::{
    EndReason, Input, Meter, MeterConfig, MeterEnd, MeterEvent, MeterSettings, MeterSink, MeterStore, MeterStoreError,
    Meters, Outcome, Output, OwnerEpoch, Party, Price, Settlement, Snapshot,
};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000_000;

fn at(secs: f64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + (secs * 1000.0).round() as i64)
}

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn fixed(amount: i64) -> MeterConfig {
    MeterConfig::new(Price::Fixed { amount: eur(amount) }, Some(Duration::from_secs(3600)))
}

fn per_minute(rate: i64, hold: i64) -> MeterConfig {
    MeterConfig::new(Price::PerMinute { rate: eur(rate), hold: eur(hold) }, None)
}

/// Drives `meter` like the real driver: before each input, every deadline
/// due by then fires; after the script, deadlines fire until `until`.
fn drive(meter: &mut Meter, script: &[(f64, Input)], until: f64) -> Vec<(Timestamp, Output)> {
    let mut log = Vec::new();
    let fire_until = |meter: &mut Meter, t: Timestamp, log: &mut Vec<(Timestamp, Output)>| {
        while let Some(d) = meter.next_deadline().filter(|d| *d <= t) {
            log.extend(meter.handle(Input::Timeout, d).into_iter().map(|o| (d, o)));
        }
    };
    for (secs, input) in script {
        fire_until(meter, at(*secs), &mut log);
        log.extend(meter.handle(*input, at(*secs)).into_iter().map(|o| (at(*secs), o)));
    }
    fire_until(meter, at(until), &mut log);
    log
}

fn settlement(log: &[(Timestamp, Output)]) -> Settlement {
    let ended: Vec<Settlement> = log
        .iter()
        .filter_map(|(_, o)| match o {
            Output::Ended(s) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 1, "exactly one settlement: {log:?}");
    ended[0]
}

fn first(log: &[(Timestamp, Output)], pick: impl Fn(&Output) -> bool) -> Option<Timestamp> {
    log.iter().find(|(_, o)| pick(o)).map(|(t, _)| *t)
}

fn both_join() -> Vec<(f64, Input)> {
    vec![(0.0, Input::Join(Party::Seeker)), (0.0, Input::Join(Party::Consultant))]
}

#[test]
fn m6_ending_one_second_before_the_free_window_is_free() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.push((599.0, Input::End(Party::Seeker)));
    let log = drive(&mut m, &script, 2000.0);
    let s = settlement(&log);
    assert_eq!((s.outcome, s.billable_ms, s.amount), (Outcome::Free, 599_000, eur(0)));
    assert_eq!(s.reason, EndReason::Hangup(Party::Seeker));
    // M8: warned at F − 60 s, but billing never started.
    assert_eq!(first(&log, |o| matches!(o, Output::FreeWindowEnding { .. })), Some(at(540.0)));
    assert_eq!(first(&log, |o| matches!(o, Output::BillingStarted { .. })), None);
}

#[test]
fn m6_ending_at_exactly_the_free_window_is_charged_the_agreed_amount() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.push((600.0, Input::End(Party::Consultant)));
    let log = drive(&mut m, &script, 2000.0);
    let s = settlement(&log);
    assert_eq!((s.outcome, s.billable_ms, s.amount), (Outcome::Charged, 600_000, eur(5000)));
    assert_eq!(s.reason, EndReason::Hangup(Party::Consultant));
    assert_eq!(first(&log, |o| matches!(o, Output::BillingStarted { billable_secs: 600 })), Some(at(600.0)));
}

#[test]
fn m4_either_side_may_end_early() {
    for party in [Party::Seeker, Party::Consultant] {
        let mut m = Meter::new(fixed(5000), at(0.0));
        let mut script = both_join();
        script.push((42.5, Input::End(party)));
        let s = settlement(&drive(&mut m, &script, 100.0));
        assert_eq!(
            (s.reason, s.outcome, s.billable_ms, s.ended_at),
            (EndReason::Hangup(party), Outcome::Free, 42_500, at(42.5))
        );
    }
}

#[test]
fn m2_the_meter_starts_when_the_second_participant_joins() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let script =
        [(0.0, Input::Join(Party::Seeker)), (20.0, Input::Join(Party::Consultant)), (100.0, Input::End(Party::Seeker))];
    let log = drive(&mut m, &script, 200.0);
    assert_eq!(first(&log, |o| *o == Output::Live), Some(at(20.0)));
    assert_eq!(settlement(&log).billable_ms, 80_000);
}

#[test]
fn m3_a_drop_and_rejoin_within_grace_continues_and_the_absence_is_not_billed() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.extend([
        (300.0, Input::Leave(Party::Consultant)),
        (329.0, Input::Join(Party::Consultant)),
        (700.0, Input::End(Party::Seeker)),
    ]);
    let log = drive(&mut m, &script, 1000.0);
    let s = settlement(&log);
    assert_eq!((s.billable_ms, s.outcome), (671_000, Outcome::Charged));
    assert!(log.contains(&(at(300.0), Output::Paused { absent: Party::Consultant })));
    assert!(log.contains(&(at(329.0), Output::Live)));
}

#[test]
fn m3_absent_longer_than_grace_ends_the_session_as_of_the_drop() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.push((400.0, Input::Leave(Party::Seeker)));
    let log = drive(&mut m, &script, 1000.0);
    let s = settlement(&log);
    assert_eq!((s.reason, s.ended_at, s.billable_ms), (EndReason::Abandoned(Party::Seeker), at(400.0), 400_000));
    // The end is noticed when the grace runs out.
    assert_eq!(first(&log, |o| matches!(o, Output::Ended(_))), Some(at(430.0)));
}

#[test]
fn m3_when_both_drop_the_first_drop_ends_it() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.extend([(100.0, Input::Leave(Party::Seeker)), (110.0, Input::Leave(Party::Consultant))]);
    let s = settlement(&drive(&mut m, &script, 1000.0));
    assert_eq!((s.reason, s.ended_at, s.billable_ms), (EndReason::Abandoned(Party::Seeker), at(100.0), 100_000));
}

#[test]
fn m3_nobody_joining_within_grace_ends_it_unbilled() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let log = drive(&mut m, &[(5.0, Input::Join(Party::Seeker))], 100.0);
    let s = settlement(&log);
    assert_eq!((s.reason, s.billable_ms, s.outcome), (EndReason::Abandoned(Party::Consultant), 0, Outcome::Free));
}

#[test]
fn a_scheduled_room_opened_early_waits_for_the_no_show_time_not_grace() {
    // The room opens at 0; the start is at 600 s; no-show at 1500 s.
    let mut m = Meter::scheduled(fixed(5000), at(1500.0));
    let log = drive(&mut m, &[(5.0, Input::Join(Party::Seeker))], 1499.0);
    assert!(log.iter().all(|(_, o)| !matches!(o, Output::Ended(_))), "not abandoned before the no-show time: {log:?}");
    let log = drive(&mut m, &[(1000.0, Input::Join(Party::Consultant)), (1700.0, Input::End(Party::Seeker))], 1800.0);
    let s = settlement(&log);
    assert_eq!((s.reason, s.billable_ms, s.outcome), (EndReason::Hangup(Party::Seeker), 700_000, Outcome::Charged));
}

#[test]
fn leaving_a_scheduled_room_before_the_no_show_time_is_not_abandoning_it() {
    // Both come early (room open at 0, start 600 s, no-show 1500 s); the
    // seeker drops at 300 s: billable time stops, but `G` (30 s) runs from
    // the no-show time, so the session is not over before it starts.
    let mut m = Meter::scheduled(fixed(5000), at(1500.0));
    let script = [
        (10.0, Input::Join(Party::Seeker)),
        (20.0, Input::Join(Party::Consultant)),
        (300.0, Input::Leave(Party::Seeker)),
    ];
    let log = drive(&mut m, &script, 1529.0);
    assert!(log.iter().all(|(_, o)| !matches!(o, Output::Ended(_))), "still open before no-show + G: {log:?}");
    assert_eq!(m.billable_ms(), 280_000, "billable only while both were present");
    let log = drive(&mut m, &[], 1531.0);
    let s = settlement(&log);
    assert_eq!((s.reason, s.billable_ms), (EndReason::Abandoned(Party::Seeker), 280_000));
    assert_eq!(s.ended_at, at(1500.0), "counted from the no-show time, never after now");
}

#[test]
fn m7_per_minute_charges_started_minutes_beyond_the_free_window() {
    for (end, minutes) in [(600.0, 0), (600.001, 1), (660.0, 1), (661.0, 2), (719.999, 2)] {
        let mut m = Meter::new(per_minute(150, 100_000), at(0.0));
        let mut script = both_join();
        script.push((end, Input::End(Party::Seeker)));
        let s = settlement(&drive(&mut m, &script, end + 1.0));
        assert_eq!((s.outcome, s.amount), (Outcome::Charged, eur(150 * minutes)), "ended at {end} s");
    }
}

#[test]
fn m7_a_per_minute_session_is_warned_and_ended_when_its_hold_is_used_up() {
    // A hold of 10 minutes' worth: the session ends at F + 10 min.
    let mut m = Meter::new(per_minute(100, 1000), at(0.0));
    let log = drive(&mut m, &both_join(), 10_000.0);
    let s = settlement(&log);
    assert_eq!((s.reason, s.ended_at, s.billable_ms), (EndReason::HoldUsedUp, at(1200.0), 1_200_000));
    assert_eq!(s.amount, eur(1000), "capped at the hold");
    assert_eq!(first(&log, |o| matches!(o, Output::HoldEnding { .. })), Some(at(1140.0)));
}

#[test]
fn m4_the_booked_length_ends_the_session_counting_only_billable_time() {
    let cfg = MeterConfig::new(Price::Fixed { amount: eur(9000) }, Some(Duration::from_secs(1800)));
    let mut m = Meter::new(cfg, at(0.0));
    let mut script = both_join();
    script.extend([(100.0, Input::Leave(Party::Seeker)), (110.0, Input::Join(Party::Seeker))]);
    let s = settlement(&drive(&mut m, &script, 10_000.0));
    assert_eq!(
        (s.reason, s.ended_at, s.billable_ms, s.amount),
        (EndReason::LengthReached, at(1810.0), 1_800_000, eur(9000))
    );
}

#[test]
fn m4_a_limit_ends_the_session_with_its_bill_in_the_same_output() {
    // Each end the meter decides itself comes out as one output that carries
    // the reason, the time and the bill together: nothing to look up later.
    let per_minute_hold = per_minute(100, 1000);
    let length = MeterConfig::new(Price::Fixed { amount: eur(9000) }, Some(Duration::from_secs(1800)));
    let cases = [
        (per_minute_hold, both_join(), SessionEndReason::HoldUsedUp, at(1200.0), at(1200.0), 1200, eur(1000)),
        (length, both_join(), SessionEndReason::LengthReached, at(1800.0), at(1800.0), 1800, eur(9000)),
        // The consultant never came: decided when G ran out, as of the open.
        (
            fixed(5000),
            vec![(0.0, Input::Join(Party::Seeker))],
            SessionEndReason::Abandoned,
            at(30.0),
            at(0.0),
            0,
            eur(0),
        ),
    ];
    for (cfg, script, reason, decided_at, ended_at, secs, charge) in cases {
        let mut m = Meter::new(cfg, at(0.0));
        let log = drive(&mut m, &script, 10_000.0);
        let (i, end) = log
            .iter()
            .enumerate()
            .find_map(|(i, (_, o))| match o {
                Output::Ended(s) => Some((i, s.end())),
                _ => None,
            })
            .expect("the meter ended the session");
        assert_eq!(i, log.len() - 1, "the end is the last output: {log:?}");
        assert_eq!(log[i].0, decided_at, "{reason:?}: emitted when decided");
        let outcome = if charge.amount_minor > 0 { WireOutcome::Charged } else { WireOutcome::Free };
        assert_eq!(end, MeterEnd { reason, at: ended_at, bill: SessionBill { outcome, billable_secs: secs, charge } });
        assert_eq!(m.settlement().map(Settlement::end), Some(end), "the meter keeps the same decision");
    }
}

#[test]
fn m8_ticks_every_30_seconds_and_m9_checkpoints_every_10_while_live() {
    let mut m = Meter::new(fixed(5000), at(0.0));
    let mut script = both_join();
    script.extend([
        (60.0, Input::Leave(Party::Seeker)),
        (70.0, Input::Join(Party::Seeker)),
        (130.0, Input::End(Party::Seeker)),
    ]);
    let log = drive(&mut m, &script, 200.0);
    let ticks: Vec<(Timestamp, u64)> = log
        .iter()
        .filter_map(|(t, o)| match o {
            Output::Tick { billable_secs } => Some((*t, *billable_secs)),
            _ => None,
        })
        .collect();
    // Live 0–60 s and 70–130 s; the tick schedule restarts when live again.
    assert_eq!(ticks, [(at(30.0), 30), (at(60.0), 60), (at(100.0), 90), (at(130.0), 120)]);
    let checkpoints = log.iter().filter(|(_, o)| matches!(o, Output::Checkpoint(_))).count();
    assert_eq!(checkpoints, 12);
}

#[test]
fn m9_a_recovered_session_keeps_its_billable_time_and_gives_grace_to_reconnect() {
    let snapshot = Snapshot { billable_ms: 500_000, warned: false, billing_started: false, hold_warned: false };
    let mut m = Meter::recover(fixed(5000), snapshot, at(0.0));
    let script = [
        (10.0, Input::Join(Party::Seeker)),
        (20.0, Input::Join(Party::Consultant)),
        (220.0, Input::End(Party::Seeker)),
    ];
    let log = drive(&mut m, &script, 300.0);
    let s = settlement(&log);
    assert_eq!((s.billable_ms, s.outcome), (700_000, Outcome::Charged));
    assert_eq!(first(&log, |o| matches!(o, Output::FreeWindowEnding { billable_secs: 540 })), Some(at(60.0)));
    // Not reconnecting within G ends it as of the restart.
    let mut m = Meter::recover(fixed(5000), snapshot, at(0.0));
    let s = settlement(&drive(&mut m, &[], 100.0));
    assert_eq!((s.ended_at, s.billable_ms, s.outcome), (at(0.0), 500_000, Outcome::Free));
}

#[test]
fn m10_a_late_timer_never_bills_past_a_limit() {
    let mut m = Meter::new(per_minute(100, 1000), at(0.0));
    for (_, o) in both_join() {
        m.handle(o, at(0.0));
    }
    // The driver wakes an hour late.
    let out = m.handle(Input::Timeout, at(3600.0));
    let s = out
        .iter()
        .find_map(|o| match o {
            Output::Ended(s) => Some(*s),
            _ => None,
        })
        .unwrap();
    assert_eq!((s.billable_ms, s.ended_at), (1_200_000, at(1200.0)));
    // Warnings come before the end, in order.
    let kinds: Vec<&str> = out
        .iter()
        .map(|o| match o {
            Output::FreeWindowEnding { .. } => "warn",
            Output::BillingStarted { .. } => "billing",
            Output::HoldEnding { .. } => "hold",
            Output::Ended(_) => "ended",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["warn", "billing", "hold", "ended"]);
    assert!(m.handle(Input::Join(Party::Seeker), at(3601.0)).is_empty(), "nothing after the end");
    assert_eq!(m.next_deadline(), None);
}

// ----- properties ------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Op {
    Join(Party),
    Leave(Party),
    End(Party),
}

fn op() -> impl Strategy<Value = Op> {
    let party = prop_oneof![Just(Party::Seeker), Just(Party::Consultant)];
    (0..10u8, party).prop_map(|(k, p)| match k {
        0..=3 => Op::Join(p),
        4..=7 => Op::Leave(p),
        _ => Op::End(p),
    })
}

/// Both-present time up to `end`, from the inputs the meter accepted,
/// computed without the meter.
fn both_present_ms(applied: &[(Timestamp, Input)], end: Timestamp) -> u64 {
    let mut present = [false; 2];
    let mut since: Option<Timestamp> = None;
    let mut total = 0;
    for (t, input) in applied.iter().filter(|(t, _)| *t <= end) {
        let before = present[0] && present[1];
        match input {
            Input::Join(Party::Seeker) => present[0] = true,
            Input::Join(Party::Consultant) => present[1] = true,
            Input::Leave(Party::Seeker) => present[0] = false,
            Input::Leave(Party::Consultant) => present[1] = false,
            _ => {}
        }
        let now_both = present[0] && present[1];
        if !before && now_both {
            since = Some(*t);
        } else if before && !now_both {
            total += t.since(since.take().unwrap()).as_millis() as u64;
        }
    }
    if let Some(s) = since {
        total += end.since(s).as_millis() as u64;
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any interleaving of join / leave / rejoin / end / time passing:
    /// billable time equals the time both were present before the end
    /// (so never more), charged iff billable ≥ F, the capture never
    /// exceeds the hold, exactly one settlement.
    #[test]
    fn any_interleaving_bills_only_both_present_time_and_settles_once(
        steps in prop::collection::vec((0u64..400_000, op()), 0..40),
        per_minute_price in any::<bool>(),
    ) {
        let cfg = if per_minute_price { per_minute(120, 2_400) } else { fixed(5000) };
        let hold = match cfg.price { Price::Fixed { amount } => amount, Price::PerMinute { hold, .. } => hold };
        let mut m = Meter::new(cfg, at(0.0));
        let mut now = at(0.0);
        let mut applied = Vec::new();
        let mut log = Vec::new();
        for (gap_ms, op) in steps {
            let next = now.plus(Duration::from_millis(gap_ms));
            while let Some(d) = m.next_deadline().filter(|d| *d <= next) {
                prop_assert!(d >= now, "deadlines never lie in the past");
                log.extend(m.handle(Input::Timeout, d));
                now = d;
            }
            now = next;
            let input = match op { Op::Join(p) => Input::Join(p), Op::Leave(p) => Input::Leave(p), Op::End(p) => Input::End(p) };
            if m.settlement().is_none() {
                applied.push((now, input));
            }
            log.extend(m.handle(input, now));
        }
        // Let it end by itself if it has not: nobody is ever present forever.
        for p in [Party::Seeker, Party::Consultant] {
            log.extend(m.handle(Input::Leave(p), now));
            applied.push((now, Input::Leave(p)));
        }
        while let Some(d) = m.next_deadline() {
            log.extend(m.handle(Input::Timeout, d));
        }
        let ended: Vec<Settlement> = log.iter().filter_map(|o| match o { Output::Ended(s) => Some(*s), _ => None }).collect();
        prop_assert_eq!(ended.len(), 1);
        let s = ended[0];
        prop_assert_eq!(s.billable_ms, both_present_ms(&applied, s.ended_at));
        prop_assert_eq!(s.outcome == Outcome::Charged, s.billable_ms >= 600_000);
        prop_assert!(s.amount.amount_minor <= hold.amount_minor);
        prop_assert!(s.amount.amount_minor >= 0);
        if s.outcome == Outcome::Free {
            prop_assert_eq!(s.amount.amount_minor, 0);
        }
    }
}

// ----- the driver: an end the meter decides leaves it once, with its bill -----

/// What the room does with a meter-decided end.
#[derive(Clone, Copy, Debug)]
enum Room {
    /// Open: it ends the session with the bill it is given.
    Open,
    /// Gone (the session is not open on this node).
    Gone,
    /// A hang-up ended it first: signaling took the bill through `ending`.
    HungUpFirst,
}

#[derive(Default)]
struct Recorded {
    ends: Vec<(SessionId, MeterEnd)>,
    hangup_bills: Vec<Option<SessionBill>>,
    orphans: Vec<(SessionId, SessionBill, SessionEndReason, Timestamp)>,
}

struct Fake {
    room: Room,
    meters: Mutex<Weak<Meters>>,
    clock: Arc<ManualClock>,
    seen: Mutex<Recorded>,
}

impl Fake {
    fn seen(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.seen.lock().unwrap()
    }
}

struct Sink(Arc<Fake>);
struct Store(Arc<Fake>);

#[async_trait]
impl MeterSink for Sink {
    fn send(&self, _: &SessionId, _: ServerMessage) {}

    async fn end(&self, session_id: &SessionId, end: &MeterEnd) -> bool {
        let f = &self.0;
        f.seen().ends.push((session_id.clone(), *end));
        // Whether the room was open and stored the end with this bill.
        match f.room {
            Room::Open => true,
            Room::Gone => false,
            Room::HungUpFirst => {
                let meters = f.meters.lock().unwrap().upgrade().expect("meters");
                let bill = meters.ending(session_id, SessionEndReason::Hangup, Some(Role::Seeker), f.clock.now());
                f.seen().hangup_bills.push(bill);
                false
            }
        }
    }
}

#[async_trait]
impl MeterStore for Store {
    async fn meter_event(
        &self,
        _: &SessionId,
        _: OwnerEpoch,
        _: &MeterEvent,
        _: Timestamp,
    ) -> Result<(), MeterStoreError> {
        Ok(())
    }

    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        _: OwnerEpoch,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError> {
        self.0.seen().orphans.push((session_id.clone(), *bill, reason, at));
        Ok(())
    }
}

/// Waits (bounded) until `done` holds, yielding to the driver's tasks.
async fn until(what: &str, done: impl Fn() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn m4_the_meter_ends_a_session_once_with_its_bill_and_nobody_asks_it_again() {
    let eur = Currency::parse("EUR").unwrap();
    for room in [Room::Open, Room::Gone, Room::HungUpFirst] {
        let clock = Arc::new(ManualClock::new(Timestamp::from_unix_millis(T0)));
        let fake =
            Arc::new(Fake { room, meters: Mutex::new(Weak::new()), clock: clock.clone(), seen: Mutex::default() });
        let settings = MeterSettings { free_window: Duration::from_secs(60), ..MeterSettings::default() };
        let meters = Meters::new(settings, eur, clock.clone() as Arc<dyn Clock>, Arc::new(Store(fake.clone())));
        meters.set_sink(Arc::new(Sink(fake.clone())));
        *fake.meters.lock().unwrap() = Arc::downgrade(&meters);

        // A fixed price of 5.00 EUR, booked for 2 minutes of billable time.
        let sid = SessionId::parse("ses_meter_end").unwrap();
        let cfg = settings.config(Price::Fixed { amount: Money::new(500, eur) }, Some(Duration::from_secs(120)));
        meters.expect(&sid, cfg);
        let t0 = clock.now();
        meters.opened(&sid, t0);
        meters.joined(&sid, Role::Seeker, t0);
        meters.joined(&sid, Role::Consultant, t0);
        clock.advance(Duration::from_secs(120));
        // The timer task times the meter out; its carrier ends the session
        // and stores what it must, then stops.
        until("the driver is done with the session", || meters.live_sessions() == 0 && meters.driver_tasks() == 0)
            .await;

        let bill = SessionBill { outcome: WireOutcome::Charged, billable_secs: 120, charge: Money::new(500, eur) };
        let end = MeterEnd { reason: SessionEndReason::LengthReached, at: t0.plus(Duration::from_secs(120)), bill };
        let seen = fake.seen();
        assert_eq!(seen.ends, vec![(sid.clone(), end)], "{room:?}: one end, with its bill");
        assert_eq!(meters.live_sessions(), 0, "{room:?}: no longer metered");
        assert_eq!(
            meters.ending(&sid, SessionEndReason::Hangup, None, clock.now()),
            None,
            "{room:?}: nothing left to ask"
        );
        match room {
            Room::Open => assert!(seen.orphans.is_empty(), "the room stored the end with its bill"),
            Room::Gone => {
                assert_eq!(seen.orphans, vec![(sid.clone(), bill, end.reason, end.at)], "stored by the driver")
            }
            Room::HungUpFirst => {
                assert_eq!(seen.hangup_bills, vec![Some(bill)], "the racing hang-up gets the same bill");
                assert!(seen.orphans.is_empty(), "stored once, by the hang-up");
            }
        }
    }
}
