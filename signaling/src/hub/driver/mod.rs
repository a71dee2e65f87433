//! The hub's thin async shell around [`HubCore`]: one lock around the core,
//! the outputs carried out in order, store writes awaited before the
//! messages that depend on them, and one timer task that sleeps on the
//! injected [`Clock`] until the core's next deadline.
//!
//! Per input: lock, read the clock once, hand the core the input and `now`,
//! send what it says to send at once (still under the lock, so clients see
//! transitions in the order they happened), unlock; then the input's store
//! writes are awaited, and only if they all succeeded are the messages that
//! report them sent (`Action::Tell`); hold releases come last. The relay of
//! SDP and ICE is a lookup under the lock and a send outside it, as before.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use parley_domain::clock::{Wake, run_worker};
use parley_domain::protocol::{
    AckResult, CallEndReason, ClientMessage, ErrorCode, IceCandidate, MAX_CANDIDATE_BYTES, MAX_SDP_BYTES,
    PresenceStatus, Role, ServerMessage, UserInfo,
};
use parley_domain::{CallId, Clock, SessionId, Timestamp, UserId};
use tokio::sync::{mpsc, oneshot};
use tokio_util::task::TaskTracker;

use super::core::{Action, Denied, HubCore, Output};
use super::delivery::{Delivery, Local, LocalLink};
use crate::config::SignalingConfig;
use crate::error::SignalError;
use crate::journal::LinkJournal;
use crate::metrics;
use crate::store::{CallGate, CallRecord, CallState, JoinExtras, SessionHooks, Store, StoreError};

use super::core::{CallRequest, unknown_consultant};

mod links;
mod rooms;
#[cfg(test)]
pub(crate) mod tests;

/// Close code sent to clients when the server shuts down (RFC 6455 "going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// Close code for a recorder connection refused because another connection
/// of the same recorder is live (`recorder_connected`).
pub const CLOSE_RECORDER_CONNECTED: u16 = 4003;

/// The signaling hub of one node. Cheap to share (`Arc<Hub>`).
pub struct Hub {
    pub(crate) cfg: SignalingConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn Store>,
    gate: Arc<dyn CallGate>,
    delivery: Local,
    core: Mutex<Locked>,
    /// Wakes the timer task when the core's next deadline moves earlier.
    timer: Wake,
    /// Stops the timer task when the hub is dropped.
    stop_timer: Mutex<Option<oneshot::Sender<()>>>,
    ids: AtomicU64,
    seen: mpsc::UnboundedSender<UserInfo>,
    /// What the server adds to `room.join` acks (the media backend), if set.
    extras: OnceLock<Arc<dyn JoinExtras>>,
    /// The meter's hooks, for a core started afresh (`reset_core`).
    hooks: Arc<dyn SessionHooks>,
    /// Set when this node is one of a cluster (`crate::cluster`).
    pub(crate) cluster: OnceLock<Arc<crate::cluster::Cluster>>,
    /// Where links are copied for the next hub node, in a cluster.
    journal: OnceLock<Arc<dyn LinkJournal>>,
    pub(crate) connections: TaskTracker,
}

pub(crate) struct Locked {
    pub(crate) core: HubCore<LocalLink>,
    /// The deadline the timer task sleeps until.
    armed: Option<Timestamp>,
    /// This core's name in the links' journal (new with every core): a
    /// journaled link this core wrote is this core's to resume or refuse.
    pub(crate) term: String,
}

/// A fresh name for a core in the links' journal.
fn new_term() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What one input left to do after the lock is released: store writes,
/// the messages that report them, hold releases.
#[must_use]
#[derive(Default)]
struct Batch(Vec<Output<LocalLink>>);

/// What [`Hub::handle`] made of a request: its answer, or the handler
/// that will give it once what it waits on is done.
pub(crate) enum Handled<'a> {
    /// Answered at once.
    Now(Result<Option<AckResult>, SignalError>),
    /// Answered when this future is done (boxed on its own: the one
    /// handler's state, not the largest handler's).
    Later(Pin<Box<dyn Future<Output = Result<Option<AckResult>, SignalError>> + Send + 'a>>),
}

impl Drop for Hub {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_timer.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
    }
}

impl Hub {
    /// A hub using `store` for persistence, `gate` before ringing and
    /// `hooks` to report what happens in session rooms (the meter). Spawns
    /// the timer task and the task that records newly seen users.
    pub fn new(
        cfg: SignalingConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn Store>,
        gate: Arc<dyn CallGate>,
        hooks: Arc<dyn SessionHooks>,
    ) -> Arc<Hub> {
        let (seen, seen_rx) = mpsc::unbounded_channel();
        let core = HubCore::new(cfg.clone(), hooks.clone());
        let (stop_timer, stopped) = oneshot::channel();
        let hub = Arc::new(Hub {
            cfg,
            clock,
            store,
            gate,
            delivery: Local,
            core: Mutex::new(Locked { core, armed: None, term: new_term() }),
            timer: Wake::new(),
            stop_timer: Mutex::new(Some(stop_timer)),
            ids: AtomicU64::new(1),
            seen,
            extras: OnceLock::new(),
            hooks,
            cluster: OnceLock::new(),
            journal: OnceLock::new(),
            connections: TaskTracker::new(),
        });
        tokio::spawn(record_seen_users(seen_rx, hub.store.clone(), hub.clock.clone()));
        tokio::spawn(run_timers(Arc::downgrade(&hub), hub.clock.clone(), hub.timer.clone(), stopped));
        hub
    }

    /// Sets what the server adds to every participant's `room.join` ack
    /// (the media backend's URL and token); once, before clients connect.
    /// Later calls are ignored.
    pub fn set_join_extras(&self, extras: Arc<dyn JoinExtras>) {
        let _ = self.extras.set(extras);
    }

    pub(crate) fn join_extras(&self) -> Option<&Arc<dyn JoinExtras>> {
        self.extras.get()
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Locked> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// Carries out, under the lock, what the core said to do at once, and
    /// returns the rest. Wakes the timer task if the next deadline moved
    /// earlier.
    fn apply(&self, locked: &mut Locked) -> Batch {
        let mut batch = Batch::default();
        for out in locked.core.drain() {
            match out.action {
                Action::Send { to, msg } => self.delivery.send(&to, &msg),
                Action::Close { to, code, reason } => self.delivery.close(&to, code, reason),
                Action::Seen(user) => {
                    let _ = self.seen.send(user);
                }
                _ => batch.0.push(out),
            }
        }
        if let Some(next) = locked.core.next_deadline()
            && locked.armed.is_none_or(|armed| next < armed)
        {
            locked.armed = Some(next);
            self.timer.wake();
        }
        batch
    }

    /// Carries out `batch`: every store write, then (only if all of them
    /// succeeded) the messages that report them, then the hold releases.
    /// Returns the first failed write.
    async fn run(&self, batch: Batch) -> Result<(), StoreError> {
        let mut failed = None;
        for out in &batch.0 {
            let written = match &out.action {
                Action::CallTransition { call_id, state } => {
                    self.store.call_transition(call_id, *state, out.at).await.inspect_err(|e| {
                        tracing::error!(%call_id, state = state.as_str(), error = %e, "failed to store call transition");
                    })
                }
                Action::SessionEvent { session_id, event } => {
                    self.store.session_event(session_id, event, out.at).await.inspect_err(|e| {
                        tracing::error!(%session_id, kind = event.kind(), error = %e, "failed to store session event");
                    })
                }
                _ => Ok(()),
            };
            if let Err(e) = written {
                failed.get_or_insert(e);
            }
        }
        if failed.is_none() {
            for out in &batch.0 {
                if let Action::Tell { to, msg } = &out.action {
                    self.delivery.send(to, msg);
                }
            }
        } else {
            tracing::warn!("not telling clients what was not stored");
        }
        let releases: Vec<_> = batch
            .0
            .into_iter()
            .filter_map(|out| match out.action {
                Action::Release { call, reason } => Some((call, reason)),
                _ => None,
            })
            .collect();
        // Rare (a call that was not answered), and boxed: inline, the
        // loop's state would size every batch's future, which each waiting
        // request keeps (624 bytes against 144; load-tests/README.md,
        // twenty-fifth run).
        if !releases.is_empty() {
            Box::pin(self.release_all(releases)).await;
        }
        failed.map_or(Ok(()), Err)
    }

    /// Releases the holds of calls that were not answered, in order.
    async fn release_all(&self, releases: Vec<(CallRecord, CallEndReason)>) {
        for (call, reason) in releases {
            self.gate.call_unanswered(&call, reason).await;
        }
    }

    /// Runs `batch` on its own task (inputs that answer nobody).
    fn spawn(self: &Arc<Self>, batch: Batch) {
        if batch.0.is_empty() {
            return;
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let _ = hub.run(batch).await;
        });
    }

    /// Stores a call's transition now; a failure is logged (the caller's
    /// answer does not depend on it).
    async fn persist_call(&self, call_id: &CallId, state: CallState) {
        if let Err(e) = self.store.call_transition(call_id, state, self.clock.now()).await {
            tracing::error!(%call_id, state = state.as_str(), error = %e, "failed to store call transition");
        }
    }

    /// Runs `batch` for a request: a failed write answers `internal` (the
    /// client was told nothing of it).
    async fn run_for_request(&self, batch: Batch) -> Result<(), SignalError> {
        self.run(batch).await.map_err(SignalError::internal)
    }

    // ----- queries ---------------------------------------------------------

    /// Starts the core afresh when this node stops being the cluster's hub
    /// node: every client of it is sent `server.shutdown` and closed
    /// (1001); rooms, rings and links are forgotten (the new hub node
    /// re-opens the sessions from the store).
    pub(crate) fn reset_core(&self) {
        let mut locked = self.lock();
        let now = self.clock.now();
        locked.core.farewell(CLOSE_GOING_AWAY, now);
        let batch = self.apply(&mut locked);
        debug_assert!(batch.0.is_empty(), "a farewell writes nothing");
        locked.core = HubCore::new(self.cfg.clone(), self.hooks.clone());
        locked.armed = None;
        locked.term = new_term();
    }

    /// Whether the hub has begun shutting down.
    pub fn is_shutting_down(&self) -> bool {
        self.lock().core.is_shutting_down()
    }

    /// Whether a recorder with this id has a live connection on this node
    /// (a second one is refused).
    pub fn recorder_connected(&self, id: &UserId) -> bool {
        self.lock().core.recorder_connected(id)
    }

    // ----- requests --------------------------------------------------------

    /// Handles one client request from `link` (everything but `resume`,
    /// which the connection handles). `Ok(result)` is acked with the
    /// request's `id`, unless the handler took the `id` out to send the ack
    /// itself (`room.join`).
    ///
    /// Not an `async fn`: a request answered at once (`ping`, `ice.servers`,
    /// `room.leave`, a relayed signal) allocates nothing, and one that
    /// waits (on the store, on the hold before a ring) boxes its own
    /// handler's future alone, not one sized for the largest of them all
    /// (1,184 bytes as one `async fn`; a `call.request` waiting on its hold
    /// now keeps its own, load-tests/README.md, twenty-fifth run).
    pub(crate) fn handle<'a>(
        self: &'a Arc<Self>,
        link: &'a LocalLink,
        id: &'a mut Option<String>,
        msg: ClientMessage,
    ) -> Handled<'a> {
        link.0.mark_used();
        match msg {
            ClientMessage::Ping => {
                Handled::Now(Ok(Some(AckResult::Pong { server_time_ms: self.clock.now().unix_millis() })))
            }
            ClientMessage::IceServers => {
                let ice_servers = self.cfg.ice.ice_servers(&link.0.user.id, self.clock.now());
                Handled::Now(Ok(Some(AckResult::IceServers { ice_servers })))
            }
            ClientMessage::PresenceSet { status } => {
                Handled::Later(Box::pin(async move { self.presence_set(link, status).await.map(|()| None) }))
            }
            ClientMessage::CallRequest { consultant_id, payment_method, record } => {
                Handled::Later(Box::pin(async move {
                    self.call_request(link, consultant_id, payment_method, record).await.map(Some)
                }))
            }
            ClientMessage::CallAccept { call_id } => {
                Handled::Later(Box::pin(async move { self.call_accept(link, call_id).await.map(|()| None) }))
            }
            ClientMessage::CallDecline { call_id, reason } => Handled::Later(Box::pin(async move {
                self.call_end_by(link, call_id, CallEndReason::Declined, reason).await.map(|()| None)
            })),
            ClientMessage::CallCancel { call_id } => Handled::Later(Box::pin(async move {
                self.call_end_by(link, call_id, CallEndReason::Cancelled, None).await.map(|()| None)
            })),
            ClientMessage::RoomJoin { session_id } => {
                Handled::Later(Box::pin(async move { self.room_join(link, id, session_id).await.map(|()| None) }))
            }
            ClientMessage::RoomLeave { session_id } => Handled::Now(self.room_leave(link, session_id).map(|()| None)),
            ClientMessage::SdpOffer { session_id, sdp, to } => Handled::Now(check_sdp(&sdp).and_then(|()| {
                self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::SdpOffer {
                    session_id: session_id.clone(),
                    from,
                    sdp,
                })
            })),
            ClientMessage::SdpAnswer { session_id, sdp, to } => Handled::Now(check_sdp(&sdp).and_then(|()| {
                self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::SdpAnswer {
                    session_id: session_id.clone(),
                    from,
                    sdp,
                })
            })),
            ClientMessage::IceCandidate { session_id, candidate, to } => {
                Handled::Now(check_candidate(&candidate).and_then(|()| {
                    self.relay(link, &session_id, to.as_ref(), |from| ServerMessage::IceCandidate {
                        session_id: session_id.clone(),
                        from,
                        candidate,
                    })
                }))
            }
            ClientMessage::ChatSend { session_id, text, kind } => {
                Handled::Later(Box::pin(async move { self.chat(link, session_id, text, kind).await.map(|()| None) }))
            }
            ClientMessage::MediaStateReport { session_id, state } => {
                Handled::Later(Box::pin(async move { self.media_state(link, session_id, state).await.map(|()| None) }))
            }
            ClientMessage::SessionEnd { session_id } => {
                Handled::Later(Box::pin(async move { self.session_end(link, session_id).await.map(|()| None) }))
            }
            ClientMessage::Resume { .. } => {
                Handled::Now(Err(SignalError::new(ErrorCode::ResumeNotFirst, "resume must be the first message")))
            }
        }
    }

    async fn presence_set(&self, link: &LocalLink, status: PresenceStatus) -> Result<(), SignalError> {
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.presence_set(&link.0.user, status, now)?;
            if let Some((journal, key)) = link.0.journal() {
                journal.presence(key, status == PresenceStatus::Available);
            }
            self.apply(&mut locked)
        };
        // Stored and told before the ack.
        self.run_for_request(batch).await
    }

    async fn call_request(
        &self,
        link: &LocalLink,
        consultant_id: UserId,
        payment_method: Option<String>,
        recording: bool,
    ) -> Result<AckResult, SignalError> {
        let req = CallRequest {
            consultant_id: consultant_id.clone(),
            recording,
            premium: link.0.premium,
            call_id: CallId::parse(format!("call_{}", uuid::Uuid::now_v7().simple())).expect("valid id"),
            session_id: SessionId::parse(format!("ses_{}", uuid::Uuid::now_v7().simple())).expect("valid id"),
        };
        let record = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.call_request(&link.0.user, req, now)?
        };
        let Some(record) = record else {
            // Not connected here: unknown, or known but offline.
            return Err(match self.store.user(&consultant_id).await {
                Ok(Some(u)) if u.role == Role::Consultant => {
                    SignalError::new(ErrorCode::ConsultantUnavailable, format!("{} is offline right now", u.name))
                }
                Ok(_) => unknown_consultant(&consultant_id),
                Err(e) => SignalError::internal(e),
            });
        };
        let abandon = |hub: &Hub| {
            let mut locked = hub.lock();
            let now = hub.clock.now();
            locked.core.call_abandoned(&record.call_id, now);
        };
        if let Err(e) = self.store.create_call(&record).await {
            abandon(self);
            return Err(SignalError::internal(e));
        }
        if let Err(refusal) = self.gate.before_ring(&record, payment_method.as_deref()).await {
            abandon(self);
            self.persist_call(&record.call_id, CallState::HoldRefused).await;
            metrics::call("hold_refused");
            return Err(SignalError::new(refusal.code, refusal.message));
        }
        let rung = {
            let mut locked = self.lock();
            let now = self.clock.now();
            let rung = locked.core.call_authorized(&record.call_id, now);
            let batch = self.apply(&mut locked);
            debug_assert!(batch.0.is_empty(), "ringing writes nothing");
            rung
        };
        match rung {
            Ok(deadline) => {
                self.persist_call(&record.call_id, CallState::Ringing).await;
                Ok(AckResult::Call {
                    call_id: record.call_id,
                    session_id: record.session_id,
                    ring_deadline_ms: deadline.unix_millis(),
                })
            }
            Err(refused) => {
                // The consultant went away, or the server began shutting
                // down, while the hold was placed: release it.
                self.gate.call_unanswered(&record, refused.reason).await;
                self.persist_call(&record.call_id, CallState::Ended(refused.reason)).await;
                metrics::call(refused.reason.as_str());
                Err(refused.error)
            }
        }
    }

    /// Accepts in two steps so nobody is told of a session the store does
    /// not have (see `HubCore::accept`).
    async fn call_accept(&self, link: &LocalLink, call_id: CallId) -> Result<(), SignalError> {
        let session = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.accept(&link.0.user, &call_id, now)
        };
        let session = match session {
            Ok(session) => session,
            Err(denied) => return Err(self.call_denied(denied, &call_id, &link.0.user.id).await),
        };
        if let Err(e) = self.store.accept_call(&session).await {
            let batch = {
                let mut locked = self.lock();
                let now = self.clock.now();
                locked.core.accept_failed(&call_id, now);
                self.apply(&mut locked)
            };
            let _ = self.run(batch).await;
            return Err(SignalError::internal(e));
        }
        let mut locked = self.lock();
        let now = self.clock.now();
        locked.core.accept_stored(&link.0.user, &session, now);
        let batch = self.apply(&mut locked);
        drop(locked);
        debug_assert!(batch.0.is_empty(), "opening a room writes nothing");
        Ok(())
    }

    async fn call_end_by(
        &self,
        link: &LocalLink,
        call_id: CallId,
        reason: CallEndReason,
        message: Option<String>,
    ) -> Result<(), SignalError> {
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            match locked.core.end_call_by(&link.0.user, &call_id, reason, message, now) {
                Ok(()) => Ok(self.apply(&mut locked)),
                Err(denied) => Err(denied),
            }
        };
        match batch {
            Ok(batch) => self.run_for_request(batch).await,
            Err(denied) => Err(self.call_denied(denied, &call_id, &link.0.user.id).await),
        }
    }

    /// The answer to a refused call request; asks the store when the core
    /// could not say (a call not ringing here).
    async fn call_denied(&self, denied: Denied, call_id: &CallId, user: &UserId) -> SignalError {
        match denied {
            Denied::Error(e) => e,
            Denied::NotRinging | Denied::NoRoom => self.not_ringing(call_id, user).await,
        }
    }

    /// Why `call_id` is not a ringing call of `user`.
    async fn not_ringing(&self, call_id: &CallId, user: &UserId) -> SignalError {
        if self.lock().core.is_accepting(call_id, user) {
            return SignalError::new(ErrorCode::CallNotRinging, format!("call {call_id} is being accepted"));
        }
        match self.store.call(call_id).await {
            Ok(Some(c)) if &c.record.seeker_id == user || &c.record.consultant_id == user => SignalError::new(
                ErrorCode::CallNotRinging,
                format!("call {call_id} is no longer ringing (it is {})", c.state),
            ),
            Ok(_) => SignalError::new(ErrorCode::UnknownCall, format!("no call {call_id} of yours")),
            Err(e) => SignalError::internal(e),
        }
    }

    /// Why `session_id` has no open room here, for `user`.
    async fn no_room(&self, session_id: &SessionId, user: &UserId) -> SignalError {
        let not_participant =
            || SignalError::new(ErrorCode::Forbidden, format!("you are not a participant of session {session_id}"));
        let opening = || {
            SignalError::new(
                ErrorCode::RoomNotOpen,
                format!("the room of session {session_id} is opening; join again in a moment"),
            )
        };
        match self.store.session(session_id).await {
            Ok(Some(s)) if &s.record.seeker_id != user && &s.record.consultant_id != user => not_participant(),
            Ok(Some(s)) if s.ended_at.is_some() => {
                SignalError::new(ErrorCode::SessionEnded, format!("session {session_id} has ended"))
            }
            // A booked session is stored a moment before its room admits
            // joins (`open_scheduled`).
            Ok(Some(s)) if s.record.scheduled => opening(),
            Ok(Some(_)) => SignalError::new(
                ErrorCode::SessionEnded,
                format!("session {session_id} is no longer open on this server"),
            ),
            Ok(None) => match self.store.scheduled(session_id).await {
                Ok(Some(b)) if &b.seeker_id != user && &b.consultant_id != user => not_participant(),
                // The scheduler is opening it at this moment.
                Ok(Some(b)) if b.opens_at <= self.clock.now() => opening(),
                Ok(Some(b)) => SignalError::new(
                    ErrorCode::RoomNotOpen,
                    format!(
                        "the room of session {session_id} opens at {} ms (10 minutes before the start); join then",
                        b.opens_at.unix_millis()
                    ),
                ),
                Ok(None) => SignalError::new(ErrorCode::UnknownSession, format!("no session {session_id}")),
                Err(e) => SignalError::internal(e),
            },
            Err(e) => SignalError::internal(e),
        }
    }
}

/// Writes newly seen users to the store, off the connect path: `connect`
/// does not await, and one long-lived task takes whatever has queued (the
/// store group-commits it) instead of a task per new user.
async fn record_seen_users(mut rx: mpsc::UnboundedReceiver<UserInfo>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    const BATCH: usize = 512;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(e) = store.users_seen(&batch, clock.now()).await {
            tracing::error!(error = %e, users = batch.len(), "failed to record seen users");
        }
        batch.clear();
    }
}

/// The timer task: sleeps on the hub's clock until the core's next
/// deadline (woken early when an input moves it earlier), then hands the
/// core the time. Ends when the hub is dropped.
async fn run_timers(hub: Weak<Hub>, clock: Arc<dyn Clock>, wake: Wake, stopped: oneshot::Receiver<()>) {
    let stopped = async {
        let _ = stopped.await;
    };
    run_worker(clock, wake, stopped, |_| {
        let hub = hub.upgrade();
        async move {
            let hub = hub?;
            let batch = {
                let mut locked = hub.lock();
                let now = hub.clock.now();
                locked.core.handle_timeout(now);
                locked.armed = locked.core.next_deadline();
                hub.apply(&mut locked)
            };
            hub.spawn(batch);
            hub.lock().armed
        }
    })
    .await;
}

fn check_sdp(sdp: &str) -> Result<(), SignalError> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(SignalError::new(
            ErrorCode::SdpTooLarge,
            format!("SDP is {} bytes; at most {MAX_SDP_BYTES} allowed", sdp.len()),
        ));
    }
    Ok(())
}

fn check_candidate(c: &IceCandidate) -> Result<(), SignalError> {
    if c.candidate.len() > MAX_CANDIDATE_BYTES {
        return Err(SignalError::new(
            ErrorCode::SdpTooLarge,
            format!("candidate is {} bytes; at most {MAX_CANDIDATE_BYTES} allowed", c.candidate.len()),
        ));
    }
    Ok(())
}
