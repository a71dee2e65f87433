//! The driver's room requests and the server's calls about sessions:
//! join (stored, then announced), leave, relay, chat, media state, hang-up,
//! meter notices and ends, booked rooms, restore, shutdown.

use std::sync::Arc;

use parley_domain::protocol::{
    CallEndReason, ChatKind, ErrorCode, MediaState, Role, ServerMessage, SessionBill, SessionEndReason, UserInfo,
};
use parley_domain::{SessionId, Timestamp, UserId};

use super::{CLOSE_GOING_AWAY, Hub};
use crate::error::SignalError;
use crate::hub::core::Denied;
use crate::hub::delivery::{Delivery, LocalLink};
use crate::store::{CallState, SessionEvent, SessionRecord, StoreError};

impl Hub {
    async fn persist_session(&self, session_id: &SessionId, event: SessionEvent, at: Timestamp) {
        if let Err(e) = self.store.session_event(session_id, &event, at).await {
            tracing::error!(%session_id, kind = event.kind(), error = %e, "failed to store session event");
        }
    }

    /// Joins `link` to the room of `session_id`: the join is stored first;
    /// then, in one step under the lock, the peer is told and the ack
    /// (taken out of `id`) is queued on the link.
    pub(super) async fn room_join(
        self: &Arc<Self>,
        link: &LocalLink,
        id: &mut Option<String>,
        session_id: SessionId,
    ) -> Result<(), SignalError> {
        let user = &link.0.user;
        if user.role == Role::Recorder {
            return self.recorder_join(link, id, session_id).await;
        }
        let checked = self.lock().core.join_check(&user.id, &session_id);
        if let Err(denied) = checked {
            return Err(self.room_denied(denied, &session_id, &user.id).await);
        }
        self.persist_session(&session_id, SessionEvent::Joined(user.id.clone()), self.clock.now()).await;
        let media = self.join_extras().and_then(|x| x.media(&session_id, user));
        let joined = {
            let mut locked = self.lock();
            let now = self.clock.now();
            let joined = locked.core.join(link, user, &session_id, id.take(), media.clone(), now);
            let batch = self.apply(&mut locked);
            debug_assert!(batch.0.is_empty(), "a join writes nothing more");
            joined
        };
        match joined {
            Ok(()) => Ok(()),
            Err(denied) => Err(self.room_denied(denied, &session_id, &user.id).await),
        }
    }

    async fn room_denied(&self, denied: Denied, session_id: &SessionId, user: &UserId) -> SignalError {
        match denied {
            Denied::Error(e) => e,
            Denied::NoRoom | Denied::NotRinging => self.no_room(session_id, user).await,
        }
    }

    /// The recorder joins a room it was assigned (DESIGN.md §6): stored,
    /// then both participants get `recording.started` and the recorder its
    /// ack.
    async fn recorder_join(
        self: &Arc<Self>,
        link: &LocalLink,
        id: &mut Option<String>,
        session_id: SessionId,
    ) -> Result<(), SignalError> {
        let user = &link.0.user;
        let open = self.lock().core.recorder_join_check(&user.id, &session_id)?;
        if !open {
            return Err(match self.store.session(&session_id).await {
                Ok(Some(_)) => SignalError::new(ErrorCode::SessionEnded, format!("session {session_id} has ended")),
                Ok(None) => SignalError::new(ErrorCode::UnknownSession, format!("no session {session_id}")),
                Err(e) => SignalError::internal(e),
            });
        }
        self.persist_session(&session_id, SessionEvent::RecordingStarted(user.id.clone()), self.clock.now()).await;
        let mut locked = self.lock();
        let now = self.clock.now();
        locked.core.recorder_join(link, user, &session_id, id.take(), now)?;
        let batch = self.apply(&mut locked);
        drop(locked);
        debug_assert!(batch.0.is_empty(), "a recorder's join writes nothing more");
        Ok(())
    }

    pub(super) fn room_leave(self: &Arc<Self>, link: &LocalLink, session_id: SessionId) -> Result<(), SignalError> {
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.room_leave(link, &link.0.user, &session_id, now)?;
            self.apply(&mut locked)
        };
        self.spawn(batch);
        Ok(())
    }

    /// Relays a signal from `link` to the other participant, or to the
    /// participant or recorder named by `to`: one lookup under the lock,
    /// the message built and queued outside it.
    pub(super) fn relay(
        &self,
        link: &LocalLink,
        session_id: &SessionId,
        to: Option<&UserId>,
        make: impl FnOnce(UserId) -> ServerMessage,
    ) -> Result<Option<parley_domain::protocol::AckResult>, SignalError> {
        let target = self.lock().core.relay_target(link, session_id.as_str(), to)?;
        if let Some(target) = target {
            self.delivery.send(&target, &make(link.0.user.id.clone()));
        }
        Ok(None)
    }

    /// Relays an `sdp.*` or `ice.candidate` read by the fast path
    /// (`crate::relay`): the same lookup as [`Hub::relay`], the client's
    /// bytes spliced into what the peer gets.
    pub(crate) fn relay_signal(&self, link: &LocalLink, signal: &crate::relay::Signal<'_>) -> Result<(), SignalError> {
        link.0.mark_used();
        let target = self.lock().core.relay_target(link, &signal.session_id, signal.to.as_ref())?;
        if let Some(target) = target {
            self.delivery.send_json(&target, |buf| signal.write(&link.0.user.id, buf));
        }
        Ok(())
    }

    pub(super) async fn media_state(
        &self,
        link: &LocalLink,
        session_id: SessionId,
        state: MediaState,
    ) -> Result<(), SignalError> {
        let now = self.clock.now();
        self.lock().core.member_check(&link.0.user.id, &session_id)?;
        self.persist_session(&session_id, SessionEvent::Media(link.0.user.id.clone(), state), now).await;
        Ok(())
    }

    /// `chat.send`: stored in the timeline first (the recap lists it), then
    /// relayed to the other participant.
    pub(super) async fn chat(
        &self,
        link: &LocalLink,
        session_id: SessionId,
        text: String,
        kind: ChatKind,
    ) -> Result<(), SignalError> {
        use parley_domain::protocol::MAX_CHAT_BYTES;
        if text.trim().is_empty() || text.len() > MAX_CHAT_BYTES {
            return Err(SignalError::new(ErrorCode::InvalidField, format!("text: 1 to {MAX_CHAT_BYTES} bytes")));
        }
        self.lock().core.present_check(&link.0.user.id, &session_id)?;
        let now = self.clock.now();
        let event = SessionEvent::Chat(link.0.user.id.clone(), kind, text.clone());
        self.persist_session(&session_id, event, now).await;
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

    /// `session.end`: the session ends `hangup`; the end is stored before
    /// anyone is told, and a failed write answers `internal` (nobody is
    /// told of an end the store does not have).
    pub(super) async fn session_end(
        self: &Arc<Self>,
        link: &LocalLink,
        session_id: SessionId,
    ) -> Result<(), SignalError> {
        let user = &link.0.user.id;
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            match locked.core.hangup(user, &session_id, now) {
                Ok(()) => Ok(self.apply(&mut locked)),
                Err(denied) => Err(denied),
            }
        };
        match batch {
            Ok(batch) => self.run_for_request(batch).await,
            Err(denied) => Err(self.room_denied(denied, &session_id, user).await),
        }
    }

    // ----- for the meter and the server ------------------------------------

    /// Sends `msg` to both participants of the open session `session_id`
    /// (meter notices, DESIGN.md M8). Nothing if it is not open here.
    pub fn notify_session(&self, session_id: &SessionId, msg: &ServerMessage) {
        let mut locked = self.lock();
        let now = self.clock.now();
        locked.core.notify_session(session_id, msg, now);
        let batch = self.apply(&mut locked);
        debug_assert!(batch.0.is_empty());
    }

    /// Ends the open session `session_id` for `reason` (a limit the meter
    /// reached, a moderator): stored, then both participants get
    /// `session.ended`. Returns false if it was not open here.
    pub(crate) async fn end_session_here(&self, session_id: &SessionId, reason: SessionEndReason) -> bool {
        let (open, batch) = {
            let mut locked = self.lock();
            let now = self.clock.now();
            let open = locked.core.end_session_for(session_id, reason, now);
            (open, self.apply(&mut locked))
        };
        let _ = self.run(batch).await;
        open
    }

    /// Ends the open session `session_id` for `reason` with `bill`, which
    /// the meter decided together with the end (a limit it reached, an
    /// absence it timed): stored, then both participants get
    /// `session.ended`; the meter is not asked again. Returns whether the
    /// session was open here and its end (with `bill`) is stored; false
    /// tells the meter to store the bill itself.
    pub async fn end_metered_session(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        bill: SessionBill,
    ) -> bool {
        let (open, batch) = {
            let mut locked = self.lock();
            let now = self.clock.now();
            let open = locked.core.end_metered_session(session_id, reason, bill, now);
            (open, self.apply(&mut locked))
        };
        let stored = self.run(batch).await.is_ok();
        open && stored
    }

    /// Sends `msg` to `user` if connected to this core (booking reminders).
    pub(crate) fn notify_user_here(&self, user: &UserId, msg: &ServerMessage) {
        let mut locked = self.lock();
        let now = self.clock.now();
        locked.core.notify_user(user, msg.clone(), now);
        let batch = self.apply(&mut locked);
        debug_assert!(batch.0.is_empty());
    }

    /// Opens the room of a booked session (DESIGN.md §3), 10 minutes before
    /// its start: stored first (kind `scheduled`), then the room admits its
    /// seeker and consultant. A participant who has not joined by
    /// `no_show_at` (start + 15 min) is a no-show: the session ends with
    /// `no_show`, `ended_by` the participant who did not come (`None` if
    /// neither came). Returns `Ok(false)` if it was open already.
    pub(crate) async fn open_scheduled_here(
        self: &Arc<Self>,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Timestamp,
    ) -> Result<bool, StoreError> {
        if self.lock().core.is_open(&record.session_id) {
            return Ok(false);
        }
        self.store.create_session(&record).await?;
        let mut locked = self.lock();
        let now = self.clock.now();
        let opened = locked.core.open_scheduled(record, seeker, consultant, no_show_at, now);
        let batch = self.apply(&mut locked);
        drop(locked);
        debug_assert!(batch.0.is_empty());
        Ok(opened)
    }

    /// Ends the calls the store says were still requested or ringing when
    /// the former hub core was lost (a killed process, a lost hub node):
    /// each is stored as ended (`server_shutdown`), its hold released, and
    /// its seeker and consultant are told `call.ended` at their next
    /// connection. Call before clients are served; returns how many.
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the store cannot list or end them (retried at
    /// the next start or takeover).
    pub async fn end_lost_calls(&self) -> Result<usize, StoreError> {
        let calls = self.store.live_calls().await?;
        let reason = CallEndReason::ServerShutdown;
        for call in &calls {
            let record = &call.record;
            self.store.call_transition(&record.call_id, CallState::Ended(reason), self.clock.now()).await?;
            self.lock().core.lost_call(&record.call_id, &record.seeker_id, &record.consultant_id);
            self.gate.call_unanswered(record, reason).await;
        }
        if !calls.is_empty() {
            tracing::info!(calls = calls.len(), "ended the calls the former hub core was running");
        }
        Ok(calls.len())
    }

    /// Reopens, after a restart, a session the store says is open (DESIGN.md
    /// M9): neither participant is present; each has `G` from now to join
    /// its room again, or the session ends as abandoned. A booked session
    /// whose no-show time `no_show_at` is still ahead is restored as its
    /// room first opened: whoever has not joined by then is a no-show. A
    /// participant who already resumed a journaled link here (a cluster's
    /// takeover that had to wait for the session's lease) is put back in
    /// the room at once (stored, then told).
    pub fn restore_session(
        self: &Arc<Self>,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Option<Timestamp>,
    ) {
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.restore_session(record, seeker, consultant, no_show_at, now);
            self.apply(&mut locked)
        };
        self.spawn(batch);
    }

    // ----- shutdown --------------------------------------------------------

    /// Begins a graceful shutdown: ringing calls end (`server_shutdown`),
    /// every client is sent `server.shutdown` and its WebSocket is closed
    /// with 1001. Open sessions stay open in the store. Returns once the
    /// store writes are done; await [`Hub::connections_closed`] next.
    pub async fn shutdown(self: &Arc<Self>) {
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.begin_shutdown(now);
            self.apply(&mut locked)
        };
        // Ringing calls' ends are stored and sent while clients still listen.
        let _ = self.run(batch).await;
        // Sockets whose hub is another node reconnect elsewhere and resume
        // there (their links live on the hub node).
        self.close_edges(CLOSE_GOING_AWAY, "this node is draining; reconnect");
        {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.farewell(CLOSE_GOING_AWAY, now);
            let batch = self.apply(&mut locked);
            debug_assert!(batch.0.is_empty());
        }
        self.connections.close();
    }

    /// Resolves when every connection task has ended (after [`Hub::shutdown`]).
    pub async fn connections_closed(&self) {
        self.connections.wait().await;
    }
}
