//! The meter's driver: one [`Meter`] per open session, fed the joins, drops
//! and ends signaling reports, woken at each meter's deadline by the server
//! clock, and carrying out the meter's outputs in order — store first, then
//! tell the participants (DESIGN.md M8, M9).
//!
//! Inputs arrive synchronously ([`Meters::opened`], [`Meters::joined`], …)
//! under the caller's lock, so they reach each meter in the order they
//! happened. One task for the node wakes at the earliest meter deadline
//! and times out every meter then due; a session whose meter has
//! something to store or tell gets a task that carries its outputs out in
//! order and ends when none is left (most inputs, a join or a drop, have
//! none). A live session costs its meter and a place in the deadline
//! order, not a task, a timer and a channel of its own (load-tests/README.md,
//! twenty-sixth run). When signaling ends a
//! session (a hang-up, a no-show, a moderator), the settlement is returned
//! synchronously by [`Meters::ending`] so signaling can store it with the
//! session's end and put it in `session.ended`. When the meter ends it
//! itself (a limit, an absence it timed), the end goes out with its bill
//! ([`MeterEnd`]) through [`MeterSink::end`]: signaling stores that bill and
//! never asks the meter again.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parley_domain::protocol::{
    MeterStatus, Outcome as WireOutcome, Role, ServerMessage, SessionBill, SessionEndReason,
};
use parley_domain::{Clock, Money, SessionId, Timestamp};
use tokio::sync::Notify;
use tokio_util::task::TaskTracker;

use crate::{Input, Meter, MeterConfig, MeterEnd, Output, Party, Price, Settlement, Snapshot};

/// A failure of the meter's event store.
#[derive(Debug, thiserror::Error)]
pub enum MeterStoreError {
    /// The write could not be stored (the database failed); it may be retried.
    #[error("meter store: {0}")]
    Failed(String),
    /// The session is metered under a newer owner epoch than the write's:
    /// another node (or a restarted process) took the session over, and this
    /// meter must stop (issue 16 fencing). Never retried.
    #[error("the session is owned under epoch {current}, not {mine}")]
    Fenced {
        /// The epoch the write was made under.
        mine: OwnerEpoch,
        /// The session's current epoch in the store.
        current: OwnerEpoch,
    },
}

/// The fencing token of a live session's meter: which owner, in order, may
/// write the session's meter events, checkpoints and settlement. The node
/// that opens a session meters it under [`OwnerEpoch::FIRST`]; each takeover
/// (recovery after a restart, a node taking over a lost node's session)
/// raises it by one in the store, which from then on refuses writes under
/// an older epoch (Kleppmann's fencing tokens; issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnerEpoch(pub u64);

impl OwnerEpoch {
    /// The epoch of the node that opened the session.
    pub const FIRST: OwnerEpoch = OwnerEpoch(1);
}

impl std::fmt::Display for OwnerEpoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A meter event worth keeping, stored before the participants hear of it
/// (DESIGN.md M9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeterEvent {
    /// `meter.free_window_ending` was due.
    FreeWindowEnding {
        /// Billable seconds then.
        billable_secs: u64,
    },
    /// `meter.billing_started` was due.
    BillingStarted {
        /// Billable seconds then.
        billable_secs: u64,
    },
    /// `meter.hold_ending` was due.
    HoldEnding {
        /// Billable seconds then.
        billable_secs: u64,
    },
    /// A periodic checkpoint of a live session (every 10 s).
    Checkpoint(Snapshot),
}

impl MeterEvent {
    /// The event's stored kind.
    pub fn kind(&self) -> &'static str {
        match self {
            MeterEvent::FreeWindowEnding { .. } => "free_window_ending",
            MeterEvent::BillingStarted { .. } => "billing_started",
            MeterEvent::HoldEnding { .. } => "hold_ending",
            MeterEvent::Checkpoint(_) => "checkpoint",
        }
    }
}

/// The meter's event store (implemented by `server` on SQLite/PostgreSQL).
#[async_trait]
pub trait MeterStore: Send + Sync + 'static {
    /// Stores `event` of `session_id` at server time `at`, made by the
    /// session's owner under `epoch`. A checkpoint replaces the session's
    /// previous one. [`MeterStoreError::Fenced`] when `epoch` is not the
    /// session's current owner epoch.
    async fn meter_event(
        &self,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        event: &MeterEvent,
        at: Timestamp,
    ) -> Result<(), MeterStoreError>;
    /// Stores the settlement decision of a session whose end signaling did
    /// not record (its room was gone). Idempotent per session. Fenced by
    /// `epoch` as [`MeterStore::meter_event`] is.
    async fn orphan_settlement(
        &self,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        bill: &SessionBill,
        reason: SessionEndReason,
        at: Timestamp,
    ) -> Result<(), MeterStoreError>;
}

/// Where meter notices go: the signaling hub (implemented by `server`).
#[async_trait]
pub trait MeterSink: Send + Sync + 'static {
    /// Sends `msg` to both participants of `session_id`, if it is open.
    fn send(&self, session_id: &SessionId, msg: ServerMessage);
    /// The meter ended `session_id` itself (a limit reached, an absence
    /// longer than `G`): ends it with `end` — its reason and the bill to
    /// store with it and send in `session.ended` (DESIGN.md M4, B3) — without
    /// asking the meter again. Returns whether the session was open there
    /// and is now ended with this bill; `false` (not open there, e.g. its
    /// room is gone, or a hang-up ended it first) and the driver stores the
    /// bill itself unless signaling took it through [`Meters::ending`].
    async fn end(&self, session_id: &SessionId, end: &MeterEnd) -> bool;
}

/// Deployment-wide meter settings (from `PARLEY_FREE_WINDOW_SECS`,
/// `PARLEY_GRACE_SECS`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterSettings {
    /// Free window `F` (M6). Default 600 s.
    pub free_window: Duration,
    /// Grace `G` (M3). Default 30 s.
    pub grace: Duration,
    /// Warning before `F` and before the hold is used up (M8). Default 60 s.
    pub warn_before: Duration,
    /// `meter.tick` interval (M8). Default 30 s.
    pub tick_interval: Duration,
    /// Checkpoint interval (M9). Default 10 s.
    pub checkpoint_interval: Duration,
}

impl Default for MeterSettings {
    fn default() -> Self {
        let d = MeterConfig::new(
            Price::Fixed { amount: Money::new(0, parley_domain::Currency::parse("EUR").expect("valid")) },
            None,
        );
        MeterSettings {
            free_window: d.free_window,
            grace: d.grace,
            warn_before: d.warn_before,
            tick_interval: d.tick_interval,
            checkpoint_interval: d.checkpoint_interval,
        }
    }
}

impl MeterSettings {
    /// The meter configuration of one session priced `price`, ending at
    /// `max_billable` of billable time (booked length or instant maximum).
    pub fn config(&self, price: Price, max_billable: Option<Duration>) -> MeterConfig {
        MeterConfig {
            free_window: self.free_window,
            grace: self.grace,
            warn_before: self.warn_before,
            tick_interval: self.tick_interval,
            checkpoint_interval: self.checkpoint_interval,
            max_billable,
            price,
        }
    }
}

/// What a session's carrier task must carry out, in order.
type Batch = Vec<Output>;

/// Whether `batch` has anything to store or tell: a join or a drop only
/// starts or pauses the meter's clock (`Live`, `Paused`).
fn has_io(batch: &Batch) -> bool {
    batch.iter().any(|o| !matches!(o, Output::Live | Output::Paused { .. }))
}

struct Entry {
    meter: Meter,
    /// The epoch this node meters the session under (its writes carry it).
    epoch: OwnerEpoch,
    /// The meter's next deadline as the node's timer task knows it (its
    /// key in [`State::due`]).
    due: Option<Timestamp>,
    /// What a seeker who does not come pays (a booked session under the
    /// `charge` no-show policy); `None`: a no-show is free.
    no_show_fee: Option<Money>,
}

/// A booked session's no-show terms (DESIGN.md §3, issue 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BookedSession {
    /// The no-show time (start + 15 min): until then not having joined is
    /// not an absence; the room ends the session as a no-show then.
    pub join_by: Timestamp,
    /// What the seeker pays if they are the one who does not come (at most
    /// the hold); `None`: such a no-show is free.
    pub no_show_fee: Option<Money>,
}

#[derive(Default)]
struct State {
    /// Meter configurations of sessions about to open (set when the hold is
    /// placed, taken when the call is accepted).
    /// Boxed: a configuration is 136 bytes, and a burst of calls grows
    /// the table (the old one beside the new while it does).
    pending: HashMap<SessionId, Box<MeterConfig>>,
    /// Scheduled sessions about to open: when their participants must
    /// have joined (DESIGN.md §3 no-show).
    booked: HashMap<SessionId, BookedSession>,
    /// Boxed, like the hub's rooms: an entry is 328 bytes, and the table's
    /// empty slots and its growth would each take as much.
    meters: HashMap<SessionId, Box<Entry>>,
    /// Each live meter's next deadline, earliest first: the timer task
    /// sleeps until the first.
    due: BTreeSet<(Timestamp, SessionId)>,
    /// Outputs waiting for a session's carrier task, oldest first; a
    /// session is here exactly while its carrier runs.
    io: HashMap<SessionId, VecDeque<Batch>>,
}

impl State {
    /// Stops metering `session_id` here: its meter leaves the deadline order.
    fn remove(&mut self, session_id: &SessionId) -> Option<Box<Entry>> {
        let entry = self.meters.remove(session_id)?;
        if let Some(at) = entry.due {
            self.due.remove(&(at, session_id.clone()));
        }
        Some(entry)
    }
}

/// The meters of one node, their timer task and carrier tasks. Share as
/// `Arc<Meters>`.
pub struct Meters {
    settings: MeterSettings,
    /// Used for sessions opened without a price (no hold): free.
    unpriced: MeterConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn MeterStore>,
    sink: OnceLock<Arc<dyn MeterSink>>,
    lateness: OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
    state: Mutex<State>,
    /// The carrier tasks ([`Meters::driver_tasks`]).
    tasks: TaskTracker,
    /// Wakes the timer task: a deadline earlier than the one it sleeps
    /// until, or these meters dropped.
    timer: Arc<Notify>,
    /// Whether the timer task was started (at the first session).
    ticking: std::sync::atomic::AtomicBool,
    /// These meters, for the tasks they spawn.
    me: Weak<Meters>,
}

impl Drop for Meters {
    fn drop(&mut self) {
        // The timer task sees these meters gone and ends.
        self.timer.notify_one();
    }
}

fn party(role: Role) -> Option<Party> {
    match role {
        Role::Seeker => Some(Party::Seeker),
        Role::Consultant => Some(Party::Consultant),
        Role::Moderator | Role::Recorder => None,
    }
}

impl Meters {
    /// Meters with `settings`, reading `clock`, storing into `store`.
    /// Sessions opened without a [`Meters::expect`] are metered free in
    /// `default_currency`. Call [`Meters::set_sink`] before the first session.
    pub fn new(
        settings: MeterSettings,
        default_currency: parley_domain::Currency,
        clock: Arc<dyn Clock>,
        store: Arc<dyn MeterStore>,
    ) -> Arc<Meters> {
        Arc::new_cyclic(|me| Meters {
            settings,
            unpriced: settings.config(Price::Fixed { amount: Money::new(0, default_currency) }, None),
            clock,
            store,
            sink: OnceLock::new(),
            lateness: OnceLock::new(),
            state: Mutex::new(State::default()),
            tasks: TaskTracker::new(),
            timer: Arc::new(Notify::new()),
            ticking: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// Where notices and meter-decided ends go (the signaling hub). Set once.
    pub fn set_sink(&self, sink: Arc<dyn MeterSink>) {
        let _ = self.sink.set(sink);
    }

    /// Calls `observe` with how late each meter deadline was handled (server
    /// clock now − deadline): for `/metrics` and the meter bench (`server/benches/meter`). Set once.
    pub fn observe_lateness(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.lateness.set(Box::new(observe));
    }

    /// The deployment's settings.
    pub fn settings(&self) -> &MeterSettings {
        &self.settings
    }

    /// The configuration of a session without a price: metered, free.
    pub fn unpriced(&self) -> MeterConfig {
        self.unpriced
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An open session's meter as of `at` (for the `room.join` ack and
    /// `GET /v1/sessions/{id}`), if metered here.
    pub fn status(&self, session_id: &SessionId, at: Timestamp) -> Option<MeterStatus> {
        let st = self.lock();
        let mut meter = st.meters.get(session_id)?.meter.clone();
        drop(st);
        meter.handle(Input::Timeout, at);
        let billable_ms = meter.settlement().map_or(meter.billable_ms(), |s| s.billable_ms);
        Some(MeterStatus {
            free_window_secs: self.settings.free_window.as_secs(),
            billable_secs: billable_ms / 1000,
            billing_started: meter.snapshot().billing_started,
        })
    }

    /// Carrier tasks still running: one per session with outputs being
    /// stored or told (a notice, a checkpoint, an end), until they are, also
    /// after the session's end. The node's timer task is not counted.
    pub fn driver_tasks(&self) -> usize {
        self.tasks.len()
    }

    /// Number of sessions being metered.
    pub fn live_sessions(&self) -> usize {
        self.lock().meters.len()
    }

    /// The sessions metered here (their leases are this node's to keep).
    pub fn sessions(&self) -> Vec<SessionId> {
        self.lock().meters.keys().cloned().collect()
    }

    /// Stops metering `session_id` without settling it: another node owns
    /// it now and meters and settles it (issue 16). Returns whether it was
    /// metered here.
    pub fn relinquish(&self, session_id: &SessionId) -> bool {
        self.lock().remove(session_id).is_some()
    }

    /// Registers the price of a session about to open (its hold is placed).
    pub fn expect(&self, session_id: &SessionId, cfg: MeterConfig) {
        self.lock().pending.insert(session_id.clone(), Box::new(cfg));
    }

    /// A scheduled session about to open (DESIGN.md §3): `cfg` if it is
    /// priced, and its no-show terms.
    pub fn expect_scheduled(&self, session_id: &SessionId, cfg: Option<MeterConfig>, booked: BookedSession) {
        let mut st = self.lock();
        if let Some(cfg) = cfg {
            st.pending.insert(session_id.clone(), Box::new(cfg));
        }
        st.booked.insert(session_id.clone(), booked);
    }

    /// Forgets a session that never opened (its call went unanswered).
    pub fn forget(&self, session_id: &SessionId) {
        self.lock().pending.remove(session_id);
    }

    /// A session opened at `at`: both participants have `G` to join.
    pub fn opened(self: &Arc<Self>, session_id: &SessionId, at: Timestamp) {
        let mut st = self.lock();
        let cfg = st.pending.remove(session_id).map_or(self.unpriced, |cfg| *cfg);
        let (meter, no_show_fee) = match st.booked.remove(session_id) {
            Some(b) => (Meter::scheduled(cfg, b.join_by.max(at)), b.no_show_fee),
            None => (Meter::new(cfg, at), None),
        };
        self.start(&mut st, session_id.clone(), meter, OwnerEpoch::FIRST, no_show_fee);
    }

    /// A session recovered after a restart from its last checkpoint (M9),
    /// taken over under `epoch` (the store's new owner epoch for it): both
    /// participants have `G` from now to come back — or, for a booked
    /// session whose no-show time is still ahead (`booked`), from that time,
    /// as when its room first opened.
    pub fn recovered(
        self: &Arc<Self>,
        session_id: &SessionId,
        epoch: OwnerEpoch,
        cfg: MeterConfig,
        snapshot: Snapshot,
        booked: Option<BookedSession>,
    ) {
        let now = self.clock.now();
        let booked = booked.filter(|b| b.join_by > now);
        let absent_from = booked.map_or(now, |b| b.join_by);
        let mut st = self.lock();
        let meter = Meter::recover(cfg, snapshot, absent_from);
        self.start(&mut st, session_id.clone(), meter, epoch, booked.and_then(|b| b.no_show_fee));
    }

    fn start(
        self: &Arc<Self>,
        st: &mut State,
        session_id: SessionId,
        meter: Meter,
        epoch: OwnerEpoch,
        no_show_fee: Option<Money>,
    ) {
        if !self.ticking.swap(true, std::sync::atomic::Ordering::AcqRel) {
            tokio::spawn(tick(Arc::downgrade(self), Arc::clone(&self.timer)));
        }
        st.remove(&session_id);
        st.meters.insert(session_id.clone(), Box::new(Entry { meter, epoch, due: None, no_show_fee }));
        self.schedule(st, &session_id);
    }

    /// Puts `session_id`'s meter at its next deadline in the order the
    /// timer task follows, waking the task when it comes first.
    fn schedule(&self, st: &mut State, session_id: &SessionId) {
        let Some(e) = st.meters.get_mut(session_id) else { return };
        let next = e.meter.next_deadline();
        if next == e.due {
            return;
        }
        if let Some(at) = std::mem::replace(&mut e.due, next) {
            st.due.remove(&(at, session_id.clone()));
        }
        if let Some(at) = next {
            let first = st.due.first().is_none_or(|(earliest, _)| at < *earliest);
            st.due.insert((at, session_id.clone()));
            if first {
                self.timer.notify_one();
            }
        }
    }

    /// Hands `batch` to `session_id`'s carrier task, started if none runs:
    /// the session's outputs are carried out in the order they came.
    fn carry(&self, st: &mut State, session_id: &SessionId, batch: Batch) {
        if !has_io(&batch) {
            return;
        }
        if let Some(queue) = st.io.get_mut(session_id) {
            queue.push_back(batch);
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        st.io.insert(session_id.clone(), VecDeque::from([batch]));
        self.tasks.spawn(me.carrier(session_id.clone()));
    }

    /// A session's carrier task: its queued outputs, in order, until none
    /// is left.
    async fn carrier(self: Arc<Self>, session_id: SessionId) {
        loop {
            let batch = {
                let mut st = self.lock();
                match st.io.get_mut(&session_id).and_then(VecDeque::pop_front) {
                    Some(batch) => batch,
                    None => {
                        st.io.remove(&session_id);
                        return;
                    }
                }
            };
            self.carry_out(&session_id, batch).await;
        }
    }

    /// Times out every meter due at `now` (the timer task's step); returns
    /// the next deadline.
    fn time_out(&self, now: Timestamp) -> Option<Timestamp> {
        let mut st = self.lock();
        let st = &mut *st;
        let mut due = Vec::new();
        while let Some((at, _)) = st.due.first()
            && *at <= now
        {
            let (at, id) = st.due.pop_first().expect("just seen");
            due.push((at, id));
        }
        for (at, id) in due {
            if let Some(observe) = self.lateness.get() {
                observe(now.since(at));
            }
            let Some(e) = st.meters.get_mut(&id) else { continue };
            e.due = None;
            let out = e.meter.handle(Input::Timeout, now);
            self.schedule(st, &id);
            self.carry(st, &id, out);
        }
        st.due.first().map(|(at, _)| *at)
    }

    /// `role` joined (or rejoined) the session's room at `at`.
    pub fn joined(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        if let Some(p) = party(role) {
            self.feed(session_id, Input::Join(p), at);
        }
    }

    /// `role` left the room or dropped at `at` (M3).
    pub fn absent(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        if let Some(p) = party(role) {
            self.feed(session_id, Input::Leave(p), at);
        }
    }

    fn feed(&self, session_id: &SessionId, input: Input, at: Timestamp) {
        let mut st = self.lock();
        if let Some(e) = st.meters.get_mut(session_id) {
            let out = e.meter.handle(input, at);
            self.schedule(&mut st, session_id);
            self.carry(&mut st, session_id, out);
        }
    }

    /// The session ends at `at` for `reason` (by the participant `by`, for a
    /// hang-up; for a no-show, `by` is the one participant who did not come,
    /// `None` if neither did): returns the settlement decision, made once
    /// (B3), and stops metering it. `None` if the session was never metered
    /// here. A no-show is metered as usual (free when nobody was ever both
    /// present), except that a seeker who never came to a booked session
    /// with a no-show fee pays that fee (the `charge` policy, issue 4).
    pub fn ending(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<Role>,
        at: Timestamp,
    ) -> Option<SessionBill> {
        let mut st = self.lock();
        let mut entry = st.remove(session_id)?;
        let input = match reason {
            SessionEndReason::Hangup => Input::End(by.and_then(party).unwrap_or(Party::Seeker)),
            SessionEndReason::Abandoned => Input::Abandon,
            // A participant never came: nobody was both present, so the
            // meter ends free (the hold is released).
            SessionEndReason::Moderator | SessionEndReason::NoShow => Input::Moderate,
            // Only the meter decides these, and it hands them to signaling
            // with their bill (`MeterSink::end`), so they do not come back
            // here; if one does, the meter's state as of `at` decides.
            SessionEndReason::LengthReached | SessionEndReason::HoldUsedUp => Input::Timeout,
        };
        let mut out = entry.meter.handle(input, at);
        if entry.meter.settlement().is_none() {
            out.extend(entry.meter.handle(Input::Moderate, at));
        }
        // The carrier stores the outputs that came before the end (the
        // end itself is signaling's to store).
        self.carry(&mut st, session_id, out);
        drop(st);
        // Only a seeker who was never in the session with the consultant
        // (restored rooms count anyone not back yet as not come).
        let never_met = entry.meter.billable_ms() == 0;
        let fee = entry.no_show_fee.filter(|f| {
            reason == SessionEndReason::NoShow && by == Some(Role::Seeker) && never_met && f.amount_minor > 0
        });
        match fee {
            Some(fee) => Some(SessionBill { outcome: WireOutcome::Charged, billable_secs: 0, charge: fee }),
            None => entry.meter.settlement().map(Settlement::bill),
        }
    }

    /// Graceful shutdown (M9, issue 13): brings every live session's meter
    /// up to now (the server clock) and stores a checkpoint of each, so a restart resumes
    /// each session from this instant and no metered time is lost (the
    /// periodic checkpoints alone lose up to one interval). Then the meters
    /// stop (their carriers end once the due notices are out): the sessions
    /// belong to the next process from their checkpoint, and a stopped
    /// server that went on timing them (an absence running out) would
    /// settle them behind its back. Returns how many checkpoints were
    /// stored; a failed write is logged and counted out.
    pub async fn drain(&self) -> usize {
        let at = self.clock.now();
        let snapshots: Vec<(SessionId, OwnerEpoch, Snapshot)> = {
            let mut st = self.lock();
            let st = &mut *st;
            st.due.clear();
            let meters: Vec<_> = st.meters.drain().collect();
            meters
                .into_iter()
                .map(|(id, mut e)| {
                    // Notices that fell due go out as usual, through the carrier.
                    let out = e.meter.handle(Input::Timeout, at);
                    self.carry(st, &id, out);
                    (id, e.epoch, e.meter.snapshot())
                })
                .collect()
        };
        let mut stored = 0;
        for (id, epoch, snapshot) in snapshots {
            match self.store.meter_event(&id, epoch, &MeterEvent::Checkpoint(snapshot), at).await {
                Ok(()) => stored += 1,
                Err(e) => self.write_failed(&id, "checkpoint", &e),
            }
        }
        stored
    }

    async fn carry_out(&self, session_id: &SessionId, batch: Batch) {
        let now = self.clock.now();
        for output in batch {
            let (event, msg) = match output {
                Output::Live | Output::Paused { .. } => continue,
                Output::FreeWindowEnding { billable_secs } => (
                    MeterEvent::FreeWindowEnding { billable_secs },
                    Some(ServerMessage::MeterFreeWindowEnding {
                        session_id: session_id.clone(),
                        billable_secs,
                        free_window_secs: self.settings.free_window.as_secs(),
                    }),
                ),
                Output::BillingStarted { billable_secs } => (
                    MeterEvent::BillingStarted { billable_secs },
                    Some(ServerMessage::MeterBillingStarted { session_id: session_id.clone(), billable_secs }),
                ),
                Output::HoldEnding { billable_secs } => (
                    MeterEvent::HoldEnding { billable_secs },
                    Some(ServerMessage::MeterHoldEnding {
                        session_id: session_id.clone(),
                        billable_secs,
                        ends_at_billable_secs: billable_secs + self.settings.warn_before.as_secs(),
                    }),
                ),
                Output::Tick { billable_secs } => {
                    // Ticks are not stored: checkpoints keep the count.
                    self.send(session_id, ServerMessage::MeterTick { session_id: session_id.clone(), billable_secs });
                    continue;
                }
                Output::Checkpoint(snapshot) => (MeterEvent::Checkpoint(snapshot), None),
                Output::Ended(settlement) => {
                    // Still metered here: the meter decided the end itself (a
                    // limit, or abandonment it timed). Otherwise signaling is
                    // ending it already, through `ending`.
                    let decided_here = self.lock().meters.contains_key(session_id);
                    if decided_here {
                        self.meter_ended(session_id, &settlement.end()).await;
                    }
                    continue;
                }
            };
            let Some(epoch) = self.epoch(session_id) else { continue };
            if let Err(e) = self.store.meter_event(session_id, epoch, &event, now).await {
                self.write_failed(session_id, event.kind(), &e);
                continue;
            }
            if let Some(msg) = msg {
                self.send(session_id, msg);
            }
        }
    }

    /// The epoch this node meters `session_id` under, while it does.
    fn epoch(&self, session_id: &SessionId) -> Option<OwnerEpoch> {
        self.lock().meters.get(session_id).map(|e| e.epoch)
    }

    /// Logs a failed write; a fenced one means another owner took the
    /// session over, so this node stops metering it (its successor meters
    /// and settles it; issue 16).
    fn write_failed(&self, session_id: &SessionId, what: &str, e: &MeterStoreError) {
        match e {
            MeterStoreError::Fenced { mine, current } => {
                tracing::warn!(%session_id, %mine, %current, what, "session taken over by a newer owner; no longer metered here");
                self.lock().remove(session_id);
            }
            MeterStoreError::Failed(_) => tracing::error!(%session_id, what, error = %e, "failed to store meter write"),
        }
    }

    fn send(&self, session_id: &SessionId, msg: ServerMessage) {
        if let Some(sink) = self.sink.get() {
            sink.send(session_id, msg);
        }
    }

    /// The meter ended the session itself (a limit, or abandonment it timed):
    /// signaling ends it with `end`, the reason and its bill together. The
    /// meter stays registered until then, so a hang-up racing the end gets
    /// the same bill from [`Meters::ending`]; if neither stored it (no room
    /// open here), the driver stores the decision itself.
    async fn meter_ended(&self, session_id: &SessionId, end: &MeterEnd) {
        let told = match self.sink.get() {
            Some(sink) => sink.end(session_id, end).await,
            None => false,
        };
        // `ending` takes the meter when signaling ended the session first.
        let taken = self.lock().remove(session_id);
        if !told
            && let Some(entry) = taken
            && let Err(e) = self.store.orphan_settlement(session_id, entry.epoch, &end.bill, end.reason, end.at).await
        {
            self.write_failed(session_id, "settlement", &e);
        }
    }
}

/// The node's timer task: sleeps on the server clock until the earliest
/// meter deadline, or until woken by an earlier one, and times out every
/// meter then due. Holds the meters only while it works: it ends once they
/// are dropped.
async fn tick(meters: Weak<Meters>, wake: Arc<Notify>) {
    loop {
        let sleep = {
            let Some(m) = meters.upgrade() else { return };
            match m.time_out(m.clock.now()) {
                Some(at) => m.clock.sleep_until(at),
                None => Box::pin(std::future::pending()),
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = sleep => {}
        }
    }
}
