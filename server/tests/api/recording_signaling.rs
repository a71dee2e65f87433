//! Recording in signaling (DESIGN.md §6), with the test playing the
//! recorder through the Rust SDK: assignment, who may join, addressed
//! relay, `recording.started` / `stopped`, chat, and every refusal.

use crate::common;

use crate::common::{WAIT, incoming, spawn_app};
use parley_domain::protocol::{
    ChatKind, ClientMessage, ErrorCode, IceCandidate, RecordingStopReason, Role, ServerMessage,
};
use parley_domain::{Clock, SessionId, UserId};
use parley_sdk::{Events, SdkError, SignalingClient};

fn code<T: std::fmt::Debug>(r: Result<T, SdkError>) -> ErrorCode {
    r.expect_err("refused").code().expect("a server code")
}

async fn started(events: &mut Events) -> UserId {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::RecordingStarted { recorder_id, .. } => Some(recorder_id.clone()),
            _ => None,
        })
        .await
        .expect("recording.started")
}

async fn stopped(events: &mut Events) -> RecordingStopReason {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::RecordingStopped { reason, .. } => Some(*reason),
            _ => None,
        })
        .await
        .expect("recording.stopped")
}

async fn assigned(events: &mut Events) -> SessionId {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::RecordingAssigned { session_id } => Some(session_id.clone()),
            _ => None,
        })
        .await
        .expect("recording.assigned")
}

fn candidate() -> IceCandidate {
    IceCandidate {
        candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into(),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    }
}

#[tokio::test]
async fn the_recorder_joins_recorded_sessions_only_and_signals_are_addressed() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/v1/consultants/me/recording", app.base))
        .bearer_auth(app.token("cora", Role::Consultant))
        .json(&serde_json::json!({"allowed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (recorder, mut r_events) = app.client("rec-1", Role::Recorder).await;
    // The recorder is stored as a seen user like any client.
    let rec_user = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(u) = parley_signaling::Store::user(&app.store, &UserId::parse("rec-1").unwrap()).await.unwrap()
            {
                return u;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the recorder is stored");
    assert_eq!(rec_user.role, Role::Recorder);
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let premium = app.auth.issue_with(&common::user("sam", Role::Seeker), true, WAIT * 100, app.clock.now());
    let (seeker, mut s_events) = SignalingClient::connect(&app.ws_url, &premium).await.unwrap();

    // A recorder is never a caller.
    let cora = UserId::parse("cora").unwrap();
    assert_eq!(code(recorder.call(&cora, Some("pm_card_visa")).await), ErrorCode::WrongRole);

    // An unrecorded session: the recorder is not assigned and may not join.
    let plain = seeker.call(&cora, Some("pm_card_visa")).await.unwrap();
    let (call_id, _) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    assert_eq!(code(recorder.join(&plain.session_id).await), ErrorCode::Forbidden);
    seeker.end_session(&plain.session_id).await.unwrap();

    // A recorded one is assigned to the connected recorder.
    let ringing = seeker.call_with(&cora, Some("pm_card_visa"), true).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    assert_eq!(assigned(&mut r_events).await, ringing.session_id);
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    let room = recorder.join(&session_id).await.unwrap();
    assert!(room.offerer, "the recorder offers");
    assert_eq!(room.participants.len(), 2);
    assert!(room.meter.is_none());
    let rec_id = UserId::parse("rec-1").unwrap();
    assert_eq!(started(&mut s_events).await, rec_id);
    assert_eq!(started(&mut c_events).await, rec_id);

    // The recorder must name whom it signals; it reaches only them.
    let offer = |to: Option<&str>| ClientMessage::SdpOffer {
        session_id: session_id.clone(),
        sdp: "v=0 recorder".into(),
        to: to.map(|t| UserId::parse(t).unwrap()),
    };
    assert_eq!(code(recorder.request(offer(None)).await), ErrorCode::MissingField);
    assert_eq!(code(recorder.request(offer(Some("eve"))).await), ErrorCode::InvalidField);
    recorder.request(offer(Some("sam"))).await.unwrap();
    let from = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SdpOffer { from, sdp, .. } if sdp == "v=0 recorder" => Some(from.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(from, rec_id);

    // A participant answers the recorder with `to`; without it, the other
    // participant gets the signal, not the recorder.
    let answer =
        ClientMessage::SdpAnswer { session_id: session_id.clone(), sdp: "v=0 to rec".into(), to: Some(rec_id.clone()) };
    seeker.request(answer).await.unwrap();
    let got = r_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SdpAnswer { from, sdp, .. } => Some((from.clone(), sdp.clone())),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!((got.0.as_str(), got.1.as_str()), ("sam", "v=0 to rec"));
    let to_nobody = ClientMessage::IceCandidate {
        session_id: session_id.clone(),
        candidate: candidate(),
        to: Some(UserId::parse("eve").unwrap()),
    };
    assert_eq!(code(seeker.request(to_nobody).await), ErrorCode::InvalidField);
    let plain_offer = ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 peer".into(), to: None };
    seeker.request(plain_offer).await.unwrap();
    c_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SdpOffer { sdp, .. } if sdp == "v=0 peer").then_some(()))
        .await
        .expect("the consultant gets the seeker's own offer");

    // Chat: stored and relayed; empty or oversized text refused.
    assert_eq!(code(seeker.chat(&session_id, "  ", ChatKind::Chat).await), ErrorCode::InvalidField);
    let long = "x".repeat(parley_domain::protocol::MAX_CHAT_BYTES + 1);
    assert_eq!(code(seeker.chat(&session_id, &long, ChatKind::Chat).await), ErrorCode::InvalidField);
    assert_eq!(code(recorder.chat(&session_id, "hi", ChatKind::Chat).await), ErrorCode::NotInRoom);
    seeker.chat(&session_id, "hello", ChatKind::Chat).await.unwrap();
    c_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::ChatMessage { text, .. } if text == "hello").then_some(()))
        .await
        .expect("chat.message");

    // The recorder's connection closes: both are told, and the session goes
    // to the next recorder that connects.
    recorder.close();
    drop(r_events);
    assert_eq!(stopped(&mut s_events).await, RecordingStopReason::RecorderLeft);
    assert_eq!(stopped(&mut c_events).await, RecordingStopReason::RecorderLeft);
    let (recorder2, mut r2_events) = app.client("rec-2", Role::Recorder).await;
    assert_eq!(assigned(&mut r2_events).await, session_id);
    recorder2.join(&session_id).await.unwrap();
    assert_eq!(started(&mut s_events).await.as_str(), "rec-2");

    // The end: both hear recording stopped before the session ended; the
    // recorder hears the end.
    consultant.end_session(&session_id).await.unwrap();
    for events in [&mut s_events, &mut c_events] {
        let order = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::RecordingStopped { reason, .. } => Some(Some(*reason)),
                ServerMessage::SessionEnded { .. } => Some(None),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(order, Some(RecordingStopReason::SessionEnded), "recording.stopped comes first");
    }
    r2_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(()))
        .await
        .expect("the recorder hears the end");
    let kinds = common::timeline_kinds(&app.store, &session_id).await;
    for k in ["recording_started", "recording_stopped", "chat", "ended"] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
}

/// A recorder carries every recorded session's offers and candidates on its
/// one connection: the per-client rate limit (50/s, burst 100) does not
/// apply to it, or recordings would be lost. A seeker is still limited.
#[tokio::test]
async fn the_recorder_is_not_rate_limited_but_clients_are() {
    let app = spawn_app().await;
    let mut recorder = app.raw("rec-1", Role::Recorder).await;
    let mut seeker = app.raw("sam", Role::Seeker).await;
    for raw in [&mut recorder, &mut seeker] {
        for i in 0..300 {
            raw.send(format!(r#"{{"type":"ping","id":"p{i}"}}"#)).await;
        }
    }
    let mut acks = 0;
    while acks < 300 {
        match recorder.recv().await.msg {
            ServerMessage::Ack { .. } => acks += 1,
            other => panic!("recorder: unexpected {other:?}"),
        }
    }
    // The seeker's frames past the burst were dropped unanswered (one
    // rate_limited notice): its acks, up to a ping that gets through.
    let (mut acks, mut limited) = (0, 0);
    'probe: for probe in 0..20 {
        seeker.send(format!(r#"{{"type":"ping","id":"probe{probe}"}}"#)).await;
        while let Some(env) = seeker.recv_within(std::time::Duration::from_millis(500)).await {
            match env.msg {
                ServerMessage::Ack { id, .. } if id.starts_with("probe") => break 'probe,
                ServerMessage::Ack { .. } => acks += 1,
                ServerMessage::Error { code: ErrorCode::RateLimited, .. } => limited += 1,
                other => panic!("seeker: unexpected {other:?}"),
            }
        }
    }
    assert!(acks <= 110 && limited >= 1, "the seeker is limited past its burst: {acks} acks, {limited} notices");
}

/// Issue 13 §6: a second connection of a recorder is refused while the
/// first is live (409 `recorder_connected`, before the upgrade), so it never
/// takes over the first one's assignments; dev login hands out no token
/// for the recorder's id. Once the first is gone, the recorder connects
/// again and is assigned its session again.
#[tokio::test]
async fn a_second_recorder_connection_is_refused_and_takes_nothing_over() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let r = http
        .put(format!("{}/v1/consultants/me/recording", app.base))
        .bearer_auth(app.token("cora", Role::Consultant))
        .json(&serde_json::json!({"allowed": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (recorder, mut r_events) = app.client("rec-1", Role::Recorder).await;
    let rec_id = UserId::parse("rec-1").unwrap();
    common::until("the recorder is stored", || async {
        parley_signaling::Store::user(&app.store, &rec_id).await.unwrap().is_some()
    })
    .await;

    // A stranger cannot get the recorder's token from dev login...
    let r = http
        .post(format!("{}/v1/dev/login", app.base))
        .json(&serde_json::json!({"user_id": "rec-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = r.json().await.unwrap();
    assert_eq!(problem["code"], "role_not_allowed", "{problem}");
    // ...and even with the operator's token, a second connection is refused.
    let second = SignalingClient::connect(&app.ws_url, &app.token("rec-1", Role::Recorder)).await;
    assert_eq!(code(second), ErrorCode::RecorderConnected);

    // The first keeps its assignments.
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let premium = app.auth.issue_with(&common::user("sam", Role::Seeker), true, WAIT * 100, app.clock.now());
    let (seeker, mut s_events) = SignalingClient::connect(&app.ws_url, &premium).await.unwrap();
    let cora = UserId::parse("cora").unwrap();
    seeker.call_with(&cora, Some("pm_card_visa"), true).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    assert_eq!(assigned(&mut r_events).await, session_id);
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    recorder.join(&session_id).await.unwrap();
    assert_eq!(started(&mut s_events).await, rec_id);
    assert_eq!(
        code(SignalingClient::connect(&app.ws_url, &app.token("rec-1", Role::Recorder)).await),
        ErrorCode::RecorderConnected
    );

    // Gone (a clean close): the recorder may connect again, and gets the
    // session assigned again.
    recorder.close();
    assert_eq!(stopped(&mut s_events).await, RecordingStopReason::RecorderLeft);
    let (again, mut a_events) = tokio::time::timeout(WAIT, async {
        loop {
            match SignalingClient::connect(&app.ws_url, &app.token("rec-1", Role::Recorder)).await {
                Ok(c) => return c,
                Err(e) if e.code() == Some(ErrorCode::RecorderConnected) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    })
    .await
    .expect("the recorder connects again");
    assert_eq!(assigned(&mut a_events).await, session_id);
    again.join(&session_id).await.unwrap();
    assert_eq!(started(&mut s_events).await, rec_id);
}
