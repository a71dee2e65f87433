//! One recorded session: its two participants connect, call with
//! `record: true`, answer the recorder's offers with send-only uplinks,
//! record until told to hang up, then read the recording back.

use super::*;

/// How a participant's event pump ended.
#[derive(Debug, Default)]
struct PumpEnd {
    ended: Option<SessionEndReason>,
    notes: Vec<String>,
}

/// A participant in the room: its uplink to the recorder, if offered.
struct Participant {
    uplink: watch::Receiver<Option<Arc<Call>>>,
    pump: Task<PumpEnd>,
}

impl Participant {
    /// Starts answering the recorder for `client` in `session_id`.
    fn start(client: &SignalingClient, events: Events, session_id: &SessionId, config: CallConfig) -> Participant {
        let (tx, uplink) = watch::channel(None);
        let pump = Task::spawn(pump(events, client.clone(), session_id.clone(), config, tx));
        Participant { uplink, pump }
    }

    /// Waits for the recorder's offer and the uplink to connect.
    async fn connected(&self, who: &str) -> anyhow::Result<Arc<Call>> {
        let mut uplink = self.uplink.clone();
        let call = tokio::time::timeout(CONNECT_TIMEOUT, uplink.wait_for(Option::is_some))
            .await
            .with_context(|| format!("{who}: no offer from the recorder within {CONNECT_TIMEOUT:?}"))?
            .with_context(|| format!("{who}: the event pump stopped"))?
            .clone()
            .expect("waited for Some");
        call.wait_connected(CONNECT_TIMEOUT).await.with_context(|| format!("{who}: uplink to the recorder"))?;
        Ok(call)
    }

    /// Closes the current uplink; the audio packets it sent.
    async fn close_uplink(&self) -> u64 {
        let call = self.uplink.borrow().clone();
        match call {
            Some(call) => {
                let _ = call.close().await;
                call.audio_packets_sent()
            }
            None => 0,
        }
    }
}

/// Answers the recorder: each offer from it (`recording.started` names it)
/// gets a fresh send-only uplink [`Call`] (replacing the previous one), its
/// candidates go to that call, and the call's signals go back to it with
/// `to`. Ends at `session.ended` or when the connection closes.
async fn pump(
    mut events: Events,
    client: SignalingClient,
    session_id: SessionId,
    config: CallConfig,
    uplink: watch::Sender<Option<Arc<Call>>>,
) -> PumpEnd {
    let mut end = PumpEnd::default();
    let mut recorder: Option<UserId> = None;
    let mut inbound: Option<mpsc::UnboundedSender<Signal>> = None;
    let mut _forward: Option<Task<()>> = None;
    while let Some(event) = events.recv().await {
        let msg = match event {
            Event::Server(msg) => msg,
            Event::Closed { reason } => {
                end.notes.push(format!("signaling closed: {reason}"));
                break;
            }
            Event::Reconnecting => {
                end.notes.push("signaling connection dropped; reconnecting".into());
                continue;
            }
            Event::ResumeFailed { reason } => {
                end.notes.push(format!("resume failed: {reason}"));
                continue;
            }
            Event::Resumed { .. } => continue,
            Event::Rejoined { .. } => {
                end.notes.push("rejoined the room after a failed resume".into());
                continue;
            }
            Event::RejoinFailed { error, .. } => {
                end.notes.push(format!("could not rejoin the room: {error}"));
                continue;
            }
        };
        match msg {
            ServerMessage::RecordingStarted { session_id: s, recorder_id } if s == session_id => {
                recorder = Some(recorder_id);
            }
            ServerMessage::SdpOffer { session_id: s, from, sdp }
                if s == session_id && recorder.as_ref() == Some(&from) =>
            {
                if let Some(old) = uplink.send_replace(None) {
                    end.notes.push("the recorder offered again; uplink replaced".into());
                    tokio::spawn(async move {
                        let _ = old.close().await;
                    });
                }
                let (in_tx, in_rx) = mpsc::unbounded_channel();
                let _ = in_tx.send(Signal::Offer(sdp));
                let (out_tx, mut out_rx) = mpsc::unbounded_channel();
                match Call::start(config.clone(), out_tx, in_rx).await {
                    Ok(call) => {
                        let (client, sid) = (client.clone(), session_id.clone());
                        _forward = Some(Task::spawn(async move {
                            while let Some(signal) = out_rx.recv().await {
                                if client.send(signal_message(sid.clone(), signal, Some(from.clone()))).is_err() {
                                    return;
                                }
                            }
                        }));
                        inbound = Some(in_tx);
                        uplink.send_replace(Some(Arc::new(call)));
                    }
                    Err(e) => end.notes.push(format!("cannot answer the recorder: {e}")),
                }
            }
            ServerMessage::IceCandidate { session_id: s, from, candidate }
                if s == session_id && recorder.as_ref() == Some(&from) =>
            {
                if let Some(tx) = &inbound {
                    let _ = tx.send(Signal::Candidate(candidate));
                }
            }
            ServerMessage::SessionEnded { session_id: s, reason, .. } if s == session_id => {
                end.ended = Some(reason);
                break;
            }
            ServerMessage::Error { code, message, .. } => {
                end.notes.push(format!("server error {}: {message}", code.as_str()))
            }
            _ => {}
        }
    }
    if let Some(call) = uplink.send_replace(None) {
        let _ = call.close().await;
    }
    end
}

/// Connects `user` (seeker or consultant).
async fn connect(ctx: &Ctx, token: &str, who: &str) -> anyhow::Result<(SignalingClient, Events)> {
    tokio::time::timeout(STEP_TIMEOUT, SignalingClient::connect(&ctx.target.ws_url, token))
        .await
        .with_context(|| format!("{who}: connect timed out"))?
        .with_context(|| format!("{who}: connect"))
}

/// Runs one recorded session, filling `rec`; sends `true` on `ready` once
/// both uplinks are connected, then records until the phase is `HangUp`.
pub(super) async fn drive(
    ctx: &Ctx,
    rec: &mut SessionRecord,
    ready: mpsc::UnboundedSender<bool>,
    mut phase: watch::Receiver<Phase>,
) -> anyhow::Result<()> {
    let permit = ctx.setups.acquire().await.context("set-up semaphore closed")?;
    let setup = tokio::time::timeout(SETUP_TIMEOUT, set_up(ctx, rec)).await;
    drop(permit);
    let (seeker, consultant, session_id, s, c, consultant_token) = match setup {
        Ok(r) => r?,
        Err(_) => bail!("set-up timed out after {SETUP_TIMEOUT:?}"),
    };
    let _guards = (CloseOnDrop(seeker.clone()), CloseOnDrop(consultant.clone()));
    rec.live_in_window = *phase.borrow() == Phase::Recording;
    let _ = ready.send(true);

    rec.stage = "recording";
    let _ = phase.wait_for(|p| *p == Phase::HangUp).await;

    rec.stage = "hangup";
    rec.audio_packets_sent = s.close_uplink().await + c.close_uplink().await;
    tokio::time::sleep(DRAIN).await;
    seeker.end_session(&session_id).await.context("seeker: session.end")?;
    let (mut s, mut c) = (s, c);
    let s_end = s.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    let c_end = c.pump.join(HANGUP_TIMEOUT).await.unwrap_or_default();
    rec.warnings.extend(s_end.notes.iter().map(|n| format!("seeker: {n}")));
    rec.warnings.extend(c_end.notes.iter().map(|n| format!("consultant: {n}")));
    if s_end.ended.is_none() || c_end.ended.is_none() {
        rec.warnings.push("session.ended not seen by both sides".into());
    }
    seeker.close();
    consultant.close();

    rec.stage = "stored";
    let list = stored(&ctx.api, &consultant_token, &session_id).await?;
    let manifest = list.recordings.iter().find(|f| f.kind == "manifest").expect("stored() waits for the manifest");
    let bytes = ctx.api.download(&manifest.url).await.context("downloading the manifest")?;
    let manifest: StoredManifest = serde_json::from_slice(&bytes).context("parsing the manifest")?;
    rec.apply_manifest(&manifest, ctx.video, ctx.max_loss_percent);

    rec.stage = "checks";
    if !rec.recorded {
        bail!(
            "the recording is incomplete: {} track files for {} expected",
            rec.tracks_stored,
            if ctx.video { 4 } else { 2 }
        );
    }
    Ok(())
}

/// Tokens, consent, connections, the recorded call, both joins, both
/// uplinks connected.
async fn set_up(ctx: &Ctx, rec: &mut SessionRecord) -> anyhow::Result<SetUp> {
    rec.stage = "tokens";
    let consultant_token = ctx.tokens.token(&User::new(rec.consultant.clone(), Role::Consultant)).await?;
    let seeker_token = ctx.tokens.token(&User::premium_seeker(rec.seeker.clone())).await?;

    rec.stage = "connect";
    let (consultant, mut c_events) = connect(ctx, &consultant_token, "consultant").await?;
    ctx.api.set_recording_allowed(&consultant_token, true).await.context("consultant: allowing recording")?;
    consultant.set_available(true).await.context("consultant: presence.set")?;
    let (seeker, mut s_events) = connect(ctx, &seeker_token, "seeker").await?;

    rec.stage = "call";
    let t0 = Instant::now();
    let consultant_id = consultant.user().id.clone();
    let seeker_id = seeker.user().id.clone();
    let ringing = seeker
        .call_with(&consultant_id, Some(crate::PAYMENT_METHOD), true)
        .await
        .context("seeker: call.request with record")?;
    let session_id = ringing.session_id.clone();
    let (call_id, recorded) = c_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallIncoming { call_id, seeker: s, recording, .. } if s.id == seeker_id => {
                Some((call_id.clone(), *recording))
            }
            _ => None,
        })
        .await
        .context("consultant: waiting for call.incoming")?;
    ensure!(recorded, "call.incoming does not say the call is recorded");
    consultant.accept(&call_id).await.context("consultant: call.accept")?;
    let accepted = s_events
        .wait_for(STEP_TIMEOUT, |m| match m {
            ServerMessage::CallAccepted { session_id: s, .. } if *s == session_id => Some(Ok(())),
            ServerMessage::CallEnded { call_id, reason, .. } if *call_id == ringing.call_id => Some(Err(*reason)),
            _ => None,
        })
        .await
        .context("seeker: waiting for call.accepted")?;
    if let Err(reason) = accepted {
        bail!("seeker: the call ended unanswered ({})", reason.as_str());
    }

    rec.stage = "join";
    rec.session_id = Some(session_id.to_string());
    let c_room = consultant.join(&session_id).await.context("consultant: room.join")?;
    let c_config = CallConfig { ice_servers: c_room.ice_servers.clone(), ..ctx.uplink.clone() };
    let c = Participant::start(&consultant, c_events, &session_id, c_config);
    let s_room = seeker.join(&session_id).await.context("seeker: room.join")?;
    let s_config = CallConfig { ice_servers: s_room.ice_servers.clone(), ..ctx.uplink.clone() };
    let s = Participant::start(&seeker, s_events, &session_id, s_config);

    rec.stage = "uplinks";
    let (s_uplink, c_uplink) = tokio::try_join!(s.connected("seeker"), c.connected("consultant"))?;
    rec.setup_ms = Some(ms(t0.elapsed()));
    ctx.uplinks.lock().unwrap_or_else(|e| e.into_inner()).extend([s_uplink, c_uplink]);
    Ok((seeker, consultant, session_id, s, c, consultant_token))
}

/// The session's recording list once the manifest is stored (the server
/// registers it after every track file).
async fn stored(api: &ApiClient, token: &str, session_id: &SessionId) -> anyhow::Result<RecordingList> {
    let deadline = Instant::now() + STORE_TIMEOUT;
    loop {
        let list = api.recordings(token, session_id).await.context("GET /v1/sessions/{id}/recordings")?;
        if list.recordings.iter().any(|f| f.kind == "manifest") {
            return Ok(list);
        }
        if Instant::now() >= deadline {
            bail!("no recording stored within {STORE_TIMEOUT:?} of the end ({} files)", list.recordings.len());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

type SetUp = (SignalingClient, SignalingClient, SessionId, Participant, Participant, String);
