//! Properties over any interleaving of connects, drops, resumes, call
//! requests, hold results, accepts (stored or not), declines, cancels,
//! joins, leaves, relays, hang-ups and the passing of time.

use std::collections::{HashMap, HashSet};

use parley_domain::protocol::{CallEndReason, PresenceStatus, Role, ServerMessage, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp};
use proptest::prelude::*;

use super::super::{Action, HubCore, Output};
use super::{TestLink, at, core, drain, link, request, session_of, users};
use crate::connection::Departure;
use crate::store::{CallRecord, CallState, SessionEvent, SessionRecord};

#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    Disconnect(usize, bool),
    Resume(usize, usize),
    Available(usize),
    Request(usize, usize, bool),
    Authorize(usize),
    Refuse(usize),
    Accept(usize, usize),
    Stored(usize),
    StoreFailed(usize),
    Decline(usize, usize),
    Cancel(usize, usize),
    Join(usize, usize),
    Leave(usize, usize),
    Relay(usize, usize),
    Hangup(usize, usize),
    Advance(u32),
}

/// Inputs, weighted so that calls get rung, accepted and joined often.
fn op() -> impl Strategy<Value = Op> {
    let u = 0..5usize;
    prop_oneof![
        4 => u.clone().prop_map(Op::Connect),
        1 => (u.clone(), any::<bool>()).prop_map(|(u, d)| Op::Disconnect(u, d)),
        1 => (u.clone(), 0..4usize).prop_map(|(u, k)| Op::Resume(u, k)),
        3 => (2..4usize).prop_map(Op::Available),
        4 => (0..2usize, 2..4usize, any::<bool>()).prop_map(|(s, c, r)| Op::Request(s, c, r)),
        4 => (0..8usize).prop_map(Op::Authorize),
        1 => (0..8usize).prop_map(Op::Refuse),
        4 => (2..4usize, 0..8usize).prop_map(|(c, k)| Op::Accept(c, k)),
        4 => (0..8usize).prop_map(Op::Stored),
        1 => (0..8usize).prop_map(Op::StoreFailed),
        1 => (2..4usize, 0..8usize).prop_map(|(c, k)| Op::Decline(c, k)),
        1 => (0..2usize, 0..8usize).prop_map(|(s, k)| Op::Cancel(s, k)),
        5 => (u.clone(), 0..8usize).prop_map(|(u, k)| Op::Join(u, k)),
        1 => (u.clone(), 0..8usize).prop_map(|(u, k)| Op::Leave(u, k)),
        3 => (u.clone(), 0..8usize).prop_map(|(u, k)| Op::Relay(u, k)),
        1 => (u, 0..8usize).prop_map(|(u, k)| Op::Hangup(u, k)),
        2 => (0..40_000u32).prop_map(Op::Advance),
    ]
}

/// Plays the driver: carries the core's questions to a fake store and gate
/// and checks every output against the properties.
struct Sim {
    core: HubCore<TestLink>,
    users: Vec<UserInfo>,
    now: i64,
    next_link: u64,
    next_call: u64,
    links: Vec<Vec<TestLink>>,
    current: Vec<Option<TestLink>>,
    live: Vec<bool>,
    calls: Vec<CallRecord>,
    authorizing: Vec<CallId>,
    accepting: Vec<(usize, SessionRecord)>,
    sessions: Vec<SessionRecord>,
    accepted: HashSet<CallId>,
    call_ended: HashSet<CallId>,
    session_ended: HashSet<SessionId>,
}

impl Sim {
    fn new() -> Sim {
        let users = users();
        let n = users.len();
        Sim {
            core: core(),
            users,
            now: 0,
            next_link: 0,
            next_call: 0,
            links: vec![Vec::new(); n],
            current: vec![None; n],
            live: vec![false; n],
            calls: Vec::new(),
            authorizing: Vec::new(),
            accepting: Vec::new(),
            sessions: Vec::new(),
            accepted: HashSet::new(),
            call_ended: HashSet::new(),
            session_ended: HashSet::new(),
        }
    }

    fn t(&self) -> Timestamp {
        at(self.now)
    }

    fn live_link(&self, u: usize) -> Option<TestLink> {
        if self.live[u] { self.current[u].clone() } else { None }
    }

    fn pick<T: Clone>(v: &[T], k: usize) -> Option<T> {
        (!v.is_empty()).then(|| v[k % v.len()].clone())
    }

    fn step(&mut self, op: Op) {
        let now = self.t();
        let users = self.users.clone();
        match op {
            Op::Connect(u) => {
                self.next_link += 1;
                let l = link(self.next_link, u);
                if self.core.connect(users[u].clone(), l.clone(), now).is_ok() {
                    self.links[u].push(l.clone());
                    self.current[u] = Some(l);
                    self.live[u] = true;
                }
            }
            Op::Disconnect(u, dropped) => {
                if let Some(l) = self.live_link(u) {
                    let departure = if dropped { Departure::Dropped } else { Departure::Closed };
                    self.core.disconnect(&users[u].id, &l, departure, now);
                    self.live[u] = false;
                }
            }
            Op::Resume(u, k) => {
                if let Some(token) = Self::pick(&self.links[u], k).map(|l| l.token)
                    && let Ok(old) = self.core.resume_target(&users[u].id, &token)
                {
                    self.core.resumed(&users[u].id, now);
                    self.current[u] = Some(old);
                    self.live[u] = true;
                }
            }
            Op::Available(c) => {
                if self.live[c] {
                    let _ = self.core.presence_set(&users[c], PresenceStatus::Available, now);
                }
            }
            Op::Request(s, c, recording) => {
                if self.live[s] {
                    self.next_call += 1;
                    let req = request(&users[c], self.next_call, recording);
                    if let Ok(Some(record)) = self.core.call_request(&users[s], req, now) {
                        self.authorizing.push(record.call_id.clone());
                        self.calls.push(record);
                    }
                }
            }
            Op::Authorize(k) | Op::Refuse(k) => {
                if !self.authorizing.is_empty() {
                    let call = self.authorizing.remove(k % self.authorizing.len());
                    if matches!(op, Op::Authorize(_)) {
                        let _ = self.core.call_authorized(&call, now);
                    } else {
                        self.core.call_abandoned(&call, now);
                    }
                }
            }
            Op::Accept(c, k) => {
                // Mostly the latest call.
                let latest = self.calls.len().saturating_sub(1 + k % 2);
                if self.live[c]
                    && let Some(call) = self.calls.get(latest).cloned()
                    && let Ok(session) = self.core.accept(&users[c], &call.call_id, now)
                {
                    self.accepting.push((c, session));
                }
            }
            Op::Stored(k) | Op::StoreFailed(k) => {
                if !self.accepting.is_empty() {
                    let (c, session) = self.accepting.remove(k % self.accepting.len());
                    if matches!(op, Op::Stored(_)) {
                        assert!(self.accepted.insert(session.call_id.clone()), "a call opens one session");
                        assert!(!self.call_ended.contains(&session.call_id), "an ended call is never accepted");
                        self.core.accept_stored(&users[c], &session, now);
                        self.sessions.push(session);
                    } else {
                        self.core.accept_failed(&session.call_id, now);
                    }
                }
            }
            Op::Decline(u, k) | Op::Cancel(u, k) => {
                if self.live[u]
                    && let Some(call) = Self::pick(&self.calls, k)
                {
                    let reason =
                        if matches!(op, Op::Decline(..)) { CallEndReason::Declined } else { CallEndReason::Cancelled };
                    let _ = self.core.end_call_by(&users[u], &call.call_id, reason, None, now);
                }
            }
            Op::Join(u, k) => {
                if let (Some(l), Some(s)) = (self.live_link(u), Self::pick(&self.sessions, k)) {
                    if users[u].role == Role::Recorder {
                        if self.core.recorder_join_check(&users[u].id, &s.session_id) == Ok(true) {
                            let _ = self.core.recorder_join(&l, &users[u], &s.session_id, Some("j".into()), now);
                        }
                    } else if self.core.join_check(&users[u].id, &s.session_id).is_ok() {
                        let _ = self.core.join(&l, &users[u], &s.session_id, Some("j".into()), None, now);
                    }
                }
            }
            Op::Leave(u, k) => {
                if let (Some(l), Some(s)) = (self.live_link(u), Self::pick(&self.sessions, k)) {
                    let _ = self.core.room_leave(&l, &users[u], &s.session_id, now);
                }
            }
            Op::Relay(u, k) => {
                if let (Some(l), Some(s)) = (self.live_link(u), Self::pick(&self.sessions, k))
                    && let Ok(Some(to)) = self.core.relay_target(&l, s.session_id.as_str(), None)
                {
                    let peer = &users[to.user].id;
                    let mine = (s.seeker_id == users[u].id || s.consultant_id == users[u].id) && *peer != users[u].id;
                    let theirs = *peer == s.seeker_id || *peer == s.consultant_id;
                    assert!(mine && theirs, "{} relayed to {peer} in {}", users[u].id, s.session_id);
                }
            }
            Op::Hangup(u, k) => {
                if self.live[u]
                    && let Some(s) = Self::pick(&self.sessions, k)
                {
                    let _ = self.core.hangup(&users[u].id, &s.session_id, now);
                }
            }
            Op::Advance(ms) => {
                self.now += i64::from(ms);
                self.core.handle_timeout(self.t());
                if let Some(next) = self.core.next_deadline() {
                    assert!(next > self.t(), "every due timer ran");
                }
            }
        }
        let outs = drain(&mut self.core);
        self.check(&outs);
    }

    /// The properties of one input's outputs.
    fn check(&mut self, outs: &[Output<TestLink>]) {
        let now = self.t();
        let mut stored_calls = HashSet::new();
        let mut stored_ends = HashSet::new();
        for out in outs {
            assert_eq!(out.at, now, "every output is stamped with its input's time");
            match &out.action {
                Action::CallTransition { call_id, state: CallState::Ended(_) } => {
                    assert!(self.call_ended.insert(call_id.clone()), "a call ends once: {call_id}");
                    assert!(!self.accepted.contains(call_id), "an accepted call never ends unanswered");
                    stored_calls.insert(call_id.clone());
                }
                Action::SessionEvent { session_id, event: SessionEvent::Ended { .. } } => {
                    assert!(self.session_ended.insert(session_id.clone()), "a session ends once: {session_id}");
                    stored_ends.insert(session_id.clone());
                }
                Action::Send { to, msg } | Action::Tell { to, msg } => {
                    let immediate = matches!(out.action, Action::Send { .. });
                    match msg {
                        ServerMessage::CallEnded { call_id, .. } => {
                            assert!(!immediate && stored_calls.contains(call_id), "a told call end is stored first");
                        }
                        ServerMessage::SessionEnded { session_id, .. } => {
                            assert!(
                                !immediate && stored_ends.contains(session_id),
                                "a told session end is stored first"
                            );
                        }
                        _ => {}
                    }
                    if let Some(sid) = session_of(msg) {
                        let s = self.sessions.iter().find(|s| &s.session_id == sid).expect("a known session");
                        let who = &self.users[to.user];
                        let participant = who.id == s.seeker_id || who.id == s.consultant_id;
                        let recorder = who.role == Role::Recorder && s.recording;
                        assert!(participant || recorder, "{} got a message of {sid}", who.id);
                    }
                }
                _ => {}
            }
        }
        // At most one open session per call and per user.
        let mut per_call = HashMap::new();
        for s in self.sessions.iter().filter(|s| self.core.is_open(&s.session_id)) {
            *per_call.entry(s.call_id.clone()).or_insert(0) += 1;
        }
        assert!(per_call.values().all(|n| *n == 1));
        for u in &self.users {
            let mine = |s: &&SessionRecord| s.seeker_id == u.id || s.consultant_id == u.id;
            let open = self.sessions.iter().filter(mine).filter(|s| self.core.is_open(&s.session_id)).count();
            assert!(open <= 1, "{} is in {open} open sessions", u.id);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_keeps_the_hub_invariants(ops in proptest::collection::vec(op(), 1..200)) {
        let mut sim = Sim::new();
        // Everyone starts connected, the consultants available.
        for u in 0..5 {
            sim.step(Op::Connect(u));
        }
        sim.step(Op::Available(2));
        sim.step(Op::Available(3));
        for op in ops {
            sim.step(op);
        }
        // Long after everything, every session has ended or someone is in it.
        sim.step(Op::Advance(40_000));
        sim.step(Op::Advance(40_000));
    }
}
