//! What LiveKit's participant events mean for the meter (rules L1–L3),
//! with no IO: one [`RoomState`] per open LiveKit session turns webhooks
//! (repeated, late, out of order) and polls of the room's participants into
//! the joins and drops the meter gets from the signaling room with peer to
//! peer.
//!
//! - L1: a participant is present from LiveKit's `participant_joined` of
//!   a connection (its `sid`) until that connection's `participant_left`,
//!   the room's `room_finished`, or a poll that no longer lists it.
//! - L2: events are applied once (by event id, stored) and in LiveKit's
//!   order: a connection that left never becomes present again (a late
//!   `participant_joined`), and a `participant_left` of an older
//!   connection does not drop a newer one.
//! - L3: times are LiveKit's (`joined_at_ms`, the event's `created_at`),
//!   clamped to the server clock: never before the session opened or the
//!   last event fed, never after now, so a late webhook never bills time
//!   that was not metered as both present.

use std::collections::BTreeSet;

use parley_domain::protocol::Role;
use parley_domain::{Timestamp, UserId};

/// One participant's LiveKit presence as applied so far.
#[derive(Debug, Default, Clone)]
struct Presence {
    /// The connection (`sid`) present now, with its join time (ms).
    current: Option<(String, i64)>,
    /// Connections that left (a late join of one of them is ignored).
    left: BTreeSet<String>,
    /// The latest join time seen (ms): an older connection's join is ignored.
    newest_join_ms: i64,
}

/// A change for the meter: `role` joined (`true`) or dropped at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Who.
    pub role: Role,
    /// Joined (`true`) or absent (`false`).
    pub joined: bool,
    /// When, on the server clock (L3).
    pub at: Timestamp,
}

/// A participant as LiveKit lists it (`ListParticipants`, or a webhook's
/// `participant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The identity (Parley's user id).
    pub identity: String,
    /// The connection id.
    pub sid: String,
    /// When it joined, Unix ms (0 if LiveKit did not say).
    pub joined_at_ms: i64,
}

/// The LiveKit presence of one open session's two participants.
#[derive(Debug, Clone)]
pub struct RoomState {
    members: [(UserId, Role); 2],
    presence: [Presence; 2],
    opened_at: Timestamp,
    last_fed: Timestamp,
}

impl RoomState {
    /// A session opened at `opened_at` between `seeker` and `consultant`:
    /// nobody is present yet.
    pub fn new(seeker: UserId, consultant: UserId, opened_at: Timestamp) -> Self {
        RoomState {
            members: [(seeker, Role::Seeker), (consultant, Role::Consultant)],
            presence: Default::default(),
            opened_at,
            last_fed: opened_at,
        }
    }

    /// The session's participants (identities) and their roles.
    pub fn members(&self) -> &[(UserId, Role); 2] {
        &self.members
    }

    fn index(&self, identity: &str) -> Option<usize> {
        self.members.iter().position(|(id, _)| id.as_str() == identity)
    }

    /// L3: LiveKit's `at_ms` on the server clock.
    fn at(&mut self, at_ms: i64, now: Timestamp) -> Timestamp {
        let floor = self.last_fed.max(self.opened_at);
        let at = Timestamp::from_unix_millis(at_ms).max(floor).min(now.max(floor));
        self.last_fed = at;
        at
    }

    /// `participant_joined` of `p` (L1, L2). `None`: nothing changes for
    /// the meter (a stranger, a repeat, a late join of a connection that
    /// left or of an older one).
    pub fn joined(&mut self, p: &Listed, event_ms: i64, now: Timestamp) -> Option<Change> {
        let i = self.index(&p.identity)?;
        let joined_ms = if p.joined_at_ms > 0 { p.joined_at_ms } else { event_ms };
        let me = &mut self.presence[i];
        if me.left.contains(&p.sid) || joined_ms < me.newest_join_ms {
            return None;
        }
        me.newest_join_ms = joined_ms;
        let was_present = me.current.is_some();
        me.current = Some((p.sid.clone(), joined_ms));
        if was_present {
            // Another connection of the same identity (LiveKit replaces the
            // older one): still present.
            return None;
        }
        let role = self.members[i].1;
        Some(Change { role, joined: true, at: self.at(joined_ms, now) })
    }

    /// `participant_left` of `p` at `event_ms` (L1, L2).
    pub fn left(&mut self, p: &Listed, event_ms: i64, now: Timestamp) -> Option<Change> {
        let i = self.index(&p.identity)?;
        let me = &mut self.presence[i];
        me.left.insert(p.sid.clone());
        if me.current.as_ref().is_none_or(|(sid, _)| *sid != p.sid) {
            return None;
        }
        me.current = None;
        let role = self.members[i].1;
        Some(Change { role, joined: false, at: self.at(event_ms, now) })
    }

    /// `room_finished` at `event_ms`: everyone present has left.
    pub fn finished(&mut self, event_ms: i64, now: Timestamp) -> Vec<Change> {
        let mut out = Vec::new();
        for i in 0..2 {
            if let Some((sid, _)) = self.presence[i].current.take() {
                self.presence[i].left.insert(sid);
                let role = self.members[i].1;
                out.push(Change { role, joined: false, at: self.at(event_ms, now) });
            }
        }
        out
    }

    /// A poll of the room's participants, asked for at `asked` and
    /// answered at `now`: a participant present here whose connection
    /// (joined before `asked`) LiveKit no longer lists dropped (a lost
    /// `participant_left`), as of `now`; a listed connection not yet seen
    /// joins (a lost `participant_joined`).
    pub fn polled(&mut self, listed: &[Listed], asked: Timestamp, now: Timestamp) -> Vec<Change> {
        let mut out = Vec::new();
        for i in 0..2 {
            let identity = self.members[i].0.as_str().to_owned();
            let mine: Vec<&Listed> = listed.iter().filter(|l| l.identity == identity).collect();
            let current = self.presence[i].current.clone();
            match current {
                Some((sid, joined_ms)) if joined_ms <= asked.unix_millis() && !mine.iter().any(|l| l.sid == sid) => {
                    let gone = Listed { identity: identity.clone(), sid, joined_at_ms: 0 };
                    out.extend(self.left(&gone, now.unix_millis(), now));
                    if let Some(newer) = mine.iter().max_by_key(|l| l.joined_at_ms) {
                        out.extend(self.joined(newer, now.unix_millis(), now));
                    }
                }
                Some(_) => {}
                None => {
                    if let Some(l) = mine.iter().max_by_key(|l| l.joined_at_ms) {
                        out.extend(self.joined(l, now.unix_millis(), now));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000;

    fn room() -> RoomState {
        RoomState::new(UserId::parse("sam").unwrap(), UserId::parse("cora").unwrap(), Timestamp::from_unix_millis(T0))
    }

    fn p(identity: &str, sid: &str, joined_at_ms: i64) -> Listed {
        Listed { identity: identity.into(), sid: sid.into(), joined_at_ms }
    }

    fn at(ms: i64) -> Timestamp {
        Timestamp::from_unix_millis(T0 + ms)
    }

    #[test]
    fn lk1_joins_and_leaves_of_a_connection_are_changes_once() {
        let mut r = room();
        let now = at(60_000);
        let j = r.joined(&p("sam", "PA_1", T0 + 1_000), T0 + 1_000, now).unwrap();
        assert_eq!(j, Change { role: Role::Seeker, joined: true, at: at(1_000) });
        assert_eq!(r.joined(&p("sam", "PA_1", T0 + 1_000), T0 + 1_000, now), None, "a repeat");
        assert_eq!(r.joined(&p("zed", "PA_9", T0 + 1_000), T0 + 1_000, now), None, "a stranger");
        let l = r.left(&p("sam", "PA_1", 0), T0 + 9_000, now).unwrap();
        assert_eq!(l, Change { role: Role::Seeker, joined: false, at: at(9_000) });
        assert_eq!(r.left(&p("sam", "PA_1", 0), T0 + 9_000, now), None, "a repeat");
    }

    #[test]
    fn lk2_a_late_join_of_a_connection_that_left_is_ignored() {
        let mut r = room();
        let now = at(60_000);
        assert_eq!(r.left(&p("cora", "PA_2", 0), T0 + 5_000, now), None, "left before its join arrived");
        assert_eq!(r.joined(&p("cora", "PA_2", T0 + 1_000), T0 + 1_000, now), None);
        // A newer connection's join, then the older one's late leave.
        assert!(r.joined(&p("cora", "PA_3", T0 + 6_000), T0 + 6_000, now).is_some());
        assert_eq!(r.left(&p("cora", "PA_2", 0), T0 + 7_000, now), None, "the older connection");
        assert_eq!(r.joined(&p("cora", "PA_1", T0 + 500), T0 + 500, now), None, "an older join");
    }

    #[test]
    fn lk3_times_are_clamped_to_the_server_clock_and_monotonic() {
        let mut r = room();
        let now = at(10_000);
        let j = r.joined(&p("sam", "PA_1", T0 + 60_000), T0 + 60_000, now).unwrap();
        assert_eq!(j.at, now, "never after now");
        let j = r.joined(&p("cora", "PA_2", T0 - 5_000), T0 - 5_000, now);
        assert_eq!(j.unwrap().at, now, "never before the last event fed");
        let mut r = room();
        assert_eq!(r.joined(&p("sam", "PA_1", T0 - 5_000), T0 - 5_000, now).unwrap().at, at(0), "not before opening");
    }

    #[test]
    fn lk1_a_poll_drops_a_connection_no_longer_listed_and_joins_a_new_one() {
        let mut r = room();
        let now = at(60_000);
        r.joined(&p("sam", "PA_1", T0 + 1_000), T0 + 1_000, now).unwrap();
        r.joined(&p("cora", "PA_2", T0 + 2_000), T0 + 2_000, now).unwrap();
        let later = at(90_000);
        let out = r.polled(&[p("cora", "PA_2", T0 + 2_000)], later, later);
        assert_eq!(out, vec![Change { role: Role::Seeker, joined: false, at: later }]);
        assert_eq!(r.polled(&[p("cora", "PA_2", T0 + 2_000)], later, later), vec![], "nothing new");
        let out = r.polled(&[p("sam", "PA_4", T0 + 95_000), p("cora", "PA_2", T0 + 2_000)], at(100_000), at(100_000));
        assert_eq!(out, vec![Change { role: Role::Seeker, joined: true, at: at(95_000) }]);
        // A join applied while the poll was in flight is not undone by it.
        r.joined(&p("cora", "PA_5", T0 + 101_000), T0 + 101_000, at(101_000));
        assert_eq!(r.polled(&[p("sam", "PA_4", T0 + 95_000)], at(100_500), at(102_000)), vec![]);
    }

    #[test]
    fn lk1_room_finished_drops_everyone_present() {
        let mut r = room();
        let now = at(60_000);
        r.joined(&p("sam", "PA_1", T0 + 1_000), T0 + 1_000, now).unwrap();
        let out = r.finished(T0 + 30_000, now);
        assert_eq!(out, vec![Change { role: Role::Seeker, joined: false, at: at(30_000) }]);
        assert_eq!(r.finished(T0 + 31_000, now), vec![]);
    }
}
