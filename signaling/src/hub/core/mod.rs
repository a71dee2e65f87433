//! The hub's decisions as a pure state machine (the `metering::Meter` and
//! str0m style): every input is a method that takes `now`; what follows from
//! it is queued as [`Output`]s, each stamped with the time it happened, for
//! the driver to carry out in order; [`HubCore::next_deadline`] says when the
//! driver must call [`HubCore::handle_timeout`] next.
//!
//! No IO, no clock reads, no tasks, no async: the core names clients by an
//! opaque link handle `L` ([`LinkRef`]) and never touches a socket. Where a
//! client is connected and how a message reaches it is the driver's
//! business (`Delivery`), so a second, cross-node implementation can sit
//! behind the same core. Store writes and payment-gate calls are outputs;
//! the results the core needs (a call stored, a hold placed, a session
//! stored) come back as inputs ([`HubCore::call_authorized`],
//! [`HubCore::accept_stored`], …).
//!
//! The meter's hooks ([`SessionHooks`]) are called synchronously, in the
//! order things happen; `ending`'s bill is stored with the end.
//!
//! Files by concern: `connections` (links, presence, resume and expiry),
//! `calls` (request → authorising → ringing → accepted / ended), `rooms`
//! (join, leave, absence grace, relay, chat, end), `recorders` (recorder
//! assignment), `scheduled` (booked rooms, restore, no-show).

mod calls;
mod connections;
mod recorders;
mod rooms;
mod scheduled;
#[cfg(test)]
mod tests;

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use parley_domain::protocol::{
    CallEndReason, ErrorCode, LeaveReason, PresenceStatus, Role, ServerMessage, SessionBill, SessionEndReason, UserInfo,
};
use parley_domain::{CallId, SessionId, Timestamp, UserId};

use crate::config::SignalingConfig;
use crate::error::SignalError;
use crate::store::{CallRecord, CallState, SessionEvent, SessionHooks, SessionRecord};

#[cfg(test)]
pub(crate) use calls::RingRefused;
pub(crate) use calls::{CallRequest, unknown_consultant};

/// How the core names one client's resumable link: a handle the driver can
/// deliver to. Equality is identity (the same link, not an equal one).
pub(crate) trait LinkRef: Clone + PartialEq {
    /// The secret that lets a new connection take this link over.
    fn resume_token(&self) -> &str;
    /// Whether a client message was processed on it (else it holds nothing
    /// worth resuming but its `hello`).
    fn is_used(&self) -> bool;
}

/// One thing the driver must do, with the server time it happened.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Output<L> {
    /// When the core decided it (the input's `now`).
    pub at: Timestamp,
    /// What to do.
    pub action: Action<L>,
}

/// What the driver must do. [`Action::Send`], [`Action::Close`] and
/// [`Action::Seen`] are done at once, in order, before the next input;
/// the rest of one input's outputs are done afterwards, in order: the store
/// writes, then the [`Action::Tell`]s (only if every write of the batch
/// succeeded: nothing a client is told about an end is missing from the
/// store), then the hold releases.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action<L> {
    /// Deliver `msg` to `to` now.
    Send { to: L, msg: ServerMessage },
    /// Close `to`'s connection with `code` once its queue is written.
    Close { to: L, code: u16, reason: &'static str },
    /// A user not seen on this node before connected: record it.
    Seen(UserInfo),
    /// Store a call's transition.
    CallTransition { call_id: CallId, state: CallState },
    /// Store a session event.
    SessionEvent { session_id: SessionId, event: SessionEvent },
    /// Deliver `msg` to `to` after the batch's store writes succeeded.
    Tell { to: L, msg: ServerMessage },
    /// Release the payment hold of a call that ended unanswered
    /// (`CallGate::call_unanswered`), after the store writes.
    Release { call: CallRecord, reason: CallEndReason },
}

/// Why a request was refused: an answer, or a question only the store can
/// settle (the call or session is not live here).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Denied {
    /// Answer with this error.
    Error(SignalError),
    /// The call is not ringing for the user here: the store says why.
    NotRinging,
    /// The session has no open room here: the store says why.
    NoRoom,
}

impl From<SignalError> for Denied {
    fn from(e: SignalError) -> Self {
        Denied::Error(e)
    }
}

/// Why [`HubCore::connect`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server is shutting down (close 1001).
    ShuttingDown,
    /// Another connection of this recorder is live (close 4003).
    RecorderConnected,
}

/// What the core wakes up for.
#[derive(Debug, Clone, PartialEq)]
enum Timer<L> {
    /// The grace period of a dropped or replaced link is over.
    ExpireLink { user: UserId, link: L },
    /// A ringing call times out.
    Ring { call: CallId },
    /// Member `i` of a room must be back by now (DESIGN.md M3).
    Absence { session: SessionId, i: usize, epoch: u64 },
    /// Both members of a room opened by an accepted call must have joined
    /// by now (DESIGN.md M3): [`Timer::Absence`] of each at epoch 0, armed
    /// once.
    Arrival { session: SessionId },
    /// A booked session's no-show time.
    NoShow { session: SessionId },
}

/// A timer armed to fire at `at`, the `seq`th armed: ordered so that a
/// max-heap gives the earliest deadline first, then the first armed.
struct Armed<L> {
    at: Timestamp,
    seq: u64,
    timer: Timer<L>,
}

impl<L> PartialEq for Armed<L> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<L> Eq for Armed<L> {}

impl<L> PartialOrd for Armed<L> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<L> Ord for Armed<L> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

struct UserState<L> {
    info: UserInfo,
    /// The current link: connected, or dropped and waiting for `resume`
    /// (then `connected` is false).
    link: Option<L>,
    connected: bool,
    /// A link replaced by a newer connection, resumable until it expires.
    previous: Option<L>,
    /// Consultants: whether they want to be rung.
    wants_available: bool,
    /// The call this user is part of, while it rings.
    call: Option<CallId>,
    /// The open session this user is part of.
    session: Option<SessionId>,
    /// The presence last reported to the user.
    reported: PresenceStatus,
}

impl<L> UserState<L> {
    /// Presence as others see it: a consultant whose connection dropped is
    /// offline (not ringable) until they resume or reconnect.
    fn presence(&self) -> PresenceStatus {
        if !self.connected || !self.wants_available {
            PresenceStatus::Offline
        } else if self.call.is_some() || self.session.is_some() {
            PresenceStatus::Busy
        } else {
            PresenceStatus::Available
        }
    }

    fn is_idle(&self) -> bool {
        self.link.is_none() && self.previous.is_none() && self.call.is_none() && self.session.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The payment hold is being placed; the consultant has not been rung.
    Authorizing,
    /// The consultant is ringing.
    Ringing,
    /// The consultant accepted; the session is being stored.
    Accepting,
}

struct Ringing {
    record: CallRecord,
    seeker: UserInfo,
    phase: Phase,
    /// When the ring times out (meaningful once `Ringing`).
    deadline: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attendance {
    NotJoined,
    Present,
    Dropped,
    Left,
}

struct Member<L> {
    user: UserInfo,
    /// The link that joined.
    link: Option<L>,
    attendance: Attendance,
    /// Bumped on every attendance change; absence timers check it.
    epoch: u64,
}

struct Room<L> {
    record: SessionRecord,
    /// Seeker first, consultant second.
    members: [Member<L>; 2],
    /// The recorder asked to record the session (`recording.assigned`).
    assigned: Option<UserId>,
    /// The recorder while it is in the room.
    recorder: Option<(UserInfo, L)>,
    /// Scheduled sessions: a participant who has not joined by then is a
    /// no-show (DESIGN.md §3); until then not joining is not abandoning.
    no_show_at: Option<Timestamp>,
}

impl<L: LinkRef> Room<L> {
    fn new(record: SessionRecord, seeker: UserInfo, consultant: UserInfo) -> Room<L> {
        let member = |user: UserInfo| Member { user, link: None, attendance: Attendance::NotJoined, epoch: 0 };
        Room { record, members: [member(seeker), member(consultant)], assigned: None, recorder: None, no_show_at: None }
    }

    fn index_of(&self, user: &UserId) -> Option<usize> {
        self.members.iter().position(|m| &m.user.id == user)
    }

    /// Whether `link` is this room's recorder.
    fn is_recorder(&self, link: &L) -> bool {
        self.recorder.as_ref().is_some_and(|(_, l)| l == link)
    }

    /// The links of the participants who are in the room or may come back.
    fn participant_links(&self) -> impl Iterator<Item = &L> {
        self.members
            .iter()
            .filter(|m| matches!(m.attendance, Attendance::Present | Attendance::Dropped))
            .filter_map(|m| m.link.as_ref())
    }
}

fn is_link<L: PartialEq>(slot: &Option<L>, link: &L) -> bool {
    slot.as_ref().is_some_and(|l| l == link)
}

fn err(code: ErrorCode, message: impl Into<String>) -> SignalError {
    SignalError::new(code, message)
}

/// The hub's state and rules for every client of this node.
pub(crate) struct HubCore<L> {
    cfg: SignalingConfig,
    hooks: Arc<dyn SessionHooks>,
    /// Boxed: a user's state is 104 bytes, and the table keeps a slot of
    /// its size per bucket (and, while it grows, the old table beside the
    /// new one); a boxed slot is 24 (load-tests/README.md, twenty-sixth run).
    users: HashMap<UserId, Box<UserState<L>>>,
    /// Boxed, as users, rooms and meters are: a ringing call is 144
    /// bytes, and a burst of calls grows the table (load-tests/README.md,
    /// twenty-sixth run).
    calls: HashMap<CallId, Box<Ringing>>,
    /// Boxed: a room is 312 bytes, and a table of them keeps a slot of its
    /// size per bucket (a third or more of them empty, and the old table
    /// beside the new while it grows); a boxed slot is 24, its key and the
    /// box (load-tests/README.md, twenty-fifth run).
    rooms: HashMap<SessionId, Box<Room<L>>>,
    /// Sessions restored after a restart, by participant, until they connect.
    restored: HashMap<UserId, SessionId>,
    /// Calls the former core was running, ended with it: told to each of
    /// their parties at their next connection here.
    lost: HashMap<UserId, Vec<CallId>>,
    /// Users who resumed a journaled link before any session of theirs was
    /// re-opened here ([`HubCore::adopt`]).
    adopted_without_room: HashSet<UserId>,
    shutting_down: bool,
    /// Pending timers, the earliest deadline first (then the first armed).
    /// A timer whose subject has moved on does nothing when it fires. A
    /// heap, not a `BTreeMap`: timers are armed in about the order they
    /// fall due, which leaves a B-tree's nodes half full (its nodes held
    /// 2.5 MB at the heap's peak while 5,000 calls were set up); here a
    /// timer takes 56 bytes of one array (load-tests/README.md,
    /// twenty-sixth run).
    timers: BinaryHeap<Armed<L>>,
    timer_seq: u64,
    /// The current input's time: every output is stamped with it.
    now: Timestamp,
    out: Vec<Output<L>>,
}

impl<L: LinkRef> HubCore<L> {
    /// An empty hub with `cfg`'s grace and ring timeout, reporting what
    /// happens in rooms to `hooks` (the meter).
    pub fn new(cfg: SignalingConfig, hooks: Arc<dyn SessionHooks>) -> Self {
        HubCore {
            cfg,
            hooks,
            users: HashMap::new(),
            calls: HashMap::new(),
            rooms: HashMap::new(),
            restored: HashMap::new(),
            lost: HashMap::new(),
            adopted_without_room: HashSet::new(),
            shutting_down: false,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            now: Timestamp::from_unix_millis(0),
            out: Vec::new(),
        }
    }

    /// Takes the outputs queued so far, oldest first.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output<L>> {
        self.out.drain(..)
    }

    /// When [`HubCore::handle_timeout`] must be called next (`None`: no
    /// timer is pending).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.timers.peek().map(|armed| armed.at)
    }

    /// Time has reached `now`: runs every timer due by then (ring
    /// timeouts, link expiry, absence grace, no-shows), oldest first.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.now = now;
        while self.timers.peek().is_some_and(|armed| armed.at <= now) {
            let Some(armed) = self.timers.pop() else { break };
            match armed.timer {
                Timer::ExpireLink { user, link } => self.expire_link(&user, &link),
                Timer::Ring { call } => self.ring_timeout(&call),
                Timer::Absence { session, i, epoch } => self.absence_timeout(&session, i, epoch),
                Timer::Arrival { session } => {
                    // In order, as two timers armed one after the other
                    // would run: the first absent member ends the session.
                    for i in 0..2 {
                        self.absence_timeout(&session, i, 0);
                    }
                }
                Timer::NoShow { session } => self.no_show(&session),
            }
        }
    }

    fn arm(&mut self, at: Timestamp, timer: Timer<L>) {
        self.timer_seq += 1;
        self.timers.push(Armed { at, seq: self.timer_seq, timer });
    }

    fn push(&mut self, action: Action<L>) {
        self.out.push(Output { at: self.now, action });
    }

    // ----- queries -------------------------------------------------------

    /// The presence of each consultant in `ids` (offline when unknown here).
    pub fn presence_of(&self, ids: &[UserId]) -> Vec<PresenceStatus> {
        ids.iter().map(|id| self.users.get(id).map_or(PresenceStatus::Offline, |u| u.presence())).collect()
    }

    /// Consultants with a link on this node (connected or within grace).
    pub fn online_consultants(&self) -> Vec<UserInfo> {
        self.users
            .values()
            .filter(|u| u.info.role == Role::Consultant && u.link.is_some())
            .map(|u| u.info.clone())
            .collect()
    }

    /// Whether the hub has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether a recorder with this id has a live connection here.
    pub fn recorder_connected(&self, id: &UserId) -> bool {
        self.users.get(id).is_some_and(|u| u.info.role == Role::Recorder && u.connected)
    }

    /// Whether `session_id` has an open room here.
    pub fn is_open(&self, session_id: &SessionId) -> bool {
        self.rooms.contains_key(session_id)
    }

    // ----- for the meter and the server ------------------------------------

    /// Sends `msg` to both participants of the open session `session_id`
    /// (meter notices, DESIGN.md M8). Nothing if it is not open here.
    pub fn notify_session(&mut self, session_id: &SessionId, msg: &ServerMessage, now: Timestamp) {
        self.now = now;
        let Some(room) = self.rooms.get(session_id) else { return };
        let ids = [room.members[0].user.id.clone(), room.members[1].user.id.clone()];
        for id in &ids {
            self.send_to(id, msg.clone());
        }
    }

    /// Sends `msg` to `user` if connected here (booking reminders).
    pub fn notify_user(&mut self, user: &UserId, msg: ServerMessage, now: Timestamp) {
        self.now = now;
        self.send_to(user, msg);
    }

    /// Ends the open session `session_id` for `reason` (a limit the meter
    /// reached, a moderator). Returns false if it was not open here.
    pub fn end_session_for(&mut self, session_id: &SessionId, reason: SessionEndReason, now: Timestamp) -> bool {
        self.now = now;
        let open = self.rooms.contains_key(session_id);
        self.end_session(session_id, reason, None);
        open
    }

    /// Ends the open session `session_id` for `reason` with `bill`, which
    /// the meter decided together with the end (a limit it reached, an
    /// absence it timed): the meter is not asked again. Returns false if it
    /// was not open here.
    pub fn end_metered_session(
        &mut self,
        session_id: &SessionId,
        reason: SessionEndReason,
        bill: SessionBill,
        now: Timestamp,
    ) -> bool {
        self.now = now;
        let open = self.rooms.contains_key(session_id);
        self.end_session_billed(session_id, reason, None, Some(bill));
        open
    }

    /// Begins a graceful shutdown: new connections and calls are refused
    /// and ringing calls end (`server_shutdown`).
    pub fn begin_shutdown(&mut self, now: Timestamp) {
        self.now = now;
        self.shutting_down = true;
        let calls: Vec<CallId> = self.calls.keys().cloned().collect();
        for call_id in calls {
            self.end_call(&call_id, CallEndReason::ServerShutdown, None);
        }
    }

    /// Every client is sent `server.shutdown` and its connection closed
    /// with `code`.
    pub fn farewell(&mut self, code: u16, now: Timestamp) {
        self.now = now;
        let links: Vec<L> = self.users.values().filter_map(|u| u.link.clone()).collect();
        for link in links {
            let msg =
                ServerMessage::ServerShutdown { message: "the server is shutting down; reconnect in a moment".into() };
            self.push(Action::Send { to: link.clone(), msg });
            self.push(Action::Close { to: link, code, reason: "server shutting down" });
        }
    }

    // ----- helpers ---------------------------------------------------------

    /// `msg` to `user`'s current link, at once.
    fn send_to(&mut self, user: &UserId, msg: ServerMessage) {
        if let Some(link) = self.users.get(user).and_then(|u| u.link.clone()) {
            self.push(Action::Send { to: link, msg });
        }
    }

    /// `msg` to `user`'s current link, after this input's store writes.
    fn tell_user(&mut self, user: &UserId, msg: ServerMessage) {
        if let Some(link) = self.users.get(user).and_then(|u| u.link.clone()) {
            self.push(Action::Tell { to: link, msg });
        }
    }

    /// A consultant's presence if it changed since they were last told.
    fn presence_change(&mut self, user: &UserId) -> Option<(L, ServerMessage)> {
        let u = self.users.get_mut(user)?;
        if u.info.role != Role::Consultant {
            return None;
        }
        let now = u.presence();
        if now == u.reported {
            return None;
        }
        u.reported = now;
        u.link.clone().map(|link| (link, ServerMessage::PresenceUpdated { status: now }))
    }

    /// Tells a consultant their presence now, if it changed.
    fn report_presence(&mut self, user: &UserId) {
        if let Some((to, msg)) = self.presence_change(user) {
            self.push(Action::Send { to, msg });
        }
    }

    /// A consultant's presence change, behind this input's store writes.
    fn tell_presence(&mut self, user: &UserId) {
        if let Some((to, msg)) = self.presence_change(user) {
            self.push(Action::Tell { to, msg });
        }
    }

    fn remove_if_idle(&mut self, user: &UserId) {
        if self.users.get(user).is_some_and(|u| u.is_idle()) {
            self.users.remove(user);
        }
    }

    fn store_call(&mut self, call_id: &CallId, state: CallState) {
        self.push(Action::CallTransition { call_id: call_id.clone(), state });
    }

    fn store_event(&mut self, session_id: &SessionId, event: SessionEvent) {
        self.push(Action::SessionEvent { session_id: session_id.clone(), event });
    }
}

/// Makes `session_id` the session of `users` (who are in no other one):
/// at once for those known here, when they connect for the others.
fn attach_session<L>(
    users: &mut HashMap<UserId, Box<UserState<L>>>,
    restored: &mut HashMap<UserId, SessionId>,
    ids: [&UserId; 2],
    session_id: &SessionId,
) {
    for id in ids {
        match users.get_mut(id) {
            Some(state) if state.session.is_none() => state.session = Some(session_id.clone()),
            Some(_) => {}
            None => {
                restored.insert(id.clone(), session_id.clone());
            }
        }
    }
}

fn leave_event(reason: LeaveReason, user: UserId) -> SessionEvent {
    match reason {
        LeaveReason::Left => SessionEvent::Left(user),
        LeaveReason::Dropped => SessionEvent::Dropped(user),
    }
}
