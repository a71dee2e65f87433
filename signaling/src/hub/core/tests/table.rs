//! Table tests: a state, an input with its time, the outputs it must give.

use parley_domain::protocol::{CallEndReason, LeaveReason, PresenceStatus, ServerMessage, SessionEndReason, UserInfo};

use super::super::{Action, Denied, HubCore, RingRefused};
use super::{GRACE, RING, TestLink, at, core, drain, link, messages, request, users};
use crate::connection::Departure;
use crate::store::{CallState, SessionEvent, SessionRecord};

struct Fixture {
    core: HubCore<TestLink>,
    users: Vec<UserInfo>,
    links: Vec<TestLink>,
}

/// Seeker 0 and consultant 2 connected, the consultant available.
fn connected() -> Fixture {
    let mut core = core();
    let users = users();
    let links: Vec<TestLink> = (0..users.len()).map(|i| link(i as u64, i)).collect();
    for i in [0, 2] {
        core.connect(users[i].clone(), links[i].clone(), at(0)).expect("admitted");
    }
    core.presence_set(&users[2], PresenceStatus::Available, at(0)).expect("consultant");
    drain(&mut core);
    Fixture { core, users, links }
}

/// A call from seeker 0 to consultant 2 ringing since `at(0)`.
fn ringing() -> Fixture {
    let mut f = connected();
    let record = f.core.call_request(&f.users[0], request(&f.users[2], 1, false), at(0)).unwrap().expect("here");
    f.core.call_authorized(&record.call_id, at(0)).expect("rings");
    drain(&mut f.core);
    f
}

/// The session of that call, accepted and stored at `at(0)`, nobody joined.
fn accepted() -> (Fixture, SessionRecord) {
    let mut f = ringing();
    let call = parley_domain::CallId::parse("call_1").unwrap();
    let session = f.core.accept(&f.users[2], &call, at(0)).expect("ringing");
    f.core.accept_stored(&f.users[2], &session, at(0));
    drain(&mut f.core);
    (f, session)
}

/// Both participants joined at `at(0)`.
fn joined() -> (Fixture, SessionRecord) {
    let (mut f, session) = accepted();
    for i in [0, 2] {
        f.core.join(&f.links[i], &f.users[i].clone(), &session.session_id, None, None, at(0)).expect("open");
    }
    drain(&mut f.core);
    (f, session)
}

#[test]
fn a_ring_times_out_exactly_at_its_deadline_and_not_a_millisecond_before() {
    let mut f = ringing();
    let deadline = at(RING.as_millis() as i64);
    assert_eq!(f.core.next_deadline(), Some(deadline));
    f.core.handle_timeout(at(RING.as_millis() as i64 - 1));
    assert!(drain(&mut f.core).is_empty(), "nothing happens before the deadline");
    f.core.handle_timeout(deadline);
    let outs = drain(&mut f.core);
    assert!(outs.iter().all(|o| o.at == deadline), "stamped with the time it happened");
    let call = parley_domain::CallId::parse("call_1").unwrap();
    assert_eq!(
        outs[0].action,
        Action::CallTransition { call_id: call.clone(), state: CallState::Ended(CallEndReason::Timeout) }
    );
    let told: Vec<_> = messages(&outs).into_iter().map(|(u, m)| (u, m.clone())).collect();
    let ended = ServerMessage::CallEnded { call_id: call, reason: CallEndReason::Timeout, message: None };
    assert_eq!(&told[..2], &[(0, ended.clone()), (2, ended)]);
    assert!(matches!(outs.last().map(|o| &o.action), Some(Action::Release { reason: CallEndReason::Timeout, .. })));
    assert_eq!(f.core.next_deadline(), None);
}

#[test]
fn an_accepted_call_does_not_time_out_and_its_late_decline_is_not_ringing() {
    let mut f = ringing();
    let call = parley_domain::CallId::parse("call_1").unwrap();
    f.core.accept(&f.users[2], &call, at(1_000)).expect("ringing");
    f.core.handle_timeout(at(RING.as_millis() as i64));
    assert!(drain(&mut f.core).is_empty(), "an accepting call is set aside");
    let late = f.core.end_call_by(&f.users[0], &call, CallEndReason::Cancelled, None, at(31_000));
    assert_eq!(late, Err(Denied::NotRinging));
    assert!(f.core.is_accepting(&call, &f.users[0].id));
}

#[test]
fn a_failed_accept_after_the_deadline_ends_the_call_as_timed_out() {
    let mut f = ringing();
    let call = parley_domain::CallId::parse("call_1").unwrap();
    f.core.accept(&f.users[2], &call, at(29_000)).expect("ringing");
    f.core.accept_failed(&call, at(31_000));
    let outs = drain(&mut f.core);
    assert_eq!(
        outs[0].action,
        Action::CallTransition { call_id: call, state: CallState::Ended(CallEndReason::Timeout) }
    );
}

#[test]
fn a_call_whose_consultant_left_while_the_hold_was_placed_never_rings() {
    let mut f = connected();
    let record = f.core.call_request(&f.users[0], request(&f.users[2], 1, false), at(0)).unwrap().expect("here");
    f.core.disconnect(&f.users[2].id.clone(), &f.links[2].clone(), Departure::Closed, at(10));
    assert!(messages(&drain(&mut f.core)).is_empty(), "an authorising call ends silently");
    let refused = f.core.call_authorized(&record.call_id, at(20));
    assert!(matches!(refused, Err(RingRefused { reason: CallEndReason::ConsultantUnavailable, .. })));
    assert!(drain(&mut f.core).is_empty(), "the consultant is not rung");
}

#[test]
fn a_drop_ends_the_session_as_abandoned_after_grace_and_not_before() {
    let (mut f, session) = joined();
    f.core.disconnect(&f.users[0].id.clone(), &f.links[0].clone(), Departure::Dropped, at(5_000));
    let outs = drain(&mut f.core);
    let left = messages(&outs);
    assert!(matches!(
        left[..],
        [(2, ServerMessage::ParticipantLeft { reason: LeaveReason::Dropped, grace_secs: 30, .. })]
    ));
    let grace_end = at(5_000 + GRACE.as_millis() as i64);
    f.core.handle_timeout(at(5_000 + GRACE.as_millis() as i64 - 1));
    assert!(drain(&mut f.core).is_empty(), "quiet until the grace is over");
    f.core.handle_timeout(grace_end);
    let outs = drain(&mut f.core);
    let ended = outs.iter().position(|o| {
        matches!(
            &o.action,
            Action::SessionEvent { event: SessionEvent::Ended { reason: SessionEndReason::Abandoned, .. }, .. }
        )
    });
    let told =
        outs.iter().position(|o| matches!(&o.action, Action::Tell { msg: ServerMessage::SessionEnded { .. }, .. }));
    assert!(ended.expect("stored") < told.expect("told"), "stored, then told");
    assert!(!f.core.is_open(&session.session_id));
}

#[test]
fn a_resume_within_grace_keeps_the_session() {
    let (mut f, session) = joined();
    f.core.disconnect(&f.users[0].id.clone(), &f.links[0].clone(), Departure::Dropped, at(5_000));
    // A new connection, then its resume.
    f.core.connect(f.users[0].clone(), link(10, 0), at(6_000)).expect("admitted");
    let old = f.core.resume_target(&f.users[0].id, "token-0").expect("resumable");
    assert_eq!(old, f.links[0]);
    f.core.resumed(&f.users[0].id.clone(), at(6_000));
    let outs = drain(&mut f.core);
    assert!(outs.iter().any(|o| matches!(&o.action, Action::SessionEvent { event: SessionEvent::Joined(_), .. })));
    assert!(messages(&outs).iter().any(|(u, m)| *u == 2 && matches!(m, ServerMessage::ParticipantJoined { .. })));
    f.core.handle_timeout(at(60_000));
    assert!(drain(&mut f.core).is_empty());
    assert!(f.core.is_open(&session.session_id));
}

#[test]
fn nobody_joining_an_accepted_session_abandons_it_grace_after_the_acceptance() {
    let (mut f, session) = accepted();
    f.core.handle_timeout(at(GRACE.as_millis() as i64 - 1));
    assert!(drain(&mut f.core).is_empty());
    f.core.handle_timeout(at(GRACE.as_millis() as i64));
    assert!(!f.core.is_open(&session.session_id));
}

#[test]
fn one_arrival_deadline_ends_a_session_either_member_missed_once_and_keeps_one_both_joined() {
    let grace = at(GRACE.as_millis() as i64);
    for (joining, abandoned) in [(vec![0], true), (vec![2], true), (vec![0, 2], false)] {
        let (mut f, session) = accepted();
        for &i in &joining {
            f.core.join(&f.links[i], &f.users[i].clone(), &session.session_id, None, None, at(1_000)).expect("open");
        }
        drain(&mut f.core);
        f.core.handle_timeout(grace);
        let outs = drain(&mut f.core);
        let ends = outs
            .iter()
            .filter(|o| matches!(&o.action, Action::SessionEvent { event: SessionEvent::Ended { .. }, .. }))
            .count();
        assert_eq!(ends, usize::from(abandoned), "{joining:?} joined: ended once or not at all");
        assert_eq!(f.core.is_open(&session.session_id), !abandoned, "{joining:?} joined");
        assert_eq!(f.core.next_deadline(), None, "every timer due by then ran, the stale ring timeout too");
    }
}

#[test]
fn a_hangup_is_stored_before_both_are_told_and_the_consultant_is_free_again() {
    let (mut f, session) = joined();
    f.core.hangup(&f.users[2].id.clone(), &session.session_id, at(9_000)).expect("participant");
    let outs = drain(&mut f.core);
    assert!(outs.iter().all(|o| o.at == at(9_000)));
    assert!(matches!(
        &outs[0].action,
        Action::SessionEvent { event: SessionEvent::Ended { reason: SessionEndReason::Hangup, .. }, .. }
    ));
    assert!(outs.iter().all(|o| !matches!(&o.action, Action::Send { .. })), "an end is only ever told after its write");
    let told: Vec<usize> = messages(&outs)
        .into_iter()
        .filter(|(_, m)| matches!(m, ServerMessage::SessionEnded { .. }))
        .map(|(u, _)| u)
        .collect();
    assert_eq!(told, vec![0, 2]);
    assert_eq!(f.core.presence_of(&[f.users[2].id.clone()]), vec![PresenceStatus::Available]);
}

#[test]
fn a_relay_goes_to_the_peer_only_and_a_stranger_is_not_in_the_room() {
    let (mut f, session) = joined();
    let to = f.core.relay_target(&f.links[0], session.session_id.as_str(), None).unwrap();
    assert_eq!(to, Some(f.links[2].clone()));
    f.core.connect(f.users[1].clone(), f.links[1].clone(), at(0)).unwrap();
    let stranger = f.core.relay_target(&f.links[1], session.session_id.as_str(), None);
    assert!(stranger.is_err());
    let named = f.core.relay_target(&f.links[0], session.session_id.as_str(), Some(&f.users[1].id));
    assert!(named.is_err(), "`to` must be in the room");
}

#[test]
fn a_booked_room_ends_as_no_show_of_whoever_did_not_come() {
    let mut f = connected();
    let record = SessionRecord {
        session_id: parley_domain::SessionId::parse("ses_booked").unwrap(),
        call_id: parley_domain::CallId::parse("call_booked").unwrap(),
        seeker_id: f.users[0].id.clone(),
        consultant_id: f.users[2].id.clone(),
        opened_at: at(0),
        recording: false,
        scheduled: true,
    };
    let no_show_at = at(25 * 60_000);
    assert!(f.core.open_scheduled(record.clone(), f.users[0].clone(), f.users[2].clone(), no_show_at, at(0)));
    f.core.join(&f.links[0], &f.users[0].clone(), &record.session_id, None, None, at(1_000)).unwrap();
    // Leaving early does not end it: `G` runs from the no-show time.
    f.core.room_leave(&f.links[0], &f.users[0].clone(), &record.session_id, at(2_000)).unwrap();
    drain(&mut f.core);
    f.core.handle_timeout(at(25 * 60_000 - 1));
    assert!(drain(&mut f.core).is_empty());
    f.core.handle_timeout(no_show_at);
    let outs = drain(&mut f.core);
    let by = outs.iter().find_map(|o| match &o.action {
        Action::SessionEvent { event: SessionEvent::Ended { reason: SessionEndReason::NoShow, by, .. }, .. } => {
            Some(by.clone())
        }
        _ => None,
    });
    assert_eq!(by, Some(Some(f.users[2].id.clone())));
}

#[test]
fn a_second_recorder_connection_is_refused_while_the_first_is_live() {
    let mut f = connected();
    f.core.connect(f.users[4].clone(), f.links[4].clone(), at(0)).unwrap();
    let second = f.core.connect(f.users[4].clone(), link(40, 4), at(1));
    assert_eq!(second, Err(super::super::Refusal::RecorderConnected));
}

#[test]
fn shutting_down_ends_ringing_calls_and_refuses_new_connections() {
    let mut f = ringing();
    f.core.begin_shutdown(at(1_000));
    let outs = drain(&mut f.core);
    assert!(outs.iter().any(|o| matches!(
        o.action,
        Action::CallTransition { state: CallState::Ended(CallEndReason::ServerShutdown), .. }
    )));
    assert_eq!(
        f.core.connect(f.users[1].clone(), f.links[1].clone(), at(2_000)),
        Err(super::super::Refusal::ShuttingDown)
    );
}
