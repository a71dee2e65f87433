//! One seeker/consultant pair: set-up (presence, call, room, then, unless
//! paired only, SDP and trickled candidates), the relay ping-pong, and the
//! hang-up.

use super::*;

/// The session a pair set up, with both sides.
struct Call {
    seeker: Peer,
    consultant: Peer,
    session_id: SessionId,
    seeker_ice: IceCredentials,
    consultant_ice: IceCredentials,
    rng: Rng,
}

/// Parley's tokens for the run (`run`: its id): one per idle connection
/// (`load-i-<run>-<i>`), two per pair (seeker `load-s-…`, consultant
/// `load-c-…`, in that order), and with `--price-minor` every consultant's
/// price set. Returns (idle tokens, pair tokens).
pub(super) async fn prepare(
    opts: &SignalOptions,
    tokens: &TokenSource,
    run: &str,
) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let idle_users: Vec<User> =
        (0..opts.clients).map(|i| User::new(format!("load-i-{run}-{i}"), Role::Seeker)).collect();
    let pair_users: Vec<User> = (0..opts.pairs)
        .flat_map(|i| {
            [
                User::new(format!("load-s-{run}-{i}"), Role::Seeker),
                User::new(format!("load-c-{run}-{i}"), Role::Consultant),
            ]
        })
        .collect();
    eprintln!("parley-load: preparing {} tokens ({})", idle_users.len() + pair_users.len(), tokens.describe());
    let idle_tokens = tokens.tokens(&idle_users).await?;
    let pair_tokens = tokens.tokens(&pair_users).await?;
    if opts.price_minor > 0 {
        set_prices(&opts.target, &pair_tokens, opts.price_minor).await?;
    }
    Ok((idle_tokens, pair_tokens))
}

/// Sets every pair's consultant's fixed price (REST, 32 at a time), so
/// each call places a hold.
async fn set_prices(target: &Target, pair_tokens: &[String], price_minor: i64) -> anyhow::Result<()> {
    use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
    let api = parley_sdk::ApiClient::new(&target.base)?;
    let price = ConsultantPrice {
        model: PriceModel::Fixed,
        amount: parley_domain::Money::new(price_minor, parley_domain::Currency::parse("EUR").expect("valid")),
    };
    eprintln!("parley-load: setting {} consultants' price to {price_minor} EUR cents", pair_tokens.len() / 2);
    let consultants = pair_tokens.chunks_exact(2).map(|pair| &pair[1]);
    let mut set =
        futures_util::stream::iter(consultants).map(|token| api.set_price(token, &price)).buffer_unordered(32);
    while let Some(done) = set.next().await {
        anyhow::Context::context(done, "setting a consultant's price")?;
    }
    Ok(())
}

/// One pair, start to end: set-up (reported on `setup_tx`), the relay phase
/// once `go` is given, hang-up and close.
pub(super) async fn pair(
    i: u64,
    ctx: Arc<PairCtx>,
    seeker: String,
    consultant: String,
    mut line: StartLine,
    setup_tx: mpsc::UnboundedSender<bool>,
) -> PairResult {
    let mut result = PairResult::default();
    let mut stage = "connect";
    // A little longer than the steps' own deadline, so that they name what timed out.
    let set_up = set_up(i, &ctx, &seeker, &consultant, &mut line, &mut stage);
    let set_up = tokio::time::timeout(SETUP_TIMEOUT + Duration::from_secs(2), set_up).await;
    match settle(set_up, stage, &mut result, &setup_tx) {
        Some(call) => relay_phase(call, &ctx, result).await,
        None => result,
    }
}

/// The two sides of a call once set up, whatever the protocol: what the
/// relay phase and the hang-up need.
pub(super) trait Sides: Send + Sized {
    /// One relay hop: the window's candidates numbered up to `last`, from
    /// the seeker to the consultant (`forward`) or back.
    fn hop(&mut self, forward: bool, last: u64, ctx: &PairCtx) -> impl Future<Output = Hop> + Send;

    /// Hangs up and closes both connections, adding what they saw to `result`.
    fn finish(self, result: PairResult) -> impl Future<Output = PairResult> + Send;
}

impl Sides for Call {
    fn hop(&mut self, forward: bool, last: u64, ctx: &PairCtx) -> impl Future<Output = Hop> + Send {
        hop(self, forward, last, ctx)
    }

    fn finish(self, result: PairResult) -> impl Future<Output = PairResult> + Send {
        finish(self, result)
    }
}

/// Books a set-up's outcome (run with a timeout; `stage` names the step it
/// reached): reports it on `setup_tx`, counts and keeps a failure in
/// `result`, and returns the call if it was set up.
pub(super) fn settle<C>(
    set_up: Result<anyhow::Result<C>, tokio::time::error::Elapsed>,
    stage: &str,
    result: &mut PairResult,
    setup_tx: &mpsc::UnboundedSender<bool>,
) -> Option<C> {
    match set_up {
        Ok(Ok(call)) => {
            result.set_up = true;
            let _ = setup_tx.send(true);
            Some(call)
        }
        Ok(Err(e)) => {
            bump(&mut result.client_errors, &format!("setup_{}", stage.replace([' ', '/', '.'], "_")));
            result.failure = Some((stage.to_owned(), format!("{e:#}")));
            let _ = setup_tx.send(false);
            None
        }
        Err(_) => {
            bump(&mut result.client_errors, &format!("setup_{}_timeout", stage.replace([' ', '/', '.'], "_")));
            result.failure = Some((stage.to_owned(), format!("timed out after {SETUP_TIMEOUT:?}")));
            let _ = setup_tx.send(false);
            None
        }
    }
}

/// Phase 3 for a call set up: waits for the common start, ping-pongs
/// until the relay phase ends, then hangs up.
pub(super) async fn relay_phase<C: Sides>(mut call: C, ctx: &PairCtx, mut result: PairResult) -> PairResult {
    let mut go = ctx.go.clone();
    let go_at = match tokio::time::timeout_at(ctx.deadline, go.wait_for(Option::is_some)).await {
        Ok(Ok(at)) => *at,
        _ => None,
    };
    let Some(go_at) = go_at else {
        bump(&mut result.client_errors, "relay_never_started");
        return call.finish(result).await;
    };
    let relay_until = go_at + ctx.relay;
    let window = ctx.relay_window.max(1) as u64;
    let mut seq = 1_000;
    while Instant::now() < relay_until {
        seq += window;
        match call.hop(true, seq, ctx).await {
            Hop::Done => result.hops += window,
            Hop::Lost => {
                result.lost += 1;
                continue;
            }
            Hop::Broken(e) => {
                bump(&mut result.client_errors, "relay_connection_lost");
                result.relay_error = Some(e);
                break;
            }
        }
        match call.hop(false, seq, ctx).await {
            Hop::Done => result.hops += window,
            Hop::Lost => result.lost += 1,
            Hop::Broken(e) => {
                bump(&mut result.client_errors, "relay_connection_lost");
                result.relay_error = Some(e);
                break;
            }
        }
    }
    result.relay_finished = Some(Instant::now());
    call.finish(result).await
}

/// Sets up one pair: connect, presence, the start `line`, call, accept,
/// join, then (with [`PairSetup::Full`]) offer/answer and candidates.
/// Records the set-up time: `call.request` sent → the answer received, or
/// with [`PairSetup::PairedOnly`] → the seeker's `room.join` ack received.
/// `stage` names the step under way.
async fn set_up(
    i: u64,
    ctx: &PairCtx,
    seeker_token: &str,
    consultant_token: &str,
    line: &mut StartLine,
    stage: &mut &'static str,
) -> anyhow::Result<Call> {
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let (mut call, requested_ns, joined_ns) =
        pair_up(i, ctx, seeker_token, consultant_token, line, deadline, stage).await?;
    if ctx.setup == PairSetup::PairedOnly {
        record(&ctx.shared.setup, since(requested_ns, joined_ns));
        return Ok(call);
    }
    let answered_ns = offer_answer(&mut call, deadline, ctx, stage).await?;
    record(&ctx.shared.setup, since(requested_ns, answered_ns));
    trickle(&mut call, deadline, ctx, stage).await?;
    Ok(call)
}

/// Pairs one pair into a call by `deadline`: connect, presence, the start
/// `line`, call, accept, both joins. Returns the call with when
/// `call.request` was sent and when the seeker's `room.join` ack arrived
/// (ns, [`now_ns`]'s clock).
async fn pair_up(
    i: u64,
    ctx: &PairCtx,
    seeker_token: &str,
    consultant_token: &str,
    line: &mut StartLine,
    deadline: Instant,
    stage: &mut &'static str,
) -> anyhow::Result<(Call, u64, u64)> {
    let open = |token: &str| {
        let (url, token, stop) = (ctx.ws_url.clone(), token.to_owned(), ctx.stop.clone());
        async move { Peer::open(&url, &token, CONNECT_TIMEOUT, stop, ctx.deadline).await }
    };
    *stage = "connect";
    let mut consultant = open(consultant_token).await?;
    let mut seeker = open(seeker_token).await?;

    *stage = "presence";
    consultant.send(Some("presence"), ClientMessage::PresenceSet { status: PresenceStatus::Available }).await?;
    consultant.ack("presence", deadline, "presence.set ack").await?;

    *stage = "start line";
    line.line_up().await;

    *stage = "call.request";
    let requested_ns = now_ns();
    let request = ClientMessage::CallRequest {
        consultant_id: consultant.user.id.clone(),
        payment_method: Some(crate::PAYMENT_METHOD.to_owned()),
        record: false,
    };
    seeker.send(Some("call"), request).await?;
    let seeker_id = seeker.user.id.clone();
    let incoming = consultant
        .recv_until(deadline, "call.incoming", None, |m| match &m.msg {
            ServerMessage::CallIncoming { call_id, session_id, seeker, .. } if seeker.id == seeker_id => {
                Some((call_id.clone(), session_id.clone()))
            }
            _ => None,
        })
        .await;
    let (call_id, session_id) = match incoming {
        Ok(x) => x,
        Err(e) => match seeker.pending_error("call") {
            Some(refusal) => anyhow::bail!("call.request refused: {refusal}"),
            None => return Err(e),
        },
    };

    *stage = "call.accept";
    consultant.send(Some("accept"), ClientMessage::CallAccept { call_id }).await?;
    consultant.send(Some("join"), ClientMessage::RoomJoin { session_id: session_id.clone() }).await?;
    consultant.ack("accept", deadline, "call.accept ack").await?;
    *stage = "consultant room.join";
    match consultant.ack("join", deadline, "room.join ack").await? {
        Some(AckResult::Room { offerer: false, .. }) => {}
        other => anyhow::bail!("consultant room.join answered with {other:?}"),
    }

    *stage = "seeker room.join";
    let (mut acked, mut accepted) = (false, false);
    seeker
        .recv_until(deadline, "call.request ack and call.accepted", Some("call"), |m| {
            match &m.msg {
                ServerMessage::Ack { id, .. } if id == "call" => acked = true,
                ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => accepted = true,
                _ => {}
            }
            (acked && accepted).then_some(())
        })
        .await?;
    seeker.send(Some("join"), ClientMessage::RoomJoin { session_id: session_id.clone() }).await?;
    let (joined, joined_ns) = seeker.ack_at("join", deadline, "room.join ack").await?;
    match joined {
        Some(AckResult::Room { offerer: true, participants, .. }) if !participants.is_empty() => {}
        other => anyhow::bail!("seeker room.join answered with {other:?}"),
    }

    let mut rng = Rng::new(i.wrapping_mul(0x9E37_79B9) ^ now_ns());
    let seeker_ice = IceCredentials::new(&mut rng);
    let consultant_ice = IceCredentials::new(&mut rng);
    Ok((Call { seeker, consultant, session_id, seeker_ice, consultant_ice, rng }, requested_ns, joined_ns))
}

/// The seeker's ~3.5 KB offer and the consultant's answer, relayed by
/// `deadline` (recording both in `sdp_relay`). Returns when the answer
/// arrived (ns, [`now_ns`]'s clock).
async fn offer_answer(
    call: &mut Call,
    deadline: Instant,
    ctx: &PairCtx,
    stage: &mut &'static str,
) -> anyhow::Result<u64> {
    *stage = "sdp";
    let Call { seeker, consultant, session_id, seeker_ice, consultant_ice, rng } = call;
    let offer = sdp::description(Kind::Offer, rng, seeker_ice, now_ns());
    seeker.send(None, ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: offer, to: None }).await?;
    let latency = consultant
        .recv_until(deadline, "sdp.offer", None, |m| match &m.msg {
            ServerMessage::SdpOffer { sdp, .. } => sdp::sdp_ts(sdp).map(|ts| since(ts, m.at_ns)),
            _ => None,
        })
        .await?;
    record(&ctx.shared.sdp_relay, latency);
    let answer = sdp::description(Kind::Answer, rng, consultant_ice, now_ns());
    consultant.send(None, ClientMessage::SdpAnswer { session_id: session_id.clone(), sdp: answer, to: None }).await?;
    let (latency, at_ns) = seeker
        .recv_until(deadline, "sdp.answer", None, |m| match &m.msg {
            ServerMessage::SdpAnswer { sdp, .. } => sdp::sdp_ts(sdp).map(|ts| (since(ts, m.at_ns), m.at_ns)),
            _ => None,
        })
        .await?;
    record(&ctx.shared.sdp_relay, latency);
    Ok(at_ns)
}

/// A call's two sides during set-up's candidates, whatever the protocol:
/// what [`trickle`] needs.
pub(super) trait Trickle: Send {
    /// Sends candidate `seq` of each side (stamped now) to the other:
    /// written at once, or with `queue` only queued until
    /// [`Trickle::flush`].
    fn send_candidates(&mut self, seq: u64, queue: bool) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Writes what [`Trickle::send_candidates`] queued, on both sides.
    fn flush(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Receives one round of candidates ([`CANDIDATES_PER_ROUND`]) on each
    /// side, recording their latencies in `into`.
    fn collect_candidates(
        &mut self,
        deadline: Instant,
        into: &Mutex<Latencies>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// The candidates of set-up, the same for every protocol: 10 each way
/// paced one per 10 ms, all received (`paced_relay`); then 10 each way sent
/// at once, all received (`burst_relay`). `stage` names the step under way.
pub(super) async fn trickle<C: Trickle>(
    call: &mut C,
    deadline: Instant,
    ctx: &PairCtx,
    stage: &mut &'static str,
) -> anyhow::Result<()> {
    *stage = "candidates paced";
    for seq in 0..CANDIDATES_PER_ROUND {
        call.send_candidates(seq, false).await?;
        tokio::time::sleep(PACE).await;
    }
    call.collect_candidates(deadline, &ctx.shared.paced_relay).await?;
    *stage = "candidates burst";
    for seq in CANDIDATES_PER_ROUND..2 * CANDIDATES_PER_ROUND {
        call.send_candidates(seq, true).await?;
    }
    call.flush().await?;
    call.collect_candidates(deadline, &ctx.shared.burst_relay).await
}

impl Trickle for Call {
    async fn send_candidates(&mut self, seq: u64, queue: bool) -> anyhow::Result<()> {
        let s = sdp::candidate(&mut self.rng, &self.seeker_ice, seq, now_ns());
        let c = sdp::candidate(&mut self.rng, &self.consultant_ice, seq, now_ns());
        let s = ClientMessage::IceCandidate { session_id: self.session_id.clone(), candidate: s, to: None };
        let c = ClientMessage::IceCandidate { session_id: self.session_id.clone(), candidate: c, to: None };
        if queue {
            self.seeker.feed(s).await?;
            self.consultant.feed(c).await
        } else {
            self.seeker.send(None, s).await?;
            self.consultant.send(None, c).await
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.seeker.flush().await?;
        self.consultant.flush().await
    }

    async fn collect_candidates(&mut self, deadline: Instant, into: &Mutex<Latencies>) -> anyhow::Result<()> {
        for peer in [&mut self.consultant, &mut self.seeker] {
            for _ in 0..CANDIDATES_PER_ROUND {
                let latency = peer.recv_until(deadline, "ice.candidate", None, candidate_latency).await?;
                record(into, latency);
            }
        }
        Ok(())
    }
}

/// The relay latency of a relayed candidate.
fn candidate_latency(m: &Incoming) -> Option<Duration> {
    match &m.msg {
        ServerMessage::IceCandidate { candidate, .. } => {
            sdp::candidate_ts(&candidate.candidate).map(|ts| since(ts, m.at_ns))
        }
        _ => None,
    }
}

/// How a relay hop went.
pub(super) enum Hop {
    /// Every candidate of the window arrived.
    Done,
    /// Not all within [`HOP_TIMEOUT`].
    Lost,
    /// The connection broke (why).
    Broken(String),
}

/// One relay hop: the relay window's candidates, numbered up to `last`,
/// sent back to back from the seeker to the consultant (`forward`) or back,
/// all received within [`HOP_TIMEOUT`].
async fn hop(call: &mut Call, forward: bool, last: u64, ctx: &PairCtx) -> Hop {
    let window = ctx.relay_window.max(1) as u64;
    let first = last + 1 - window;
    let (from, to) =
        if forward { (&mut call.seeker, &mut call.consultant) } else { (&mut call.consultant, &mut call.seeker) };
    let ice = if forward { &call.seeker_ice } else { &call.consultant_ice };
    for seq in first..=last {
        let candidate = sdp::candidate(&mut call.rng, ice, seq, now_ns());
        let msg = ClientMessage::IceCandidate { session_id: call.session_id.clone(), candidate, to: None };
        if let Err(e) = from.send(None, msg).await {
            return Hop::Broken(format!("{e:#}"));
        }
    }
    let until = Instant::now() + HOP_TIMEOUT;
    let mut missing = window;
    loop {
        match to.recv(until).await {
            Recv::Msg(m) => {
                if let ServerMessage::IceCandidate { candidate, .. } = &m.msg
                    && sdp::candidate_seq(&candidate.candidate).is_some_and(|s| (first..=last).contains(&s))
                    && let Some(latency) = candidate_latency(&m)
                {
                    record(&ctx.shared.relay, latency);
                    missing -= 1;
                    if missing == 0 {
                        return Hop::Done;
                    }
                }
            }
            Recv::Timeout => return Hop::Lost,
            Recv::Closed => return Hop::Broken(format!("{}: connection closed", to.user.id)),
        }
    }
}

/// Hangs up (the seeker ends the session; both should see
/// `session.ended`), closes both connections and collects their counts.
async fn finish(mut call: Call, mut result: PairResult) -> PairResult {
    let until = Instant::now() + TEARDOWN_TIMEOUT;
    let session_id = call.session_id.clone();
    let ended = |m: &Incoming| match &m.msg {
        ServerMessage::SessionEnded { session_id: s, .. } if *s == session_id => Some(()),
        _ => None,
    };
    let hung_up = async {
        call.seeker.send(Some("end"), ClientMessage::SessionEnd { session_id: session_id.clone() }).await?;
        call.seeker.recv_until(until, "session.ended", Some("end"), ended).await?;
        call.consultant.recv_until(until, "session.ended", None, ended).await
    }
    .await;
    if hung_up.is_err() {
        bump(&mut result.client_errors, "teardown");
    }
    for peer in [call.seeker, call.consultant] {
        let end = peer.close(Duration::from_secs(1)).await;
        add_counts(&mut result.errors, &end.errors);
    }
    result
}
