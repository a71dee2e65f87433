//! The payment seam (DESIGN.md §3, B2): the hold is placed before the
//! consultant is rung; a refused hold rejects the call with a clear code and
//! the consultant is never disturbed; a call that ends unanswered releases
//! its hold exactly once.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{WAIT, incoming, spawn_app_with_gate};
use async_trait::async_trait;
use parley_domain::protocol::{CallEndReason, ErrorCode, PresenceStatus, Role, ServerMessage};
use parley_domain::{CallId, UserId};
use parley_signaling::store::CallRecord;
use parley_signaling::{CallGate, GateRefusal, Store};

/// Behaves like the sandbox's test cards; records what it was asked.
#[derive(Default)]
struct TestCards {
    holds: Mutex<Vec<(CallId, Option<String>)>>,
    released: Mutex<Vec<(CallId, CallEndReason)>>,
}

#[async_trait]
impl CallGate for TestCards {
    async fn before_ring(&self, call: &CallRecord, pm: Option<&str>) -> Result<(), GateRefusal> {
        self.holds.lock().unwrap().push((call.call_id.clone(), pm.map(str::to_owned)));
        match pm {
            Some("pm_card_chargeDeclined") => {
                Err(GateRefusal { code: ErrorCode::PaymentDeclined, message: "your card was declined".into() })
            }
            Some("pm_card_authenticationRequired") => Err(GateRefusal {
                code: ErrorCode::PaymentActionRequired,
                message: "your bank asks you to confirm this payment".into(),
            }),
            _ => Ok(()),
        }
    }

    async fn call_unanswered(&self, call: &CallRecord, reason: CallEndReason) {
        self.released.lock().unwrap().push((call.call_id.clone(), reason));
    }
}

#[tokio::test]
async fn a_refused_hold_rejects_the_call_and_never_rings_the_consultant() {
    let cards = Arc::new(TestCards::default());
    let app = spawn_app_with_gate(cards.clone()).await;
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s) = app.client("sam", Role::Seeker).await;
    let cora = UserId::parse("cora").unwrap();

    for (pm, code) in [
        ("pm_card_chargeDeclined", ErrorCode::PaymentDeclined),
        ("pm_card_authenticationRequired", ErrorCode::PaymentActionRequired),
    ] {
        let err = seeker.call(&cora, Some(pm)).await.unwrap_err();
        assert_eq!(err.code(), Some(code), "{err}");
    }
    // The consultant saw nothing at all, and is still available.
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(c_events.try_recv().is_none(), "the consultant was disturbed");
    let api = parley_sdk::ApiClient::new(&app.base).unwrap();
    let list = api.consultants(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!(list.iter().find(|c| c.id == cora).unwrap().presence, PresenceStatus::Available);
    // The refusals are on record, and nothing was released (nothing was held).
    let holds = cards.holds.lock().unwrap().clone();
    assert_eq!(holds.len(), 2);
    for (call_id, _) in &holds {
        assert_eq!(app.store.call(call_id).await.unwrap().unwrap().state, "hold_refused");
    }
    assert!(cards.released.lock().unwrap().is_empty());

    // A good card rings.
    let ringing = seeker.call(&cora, Some("pm_card_visa")).await.unwrap();
    let (rung, _) = incoming(&mut c_events).await;
    assert_eq!(rung, ringing.call_id);
    assert_eq!(cards.holds.lock().unwrap().last().unwrap().1.as_deref(), Some("pm_card_visa"));
}

#[tokio::test]
async fn an_unanswered_call_releases_its_hold_exactly_once() {
    let cards = Arc::new(TestCards::default());
    let app = spawn_app_with_gate(cards.clone()).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, mut s_events) = app.client("sam", Role::Seeker).await;
    let cora = UserId::parse("cora").unwrap();

    // Declined.
    let declined = seeker.call(&cora, Some("pm_card_visa")).await.unwrap().call_id;
    let (id, _) = incoming(&mut c_events).await;
    consultant.decline(&id, None).await.unwrap();
    // Timed out, and a late cancel changes nothing.
    let timed_out = seeker.call(&cora, Some("pm_card_visa")).await.unwrap().call_id;
    incoming(&mut c_events).await;
    app.advance(Duration::from_secs(30)).await;
    s_events
        .wait_for(WAIT, |m| matches!(m, ServerMessage::CallEnded { reason: CallEndReason::Timeout, .. }).then_some(()))
        .await
        .unwrap();
    assert_eq!(seeker.cancel(&timed_out).await.unwrap_err().code(), Some(ErrorCode::CallNotRinging));
    // Accepted: the hold stays for the session (billing captures or releases it later).
    let accepted = seeker.call(&cora, Some("pm_card_visa")).await.unwrap().call_id;
    let (id, _) = incoming(&mut c_events).await;
    consultant.accept(&id).await.unwrap();

    common::until("both releases", || async { cards.released.lock().unwrap().len() >= 2 }).await;
    let released = cards.released.lock().unwrap().clone();
    assert_eq!(released, vec![(declined, CallEndReason::Declined), (timed_out, CallEndReason::Timeout)]);
    assert!(!released.iter().any(|(c, _)| *c == accepted));
}
