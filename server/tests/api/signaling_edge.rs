//! The signaling edge: bad input, floods, tokens, shutdown, health and
//! dev login, clean closes against drops, presence after a resume, and
//! simultaneous joins (split from `signaling.rs`, which holds calls, rooms
//! and resumes).

use crate::common;

use std::time::Duration;

use crate::common::{WAIT, incoming, spawn_app, spawn_app_with};
use parley_domain::protocol::{AckResult, ClientMessage, ErrorCode, LeaveReason, PresenceStatus, Role, ServerMessage};
use parley_sdk::{Event, SdkError, SignalingClient};
use parley_signaling::Store;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::signaling::{connected_pair, dropped, raw_consultant_in_a_room, uid};

/// After a flood on `raw`: sends ping probes (every 500 ms, as the limit may
/// drop one) until one is acked, and counts what came first: the messages
/// `flood` recognises as the flood's replies, and id-less `rate_limited`
/// notices. Anything else fails the test.
async fn probe_after_flood(raw: &mut common::Raw, flood: impl Fn(&ServerMessage) -> bool) -> (usize, usize) {
    let (mut replies, mut notices) = (0, 0);
    let deadline = tokio::time::Instant::now() + WAIT;
    for probe in 0.. {
        assert!(tokio::time::Instant::now() < deadline, "no probe acked within {WAIT:?}");
        raw.send(format!(r#"{{"type":"ping","id":"probe{probe}"}}"#)).await;
        while let Some(env) = raw.recv_within(Duration::from_millis(500)).await {
            match env.msg {
                ServerMessage::Ack { id, .. } if id.starts_with("probe") => return (replies, notices),
                ServerMessage::Error { id: None, code: ErrorCode::RateLimited, .. } => notices += 1,
                m if flood(&m) => replies += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    unreachable!()
}

/// Sends `n` copies of `frame` on `raw`'s connection from a task (stopping
/// at the first failure: the server may close it) while this reads it
/// until the server closes it: the close code (`None` if the connection
/// was reset before the close frame could be read) and the messages that
/// came first.
async fn flood_until_closed(raw: common::Raw, frame: WsMessage, n: usize) -> (Option<u16>, Vec<ServerMessage>) {
    use futures_util::{SinkExt, StreamExt};
    let (mut tx, mut rx) = raw.ws.split();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            if tx.feed(frame.clone()).await.is_err() || (i % 64 == 63 && tx.flush().await.is_err()) {
                return;
            }
        }
        let _ = tx.flush().await;
    });
    let mut got = Vec::new();
    let code = loop {
        match tokio::time::timeout(WAIT, rx.next()).await.expect("closed in time") {
            Some(Ok(WsMessage::Text(t))) => {
                got.push(serde_json::from_str::<parley_domain::protocol::ServerEnvelope>(&t).unwrap().msg)
            }
            Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => break None,
        }
    };
    sender.await.unwrap();
    (code, got)
}

#[tokio::test]
async fn bad_input_gets_a_coded_error_and_the_connection_and_other_sessions_go_on() {
    let app = spawn_app_with(|c| {
        c.signaling.rate_limit_per_sec = 20;
        c.signaling.rate_limit_burst = 40;
    })
    .await;
    // Another session that must not be disturbed.
    let (other_seeker, mut other_s, other_consultant, mut other_c, other_session) =
        connected_pair(&app, "sue", "carl").await;

    let mut raw = app.raw("mallory", Role::Seeker).await;
    raw.send("{this is not json").await;
    assert_eq!(raw.recv_error().await.1, ErrorCode::MalformedJson);
    raw.assert_alive("a1").await;

    raw.send(r#"{"id":"x1","type":"call.teleport"}"#).await;
    let (id, code, message) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("x1"), ErrorCode::UnknownType));
    assert!(message.contains("call.teleport"), "{message}");
    raw.assert_alive("a2").await;

    raw.send(r#"{"id":"x2","type":"call.request"}"#).await;
    let (id, code, message) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("x2"), ErrorCode::MissingField));
    assert!(message.contains("consultant_id"), "{message}");
    raw.assert_alive("a3").await;

    let huge = format!(r#"{{"id":"x3","type":"ping","pad":"{}"}}"#, "x".repeat(70 * 1024));
    raw.send(huge).await;
    assert_eq!(raw.recv_error().await.1, ErrorCode::FrameTooLarge);
    raw.assert_alive("a4").await;

    let sdp = "a".repeat(33 * 1024);
    raw.send(format!(r#"{{"id":"x4","type":"sdp.offer","session_id":"{other_session}","sdp":"{sdp}"}}"#)).await;
    let (id, code, _) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("x4"), ErrorCode::SdpTooLarge));
    raw.assert_alive("a5").await;

    raw.send(format!(r#"{{"id":"x5","type":"sdp.offer","session_id":"{other_session}","sdp":"v=0"}}"#)).await;
    let (id, code, _) = raw.recv_error().await;
    assert_eq!((id.as_deref(), code), (Some("x5"), ErrorCode::NotInRoom));
    raw.assert_alive("a6").await;

    use futures_util::SinkExt;
    raw.ws.send(tokio_tungstenite::tungstenite::Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(raw.recv_error().await.1, ErrorCode::BinaryNotSupported);

    raw.send(r#"{"id":"x6","type":"resume","resume_token":"t","last_seq":1}"#).await;
    assert_eq!(raw.recv_error().await.1, ErrorCode::ResumeNotFirst);

    // A request without its id could not receive its result: refused.
    raw.send(r#"{"type":"call.request","consultant_id":"carl"}"#).await;
    let (id, code, _) = raw.recv_error().await;
    assert_eq!((id, code), (None, ErrorCode::MissingField));

    // A flood of requests (on a fresh connection: a full bucket and no
    // notice yet): past the burst each is dropped unread and unanswered;
    // one id-less rate_limited notice says so (not one each).
    let mut flooder = app.raw("flo", Role::Seeker).await;
    for i in 0..100 {
        flooder.send(format!(r#"{{"type":"ping","id":"f{i}"}}"#)).await;
    }
    let (acks, notices) = probe_after_flood(&mut flooder, |m| match m {
        ServerMessage::Ack { id, .. } => id.starts_with('f'),
        _ => false,
    })
    .await;
    assert!((40..60).contains(&acks), "{acks} of 100 acked (burst 40, 20/s)");
    assert!((1..=3).contains(&notices), "{notices} rate_limited notices for one flood (one a second at most)");

    // The other session was not disturbed.
    other_seeker
        .send(ClientMessage::SdpOffer { session_id: other_session.clone(), sdp: "v=0 still here".into(), to: None })
        .unwrap();
    other_c
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SdpOffer { sdp, .. } if sdp == "v=0 still here").then_some(()))
        .await
        .unwrap();
    other_consultant.end_session(&other_session).await.unwrap();
    other_s.wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(())).await.unwrap();
}

/// Issue 13 §7: every frame (text or binary, any size, valid or not) is
/// charged to the connection's rate limit before any work, large ones by
/// their size; a flood gets one `rate_limited` notice, not a reply per
/// frame, and a connection that keeps flooding is closed (4002).
#[tokio::test]
async fn floods_of_binary_and_large_frames_are_limited_before_any_work() {
    use futures_util::SinkExt;
    // A slow refill, so a loaded machine reading the flood slowly does not
    // change the counts much.
    let app = spawn_app_with(|c| {
        c.signaling.rate_limit_per_sec = 2;
        c.signaling.rate_limit_burst = 40;
    })
    .await;
    let burst = 40;

    // 300 one-byte binary frames: a burst's worth is answered, the rest is
    // dropped unread with one notice, and the connection goes on.
    let mut raw = app.raw("mallory", Role::Seeker).await;
    for _ in 0..300 {
        raw.ws.feed(WsMessage::Binary(vec![0].into())).await.unwrap();
    }
    raw.ws.flush().await.unwrap();
    let binary = |m: &ServerMessage| matches!(m, ServerMessage::Error { code: ErrorCode::BinaryNotSupported, .. });
    let (answered, notices) = probe_after_flood(&mut raw, binary).await;
    assert!((burst..burst + 10).contains(&answered), "{answered} of 300 binary frames answered (burst {burst})");
    assert!((1..=3).contains(&notices), "{notices} rate_limited notices for one flood (one a second at most)");

    // 20,000 of them: the connection is closed once its dropped frames pass
    // ten bursts, having answered about one burst.
    let raw = app.raw("trudy", Role::Seeker).await;
    let (code, got) = flood_until_closed(raw, WsMessage::Binary(vec![0].into()), 20_000).await;
    assert!(matches!(code, Some(parley_signaling::CLOSE_RATE_LIMITED) | None), "closed with {code:?}");
    let answered = got.iter().filter(|m| binary(m)).count();
    assert!(answered < burst + 10, "{answered} of 20000 binary frames answered");
    assert!(got.iter().all(|m| binary(m) || matches!(m, ServerMessage::Error { code: ErrorCode::RateLimited, .. })));

    // Large frames count by size: a 900 KiB frame costs a whole burst, so
    // of 30 only the first is read (and refused as too large).
    let raw = app.raw("oscar", Role::Seeker).await;
    let big = WsMessage::Text(format!(r#"{{"type":"ping","id":"big","pad":"{}"}}"#, "x".repeat(900 * 1024)).into());
    let (code, got) = flood_until_closed(raw, big, 30).await;
    assert!(matches!(code, Some(parley_signaling::CLOSE_RATE_LIMITED) | None), "closed with {code:?}");
    let too_large =
        got.iter().filter(|m| matches!(m, ServerMessage::Error { code: ErrorCode::FrameTooLarge, .. })).count();
    assert!(too_large <= 2, "{too_large} of 30 large frames were read");

    // Other clients are not affected.
    let mut raw = app.raw("sue", Role::Seeker).await;
    raw.assert_alive("fine").await;
}

#[tokio::test]
async fn missing_forged_and_expired_tokens_are_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let err = SignalingClient::connect(&app.ws_url, "").await.unwrap_err();
    assert!(matches!(err, SdkError::Unauthorized { code: ErrorCode::MissingToken, .. }), "{err:?}");
    let forged = parley_signaling::Authenticator::new(b"not-the-secret").issue(
        &common::user("sam", Role::Seeker),
        Duration::from_secs(60),
        parley_domain::Clock::now(&*app.clock),
    );
    let err = SignalingClient::connect(&app.ws_url, &forged).await.unwrap_err();
    assert!(matches!(err, SdkError::Unauthorized { code: ErrorCode::InvalidToken, .. }), "{err:?}");
    let an_hour_ago =
        parley_domain::Timestamp::from_unix_millis(parley_domain::Clock::now(&*app.clock).unix_millis() - 3_600_000);
    let expired = app.auth.issue(&common::user("sam", Role::Seeker), Duration::from_secs(60), an_hour_ago);
    let err = SignalingClient::connect(&app.ws_url, &expired).await.unwrap_err();
    assert!(matches!(err, SdkError::Unauthorized { code: ErrorCode::TokenExpired, .. }), "{err:?}");
    // Plain HTTP sees the same 401 JSON.
    let resp = reqwest::get(format!("{}/v1/consultants", app.base)).await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: parley_domain::protocol::ErrorBody = resp.json().await.unwrap();
    assert_eq!(body.code, ErrorCode::MissingToken);
}

#[tokio::test]
async fn shutdown_tells_clients_and_closes_them_cleanly() {
    let mut app = spawn_app().await;
    let (_seeker, mut events) = app.client("sam", Role::Seeker).await;
    let mut raw = app.raw("ray", Role::Seeker).await;
    app.stop().await;
    events.wait_for(WAIT, |m| matches!(m, ServerMessage::ServerShutdown { .. }).then_some(())).await.unwrap();
    assert!(matches!(raw.recv().await.msg, ServerMessage::ServerShutdown { .. }));
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message as Frame;
    // A ping asking to confirm what was read may come first (§8.7).
    let mut next = raw.ws.next().await;
    while let Some(Ok(Frame::Ping(_))) = next {
        next = raw.ws.next().await;
    }
    match next {
        Some(Ok(Frame::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1001),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    // The SDK client tries to resume and reports it.
    let got = tokio::time::timeout(WAIT, events.recv()).await.unwrap();
    assert_eq!(got, Some(Event::Reconnecting));
}

#[tokio::test]
async fn health_readiness_metrics_and_the_consultant_list() {
    let app = spawn_app().await;
    let get = |path: &str| reqwest::get(format!("{}{path}", app.base));
    assert_eq!(get("/healthz").await.unwrap().text().await.unwrap(), "ok");
    assert_eq!(get("/readyz").await.unwrap().status(), 200);
    let (_c, _ce) = app.available_consultant("cora").await;
    let api = parley_sdk::ApiClient::new(&app.base).unwrap();
    let list = api.consultants(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!(list[0].id.as_str(), "cora", "available consultants first: {list:?}");
    assert_eq!(list[0].presence, PresenceStatus::Available);
    assert!(list.iter().any(|c| c.id.as_str() == "demo-consultant" && c.presence == PresenceStatus::Offline));
    // An error of this test's own, so the error counter exists whatever
    // ran before in this process.
    let mut raw = app.raw("erin", Role::Seeker).await;
    raw.send(r#"{"id":"x","type":"no.such.type"}"#).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Error { .. }).then_some(())).await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for name in ["parley_signal_connections", "parley_signal_messages_received_total", "parley_signal_errors_total"] {
        assert!(metrics.contains(name), "{name} missing from /metrics:\n{metrics}");
    }
}

#[tokio::test]
async fn dev_login_exists_only_in_dev_mode() {
    let app = spawn_app().await;
    let api = parley_sdk::ApiClient::new(&app.base).unwrap();
    let (token, user) = api.dev_login("demo-seeker", "ignored", Role::Consultant).await.unwrap();
    assert_eq!((user.name.as_str(), user.role), ("Sam Seeker", Role::Seeker), "known users keep their identity");
    SignalingClient::connect(&app.ws_url, &token).await.expect("the dev token works");
    let prod = spawn_app_with(|c| c.mode = parley_server::config::Mode::Prod).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/dev/login", prod.base))
        .json(&serde_json::json!({"user_id": "demo-seeker"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

/// Issue 13 §6: dev login mints seekers and consultants only. A recorder
/// (which receives recorded sessions' media) or a moderator (who refunds)
/// gets 403 `role_not_allowed`, whether asked for as a new user's role or
/// by the id of an existing one; their tokens come from the operator.
async fn dev_login_mints_seekers_and_consultants_only(app: &common::TestApp) {
    let http = reqwest::Client::new();
    let login = |body: serde_json::Value| http.post(format!("{}/v1/dev/login", app.base)).json(&body).send();
    let refused = |r: reqwest::Response| async move {
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: serde_json::Value = r.json().await.unwrap();
        assert_eq!(problem["code"], "role_not_allowed", "{problem}");
    };
    for role in ["recorder", "moderator"] {
        let id = format!("new-{role}");
        refused(login(serde_json::json!({"user_id": id, "name": "Eve", "role": role})).await.unwrap()).await;
        assert!(app.store.user(&uid(&id)).await.unwrap().is_none(), "no {role} was created");
    }
    // The embedded recorder's id, once it connected with its operator token.
    let (_recorder, _events) = app.client("parley-recorder", Role::Recorder).await;
    common::until("the recorder is stored", || async {
        app.store.user(&uid("parley-recorder")).await.unwrap().is_some()
    })
    .await;
    refused(login(serde_json::json!({"user_id": "parley-recorder"})).await.unwrap()).await;
    refused(login(serde_json::json!({"user_id": "parley-recorder", "name": "R", "role": "seeker"})).await.unwrap())
        .await;
    // Seekers and consultants still log in.
    let r = login(serde_json::json!({"user_id": "new-consultant", "name": "Nia", "role": "consultant"})).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["user"]["role"], "consultant");
}

#[tokio::test]
async fn dev_login_mints_seekers_and_consultants_only_on_sqlite() {
    dev_login_mints_seekers_and_consultants_only(&spawn_app().await).await;
}

#[tokio::test]
async fn dev_login_mints_seekers_and_consultants_only_on_postgres() {
    dev_login_mints_seekers_and_consultants_only(&common::spawn_app_on_postgres().await).await;
}

#[tokio::test]
async fn joining_a_room_hands_out_stun_and_time_limited_turn_credentials() {
    let app = spawn_app_with(|c| {
        c.signaling.ice.stun_urls = vec!["stun:stun.example.org:3478".into()];
        c.signaling.ice.turn_urls = vec!["turn:turn.example.org:3478?transport=udp".into()];
        c.signaling.ice.turn_secret = Some("north".into());
        c.signaling.ice.turn_ttl = Duration::from_secs(600);
    })
    .await;
    let (seeker, _se, _consultant, _ce, session_id) = connected_pair(&app, "sam", "cora").await;
    let room = seeker.join(&session_id).await.unwrap();
    assert_eq!(room.ice_servers.len(), 2);
    assert_eq!(room.ice_servers[0].urls, ["stun:stun.example.org:3478"]);
    let turn = &room.ice_servers[1];
    let expiry = parley_domain::Clock::now(&*app.clock).unix_secs() + 600;
    let username = format!("{expiry}:sam");
    assert_eq!(turn.username.as_deref(), Some(username.as_str()));
    assert_eq!(turn.credential.as_deref(), Some(parley_signaling::turn::turn_password("north", &username).as_str()));
}

/// `id`'s presence as the consultant list (`GET /v1/consultants`) shows it.
async fn listed_presence(app: &common::TestApp, id: &str) -> PresenceStatus {
    let api = parley_sdk::ApiClient::new(&app.base).unwrap();
    let list = api.consultants(&app.token("sam", Role::Seeker)).await.unwrap();
    list.iter().find(|c| c.id.as_str() == id).map_or(PresenceStatus::Offline, |c| c.presence)
}

#[tokio::test]
async fn a_clean_close_is_final_while_a_drop_waits_for_resume() {
    let app = spawn_app().await;
    // An available consultant who closes cleanly is offline at once.
    let (consultant, _ce) = app.available_consultant("cora").await;
    let (seeker, _se) = app.client("sam", Role::Seeker).await;
    consultant.close();
    common::until("cora offline", || async { listed_presence(&app, "cora").await == PresenceStatus::Offline }).await;
    let err = seeker.call(&uid("cora"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ConsultantUnavailable));
    assert!(err.to_string().contains("offline"), "{err}");

    // In a room, a clean close is `left`; the resume token is dead.
    let (_seeker, mut s_events, mut raw, _session) = raw_consultant_in_a_room(&app).await;
    let (token, last_seq) = (raw.resume_token.clone(), raw.last_seq);
    raw.ws.close(None).await.unwrap();
    assert_eq!(dropped(&mut s_events).await, (uid("cora"), LeaveReason::Left, 30));
    let mut again = app.raw("cora", Role::Consultant).await;
    again.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    assert_eq!(again.recv_error().await.1, ErrorCode::ResumeFailed);
}

#[tokio::test]
async fn a_dropped_consultant_is_not_rung_until_they_resume() {
    let app = spawn_app().await;
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(r#"{"id":"p","type":"presence.set","status":"available"}"#).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { .. }).then_some(())).await;
    let (token, last_seq) = (raw.resume_token.clone(), raw.last_seq);
    let (seeker, _se) = app.client("sam", Role::Seeker).await;
    drop(raw);
    let not_available = || async { listed_presence(&app, "cora").await != PresenceStatus::Available };
    common::until("the drop is seen", not_available).await;
    let err = seeker.call(&uid("cora"), None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ConsultantUnavailable));

    // A reconnect attempt that dies before its `resume` does not make the
    // dropped state unreachable. While it is connected cora is available
    // again (she asked to be); once its drop is seen she is not.
    let attempt = app.raw("cora", Role::Consultant).await;
    common::until("the attempt is connected", || async {
        listed_presence(&app, "cora").await == PresenceStatus::Available
    })
    .await;
    drop(attempt);
    common::until("the attempt's drop is seen", not_available).await;
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { id, .. } if id == "r").then_some(())).await;
    // Available again, as before the drop.
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    let incoming = raw
        .recv_until(|m| match m {
            ServerMessage::CallIncoming { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .await;
    assert_eq!(incoming, ringing.call_id);
}

#[tokio::test]
async fn strangers_learn_nothing_about_ended_sessions() {
    let app = spawn_app().await;
    let (seeker, _se, _c, _ce, session_id) = connected_pair(&app, "sam", "cora").await;
    seeker.end_session(&session_id).await.unwrap();
    let (stranger, _st) = app.client("eve", Role::Seeker).await;
    assert_eq!(stranger.join(&session_id).await.unwrap_err().code(), Some(ErrorCode::Forbidden));
    assert_eq!(seeker.join(&session_id).await.unwrap_err().code(), Some(ErrorCode::SessionEnded));
}

#[tokio::test]
async fn shutdown_ends_ringing_calls_before_saying_goodbye() {
    let mut app = spawn_app().await;
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    let ringing = seeker.call(&uid("cora"), None).await.unwrap();
    incoming(&mut c_events).await;
    app.stop().await;
    for events in [&mut s_events, &mut c_events] {
        let mut seen = Vec::new();
        while let Some(Event::Server(m)) = tokio::time::timeout(WAIT, events.recv()).await.unwrap() {
            let done = matches!(m, ServerMessage::ServerShutdown { .. });
            seen.push(m.type_name());
            if done {
                break;
            }
        }
        let ended = seen.iter().position(|t| *t == "call.ended").expect("call.ended arrived");
        assert!(ended < seen.len() - 1, "call.ended before server.shutdown: {seen:?}");
    }
    assert_eq!(app.store.call(&ringing.call_id).await.unwrap().unwrap().state, "server_shutdown");
}

#[tokio::test]
async fn a_message_over_one_mebibyte_closes_with_1009() {
    let app = spawn_app().await;
    let mut raw = app.raw("mallory", Role::Seeker).await;
    use futures_util::SinkExt;
    let huge = "x".repeat(parley_signaling::WS_MAX_MESSAGE_BYTES + 1);
    let _ = raw.ws.send(tokio_tungstenite::tungstenite::Message::Text(huge.into())).await;
    assert_eq!(raw.recv_close().await, Some(1009));
}

#[tokio::test]
async fn a_fragmented_request_is_read_whole_and_text_that_is_not_utf8_closes_with_1007() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let app = spawn_app().await;
    let mut raw = app.raw("mallory", Role::Seeker).await;
    let (other, _other_events) = app.client("sam", Role::Seeker).await;
    // A request in two fragments (RFC 6455 §5.4) is one message.
    let ping = br#"{"id":"f","type":"ping"}"#;
    let first = Frame::message(ping[..10].to_vec(), OpCode::Data(Data::Text), false);
    raw.ws.send(WsMessage::Frame(first)).await.unwrap();
    let rest = Frame::message(ping[10..].to_vec(), OpCode::Data(Data::Continue), true);
    raw.ws.send(WsMessage::Frame(rest)).await.unwrap();
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { id, .. } if id == "f").then_some(())).await;
    // Text that is not UTF-8 (§8.1) closes with 1007.
    let bad = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    raw.ws.send(WsMessage::Frame(bad)).await.unwrap();
    assert_eq!(raw.recv_close().await, Some(1007));
    // Another connection is not disturbed.
    let pong = other.request(ClientMessage::Ping).await.expect("the other connection still answers");
    assert!(matches!(pong, Some(AckResult::Pong { .. })), "{pong:?}");
}

#[tokio::test]
async fn presence_reported_while_away_is_corrected_on_resume() {
    let app = spawn_app_with(|c| c.signaling.ring_timeout = Duration::from_secs(10)).await;
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(r#"{"id":"p","type":"presence.set","status":"available"}"#).await;
    raw.recv_until(|m| matches!(m, ServerMessage::Ack { .. }).then_some(())).await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), None).await.unwrap();
    raw.recv_until(|m| matches!(m, ServerMessage::CallIncoming { .. }).then_some(())).await;
    let (token, last_seq) = (raw.resume_token.clone(), raw.last_seq);
    drop(raw);
    // The ring times out while the consultant is away: they are told
    // `offline` (their state then), which is replayed on resume…
    app.advance(Duration::from_secs(10)).await;
    s_events.wait_for(WAIT, |m| matches!(m, ServerMessage::CallEnded { .. }).then_some(())).await.unwrap();
    let mut raw = app.raw("cora", Role::Consultant).await;
    raw.send(format!(r#"{{"id":"r","type":"resume","resume_token":"{token}","last_seq":{last_seq}}}"#)).await;
    let mut presence = Vec::new();
    loop {
        match raw.recv().await.msg {
            ServerMessage::PresenceUpdated { status } => presence.push(status),
            ServerMessage::Ack { id, .. } if id == "r" => break,
            _ => {}
        }
    }
    // …and corrected: back and available, as they asked before the drop.
    assert_eq!(presence.last(), Some(&PresenceStatus::Available), "{presence:?}");
    seeker.call(&uid("cora"), None).await.expect("ringable again");
}

/// Two joins at once: a `participant.joined` that reaches a client before
/// its `room.join` ack is always reflected in that ack's participants (the
/// seeker decides to offer from the ack; a stale empty list left it waiting
/// forever — found by the browser tests).
#[tokio::test]
async fn simultaneous_joins_never_ack_an_empty_room_after_announcing_the_peer() {
    let app = spawn_app().await;
    for round in 0..20 {
        let (seeker_id, consultant_id) = (format!("sam{round}"), format!("cora{round}"));
        let mut consultant = app.raw(&consultant_id, Role::Consultant).await;
        consultant.send(r#"{"id":"p","type":"presence.set","status":"available"}"#).await;
        consultant.recv_until(|m| matches!(m, ServerMessage::Ack { .. }).then_some(())).await;
        let mut seeker = app.raw(&seeker_id, Role::Seeker).await;
        seeker.send(format!(r#"{{"id":"c","type":"call.request","consultant_id":"{consultant_id}"}}"#)).await;
        let call_id = consultant
            .recv_until(|m| match m {
                ServerMessage::CallIncoming { call_id, .. } => Some(call_id.clone()),
                _ => None,
            })
            .await;
        consultant.send(format!(r#"{{"id":"a","type":"call.accept","call_id":"{call_id}"}}"#)).await;
        let session_id = seeker
            .recv_until(|m| match m {
                ServerMessage::CallAccepted { session_id, .. } => Some(session_id.clone()),
                _ => None,
            })
            .await;
        let join = format!(r#"{{"id":"j","type":"room.join","session_id":"{session_id}"}}"#);
        tokio::join!(seeker.send(join.clone()), consultant.send(join));
        for (who, raw) in [("seeker", &mut seeker), ("consultant", &mut consultant)] {
            let mut announced = false;
            let participants = raw
                .recv_until(|m| match m {
                    ServerMessage::ParticipantJoined { .. } => {
                        announced = true;
                        None
                    }
                    ServerMessage::Ack { id, result: Some(AckResult::Room { participants, .. }) } if id == "j" => {
                        Some(participants.len())
                    }
                    _ => None,
                })
                .await;
            assert!(!announced || participants == 1, "round {round}: the {who}'s ack lists no peer it was told of");
        }
    }
}

/// A client that sends nothing, not even a pong, for three ping intervals
/// is closed with 4001 (docs/protocol.md §8.7: any frame from the client
/// counts as traffic). Read below the WebSocket library, which would
/// answer the server's pings and so keep the connection alive. (How many
/// pings come first depends on how soon the server's timer runs: not
/// asserted.)
#[tokio::test]
async fn a_client_silent_for_three_ping_intervals_is_closed_with_4001() {
    use std::io::Cursor;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::MaybeTlsStream;
    use tokio_tungstenite::tungstenite::protocol::frame::FrameHeader;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Control, OpCode};
    let app = spawn_app_with(|c| c.signaling.ping_interval = Duration::from_millis(50)).await;
    let mut raw = app.raw("quiet", Role::Seeker).await;
    let MaybeTlsStream::Plain(tcp) = raw.ws.get_mut() else { panic!("a plain TCP connection") };
    let (mut bytes, mut at) = (Vec::new(), 0);
    let code = tokio::time::timeout(WAIT, async {
        loop {
            let mut cursor = Cursor::new(&bytes[at..]);
            if let Some((header, len)) = FrameHeader::parse(&mut cursor).expect("a frame header") {
                let start = at + cursor.position() as usize;
                if let Some(payload) = bytes.get(start..start + len as usize) {
                    at = start + len as usize;
                    match header.opcode {
                        OpCode::Control(Control::Ping) => {}
                        OpCode::Control(Control::Close) => return u16::from_be_bytes([payload[0], payload[1]]),
                        other => panic!("a silent client is sent pings, then a close: got {other:?}"),
                    }
                    continue;
                }
            }
            assert!(tcp.read_buf(&mut bytes).await.expect("read") > 0, "closed with no close frame");
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(code, parley_signaling::CLOSE_IDLE);
}
