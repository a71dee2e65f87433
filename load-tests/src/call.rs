//! `parley-load call`: real calls through the server with the Rust SDK.
//!
//! Each call is a fresh synthetic seeker/consultant pair: the consultant
//! connects and becomes available, the seeker connects and calls, the
//! consultant accepts on `call.incoming`, both join the room and start a
//! webrtc-rs [`SessionCall`] (the seeker once the consultant is present,
//! since the server relays only to present participants). When both peer
//! connections are connected, Opus audio flows both ways for `duration`;
//! then the seeker times data-channel round trips (the consultant echoes),
//! hangs up, and both must see `session.ended`.
//!
//! Every step has its own timeout and every call an overall one
//! (`duration` + 30 s), so a run always ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;
use parley_sdk::{ApiClient, Event, Events, SignalingClient};
use serde::Serialize;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::clock::{ms, now_ns};
use crate::report::opt;
use crate::stats::Latencies;
use crate::target::Target;
use crate::tokens::{TokenSource, User};

mod report;

pub use self::report::{CallRecord, CallReport};

/// Timeout of each signaling step (connect, request, event).
const STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long ICE and DTLS may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the data channel may take to open.
const DATA_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one data-channel echo may take.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long both sides may take to see `session.ended`.
const HANGUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a session's settlement to be carried out.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Added to `duration` for a call's overall timeout.
const CALL_OVERHEAD: Duration = Duration::from_secs(30);
/// Data-channel round trips timed per call.
pub const RTT_SAMPLES: usize = 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// The server.
    pub target: Target,
    /// Concurrent calls.
    pub calls: usize,
    /// How long audio flows in each call.
    pub duration: Duration,
    /// The server's JWT secret.
    pub jwt_secret_file: Option<PathBuf>,
    /// Each consultant's fixed price in EUR cents; 0: free (no hold).
    pub price_minor: i64,
}

/// Runs the scenario.
pub async fn run(opts: CallOptions) -> anyhow::Result<CallReport> {
    let tokens = Arc::new(TokenSource::resolve(&opts.target, opts.jwt_secret_file.as_deref()).await?);
    if let Some(limit) = crate::limits::raise_nofile_limit()
        && let Some(w) = crate::limits::check("parley-load", limit, 8 * opts.calls as u64)
    {
        eprintln!("parley-load: warning: {w}");
    }
    let run = crate::run_id();
    eprintln!("parley-load: running {} calls of {:?} each ({})", opts.calls, opts.duration, tokens.describe());
    let limit = opts.duration + CALL_OVERHEAD;
    let mut calls = JoinSet::new();
    for id in 0..opts.calls {
        let (tokens, target, run, duration) = (tokens.clone(), opts.target.clone(), run.clone(), opts.duration);
        let price = opts.price_minor;
        calls.spawn(async move {
            let mut record = CallRecord::new(id, &run);
            match tokio::time::timeout(limit, drive(&tokens, &target, price, duration, &mut record)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => record.error = Some(format!("{}: {e:#}", record.stage)),
                Err(_) => record.error = Some(format!("{}: timed out after {limit:?}", record.stage)),
            }
            record
        });
    }
    let mut records = Vec::with_capacity(opts.calls);
    let collect_by = Instant::now() + limit + Duration::from_secs(15);
    while let Ok(Some(joined)) = tokio::time::timeout_at(collect_by, calls.join_next()).await {
        match joined {
            Ok(record) => records.push(record),
            Err(e) => eprintln!("parley-load: a call task failed: {e}"),
        }
    }
    calls.abort_all();
    for id in 0..opts.calls {
        if !records.iter().any(|r| r.id == id) {
            let mut r = CallRecord::new(id, &run);
            r.error = Some("the call task did not finish".into());
            records.push(r);
        }
    }
    Ok(CallReport::from_records(records, opts.duration, tokens.describe()))
}

/// A spawned task, aborted if dropped before it is joined.
pub(crate) struct Task<T>(Option<JoinHandle<T>>);

impl<T> Task<T> {
    pub(crate) fn spawn(f: impl Future<Output = T> + Send + 'static) -> Task<T>
    where
        T: Send + 'static,
    {
        Task(Some(tokio::spawn(f)))
    }

    /// The task's output, if it finishes within `timeout`.
    pub(crate) async fn join(&mut self, timeout: Duration) -> Option<T> {
        let handle = self.0.as_mut()?;
        let out = tokio::time::timeout(timeout, handle).await.ok()?.ok();
        self.0 = None;
        out
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            h.abort();
        }
    }
}

/// How a side's event pump ended.
#[derive(Debug, Default)]
struct PumpEnd {
    /// The session ended, and why.
    ended: Option<SessionEndReason>,
    /// The bill in `session.ended`.
    bill: Option<SessionBill>,
    /// What else happened (server errors, reconnects, closure).
    notes: Vec<String>,
}

/// Feeds relayed signals to `call` until the session ends, the client
/// closes, or `until`. After a failed resume (a restarted server) the
/// client rejoins the room by itself and the call renegotiates
/// ([`SessionCall::handle_event`]); both are noted in the report.
async fn pump(mut events: Events, call: Arc<SessionCall>, until: Instant) -> PumpEnd {
    let mut end = PumpEnd::default();
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Err(_) => {
                end.notes.push("event pump reached the call deadline".into());
                return end;
            }
            Ok(None) => return end,
            Ok(Some(event @ Event::Server(_))) => {
                if call.handle_event(&event).await {
                    continue;
                }
                let Event::Server(msg) = event else { continue };
                match msg {
                    ServerMessage::SessionEnded { session_id, reason, bill, .. }
                        if session_id == *call.session_id() =>
                    {
                        end.ended = Some(reason);
                        end.bill = bill;
                        return end;
                    }
                    ServerMessage::Error { code, message, .. } => {
                        end.notes.push(format!("server error {}: {message}", code.as_str()))
                    }
                    _ => {}
                }
            }
            Ok(Some(Event::Closed { reason })) => {
                end.notes.push(format!("signaling closed: {reason}"));
                return end;
            }
            Ok(Some(Event::Reconnecting)) => end.notes.push("signaling connection dropped; reconnecting".into()),
            Ok(Some(Event::ResumeFailed { reason })) => end.notes.push(format!("resume failed: {reason}")),
            Ok(Some(event @ Event::Resumed { .. })) => {
                call.handle_event(&event).await;
            }
            Ok(Some(event @ Event::Rejoined { .. })) => {
                end.notes.push("resume impossible; rejoined the session".into());
                call.handle_event(&event).await;
            }
            Ok(Some(Event::RejoinFailed { error, .. })) => end.notes.push(format!("could not rejoin: {error}")),
        }
    }
}

/// A side of a call once its peer connection is connected.
struct Side {
    call: Arc<SessionCall>,
    pump: Task<PumpEnd>,
    session_id: SessionId,
    /// From `call.request` sent until the peer connection started.
    started_after: Duration,
    /// From `call.request` sent until connected.
    connected_after: Duration,
}

fn call_config() -> CallConfig {
    CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() }
}

/// The seeker: call, wait for the accept, join, wait for the consultant in
/// the room, start the call (offer), wait until connected.
async fn seeker_side(
    client: &SignalingClient,
    mut events: Events,
    consultant: &UserId,
    t0: Instant,
    until: Instant,
) -> anyhow::Result<Side> {
    let ringing = client.call(consultant, Some(crate::PAYMENT_METHOD)).await.context("seeker: call.request")?;
    let session_id = ringing.session_id;
    let answered = events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => Some(Ok(())),
            ServerMessage::CallEnded { call_id, reason, .. } if *call_id == ringing.call_id => Some(Err(*reason)),
            _ => None,
        })
        .await
        .context("seeker: waiting for call.accepted")?;
    if let Err(reason) = answered {
        bail!("seeker: the call ended unanswered ({})", reason.as_str());
    }
    let room = client.join(&session_id).await.context("seeker: room.join")?;
    ensure!(room.offerer, "seeker: room.join says the seeker does not offer");
    if room.participants.is_empty() {
        events
            .wait_for(STEP_TIMEOUT, |m| match m {
                ServerMessage::ParticipantJoined { session_id: s, .. } if *s == session_id => Some(()),
                _ => None,
            })
            .await
            .context("seeker: waiting for the consultant in the room")?;
    }
    let call = Arc::new(SessionCall::start(client, &room, call_config()).await.context("seeker: starting the call")?);
    let started_after = t0.elapsed();
    let pump = Task::spawn(pump(events, call.clone(), until));
    call.call.wait_connected(CONNECT_TIMEOUT).await.context("seeker: peer connection")?;
    Ok(Side { call, pump, session_id, started_after, connected_after: t0.elapsed() })
}

/// The consultant: accept the incoming call, join, start the call (answer),
/// wait until connected.
async fn consultant_side(
    client: &SignalingClient,
    mut events: Events,
    seeker: &UserId,
    t0: Instant,
    until: Instant,
) -> anyhow::Result<Side> {
    let (call_id, session_id) = events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallIncoming { call_id, session_id, seeker: s, .. } if s.id == *seeker => {
                Some((call_id.clone(), session_id.clone()))
            }
            _ => None,
        })
        .await
        .context("consultant: waiting for call.incoming")?;
    client.accept(&call_id).await.context("consultant: call.accept")?;
    let room = client.join(&session_id).await.context("consultant: room.join")?;
    ensure!(!room.offerer, "consultant: room.join says the consultant offers");
    let call =
        Arc::new(SessionCall::start(client, &room, call_config()).await.context("consultant: starting the call")?);
    let started_after = t0.elapsed();
    let pump = Task::spawn(pump(events, call.clone(), until));
    call.call.wait_connected(CONNECT_TIMEOUT).await.context("consultant: peer connection")?;
    Ok(Side { call, pump, session_id, started_after, connected_after: t0.elapsed() })
}

/// The session once its settlement is carried out (or after 10 s, as is).
async fn settled(api: &ApiClient, token: &str, session_id: &SessionId) -> anyhow::Result<SessionDetails> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let d = api.session(token, session_id).await?;
        if matches!(d.settlement_status.as_deref(), Some("done" | "failed")) || Instant::now() >= deadline {
            return Ok(d);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Echoes every data-channel message back until the channel closes or `until`.
async fn echo(call: Arc<SessionCall>, until: Instant) {
    if call.call.wait_data_channel_open(DATA_CHANNEL_TIMEOUT).await.is_err() {
        return;
    }
    while let Ok(Some(data)) = tokio::time::timeout_at(until, call.call.recv_data()).await {
        if call.call.send_data(&data).await.is_err() {
            return;
        }
    }
}

/// Closes a client when dropped (it would close anyway once every clone
/// is gone; this makes it immediate on every exit path).
pub(crate) struct CloseOnDrop(pub(crate) SignalingClient);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Runs one call, filling `rec` as it goes.
async fn drive(
    tokens: &TokenSource,
    target: &Target,
    price_minor: i64,
    duration: Duration,
    rec: &mut CallRecord,
) -> anyhow::Result<()> {
    let ws_url = target.ws_url.as_str();
    let until = Instant::now() + duration + CALL_OVERHEAD;
    rec.stage = "tokens";
    let consultant_user = User::new(rec.consultant.clone(), Role::Consultant);
    let seeker_user = User::new(rec.seeker.clone(), Role::Seeker);
    let consultant_token = tokens.token(&consultant_user).await?;
    let seeker_token = tokens.token(&seeker_user).await?;

    let api = ApiClient::new(&target.base)?;
    if price_minor > 0 {
        rec.stage = "price";
        let amount = Money::new(price_minor, Currency::parse("EUR").expect("valid"));
        api.set_price(&consultant_token, &ConsultantPrice { model: PriceModel::Fixed, amount })
            .await
            .context("consultant: setting the price")?;
    }

    rec.stage = "connect";
    let (consultant, c_events) =
        tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(ws_url, &consultant_token))
            .await
            .context("consultant: connect timed out")?
            .context("consultant: connect")?;
    let _consultant_guard = CloseOnDrop(consultant.clone());
    consultant.set_available(true).await.context("consultant: presence.set")?;
    let (seeker, s_events) = tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(ws_url, &seeker_token))
        .await
        .context("seeker: connect timed out")?
        .context("seeker: connect")?;
    let _seeker_guard = CloseOnDrop(seeker.clone());

    rec.stage = "setup";
    let consultant_id = consultant.user().id.clone();
    let seeker_id = seeker.user().id.clone();
    let t0 = Instant::now();
    let (mut s, mut c) = tokio::try_join!(
        seeker_side(&seeker, s_events, &consultant_id, t0, until),
        consultant_side(&consultant, c_events, &seeker_id, t0, until),
    )?;
    rec.session_id = Some(s.session_id.to_string());
    rec.setup_ms = Some(ms(s.connected_after));
    rec.signaling_ms = Some(ms(s.started_after));
    rec.connected = true;
    let echo_task = Task::spawn(echo(c.call.clone(), until));

    rec.stage = "audio";
    s.call.call.wait_data_channel_open(DATA_CHANNEL_TIMEOUT).await.context("seeker: data channel")?;
    tokio::time::sleep(duration).await;

    rec.stage = "datachannel";
    for k in 0..RTT_SAMPLES {
        let payload = format!("parley-load rtt {k} {}", now_ns());
        let sent = Instant::now();
        s.call.call.send_data(payload.as_bytes()).await.context("seeker: send_data")?;
        let echoed = tokio::time::timeout(ECHO_TIMEOUT, s.call.call.recv_data())
            .await
            .with_context(|| format!("no echo within {ECHO_TIMEOUT:?}"))?
            .context("the data channel closed")?;
        ensure!(echoed == payload.as_bytes(), "the echo differs from what was sent");
        rec.datachannel_rtt_ms.push(ms(sent.elapsed()));
    }
    let (s_rx, c_rx) = (s.call.call.audio_packets_received(), c.call.call.audio_packets_received());
    rec.audio_packets_received = s_rx + c_rx;
    rec.audio_packets_sent = s.call.call.audio_packets_sent() + c.call.call.audio_packets_sent();

    rec.stage = "hangup";
    drop(echo_task);
    seeker.end_session(&s.session_id).await.context("seeker: session.end")?;
    let s_end = s.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    let c_end = c.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    rec.warnings.extend(s_end.notes.iter().map(|n| format!("seeker: {n}")));
    rec.warnings.extend(c_end.notes.iter().map(|n| format!("consultant: {n}")));
    rec.session_ended = s_end.ended.is_some() && c_end.ended.is_some();
    if let Some(bill) = s_end.bill {
        rec.outcome = Some(bill.outcome.as_str());
        rec.billable_seconds = Some(bill.billable_secs);
        rec.stage = "settlement";
        let settled = settled(&api, &seeker_token, &s.session_id).await.context("seeker: GET /v1/sessions")?;
        rec.captured_minor = Some(settled.captured.map_or(0, |m| m.amount_minor));
        rec.fee_minor = Some(settled.fee.map_or(0, |m| m.amount_minor));
    }

    rec.stage = "close";
    for (who, side) in [("seeker", &s), ("consultant", &c)] {
        if let Err(e) = side.call.close().await {
            rec.warnings.push(format!("{who}: closing the call: {e}"));
        }
    }
    seeker.close();
    consultant.close();

    rec.stage = "checks";
    if s_rx == 0 || c_rx == 0 {
        bail!("no audio received (seeker {s_rx} packets, consultant {c_rx})");
    }
    if !rec.session_ended {
        bail!(
            "session.ended not seen by {}",
            match (s_end.ended.is_some(), c_end.ended.is_some()) {
                (false, false) => "either side",
                (false, true) => "the seeker",
                _ => "the consultant",
            }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
