//! The signaling client: one WebSocket to `/v1/signal`, typed requests
//! answered by `ack` or `error`, an event stream, and automatic `resume`
//! when the connection drops.
//!
//! When a resume is impossible (the server restarted, or the grace period
//! is over), the client rejoins by itself every session room it had joined
//! and not left (`room.join` again, docs/protocol.md 8.13) and reports each
//! as [`Event::Rejoined`] with the fresh room (ICE servers with fresh TURN
//! credentials, `offerer`, who is present), so a [`crate::session::SessionCall`]
//! restores its negotiation ([`crate::session::SessionCall::handle_event`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), parley_sdk::SdkError> {
//! use parley_sdk::{SignalingClient, Event};
//! let (client, mut events) = SignalingClient::connect("ws://127.0.0.1:8080/v1/signal", "<jwt>").await?;
//! client.set_available(true).await?;
//! while let Some(event) = events.recv().await {
//!     if let Event::Server(parley_domain::protocol::ServerMessage::CallIncoming { call_id, .. }) = event {
//!         client.accept(&call_id).await?;
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parley_domain::protocol::{
    AckResult, ChatKind, ClientEnvelope, ClientMessage, IceServer, MediaJoin, MeterStatus, PresenceStatus,
    ServerEnvelope, ServerMessage, UserInfo,
};
use parley_domain::{CallId, SessionId, UserId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::SdkError;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = oneshot::Sender<Result<Option<AckResult>, SdkError>>;

/// How long [`SignalingClient::request`] waits for its `ack` or `error`.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What the client's event stream carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A server message that is not the answer to one of your requests
    /// (incoming calls, relayed SDP and candidates, room and session news,
    /// and `error`s for messages sent without an id).
    Server(ServerMessage),
    /// The connection dropped; the client is reconnecting.
    Reconnecting,
    /// Reconnected and resumed: nothing was missed (`replayed` messages were
    /// delivered again as `Server` events before this).
    Resumed {
        /// How many missed messages were replayed.
        replayed: u64,
        /// Fresh STUN/TURN servers from the resume's ack (empty if the
        /// server has none): use them for the next ICE restart.
        ice_servers: Vec<IceServer>,
    },
    /// Reconnected, but the old state was gone (grace period over, or the
    /// server restarted). The client rejoins the rooms it was in by itself
    /// ([`Event::Rejoined`] / [`Event::RejoinFailed`] follow, one per
    /// room); presence (`presence.set`) is the application's to set again.
    ResumeFailed {
        /// The server's explanation.
        reason: String,
    },
    /// After a failed resume, the client joined a room it was in again by
    /// itself (`room.join`): the session goes on, metered again once both
    /// are back. The old relayed signals are lost: the seeker makes a new
    /// offer (with an ICE restart) once the other participant is present
    /// (docs/protocol.md 8.3, 8.13); [`crate::session::SessionCall::handle_event`]
    /// does that and switches to the room's fresh ICE servers.
    Rejoined {
        /// The room as the new `room.join` answered it.
        room: RoomInfo,
    },
    /// After a failed resume, rejoining a room failed (e.g. `session_ended`:
    /// the session ended while the client was away). The room is forgotten.
    RejoinFailed {
        /// The session.
        session_id: SessionId,
        /// The server's error.
        error: SdkError,
    },
    /// The connection is closed for good (closed by you, replaced by a
    /// newer connection, or reconnecting gave up).
    Closed {
        /// Why.
        reason: String,
    },
}

/// A room just joined: [`AckResult::Room`] as a struct.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomInfo {
    /// The session.
    pub session_id: SessionId,
    /// The other participant, if already in the room.
    pub participants: Vec<UserInfo>,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Whether this side makes the offer.
    pub offerer: bool,
    /// The session's meter as of the join (free window, billable so far).
    pub meter: Option<MeterStatus>,
    /// Where the media goes when not peer to peer (a LiveKit URL and
    /// token). This SDK calls peer to peer only: a session with `Some` here
    /// is joined through a LiveKit client instead (see the README).
    pub media: Option<MediaJoin>,
}

/// A call just requested: the consultant is ringing.
#[derive(Debug, Clone, PartialEq)]
pub struct RingingCall {
    /// The call.
    pub call_id: CallId,
    /// The session it opens if accepted.
    pub session_id: SessionId,
    /// When the ring times out (server Unix ms).
    pub ring_deadline_ms: i64,
}

enum Command {
    Send(ClientEnvelope),
    Close,
}

struct Shared {
    pending: Mutex<HashMap<String, Reply>>,
    next_id: AtomicU64,
    user: UserInfo,
    /// The rooms joined and not left or ended: rejoined after a failed resume.
    rooms: Mutex<BTreeSet<SessionId>>,
    /// Whether to rejoin them ([`SignalingClient::set_auto_rejoin`]).
    auto_rejoin: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn rooms(&self) -> std::sync::MutexGuard<'_, BTreeSet<SessionId>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A connected signaling client. Cheap to clone; all clones share the
/// connection. Dropping every clone closes it.
#[derive(Clone)]
pub struct SignalingClient {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
}

/// The client's event stream.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl Events {
    /// The next event; `None` after [`Event::Closed`].
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// The next event if one is already queued.
    pub fn try_recv(&mut self) -> Option<Event> {
        self.rx.try_recv().ok()
    }

    /// Waits for the first server message `pick` accepts, skipping others,
    /// for at most `timeout`.
    pub async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut pick: impl FnMut(&ServerMessage) -> Option<T>,
    ) -> Result<T, SdkError> {
        tokio::time::timeout(timeout, async {
            loop {
                match self.rx.recv().await {
                    Some(Event::Server(m)) => {
                        if let Some(t) = pick(&m) {
                            return Ok(t);
                        }
                    }
                    Some(Event::Closed { reason }) => {
                        return Err(SdkError::Closed(reason));
                    }
                    Some(_) => {}
                    None => return Err(SdkError::Closed("event stream ended".into())),
                }
            }
        })
        .await
        .map_err(|_| SdkError::Timeout("waiting for a server message"))?
    }
}

struct Resume {
    token: String,
    last_seq: u64,
    /// How long the server keeps a dropped connection's state (`hello`).
    window: Duration,
}

impl SignalingClient {
    /// Connects to `url` (`ws://host:port/v1/signal`) with bearer `token`
    /// and waits for the server's `hello`.
    ///
    /// Errors: [`SdkError::Unauthorized`] (HTTP 401, with the server's code),
    /// [`SdkError::Connect`] when the server cannot be reached.
    pub async fn connect(url: &str, token: &str) -> Result<(SignalingClient, Events), SdkError> {
        let mut ws = open(url, token).await?;
        let (user, resume) = read_hello(&mut ws).await?;
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            user,
            rooms: Mutex::new(BTreeSet::new()),
            auto_rejoin: std::sync::atomic::AtomicBool::new(true),
        });
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, rx) = mpsc::unbounded_channel();
        let driver = Driver {
            url: url.to_owned(),
            token: token.to_owned(),
            shared: shared.clone(),
            events: events_tx,
            commands: commands_rx,
            resume,
            rejoins: HashMap::new(),
        };
        tokio::spawn(driver.run(ws));
        Ok((SignalingClient { shared, commands }, Events { rx }))
    }

    /// Who the server says you are.
    pub fn user(&self) -> &UserInfo {
        &self.shared.user
    }

    /// Sends `msg` with a fresh id and waits for its `ack` (the result, if
    /// any) or `error` ([`SdkError::Server`]).
    pub async fn request(&self, msg: ClientMessage) -> Result<Option<AckResult>, SdkError> {
        let id = format!("r{}", self.shared.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), tx);
        if self.commands.send(Command::Send(ClientEnvelope { id: Some(id.clone()), msg })).is_err() {
            self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(SdkError::Closed("client closed".into()));
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(SdkError::Closed("connection closed before the reply".into())),
            Err(_) => {
                self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                Err(SdkError::Timeout("waiting for ack"))
            }
        }
    }

    /// Sends `msg` without an id: no `ack`; a failure arrives as an
    /// [`Event::Server`] `error`. For trickled candidates and other
    /// high-rate messages.
    pub fn send(&self, msg: ClientMessage) -> Result<(), SdkError> {
        self.commands
            .send(Command::Send(ClientEnvelope { id: None, msg }))
            .map_err(|_| SdkError::Closed("client closed".into()))
    }

    /// Closes the connection (no resume).
    pub fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Consultants: be rung (`true`) or not (`false`).
    pub async fn set_available(&self, available: bool) -> Result<(), SdkError> {
        let status = if available { PresenceStatus::Available } else { PresenceStatus::Offline };
        self.request(ClientMessage::PresenceSet { status }).await.map(drop)
    }

    /// Seekers: call `consultant` now, paying with `payment_method`.
    pub async fn call(&self, consultant: &UserId, payment_method: Option<&str>) -> Result<RingingCall, SdkError> {
        self.call_with(consultant, payment_method, false).await
    }

    /// Seekers: call `consultant` now, paying with `payment_method`, and
    /// with `record` ask for the session to be recorded (premium seekers,
    /// consultants who allow it: else `premium_required` /
    /// `recording_not_allowed`).
    pub async fn call_with(
        &self,
        consultant: &UserId,
        payment_method: Option<&str>,
        record: bool,
    ) -> Result<RingingCall, SdkError> {
        let msg = ClientMessage::CallRequest {
            consultant_id: consultant.clone(),
            payment_method: payment_method.map(str::to_owned),
            record,
        };
        match self.request(msg).await? {
            Some(AckResult::Call { call_id, session_id, ring_deadline_ms }) => {
                Ok(RingingCall { call_id, session_id, ring_deadline_ms })
            }
            other => Err(SdkError::Protocol(format!("call.request answered with {other:?}"))),
        }
    }

    /// Consultants: accept a ringing call.
    pub async fn accept(&self, call_id: &CallId) -> Result<(), SdkError> {
        self.request(ClientMessage::CallAccept { call_id: call_id.clone() }).await.map(drop)
    }

    /// Consultants: decline a ringing call.
    pub async fn decline(&self, call_id: &CallId, reason: Option<&str>) -> Result<(), SdkError> {
        let msg = ClientMessage::CallDecline { call_id: call_id.clone(), reason: reason.map(str::to_owned) };
        self.request(msg).await.map(drop)
    }

    /// Seekers: withdraw a ringing call.
    pub async fn cancel(&self, call_id: &CallId) -> Result<(), SdkError> {
        self.request(ClientMessage::CallCancel { call_id: call_id.clone() }).await.map(drop)
    }

    /// Joins a session's room. The client remembers it and rejoins it by
    /// itself after a failed resume ([`Event::Rejoined`]) until it is left,
    /// ended, or refused.
    pub async fn join(&self, session_id: &SessionId) -> Result<RoomInfo, SdkError> {
        let result = self.request(ClientMessage::RoomJoin { session_id: session_id.clone() }).await?;
        let room = room_info(result)?;
        self.shared.rooms().insert(room.session_id.clone());
        Ok(room)
    }

    /// Leaves a session's room (the session goes on; rejoin within the grace period).
    pub async fn leave(&self, session_id: &SessionId) -> Result<(), SdkError> {
        self.request(ClientMessage::RoomLeave { session_id: session_id.clone() }).await?;
        self.shared.rooms().remove(session_id);
        Ok(())
    }

    /// Fresh STUN/TURN servers (`ice.servers`): TURN credentials valid for
    /// the server's TTL from now. Ask before an ICE restart late in a
    /// session, when those of the `room.join` may have expired.
    pub async fn ice_servers(&self) -> Result<Vec<IceServer>, SdkError> {
        match self.request(ClientMessage::IceServers).await? {
            Some(AckResult::IceServers { ice_servers }) => Ok(ice_servers),
            other => Err(SdkError::Protocol(format!("ice.servers answered with {other:?}"))),
        }
    }

    /// Whether the client rejoins its rooms by itself after a failed resume
    /// (default `true`). A program that reconnects on its own terms (the
    /// recorder) turns it off.
    pub fn set_auto_rejoin(&self, on: bool) {
        self.shared.auto_rejoin.store(on, Ordering::Relaxed);
    }

    /// The rooms this client would rejoin after a failed resume: joined,
    /// and not left, ended or refused since.
    pub fn joined_rooms(&self) -> Vec<SessionId> {
        self.shared.rooms().iter().cloned().collect()
    }

    /// Sends a chat line or note to the session (stored for the recap).
    pub async fn chat(&self, session_id: &SessionId, text: &str, kind: ChatKind) -> Result<(), SdkError> {
        let msg = ClientMessage::ChatSend { session_id: session_id.clone(), text: text.to_owned(), kind };
        self.request(msg).await.map(drop)
    }

    /// Hangs up: ends the session for both.
    pub async fn end_session(&self, session_id: &SessionId) -> Result<(), SdkError> {
        self.request(ClientMessage::SessionEnd { session_id: session_id.clone() }).await?;
        self.shared.rooms().remove(session_id);
        Ok(())
    }
}

/// A `room.join` ack's result as a [`RoomInfo`].
fn room_info(result: Option<AckResult>) -> Result<RoomInfo, SdkError> {
    match result {
        Some(AckResult::Room { session_id, participants, ice_servers, offerer, meter, media }) => {
            Ok(RoomInfo { session_id, participants, ice_servers, offerer, meter, media })
        }
        other => Err(SdkError::Protocol(format!("room.join answered with {other:?}"))),
    }
}

async fn open(url: &str, token: &str) -> Result<Ws, SdkError> {
    let mut request = url.into_client_request().map_err(|e| SdkError::Connect(e.to_string()))?;
    let bearer =
        format!("Bearer {token}").parse().map_err(|_| SdkError::Connect("token is not a header value".into()))?;
    request.headers_mut().insert("authorization", bearer);
    // Small buffers (signaling messages are small; tungstenite grows them
    // for a large frame) and no Nagle delay on back-to-back messages.
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024).write_buffer_size(0);
    match tokio_tungstenite::connect_async_with_config(request, Some(config), true).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().unwrap_or_default();
            let parsed: Option<parley_domain::protocol::ErrorBody> = serde_json::from_slice(body).ok();
            match parsed {
                Some(b) if status == 401 => Err(SdkError::Unauthorized { code: b.code, message: b.message }),
                Some(b) => Err(SdkError::Server { code: b.code, message: b.message }),
                None => Err(SdkError::Connect(format!("HTTP {status}"))),
            }
        }
        Err(e) => Err(SdkError::Connect(e.to_string())),
    }
}

async fn read_hello(ws: &mut Ws) -> Result<(UserInfo, Resume), SdkError> {
    loop {
        let msg = tokio::time::timeout(REQUEST_TIMEOUT, ws.next())
            .await
            .map_err(|_| SdkError::Timeout("waiting for hello"))?
            .ok_or_else(|| SdkError::Closed("closed before hello".into()))?
            .map_err(|e| SdkError::Connect(e.to_string()))?;
        if let Message::Text(text) = msg {
            let env: ServerEnvelope = serde_json::from_str(&text).map_err(|e| SdkError::Protocol(e.to_string()))?;
            return match env.msg {
                ServerMessage::Hello { user, resume_token, resume_window_secs, .. } => Ok((
                    user,
                    Resume { token: resume_token, last_seq: env.seq, window: Duration::from_secs(resume_window_secs) },
                )),
                other => Err(SdkError::Protocol(format!("expected hello, got {other:?}"))),
            };
        }
    }
}

/// Owns the WebSocket: writes commands, reads messages, resumes on drops.
struct Driver {
    url: String,
    token: String,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    commands: mpsc::UnboundedReceiver<Command>,
    resume: Resume,
    /// The `room.join`s sent by the client itself after a failed resume:
    /// request id → session.
    rejoins: HashMap<String, SessionId>,
}

enum Ended {
    /// By us, or for good: stop.
    Final(String),
    /// Dropped: try to resume.
    Dropped,
}

impl Driver {
    async fn run(mut self, mut ws: Ws) {
        loop {
            let reason = match self.pump(&mut ws).await {
                Ended::Final(reason) => reason,
                Ended::Dropped => {
                    let _ = self.events.send(Event::Reconnecting);
                    match self.reconnect().await {
                        Some(new_ws) => {
                            ws = new_ws;
                            continue;
                        }
                        None => "could not reconnect within the resume window".to_owned(),
                    }
                }
            };
            self.fail_pending(&reason);
            let _ = self.events.send(Event::Closed { reason });
            return;
        }
    }

    fn fail_pending(&self, reason: &str) {
        for (_, reply) in self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            let _ = reply.send(Err(SdkError::Closed(reason.to_owned())));
        }
    }

    async fn pump(&mut self, ws: &mut Ws) -> Ended {
        loop {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Send(env)) => {
                        let text = serde_json::to_string(&env).expect("client messages serialise");
                        if ws.send(Message::Text(text.into())).await.is_err() {
                            return Ended::Dropped;
                        }
                    }
                    Some(Command::Close) | None => {
                        let _ = ws.close(None).await;
                        return Ended::Final("closed by the client".into());
                    }
                },
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(text))) => self.dispatch(&text),
                    Some(Ok(Message::Close(frame))) => return closed(frame),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Ended::Dropped,
                },
            }
        }
    }

    fn dispatch(&mut self, text: &str) {
        let env: ServerEnvelope = match serde_json::from_str(text) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable server message");
                return;
            }
        };
        self.resume.last_seq = env.seq;
        if let ServerMessage::SessionEnded { session_id, .. } = &env.msg {
            self.shared.rooms().remove(session_id);
        }
        if let ServerMessage::Ack { id, .. } | ServerMessage::Error { id: Some(id), .. } = &env.msg
            && let Some(session_id) = self.rejoins.remove(id)
        {
            return self.rejoined(session_id, env.msg);
        }
        let reply = match &env.msg {
            ServerMessage::Ack { id, .. } | ServerMessage::Error { id: Some(id), .. } => {
                self.shared.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id)
            }
            _ => None,
        };
        match (reply, env.msg) {
            (Some(reply), ServerMessage::Ack { result, .. }) => {
                let _ = reply.send(Ok(result));
            }
            (Some(reply), ServerMessage::Error { code, message, .. }) => {
                let _ = reply.send(Err(SdkError::Server { code, message }));
            }
            (_, msg) => {
                let _ = self.events.send(Event::Server(msg));
            }
        }
    }

    /// The answer to a `room.join` the client sent by itself: reported, in
    /// order with the messages around it.
    fn rejoined(&mut self, session_id: SessionId, msg: ServerMessage) {
        let event = match msg {
            ServerMessage::Ack { result, .. } => match room_info(result) {
                Ok(room) => Event::Rejoined { room },
                Err(error) => Event::RejoinFailed { session_id, error },
            },
            ServerMessage::Error { code, message, .. } => {
                Event::RejoinFailed { session_id, error: SdkError::Server { code, message } }
            }
            _ => return,
        };
        if let Event::RejoinFailed { session_id, .. } = &event {
            self.shared.rooms().remove(session_id);
        }
        let _ = self.events.send(event);
    }

    /// After a failed resume: `room.join` again every room the client was
    /// in (docs/protocol.md 8.13), on the fresh connection `ws`.
    async fn rejoin(&mut self, ws: &mut Ws) -> Result<(), tungstenite::Error> {
        if !self.shared.auto_rejoin.load(Ordering::Relaxed) {
            return Ok(());
        }
        let rooms: Vec<SessionId> = self.shared.rooms().iter().cloned().collect();
        for session_id in rooms {
            let id = format!("rejoin{}", self.shared.next_id.fetch_add(1, Ordering::Relaxed));
            let env = ClientEnvelope {
                id: Some(id.clone()),
                msg: ClientMessage::RoomJoin { session_id: session_id.clone() },
            };
            ws.send(Message::Text(serde_json::to_string(&env).expect("serialises").into())).await?;
            self.rejoins.insert(id, session_id);
        }
        Ok(())
    }

    /// Reconnects with backoff for up to the server's resume window and
    /// resumes; if the resume is refused, rejoins the rooms the client was in.
    async fn reconnect(&mut self) -> Option<Ws> {
        let deadline = tokio::time::Instant::now() + self.resume.window;
        let mut backoff = Duration::from_millis(100);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            let Ok(mut ws) = open(&self.url, &self.token).await else { continue };
            let Ok((_, fresh)) = read_hello(&mut ws).await else { continue };
            let resume = ClientEnvelope {
                id: Some("resume".into()),
                msg: ClientMessage::Resume { resume_token: self.resume.token.clone(), last_seq: self.resume.last_seq },
            };
            let text = serde_json::to_string(&resume).expect("serialises");
            if ws.send(Message::Text(text.into())).await.is_err() {
                continue;
            }
            // Replayed messages come first, then the ack (or an error).
            loop {
                let Some(Ok(msg)) = ws.next().await else { break };
                let Message::Text(text) = msg else { continue };
                let Ok(env) = serde_json::from_str::<ServerEnvelope>(&text) else { continue };
                match env.msg {
                    ServerMessage::Ack { ref id, result: Some(AckResult::Resumed { replayed, ref ice_servers }) }
                        if id == "resume" =>
                    {
                        self.resume.last_seq = env.seq;
                        let _ = self.events.send(Event::Resumed { replayed, ice_servers: ice_servers.clone() });
                        return Some(ws);
                    }
                    ServerMessage::Error { id: Some(ref id), ref message, .. } if id == "resume" => {
                        self.resume = Resume { last_seq: env.seq, ..fresh };
                        self.fail_pending("the connection was lost");
                        self.rejoins.clear();
                        let _ = self.events.send(Event::ResumeFailed { reason: message.clone() });
                        if self.rejoin(&mut ws).await.is_err() {
                            break; // this connection died too: try another
                        }
                        return Some(ws);
                    }
                    _ => self.dispatch(&text),
                }
            }
        }
        None
    }
}

fn closed(frame: Option<CloseFrame>) -> Ended {
    match frame {
        // Replaced by a newer connection: resuming would fight it.
        Some(f) if u16::from(f.code) == 4000 => Ended::Final(f.reason.to_string()),
        // Server shutdown (1001), slow consumer (1008) and the rest: resume.
        _ => Ended::Dropped,
    }
}

impl std::fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingClient").field("user", &self.shared.user.id).finish()
    }
}
