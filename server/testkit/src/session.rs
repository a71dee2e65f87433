//! Sessions from the clients' side: calling, accepting, joining, waiting
//! for the end and for the settlement, and pumping signals into a call.

use std::sync::Arc;
use std::time::Duration;

use parley_domain::UserId;
use parley_domain::protocol::{Role, ServerMessage};
use parley_sdk::session::SessionCall;
use parley_sdk::{Event, Events, SignalingClient};
use parley_server::store::SqlStore;
use parley_signaling::Store;
use tokio::sync::{mpsc, oneshot};

use crate::{TestApp, WAIT};

/// The store's view of a session's timeline kinds, oldest first.
pub async fn timeline_kinds(store: &SqlStore, session: &parley_domain::SessionId) -> Vec<String> {
    store.session_timeline(session).await.unwrap().into_iter().map(|e| e.kind).collect()
}

/// `GET /v1/sessions/{id}` once its settlement was carried out (done or
/// failed: DESIGN.md B3), polling for up to [`WAIT`].
pub async fn settled(
    api: &parley_sdk::ApiClient,
    token: &str,
    session_id: &parley_domain::SessionId,
) -> parley_domain::protocol::rest::SessionDetails {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let d = api.session(token, session_id).await.unwrap();
        if matches!(d.settlement_status.as_deref(), Some("done" | "failed")) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "not settled in time: {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The clients of an open session: seeker, their events, consultant, theirs.
pub type OpenSession = (SignalingClient, Events, SignalingClient, Events, parley_domain::SessionId);

/// `sam` calls `cora` (with payment method `pm` if given); she accepts and
/// both join.
pub async fn open_session(app: &TestApp, pm: Option<&str>) -> OpenSession {
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), pm).await.expect("call rings");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    (seeker, s_events, consultant, c_events, session_id)
}

/// Waits for `session.ended`.
pub async fn wait_ended(events: &mut Events) {
    events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(()))
        .await
        .expect("session.ended");
}

/// Waits for `call.incoming`; returns the call and session ids.
pub async fn incoming(events: &mut Events) -> (parley_domain::CallId, parley_domain::SessionId) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::CallIncoming { call_id, session_id, .. } => Some((call_id.clone(), session_id.clone())),
            _ => None,
        })
        .await
        .expect("call.incoming")
}

/// Feeds relayed signals (and `recording.*`) to the call once it exists;
/// forwards everything else to the test.
pub fn pump(mut events: Events) -> (oneshot::Sender<Arc<SessionCall>>, mpsc::UnboundedReceiver<ServerMessage>) {
    let (call_tx, mut call_rx) = oneshot::channel::<Arc<SessionCall>>();
    let (rest_tx, rest_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut call: Option<Arc<SessionCall>> = None;
        let mut early = Vec::new();
        loop {
            tokio::select! {
                c = &mut call_rx, if call.is_none() => {
                    let Ok(c) = c else { return };
                    for m in early.drain(..) { c.handle(&m); }
                    call = Some(c);
                }
                e = events.recv() => {
                    let Some(Event::Server(m)) = e else { if e.is_none() { return } else { continue } };
                    let media = matches!(m, ServerMessage::SdpOffer { .. } | ServerMessage::SdpAnswer { .. }
                        | ServerMessage::IceCandidate { .. } | ServerMessage::RecordingStarted { .. });
                    match &call {
                        Some(c) => {
                            let notice = matches!(m, ServerMessage::RecordingStarted { .. } | ServerMessage::RecordingStopped { .. });
                            if !c.handle(&m) || notice { let _ = rest_tx.send(m); }
                        }
                        None if media => { early.push(m.clone()); let _ = rest_tx.send(m); }
                        None => { let _ = rest_tx.send(m); }
                    }
                }
            }
        }
    });
    (call_tx, rest_rx)
}

/// The next message from [`pump`] that `pick` accepts, within [`WAIT`].
pub async fn next_matching(
    rx: &mut mpsc::UnboundedReceiver<ServerMessage>,
    pick: impl Fn(&ServerMessage) -> bool,
) -> ServerMessage {
    tokio::time::timeout(WAIT, async {
        loop {
            let m = rx.recv().await.expect("pump alive");
            if pick(&m) {
                return m;
            }
        }
    })
    .await
    .expect("message in time")
}
