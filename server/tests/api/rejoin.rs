//! Issue 16, single node: after a server restart a `resume` is impossible
//! (its state was in the old process's memory), and the Rust SDK rejoins
//! the open session by itself (`room.join`, docs/protocol.md 8.13), the
//! seeker restores the negotiation with an ICE restart offer, and the
//! session keeps being metered and is settled once (M9: at most one
//! checkpoint interval lost, in the seeker's favour).

use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming, settled, spawn_app, spawn_app_on_postgres, until};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{MediaState, Outcome, Role, ServerMessage};
use parley_domain::{Currency, Money, UserId};
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;
use parley_sdk::{ApiClient, Event, Events};
use tokio::sync::mpsc;

/// Hands every event to `call` ([`SessionCall::handle_event`]: relayed
/// signals, rejoins, resumes) and then to the test.
fn drive(mut events: Events, call: Arc<SessionCall>) -> mpsc::UnboundedReceiver<Event> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            call.handle_event(&event).await;
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next event `pick` accepts, within [`WAIT`]; the skipped ones are kept in `seen`.
async fn next_event<T>(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    seen: &mut Vec<Event>,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = rx.recv().await.expect("events flow");
            if let Some(t) = pick(&event) {
                return t;
            }
            seen.push(event);
        }
    })
    .await
    .expect("the event in time")
}

/// Waits until `call` has received `more` audio packets beyond what it had.
async fn audio_flows(call: &SessionCall, more: u64) {
    let from = call.call.audio_packets_received();
    until("audio flows", || async { call.call.audio_packets_received() >= from + more }).await;
}

async fn clients_rejoin_by_themselves_after_a_restart(app: TestApp) {
    let eur = |minor| Money::new(minor, Currency::parse("EUR").unwrap());
    let api = ApiClient::new(&app.base).unwrap();
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    api.set_price(&app.token("cora", Role::Consultant), &price).await.unwrap();
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();

    // A real webrtc-rs call: the consultant joins and waits, the seeker offers.
    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    let c_room = consultant.join(&session_id).await.unwrap();
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await.unwrap());
    let mut c_rx = drive(c_events, c_call.clone());
    let s_room = seeker.join(&session_id).await.unwrap();
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, config).await.unwrap());
    let mut s_rx = drive(s_events, s_call.clone());
    s_call.call.wait_connected(Duration::from_secs(20)).await.expect("seeker connected");
    c_call.call.wait_connected(Duration::from_secs(20)).await.expect("consultant connected");
    audio_flows(&c_call, 10).await;
    assert_eq!(seeker.joined_rooms(), std::slice::from_ref(&session_id));

    // 605 s metered, then the server restarts (same database, clock and
    // address): every resume state is gone with the old process.
    app.advance(Duration::from_secs(605)).await;
    let app = app.restart().await;

    // Both clients reconnect, are refused `resume`, and rejoin by themselves.
    let (mut s_seen, mut c_seen) = (Vec::new(), Vec::new());
    let s_back = next_event(&mut s_rx, &mut s_seen, |e| match e {
        Event::Rejoined { room } => Some(room.clone()),
        _ => None,
    })
    .await;
    let c_back = next_event(&mut c_rx, &mut c_seen, |e| match e {
        Event::Rejoined { room } => Some(room.clone()),
        _ => None,
    })
    .await;
    for (who, seen) in [("seeker", &s_seen), ("consultant", &c_seen)] {
        assert!(seen.contains(&Event::Reconnecting), "{who} saw the drop: {seen:?}");
        assert!(seen.iter().any(|e| matches!(e, Event::ResumeFailed { .. })), "{who}'s resume refused: {seen:?}");
        assert!(!seen.iter().any(|e| matches!(e, Event::Resumed { .. })), "nothing to resume: {seen:?}");
    }
    assert_eq!((s_back.session_id.clone(), c_back.session_id.clone()), (session_id.clone(), session_id.clone()));
    assert!(s_back.offerer && !c_back.offerer);
    let restored = s_back.meter.or(c_back.meter).expect("a metered session").billable_secs;
    assert!((595..=605).contains(&restored), "at most one checkpoint interval lost: {restored} s of 605 s");

    // The seeker restores the negotiation: a new offer (ICE restart) that
    // the consultant answers; the media connection is up and carries audio.
    next_event(&mut c_rx, &mut c_seen, |e| {
        matches!(e, Event::Server(ServerMessage::SdpOffer { session_id: s, .. }) if *s == session_id).then_some(())
    })
    .await;
    s_call.call.wait_connected(Duration::from_secs(20)).await.expect("seeker connected again");
    c_call.call.wait_connected(Duration::from_secs(20)).await.expect("consultant connected again");
    audio_flows(&s_call, 10).await;
    audio_flows(&c_call, 10).await;
    assert_eq!(*s_call.call.media_state().borrow(), MediaState::Connected);

    // Both are back: the restored session is metered again.
    app.advance(Duration::from_secs(30)).await;
    let ticked = next_event(&mut s_rx, &mut s_seen, |e| match e {
        Event::Server(ServerMessage::MeterTick { billable_secs, .. }) => Some(*billable_secs),
        _ => None,
    })
    .await;
    assert!(ticked > restored && ticked <= restored + 30, "metered again once both were back: {ticked} s");

    seeker.end_session(&session_id).await.unwrap();
    let bill = next_event(&mut s_rx, &mut s_seen, |e| match e {
        Event::Server(ServerMessage::SessionEnded { bill, .. }) => Some(*bill),
        _ => None,
    })
    .await
    .expect("a bill");
    assert_eq!(bill.outcome, Outcome::Charged, "{bill:?}");
    assert_eq!(bill.billable_secs, restored + 30, "ticked {ticked}, restored {restored}: {bill:?}");
    assert!(bill.billable_secs <= 635, "never more than both were present: {bill:?}");
    assert!(seeker.joined_rooms().is_empty(), "an ended session is not rejoined");

    // Settled once: one capture, one receipt.
    let token = app.token("sam", Role::Seeker);
    let details = settled(&api_for(&app), &token, &session_id).await;
    assert_eq!(details.settlement_status.as_deref(), Some("done"), "{details:?}");
    assert_eq!(details.ledger.iter().filter(|l| l.kind == "capture").count(), 1, "{:?}", details.ledger);
    assert_eq!(details.billable_secs, bill.billable_secs, "{details:#?}");
    assert_eq!(api_for(&app).receipts(&token).await.unwrap().len(), 1);
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();
    app.assert_reconciled().await;
}

fn api_for(app: &TestApp) -> ApiClient {
    ApiClient::new(&app.base).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i16_clients_rejoin_by_themselves_after_a_restart_on_sqlite() {
    clients_rejoin_by_themselves_after_a_restart(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn i16_clients_rejoin_by_themselves_after_a_restart_on_postgres() {
    clients_rejoin_by_themselves_after_a_restart(spawn_app_on_postgres().await).await;
}
