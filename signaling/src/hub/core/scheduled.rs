//! Booked rooms (DESIGN.md §3): a room opened by the scheduler, sessions
//! restored after a restart (M9), and the no-show rule.

use parley_domain::protocol::{SessionEndReason, UserInfo};
use parley_domain::{SessionId, Timestamp, UserId};

use super::{Attendance, HubCore, LinkRef, Room, Timer, attach_session};
use crate::store::SessionRecord;

impl<L: LinkRef> HubCore<L> {
    /// Opens the room of a booked session (already stored, kind
    /// `scheduled`): it admits its seeker and consultant; whoever has not
    /// joined by `no_show_at` is a no-show. Returns false if it was open
    /// already.
    pub fn open_scheduled(
        &mut self,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Timestamp,
        now: Timestamp,
    ) -> bool {
        self.now = now;
        if self.rooms.contains_key(&record.session_id) {
            return false;
        }
        let session_id = record.session_id.clone();
        attach_session(&mut self.users, &mut self.restored, [&seeker.id, &consultant.id], &session_id);
        let recording = record.recording;
        let consultant_id = record.consultant_id.clone();
        self.hooks.opened(&record, now);
        let mut room = Room::new(record, seeker, consultant);
        room.no_show_at = Some(no_show_at);
        self.rooms.insert(session_id.clone(), Box::new(room));
        if recording {
            self.assign_recorders();
        }
        self.report_presence(&consultant_id);
        self.arm(no_show_at, Timer::NoShow { session: session_id });
        true
    }

    /// Reopens, after a restart, a session the store says is open (DESIGN.md
    /// M9): neither participant is present (but one who already resumed a
    /// journaled link here, [`HubCore::adopt`]); each has `G` from now to
    /// join again, or the session ends as abandoned. A booked session whose
    /// `no_show_at` is still ahead is restored as its room first opened.
    pub fn restore_session(
        &mut self,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Option<Timestamp>,
        now: Timestamp,
    ) {
        self.now = now;
        let no_show_at = no_show_at.filter(|t| *t > now);
        let session_id = record.session_id.clone();
        if self.rooms.contains_key(&session_id) {
            return;
        }
        attach_session(&mut self.users, &mut self.restored, [&seeker.id, &consultant.id], &session_id);
        let recording = record.recording;
        let (seeker_id, consultant_id) = (seeker.id.clone(), consultant.id.clone());
        let mut room = Room::new(record, seeker, consultant);
        room.no_show_at = no_show_at;
        self.rooms.insert(session_id.clone(), Box::new(room));
        if recording {
            self.assign_recorders();
        }
        match no_show_at {
            Some(at) => self.arm(at, Timer::NoShow { session: session_id.clone() }),
            None => {
                for i in 0..2 {
                    self.arm(now.plus(self.cfg.grace), Timer::Absence { session: session_id.clone(), i, epoch: 0 });
                }
            }
        }
        for id in [&seeker_id, &consultant_id] {
            self.resumed_before_the_room(&session_id, id, now);
        }
    }

    /// The no-show time of a booked room: the session ends `no_show` if a
    /// participant has not joined; `ended_by` is who did not come, if only
    /// one did not.
    pub(super) fn no_show(&mut self, session_id: &SessionId) {
        let absent: Vec<UserId> = self
            .rooms
            .get(session_id)
            .map(|r| {
                let absent = r.members.iter().filter(|m| m.attendance == Attendance::NotJoined);
                absent.map(|m| m.user.id.clone()).collect()
            })
            .unwrap_or_default();
        if !absent.is_empty() {
            let by = if absent.len() == 1 { absent.into_iter().next() } else { None };
            self.end_session(session_id, SessionEndReason::NoShow, by);
        }
    }
}
