//! The whole instant call: two SDK clients call through a real server and
//! set up a real webrtc-rs peer connection on loopback, with Opus audio both
//! ways and a data channel.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{WAIT, next_matching, pump, spawn_app};
use parley_domain::UserId;
use parley_domain::protocol::{Role, ServerMessage, SessionEndReason};
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeker_and_consultant_talk_over_a_real_peer_connection() {
    let app = spawn_app().await;
    let (consultant, c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    let (c_call_tx, mut c_rest) = pump(c_events);
    let (s_call_tx, mut s_rest) = pump(s_events);

    let ringing = seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.unwrap();
    let incoming = next_matching(&mut c_rest, |m| matches!(m, ServerMessage::CallIncoming { .. })).await;
    let ServerMessage::CallIncoming { call_id, session_id, seeker: who, .. } = incoming else {
        unreachable!()
    };
    assert_eq!((who.id.as_str(), &session_id), ("sam", &ringing.session_id));
    consultant.accept(&call_id).await.unwrap();

    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    // The consultant joins first and waits for the offer.
    let c_room = consultant.join(&session_id).await.unwrap();
    assert!(!c_room.offerer);
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await.unwrap());
    let _ = c_call_tx.send(c_call.clone());
    // The seeker finds the consultant present and offers at once.
    let s_room = seeker.join(&session_id).await.unwrap();
    assert!(s_room.offerer);
    assert_eq!(s_room.participants.len(), 1);
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, config).await.unwrap());
    let _ = s_call_tx.send(s_call.clone());

    s_call.call.wait_connected(Duration::from_secs(20)).await.expect("seeker connected");
    c_call.call.wait_connected(Duration::from_secs(20)).await.expect("consultant connected");
    s_call.call.wait_data_channel_open(Duration::from_secs(20)).await.unwrap();
    c_call.call.wait_data_channel_open(Duration::from_secs(20)).await.unwrap();

    s_call.call.send_data(b"hello from sam").await.unwrap();
    let got = tokio::time::timeout(WAIT, c_call.call.recv_data()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"hello from sam");
    c_call.call.send_data(b"hello back").await.unwrap();
    let got = tokio::time::timeout(WAIT, s_call.call.recv_data()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"hello back");

    // Opus packets flow both ways.
    tokio::time::timeout(WAIT, async {
        while s_call.call.audio_packets_received() < 10 || c_call.call.audio_packets_received() < 10 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("audio both ways");

    seeker.end_session(&session_id).await.unwrap();
    for rest in [&mut s_rest, &mut c_rest] {
        let ended = next_matching(rest, |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
        assert!(matches!(ended, ServerMessage::SessionEnded { reason: SessionEndReason::Hangup, .. }));
    }
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();

    // Both clients reported their media connection state (DESIGN.md M11).
    let timeline = parley_signaling::Store::session_timeline(&app.store, &session_id).await.unwrap();
    for who in ["sam", "cora"] {
        assert!(
            timeline.iter().any(|e| e.kind == "media_state"
                && e.user_id.as_ref().map(UserId::as_str) == Some(who)
                && e.detail.as_deref() == Some("connected")),
            "{who} reported connected: {timeline:?}"
        );
    }
}
