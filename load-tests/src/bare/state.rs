//! The relay's only shared state: who is connected, ringing calls, and
//! sessions with the writer queues of the participants in their room. Every
//! method runs under one short lock and never waits; messages for other
//! connections go straight into their writer queues.

use std::collections::HashMap;

use parley_domain::protocol::{
    AckResult, CallEndReason, ErrorCode, PresenceStatus, Role, ServerMessage, SessionEndReason, UserInfo,
};
use parley_domain::{CallId, SessionId, UserId};
use tokio::sync::mpsc;

/// A connection's writer queue.
pub(super) type Tx = mpsc::UnboundedSender<ServerMessage>;

/// Why a request was refused: the `error` to answer it with.
pub(super) type Refused = (ErrorCode, &'static str);

/// How long a call rings (Parley's default; nothing times it out here).
const RING_MS: i64 = 30_000;

/// One connected user.
struct Entry {
    /// Which of the user's connections this is.
    conn: u64,
    info: UserInfo,
    tx: Tx,
    presence: PresenceStatus,
    /// A call ringing or being set up.
    call: Option<CallId>,
    /// Open sessions.
    sessions: Vec<SessionId>,
}

/// A ringing call.
struct Call {
    seeker: UserId,
    consultant: UserId,
    session: SessionId,
}

/// An open session: its participants and, once they joined, their queues.
struct Session {
    seeker: UserId,
    consultant: UserId,
    seeker_tx: Option<Tx>,
    consultant_tx: Option<Tx>,
}

impl Session {
    /// The participant `user` is, and the other one.
    fn sides(&self, user: &UserId) -> Option<(bool, &UserId)> {
        if *user == self.seeker {
            Some((true, &self.consultant))
        } else if *user == self.consultant {
            Some((false, &self.seeker))
        } else {
            None
        }
    }
}

/// Users, calls and sessions.
#[derive(Default)]
pub(super) struct State {
    users: HashMap<UserId, Entry>,
    calls: HashMap<CallId, Call>,
    sessions: HashMap<SessionId, Session>,
    next_id: u64,
}

fn send(tx: &Tx, msg: ServerMessage) {
    // A closed queue is a connection on its way out: nothing to do.
    let _ = tx.send(msg);
}

/// Server time, Unix ms.
pub(super) fn unix_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl State {
    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Registers `user`'s new connection (replacing an older one) and
    /// queues its `hello`, so that it is the connection's first message.
    /// Returns the connection's number, for [`State::disconnect`].
    pub(super) fn connect(&mut self, user: &UserInfo, tx: Tx) -> u64 {
        let conn = self.fresh_id();
        let presence = (user.role == Role::Consultant).then_some(PresenceStatus::Offline);
        send(
            &tx,
            ServerMessage::Hello {
                protocol_version: parley_domain::protocol::PROTOCOL_VERSION,
                user: user.clone(),
                resume_token: String::new(),
                resume_window_secs: 0,
                ping_interval_secs: 0,
                presence,
            },
        );
        if let Some(old) = self.users.remove(&user.id) {
            self.forget(old);
        }
        let entry =
            Entry { conn, info: user.clone(), tx, presence: PresenceStatus::Offline, call: None, sessions: Vec::new() };
        self.users.insert(user.id.clone(), entry);
        conn
    }

    /// Connection `conn` of `user` has ended: its call and sessions end
    /// with it (no resume here).
    pub(super) fn disconnect(&mut self, user: &UserId, conn: u64) {
        if self.users.get(user).is_some_and(|e| e.conn == conn)
            && let Some(entry) = self.users.remove(user)
        {
            self.forget(entry);
        }
    }

    /// Ends what a user that is gone took part in.
    fn forget(&mut self, entry: Entry) {
        if let Some(call_id) = entry.call
            && let Some(call) = self.calls.remove(&call_id)
        {
            let (other, reason) = if call.seeker == entry.info.id {
                (call.consultant, CallEndReason::SeekerGone)
            } else {
                (call.seeker, CallEndReason::ConsultantUnavailable)
            };
            self.release(&other, None);
            if let Some(e) = self.users.get(&other) {
                send(&e.tx, ServerMessage::CallEnded { call_id, reason, message: None });
            }
        }
        for session_id in entry.sessions {
            self.close_session(&session_id, SessionEndReason::Abandoned, None);
        }
    }

    /// `user` is no longer ringing or in `session` (if any): a consultant
    /// who was available is again.
    fn release(&mut self, user: &UserId, session: Option<&SessionId>) {
        if let Some(e) = self.users.get_mut(user) {
            e.call = None;
            if let Some(s) = session {
                e.sessions.retain(|x| x != s);
            }
            if e.presence == PresenceStatus::Busy && e.sessions.is_empty() {
                e.presence = PresenceStatus::Available;
            }
        }
    }

    /// `presence.set` (consultants).
    pub(super) fn set_presence(&mut self, user: &UserInfo, status: PresenceStatus) -> Result<(), Refused> {
        if user.role != Role::Consultant {
            return Err((ErrorCode::WrongRole, "only consultants set presence"));
        }
        if status == PresenceStatus::Busy {
            return Err((ErrorCode::InvalidField, "busy is set by the server"));
        }
        let entry = self.users.get_mut(&user.id).ok_or((ErrorCode::Internal, "not connected"))?;
        if entry.presence != PresenceStatus::Busy {
            entry.presence = status;
        }
        Ok(())
    }

    /// `call.request`: rings an available consultant (`call.incoming`).
    pub(super) fn request_call(&mut self, seeker: &UserInfo, consultant: &UserId) -> Result<AckResult, Refused> {
        if seeker.role != Role::Seeker {
            return Err((ErrorCode::WrongRole, "only seekers call"));
        }
        if self.users.get(&seeker.id).is_none_or(|e| e.call.is_some()) {
            return Err((ErrorCode::AlreadyInCall, "you already have a call ringing"));
        }
        match self.users.get(consultant) {
            None => return Err((ErrorCode::ConsultantUnavailable, "the consultant is not connected")),
            Some(e) if e.info.role != Role::Consultant => {
                return Err((ErrorCode::UnknownConsultant, "not a consultant"));
            }
            Some(e) if e.presence != PresenceStatus::Available || e.call.is_some() => {
                return Err((ErrorCode::ConsultantUnavailable, "the consultant is offline or busy"));
            }
            Some(_) => {}
        }
        let n = self.fresh_id();
        let call_id = CallId::parse(format!("call_{n}")).expect("a valid id");
        let session_id = SessionId::parse(format!("ses_{n}")).expect("a valid id");
        let ring_deadline_ms = unix_ms() + RING_MS;
        let entry = self.users.get_mut(consultant).expect("checked above");
        entry.presence = PresenceStatus::Busy;
        entry.call = Some(call_id.clone());
        send(
            &entry.tx,
            ServerMessage::CallIncoming {
                call_id: call_id.clone(),
                session_id: session_id.clone(),
                seeker: seeker.clone(),
                ring_deadline_ms,
                recording: false,
            },
        );
        send(&entry.tx, ServerMessage::PresenceUpdated { status: PresenceStatus::Busy });
        self.users.get_mut(&seeker.id).expect("checked above").call = Some(call_id.clone());
        let call = Call { seeker: seeker.id.clone(), consultant: consultant.clone(), session: session_id.clone() };
        self.calls.insert(call_id.clone(), call);
        Ok(AckResult::Call { call_id, session_id, ring_deadline_ms })
    }

    /// `call.accept`: the session opens; both get `call.accepted`.
    pub(super) fn accept_call(&mut self, consultant: &UserInfo, call_id: &CallId) -> Result<(), Refused> {
        if consultant.role != Role::Consultant {
            return Err((ErrorCode::WrongRole, "only consultants accept calls"));
        }
        if self.calls.get(call_id).is_none_or(|c| c.consultant != consultant.id) {
            return Err((ErrorCode::UnknownCall, "no such call ringing for you"));
        }
        let call = self.calls.remove(call_id).expect("checked above");
        let accepted = ServerMessage::CallAccepted { call_id: call_id.clone(), session_id: call.session.clone() };
        for id in [&call.seeker, &call.consultant] {
            if let Some(e) = self.users.get_mut(id) {
                e.call = None;
                e.sessions.push(call.session.clone());
                send(&e.tx, accepted.clone());
            }
        }
        let session =
            Session { seeker: call.seeker, consultant: call.consultant, seeker_tx: None, consultant_tx: None };
        self.sessions.insert(call.session, session);
        Ok(())
    }

    /// `room.join`: `user` is in the room (the other participant, if
    /// there, gets `participant.joined`); the seeker offers.
    pub(super) fn join(&mut self, user: &UserInfo, session_id: &SessionId) -> Result<AckResult, Refused> {
        let tx = self.users.get(&user.id).map(|e| e.tx.clone()).ok_or((ErrorCode::Internal, "not connected"))?;
        let session = self.sessions.get_mut(session_id).ok_or((ErrorCode::UnknownSession, "no such session"))?;
        let (seeker, other) = session.sides(&user.id).ok_or((ErrorCode::Forbidden, "not your session"))?;
        let other = other.clone();
        let (mine, theirs) = if seeker {
            (&mut session.seeker_tx, &session.consultant_tx)
        } else {
            (&mut session.consultant_tx, &session.seeker_tx)
        };
        *mine = Some(tx);
        let mut participants = Vec::new();
        if let Some(theirs) = theirs {
            send(theirs, ServerMessage::ParticipantJoined { session_id: session_id.clone(), user: user.clone() });
            if let Some(e) = self.users.get(&other) {
                participants.push(e.info.clone());
            }
        }
        Ok(AckResult::Room {
            session_id: session_id.clone(),
            participants,
            ice_servers: Vec::new(),
            offerer: seeker,
            meter: None,
            media: None,
        })
    }

    /// Relays `msg` (an `sdp.*` or `ice.candidate` from `from`) to the
    /// other participant of its session, if in the room: one map lookup
    /// and a queue send.
    pub(super) fn relay(&self, from: &UserId, msg: ServerMessage) -> Result<(), Refused> {
        let session_id = match &msg {
            ServerMessage::SdpOffer { session_id, .. }
            | ServerMessage::SdpAnswer { session_id, .. }
            | ServerMessage::IceCandidate { session_id, .. } => session_id,
            _ => return Err((ErrorCode::Internal, "not a relayed message")),
        };
        let session = self.sessions.get(session_id).ok_or((ErrorCode::UnknownSession, "no such session"))?;
        let (mine, theirs) = match session.sides(from) {
            Some((true, _)) => (&session.seeker_tx, &session.consultant_tx),
            Some((false, _)) => (&session.consultant_tx, &session.seeker_tx),
            None => return Err((ErrorCode::Forbidden, "not your session")),
        };
        if mine.is_none() {
            return Err((ErrorCode::NotInRoom, "join the room first"));
        }
        if let Some(theirs) = theirs {
            send(theirs, msg);
        }
        Ok(())
    }

    /// `session.end`: both get `session.ended` (hang-up by `user`).
    pub(super) fn end_session(&mut self, user: &UserId, session_id: &SessionId) -> Result<(), Refused> {
        let session = self.sessions.get(session_id).ok_or((ErrorCode::UnknownSession, "no such session"))?;
        if session.sides(user).is_none() {
            return Err((ErrorCode::Forbidden, "not your session"));
        }
        self.close_session(session_id, SessionEndReason::Hangup, Some(user.clone()));
        Ok(())
    }

    /// Removes a session and tells both participants (if still connected).
    fn close_session(&mut self, session_id: &SessionId, reason: SessionEndReason, by: Option<UserId>) {
        let Some(session) = self.sessions.remove(session_id) else { return };
        let ended = ServerMessage::SessionEnded { session_id: session_id.clone(), reason, ended_by: by, bill: None };
        for id in [&session.seeker, &session.consultant] {
            self.release(id, Some(session_id));
            if let Some(e) = self.users.get(id) {
                send(&e.tx, ended.clone());
            }
        }
    }

    /// Connected users, open calls and sessions (for the tests).
    #[cfg(test)]
    pub(super) fn sizes(&self) -> (usize, usize, usize) {
        (self.users.len(), self.calls.len(), self.sessions.len())
    }
}
