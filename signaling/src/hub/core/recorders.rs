//! Recorder assignment (DESIGN.md §6): sessions with recording consent are
//! offered to connected recorders, least busy first; the assigned recorder
//! joins as a third, non-participant member and leaves or drops.

use parley_domain::protocol::{AckResult, ErrorCode, RecordingStopReason, Role, ServerMessage, UserInfo};
use parley_domain::{SessionId, Timestamp, UserId};

use super::{Action, Attendance, HubCore, LinkRef, Room, err};
use crate::error::SignalError;
use crate::store::SessionEvent;

impl<L: LinkRef> HubCore<L> {
    fn recorder_refusal(room: &Room<L>, recorder: &UserId, session_id: &SessionId) -> Option<SignalError> {
        if !room.record.recording {
            Some(err(ErrorCode::Forbidden, format!("session {session_id} is not being recorded")))
        } else if room.assigned.as_ref().is_some_and(|a| a != recorder) {
            Some(err(ErrorCode::Forbidden, format!("session {session_id} is assigned to another recorder")))
        } else {
            None
        }
    }

    /// Whether recorder `user` may join `session_id`: `Ok(false)` if it has
    /// no open room here (the store says why). The driver stores
    /// `recording_started`, then calls [`HubCore::recorder_join`].
    pub fn recorder_join_check(&self, user: &UserId, session_id: &SessionId) -> Result<bool, SignalError> {
        match self.rooms.get(session_id) {
            None => Ok(false),
            Some(room) => Self::recorder_refusal(room, user, session_id).map_or(Ok(true), Err),
        }
    }

    /// Recorder `link` joins the room it was assigned (its start stored):
    /// both participants get `recording.started` and the recorder its ack
    /// for request `id` (as offerer, with the participants present).
    pub fn recorder_join(
        &mut self,
        link: &L,
        user: &UserInfo,
        session_id: &SessionId,
        id: Option<String>,
        now: Timestamp,
    ) -> Result<(), SignalError> {
        self.now = now;
        let Some(room) = self.rooms.get_mut(session_id) else {
            return Err(err(ErrorCode::SessionEnded, format!("session {session_id} has ended")));
        };
        if let Some(e) = Self::recorder_refusal(room, &user.id, session_id) {
            return Err(e);
        }
        room.assigned = Some(user.id.clone());
        room.recorder = Some((user.clone(), link.clone()));
        let started = ServerMessage::RecordingStarted { session_id: session_id.clone(), recorder_id: user.id.clone() };
        let to: Vec<L> = room.participant_links().cloned().collect();
        let participants =
            room.members.iter().filter(|m| m.attendance == Attendance::Present).map(|m| m.user.clone()).collect();
        for l in to {
            self.push(Action::Send { to: l, msg: started.clone() });
        }
        if let Some(id) = id {
            let result = AckResult::Room {
                session_id: session_id.clone(),
                participants,
                ice_servers: self.cfg.ice.ice_servers(&user.id, now),
                offerer: true,
                meter: None,
                media: None,
            };
            self.push(Action::Send { to: link.clone(), msg: ServerMessage::Ack { id, result: Some(result) } });
        }
        Ok(())
    }

    /// Asks connected recorders to record the open sessions with recording
    /// consent that have none (`recording.assigned`), least busy first.
    pub(super) fn assign_recorders(&mut self) {
        let mut recorders: Vec<(usize, UserId, L)> = self
            .users
            .values()
            .filter(|u| u.info.role == Role::Recorder && u.connected)
            .filter_map(|u| u.link.clone().map(|l| (u.info.id.clone(), l)))
            .map(|(id, l)| (self.rooms.values().filter(|r| r.assigned.as_ref() == Some(&id)).count(), id, l))
            .collect();
        if recorders.is_empty() {
            return;
        }
        let mut sends = Vec::new();
        for (sid, room) in self.rooms.iter_mut().filter(|(_, r)| r.record.recording && r.assigned.is_none()) {
            let Some(least) = recorders.iter_mut().min_by_key(|(n, _, _)| *n) else { break };
            least.0 += 1;
            room.assigned = Some(least.1.clone());
            sends.push((least.2.clone(), ServerMessage::RecordingAssigned { session_id: sid.clone() }));
        }
        for (to, msg) in sends {
            self.push(Action::Send { to, msg });
        }
    }

    /// Recorder `link` of `user` left `only` (or every room it is in): the
    /// stop is stored, then both participants get `recording.stopped`; the
    /// session is offered to the connected recorders again.
    pub(super) fn recorder_gone(&mut self, user: &UserId, link: &L, only: Option<&SessionId>) {
        let stopped = RecordingStopReason::RecorderLeft;
        let mut told = Vec::new();
        for (sid, room) in self.rooms.iter_mut() {
            if only.is_some_and(|o| o != sid) {
                continue;
            }
            if room.is_recorder(link) {
                room.recorder = None;
                let to: Vec<L> = room.participant_links().cloned().collect();
                told.push((sid.clone(), to));
            }
            if room.assigned.as_ref() == Some(user) {
                room.assigned = None;
            }
        }
        for (sid, to) in told {
            let msg = ServerMessage::RecordingStopped { session_id: sid.clone(), reason: stopped };
            for l in to {
                self.push(Action::Tell { to: l, msg: msg.clone() });
            }
            self.store_event(&sid, SessionEvent::RecordingStopped(stopped));
        }
        self.assign_recorders();
    }
}
