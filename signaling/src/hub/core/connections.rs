//! Links and presence: connect, disconnect, resume, the expiry of dropped
//! and replaced links, and consultants' `presence.set`.

use parley_domain::protocol::{
    CallEndReason, ErrorCode, LeaveReason, PROTOCOL_VERSION, PresenceStatus, Role, ServerMessage, UserInfo,
};
use parley_domain::{CallId, SessionId, Timestamp, UserId};

use super::{Action, Attendance, HubCore, LinkRef, Refusal, Timer, UserState, err, is_link};
use crate::connection::Departure;
use crate::error::SignalError;
use crate::link::CLOSE_REPLACED;
use crate::store::SessionEvent;

impl<L: LinkRef> HubCore<L> {
    /// Registers `link`, a new connection of `user`, and sends it `hello`.
    /// A previous link of the user is replaced (and stays resumable for the
    /// grace period), except a recorder's live one: a second connection of
    /// a recorder is refused and never takes over the first one's
    /// assignments (docs/protocol.md §8.14).
    pub fn connect(&mut self, user: UserInfo, link: L, now: Timestamp) -> Result<(), Refusal> {
        self.now = now;
        if self.shutting_down {
            return Err(Refusal::ShuttingDown);
        }
        if user.role == Role::Recorder && self.users.get(&user.id).is_some_and(|u| u.connected) {
            return Err(Refusal::RecorderConnected);
        }
        let fresh = !self.users.contains_key(&user.id);
        let entry = self.user_state(&user);
        entry.info = user.clone();
        let old = entry.link.replace(link.clone());
        let was_connected = std::mem::replace(&mut entry.connected, true);
        if let Some(old) = old {
            if was_connected {
                let msg = ServerMessage::Error {
                    id: None,
                    code: ErrorCode::Replaced,
                    message: "a newer connection of yours took over; this one closes".into(),
                };
                self.push(Action::Send { to: old.clone(), msg });
                self.push(Action::Close {
                    to: old.clone(),
                    code: CLOSE_REPLACED,
                    reason: "replaced by a newer connection",
                });
                self.leave_room(&user.id, &old, LeaveReason::Dropped);
            }
            // A link that never processed a message (a reconnect attempt
            // that died before its `resume`) must not push the link worth
            // resuming out of reach.
            let entry = self.users.get_mut(&user.id).expect("just inserted");
            if old.is_used() || entry.previous.is_none() {
                entry.previous = Some(old.clone());
                self.arm(now.plus(self.cfg.grace), Timer::ExpireLink { user: user.id.clone(), link: old });
            }
        }
        let entry = self.users.get_mut(&user.id).expect("just inserted");
        let presence = (user.role == Role::Consultant).then(|| entry.presence());
        if let Some(p) = presence {
            entry.reported = p;
        }
        let hello = ServerMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
            user: user.clone(),
            resume_token: link.resume_token().to_owned(),
            resume_window_secs: self.cfg.grace.as_secs(),
            ping_interval_secs: self.cfg.ping_interval.as_secs(),
            presence,
        };
        self.push(Action::Send { to: link.clone(), msg: hello });
        for call_id in self.lost.remove(&user.id).unwrap_or_default() {
            let msg = ServerMessage::CallEnded { call_id, reason: CallEndReason::ServerShutdown, message: None };
            self.push(Action::Send { to: link.clone(), msg });
        }
        if user.role == Role::Recorder {
            self.assign_recorders();
        }
        if fresh {
            self.push(Action::Seen(user));
        }
        Ok(())
    }

    /// The state of `user`, created if new: in the session restored for
    /// them after a restart or a takeover, if any.
    fn user_state(&mut self, user: &UserInfo) -> &mut UserState<L> {
        let restored = match self.restored.remove(&user.id) {
            Some(sid) if self.rooms.contains_key(&sid) => Some(sid),
            _ => None,
        };
        self.users.entry(user.id.clone()).or_insert_with(|| {
            Box::new(UserState {
                info: user.clone(),
                link: None,
                connected: false,
                previous: None,
                wants_available: false,
                call: None,
                session: restored,
                reported: PresenceStatus::Offline,
            })
        })
    }

    /// `link` of `user` has no connection any more. If it is the user's
    /// current link: after a drop, rooms see `participant.left` (`dropped`)
    /// and the link waits `G` for `resume`; after the client's own close
    /// frame, rooms see `left` and the link is gone at once (a ringing call
    /// of theirs ends). Either way an absent participant has `G` to rejoin
    /// before the session ends (DESIGN.md M3).
    pub fn disconnect(&mut self, user: &UserId, link: &L, departure: Departure, now: Timestamp) {
        self.now = now;
        let Some(entry) = self.users.get_mut(user) else { return };
        if !(is_link(&entry.link, link) && entry.connected) {
            return;
        }
        entry.connected = false;
        if entry.info.role == Role::Recorder {
            self.recorder_gone(user, link, None);
        }
        match departure {
            Departure::Dropped => {
                self.leave_room(user, link, LeaveReason::Dropped);
                self.arm(now.plus(self.cfg.grace), Timer::ExpireLink { user: user.clone(), link: link.clone() });
            }
            Departure::Closed => {
                self.leave_room(user, link, LeaveReason::Left);
                self.forget_link(user);
            }
        }
    }

    /// The user's current link is gone for good: they are offline, a call
    /// ringing for them ends, and an idle entry is removed.
    fn forget_link(&mut self, user_id: &UserId) {
        let Some(entry) = self.users.get_mut(user_id) else { return };
        entry.link = None;
        entry.connected = false;
        entry.wants_available = false;
        if let Some(call_id) = entry.call.clone() {
            let reason = match entry.info.role {
                Role::Consultant => CallEndReason::ConsultantUnavailable,
                Role::Seeker | Role::Moderator | Role::Recorder => CallEndReason::SeekerGone,
            };
            self.end_call(&call_id, reason, None);
        }
        self.remove_if_idle(user_id);
    }

    /// The grace period of `link` is over: forgets it if it is still
    /// dropped (or still the replaced one).
    pub(super) fn expire_link(&mut self, user_id: &UserId, link: &L) {
        let Some(entry) = self.users.get_mut(user_id) else { return };
        if is_link(&entry.previous, link) {
            entry.previous = None;
        }
        if is_link(&entry.link, link) && !entry.connected {
            self.forget_link(user_id);
        } else {
            self.remove_if_idle(user_id);
        }
    }

    /// The link of `user` a `resume` with `resume_token` takes over (its
    /// replaced or dropped link), or why not. Changes nothing: the driver
    /// attaches the connection to it, then calls [`HubCore::resumed`].
    pub fn resume_target(&self, user: &UserId, resume_token: &str) -> Result<L, SignalError> {
        let entry = self.users.get(user).ok_or_else(|| err(ErrorCode::ResumeFailed, "nothing to resume"))?;
        match &entry.previous {
            Some(old) if old.resume_token() == resume_token => Ok(old.clone()),
            _ => {
                Err(err(ErrorCode::ResumeFailed, "unknown or expired resume token: start afresh and rejoin your rooms"))
            }
        }
    }

    /// A call the former hub core was running (a killed process, a lost hub
    /// node) ended with it — stored as ended (`server_shutdown`), its hold
    /// released: its seeker and consultant are told `call.ended` at their
    /// next connection here (before a `resume`, so a resumed link does not
    /// wait for it forever).
    pub fn lost_call(&mut self, call_id: &CallId, seeker: &UserId, consultant: &UserId) {
        for user in [seeker, consultant] {
            self.lost.entry(user.clone()).or_default().push(call_id.clone());
        }
    }

    /// Takes over `link`, a link of `user` a former hub node journaled
    /// (issue 16): it becomes their link that dropped — resumable for the
    /// grace period like one that dropped here ([`HubCore::resume_target`],
    /// then [`HubCore::resumed`]) — and, if their open session was re-opened
    /// here, the room's member that dropped, so the resume brings them back
    /// into the room. `available`: a consultant's `presence.set` choice.
    /// Nothing if the user already has a resumable link here.
    pub fn adopt(&mut self, user: &UserInfo, link: L, available: bool, now: Timestamp) {
        self.now = now;
        let entry = self.user_state(user);
        if entry.previous.is_some() {
            return;
        }
        entry.previous = Some(link.clone());
        entry.wants_available = available && user.role == Role::Consultant;
        match entry.session.clone() {
            Some(sid) => {
                if let Some(room) = self.rooms.get_mut(&sid)
                    && let Some(i) = room.index_of(&user.id)
                    && room.members[i].attendance != Attendance::Present
                {
                    room.members[i].link = Some(link.clone());
                    room.members[i].attendance = Attendance::Dropped;
                }
            }
            // Their session may not be re-opened yet (its former owner
            // still holds its lease): they are put in its room when it is.
            None => {
                self.adopted_without_room.insert(user.id.clone());
            }
        }
        self.arm(now.plus(self.cfg.grace), Timer::ExpireLink { user: user.id.clone(), link });
    }

    /// A connection took over `user`'s link found by
    /// [`HubCore::resume_target`]: it is their current link again, their
    /// presence is corrected, and a room they dropped out of sees them back.
    pub fn resumed(&mut self, user_id: &UserId, now: Timestamp) {
        self.now = now;
        let Some(entry) = self.users.get_mut(user_id) else { return };
        let Some(old) = entry.previous.take() else { return };
        entry.link = Some(old.clone());
        entry.connected = true;
        let role = entry.info.role;
        let session = entry.session.clone();
        // Presence reported while away (e.g. `offline`) is corrected.
        self.report_presence(user_id);
        if let Some(sid) = session {
            self.back_in_room(&sid, user_id, &old, now);
        }
        if role == Role::Recorder {
            self.assign_recorders();
        }
    }

    /// `user_id`, whose `link` dropped out of the room of `sid`, is present
    /// again: stored, then told to the peer and the recorder.
    fn back_in_room(&mut self, sid: &SessionId, user_id: &UserId, link: &L, now: Timestamp) {
        let Some(room) = self.rooms.get_mut(sid) else { return };
        let Some(i) = room.index_of(user_id) else { return };
        if !(is_link(&room.members[i].link, link) && room.members[i].attendance == Attendance::Dropped) {
            return;
        }
        room.members[i].attendance = Attendance::Present;
        room.members[i].epoch += 1;
        let user = room.members[i].user.clone();
        let peer = room.members[1 - i].user.id.clone();
        let recorder = room.recorder.as_ref().map(|(_, l)| l.clone());
        self.hooks.joined(sid, user.role, now);
        self.store_event(sid, SessionEvent::Joined(user_id.clone()));
        // Stored, then told.
        let joined = ServerMessage::ParticipantJoined { session_id: sid.clone(), user };
        if let Some(recorder) = recorder {
            self.push(Action::Tell { to: recorder, msg: joined.clone() });
        }
        self.tell_user(&peer, joined);
    }

    /// The session `sid` was re-opened here after `user_id` resumed a
    /// journaled link (its former owner still held its lease then): they
    /// are back in its room as if they had resumed into it, since their
    /// client, having resumed, will not join it again.
    pub(super) fn resumed_before_the_room(&mut self, sid: &SessionId, user_id: &UserId, now: Timestamp) {
        if !self.adopted_without_room.remove(user_id) {
            return;
        }
        let Some(entry) = self.users.get(user_id) else { return };
        let Some(link) = entry.link.clone().filter(|_| entry.connected) else { return };
        if let Some(room) = self.rooms.get_mut(sid)
            && let Some(i) = room.index_of(user_id)
            && room.members[i].attendance == Attendance::NotJoined
        {
            room.members[i].link = Some(link.clone());
            room.members[i].attendance = Attendance::Dropped;
            self.back_in_room(sid, user_id, &link, now);
        }
    }

    /// `presence.set` from a consultant: `available` or `offline` (which
    /// ends a call ringing for them). The new presence is told after the
    /// call's end is stored.
    pub fn presence_set(&mut self, user: &UserInfo, status: PresenceStatus, now: Timestamp) -> Result<(), SignalError> {
        self.now = now;
        if user.role != Role::Consultant {
            return Err(err(ErrorCode::WrongRole, "only consultants have a presence"));
        }
        if status == PresenceStatus::Busy {
            return Err(err(
                ErrorCode::InvalidField,
                "status: `busy` is set by the server; send `available` or `offline`",
            ));
        }
        let entry = self.users.get_mut(&user.id).ok_or_else(|| SignalError::internal("presence for unknown user"))?;
        entry.wants_available = status == PresenceStatus::Available;
        if status == PresenceStatus::Offline
            && let Some(call_id) = entry.call.clone()
        {
            self.end_call(&call_id, CallEndReason::ConsultantUnavailable, None);
        }
        self.tell_presence(&user.id);
        Ok(())
    }
}
