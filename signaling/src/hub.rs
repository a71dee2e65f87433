//! The hub: presence, instant calls, rooms and relay for every connected
//! client of this node.
//!
//! All state sits behind one mutex and every transition happens under it,
//! so transitions are atomic and ordered; messages to clients are queued
//! ([`Link::send`] never blocks) while the lock is held, so clients see
//! transitions in the order they happened. Store writes and the payment
//! gate are awaited after the lock is released. Relay only looks up the
//! peer under the lock and serialises outside it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use parley_domain::protocol::{
    AckResult, CallEndReason, ChatKind, ClientMessage, ErrorCode, IceCandidate, LeaveReason, MAX_CANDIDATE_BYTES,
    MAX_CHAT_BYTES, MAX_SDP_BYTES, MediaState, PROTOCOL_VERSION, PresenceStatus, RecordingStopReason, Role,
    ServerMessage, SessionBill, SessionEndReason, UserInfo,
};
use parley_domain::{CallId, Clock, SessionId, Timestamp, UserId};
use tokio::sync::{Notify, mpsc};
use tokio_util::task::TaskTracker;

use crate::config::SignalingConfig;
use crate::connection::Departure;
use crate::error::SignalError;
use crate::link::{CLOSE_REPLACED, Link};
use crate::metrics;
use crate::store::{CallGate, CallRecord, CallState, SessionEvent, SessionHooks, SessionRecord, Store, StoreError};

/// Close code sent to clients when the server shuts down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Longest `call.decline` reason relayed, bytes.
const MAX_DECLINE_REASON: usize = 200;

/// Why [`Hub::connect`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The server is shutting down (close 1001).
    ShuttingDown,
    /// Another connection of this recorder is live (close
    /// [`CLOSE_RECORDER_CONNECTED`]).
    RecorderConnected,
}

/// Close code for a recorder connection refused because another connection
/// of the same recorder is live (`recorder_connected`).
pub const CLOSE_RECORDER_CONNECTED: u16 = 4003;

/// The signaling hub of one node. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    pub(crate) cfg: SignalingConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    gate: Arc<dyn CallGate>,
    hooks: Arc<dyn SessionHooks>,
    state: Mutex<State>,
    ids: AtomicU64,
    seen: mpsc::UnboundedSender<UserInfo>,
    pub(crate) connections: TaskTracker,
}

#[derive(Default)]
struct State {
    users: HashMap<UserId, UserState>,
    calls: HashMap<CallId, Ringing>,
    rooms: HashMap<SessionId, Room>,
    /// Sessions restored after a restart, by participant, until they connect.
    restored: HashMap<UserId, SessionId>,
    shutting_down: bool,
}

struct UserState {
    info: UserInfo,
    /// The current link: connected, or dropped and waiting for `resume`
    /// (then `connected` is false).
    link: Option<Arc<Link>>,
    connected: bool,
    /// A link replaced by a newer connection, resumable until it expires.
    previous: Option<Arc<Link>>,
    /// Consultants: whether they want to be rung.
    wants_available: bool,
    /// The call this user is part of, while it rings.
    call: Option<CallId>,
    /// The open session this user is part of.
    session: Option<SessionId>,
    /// The presence last reported to the user.
    reported: PresenceStatus,
}

impl UserState {
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

#[derive(Clone, Copy, PartialEq, Eq)]
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attendance {
    NotJoined,
    Present,
    Dropped,
    Left,
}

struct Member {
    user: UserInfo,
    /// The link that joined.
    link: Option<Arc<Link>>,
    attendance: Attendance,
    /// Bumped on every attendance change; absence timers check it.
    epoch: u64,
}

struct Room {
    record: SessionRecord,
    /// Seeker first, consultant second.
    members: [Member; 2],
    /// The recorder asked to record the session (`recording.assigned`),
    /// for sessions with recording consent (DESIGN.md §6).
    assigned: Option<UserId>,
    /// The recorder while it is in the room.
    recorder: Option<(UserInfo, Arc<Link>)>,
    /// Scheduled sessions: a participant who has not joined by then is a
    /// no-show (DESIGN.md §3); until then not joining is not abandoning.
    no_show_at: Option<Timestamp>,
}

impl Room {
    fn new(record: SessionRecord, seeker: UserInfo, consultant: UserInfo) -> Room {
        let member = |user: UserInfo| Member { user, link: None, attendance: Attendance::NotJoined, epoch: 0 };
        Room { record, members: [member(seeker), member(consultant)], assigned: None, recorder: None, no_show_at: None }
    }

    fn index_of(&self, user: &UserId) -> Option<usize> {
        self.members.iter().position(|m| &m.user.id == user)
    }

    /// Whether `link` is this room's recorder.
    fn is_recorder(&self, link: &Arc<Link>) -> bool {
        self.recorder.as_ref().is_some_and(|(_, l)| Arc::ptr_eq(l, link))
    }

    /// The links of the participants who are in the room or may come back.
    fn participant_links(&self) -> impl Iterator<Item = &Arc<Link>> {
        self.members
            .iter()
            .filter(|m| matches!(m.attendance, Attendance::Present | Attendance::Dropped))
            .filter_map(|m| m.link.as_ref())
    }
}

/// Follow-up work that must not run under the state lock, in this order:
/// store writes, then client notifications (so a client told of an end can
/// read it back), then hold releases.
#[derive(Default)]
#[must_use]
struct Effects {
    call_transitions: Vec<(CallId, CallState)>,
    session_events: Vec<(SessionId, SessionEvent)>,
    notify: Vec<(Arc<Link>, ServerMessage)>,
    unanswered: Vec<(CallRecord, CallEndReason)>,
}

impl Effects {
    fn is_empty(&self) -> bool {
        self.call_transitions.is_empty()
            && self.session_events.is_empty()
            && self.notify.is_empty()
            && self.unanswered.is_empty()
    }
}

fn is_link(slot: &Option<Arc<Link>>, link: &Arc<Link>) -> bool {
    slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link))
}

fn err(code: ErrorCode, message: impl Into<String>) -> SignalError {
    SignalError::new(code, message)
}

impl Hub {
    /// A hub using `store` for persistence, `gate` before ringing and
    /// `hooks` to report what happens in session rooms (the meter).
    pub fn new(
        cfg: SignalingConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        gate: Arc<dyn CallGate>,
        hooks: Arc<dyn SessionHooks>,
    ) -> Arc<Hub> {
        let (seen, seen_rx) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub {
            cfg,
            clock,
            store,
            gate,
            hooks,
            state: Mutex::new(State::default()),
            ids: AtomicU64::new(1),
            seen,
            connections: TaskTracker::new(),
        });
        tokio::spawn(record_seen_users(seen_rx, hub.store.clone(), hub.clock.clone()));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn new_token(&self) -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// The presence of each consultant in `ids` (offline when unknown here).
    pub fn presence_of(&self, ids: &[UserId]) -> Vec<PresenceStatus> {
        let st = self.lock();
        ids.iter().map(|id| st.users.get(id).map_or(PresenceStatus::Offline, UserState::presence)).collect()
    }

    /// Consultants with a link on this node (connected or within grace).
    pub fn online_consultants(&self) -> Vec<UserInfo> {
        let st = self.lock();
        st.users
            .values()
            .filter(|u| u.info.role == Role::Consultant && u.link.is_some())
            .map(|u| u.info.clone())
            .collect()
    }

    /// Whether the hub has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }

    // ----- connections -------------------------------------------------

    /// Whether a recorder with this id has a live connection on this node
    /// (a second one is refused: [`Refusal::RecorderConnected`]).
    pub fn recorder_connected(&self, id: &UserId) -> bool {
        let st = self.lock();
        st.users.get(id).is_some_and(|u| u.info.role == Role::Recorder && u.connected)
    }

    /// Registers a new connection of `user` woken through `wake`; returns its
    /// fresh link. A previous link of the user is replaced (and stays
    /// resumable for the grace period), except a recorder's live one: a
    /// second connection of a recorder is refused and never takes over the
    /// first one's assignments (docs/protocol.md §8.14).
    pub(crate) fn connect(
        self: &Arc<Self>,
        user: UserInfo,
        premium: bool,
        conn_id: u64,
        wake: Arc<Notify>,
    ) -> Result<Arc<Link>, Refusal> {
        let link = Arc::new(Link::new(user.clone(), premium, self.new_token(), self.cfg.replay_buffer));
        link.attach(conn_id, wake, None).expect("attaching without replay cannot fail");
        let mut st = self.lock();
        if st.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if user.role == Role::Recorder && st.users.get(&user.id).is_some_and(|u| u.connected) {
            metrics::error(ErrorCode::RecorderConnected);
            return Err(Refusal::RecorderConnected);
        }
        let now = self.clock.now();
        let mut effects = Effects::default();
        let fresh = !st.users.contains_key(&user.id);
        let restored = match st.restored.remove(&user.id) {
            Some(sid) if st.rooms.contains_key(&sid) => Some(sid),
            _ => None,
        };
        let entry = st.users.entry(user.id.clone()).or_insert_with(|| UserState {
            info: user.clone(),
            link: None,
            connected: false,
            previous: None,
            wants_available: false,
            call: None,
            session: restored,
            reported: PresenceStatus::Offline,
        });
        entry.info = user.clone();
        let old = entry.link.replace(link.clone());
        let was_connected = std::mem::replace(&mut entry.connected, true);
        if let Some(old) = old {
            if was_connected {
                old.send(&ServerMessage::Error {
                    id: None,
                    code: ErrorCode::Replaced,
                    message: "a newer connection of yours took over; this one closes".into(),
                });
                old.close(CLOSE_REPLACED, "replaced by a newer connection");
                self.leave_room(&mut st, &user.id, &old, LeaveReason::Dropped, now, &mut effects);
            }
            // A link that never processed a message (a reconnect attempt
            // that died before its `resume`) must not push the link worth
            // resuming out of reach.
            let entry = st.users.get_mut(&user.id).expect("just inserted");
            if old.is_used() || entry.previous.is_none() {
                entry.previous = Some(old.clone());
                self.expire_link_later(user.id.clone(), old);
            }
        }
        let entry = st.users.get_mut(&user.id).expect("just inserted");
        let presence = (user.role == Role::Consultant).then(|| entry.presence());
        if let Some(p) = presence {
            entry.reported = p;
        }
        link.send(&ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            user: user.clone(),
            resume_token: link.resume_token.clone(),
            resume_window_secs: self.cfg.grace.as_secs(),
            ping_interval_secs: self.cfg.ping_interval.as_secs(),
            presence,
        });
        if user.role == Role::Recorder {
            self.assign_recorders(&mut st);
        }
        drop(st);
        if fresh {
            let _ = self.seen.send(user);
        }
        self.spawn_effects(effects);
        Ok(link)
    }

    /// The connection `conn_id` of `link` has closed. If `link` is the
    /// user's current link: after a drop, rooms see `participant.left`
    /// (`dropped`) and the link waits `G` for `resume`; after the client's
    /// own close frame, rooms see `left` and the link is gone at once (a
    /// ringing call of theirs ends). Either way an absent participant has
    /// `G` to rejoin before the session ends (DESIGN.md M3).
    pub(crate) fn disconnect(self: &Arc<Self>, link: &Arc<Link>, conn_id: u64, departure: Departure) {
        link.detach(conn_id);
        if link.is_attached() {
            return; // taken over by a resume
        }
        let mut st = self.lock();
        let now = self.clock.now();
        let mut effects = Effects::default();
        let Some(entry) = st.users.get_mut(&link.user.id) else {
            return;
        };
        if !(is_link(&entry.link, link) && entry.connected) {
            return;
        }
        entry.connected = false;
        if link.user.role == Role::Recorder {
            self.recorder_gone(&mut st, link, None, &mut effects);
        }
        match departure {
            Departure::Dropped => {
                self.leave_room(&mut st, &link.user.id, link, LeaveReason::Dropped, now, &mut effects);
                drop(st);
                self.expire_link_later(link.user.id.clone(), link.clone());
            }
            Departure::Closed => {
                self.leave_room(&mut st, &link.user.id, link, LeaveReason::Left, now, &mut effects);
                self.forget_link(&mut st, &link.user.id, &mut effects);
                drop(st);
            }
        }
        self.spawn_effects(effects);
    }

    /// The user's current link is gone for good: they are offline, a call
    /// ringing for them ends, and an idle entry is removed.
    fn forget_link(&self, st: &mut State, user_id: &UserId, effects: &mut Effects) {
        let Some(entry) = st.users.get_mut(user_id) else { return };
        entry.link = None;
        entry.connected = false;
        entry.wants_available = false;
        if let Some(call_id) = entry.call.clone() {
            let reason = match entry.info.role {
                Role::Consultant => CallEndReason::ConsultantUnavailable,
                Role::Seeker | Role::Moderator | Role::Recorder => CallEndReason::SeekerGone,
            };
            self.end_call(st, &call_id, reason, None, effects);
        }
        if st.users.get(user_id).is_some_and(UserState::is_idle) {
            st.users.remove(user_id);
        }
    }

    /// Takes over the dropped link whose token is `resume_token`: the
    /// connection (woken through `wake`) writes that link's messages from
    /// `last_seq + 1` on. `provisional` is the link the connection started with.
    pub(crate) fn resume(
        self: &Arc<Self>,
        provisional: &Arc<Link>,
        conn_id: u64,
        wake: Arc<Notify>,
        resume_token: &str,
        last_seq: u64,
    ) -> Result<(Arc<Link>, u64), SignalError> {
        let mut st = self.lock();

        let user_id = provisional.user.id.clone();
        let entry = st.users.get_mut(&user_id).ok_or_else(|| err(ErrorCode::ResumeFailed, "nothing to resume"))?;
        let old = match &entry.previous {
            Some(old) if old.resume_token == resume_token => old.clone(),
            _ => {
                return Err(err(
                    ErrorCode::ResumeFailed,
                    "unknown or expired resume token: start afresh and rejoin your rooms",
                ));
            }
        };
        let replayed = old.attach(conn_id, wake, Some(last_seq)).map_err(|gap| {
            err(
                ErrorCode::ResumeFailed,
                format!(
                    "messages after seq {last_seq} are no longer buffered (oldest kept: {}): start afresh",
                    gap.oldest_buffered
                ),
            )
        })?;
        provisional.detach(conn_id);
        entry.previous = None;
        entry.link = Some(old.clone());
        entry.connected = true;
        let session = entry.session.clone();
        // Presence reported while away (e.g. `offline`) is corrected.
        self.report_presence(&mut st, &user_id);
        let mut effects = Effects::default();
        if let Some(sid) = session
            && let Some(room) = st.rooms.get_mut(&sid)
            && let Some(i) = room.index_of(&user_id)
            && is_link(&room.members[i].link, &old)
            && room.members[i].attendance == Attendance::Dropped
        {
            room.members[i].attendance = Attendance::Present;
            room.members[i].epoch += 1;
            let user = room.members[i].user.clone();
            let peer = room.members[1 - i].user.id.clone();
            self.hooks.joined(&sid, user.role, self.clock.now());
            effects.session_events.push((sid.clone(), SessionEvent::Joined(user_id.clone())));
            // Stored, then told (Effects' order).
            let joined = ServerMessage::ParticipantJoined { session_id: sid, user };
            if let Some((_, recorder)) = &room.recorder {
                effects.notify.push((recorder.clone(), joined.clone()));
            }
            self.queue_to(&st, &peer, joined, &mut effects);
        }
        if old.user.role == Role::Recorder {
            self.assign_recorders(&mut st);
        }
        drop(st);
        self.spawn_effects(effects);
        Ok((old, replayed))
    }

    /// After the grace period, forgets `link` if it is still dropped (or
    /// still the replaced one): its user goes offline and a call ringing for
    /// them ends.
    fn expire_link_later(self: &Arc<Self>, user_id: UserId, link: Arc<Link>) {
        let hub = Arc::clone(self);
        let deadline = self.clock.now().plus(self.cfg.grace);
        let sleep = self.clock.sleep_until(deadline);
        tokio::spawn(async move {
            sleep.await;
            let mut st = hub.lock();
            let mut effects = Effects::default();
            let Some(entry) = st.users.get_mut(&user_id) else {
                return;
            };
            if is_link(&entry.previous, &link) {
                entry.previous = None;
            }
            if is_link(&entry.link, &link) && !entry.connected {
                hub.forget_link(&mut st, &user_id, &mut effects);
            } else if st.users.get(&user_id).is_some_and(UserState::is_idle) {
                st.users.remove(&user_id);
            }
            drop(st);
            hub.spawn_effects(effects);
        });
    }

    // ----- requests ----------------------------------------------------

    /// Handles one client request from `link` (everything but `resume`,
    /// which the connection handles). `Ok(result)` is acked with the
    /// request's `id`, unless the handler took the `id` out to send the ack
    /// itself (`room.join`: see [`Hub::room_join`]).
    pub(crate) async fn handle(
        self: &Arc<Self>,
        link: &Arc<Link>,
        id: &mut Option<String>,
        msg: ClientMessage,
    ) -> Result<Option<AckResult>, SignalError> {
        link.mark_used();
        match msg {
            ClientMessage::Ping => Ok(Some(AckResult::Pong { server_time_ms: self.clock.now().unix_millis() })),
            ClientMessage::PresenceSet { status } => self.presence_set(link, status).await.map(|()| None),
            ClientMessage::CallRequest { consultant_id, payment_method, record } => {
                self.call_request(link, consultant_id, payment_method, record).await.map(Some)
            }
            ClientMessage::CallAccept { call_id } => self.call_accept(link, call_id).await.map(|()| None),
            ClientMessage::CallDecline { call_id, reason } => {
                self.call_end_by(link, call_id, CallEndReason::Declined, reason).await.map(|()| None)
            }
            ClientMessage::CallCancel { call_id } => {
                self.call_end_by(link, call_id, CallEndReason::Cancelled, None).await.map(|()| None)
            }
            ClientMessage::RoomJoin { session_id } => self.room_join(link, id, session_id).await.map(|()| None),
            ClientMessage::RoomLeave { session_id } => self.room_leave(link, session_id).map(|()| None),
            ClientMessage::SdpOffer { session_id, sdp, to } => {
                check_sdp(&sdp)?;
                self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::SdpOffer {
                    session_id: session_id.clone(),
                    from,
                    sdp,
                })
            }
            ClientMessage::SdpAnswer { session_id, sdp, to } => {
                check_sdp(&sdp)?;
                self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::SdpAnswer {
                    session_id: session_id.clone(),
                    from,
                    sdp,
                })
            }
            ClientMessage::IceCandidate { session_id, candidate, to } => {
                check_candidate(&candidate)?;
                self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::IceCandidate {
                    session_id: session_id.clone(),
                    from,
                    candidate,
                })
            }
            ClientMessage::ChatSend { session_id, text, kind } => {
                self.chat(link, session_id, text, kind).await.map(|()| None)
            }
            ClientMessage::MediaStateReport { session_id, state } => {
                self.media_state(link, session_id, state).await.map(|()| None)
            }
            ClientMessage::SessionEnd { session_id } => self.session_end(link, session_id).await.map(|()| None),
            ClientMessage::Resume { .. } => Err(err(ErrorCode::ResumeNotFirst, "resume must be the first message")),
        }
    }

    async fn presence_set(self: &Arc<Self>, link: &Arc<Link>, status: PresenceStatus) -> Result<(), SignalError> {
        if link.user.role != Role::Consultant {
            return Err(err(ErrorCode::WrongRole, "only consultants have a presence"));
        }
        if status == PresenceStatus::Busy {
            return Err(err(
                ErrorCode::InvalidField,
                "status: `busy` is set by the server; send `available` or `offline`",
            ));
        }
        let mut effects = Effects::default();
        {
            let mut st = self.lock();
            let entry =
                st.users.get_mut(&link.user.id).ok_or_else(|| SignalError::internal("presence for unknown user"))?;
            entry.wants_available = status == PresenceStatus::Available;
            if status == PresenceStatus::Offline
                && let Some(call_id) = entry.call.clone()
            {
                self.end_call(&mut st, &call_id, CallEndReason::ConsultantUnavailable, None, &mut effects);
            }
            self.queue_presence(&mut st, &link.user.id, &mut effects);
        }
        // Told (and stored) before the ack.
        self.run_effects(effects).await;
        Ok(())
    }

    async fn call_request(
        self: &Arc<Self>,
        link: &Arc<Link>,
        consultant_id: UserId,
        payment_method: Option<String>,
        recording: bool,
    ) -> Result<AckResult, SignalError> {
        if link.user.role != Role::Seeker {
            return Err(err(ErrorCode::WrongRole, "only seekers can request calls"));
        }
        let now = self.clock.now();
        let record = {
            let mut st = self.lock();
            if st.shutting_down {
                return Err(err(ErrorCode::Unavailable, "the server is shutting down; try again shortly"));
            }
            let seeker = st.users.get(&link.user.id).ok_or_else(|| SignalError::internal("caller not registered"))?;
            if seeker.call.is_some() || seeker.session.is_some() {
                return Err(err(ErrorCode::AlreadyInCall, "you already have a call ringing or a session open"));
            }
            let not_here = match st.users.get(&consultant_id) {
                Some(c) if c.info.role == Role::Consultant => match c.presence() {
                    PresenceStatus::Available => Some(()),
                    other => {
                        return Err(err(
                            ErrorCode::ConsultantUnavailable,
                            format!("{} is {} right now", c.info.name, presence_word(other)),
                        ));
                    }
                },
                Some(_) => return Err(unknown_consultant(&consultant_id)),
                None => None,
            }
            .is_none();
            if not_here {
                None
            } else {
                let record = CallRecord {
                    call_id: CallId::parse(format!("call_{}", uuid::Uuid::now_v7().simple())).expect("valid id"),
                    session_id: SessionId::parse(format!("ses_{}", uuid::Uuid::now_v7().simple())).expect("valid id"),
                    seeker_id: link.user.id.clone(),
                    consultant_id: consultant_id.clone(),
                    created_at: now,
                    recording,
                    seeker_premium: link.premium,
                };
                st.calls.insert(
                    record.call_id.clone(),
                    Ringing {
                        record: record.clone(),
                        seeker: link.user.clone(),
                        phase: Phase::Authorizing,
                        deadline: now,
                    },
                );
                for id in [&record.seeker_id, &record.consultant_id] {
                    st.users.get_mut(id).expect("checked above").call = Some(record.call_id.clone());
                }
                Some(record)
            }
        };
        let Some(record) = record else {
            // Not connected here: unknown, or known but offline.
            return Err(match self.store.user(&consultant_id).await {
                Ok(Some(u)) if u.role == Role::Consultant => {
                    err(ErrorCode::ConsultantUnavailable, format!("{} is offline right now", u.name))
                }
                Ok(_) => unknown_consultant(&consultant_id),
                Err(e) => SignalError::internal(e),
            });
        };

        if let Err(e) = self.store.create_call(&record).await {
            self.abandon_authorizing(&record.call_id);
            return Err(SignalError::internal(e));
        }
        if let Err(refusal) = self.gate.before_ring(&record, payment_method.as_deref()).await {
            self.abandon_authorizing(&record.call_id);
            self.persist_call(&record.call_id, CallState::HoldRefused).await;
            metrics::call("hold_refused");
            return Err(SignalError::new(refusal.code, refusal.message));
        }

        let ring_deadline = self.clock.now().plus(self.cfg.ring_timeout);
        let still_wanted = {
            let mut st = self.lock();
            let call = st.calls.get_mut(&record.call_id);
            let still_wanted = call.is_some();
            if let Some(call) = call {
                call.phase = Phase::Ringing;
                call.deadline = ring_deadline;
                self.send_to(
                    &st,
                    &record.consultant_id,
                    &ServerMessage::CallIncoming {
                        call_id: record.call_id.clone(),
                        session_id: record.session_id.clone(),
                        seeker: link.user.clone(),
                        ring_deadline_ms: ring_deadline.unix_millis(),
                        recording: record.recording,
                    },
                );
                self.report_presence(&mut st, &record.consultant_id);
            }
            still_wanted
        };
        if !still_wanted {
            // The consultant went away, or the server began shutting down,
            // while the hold was placed: release it.
            let (reason, error) = if self.is_shutting_down() {
                (
                    CallEndReason::ServerShutdown,
                    err(ErrorCode::Unavailable, "the server is shutting down; call again shortly"),
                )
            } else {
                (
                    CallEndReason::ConsultantUnavailable,
                    err(ErrorCode::ConsultantUnavailable, "the consultant went offline"),
                )
            };
            self.gate.call_unanswered(&record, reason).await;
            self.persist_call(&record.call_id, CallState::Ended(reason)).await;
            metrics::call(reason.as_str());
            return Err(error);
        }
        self.ring_timeout_later(record.call_id.clone(), ring_deadline);
        self.persist_call(&record.call_id, CallState::Ringing).await;
        Ok(AckResult::Call {
            call_id: record.call_id,
            session_id: record.session_id,
            ring_deadline_ms: ring_deadline.unix_millis(),
        })
    }

    /// Undoes the reservation of a call whose hold was not placed.
    fn abandon_authorizing(&self, call_id: &CallId) {
        let mut st = self.lock();
        if let Some(call) = st.calls.remove(call_id) {
            for id in [&call.record.seeker_id, &call.record.consultant_id] {
                if let Some(u) = st.users.get_mut(id)
                    && u.call.as_ref() == Some(call_id)
                {
                    u.call = None;
                }
            }
        }
    }

    fn ring_timeout_later(self: &Arc<Self>, call_id: CallId, deadline: Timestamp) {
        let hub = Arc::clone(self);
        let sleep = self.clock.sleep_until(deadline);
        tokio::spawn(async move {
            sleep.await;
            let mut st = hub.lock();
            let mut effects = Effects::default();
            if st.calls.get(&call_id).is_some_and(|c| c.phase == Phase::Ringing) {
                hub.end_call(&mut st, &call_id, CallEndReason::Timeout, None, &mut effects);
            }
            drop(st);
            hub.spawn_effects(effects);
        });
    }

    /// Why `call_id` is not a ringing call of `user`.
    async fn not_ringing(&self, call_id: &CallId, user: &UserId) -> SignalError {
        let accepting = self.lock().calls.get(call_id).is_some_and(|c| {
            c.phase == Phase::Accepting && (&c.record.seeker_id == user || &c.record.consultant_id == user)
        });
        if accepting {
            return err(ErrorCode::CallNotRinging, format!("call {call_id} is being accepted"));
        }
        match self.store.call(call_id).await {
            Ok(Some(c)) if &c.record.seeker_id == user || &c.record.consultant_id == user => {
                err(ErrorCode::CallNotRinging, format!("call {call_id} is no longer ringing (it is {})", c.state))
            }
            Ok(_) => err(ErrorCode::UnknownCall, format!("no call {call_id} of yours")),
            Err(e) => SignalError::internal(e),
        }
    }

    /// Accepts in two steps so nobody is told of a session the store does
    /// not have: the call is set aside (`Accepting`: no timeout, cancel or
    /// decline can end it), the acceptance and the session are stored, then
    /// the room opens and both sides get `call.accepted`.
    async fn call_accept(self: &Arc<Self>, link: &Arc<Link>, call_id: CallId) -> Result<(), SignalError> {
        if link.user.role != Role::Consultant {
            return Err(err(ErrorCode::WrongRole, "only consultants accept calls"));
        }
        let now = self.clock.now();
        let session = {
            let mut st = self.lock();
            match st.calls.get_mut(&call_id) {
                Some(c) if c.record.consultant_id == link.user.id && c.phase == Phase::Ringing => {
                    c.phase = Phase::Accepting;
                    Some(SessionRecord {
                        session_id: c.record.session_id.clone(),
                        call_id: call_id.clone(),
                        seeker_id: c.record.seeker_id.clone(),
                        consultant_id: c.record.consultant_id.clone(),
                        opened_at: now,
                        recording: c.record.recording,
                        scheduled: false,
                    })
                }
                _ => None,
            }
        };
        let Some(session) = session else {
            return Err(self.not_ringing(&call_id, &link.user.id).await);
        };

        let stored = match self.store.call_transition(&call_id, CallState::Accepted, now).await {
            Ok(()) => self.store.create_session(&session).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            // Ringing again, unless the ring timed out meanwhile.
            let mut effects = Effects::default();
            {
                let mut st = self.lock();
                let deadline = st.calls.get_mut(&call_id).map(|c| {
                    c.phase = Phase::Ringing;
                    c.deadline
                });
                if deadline.is_some_and(|d| self.clock.now() >= d) {
                    self.end_call(&mut st, &call_id, CallEndReason::Timeout, None, &mut effects);
                }
            }
            self.run_effects(effects).await;
            return Err(SignalError::internal(e));
        }

        {
            let mut st = self.lock();
            let ringing = st.calls.remove(&call_id).expect("an accepting call is never ended by others");
            st.rooms.insert(
                session.session_id.clone(),
                Room::new(session.clone(), ringing.seeker.clone(), link.user.clone()),
            );
            self.hooks.opened(&session, now);
            for id in [&session.seeker_id, &session.consultant_id] {
                if let Some(u) = st.users.get_mut(id) {
                    u.call = None;
                    u.session = Some(session.session_id.clone());
                }
                let accepted =
                    ServerMessage::CallAccepted { call_id: call_id.clone(), session_id: session.session_id.clone() };
                self.send_to(&st, id, &accepted);
            }
            if session.recording {
                self.assign_recorders(&mut st);
            }
        }
        // Neither has joined yet: each has `G` to do so (DESIGN.md M3).
        for i in 0..2 {
            self.absence_timeout_later(session.session_id.clone(), i, 0, now);
        }
        metrics::call("accepted");
        Ok(())
    }

    async fn call_end_by(
        self: &Arc<Self>,
        link: &Arc<Link>,
        call_id: CallId,
        reason: CallEndReason,
        message: Option<String>,
    ) -> Result<(), SignalError> {
        let (expected_role, verb) = match reason {
            CallEndReason::Declined => (Role::Consultant, "decline"),
            _ => (Role::Seeker, "cancel"),
        };
        if link.user.role != expected_role {
            return Err(err(ErrorCode::WrongRole, format!("only {}s can {verb} calls", expected_role.as_str())));
        }
        if let Some(m) = &message
            && m.len() > MAX_DECLINE_REASON
        {
            return Err(err(ErrorCode::InvalidField, format!("reason: at most {MAX_DECLINE_REASON} bytes")));
        }
        let effects = {
            let mut st = self.lock();
            let mine = st.calls.get(&call_id).is_some_and(|c| {
                c.phase == Phase::Ringing
                    && (c.record.seeker_id == link.user.id || c.record.consultant_id == link.user.id)
            });
            mine.then(|| {
                let mut effects = Effects::default();
                self.end_call(&mut st, &call_id, reason, message, &mut effects);
                effects
            })
        };
        match effects {
            Some(effects) => {
                self.run_effects(effects).await;
                Ok(())
            }
            None => Err(self.not_ringing(&call_id, &link.user.id).await),
        }
    }

    /// Ends a ringing call: both sides get `call.ended`, the consultant's
    /// presence is restored, and the hold release and store write are queued.
    /// A call being accepted is left alone: it becomes a session, whose own
    /// rules (M3) then apply.
    fn end_call(
        &self,
        st: &mut State,
        call_id: &CallId,
        reason: CallEndReason,
        message: Option<String>,
        effects: &mut Effects,
    ) {
        if st.calls.get(call_id).is_none_or(|c| c.phase == Phase::Accepting) {
            return;
        }
        let Some(call) = st.calls.remove(call_id) else { return };
        for id in [&call.record.seeker_id, &call.record.consultant_id] {
            if let Some(u) = st.users.get_mut(id)
                && u.call.as_ref() == Some(call_id)
            {
                u.call = None;
            }
        }
        if call.phase == Phase::Authorizing {
            // The requester is still placing the hold; it sees the call gone.
            return;
        }
        let ended = ServerMessage::CallEnded { call_id: call_id.clone(), reason, message };
        self.queue_to(st, &call.record.seeker_id, ended.clone(), effects);
        self.queue_to(st, &call.record.consultant_id, ended, effects);
        self.queue_presence(st, &call.record.consultant_id, effects);
        metrics::call(reason.as_str());
        effects.call_transitions.push((call_id.clone(), CallState::Ended(reason)));
        for id in [&call.record.seeker_id, &call.record.consultant_id] {
            if st.users.get(id).is_some_and(UserState::is_idle) {
                st.users.remove(id);
            }
        }
        effects.unanswered.push((call.record, reason));
    }

    /// Why `session_id` has no open room here, for `user`.
    async fn no_room(&self, session_id: &SessionId, user: &UserId) -> SignalError {
        match self.store.session(session_id).await {
            Ok(Some(s)) if &s.record.seeker_id != user && &s.record.consultant_id != user => {
                err(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}"))
            }
            Ok(Some(s)) if s.ended_at.is_some() => {
                err(ErrorCode::SessionEnded, format!("session {session_id} has ended"))
            }
            // A booked session is stored a moment before its room admits
            // joins (`open_scheduled`).
            Ok(Some(s)) if s.record.scheduled => err(
                ErrorCode::RoomNotOpen,
                format!("the room of session {session_id} is opening; join again in a moment"),
            ),
            Ok(Some(_)) => {
                err(ErrorCode::SessionEnded, format!("session {session_id} is no longer open on this server"))
            }
            Ok(None) => match self.store.scheduled(session_id).await {
                Ok(Some(b)) if &b.seeker_id != user && &b.consultant_id != user => {
                    err(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}"))
                }
                // The scheduler is opening it at this moment (the booking
                // is `held` a moment before its room admits anyone).
                Ok(Some(b)) if b.opens_at <= self.clock.now() => err(
                    ErrorCode::RoomNotOpen,
                    format!("the room of session {session_id} is opening; join again in a moment"),
                ),
                Ok(Some(b)) => err(
                    ErrorCode::RoomNotOpen,
                    format!(
                        "the room of session {session_id} opens at {} ms (10 minutes before the start); join then",
                        b.opens_at.unix_millis()
                    ),
                ),
                Ok(None) => err(ErrorCode::UnknownSession, format!("no session {session_id}")),
                Err(e) => SignalError::internal(e),
            },
            Err(e) => SignalError::internal(e),
        }
    }

    /// Joins `link` to the room of `session_id`. The join is stored first;
    /// then, under the lock, the peer is told (`participant.joined`) and the
    /// ack (taken out of `id`) is queued on the link, so the ack's list of
    /// participants is never overtaken by a `participant.joined` it does not
    /// reflect (two joins at once).
    async fn room_join(
        self: &Arc<Self>,
        link: &Arc<Link>,
        id: &mut Option<String>,
        session_id: SessionId,
    ) -> Result<(), SignalError> {
        if link.user.role == Role::Recorder {
            return self.recorder_join(link, id, session_id).await;
        }
        let member = {
            let st = self.lock();
            st.rooms.get(&session_id).map(|room| room.index_of(&link.user.id).is_some())
        };
        match member {
            None => return Err(self.no_room(&session_id, &link.user.id).await),
            Some(false) => {
                return Err(err(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}")));
            }
            Some(true) => {}
        }
        let now = self.clock.now();
        self.persist_session(&session_id, SessionEvent::Joined(link.user.id.clone()), now).await;
        let now = self.clock.now();
        let joined = 'locked: {
            let mut st = self.lock();
            // The session may have ended while the join was stored.
            let Some(room) = st.rooms.get_mut(&session_id) else { break 'locked false };
            let Some(i) = room.index_of(&link.user.id) else { break 'locked false };
            let me = &mut room.members[i];
            me.link = Some(link.clone());
            me.attendance = Attendance::Present;
            me.epoch += 1;
            let user = me.user.clone();
            self.hooks.joined(&session_id, user.role, now);
            let peer = &room.members[1 - i];
            let peer_id = peer.user.id.clone();
            let participants = if peer.attendance == Attendance::Present { vec![peer.user.clone()] } else { vec![] };
            let recorder = room.recorder.clone();
            let joined = ServerMessage::ParticipantJoined { session_id: session_id.clone(), user };
            if let Some((_, recorder)) = &recorder {
                recorder.send(&joined);
            }
            self.send_to(&st, &peer_id, &joined);
            let result = AckResult::Room {
                session_id: session_id.clone(),
                participants,
                ice_servers: self.cfg.ice.ice_servers(&link.user.id, now),
                offerer: link.user.role == Role::Seeker,
                meter: self.hooks.status(&session_id, now),
            };
            if let Some(id) = id.take() {
                link.send(&ServerMessage::Ack { id, result: Some(result) });
            }
            if let Some((recorder, _)) = recorder {
                link.send(&ServerMessage::RecordingStarted {
                    session_id: session_id.clone(),
                    recorder_id: recorder.id,
                });
            }
            true
        };
        if joined { Ok(()) } else { Err(self.no_room(&session_id, &link.user.id).await) }
    }

    /// The recorder joins a room it was assigned (DESIGN.md §6): stored,
    /// then both participants get `recording.started` and the recorder its
    /// ack (as offerer, with the participants present).
    async fn recorder_join(
        self: &Arc<Self>,
        link: &Arc<Link>,
        id: &mut Option<String>,
        session_id: SessionId,
    ) -> Result<(), SignalError> {
        let refusal = |room: &Room| {
            if !room.record.recording {
                Some(err(ErrorCode::Forbidden, format!("session {session_id} is not being recorded")))
            } else if room.assigned.as_ref().is_some_and(|a| a != &link.user.id) {
                Some(err(ErrorCode::Forbidden, format!("session {session_id} is assigned to another recorder")))
            } else {
                None
            }
        };
        let open = {
            let st = self.lock();
            match st.rooms.get(&session_id) {
                None => false,
                Some(room) => match refusal(room) {
                    Some(e) => return Err(e),
                    None => true,
                },
            }
        };
        if !open {
            return Err(match self.store.session(&session_id).await {
                Ok(Some(_)) => err(ErrorCode::SessionEnded, format!("session {session_id} has ended")),
                Ok(None) => err(ErrorCode::UnknownSession, format!("no session {session_id}")),
                Err(e) => SignalError::internal(e),
            });
        }
        let now = self.clock.now();
        self.persist_session(&session_id, SessionEvent::RecordingStarted(link.user.id.clone()), now).await;
        let mut st = self.lock();
        let Some(room) = st.rooms.get_mut(&session_id) else {
            return Err(err(ErrorCode::SessionEnded, format!("session {session_id} has ended")));
        };
        if let Some(e) = refusal(room) {
            return Err(e);
        }
        room.assigned = Some(link.user.id.clone());
        room.recorder = Some((link.user.clone(), link.clone()));
        let started =
            ServerMessage::RecordingStarted { session_id: session_id.clone(), recorder_id: link.user.id.clone() };
        for l in room.participant_links() {
            l.send(&started);
        }
        let participants =
            room.members.iter().filter(|m| m.attendance == Attendance::Present).map(|m| m.user.clone()).collect();
        let result = AckResult::Room {
            session_id: session_id.clone(),
            participants,
            ice_servers: self.cfg.ice.ice_servers(&link.user.id, now),
            offerer: true,
            meter: None,
        };
        if let Some(id) = id.take() {
            link.send(&ServerMessage::Ack { id, result: Some(result) });
        }
        Ok(())
    }

    /// Asks connected recorders to record the open sessions with recording
    /// consent that have none (`recording.assigned`), least busy first.
    fn assign_recorders(&self, st: &mut State) {
        let mut recorders: Vec<(usize, Arc<Link>)> = st
            .users
            .values()
            .filter(|u| u.info.role == Role::Recorder && u.connected)
            .filter_map(|u| u.link.clone())
            .map(|l| (st.rooms.values().filter(|r| r.assigned.as_ref() == Some(&l.user.id)).count(), l))
            .collect();
        if recorders.is_empty() {
            return;
        }
        for (sid, room) in st.rooms.iter_mut().filter(|(_, r)| r.record.recording && r.assigned.is_none()) {
            let Some(least) = recorders.iter_mut().min_by_key(|(n, _)| *n) else { return };
            least.0 += 1;
            room.assigned = Some(least.1.user.id.clone());
            least.1.send(&ServerMessage::RecordingAssigned { session_id: sid.clone() });
        }
    }

    /// The recorder `link` left `only` (or every room it is in): both
    /// participants get `recording.stopped`, and the session is offered to
    /// the connected recorders again.
    fn recorder_gone(&self, st: &mut State, link: &Arc<Link>, only: Option<&SessionId>, effects: &mut Effects) {
        let stopped = RecordingStopReason::RecorderLeft;
        for (sid, room) in st.rooms.iter_mut() {
            if only.is_some_and(|o| o != sid) {
                continue;
            }
            if room.is_recorder(link) {
                room.recorder = None;
                let msg = ServerMessage::RecordingStopped { session_id: sid.clone(), reason: stopped };
                for l in room.participant_links() {
                    effects.notify.push((l.clone(), msg.clone()));
                }
                effects.session_events.push((sid.clone(), SessionEvent::RecordingStopped(stopped)));
            }
            if room.assigned.as_ref() == Some(&link.user.id) {
                room.assigned = None;
            }
        }
        self.assign_recorders(st);
    }

    fn room_leave(self: &Arc<Self>, link: &Arc<Link>, session_id: SessionId) -> Result<(), SignalError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let mut effects = Effects::default();
        if link.user.role == Role::Recorder {
            if !st.rooms.get(&session_id).is_some_and(|r| r.is_recorder(link)) {
                return Err(not_in_room(&session_id));
            }
            self.recorder_gone(&mut st, link, Some(&session_id), &mut effects);
            drop(st);
            self.spawn_effects(effects);
            return Ok(());
        }
        let room = st.rooms.get_mut(&session_id).ok_or_else(|| not_in_room(&session_id))?;
        let i = room.index_of(&link.user.id).ok_or_else(|| not_in_room(&session_id))?;
        let me = &mut room.members[i];
        if !(me.attendance == Attendance::Present && is_link(&me.link, link)) {
            return Err(not_in_room(&session_id));
        }
        self.mark_absent(&mut st, &session_id, i, LeaveReason::Left, now, &mut effects);
        drop(st);
        self.spawn_effects(effects);
        Ok(())
    }

    /// If `link` is present in its user's room, marks it absent for `reason`.
    fn leave_room(
        self: &Arc<Self>,
        st: &mut State,
        user_id: &UserId,
        link: &Arc<Link>,
        reason: LeaveReason,
        now: Timestamp,
        effects: &mut Effects,
    ) {
        let Some(sid) = st.users.get(user_id).and_then(|u| u.session.clone()) else {
            return;
        };
        let Some(room) = st.rooms.get(&sid) else {
            return;
        };
        let Some(i) = room.index_of(user_id) else {
            return;
        };
        let me = &room.members[i];
        if me.attendance == Attendance::Present && is_link(&me.link, link) {
            self.mark_absent(st, &sid, i, reason, now, effects);
        }
    }

    fn mark_absent(
        self: &Arc<Self>,
        st: &mut State,
        session_id: &SessionId,
        i: usize,
        reason: LeaveReason,
        now: Timestamp,
        effects: &mut Effects,
    ) {
        let room = st.rooms.get_mut(session_id).expect("caller checked");
        // In a booked room before its no-show time, `G` runs from that time
        // (as for the meter): leaving early does not end the session.
        let since = room.no_show_at.map_or(now, |t| t.max(now));
        let me = &mut room.members[i];
        me.attendance = match reason {
            LeaveReason::Left => Attendance::Left,
            LeaveReason::Dropped => Attendance::Dropped,
        };
        me.epoch += 1;
        let epoch = me.epoch;
        let user_id = me.user.id.clone();
        self.hooks.absent(session_id, me.user.role, now);
        let peer_id = room.members[1 - i].user.id.clone();
        let left = ServerMessage::ParticipantLeft {
            session_id: session_id.clone(),
            user_id: user_id.clone(),
            reason,
            grace_secs: (since.since(now) + self.cfg.grace).as_secs(),
        };
        if let Some((_, recorder)) = &room.recorder {
            recorder.send(&left);
        }
        self.send_to(st, &peer_id, &left);
        let event = match reason {
            LeaveReason::Left => SessionEvent::Left(user_id),
            LeaveReason::Dropped => SessionEvent::Dropped(user_id),
        };
        effects.session_events.push((session_id.clone(), event));
        self.absence_timeout_later(session_id.clone(), i, epoch, since);
    }

    /// Ends the session if member `i` is still absent `G` after `since`
    /// (DESIGN.md M3).
    fn absence_timeout_later(self: &Arc<Self>, session_id: SessionId, i: usize, epoch: u64, since: Timestamp) {
        let hub = Arc::clone(self);
        let sleep = self.clock.sleep_until(since.plus(self.cfg.grace));
        tokio::spawn(async move {
            sleep.await;
            let mut st = hub.lock();
            let mut effects = Effects::default();
            let still_absent = st
                .rooms
                .get(&session_id)
                .is_some_and(|r| r.members[i].epoch == epoch && r.members[i].attendance != Attendance::Present);
            if still_absent {
                hub.end_session(&mut st, &session_id, SessionEndReason::Abandoned, None, &mut effects);
            }
            drop(st);
            hub.spawn_effects(effects);
        });
    }

    /// Relays a signal from `link` to the other participant, or to the
    /// participant or recorder named by `to`.
    fn relay(
        &self,
        link: &Arc<Link>,
        session_id: &SessionId,
        to: Option<&UserId>,
        make: impl FnOnce(UserId) -> ServerMessage,
    ) -> Result<Option<AckResult>, SignalError> {
        let reachable = |m: &Member| match m.attendance {
            Attendance::Present | Attendance::Dropped => m.link.clone(),
            Attendance::NotJoined | Attendance::Left => None,
        };
        let peer = {
            let st = self.lock();
            let room = st.rooms.get(session_id).ok_or_else(|| not_in_room(session_id))?;
            if room.is_recorder(link) {
                let to =
                    to.ok_or_else(|| err(ErrorCode::MissingField, "to: the recorder must name the participant"))?;
                let i = room
                    .index_of(to)
                    .ok_or_else(|| err(ErrorCode::InvalidField, format!("to: {to} is not a participant")))?;
                reachable(&room.members[i])
            } else {
                let i = room.index_of(&link.user.id).ok_or_else(|| not_in_room(session_id))?;
                let me = &room.members[i];
                if !(me.attendance == Attendance::Present && is_link(&me.link, link)) {
                    return Err(not_in_room(session_id));
                }
                let peer = &room.members[1 - i];
                match (to, &room.recorder) {
                    (None, _) => reachable(peer),
                    (Some(to), _) if *to == peer.user.id => reachable(peer),
                    (Some(to), Some((recorder, recorder_link))) if *to == recorder.id => Some(recorder_link.clone()),
                    (Some(to), _) => {
                        return Err(err(ErrorCode::InvalidField, format!("to: {to} is not in this room")));
                    }
                }
            }
        };
        if let Some(peer) = peer {
            peer.send(&make(link.user.id.clone()));
        }
        Ok(None)
    }

    async fn media_state(&self, link: &Arc<Link>, session_id: SessionId, state: MediaState) -> Result<(), SignalError> {
        let now = self.clock.now();
        {
            let st = self.lock();
            let room = st.rooms.get(&session_id).ok_or_else(|| not_in_room(&session_id))?;
            room.index_of(&link.user.id).ok_or_else(|| not_in_room(&session_id))?;
        }
        self.persist_session(&session_id, SessionEvent::Media(link.user.id.clone(), state), now).await;
        Ok(())
    }

    /// `chat.send`: stored in the timeline first (the recap lists it), then
    /// relayed to the other participant.
    async fn chat(
        &self,
        link: &Arc<Link>,
        session_id: SessionId,
        text: String,
        kind: ChatKind,
    ) -> Result<(), SignalError> {
        if text.trim().is_empty() || text.len() > MAX_CHAT_BYTES {
            return Err(err(ErrorCode::InvalidField, format!("text: 1 to {MAX_CHAT_BYTES} bytes")));
        }
        {
            let st = self.lock();
            let room = st.rooms.get(&session_id).ok_or_else(|| not_in_room(&session_id))?;
            let i = room.index_of(&link.user.id).ok_or_else(|| not_in_room(&session_id))?;
            if room.members[i].attendance != Attendance::Present {
                return Err(not_in_room(&session_id));
            }
        }
        let now = self.clock.now();
        self.persist_session(&session_id, SessionEvent::Chat(link.user.id.clone(), kind, text.clone()), now).await;
        let sid = session_id.clone();
        let relayed = self.relay(link, &session_id, None, |from| ServerMessage::ChatMessage {
            session_id: sid,
            from,
            text,
            kind,
            at_ms: now.unix_millis(),
        });
        // The line is stored either way; the sender left meanwhile.
        relayed.map(|_| ()).or(Ok(()))
    }

    async fn session_end(self: &Arc<Self>, link: &Arc<Link>, session_id: SessionId) -> Result<(), SignalError> {
        let effects = 'locked: {
            let mut st = self.lock();
            let Some(room) = st.rooms.get(&session_id) else { break 'locked None };
            if room.index_of(&link.user.id).is_none() {
                return Err(err(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}")));
            }
            let mut effects = Effects::default();
            self.end_session(&mut st, &session_id, SessionEndReason::Hangup, Some(link.user.id.clone()), &mut effects);
            Some(effects)
        };
        let Some(effects) = effects else { return Err(self.no_room(&session_id, &link.user.id).await) };
        self.run_effects(effects).await;
        Ok(())
    }

    /// Ends an open session: both participants get `session.ended`, the
    /// consultant is available again, the end is queued for the store.
    fn end_session(
        &self,
        st: &mut State,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<UserId>,
        effects: &mut Effects,
    ) {
        self.end_session_billed(st, session_id, reason, by, None, effects);
    }

    /// [`Hub::end_session`] with the bill the meter decided together with
    /// the end (`decided`); `None`: the hooks decide it ([`SessionHooks::ending`]).
    fn end_session_billed(
        &self,
        st: &mut State,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<UserId>,
        decided: Option<SessionBill>,
        effects: &mut Effects,
    ) {
        let Some(room) = st.rooms.remove(session_id) else {
            return;
        };
        let by_role = by.as_ref().and_then(|id| room.index_of(id)).map(|i| room.members[i].user.role);
        let bill = match decided {
            Some(bill) => Some(bill),
            None => self.hooks.ending(session_id, reason, by_role, self.clock.now()),
        };
        let ended = ServerMessage::SessionEnded { session_id: session_id.clone(), reason, ended_by: by.clone(), bill };
        if let Some((_, recorder)) = &room.recorder {
            let stopped = RecordingStopReason::SessionEnded;
            let msg = ServerMessage::RecordingStopped { session_id: session_id.clone(), reason: stopped };
            for m in &room.members {
                self.queue_to(st, &m.user.id, msg.clone(), effects);
            }
            effects.session_events.push((session_id.clone(), SessionEvent::RecordingStopped(stopped)));
            effects.notify.push((recorder.clone(), ended.clone()));
        } else if let Some(assigned) = &room.assigned {
            // Assigned but not joined yet: it stops trying.
            self.queue_to(st, assigned, ended.clone(), effects);
        }
        for m in &room.members {
            if let Some(u) = st.users.get_mut(&m.user.id)
                && u.session.as_ref() == Some(session_id)
            {
                u.session = None;
            }
            self.queue_to(st, &m.user.id, ended.clone(), effects);
        }
        self.queue_presence(st, &room.record.consultant_id, effects);
        for m in &room.members {
            if st.users.get(&m.user.id).is_some_and(UserState::is_idle) {
                st.users.remove(&m.user.id);
            }
        }
        effects.session_events.push((session_id.clone(), SessionEvent::Ended { reason, by, bill }));
    }

    // ----- for the meter and the server ----------------------------------

    /// Sends `msg` to both participants of the open session `session_id`
    /// (meter notices, DESIGN.md M8). Nothing if it is not open here.
    pub fn notify_session(&self, session_id: &SessionId, msg: &ServerMessage) {
        let st = self.lock();
        if let Some(room) = st.rooms.get(session_id) {
            for m in &room.members {
                self.send_to(&st, &m.user.id, msg);
            }
        }
    }

    /// Ends the open session `session_id` for `reason` (a limit the meter
    /// reached, a moderator): stored, then both participants get
    /// `session.ended`. Returns false if it was not open here.
    pub async fn end_session_for(&self, session_id: &SessionId, reason: SessionEndReason) -> bool {
        let mut effects = Effects::default();
        let open = {
            let mut st = self.lock();
            let open = st.rooms.contains_key(session_id);
            self.end_session(&mut st, session_id, reason, None, &mut effects);
            open
        };
        self.run_effects(effects).await;
        open
    }

    /// Ends the open session `session_id` for `reason` with `bill`, which
    /// the meter decided together with the end (a limit it reached, an
    /// absence it timed): stored, then both participants get
    /// `session.ended`; the meter is not asked again. Returns false if it
    /// was not open here.
    pub async fn end_metered_session(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        bill: SessionBill,
    ) -> bool {
        let mut effects = Effects::default();
        let open = {
            let mut st = self.lock();
            let open = st.rooms.contains_key(session_id);
            self.end_session_billed(&mut st, session_id, reason, None, Some(bill), &mut effects);
            open
        };
        self.run_effects(effects).await;
        open
    }

    /// Sends `msg` to `user` if connected here (booking reminders).
    pub fn notify_user(&self, user: &UserId, msg: &ServerMessage) {
        let st = self.lock();
        self.send_to(&st, user, msg);
    }

    /// Opens the room of a booked session (DESIGN.md §3), 10 minutes before
    /// its start: stored first (kind `scheduled`), then the room admits its
    /// seeker and consultant. A participant who has not joined by
    /// `no_show_at` (start + 15 min) is a no-show: the session ends with
    /// `no_show`, `ended_by` the participant who did not come (`None` if
    /// neither came). Returns `Ok(false)` if it was open already.
    pub async fn open_scheduled(
        self: &Arc<Self>,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Timestamp,
    ) -> Result<bool, StoreError> {
        if self.lock().rooms.contains_key(&record.session_id) {
            return Ok(false);
        }
        self.store.create_session(&record).await?;
        let session_id = record.session_id.clone();
        let now = self.clock.now();
        {
            let mut st = self.lock();
            if st.rooms.contains_key(&session_id) {
                return Ok(false);
            }
            attach_session(&mut st, [&seeker.id, &consultant.id], &session_id);
            let recording = record.recording;
            let mut room = Room::new(record.clone(), seeker, consultant);
            room.no_show_at = Some(no_show_at);
            st.rooms.insert(session_id.clone(), room);
            self.hooks.opened(&record, now);
            if recording {
                self.assign_recorders(&mut st);
            }
            self.report_presence(&mut st, &record.consultant_id);
        }
        self.no_show_later(session_id, no_show_at);
        Ok(true)
    }

    /// At `no_show_at`, ends the session `no_show` if a participant has not
    /// joined its room; `ended_by` is who did not come, if only one did not.
    fn no_show_later(self: &Arc<Self>, session_id: SessionId, no_show_at: Timestamp) {
        let hub = Arc::clone(self);
        let sleep = self.clock.sleep_until(no_show_at);
        tokio::spawn(async move {
            sleep.await;
            let mut effects = Effects::default();
            {
                let mut st = hub.lock();
                let absent: Vec<UserId> = st
                    .rooms
                    .get(&session_id)
                    .map(|r| {
                        let absent = r.members.iter().filter(|m| m.attendance == Attendance::NotJoined);
                        absent.map(|m| m.user.id.clone()).collect()
                    })
                    .unwrap_or_default();
                if !absent.is_empty() {
                    let by = if absent.len() == 1 { absent.into_iter().next() } else { None };
                    hub.end_session(&mut st, &session_id, SessionEndReason::NoShow, by, &mut effects);
                }
            }
            hub.spawn_effects(effects);
        });
    }

    /// Reopens, after a restart, a session the store says is open (DESIGN.md
    /// M9): neither participant is present; each has `G` from now to join
    /// its room again, or the session ends as abandoned. A booked session
    /// whose no-show time `no_show_at` is still ahead is restored as its
    /// room first opened: whoever has not joined by then is a no-show.
    pub fn restore_session(
        self: &Arc<Self>,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Option<Timestamp>,
    ) {
        let now = self.clock.now();
        let no_show_at = no_show_at.filter(|t| *t > now);
        let session_id = record.session_id.clone();
        {
            let mut st = self.lock();
            if st.rooms.contains_key(&session_id) {
                return;
            }
            attach_session(&mut st, [&seeker.id, &consultant.id], &session_id);
            let recording = record.recording;
            let mut room = Room::new(record, seeker, consultant);
            room.no_show_at = no_show_at;
            st.rooms.insert(session_id.clone(), room);
            if recording {
                self.assign_recorders(&mut st);
            }
        }
        match no_show_at {
            Some(at) => self.no_show_later(session_id, at),
            None => {
                for i in 0..2 {
                    self.absence_timeout_later(session_id.clone(), i, 0, now);
                }
            }
        }
    }

    // ----- shutdown ----------------------------------------------------

    /// Begins a graceful shutdown: ringing calls end (`server_shutdown`),
    /// every client is sent `server.shutdown` and its WebSocket is closed
    /// with 1001. Open sessions stay open in the store. Returns once the
    /// store writes are done; await [`Hub::connections_closed`] next.
    pub async fn shutdown(self: &Arc<Self>) {
        let mut effects = Effects::default();
        {
            let mut st = self.lock();
            st.shutting_down = true;
            let calls: Vec<CallId> = st.calls.keys().cloned().collect();
            for call_id in calls {
                self.end_call(&mut st, &call_id, CallEndReason::ServerShutdown, None, &mut effects);
            }
        }
        // Ringing calls' ends are stored and sent while clients still listen.
        self.run_effects(effects).await;
        {
            let st = self.lock();
            for link in st.users.values().filter_map(|u| u.link.as_ref()) {
                link.send(&ServerMessage::ServerShutdown {
                    message: "the server is shutting down; reconnect in a moment".into(),
                });
                link.close(CLOSE_GOING_AWAY, "server shutting down");
            }
        }
        self.connections.close();
    }

    /// Resolves when every connection task has ended (after [`Hub::shutdown`]).
    pub async fn connections_closed(&self) {
        self.connections.wait().await;
    }

    // ----- helpers -----------------------------------------------------

    /// Queues `msg` on `user`'s current link, if any.
    fn send_to(&self, st: &State, user: &UserId, msg: &ServerMessage) {
        if let Some(link) = st.users.get(user).and_then(|u| u.link.as_ref()) {
            link.send(msg);
        }
    }

    /// Queues `msg` for `user`'s current link, to be sent after the store
    /// writes of `effects`.
    fn queue_to(&self, st: &State, user: &UserId, msg: ServerMessage, effects: &mut Effects) {
        if let Some(link) = st.users.get(user).and_then(|u| u.link.as_ref()) {
            effects.notify.push((link.clone(), msg));
        }
    }

    /// A consultant's presence if it changed since they were last told.
    fn presence_change(&self, st: &mut State, user: &UserId) -> Option<(Arc<Link>, ServerMessage)> {
        let u = st.users.get_mut(user)?;
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
    fn report_presence(&self, st: &mut State, user: &UserId) {
        if let Some((link, msg)) = self.presence_change(st, user) {
            link.send(&msg);
        }
    }

    /// Queues a consultant's presence change behind `effects`' store writes.
    fn queue_presence(&self, st: &mut State, user: &UserId, effects: &mut Effects) {
        effects.notify.extend(self.presence_change(st, user));
    }

    async fn persist_call(&self, call_id: &CallId, state: CallState) {
        if let Err(e) = self.store.call_transition(call_id, state, self.clock.now()).await {
            tracing::error!(%call_id, state = state.as_str(), error = %e, "failed to store call transition");
        }
    }

    async fn persist_session(&self, session_id: &SessionId, event: SessionEvent, at: Timestamp) {
        if let Err(e) = self.store.session_event(session_id, &event, at).await {
            tracing::error!(%session_id, kind = event.kind(), error = %e, "failed to store session event");
        }
    }

    async fn run_effects(&self, effects: Effects) {
        let now = self.clock.now();
        for (call_id, state) in effects.call_transitions {
            self.persist_call(&call_id, state).await;
        }
        for (session_id, event) in effects.session_events {
            self.persist_session(&session_id, event, now).await;
        }
        for (link, msg) in effects.notify {
            link.send(&msg);
        }
        for (record, reason) in effects.unanswered {
            self.gate.call_unanswered(&record, reason).await;
        }
    }

    fn spawn_effects(self: &Arc<Self>, effects: Effects) {
        if effects.is_empty() {
            return;
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move { hub.run_effects(effects).await });
    }
}

/// Makes `session_id` the session of `users` (who are in no other one):
/// at once for those known here, when they connect for the others.
fn attach_session(st: &mut State, users: [&UserId; 2], session_id: &SessionId) {
    for id in users {
        match st.users.get_mut(id) {
            Some(state) if state.session.is_none() => state.session = Some(session_id.clone()),
            Some(_) => {}
            None => {
                st.restored.insert(id.clone(), session_id.clone());
            }
        }
    }
}

fn presence_word(p: PresenceStatus) -> &'static str {
    match p {
        PresenceStatus::Available => "available",
        PresenceStatus::Busy => "in another call",
        PresenceStatus::Offline => "offline",
    }
}

fn unknown_consultant(id: &UserId) -> SignalError {
    err(ErrorCode::UnknownConsultant, format!("no consultant {id}"))
}

fn not_in_room(session_id: &SessionId) -> SignalError {
    err(ErrorCode::NotInRoom, format!("you have not joined the room of session {session_id}"))
}

fn check_sdp(sdp: &str) -> Result<(), SignalError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(err(
            ErrorCode::SdpTooLarge,
            format!("SDP is {} bytes; at most {MAX_SDP_BYTES} allowed", sdp.len()),
        ));
    }
    Ok(())
}

fn check_candidate(c: &IceCandidate) -> Result<(), SignalError> {
    if c.candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(err(
            ErrorCode::SdpTooLarge,
            format!("candidate is {} bytes; at most {MAX_CANDIDATE_BYTES} allowed", c.candidate.len()),
        ));
    }
    Ok(())
}

/// Writes newly seen users to the store, off the connect path: `connect`
/// does not await, and one long-lived task takes whatever has queued (the
/// store group-commits it) instead of a task per new user.
async fn record_seen_users(mut rx: mpsc::UnboundedReceiver<UserInfo>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    const BATCH: usize = 512;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = store.users_seen(&batch, clock.now()).await {
            tracing::error!(error = %e, users = batch.len(), "failed to record seen users");
        }
        batch.clear();
    }
}
