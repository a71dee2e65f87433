//! Instant calls: request → authorising (the payment hold) → ringing →
//! accepted (a session opens) or ended (declined, cancelled, timed out,
//! consultant unavailable, seeker gone, server shutdown).

use parley_domain::protocol::{CallEndReason, ErrorCode, PresenceStatus, Role, ServerMessage, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};

use super::{Action, Denied, HubCore, LinkRef, Phase, Ringing, Room, Timer, err};
use crate::error::SignalError;
use crate::metrics;
use crate::store::{CallRecord, CallState, SessionRecord};

/// Longest `call.decline` reason relayed, bytes.
const MAX_DECLINE_REASON: usize = 200;

/// A call whose hold was placed cannot ring after all (the consultant went
/// away or the server began shutting down meanwhile): release the hold,
/// store the end, answer the seeker `error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RingRefused {
    /// How the call ended.
    pub reason: CallEndReason,
    /// The seeker's answer.
    pub error: SignalError,
}

/// What the caller's `call.request` names.
#[derive(Debug, Clone)]
pub(crate) struct CallRequest {
    /// The consultant to ring.
    pub consultant_id: UserId,
    /// The seeker asked for recording.
    pub recording: bool,
    /// The seeker's token carries `premium`.
    pub premium: bool,
    /// Fresh ids for the call and the session it opens (the driver mints
    /// them: the core reads no clock and no randomness).
    pub call_id: CallId,
    /// See `call_id`.
    pub session_id: SessionId,
}

impl<L: LinkRef> HubCore<L> {
    /// `call.request` from `seeker`: validates and reserves the call
    /// (phase authorising; neither side can start another). `Ok(None)`: the
    /// consultant is not connected here (the store says whether they exist).
    /// The driver then stores the call and asks the gate for the hold, and
    /// reports with [`HubCore::call_abandoned`] or [`HubCore::call_authorized`].
    pub fn call_request(
        &mut self,
        seeker: &UserInfo,
        req: CallRequest,
        now: Timestamp,
    ) -> Result<Option<CallRecord>, SignalError> {
        self.now = now;
        if seeker.role != Role::Seeker {
            return Err(err(ErrorCode::WrongRole, "only seekers can request calls"));
        }
        if self.shutting_down {
            return Err(err(ErrorCode::Unavailable, "the server is shutting down; try again shortly"));
        }
        let me = self.users.get(&seeker.id).ok_or_else(|| SignalError::internal("caller not registered"))?;
        if me.call.is_some() || me.session.is_some() {
            return Err(err(ErrorCode::AlreadyInCall, "you already have a call ringing or a session open"));
        }
        match self.users.get(&req.consultant_id) {
            Some(c) if c.info.role == Role::Consultant => match c.presence() {
                PresenceStatus::Available => {}
                other => {
                    return Err(err(
                        ErrorCode::ConsultantUnavailable,
                        format!("{} is {} right now", c.info.name, presence_word(other)),
                    ));
                }
            },
            Some(_) => return Err(unknown_consultant(&req.consultant_id)),
            None => return Ok(None),
        }
        let record = CallRecord {
            call_id: req.call_id,
            session_id: req.session_id,
            seeker_id: seeker.id.clone(),
            consultant_id: req.consultant_id,
            created_at: now,
            recording: req.recording,
            seeker_premium: req.premium,
        };
        let ringing =
            Ringing { record: record.clone(), seeker: seeker.clone(), phase: Phase::Authorizing, deadline: now };
        self.calls.insert(record.call_id.clone(), Box::new(ringing));
        for id in [&record.seeker_id, &record.consultant_id] {
            self.users.get_mut(id).expect("checked above").call = Some(record.call_id.clone());
        }
        Ok(Some(record))
    }

    /// The call could not be stored, or its hold was refused: the
    /// reservation is undone (nobody was rung).
    pub fn call_abandoned(&mut self, call_id: &CallId, now: Timestamp) {
        self.now = now;
        if let Some(call) = self.calls.remove(call_id) {
            for id in [&call.record.seeker_id, &call.record.consultant_id] {
                if let Some(u) = self.users.get_mut(id)
                    && u.call.as_ref() == Some(call_id)
                {
                    u.call = None;
                }
            }
        }
    }

    /// The call is stored and its hold placed: the consultant is rung
    /// (`call.incoming`) until the returned deadline. `Err`: the call ended
    /// while the hold was placed.
    pub fn call_authorized(&mut self, call_id: &CallId, now: Timestamp) -> Result<Timestamp, RingRefused> {
        self.now = now;
        let deadline = now.plus(self.cfg.ring_timeout);
        let Some(call) = self.calls.get_mut(call_id) else {
            return Err(if self.shutting_down {
                let error = err(ErrorCode::Unavailable, "the server is shutting down; call again shortly");
                RingRefused { reason: CallEndReason::ServerShutdown, error }
            } else {
                let error = err(ErrorCode::ConsultantUnavailable, "the consultant went offline");
                RingRefused { reason: CallEndReason::ConsultantUnavailable, error }
            });
        };
        call.phase = Phase::Ringing;
        call.deadline = deadline;
        let incoming = ServerMessage::CallIncoming {
            call_id: call_id.clone(),
            session_id: call.record.session_id.clone(),
            seeker: call.seeker.clone(),
            ring_deadline_ms: deadline.unix_millis(),
            recording: call.record.recording,
        };
        let consultant = call.record.consultant_id.clone();
        self.send_to(&consultant, incoming);
        self.report_presence(&consultant);
        self.arm(deadline, Timer::Ring { call: call_id.clone() });
        Ok(deadline)
    }

    pub(super) fn ring_timeout(&mut self, call_id: &CallId) {
        if self.calls.get(call_id).is_some_and(|c| c.phase == Phase::Ringing) {
            self.end_call(call_id, CallEndReason::Timeout, None);
        }
    }

    /// Whether `call_id` is being accepted with `user` as a party (for the
    /// answer to a late decline or cancel).
    pub fn is_accepting(&self, call_id: &CallId, user: &UserId) -> bool {
        self.calls.get(call_id).is_some_and(|c| {
            c.phase == Phase::Accepting && (&c.record.seeker_id == user || &c.record.consultant_id == user)
        })
    }

    /// `call.accept`, first step: the call is set aside (accepting: no
    /// timeout, cancel or decline can end it) and the session to store is
    /// returned. The driver stores the acceptance and the session, then
    /// calls [`HubCore::accept_stored`] or [`HubCore::accept_failed`]: nobody
    /// is told of a session the store does not have.
    pub fn accept(&mut self, user: &UserInfo, call_id: &CallId, now: Timestamp) -> Result<SessionRecord, Denied> {
        self.now = now;
        if user.role != Role::Consultant {
            return Err(err(ErrorCode::WrongRole, "only consultants accept calls").into());
        }
        match self.calls.get_mut(call_id) {
            Some(c) if c.record.consultant_id == user.id && c.phase == Phase::Ringing => {
                c.phase = Phase::Accepting;
                Ok(SessionRecord {
                    session_id: c.record.session_id.clone(),
                    call_id: call_id.clone(),
                    seeker_id: c.record.seeker_id.clone(),
                    consultant_id: c.record.consultant_id.clone(),
                    opened_at: now,
                    recording: c.record.recording,
                    scheduled: false,
                })
            }
            _ => Err(Denied::NotRinging),
        }
    }

    /// Storing an acceptance failed: the call rings again, unless its ring
    /// timed out meanwhile (then it ends `timeout`).
    pub fn accept_failed(&mut self, call_id: &CallId, now: Timestamp) {
        self.now = now;
        let deadline = self.calls.get_mut(call_id).map(|c| {
            c.phase = Phase::Ringing;
            c.deadline
        });
        if deadline.is_some_and(|d| now >= d) {
            self.end_call(call_id, CallEndReason::Timeout, None);
        }
    }

    /// The acceptance and `session` are stored: the room opens, both sides
    /// get `call.accepted`, and each has `G` from the acceptance to join
    /// (DESIGN.md M3).
    pub fn accept_stored(&mut self, consultant: &UserInfo, session: &SessionRecord, now: Timestamp) {
        self.now = now;
        let Some(ringing) = self.calls.remove(&session.call_id) else {
            debug_assert!(false, "an accepting call is never ended by others");
            return;
        };
        let room = Room::new(session.clone(), ringing.seeker, consultant.clone());
        self.rooms.insert(session.session_id.clone(), Box::new(room));
        self.hooks.opened(session, session.opened_at);
        for id in [&session.seeker_id, &session.consultant_id] {
            if let Some(u) = self.users.get_mut(id) {
                u.call = None;
                u.session = Some(session.session_id.clone());
            }
            let accepted = ServerMessage::CallAccepted {
                call_id: session.call_id.clone(),
                session_id: session.session_id.clone(),
            };
            self.send_to(id, accepted);
        }
        if session.recording {
            self.assign_recorders();
        }
        let since = session.opened_at.plus(self.cfg.grace);
        self.arm(since, Timer::Arrival { session: session.session_id.clone() });
        metrics::call("accepted");
    }

    /// `call.decline` (consultant, `reason` relayed) or `call.cancel`
    /// (seeker) of a ringing call of theirs: it ends, stored, then both
    /// sides are told.
    pub fn end_call_by(
        &mut self,
        user: &UserInfo,
        call_id: &CallId,
        reason: CallEndReason,
        message: Option<String>,
        now: Timestamp,
    ) -> Result<(), Denied> {
        self.now = now;
        let (expected_role, verb) = match reason {
            CallEndReason::Declined => (Role::Consultant, "decline"),
            _ => (Role::Seeker, "cancel"),
        };
        if user.role != expected_role {
            return Err(err(ErrorCode::WrongRole, format!("only {}s can {verb} calls", expected_role.as_str())).into());
        }
        if let Some(m) = &message
            && m.len() > MAX_DECLINE_REASON
        {
            return Err(err(ErrorCode::InvalidField, format!("reason: at most {MAX_DECLINE_REASON} bytes")).into());
        }
        let mine = self.calls.get(call_id).is_some_and(|c| {
            c.phase == Phase::Ringing && (c.record.seeker_id == user.id || c.record.consultant_id == user.id)
        });
        if !mine {
            return Err(Denied::NotRinging);
        }
        self.end_call(call_id, reason, message);
        Ok(())
    }

    /// Ends a ringing call: the end is stored, then both sides get
    /// `call.ended` and the consultant their presence; then the hold is
    /// released. A call being accepted is left alone (it becomes a session,
    /// whose own rules apply); one still authorising just disappears (its
    /// requester sees it gone).
    pub(super) fn end_call(&mut self, call_id: &CallId, reason: CallEndReason, message: Option<String>) {
        if self.calls.get(call_id).is_none_or(|c| c.phase == Phase::Accepting) {
            return;
        }
        let Some(call) = self.calls.remove(call_id) else { return };
        for id in [&call.record.seeker_id, &call.record.consultant_id] {
            if let Some(u) = self.users.get_mut(id)
                && u.call.as_ref() == Some(call_id)
            {
                u.call = None;
            }
        }
        if call.phase == Phase::Authorizing {
            return;
        }
        self.store_call(call_id, CallState::Ended(reason));
        let ended = ServerMessage::CallEnded { call_id: call_id.clone(), reason, message };
        self.tell_user(&call.record.seeker_id, ended.clone());
        self.tell_user(&call.record.consultant_id, ended);
        self.tell_presence(&call.record.consultant_id);
        metrics::call(reason.as_str());
        for id in [&call.record.seeker_id, &call.record.consultant_id] {
            self.remove_if_idle(id);
        }
        self.push(Action::Release { call: call.record, reason });
    }
}

fn presence_word(p: PresenceStatus) -> &'static str {
    match p {
        PresenceStatus::Available => "available",
        PresenceStatus::Busy => "in another call",
        PresenceStatus::Offline => "offline",
    }
}

/// `unknown_consultant` for `id`.
pub(crate) fn unknown_consultant(id: &UserId) -> SignalError {
    err(ErrorCode::UnknownConsultant, format!("no consultant {id}"))
}
