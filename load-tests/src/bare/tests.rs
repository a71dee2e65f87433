use parley_domain::protocol::rest::DevLoginResponse;
use parley_domain::protocol::{AckResult, CallEndReason, ErrorCode, PresenceStatus, Role, ServerMessage, UserInfo};
use parley_domain::{SessionId, UserId};
use tokio::sync::mpsc;

use super::auth::Keys;
use super::http::{Head, dev_login};
use super::state::State;
use crate::tokens::{self, User};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn user(id: &str, role: Role) -> UserInfo {
    UserInfo { id: UserId::parse(id).unwrap(), name: format!("Load {id}"), role }
}

fn drain(rx: &mut mpsc::UnboundedReceiver<ServerMessage>) -> Vec<ServerMessage> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[test]
fn request_heads_are_parsed() {
    let head = Head::parse(
        b"GET /v1/signal?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer abc.def",
    )
    .unwrap();
    assert_eq!(head.path(), "/v1/signal");
    assert!(head.is_websocket_upgrade());
    assert_eq!(head.bearer(), Some("abc.def"));
    assert_eq!(head.header("host"), Some("127.0.0.1"));

    let plain = Head::parse(b"GET /v1/consultants HTTP/1.1\r\nauthorization: Basic xyz").unwrap();
    assert!(!plain.is_websocket_upgrade());
    assert_eq!(plain.bearer(), None);
    for bad in [&b"GET /\r\n"[..], b"GET / SPDY/3", b"GET / HTTP/1.1 extra", b"GET / HTTP/1.1\r\nno colon", b"\xff"] {
        assert_eq!(Head::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn tokens_are_checked_as_parley_checks_them() {
    let keys = Keys::new(SECRET);
    let consultant = User::new("load-c-1".into(), Role::Consultant);
    let token = tokens::mint(&jsonwebtoken::EncodingKey::from_secret(SECRET), &consultant, now(), tokens::TOKEN_TTL);
    let info = keys.verify(&token.unwrap()).unwrap();
    assert_eq!((info.id.as_str(), info.name.as_str(), info.role), ("load-c-1", "Load load-c-1", Role::Consultant));

    let other = jsonwebtoken::EncodingKey::from_secret(b"another secret");
    let forged = tokens::mint(&other, &consultant, now(), tokens::TOKEN_TTL).unwrap();
    assert_eq!(keys.verify(&forged).unwrap_err().code, ErrorCode::InvalidToken);
    let old =
        tokens::mint(&jsonwebtoken::EncodingKey::from_secret(SECRET), &consultant, now() - 7200, tokens::TOKEN_TTL / 3);
    assert_eq!(keys.verify(&old.unwrap()).unwrap_err().code, ErrorCode::TokenExpired);
    let moderator = User::new("mod-1".into(), Role::Moderator);
    let token = tokens::mint(&jsonwebtoken::EncodingKey::from_secret(SECRET), &moderator, now(), tokens::TOKEN_TTL);
    assert_eq!(keys.verify(&token.unwrap()).unwrap_err().status, 403);
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn dev_login_mints_a_token_the_relay_accepts() {
    let keys = Keys::new(SECRET);
    let body = br#"{"user_id":"load-s-9","name":"Nine","role":"seeker"}"#;
    let response: DevLoginResponse = serde_json::from_str(&dev_login(&keys, body).unwrap()).unwrap();
    assert_eq!((response.user.id.as_str(), response.user.name.as_str()), ("load-s-9", "Nine"));
    assert_eq!(keys.verify(&response.token).unwrap(), response.user);
    assert_eq!(dev_login(&keys, br#"{"user_id":"a b"}"#).unwrap_err().status, 400);
    assert_eq!(dev_login(&keys, br#"{"user_id":"m","role":"moderator"}"#).unwrap_err().code, ErrorCode::RoleNotAllowed);
    assert_eq!(dev_login(&keys, b"not json").unwrap_err().status, 400);
}

#[test]
fn a_call_is_set_up_relayed_and_ended() {
    let mut state = State::default();
    let (seeker, consultant) = (user("s1", Role::Seeker), user("c1", Role::Consultant));
    let (s_tx, mut s_rx) = mpsc::unbounded_channel();
    let (c_tx, mut c_rx) = mpsc::unbounded_channel();
    let s_conn = state.connect(&seeker, s_tx);
    state.connect(&consultant, c_tx);
    assert!(matches!(drain(&mut s_rx)[..], [ServerMessage::Hello { presence: None, .. }]));
    assert!(matches!(drain(&mut c_rx)[..], [ServerMessage::Hello { presence: Some(PresenceStatus::Offline), .. }]));

    assert_eq!(state.request_call(&seeker, &consultant.id).unwrap_err().0, ErrorCode::ConsultantUnavailable);
    assert_eq!(state.set_presence(&seeker, PresenceStatus::Available).unwrap_err().0, ErrorCode::WrongRole);
    state.set_presence(&consultant, PresenceStatus::Available).unwrap();
    let Ok(AckResult::Call { call_id, session_id, .. }) = state.request_call(&seeker, &consultant.id) else {
        panic!("not rung")
    };
    match &drain(&mut c_rx)[..] {
        [ServerMessage::CallIncoming { call_id: c, seeker: who, .. }, ServerMessage::PresenceUpdated { .. }] => {
            assert_eq!((c, who), (&call_id, &seeker));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(state.accept_call(&seeker, &call_id).unwrap_err().0, ErrorCode::WrongRole);
    state.accept_call(&consultant, &call_id).unwrap();
    assert!(matches!(drain(&mut s_rx)[..], [ServerMessage::CallAccepted { .. }]));
    assert!(matches!(drain(&mut c_rx)[..], [ServerMessage::CallAccepted { .. }]));

    let offer = |from: &UserInfo| ServerMessage::SdpOffer {
        session_id: session_id.clone(),
        from: from.id.clone(),
        sdp: "v=0".into(),
    };
    assert_eq!(state.relay(&seeker.id, offer(&seeker)).unwrap_err().0, ErrorCode::NotInRoom);
    let Ok(AckResult::Room { offerer: false, participants, .. }) = state.join(&consultant, &session_id) else {
        panic!()
    };
    assert!(participants.is_empty());
    let Ok(AckResult::Room { offerer: true, participants, .. }) = state.join(&seeker, &session_id) else {
        panic!()
    };
    assert_eq!(participants, std::slice::from_ref(&consultant));
    assert!(matches!(drain(&mut c_rx)[..], [ServerMessage::ParticipantJoined { .. }]));
    state.relay(&seeker.id, offer(&seeker)).unwrap();
    match &drain(&mut c_rx)[..] {
        [ServerMessage::SdpOffer { from, .. }] => assert_eq!(from, &seeker.id),
        other => panic!("{other:?}"),
    }
    let stranger = user("x1", Role::Seeker);
    assert_eq!(state.relay(&stranger.id, offer(&stranger)).unwrap_err().0, ErrorCode::Forbidden);
    let unknown = SessionId::parse("ses_nope").unwrap();
    assert_eq!(state.end_session(&seeker.id, &unknown).unwrap_err().0, ErrorCode::UnknownSession);

    state.end_session(&seeker.id, &session_id).unwrap();
    for rx in [&mut s_rx, &mut c_rx] {
        match &drain(rx)[..] {
            [ServerMessage::SessionEnded { ended_by, .. }] => assert_eq!(ended_by.as_ref(), Some(&seeker.id)),
            other => panic!("{other:?}"),
        }
    }
    // The consultant is available again; the seeker's leaving ends the new call.
    let Ok(AckResult::Call { call_id, .. }) = state.request_call(&seeker, &consultant.id) else {
        panic!()
    };
    drain(&mut c_rx);
    state.disconnect(&seeker.id, s_conn);
    match &drain(&mut c_rx)[..] {
        [ServerMessage::CallEnded { call_id: c, reason: CallEndReason::SeekerGone, .. }] => assert_eq!(c, &call_id),
        other => panic!("{other:?}"),
    }
    assert_eq!(state.sizes(), (1, 0, 0));
}

#[test]
fn a_replaced_connection_does_not_remove_its_successor() {
    let mut state = State::default();
    let seeker = user("s1", Role::Seeker);
    let old = state.connect(&seeker, mpsc::unbounded_channel().0);
    let (tx, _rx) = mpsc::unbounded_channel();
    let new = state.connect(&seeker, tx);
    state.disconnect(&seeker.id, old);
    assert_eq!(state.sizes(), (1, 0, 0));
    state.disconnect(&seeker.id, new);
    assert_eq!(state.sizes(), (0, 0, 0));
}
