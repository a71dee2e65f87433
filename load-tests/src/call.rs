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

/// How one call went. Serialised in the report's `per_call` array; figures
/// not always known are `Option` (`null` in the JSON).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CallRecord {
    /// Index of the call in this run (0-based).
    pub id: usize,
    /// The synthetic seeker.
    pub seeker: String,
    /// The synthetic consultant.
    pub consultant: String,
    /// The session the call opened.
    pub session_id: Option<String>,
    /// Whether both peer connections reached `connected`.
    pub connected: bool,
    /// From `call.request` sent to the seeker's peer connection connected.
    pub setup_ms: Option<f64>,
    /// The signaling part of `setup_ms`: from `call.request` sent until the
    /// seeker, in the room with the consultant, starts its peer connection
    /// (sends the offer). The rest is offer/answer relay, ICE and DTLS.
    pub signaling_ms: Option<f64>,
    /// Opus RTP packets received, both sides together.
    pub audio_packets_received: u64,
    /// Opus RTP packets sent, both sides together.
    pub audio_packets_sent: u64,
    /// Data-channel round trips (seeker → consultant → seeker), ms.
    pub datachannel_rtt_ms: Vec<f64>,
    /// Whether both sides saw `session.ended` after the hang-up.
    pub session_ended: bool,
    /// The meter's outcome from `session.ended`: `free` or `charged`.
    pub outcome: Option<&'static str>,
    /// Billable seconds from `session.ended` (both present, DESIGN.md M5).
    pub billable_seconds: Option<u64>,
    /// Captured from the seeker once settled, minor units (0 when free).
    pub captured_minor: Option<i64>,
    /// The platform's commission of the capture, minor units.
    pub fee_minor: Option<i64>,
    /// Why the call failed (`stage: error`); `None` if it succeeded.
    pub error: Option<String>,
    /// Non-fatal problems (server errors seen, unclean close).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The step under way, named in `error`.
    #[serde(skip)]
    stage: &'static str,
}

impl CallRecord {
    /// A record for call `id` of run `run`, not yet started.
    pub fn new(id: usize, run: &str) -> CallRecord {
        CallRecord {
            id,
            seeker: format!("load-s-{run}-{id}"),
            consultant: format!("load-c-{run}-{id}"),
            stage: "start",
            ..CallRecord::default()
        }
    }
}

/// The result of a `call` run; serialised as the last line of stdout.
#[derive(Debug, Clone, Serialize)]
pub struct CallReport {
    /// Calls run.
    pub calls: usize,
    /// Calls whose peer connections both connected.
    pub connected: usize,
    /// Calls with an error.
    pub failed: usize,
    /// Audio duration asked for, seconds.
    pub duration_secs: f64,
    /// How tokens were obtained.
    pub token_source: String,
    /// Set-up time, median (ms).
    pub setup_ms_p50: Option<f64>,
    /// Set-up time, 99th percentile (ms).
    pub setup_ms_p99: Option<f64>,
    /// Set-up time, slowest (ms).
    pub setup_ms_max: Option<f64>,
    /// The signaling part of set-up (see [`CallRecord::signaling_ms`]), median.
    pub signaling_ms_p50: Option<f64>,
    /// The signaling part of set-up, 99th percentile.
    pub signaling_ms_p99: Option<f64>,
    /// Opus packets received, every call and side.
    pub audio_packets_received: u64,
    /// Opus packets sent, every call and side.
    pub audio_packets_sent: u64,
    /// Data-channel round trips timed.
    pub datachannel_rtt_samples: u64,
    /// Data-channel round trip, median (ms).
    pub datachannel_rtt_ms_p50: Option<f64>,
    /// Data-channel round trip, 99th percentile (ms).
    pub datachannel_rtt_ms_p99: Option<f64>,
    /// One entry per call, by id.
    pub per_call: Vec<CallRecord>,
}

impl CallReport {
    /// Builds the report from the per-call records.
    pub fn from_records(mut per_call: Vec<CallRecord>, duration: Duration, token_source: String) -> CallReport {
        per_call.sort_by_key(|r| r.id);
        let mut setup = Latencies::new();
        let mut signaling = Latencies::new();
        let mut rtt = Latencies::new();
        for r in &per_call {
            if let Some(ms) = r.setup_ms {
                setup.record(Duration::from_secs_f64(ms / 1000.0));
            }
            if let Some(ms) = r.signaling_ms {
                signaling.record(Duration::from_secs_f64(ms / 1000.0));
            }
            for ms in &r.datachannel_rtt_ms {
                rtt.record(Duration::from_secs_f64(ms / 1000.0));
            }
        }
        CallReport {
            calls: per_call.len(),
            connected: per_call.iter().filter(|r| r.connected).count(),
            failed: per_call.iter().filter(|r| r.error.is_some()).count(),
            duration_secs: duration.as_secs_f64(),
            token_source,
            setup_ms_p50: setup.quantile_ms(0.5),
            setup_ms_p99: setup.quantile_ms(0.99),
            setup_ms_max: setup.quantile_ms(1.0),
            signaling_ms_p50: signaling.quantile_ms(0.5),
            signaling_ms_p99: signaling.quantile_ms(0.99),
            audio_packets_received: per_call.iter().map(|r| r.audio_packets_received).sum(),
            audio_packets_sent: per_call.iter().map(|r| r.audio_packets_sent).sum(),
            datachannel_rtt_samples: rtt.count(),
            datachannel_rtt_ms_p50: rtt.quantile_ms(0.5),
            datachannel_rtt_ms_p99: rtt.quantile_ms(0.99),
            per_call,
        }
    }

    /// Whether every call succeeded.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }

    /// The readable summary: one line per call, then the totals.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut out = vec![
            format!(
                "call: {} calls, {:.1} s of audio each, tokens {}",
                self.calls, self.duration_secs, self.token_source
            ),
            format!(
                "{:>4}  {:<9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}  {:<5}  error",
                "call", "connected", "setup_ms", "signal_ms", "audio_rx", "audio_tx", "rtt_p50_ms", "ended"
            ),
        ];
        for r in &self.per_call {
            let mut rtt = Latencies::new();
            for ms in &r.datachannel_rtt_ms {
                rtt.record(Duration::from_secs_f64(ms / 1000.0));
            }
            out.push(format!(
                "{:>4}  {:<9}  {:>9}  {:>9}  {:>8}  {:>8}  {:>10}  {:<5}  {}",
                r.id,
                if r.connected { "yes" } else { "no" },
                opt(r.setup_ms),
                opt(r.signaling_ms),
                r.audio_packets_received,
                r.audio_packets_sent,
                opt(rtt.quantile_ms(0.5)),
                if r.session_ended { "yes" } else { "no" },
                r.error.as_deref().unwrap_or("-")
            ));
            if let Some(outcome) = r.outcome {
                out.push(format!(
                    "      money: {outcome}, {} s billable, captured {} cents, fee {} cents",
                    int(r.billable_seconds),
                    int(r.captured_minor),
                    int(r.fee_minor)
                ));
            }
            for w in &r.warnings {
                out.push(format!("      warning: {w}"));
            }
        }
        out.push(format!("calls     {} connected, {} failed of {}", self.connected, self.failed, self.calls));
        out.push(format!(
            "setup     p50={} p99={} max={} ms (signaling part: p50={} p99={} ms)",
            opt(self.setup_ms_p50),
            opt(self.setup_ms_p99),
            opt(self.setup_ms_max),
            opt(self.signaling_ms_p50),
            opt(self.signaling_ms_p99)
        ));
        out.push(format!(
            "audio     {} packets received, {} sent",
            self.audio_packets_received, self.audio_packets_sent
        ));
        out.push(format!(
            "dc rtt    p50={} p99={} ms over {} round trips",
            opt(self.datachannel_rtt_ms_p50),
            opt(self.datachannel_rtt_ms_p99),
            self.datachannel_rtt_samples
        ));
        out
    }
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
/// closes, or `until`.
async fn pump(mut events: Events, call: Arc<SessionCall>, until: Instant) -> PumpEnd {
    let mut end = PumpEnd::default();
    loop {
        match tokio::time::timeout_at(until, events.recv()).await {
            Err(_) => {
                end.notes.push("event pump reached the call deadline".into());
                return end;
            }
            Ok(None) => return end,
            Ok(Some(Event::Server(msg))) => {
                if call.handle(&msg) {
                    continue;
                }
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
            Ok(Some(Event::Resumed { .. })) => {}
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

fn int(x: Option<impl std::fmt::Display>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| x.to_string())
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
mod tests {
    use super::*;

    fn record(id: usize, setup_ms: Option<f64>, error: Option<&str>) -> CallRecord {
        CallRecord {
            connected: setup_ms.is_some(),
            setup_ms,
            audio_packets_received: 500,
            audio_packets_sent: 510,
            datachannel_rtt_ms: vec![0.5, 0.7, 1.1],
            session_ended: error.is_none(),
            error: error.map(str::to_owned),
            ..CallRecord::new(id, "run1")
        }
    }

    #[test]
    fn the_report_aggregates_calls_and_ends_in_one_json_line() {
        let report = CallReport::from_records(
            vec![record(1, Some(120.0), None), record(0, Some(80.0), None), record(2, None, Some("setup: boom"))],
            Duration::from_secs(5),
            "dev login".into(),
        );
        assert_eq!((report.calls, report.connected, report.failed), (3, 2, 1));
        assert!(!report.ok());
        assert_eq!(report.per_call.iter().map(|r| r.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(report.audio_packets_received, 1500);
        assert_eq!(report.datachannel_rtt_samples, 9);
        assert!((report.setup_ms_p50.unwrap() - 80.0).abs() < 0.1);
        assert!((report.setup_ms_p99.unwrap() - 120.0).abs() < 0.2);

        let line = crate::report::json_line(&report);
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        for key in [
            "calls",
            "connected",
            "failed",
            "setup_ms_p50",
            "setup_ms_p99",
            "audio_packets_received",
            "datachannel_rtt_ms_p50",
            "per_call",
        ] {
            assert!(v.get(key).is_some(), "missing {key}: {line}");
        }
        let first = &v["per_call"][0];
        for key in ["id", "connected", "setup_ms", "audio_packets_received", "error"] {
            assert!(first.get(key).is_some(), "per_call lacks {key}: {first}");
        }
        assert_eq!(first["seeker"], "load-s-run1-0");
        assert!(first["error"].is_null());
        assert!(first.get("stage").is_none());
        assert_eq!(v["per_call"][2]["error"], "setup: boom");
        assert!(v["per_call"][2]["setup_ms"].is_null());
    }

    #[test]
    fn the_summary_has_a_line_per_call() {
        let report =
            CallReport::from_records(vec![record(0, Some(80.0), None)], Duration::from_secs(5), "dev login".into());
        let lines = report.summary_lines();
        assert!(lines.iter().any(|l| l.trim_start().starts_with("0  yes")), "{lines:#?}");
        assert!(lines.iter().any(|l| l.starts_with("setup     p50=80.0")), "{lines:#?}");
        assert!(report.ok());
    }

    #[test]
    fn an_empty_run_has_null_percentiles() {
        let report = CallReport::from_records(vec![], Duration::from_secs(1), "dev login".into());
        let v: serde_json::Value = serde_json::from_str(&crate::report::json_line(&report)).unwrap();
        assert!(v["setup_ms_p50"].is_null());
        assert_eq!(v["per_call"].as_array().unwrap().len(), 0);
    }
}
