//! Signaling v1 end to end: a real server, real WebSocket clients (the Rust
//! SDK, or raw tungstenite for malformed input), a manual server clock.

use crate::common;

use std::time::Duration;

use crate::common::{WAIT, incoming, spawn_app, timeline_kinds};
use parley_domain::protocol::{
    CallEndReason, ClientMessage, ErrorCode, IceCandidate, LeaveReason, PresenceStatus, Role, ServerMessage,
    SessionEndReason,
};
use parley_domain::{SessionId, UserId};
use parley_sdk::{Event, Events, SdkError, SignalingClient};
use parley_signaling::Store;

pub(crate) fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub(crate) fn candidate(n: u32) -> IceCandidate {
    IceCandidate {
        candidate: format!("candidate:{n} 1 udp 2130706431 127.0.0.1 {} typ host", 50_000 + n),
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: None,
    }
}

pub(crate) async fn call_ended(events: &mut Events) -> CallEndReason {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::CallEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .await
        .expect("call.ended")
}

pub(crate) async fn presence(events: &mut Events) -> PresenceStatus {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::PresenceUpdated { status } => Some(*status),
            _ => None,
        })
        .await
        .expect("presence.updated")
}

/// Seeker `s` calls available consultant `c`, who accepts; both join.
pub(crate) async fn connected_pair(
    app: &common::TestApp,
    s: &str,
    c: &str,
) -> (SignalingClient, Events, SignalingClient, Events, SessionId) {
    let (consultant, mut c_events) = app.available_consultant(c).await;
    let (seeker, mut s_events) = app.client(s, Role::Seeker).await;
    let ringing = seeker.call(&uid(c), Some("pm_card_visa")).await.expect("call rings");
    let (call_id, _) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.expect("accept");
    for events in [&mut s_events, &mut c_events] {
        events
            .wait_for(WAIT, |m| matches!(m, ServerMessage::CallAccepted { .. }).then_some(()))
            .await
            .expect("call.accepted");
    }
    seeker.join(&ringing.session_id).await.expect("seeker joins");
    consultant.join(&ringing.session_id).await.expect("consultant joins");
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(()))
        .await
        .expect("seeker sees the consultant join");
    (seeker, s_events, consultant, c_events, ringing.session_id)
}

#[tokio::test]
async fn an_instant_call_rings_opens_a_room_relays_and_hangs_up() {
    let app = spawn_app().await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;

    let ringing = seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    assert_eq!((call_id.clone(), session_id.clone()), (ringing.call_id.clone(), ringing.session_id.clone()));
    assert_eq!(presence(&mut c_events).await, PresenceStatus::Busy, "busy automatically while ringing");

    consultant.accept(&call_id).await.unwrap();
    for events in [&mut s_events, &mut c_events] {
        let accepted = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::CallAccepted { session_id, .. } => Some(session_id.clone()),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!(accepted, session_id);
    }

    let room = seeker.join(&session_id).await.unwrap();
    assert!(room.offerer, "the seeker offers");
    assert!(room.participants.is_empty());
    let room = consultant.join(&session_id).await.unwrap();
    assert!(!room.offerer);
    assert_eq!(room.participants.len(), 1, "the seeker is already there");
    s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::ParticipantJoined { user, .. } if user.id.as_str() == "cora" => Some(()),
            _ => None,
        })
        .await
        .unwrap();

    // Offer, answer and candidates are relayed with their sender.
    seeker.send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 offer".into(), to: None }).unwrap();
    seeker
        .send(ClientMessage::IceCandidate { session_id: session_id.clone(), candidate: candidate(1), to: None })
        .unwrap();
    let (from, sdp) = c_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SdpOffer { from, sdp, .. } => Some((from.clone(), sdp.clone())),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!((from.as_str(), sdp.as_str()), ("sam", "v=0 offer"));
    let got = c_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::IceCandidate { candidate, .. } => Some(candidate.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(got, candidate(1));
    consultant
        .send(ClientMessage::SdpAnswer { session_id: session_id.clone(), sdp: "v=0 answer".into(), to: None })
        .unwrap();
    let sdp = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SdpAnswer { sdp, .. } => Some(sdp.clone()),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(sdp, "v=0 answer");

    // Renegotiation: a second offer from either side is relayed too.
    consultant
        .send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 again".into(), to: None })
        .unwrap();
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SdpOffer { sdp, .. } if sdp == "v=0 again").then_some(()))
        .await
        .unwrap();

    seeker.end_session(&session_id).await.unwrap();
    for events in [&mut s_events, &mut c_events] {
        let (reason, by) = events
            .wait_for(WAIT, |m| match m {
                ServerMessage::SessionEnded { reason, ended_by, .. } => Some((*reason, ended_by.clone())),
                _ => None,
            })
            .await
            .unwrap();
        assert_eq!((reason, by), (SessionEndReason::Hangup, Some(uid("sam"))));
    }
    assert_eq!(presence(&mut c_events).await, PresenceStatus::Available, "free again after the session");

    // Everything was stored with server timestamps.
    let call = app.store.call(&call_id).await.unwrap().unwrap();
    assert_eq!(call.state, "accepted");
    let session = app.store.session(&session_id).await.unwrap().unwrap();
    assert_eq!(session.end_reason.as_deref(), Some("hangup"));
    assert!(session.ended_at.is_some());
    assert_eq!(timeline_kinds(&app.store, &session_id).await, ["joined", "joined", "ended"]);

    // A hung-up session cannot be rejoined.
    let err = seeker.join(&session_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::SessionEnded));
}

#[tokio::test]
async fn a_declined_call_tells_the_seeker_and_frees_the_consultant() {
    let app = spawn_app().await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), None).await.unwrap();
    let (call_id, _) = incoming(&mut c_events).await;
    assert_eq!(presence(&mut c_events).await, PresenceStatus::Busy);
    consultant.decline(&call_id, Some("in a meeting")).await.unwrap();
    let (reason, message) = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::CallEnded { reason, message, .. } => Some((*reason, message.clone())),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!((reason, message.as_deref()), (CallEndReason::Declined, Some("in a meeting")));
    assert_eq!(presence(&mut c_events).await, PresenceStatus::Available);
    assert_eq!(app.store.call(&call_id).await.unwrap().unwrap().state, "declined");
    // The seeker may call again at once.
    seeker.call(&uid("cora"), None).await.unwrap();
}

#[tokio::test]
async fn a_cancelled_call_stops_ringing() {
    let app = spawn_app().await;
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    incoming(&mut c_events).await;
    seeker.cancel(&ringing.call_id).await.unwrap();
    assert_eq!(call_ended(&mut c_events).await, CallEndReason::Cancelled);
    let err = seeker.cancel(&ringing.call_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CallNotRinging));
}

#[tokio::test]
async fn the_ring_times_out_after_30_seconds_of_server_time() {
    let app = spawn_app().await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    let now = parley_domain::Clock::now(&*app.clock);
    assert_eq!(ringing.ring_deadline_ms, now.unix_millis() + 30_000);
    incoming(&mut c_events).await;
    presence(&mut c_events).await;

    // A second before the deadline the call still rings (that the timer
    // fires at the deadline and not a millisecond before is the hub core's
    // `a_ring_times_out_exactly_at_its_deadline_and_not_a_millisecond_before`).
    app.advance(Duration::from_secs(29)).await;
    assert_eq!(app.store.call(&ringing.call_id).await.unwrap().unwrap().state, "ringing");

    app.advance(Duration::from_secs(1)).await;
    assert_eq!(call_ended(&mut s_events).await, CallEndReason::Timeout);
    assert_eq!(call_ended(&mut c_events).await, CallEndReason::Timeout);
    let err = consultant.accept(&ringing.call_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CallNotRinging), "too late to accept");
}

#[tokio::test]
async fn a_second_accept_is_refused_with_call_not_ringing() {
    let app = spawn_app().await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), None).await.unwrap();
    let (call_id, _) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    let err = consultant.accept(&call_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CallNotRinging), "{err}");
    let err = consultant.accept(&"call_nope".parse().unwrap()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownCall));
}

#[tokio::test]
async fn calls_to_unknown_unavailable_or_busy_consultants_are_refused() {
    let app = spawn_app().await;
    let (seeker, _s) = app.client("sam", Role::Seeker).await;
    let err = seeker.call(&uid("nobody"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownConsultant));
    // Seeded in dev mode, but not connected.
    let err = seeker.call(&uid("demo-consultant"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ConsultantUnavailable));
    // Connected but not available.
    let (_c, _ce) = app.client("cora", Role::Consultant).await;
    let err = seeker.call(&uid("cora"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ConsultantUnavailable));
    // A seeker is not a consultant.
    let err = seeker.call(&uid("sam"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownConsultant));
    // Busy in another session.
    let (_s2, _s2e, _c2, _c2e, _sid) = connected_pair(&app, "sue", "carl").await;
    let err = seeker.call(&uid("carl"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ConsultantUnavailable));
    // Consultants cannot call.
    let (c3, _) = app.available_consultant("cleo").await;
    let err = c3.call(&uid("carl"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongRole));
}

#[tokio::test]
async fn only_the_sessions_two_participants_may_join_or_relay() {
    let app = spawn_app().await;
    let (seeker, _se, _consultant, _ce, session_id) = connected_pair(&app, "sam", "cora").await;
    let (stranger, _st) = app.client("eve", Role::Seeker).await;
    let err = stranger.join(&session_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = stranger
        .request(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0".into(), to: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotInRoom));
    let err = stranger.end_session(&session_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = seeker.join(&"ses_unknown".parse().unwrap()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownSession));
    // After leaving, relaying is refused until rejoining.
    seeker.leave(&session_id).await.unwrap();
    let err = seeker
        .request(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0".into(), to: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotInRoom));
    seeker.join(&session_id).await.unwrap();
    seeker.request(ClientMessage::SdpOffer { session_id, sdp: "v=0".into(), to: None }).await.unwrap();
}

/// A consultant on a raw connection in a room with an SDK seeker.
/// Cora resumes with `token` claiming to have read up to `last_seq`, which
/// the server no longer holds: `resume_failed`.
async fn resume_is_refused(app: &common::TestApp, token: &str, last_seq: u64) {
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    let (id, code, message) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("r"), ErrorCode::ResumeFailed), "{message}");
}

/// Cora resumes `token` from `last_seq`, all she read: nothing is replayed.
async fn resume_replays_nothing(app: &common::TestApp, token: &str, last_seq: u64) {
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    let ack = raw.recv().await;
    assert!(
        matches!(
            ack.msg,
            ServerMessage::Ack { result: Some(parley_domain::protocol::AckResult::Resumed { replayed: 0, .. }), .. }
        ),
        "{ack:?}"
    );
}

pub(crate) async fn raw_consultant_in_a_room(
    app: &common::TestApp,
) -> (SignalingClient, Events, common::Raw, SessionId) {
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(r#"{"id":"p","type":"presence.set","status":"available"}"#).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { .. }).then_some(())).await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    let call_id = raw
        .recv_until(|m| match m {
            ServerMessage::CallIncoming { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .await;
    raw.send(format!(r#"{{"id":"a","type":"call.accept","call_id":"{call_id}"}}"#)).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { id, .. } if id == "a").then_some(())).await;
    seeker.join(&ringing.session_id).await.unwrap();
    raw.send(format!(r#"{{"id":"j","type":"room.join","session_id":"{}"}}"#, ringing.session_id)).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { id, .. } if id == "j").then_some(())).await;
    s_events.wait_for(WAIT, |m| matches!(m, ServerMessage::ParticipantJoined { .. }).then_some(())).await.unwrap();
    (seeker, s_events, raw, ringing.session_id)
}

pub(crate) async fn dropped(events: &mut Events) -> (UserId, LeaveReason, u64) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::ParticipantLeft { user_id, reason, grace_secs, .. } => {
                Some((user_id.clone(), *reason, *grace_secs))
            }
            _ => None,
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dropped_client_resumes_and_gets_what_it_missed() {
    let app = spawn_app().await;
    let (seeker, mut s_events, raw, session_id) = raw_consultant_in_a_room(&app).await;
    let (token, last_seq) = (raw.resume_token.clone(), raw.last_seq);
    drop(raw); // TCP gone without a close frame
    assert_eq!(dropped(&mut s_events).await, (uid("cora"), LeaveReason::Dropped, 30));

    // Sent while the consultant is away: kept for them.
    seeker
        .send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 missed".into(), to: None })
        .unwrap();
    seeker.request(ClientMessage::Ping).await.unwrap(); // the offer has been processed

    app.advance(Duration::from_secs(29)).await; // still within the grace period
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    let replayed = raw.recv().await;
    assert_eq!(replayed.seq, last_seq + 1, "the sequence continues");
    assert!(matches!(replayed.msg, ServerMessage::SdpOffer { ref sdp, .. } if sdp == "v=0 missed"), "{replayed:?}");
    let ack = raw.recv().await;
    assert!(
        matches!(ack.msg, ServerMessage::Ack { ref id, result: Some(parley_domain::protocol::AckResult::Resumed { replayed: 1, .. }) } if id == "r"),
        "{ack:?}"
    );
    s_events
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantJoined { user, .. } if user.id.as_str() == "cora").then_some(())
        })
        .await
        .unwrap();

    // The grace timer of the drop no longer applies: the session goes on.
    app.advance(Duration::from_secs(5)).await;
    seeker.send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 after".into(), to: None }).unwrap();
    raw.recv_until(|m| matches!(m, ServerMessage::SdpOffer { sdp, .. } if sdp == "v=0 after").then_some(())).await;
    assert_eq!(timeline_kinds(&app.store, &session_id).await, ["joined", "joined", "dropped", "joined"]);
}

/// The replay buffer keeps what a client may have missed, not what it is
/// known to have read: the server's ping carries the last `seq` written
/// before it and the client's pong confirms it (docs/protocol.md §8.6).
#[tokio::test]
async fn what_a_client_confirmed_reading_leaves_the_replay_buffer_and_the_rest_is_replayed() {
    let app = spawn_app().await;
    let (seeker, _s_events, mut raw, session_id) = raw_consultant_in_a_room(&app).await;
    let (token, before) = (raw.resume_token.clone(), raw.last_seq);
    let relay =
        |n: u32| ClientMessage::IceCandidate { session_id: session_id.clone(), candidate: candidate(n), to: None };
    for n in 0..40 {
        seeker.send(relay(n)).unwrap();
    }
    for _ in 0..40 {
        raw.recv_until(|m| matches!(m, ServerMessage::IceCandidate { .. }).then_some(())).await;
    }
    // Over 32 messages written: the server asked with a ping, which the
    // client's reads answered; the pong precedes this request on the wire.
    raw.assert_alive("a").await;
    let read = raw.last_seq;
    for n in 40..45 {
        seeker.send(relay(n)).unwrap();
    }
    seeker.request(ClientMessage::Ping).await.unwrap(); // the five have been relayed
    drop(raw);

    // Claiming to have read less than the pong confirmed: nothing to replay.
    resume_is_refused(&app, &token, before).await;

    // From what it did read, the client gets the five it missed.
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{read}}}"#)).await;
    let mut replayed = Vec::new();
    let ack = loop {
        let env = raw.recv().await;
        match env.msg {
            ServerMessage::IceCandidate { candidate, .. } => replayed.push((env.seq, candidate.candidate)),
            ServerMessage::Ack { result: Some(result), .. } => break result,
            other => panic!("expected the replay, got {other:?}"),
        }
    };
    let want: Vec<_> = (40..45u32).zip(1..).map(|(n, i)| (read + i, candidate(n).candidate)).collect();
    assert_eq!(replayed, want);
    assert!(matches!(ack, parley_domain::protocol::AckResult::Resumed { replayed: 5, .. }), "{ack:?}");
}

/// A connection writes what its link holds in batches of at most 16 KiB
/// of messages: a burst of large SDPs, several batches' worth, reaches the
/// peer whole, in order and numbered without a gap, each batch waking the
/// connection for the next.
#[tokio::test]
async fn a_burst_larger_than_a_write_batch_arrives_whole_and_in_order() {
    let app = spawn_app().await;
    let (seeker, _s_events, mut raw, session_id) = raw_consultant_in_a_room(&app).await;
    let first = raw.last_seq + 1;
    // 12 offers of about 7 KB: 84 KB, five batches or more.
    let sdps: Vec<String> = (0..12)
        .map(|n| format!("v=0\r\no=- {n} 1 IN IP4 0.0.0.0\r\n{}", "a=x-filler:0123456789abcdef\r\n".repeat(240)))
        .collect();
    for sdp in &sdps {
        seeker.send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: sdp.clone(), to: None }).unwrap();
    }
    let mut got = Vec::new();
    while got.len() < sdps.len() {
        let env = raw.recv().await;
        if let ServerMessage::SdpOffer { sdp, .. } = env.msg {
            got.push((env.seq, sdp));
        }
    }
    let want: Vec<_> = (first..).zip(sdps).collect();
    assert_eq!(got, want, "every offer, in order, numbered from {first} without a gap");
}

/// A large message is confirmed as soon as it is written (a write of 2
/// KiB or more, `CONFIRM_LARGE_WRITE`; 8 KiB written, `CONFIRM_BYTES`),
/// not only after 32 messages or at the keepalive: a call's SDP does not
/// stay in the replay buffer for 15 s. (That it is asked at once rather
/// than after a pause is the state machine's unit test in
/// `signaling/src/connection/confirm.rs`: here, only time would tell.)
#[tokio::test]
async fn a_large_sdp_is_confirmed_right_after_it_is_written() {
    let app = spawn_app().await;
    let (seeker, _s_events, mut raw, session_id) = raw_consultant_in_a_room(&app).await;
    let (token, before) = (raw.resume_token.clone(), raw.last_seq);
    let sdp = format!("v=0\r\n{}", "a=x-filler:0123456789abcdef\r\n".repeat(320)); // 9.3 KB
    seeker.send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: sdp.clone(), to: None }).unwrap();
    raw.recv_until(|m| matches!(m, ServerMessage::SdpOffer { sdp: got, .. } if *got == sdp).then_some(())).await;
    // The ping asking to confirm it came after the offer; the client's
    // reads answered it, and the pong precedes this request on the wire.
    raw.assert_alive("a").await;
    let read = raw.last_seq;
    drop(raw);

    // The offer left the replay buffer: resuming from before it fails.
    resume_is_refused(&app, &token, before).await;

    // Resuming from what was read replays nothing and goes on.
    resume_replays_nothing(&app, &token, read).await;
}

/// A few candidates (8, about 1.4 KB: under 32 messages and 8 KiB, over
/// `CONFIRM_QUIET_BYTES`) are confirmed once the writes to the client
/// pause for `CONFIRM_QUIET` (100 ms), not at the keepalive 15 s later: an
/// open call's replay buffer holds nothing the client already read
/// (docs/protocol.md §8.7).
#[tokio::test]
async fn a_few_messages_are_confirmed_once_the_writes_pause() {
    let app = spawn_app().await;
    let (seeker, _s_events, mut raw, session_id) = raw_consultant_in_a_room(&app).await;
    let (token, before) = (raw.resume_token.clone(), raw.last_seq);
    for n in 0..8 {
        seeker
            .send(ClientMessage::IceCandidate { session_id: session_id.clone(), candidate: candidate(n), to: None })
            .unwrap();
    }
    for _ in 0..8 {
        raw.recv_until(|m| matches!(m, ServerMessage::IceCandidate { .. }).then_some(())).await;
    }
    let last = raw.last_seq;
    // Within WAIT (10 s), well before the keepalive (15 s): a ping asks
    // for everything written, the candidates included (an earlier
    // one may ask for the set-up's messages).
    while raw.recv_ping().await < last {}
    // The pong goes out before this request.
    raw.assert_alive("a").await;
    let read = raw.last_seq;
    drop(raw);

    // The candidates left the replay buffer: resuming from before them fails.
    resume_is_refused(&app, &token, before).await;

    // Resuming from what was read replays nothing and goes on.
    resume_replays_nothing(&app, &token, read).await;
}

#[tokio::test]
async fn absent_longer_than_the_grace_period_ends_the_session_and_resume_fails() {
    let app = spawn_app().await;
    let (_seeker, mut s_events, raw, session_id) = raw_consultant_in_a_room(&app).await;
    let (token, last_seq) = (raw.resume_token.clone(), raw.last_seq);
    drop(raw);
    dropped(&mut s_events).await;
    app.advance(Duration::from_secs(30)).await;
    let reason = s_events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, .. } => Some(*reason),
            _ => None,
        })
        .await
        .unwrap();
    assert_eq!(reason, SessionEndReason::Abandoned);
    let session = app.store.session(&session_id).await.unwrap().unwrap();
    assert_eq!(session.end_reason.as_deref(), Some("abandoned"));

    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    let (id, code, _) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("r"), ErrorCode::ResumeFailed));
    raw.assert_alive("still usable afresh").await;
}

#[tokio::test]
async fn a_newer_connection_replaces_the_old_one_and_the_sdk_stops_there() {
    let app = spawn_app().await;
    let (seeker, mut s_events, _consultant, mut c_events, session_id) = connected_pair(&app, "sam", "cora").await;
    // A second connection of the seeker replaces the first, which the SDK
    // must not fight: it reports Closed.
    let (_again, _again_events) = app.client("sam", Role::Seeker).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match s_events.recv().await {
                Some(Event::Closed { reason }) => return reason,
                Some(_) => {}
                None => panic!("stream ended"),
            }
        }
    })
    .await
    .unwrap();
    assert!(closed.contains("replaced"), "{closed}");
    assert_eq!(dropped(&mut c_events).await.1, LeaveReason::Dropped);
    let err = seeker.request(ClientMessage::Ping).await.unwrap_err();
    assert!(matches!(err, SdkError::Closed(_)), "{err:?}");
    let _ = session_id;
}

#[tokio::test]
async fn the_sdk_resumes_by_itself_after_a_network_drop() {
    let app = spawn_app().await;
    let proxy = common::Proxy::start(&app).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) =
        SignalingClient::connect(&proxy.ws_url, &app.token("sam", Role::Seeker)).await.unwrap();
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    assert_eq!(ringing.session_id, session_id);
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();

    proxy.cut();
    assert_eq!(dropped(&mut c_events).await.1, LeaveReason::Dropped);
    consultant
        .send(ClientMessage::SdpOffer { session_id: session_id.clone(), sdp: "v=0 while away".into(), to: None })
        .unwrap();

    let mut saw = Vec::new();
    let replayed = tokio::time::timeout(WAIT, async {
        loop {
            match s_events.recv().await.expect("events") {
                Event::Resumed { replayed, .. } => return replayed,
                Event::Server(ServerMessage::SdpOffer { sdp, .. }) => saw.push(sdp),
                Event::Reconnecting | Event::Server(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await
    .expect("resumed in time");
    assert!(replayed >= 1, "the missed offer was replayed");
    assert_eq!(saw, ["v=0 while away"]);
    c_events
        .wait_for(WAIT, |m| {
            matches!(m, ServerMessage::ParticipantJoined { user, .. } if user.id.as_str() == "sam").then_some(())
        })
        .await
        .unwrap();
    // Requests work on the resumed connection.
    seeker.request(ClientMessage::SdpAnswer { session_id, sdp: "v=0 back".into(), to: None }).await.unwrap();
}
