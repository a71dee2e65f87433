//! The session meter: a pure state machine that turns joins, drops, ends and
//! the passing of server time into billable time, the free-window outcome
//! and the amount to capture (DESIGN.md §4, M1–M9).
//!
//! It never reads a clock and does no IO (ARCHITECTURE.md invariant): every
//! call takes `now`, and [`Meter::next_deadline`] says when the driver must
//! call [`Meter::handle`] with [`Input::Timeout`] next — the str0m style.
//! Outputs are facts for the driver to store, tell the participants, and
//! (for [`Output::Ended`]) hand to billing as the settlement decision: the
//! end's reason and time come out together with its bill
//! ([`Settlement::end`]), so nobody asks the meter for the bill again.
//!
//! Time is counted in milliseconds of server time (M1); billable time only
//! runs while both participants are present (M2, M5), so a late timer or a
//! restart can only ever round in the seeker's favour.

use std::time::Duration;

use parley_domain::protocol::{Outcome as WireOutcome, SessionBill, SessionEndReason};
use parley_domain::{Money, Timestamp};

pub mod driver;

pub use driver::{
    BookedSession, MeterEvent, MeterSettings, MeterSink, MeterStore, MeterStoreError, Meters, OwnerEpoch,
};

/// A session's end as the meter decided it, in wire terms: why, when, and
/// its bill — what signaling stores with the end and sends in
/// `session.ended`, and billing settles (DESIGN.md M4, M5–M7, B3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterEnd {
    /// Why it ended.
    pub reason: SessionEndReason,
    /// When it ended (server time; for an abandoned session, the drop).
    pub at: Timestamp,
    /// What it costs: outcome, billable seconds (rounded down), amount in
    /// minor units.
    pub bill: SessionBill,
}

/// Who is in the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Party {
    /// Pays.
    Seeker,
    /// Is paid.
    Consultant,
}

impl Party {
    const BOTH: [Party; 2] = [Party::Seeker, Party::Consultant];

    fn index(self) -> usize {
        match self {
            Party::Seeker => 0,
            Party::Consultant => 1,
        }
    }
}

/// How the session is priced (DESIGN.md M7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Price {
    /// The agreed amount, captured in full once billable time reaches the
    /// free window. The hold is this amount.
    Fixed {
        /// Agreed amount.
        amount: Money,
    },
    /// `rate` per started minute of billable time beyond the free window,
    /// capped at `hold`; the session ends when the hold is used up.
    PerMinute {
        /// Price of one started minute.
        rate: Money,
        /// The payment hold (rate × maximum length, DESIGN.md B2).
        hold: Money,
    },
}

/// The meter's settings (DESIGN.md §4 defaults in [`MeterConfig::new`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterConfig {
    /// Free window `F` (M6): billable time below it is free.
    pub free_window: Duration,
    /// Grace `G` (M3): how long a participant may be absent.
    pub grace: Duration,
    /// `meter.free_window_ending` comes this long before `F` (M8).
    pub warn_before: Duration,
    /// `meter.tick` interval while live (M8).
    pub tick_interval: Duration,
    /// Checkpoint interval while live (M9).
    pub checkpoint_interval: Duration,
    /// Booked length, or the instant-call maximum: billable time at which
    /// the session ends (M4). `None`: no limit but the hold's.
    pub max_billable: Option<Duration>,
    /// The price model.
    pub price: Price,
}

impl MeterConfig {
    /// DESIGN.md defaults: F = 600 s, G = 30 s, warning 60 s before F,
    /// ticks every 30 s, checkpoints every 10 s.
    pub fn new(price: Price, max_billable: Option<Duration>) -> Self {
        MeterConfig {
            free_window: Duration::from_secs(600),
            grace: Duration::from_secs(30),
            warn_before: Duration::from_secs(60),
            tick_interval: Duration::from_secs(30),
            checkpoint_interval: Duration::from_secs(10),
            max_billable,
            price,
        }
    }

    /// Billable time at which the per-minute hold is used up.
    fn hold_limit_ms(&self) -> Option<u64> {
        match self.price {
            Price::Fixed { .. } => None,
            Price::PerMinute { rate, hold } => {
                let minutes = if rate.amount_minor > 0 { hold.amount_minor.max(0) / rate.amount_minor } else { 0 };
                Some(ms(self.free_window) + u64::try_from(minutes).unwrap_or(0) * 60_000)
            }
        }
    }
}

/// What happened, for the meter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// A participant joined or rejoined the room.
    Join(Party),
    /// A participant's connection dropped, or they left the room: absent
    /// from now, with `G` to come back (M3).
    Leave(Party),
    /// A participant hung up (`session.end`).
    End(Party),
    /// A moderator ended the session.
    Moderate,
    /// A grace timer outside the meter (the signaling room's, with the same
    /// `G`) ended the session: it ends as abandoned by the participant absent
    /// longest, as of their drop (M3) — or, if both are present, now.
    Abandon,
    /// [`Meter::next_deadline`] has passed.
    Timeout,
}

/// Why a session ended (M4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A participant hung up.
    Hangup(Party),
    /// A participant stayed away longer than `G`; the session ended as of
    /// their drop (M3).
    Abandoned(Party),
    /// The booked length (or instant-call maximum) was reached.
    LengthReached,
    /// A per-minute session used up its hold (M7).
    HoldUsedUp,
    /// A moderator ended it.
    Moderator,
}

impl EndReason {
    /// The wire form (`session.ended.reason`).
    pub fn wire(self) -> SessionEndReason {
        match self {
            EndReason::Hangup(_) => SessionEndReason::Hangup,
            EndReason::Abandoned(_) => SessionEndReason::Abandoned,
            EndReason::LengthReached => SessionEndReason::LengthReached,
            EndReason::HoldUsedUp => SessionEndReason::HoldUsedUp,
            EndReason::Moderator => SessionEndReason::Moderator,
        }
    }
}

/// The free-window outcome (M6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Billable time below `F`: release the hold in full.
    Free,
    /// Billable time at least `F`: capture `amount`.
    Charged,
}

/// The settlement decision, made once per session (DESIGN.md B3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settlement {
    /// Why it ended.
    pub reason: EndReason,
    /// When it ended (server time; for `Abandoned`, the drop).
    pub ended_at: Timestamp,
    /// Billable time, milliseconds (M5).
    pub billable_ms: u64,
    /// Free or charged (M6).
    pub outcome: Outcome,
    /// Amount to capture: zero when free; never more than the hold.
    pub amount: Money,
}

impl Settlement {
    /// Billable time in whole seconds (rounded down: the seeker's favour).
    pub fn billable_secs(&self) -> u64 {
        self.billable_ms / 1000
    }

    /// The bill in wire terms (`session.ended`, the settlement row).
    pub fn bill(&self) -> SessionBill {
        SessionBill {
            outcome: match self.outcome {
                Outcome::Free => WireOutcome::Free,
                Outcome::Charged => WireOutcome::Charged,
            },
            billable_secs: self.billable_secs(),
            charge: self.amount,
        }
    }

    /// The end decision with its bill, in wire terms.
    pub fn end(&self) -> MeterEnd {
        MeterEnd { reason: self.reason.wire(), at: self.ended_at, bill: self.bill() }
    }
}

/// What the meter's state is worth keeping across a restart (M9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// Billable time so far, milliseconds.
    pub billable_ms: u64,
    /// `meter.free_window_ending` was sent.
    pub warned: bool,
    /// `meter.billing_started` was sent.
    pub billing_started: bool,
    /// The hold-ending warning was sent.
    pub hold_warned: bool,
}

/// What the driver must act on, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Both present: billable time runs.
    Live,
    /// One is absent: billable time stops.
    Paused {
        /// Who left or dropped.
        absent: Party,
    },
    /// `meter.free_window_ending` (M8), `warn_before` before `F`.
    FreeWindowEnding {
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// `meter.billing_started` (M8): billable time reached `F`.
    BillingStarted {
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// `meter.tick` (M8), every `tick_interval` while live.
    Tick {
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// A per-minute session will use up its hold within `warn_before`.
    HoldEnding {
        /// Billable seconds so far.
        billable_secs: u64,
    },
    /// Store this (M9), every `checkpoint_interval` while live.
    Checkpoint(Snapshot),
    /// The session is over; settle it. Emitted exactly once, carrying the
    /// end decision (reason, time) together with its bill
    /// ([`Settlement::end`]).
    Ended(Settlement),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attendance {
    Present,
    /// Absent (never joined, dropped or left) since then.
    Absent(Timestamp),
}

/// The meter of one session.
#[derive(Debug, Clone)]
pub struct Meter {
    cfg: MeterConfig,
    attendance: [Attendance; 2],
    billable_ms: u64,
    /// While live: the time up to which `billable_ms` is counted.
    clock_at: Option<Timestamp>,
    next_tick: Option<Timestamp>,
    next_checkpoint: Option<Timestamp>,
    warned: bool,
    billing_started: bool,
    hold_warned: bool,
    ended: Option<Settlement>,
    /// A booked session before its no-show time: an absence (never joined,
    /// or left early) counts from then, not before (DESIGN.md §3).
    absent_not_before: Option<Timestamp>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn after(t: Timestamp, millis: u64) -> Timestamp {
    t.plus(Duration::from_millis(millis))
}

/// Billable-time thresholds, in the order they are checked when equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Threshold {
    Warn,
    Billing,
    HoldWarn,
    Limit(EndReason),
}

impl Meter {
    /// A session opened at `now`: neither participant has joined; each has
    /// `G` to do so.
    pub fn new(cfg: MeterConfig, now: Timestamp) -> Self {
        Meter {
            cfg,
            attendance: [Attendance::Absent(now); 2],
            billable_ms: 0,
            clock_at: None,
            next_tick: None,
            next_checkpoint: None,
            warned: false,
            billing_started: false,
            hold_warned: false,
            ended: None,
            absent_not_before: None,
        }
    }

    /// A scheduled session whose room opened before its start (DESIGN.md
    /// §3): neither participant has joined, and neither counts as absent
    /// before `join_by` (the no-show time, when the room ends the session),
    /// even after joining and leaving again; after it each has `G` as usual.
    pub fn scheduled(cfg: MeterConfig, join_by: Timestamp) -> Self {
        Meter { absent_not_before: Some(join_by), ..Meter::new(cfg, join_by) }
    }

    /// A session recovered after a restart (M9) from its last checkpoint:
    /// both participants are absent as of `absent_from` (now; for a booked
    /// session before its no-show time, that time) and have `G` from then
    /// to reconnect. Time since the checkpoint is not billed (the seeker's
    /// favour).
    pub fn recover(cfg: MeterConfig, snapshot: Snapshot, absent_from: Timestamp) -> Self {
        Meter {
            billable_ms: snapshot.billable_ms,
            warned: snapshot.warned,
            billing_started: snapshot.billing_started,
            hold_warned: snapshot.hold_warned,
            absent_not_before: Some(absent_from),
            ..Meter::new(cfg, absent_from)
        }
    }

    /// Billable time so far, milliseconds, as of the last input.
    pub fn billable_ms(&self) -> u64 {
        self.billable_ms
    }

    /// The settlement, once ended.
    pub fn settlement(&self) -> Option<&Settlement> {
        self.ended.as_ref()
    }

    /// The state worth checkpointing.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            billable_ms: self.billable_ms,
            warned: self.warned,
            billing_started: self.billing_started,
            hold_warned: self.hold_warned,
        }
    }

    /// Feeds `input` at server time `now` (never earlier than a previous
    /// call's `now`; an earlier time is treated as the same instant).
    /// Inputs after the end are ignored.
    pub fn handle(&mut self, input: Input, now: Timestamp) -> Vec<Output> {
        let mut out = Vec::new();
        if self.ended.is_some() {
            return out;
        }
        self.advance(now, &mut out);
        if self.ended.is_some() {
            return out;
        }
        match input {
            Input::Join(p) => {
                self.attendance[p.index()] = Attendance::Present;
                if self.clock_at.is_none() && self.attendance.iter().all(|a| *a == Attendance::Present) {
                    self.clock_at = Some(now);
                    self.next_tick = Some(now.plus(self.cfg.tick_interval));
                    self.next_checkpoint = Some(now.plus(self.cfg.checkpoint_interval));
                    out.push(Output::Live);
                }
            }
            Input::Leave(p) => {
                if self.attendance[p.index()] == Attendance::Present {
                    let since = self.absent_not_before.map_or(now, |t| t.max(now));
                    self.attendance[p.index()] = Attendance::Absent(since);
                    if self.clock_at.take().is_some() {
                        self.next_tick = None;
                        self.next_checkpoint = None;
                        out.push(Output::Paused { absent: p });
                    }
                }
            }
            Input::End(p) => self.finish(EndReason::Hangup(p), now, &mut out),
            Input::Moderate => self.finish(EndReason::Moderator, now, &mut out),
            Input::Abandon => {
                let absent = Party::BOTH
                    .into_iter()
                    .filter_map(|p| match self.attendance[p.index()] {
                        Attendance::Absent(since) => Some((since, p)),
                        Attendance::Present => None,
                    })
                    .min_by_key(|(since, _)| *since);
                let (at, p) = absent.unwrap_or((now, Party::Seeker));
                self.finish(EndReason::Abandoned(p), at.min(now), &mut out)
            }
            Input::Timeout => {}
        }
        out
    }

    /// When [`Input::Timeout`] is next due; `None` once ended.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        if self.ended.is_some() {
            return None;
        }
        let absences = self.attendance.iter().filter_map(|a| match a {
            Attendance::Absent(since) => Some(since.plus(self.cfg.grace)),
            Attendance::Present => None,
        });
        let live = self.clock_at.map(|at| {
            let threshold = self.next_threshold().map(|(t, _)| after(at, t - self.billable_ms));
            [threshold, self.next_tick, self.next_checkpoint]
        });
        absences.chain(live.into_iter().flatten().flatten()).min()
    }

    /// The next billable-time threshold not yet passed.
    fn next_threshold(&self) -> Option<(u64, Threshold)> {
        let f = ms(self.cfg.free_window);
        let warn = ms(self.cfg.warn_before);
        let hold_limit = self.cfg.hold_limit_ms();
        // A fixed array: this runs on every input and deadline.
        let candidates = [
            (!self.warned && f > warn).then(|| (f - warn, Threshold::Warn)),
            (!self.billing_started).then_some((f, Threshold::Billing)),
            hold_limit.filter(|l| !self.hold_warned && *l > warn).map(|l| (l - warn, Threshold::HoldWarn)),
            hold_limit.map(|l| (l, Threshold::Limit(EndReason::HoldUsedUp))),
            self.cfg.max_billable.map(|max| (ms(max), Threshold::Limit(EndReason::LengthReached))),
        ];
        candidates.into_iter().flatten().filter(|(t, _)| *t >= self.billable_ms).min_by_key(|(t, kind)| {
            // Equal thresholds: warnings first, then the end.
            (*t, matches!(kind, Threshold::Limit(_)))
        })
    }

    /// Runs billable time up to `now`, emitting threshold outputs in order
    /// (and ending at a limit exactly when it was reached), then ends an
    /// abandoned session, then emits due ticks and checkpoints.
    fn advance(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        while let Some(at) = self.clock_at {
            let now = now.max(at);
            let Some((threshold, kind)) = self.next_threshold() else {
                self.billable_ms += now.since(at).as_millis() as u64;
                self.clock_at = Some(now);
                break;
            };
            let reached_at = after(at, threshold - self.billable_ms);
            if reached_at > now {
                self.billable_ms += now.since(at).as_millis() as u64;
                self.clock_at = Some(now);
                break;
            }
            self.billable_ms = threshold;
            self.clock_at = Some(reached_at);
            let billable_secs = self.billable_ms / 1000;
            match kind {
                Threshold::Warn => {
                    self.warned = true;
                    out.push(Output::FreeWindowEnding { billable_secs });
                }
                Threshold::Billing => {
                    self.billing_started = true;
                    out.push(Output::BillingStarted { billable_secs });
                }
                Threshold::HoldWarn => {
                    self.hold_warned = true;
                    out.push(Output::HoldEnding { billable_secs });
                }
                Threshold::Limit(reason) => return self.finish(reason, reached_at, out),
            }
        }
        // Absent longer than G: ended as of the (earliest) drop (M3).
        let abandoned = Party::BOTH
            .into_iter()
            .filter_map(|p| match self.attendance[p.index()] {
                Attendance::Absent(since) if since.plus(self.cfg.grace) <= now => Some((since, p)),
                _ => None,
            })
            .min_by_key(|(since, _)| *since);
        if let Some((since, p)) = abandoned {
            return self.finish(EndReason::Abandoned(p), since, out);
        }
        if self.clock_at.is_some() {
            let billable_secs = self.billable_ms / 1000;
            if let Some(next) = self.next_tick.filter(|t| *t <= now) {
                self.next_tick = Some(Self::next_after(next, self.cfg.tick_interval, now));
                out.push(Output::Tick { billable_secs });
            }
            if let Some(next) = self.next_checkpoint.filter(|t| *t <= now) {
                self.next_checkpoint = Some(Self::next_after(next, self.cfg.checkpoint_interval, now));
                out.push(Output::Checkpoint(self.snapshot()));
            }
        }
    }

    /// The first `due + k × every` after `now` (missed periods are skipped).
    fn next_after(due: Timestamp, every: Duration, now: Timestamp) -> Timestamp {
        let every = ms(every).max(1);
        let behind = now.since(due).as_millis() as u64 / every + 1;
        after(due, behind * every)
    }

    fn finish(&mut self, reason: EndReason, at: Timestamp, out: &mut Vec<Output>) {
        self.clock_at = None;
        let charged = self.billable_ms >= ms(self.cfg.free_window);
        let amount = match (charged, self.cfg.price) {
            (false, Price::Fixed { amount }) => Money::new(0, amount.currency),
            (false, Price::PerMinute { rate, .. }) => Money::new(0, rate.currency),
            (true, Price::Fixed { amount }) => amount,
            (true, Price::PerMinute { rate, hold }) => {
                // Started minutes beyond the free window, capped at the hold.
                let beyond = self.billable_ms - ms(self.cfg.free_window);
                let minutes = i64::try_from(beyond.div_ceil(60_000)).unwrap_or(i64::MAX);
                let total = rate.amount_minor.saturating_mul(minutes);
                Money::new(total.min(hold.amount_minor), rate.currency)
            }
        };
        let settlement = Settlement {
            reason,
            ended_at: at,
            billable_ms: self.billable_ms,
            outcome: if charged { Outcome::Charged } else { Outcome::Free },
            amount,
        };
        self.ended = Some(settlement);
        out.push(Output::Ended(settlement));
    }
}
