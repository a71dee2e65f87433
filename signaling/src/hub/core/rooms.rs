//! Session rooms: join, leave, the absence grace (DESIGN.md M3), relay of
//! SDP and ICE, chat and media-state checks, and the end of a session.

use parley_domain::protocol::{
    AckResult, ErrorCode, LeaveReason, MediaJoin, RecordingStopReason, Role, ServerMessage, SessionBill,
    SessionEndReason, UserInfo,
};
use parley_domain::{SessionId, Timestamp, UserId};

use super::{Action, Attendance, Denied, HubCore, LinkRef, Member, Timer, err, is_link, leave_event};
use crate::error::SignalError;
use crate::store::SessionEvent;

/// `not_in_room` for `session_id`.
pub(crate) fn not_in_room(session_id: &(impl std::fmt::Display + ?Sized)) -> SignalError {
    err(ErrorCode::NotInRoom, format!("you have not joined the room of session {session_id}"))
}

fn not_participant(session_id: &SessionId) -> SignalError {
    err(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}"))
}

impl<L: LinkRef> HubCore<L> {
    /// Whether `user` may join the room of `session_id` (the driver stores
    /// the join, then calls [`HubCore::join`]).
    pub fn join_check(&self, user: &UserId, session_id: &SessionId) -> Result<(), Denied> {
        match self.rooms.get(session_id) {
            None => Err(Denied::NoRoom),
            Some(room) if room.index_of(user).is_none() => Err(not_participant(session_id).into()),
            Some(_) => Ok(()),
        }
    }

    /// `link` of participant `user` joins the room of `session_id` (the
    /// join is stored): the peer and the recorder get `participant.joined`
    /// and the link its ack (for request `id`), in one step, so the ack's
    /// participants are never overtaken by a join they do not reflect.
    /// `media`: where the participant's media goes if not peer to peer
    /// (the driver asks the server's [`crate::JoinExtras`]), put in the ack.
    /// `Err(NoRoom)`: the session ended while the join was stored.
    pub fn join(
        &mut self,
        link: &L,
        user: &UserInfo,
        session_id: &SessionId,
        id: Option<String>,
        media: Option<MediaJoin>,
        now: Timestamp,
    ) -> Result<(), Denied> {
        self.now = now;
        let Some(room) = self.rooms.get_mut(session_id) else { return Err(Denied::NoRoom) };
        let Some(i) = room.index_of(&user.id) else { return Err(Denied::NoRoom) };
        let me = &mut room.members[i];
        me.link = Some(link.clone());
        me.attendance = Attendance::Present;
        me.epoch += 1;
        let me_user = me.user.clone();
        let peer = &room.members[1 - i];
        let peer_id = peer.user.id.clone();
        let participants = if peer.attendance == Attendance::Present { vec![peer.user.clone()] } else { vec![] };
        let recorder = room.recorder.clone();
        self.hooks.joined(session_id, me_user.role, now);
        let joined = ServerMessage::ParticipantJoined { session_id: session_id.clone(), user: me_user };
        if let Some((_, recorder)) = &recorder {
            self.push(Action::Send { to: recorder.clone(), msg: joined.clone() });
        }
        self.send_to(&peer_id, joined);
        if let Some(id) = id {
            let result = AckResult::Room {
                session_id: session_id.clone(),
                participants,
                ice_servers: self.cfg.ice.ice_servers(&user.id, now),
                offerer: user.role == Role::Seeker,
                meter: self.hooks.status(session_id, now),
                media,
            };
            self.push(Action::Send { to: link.clone(), msg: ServerMessage::Ack { id, result: Some(result) } });
        }
        if let Some((recorder, _)) = recorder {
            let msg = ServerMessage::RecordingStarted { session_id: session_id.clone(), recorder_id: recorder.id };
            self.push(Action::Send { to: link.clone(), msg });
        }
        Ok(())
    }

    /// `room.leave` from `link` of `user`.
    pub fn room_leave(
        &mut self,
        link: &L,
        user: &UserInfo,
        session_id: &SessionId,
        now: Timestamp,
    ) -> Result<(), SignalError> {
        self.now = now;
        if user.role == Role::Recorder {
            if !self.rooms.get(session_id).is_some_and(|r| r.is_recorder(link)) {
                return Err(not_in_room(session_id));
            }
            self.recorder_gone(&user.id, link, Some(session_id));
            return Ok(());
        }
        let room = self.rooms.get(session_id).ok_or_else(|| not_in_room(session_id))?;
        let i = room.index_of(&user.id).ok_or_else(|| not_in_room(session_id))?;
        let me = &room.members[i];
        if !(me.attendance == Attendance::Present && is_link(&me.link, link)) {
            return Err(not_in_room(session_id));
        }
        self.mark_absent(session_id, i, LeaveReason::Left);
        Ok(())
    }

    /// If `link` is present in its user's room, marks it absent for `reason`.
    pub(super) fn leave_room(&mut self, user_id: &UserId, link: &L, reason: LeaveReason) {
        let Some(sid) = self.users.get(user_id).and_then(|u| u.session.clone()) else { return };
        let Some(room) = self.rooms.get(&sid) else { return };
        let Some(i) = room.index_of(user_id) else { return };
        let me = &room.members[i];
        if me.attendance == Attendance::Present && is_link(&me.link, link) {
            self.mark_absent(&sid, i, reason);
        }
    }

    fn mark_absent(&mut self, session_id: &SessionId, i: usize, reason: LeaveReason) {
        let now = self.now;
        let grace = self.cfg.grace;
        let room = self.rooms.get_mut(session_id).expect("caller checked");
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
        let role = me.user.role;
        let peer_id = room.members[1 - i].user.id.clone();
        let recorder = room.recorder.as_ref().map(|(_, l)| l.clone());
        self.hooks.absent(session_id, role, now);
        let left = ServerMessage::ParticipantLeft {
            session_id: session_id.clone(),
            user_id: user_id.clone(),
            reason,
            grace_secs: (since.since(now) + grace).as_secs(),
        };
        if let Some(recorder) = recorder {
            self.push(Action::Send { to: recorder, msg: left.clone() });
        }
        self.send_to(&peer_id, left);
        self.store_event(session_id, leave_event(reason, user_id));
        self.arm(since.plus(grace), Timer::Absence { session: session_id.clone(), i, epoch });
    }

    /// Member `i` was to be back by now: if still absent since the timer
    /// was armed, the session ends as abandoned (DESIGN.md M3).
    pub(super) fn absence_timeout(&mut self, session_id: &SessionId, i: usize, epoch: u64) {
        let still_absent = self
            .rooms
            .get(session_id)
            .is_some_and(|r| r.members[i].epoch == epoch && r.members[i].attendance != Attendance::Present);
        if still_absent {
            self.end_session(session_id, SessionEndReason::Abandoned, None);
        }
    }

    /// Where a signal from `link` goes: the other participant, or the
    /// participant or recorder named by `to`. `Ok(None)`: nobody to deliver
    /// to now (the peer has not joined or left). The hot path: a lookup, no
    /// allocation, no output. The sender is found by its link, a handle
    /// compare, not by its user id compared byte by byte with each
    /// member's (`memcmp` was 1.8 % of the relay at saturation with the
    /// room map's own key compare: perf).
    pub fn relay_target(&self, link: &L, session_id: &str, to: Option<&UserId>) -> Result<Option<L>, SignalError> {
        let reachable = |m: &Member<L>| match m.attendance {
            Attendance::Present | Attendance::Dropped => m.link.clone(),
            Attendance::NotJoined | Attendance::Left => None,
        };
        let room = self.rooms.get(session_id).ok_or_else(|| not_in_room(session_id))?;
        if room.is_recorder(link) {
            let to = to.ok_or_else(|| err(ErrorCode::MissingField, "to: the recorder must name the participant"))?;
            let i = room
                .index_of(to)
                .ok_or_else(|| err(ErrorCode::InvalidField, format!("to: {to} is not a participant")))?;
            return Ok(reachable(&room.members[i]));
        }
        // Present with this very link: a dropped member, or one whose
        // link was replaced, is not in the room for this connection.
        let i = room
            .members
            .iter()
            .position(|m| m.attendance == Attendance::Present && is_link(&m.link, link))
            .ok_or_else(|| not_in_room(session_id))?;
        let peer = &room.members[1 - i];
        match (to, &room.recorder) {
            (None, _) => Ok(reachable(peer)),
            (Some(to), _) if *to == peer.user.id => Ok(reachable(peer)),
            (Some(to), Some((recorder, recorder_link))) if *to == recorder.id => Ok(Some(recorder_link.clone())),
            (Some(to), _) => Err(err(ErrorCode::InvalidField, format!("to: {to} is not in this room"))),
        }
    }

    /// Whether `user` is a participant of the open room `session_id`
    /// (`media.state` is stored for participants only).
    pub fn member_check(&self, user: &UserId, session_id: &SessionId) -> Result<(), SignalError> {
        let room = self.rooms.get(session_id).ok_or_else(|| not_in_room(session_id))?;
        room.index_of(user).map(|_| ()).ok_or_else(|| not_in_room(session_id))
    }

    /// Whether `user` is present in the room `session_id` (`chat.send`).
    pub fn present_check(&self, user: &UserId, session_id: &SessionId) -> Result<(), SignalError> {
        let room = self.rooms.get(session_id).ok_or_else(|| not_in_room(session_id))?;
        let i = room.index_of(user).ok_or_else(|| not_in_room(session_id))?;
        if room.members[i].attendance != Attendance::Present {
            return Err(not_in_room(session_id));
        }
        Ok(())
    }

    /// `session.end` from participant `user`: the session ends `hangup`.
    pub fn hangup(&mut self, user: &UserId, session_id: &SessionId, now: Timestamp) -> Result<(), Denied> {
        self.now = now;
        let Some(room) = self.rooms.get(session_id) else { return Err(Denied::NoRoom) };
        if room.index_of(user).is_none() {
            return Err(not_participant(session_id).into());
        }
        self.end_session(session_id, SessionEndReason::Hangup, Some(user.clone()));
        Ok(())
    }

    /// Ends an open session: the meter settles (`ending`), the end is
    /// stored with the bill, then both participants (and the recorder) get
    /// `session.ended` and the consultant is available again.
    pub(super) fn end_session(&mut self, session_id: &SessionId, reason: SessionEndReason, by: Option<UserId>) {
        self.end_session_billed(session_id, reason, by, None);
    }

    /// [`HubCore::end_session`] with the bill the meter decided together
    /// with the end (`decided`); `None`: the hooks decide it
    /// ([`crate::SessionHooks::ending`]).
    pub(super) fn end_session_billed(
        &mut self,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<UserId>,
        decided: Option<SessionBill>,
    ) {
        let Some(room) = self.rooms.remove(session_id) else { return };
        let by_role = by.as_ref().and_then(|id| room.index_of(id)).map(|i| room.members[i].user.role);
        let bill = match decided {
            Some(bill) => Some(bill),
            None => self.hooks.ending(session_id, reason, by_role, self.now),
        };
        let ended = ServerMessage::SessionEnded { session_id: session_id.clone(), reason, ended_by: by.clone(), bill };
        // Stored first (the recording's stop, then the end), then told.
        let stopped = RecordingStopReason::SessionEnded;
        if room.recorder.is_some() {
            self.store_event(session_id, SessionEvent::RecordingStopped(stopped));
        }
        self.store_event(session_id, SessionEvent::Ended { reason, by: by.clone(), bill });
        if let Some((_, recorder)) = &room.recorder {
            let msg = ServerMessage::RecordingStopped { session_id: session_id.clone(), reason: stopped };
            for m in &room.members {
                self.tell_user(&m.user.id, msg.clone());
            }
            self.push(Action::Tell { to: recorder.clone(), msg: ended.clone() });
        } else if let Some(assigned) = &room.assigned {
            // Assigned but not joined yet: it stops trying.
            self.tell_user(assigned, ended.clone());
        }
        for m in &room.members {
            if let Some(u) = self.users.get_mut(&m.user.id)
                && u.session.as_ref() == Some(session_id)
            {
                u.session = None;
            }
            self.tell_user(&m.user.id, ended.clone());
        }
        self.tell_presence(&room.record.consultant_id);
        for m in &room.members {
            if self.users.get(&m.user.id).is_some_and(|u| u.is_idle()) {
                self.users.remove(&m.user.id);
            }
        }
    }
}
