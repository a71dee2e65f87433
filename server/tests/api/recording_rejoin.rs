//! A recorded call in which a participant's network drops and comes back
//! within the grace period (issue 6): the recorder drops its connection to
//! that participant, offers a new one when they are back, and the
//! participant's Ogg file shows the absence as a gap — filled with Opus
//! loss-concealment packets, granule positions covering it — with nothing
//! corrupt. The file is downloaded through the SDK's REST client and read
//! by the `ogg` crate plus a TOC parser of this test's own.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use crate::common::{Proxy, WAIT, next_matching, pump, spawn_app_with};
use bytes::Bytes;
use parley_domain::protocol::rest::RecordingList;
use parley_domain::protocol::{Role, ServerMessage};
use parley_domain::{Clock, SessionId, UserId};
use parley_sdk::call::{Call, CallConfig};
use parley_sdk::session::SessionCall;
use parley_sdk::{ApiClient, SignalingClient};
use parley_server::config::RecorderMode;

/// 48 kHz samples per second (Opus granule positions).
const RATE: u64 = 48_000;

/// A 20 ms fullband CELT Opus frame that is not silence (41 bytes).
fn speech_frame() -> Bytes {
    let mut frame = vec![0xF8];
    frame.extend((0..40u8).map(|i| i.wrapping_mul(37)));
    Bytes::from(frame)
}

/// Samples in an Opus packet, from its TOC (RFC 6716 §3.1); `None` if malformed.
fn opus_samples(packet: &[u8]) -> Option<u64> {
    let toc = *packet.first()?;
    let config = toc >> 3;
    let per_frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(*packet.get(1)? & 0x3F),
    };
    (frames > 0 && per_frame * frames <= 5760).then_some(per_frame * frames)
}

/// A loss-concealment packet as RFC 7845 §4.1 suggests: code 3 (a frame
/// count byte), every frame empty.
fn is_plc(packet: &[u8]) -> bool {
    packet.len() == 2 && packet[0] & 0x03 == 0x03
}

/// The participant's uplink to the recorder once it is connected; with
/// `not`, a different one (after a reconnect).
async fn connected_uplink(call: &SessionCall, not: Option<&Arc<Call>>) -> Arc<Call> {
    let uplink = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(u) = call.recording_uplink()
                && not.is_none_or(|old| !Arc::ptr_eq(old, &u))
            {
                return u;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the recorder offered");
    uplink.wait_connected(WAIT).await.expect("uplink to the recorder connected");
    uplink
}

/// The session's recording once the recorder stored it (the manifest is
/// registered last).
async fn stored(api: &ApiClient, token: &str, session_id: &SessionId) -> RecordingList {
    tokio::time::timeout(WAIT, async {
        loop {
            let list = api.recordings(token, session_id).await.unwrap();
            if list.recordings.iter().any(|f| f.kind == "manifest") {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("recording stored")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_who_drops_and_rejoins_leaves_a_gap_in_the_recording_not_corruption() {
    let app = spawn_app_with(|c| c.recorder = RecorderMode::Embedded).await;
    let api = ApiClient::new(&app.base).unwrap();
    let proxy = Proxy::start(&app).await;
    let consultant_token = app.token("cora", Role::Consultant);
    assert!(api.set_recording_allowed(&consultant_token, true).await.unwrap().allowed);
    let (consultant, c_events) = app.available_consultant("cora").await;
    // The seeker (premium by its token's claim) connects through the proxy.
    let premium = app.auth.issue_with(&common::user("sam", Role::Seeker), true, WAIT * 60, app.clock.now());
    let (seeker, s_events) = SignalingClient::connect(&proxy.ws_url, &premium).await.unwrap();
    let (c_call_tx, mut c_rest) = pump(c_events);
    let (s_call_tx, mut s_rest) = pump(s_events);

    let cora = UserId::parse("cora").unwrap();
    let ringing = seeker.call_with(&cora, Some("pm_card_visa"), true).await.unwrap();
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
    let s_room = seeker.join(&session_id).await.unwrap();
    let s_config = CallConfig { audio_payload: speech_frame(), ..config };
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, s_config).await.unwrap());
    let _ = s_call_tx.send(s_call.clone());
    next_matching(&mut s_rest, |m| matches!(m, ServerMessage::RecordingStarted { .. })).await;
    let first = connected_uplink(&s_call, None).await;
    connected_uplink(&c_call, None).await;

    // The seeker talks, then its network goes down for about two seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_refusing(true);
    proxy.cut();
    let is_sam = |u: &UserId| u.as_str() == "sam";
    next_matching(&mut c_rest, |m| matches!(m, ServerMessage::ParticipantLeft { user_id, .. } if is_sam(user_id)))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set_refusing(false);

    // The SDK resumes by itself; the recorder offers a new connection.
    next_matching(&mut c_rest, |m| matches!(m, ServerMessage::ParticipantJoined { user, .. } if is_sam(&user.id)))
        .await;
    connected_uplink(&s_call, Some(&first)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    seeker.end_session(&session_id).await.unwrap();
    next_matching(&mut c_rest, |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();

    let list = stored(&api, &consultant_token, &session_id).await;
    let file = |kind: &str, who: Option<&str>| {
        list.recordings
            .iter()
            .find(|f| f.kind == kind && f.participant_id.as_ref().map(UserId::as_str) == who)
            .unwrap_or_else(|| panic!("{kind} of {who:?} in {list:?}"))
    };
    let manifest: serde_json::Value =
        serde_json::from_slice(&api.download(&file("manifest", None).url).await.unwrap()).unwrap();
    let track = manifest["tracks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["participant_id"] == "sam" && t["kind"] == "audio")
        .expect("the seeker's audio in the manifest")
        .clone();
    assert_eq!(track["streams"], 2, "two RTP streams: before and after the drop: {track}");

    // The seeker's Ogg Opus file: every page's granule is the samples so
    // far, every packet a valid Opus packet, and one run of loss
    // concealment covers the absence, with speech before and after it.
    let ogg = api.download(&file("audio", Some("sam")).url).await.unwrap();
    let mut reader = ogg::PacketReader::new(std::io::Cursor::new(ogg.to_vec()));
    let head = reader.read_packet().unwrap().expect("OpusHead");
    assert_eq!(&head.data[..8], b"OpusHead");
    let tags = reader.read_packet().unwrap().expect("OpusTags");
    assert_eq!(&tags.data[..8], b"OpusTags");
    let (mut samples, mut pages) = (0u64, 0);
    // (PLC samples, speech samples) of each run, in order.
    let mut runs: Vec<(bool, u64)> = Vec::new();
    while let Some(p) = reader.read_packet().expect("the file is not corrupt") {
        let n = opus_samples(&p.data).unwrap_or_else(|| panic!("invalid Opus packet {:?}", p.data));
        let plc = is_plc(&p.data);
        assert!(plc || p.data[..] == speech_frame()[..], "only the seeker's frames or PLC: {:?}", p.data);
        match runs.last_mut() {
            Some((kind, len)) if *kind == plc => *len += n,
            _ => runs.push((plc, n)),
        }
        samples += n;
        if p.last_in_page() {
            assert_eq!(p.absgp_page(), samples, "granule = samples so far (page {pages})");
            pages += 1;
        }
    }
    let gaps: Vec<u64> = runs.iter().filter(|(plc, _)| *plc).map(|(_, n)| *n).collect();
    // Small holes may also be filled (a late packet); the absence is the long one.
    let longest = gaps.iter().copied().max().unwrap_or(0);
    assert!(longest >= RATE * 3 / 2, "a gap of at least 1.5 s for the ~2 s away, got {longest} samples: {runs:?}");
    let at = runs.iter().position(|(plc, n)| *plc && *n == longest).unwrap();
    let speech = |rs: &[(bool, u64)]| rs.iter().filter(|(plc, _)| !plc).map(|(_, n)| n).sum::<u64>();
    assert!(speech(&runs[..at]) >= RATE, "speech before the drop: {runs:?}");
    assert!(speech(&runs[at + 1..]) >= RATE, "speech after the rejoin: {runs:?}");
    // The file covers the whole call: ~2 s + ~2 s away + ~2 s, and more.
    assert!(samples >= RATE * 5, "{samples} samples");
    assert_eq!(track["duration_ms"].as_u64().unwrap(), samples * 1000 / RATE);
}
