//! Recording and recaps (issue 6, DESIGN.md §6) end to end: two SDK
//! clients in a real webrtc-rs call through a real server whose embedded
//! recorder joins as a receive-only participant. The files it stores are
//! downloaded through signed links and parsed; the recap is read back.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{WAIT, next_matching, pump, spawn_app_with};
use bytes::Bytes;
use parley_domain::protocol::rest::{Recap, RecordingList};
use parley_domain::protocol::{ChatKind, ErrorCode, Role, ServerMessage};
use parley_domain::{Clock, UserId};
use parley_sdk::SdkError;
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;
use parley_server::config::RecorderMode;

/// A 20 ms Opus frame that is not silence (CELT, fullband, 20 ms, mono,
/// one frame of 40 arbitrary bytes): the "speaking" side sends it.
fn speech_frame() -> Bytes {
    let mut frame = vec![0xF8];
    frame.extend((0..40u8).map(|i| i.wrapping_mul(37)));
    Bytes::from(frame)
}

fn refused(result: Result<parley_sdk::RingingCall, SdkError>) -> ErrorCode {
    match result {
        Err(SdkError::Server { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_seeker_downloads_the_recording_and_recap_of_a_real_call() {
    let app = spawn_app_with(|c| c.recorder = RecorderMode::Embedded).await;
    let http = reqwest::Client::new();
    let (seeker_token, consultant_token) = (app.token("sam", Role::Seeker), app.token("cora", Role::Consultant));
    let put = |path: &str, token: &str, body: serde_json::Value| {
        http.put(format!("{}{path}", app.base)).bearer_auth(token).json(&body).send()
    };

    let (consultant, c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    let cora = UserId::parse("cora").unwrap();

    // Consent: a non-premium seeker may not ask; nor may a premium one of a
    // consultant who does not allow recording. Nobody is rung.
    assert_eq!(refused(seeker.call_with(&cora, Some("pm_card_visa"), true).await), ErrorCode::PremiumRequired);
    let moderator = app.token("ops", Role::Moderator);
    let r = put("/v1/seekers/sam/premium", &moderator, serde_json::json!({"premium": true})).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = put("/v1/seekers/sam/premium", &seeker_token, serde_json::json!({"premium": true})).await.unwrap();
    assert_eq!(r.status(), 403, "only the operator sets premium");
    assert_eq!(refused(seeker.call_with(&cora, Some("pm_card_visa"), true).await), ErrorCode::RecordingNotAllowed);
    let r = put("/v1/consultants/me/recording", &consultant_token, serde_json::json!({"allowed": true})).await.unwrap();
    assert_eq!(r.status(), 200);

    let (c_call_tx, mut c_rest) = pump(c_events);
    let (s_call_tx, mut s_rest) = pump(s_events);
    let ringing = seeker.call_with(&cora, Some("pm_card_visa"), true).await.unwrap();
    let incoming = next_matching(&mut c_rest, |m| matches!(m, ServerMessage::CallIncoming { .. })).await;
    let ServerMessage::CallIncoming { call_id, recording, .. } = incoming else { unreachable!() };
    assert!(recording, "the consultant sees that the seeker asked for recording");
    consultant.accept(&call_id).await.unwrap();
    let session_id = ringing.session_id.clone();

    // The seeker talks (and shows video); the consultant stays silent.
    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    let c_room = consultant.join(&session_id).await.unwrap();
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await.unwrap());
    let _ = c_call_tx.send(c_call.clone());
    let s_room = seeker.join(&session_id).await.unwrap();
    let s_config = CallConfig { send_video: true, audio_payload: speech_frame(), ..config };
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, s_config).await.unwrap());
    let _ = s_call_tx.send(s_call.clone());

    // Both are told recording is on, and both send to the recorder.
    for rest in [&mut s_rest, &mut c_rest] {
        next_matching(rest, |m| matches!(m, ServerMessage::RecordingStarted { .. })).await;
    }
    for call in [&s_call, &c_call] {
        let uplink = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(u) = call.recording_uplink() {
                    return u;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the recorder offered");
        uplink.wait_connected(WAIT).await.expect("uplink to the recorder connected");
    }
    s_call.call.wait_connected(WAIT).await.unwrap();
    seeker.chat(&session_id, "Here is my question", ChatKind::Chat).await.unwrap();
    consultant.chat(&session_id, "Follow up: send the contract", ChatKind::Note).await.unwrap();
    let chat = next_matching(&mut c_rest, |m| matches!(m, ServerMessage::ChatMessage { .. })).await;
    assert!(matches!(chat, ServerMessage::ChatMessage { ref text, .. } if text == "Here is my question"));

    tokio::time::sleep(Duration::from_secs(3)).await;
    seeker.end_session(&session_id).await.unwrap();
    for rest in [&mut s_rest, &mut c_rest] {
        next_matching(rest, |m| matches!(m, ServerMessage::RecordingStopped { .. })).await;
        next_matching(rest, |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    }
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();

    // The recorder stores the files shortly after the end.
    let url = |p: &str| format!("{}{p}", app.base);
    let list: RecordingList = tokio::time::timeout(WAIT, async {
        loop {
            let r = http.get(url(&format!("/v1/sessions/{session_id}/recordings"))).bearer_auth(&seeker_token);
            let list: RecordingList = r.send().await.unwrap().json().await.unwrap();
            if list.recordings.len() >= 4 {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("recordings stored");
    let file = |who: &str, kind: &str| {
        list.recordings
            .iter()
            .find(|f| f.participant_id.as_ref().map(UserId::as_str) == Some(who) && f.kind == kind)
            .unwrap_or_else(|| panic!("{who} {kind} in {list:?}"))
            .clone()
    };

    // The seeker's audio: a valid Ogg Opus stream holding about the call's
    // length of 20 ms packets.
    let audio = file("sam", "audio");
    assert_eq!(audio.content_type, "audio/ogg");
    let bytes = http.get(url(&audio.url)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(bytes.len() as u64, audio.bytes);
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(bytes.to_vec()));
    let head = reader.read_packet().unwrap().expect("OpusHead");
    assert_eq!(&head.data[..8], b"OpusHead");
    let mut packets = 0;
    let mut last_granule = 0;
    while let Some(p) = reader.read_packet().unwrap() {
        packets += 1;
        last_granule = p.absgp_page();
    }
    // 3 s of talk plus set-up: at least 2.5 s of packets, granule in 48 kHz.
    assert!(packets >= 125, "{packets} packets");
    assert!(last_granule >= 48_000 * 5 / 2, "granule {last_granule}");

    // The seeker's video: an IVF file with about 10 frames per second.
    let video = file("sam", "video");
    let ivf = http.get(url(&video.url)).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&ivf[..4], b"DKIF");
    assert_eq!(&ivf[8..12], b"VP80");
    let frames = u32::from_le_bytes(ivf[24..28].try_into().unwrap());
    assert!(frames >= 25, "{frames} video frames");
    assert_eq!((u16::from_le_bytes([ivf[12], ivf[13]]), u16::from_le_bytes([ivf[14], ivf[15]])), (64, 48));

    // The recap: who talked, the chat and notes, the billing outcome.
    let recap: Recap = http
        .get(url(&format!("/v1/sessions/{session_id}/recap")))
        .bearer_auth(&seeker_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(recap.recorded);
    let share = |who: &str| recap.talk_time.iter().find(|t| t.user_id.as_str() == who).map_or(0, |t| t.share_percent);
    assert!(share("sam") >= 90 && share("cora") <= 10, "talk time {:?}", recap.talk_time);
    assert_eq!(recap.chat.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["Here is my question"]);
    assert_eq!(recap.notes.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(), ["Follow up: send the contract"]);
    assert!(recap.session.outcome.is_some(), "billing outcome in the recap");
    let kinds: Vec<&str> = recap.session.timeline.iter().map(|t| t.kind.as_str()).collect();
    assert!(kinds.contains(&"recording_started") && kinds.contains(&"ended"), "{kinds:?}");
    let md = http
        .get(url(&format!("/v1/sessions/{session_id}/recap?format=markdown")))
        .bearer_auth(&consultant_token)
        .send()
        .await
        .unwrap();
    assert_eq!(md.status(), 200);
    let md = md.text().await.unwrap();
    assert!(md.contains("## Talk time") && md.contains("Follow up: send the contract"), "{md}");

    // Only the session's premium seeker and its consultant may read them.
    let stranger = app.token("eve", Role::Seeker);
    let r =
        http.get(url(&format!("/v1/sessions/{session_id}/recordings"))).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(r.status(), 403);
    put("/v1/seekers/sam/premium", &moderator, serde_json::json!({"premium": false})).await.unwrap();
    let r = http.get(url(&format!("/v1/sessions/{session_id}/recap"))).bearer_auth(&seeker_token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "premium_required");
    let premium_claim = app.auth.issue_with(&common::user("sam", Role::Seeker), true, WAIT, app.clock.now());
    let r =
        http.get(url(&format!("/v1/sessions/{session_id}/recap"))).bearer_auth(&premium_claim).send().await.unwrap();
    assert_eq!(r.status(), 200, "a token's premium claim counts");
}

/// A VP8 inter frame (frame tag P bit set): useless without a key frame.
const VP8_INTER_FRAME: [u8; 8] = [0x51, 0x2a, 0x00, 0xff, 0x10, 0x20, 0x30, 0x40];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recorder_asks_for_a_key_frame_while_it_has_none() {
    let app = spawn_app_with(|c| c.recorder = RecorderMode::Embedded).await;
    let api = parley_sdk::ApiClient::new(&app.base).unwrap();
    api.set_recording_allowed(&app.token("cora", Role::Consultant), true).await.unwrap();
    let (consultant, c_events) = app.available_consultant("cora").await;
    let premium = app.auth.issue_with(&common::user("sam", Role::Seeker), true, WAIT * 60, app.clock.now());
    let (seeker, s_events) = parley_sdk::SignalingClient::connect(&app.ws_url, &premium).await.unwrap();
    let (c_call_tx, mut c_rest) = pump(c_events);
    let (s_call_tx, _s_rest) = pump(s_events);
    let ringing = seeker.call_with(&UserId::parse("cora").unwrap(), Some("pm_card_visa"), true).await.unwrap();
    let ServerMessage::CallIncoming { call_id, .. } =
        next_matching(&mut c_rest, |m| matches!(m, ServerMessage::CallIncoming { .. })).await
    else {
        unreachable!()
    };
    consultant.accept(&call_id).await.unwrap();
    let session_id = ringing.session_id.clone();
    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    let c_room = consultant.join(&session_id).await.unwrap();
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await.unwrap());
    let _ = c_call_tx.send(c_call.clone());
    // The seeker's camera sends only inter frames: the recorder cannot
    // start the file and keeps asking for a key frame.
    let s_config = CallConfig { send_video: true, video_payload: Bytes::from_static(&VP8_INTER_FRAME), ..config };
    let s_room = seeker.join(&session_id).await.unwrap();
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, s_config).await.unwrap());
    let _ = s_call_tx.send(s_call.clone());

    let requests = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(uplink) = s_call.recording_uplink() {
                let n = uplink.key_frame_requests_received();
                if n >= 2 {
                    return n;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the recorder sends PLIs while it has no key frame");
    assert!(requests >= 2, "repeated while no key frame comes");
    // The consultant sends no video: nobody asks it for key frames.
    let c_uplink = c_call.recording_uplink().expect("the consultant's uplink");
    assert_eq!(c_uplink.key_frame_requests_received(), 0);

    seeker.end_session(&session_id).await.unwrap();
    next_matching(&mut c_rest, |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();
}
