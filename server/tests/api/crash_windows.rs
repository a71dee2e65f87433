//! Crash windows of the money path (issue 13, item 4), tested by injecting
//! the crash: a crash point ([`parley_billing::Faults`]) makes the code
//! abandon its transaction where a killed process would stop. Each test
//! runs on SQLite and on PostgreSQL.

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres, until};
use parley_billing::webhook::{DisputeChange, WebhookEvent, WebhookKind};
use parley_billing::{CaptureRequest, HoldRequest, IntentStatus, ProviderError, insert_settlement};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{Outcome, SessionBill};
use parley_domain::{Clock, Currency, Money, SessionId, UserId};
use sqlx::Row;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// `cora` charges 3000 per session; a hold for session `sid` is placed on
/// `pm_card_visa` (as when a call rings); returns its intent id.
async fn held(app: &TestApp, sid: &SessionId) -> String {
    let price = ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) };
    app.billing.set_price(&uid("cora"), &price).await.unwrap();
    let hold = app.billing.place_hold(sid, "call_crash", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
    assert!(hold.unwrap().is_some(), "hold placed");
    app.billing.hold(sid).await.unwrap().unwrap().intent_id.expect("intent id")
}

async fn sandbox_intent(app: &TestApp, intent: &str) -> (String, i64) {
    let row = sqlx::query("SELECT status, amount_received FROM sandbox_intents WHERE id = $1")
        .bind(intent)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    (row.get("status"), row.get("amount_received"))
}

async fn count(app: &TestApp, sql: &str, arg: &str) -> i64 {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).bind(arg).fetch_one(&app.store.pool()).await.unwrap().get("n")
}

/// B3 + issue 13: the sandbox captures and records the idempotency key
/// together. A crash between the capture and its record leaves neither, so
/// the settlement's retry captures (once) and ends `done`, not `failed`.
async fn a_crash_between_capture_and_record_is_retried_and_captures_once(app: TestApp) {
    let sid = SessionId::parse("ses_crash_capture").unwrap();
    let intent = held(&app, &sid).await;
    app.billing.faults().arm("sandbox.capture");
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) };
    let mut conn = app.store.pool().acquire().await.unwrap();
    insert_settlement(&mut conn, &sid, &bill, "hangup", app.clock.now()).await.unwrap();
    drop(conn);
    app.billing.wake();
    // The first attempt crashed after the capture: nothing is committed.
    until("the crashed attempt", || async { app.billing.settlement(&sid).await.unwrap().unwrap().attempts >= 1 }).await;
    let s = app.billing.settlement(&sid).await.unwrap().unwrap();
    assert_eq!(s.status, "pending", "a crash is retried: {s:?}");
    assert!(s.last_error.as_deref().unwrap_or_default().contains("injected crash"), "{s:?}");
    assert_eq!(app.billing.faults().pending(), 0, "the crash point fired");
    assert_eq!(sandbox_intent(&app, &intent).await, ("requires_capture".to_owned(), 0), "the capture rolled back");
    let key = format!("settle:{sid}");
    assert_eq!(count(&app, "SELECT COUNT(*) AS n FROM sandbox_idempotency WHERE key = $1", &key).await, 0);
    // The retry, after the backoff on the server clock.
    app.advance(Duration::from_secs(2)).await;
    until("the retried settlement", || async {
        app.billing.settlement(&sid).await.unwrap().unwrap().status != "pending"
    })
    .await;
    let s = app.billing.settlement(&sid).await.unwrap().unwrap();
    assert_eq!((s.status.as_str(), s.attempts), ("done", 2), "{s:?}");
    assert_eq!(sandbox_intent(&app, &intent).await, ("succeeded".to_owned(), 3000), "captured once");
    assert_eq!(app.billing.hold(&sid).await.unwrap().unwrap().status, "captured");
    let captures = "SELECT COUNT(*) AS n FROM ledger WHERE session_id = $1 AND kind = 'capture'";
    assert_eq!(count(&app, captures, sid.as_str()).await, 1);
    // A replay of the capture (same key, same parameters) answers the first result.
    let req = CaptureRequest { amount_to_capture: 3000, application_fee_amount: None, idempotency_key: key };
    let again = app.billing.provider().capture(&intent, &req).await.unwrap();
    assert_eq!((again.status, again.amount_received), (IntentStatus::Succeeded, 3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_crash_between_capture_and_record_is_retried_and_captures_once_on_sqlite() {
    a_crash_between_capture_and_record_is_retried_and_captures_once(spawn_app().await).await;
}

#[tokio::test]
async fn a_crash_between_capture_and_record_is_retried_and_captures_once_on_postgres() {
    a_crash_between_capture_and_record_is_retried_and_captures_once(spawn_app_on_postgres().await).await;
}

/// Issue 13: concurrent sandbox writes with one idempotency key make one
/// effect and all answer it (holds, captures, refunds; many rounds).
async fn concurrent_writes_with_one_key_make_one_effect(app: TestApp) {
    let provider = app.billing.provider().clone();
    for round in 0..5 {
        let hold = HoldRequest {
            amount: eur(3000),
            payment_method: "pm_card_visa".into(),
            destination: None,
            description: "concurrent".into(),
            metadata: vec![],
            idempotency_key: format!("hold:concurrent:{round}"),
        };
        let holds = futures_util::future::join_all((0..8).map(|_| provider.place_hold(&hold))).await;
        let ids: Vec<String> = holds.into_iter().map(|h| h.expect("every replay succeeds").id).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "one intent for one key: {ids:?}");
        let n = count(&app, "SELECT COUNT(*) AS n FROM sandbox_intents WHERE id LIKE $1", "pi_%").await;
        assert_eq!(n, 3 * round + 1, "round {round}: one intent per key (three keys per round before)");
        let intent = ids[0].clone();
        let capture = CaptureRequest {
            amount_to_capture: 2000,
            application_fee_amount: None,
            idempotency_key: format!("settle:concurrent:{round}"),
        };
        let captures = futures_util::future::join_all((0..8).map(|_| provider.capture(&intent, &capture))).await;
        for c in captures {
            assert_eq!(c.expect("every replay succeeds").amount_received, 2000);
        }
        let refund = parley_billing::RefundRequest {
            intent_id: intent.clone(),
            amount: 700,
            reverse_transfer: false,
            idempotency_key: format!("refund:concurrent:{round}"),
        };
        let refunds = futures_util::future::join_all((0..8).map(|_| provider.refund(&refund))).await;
        let ids: Vec<String> = refunds.into_iter().map(|r| r.expect("every replay succeeds").id).collect();
        assert!(ids.iter().all(|id| *id == ids[0]), "one refund for one key: {ids:?}");
        let refunded = sqlx::query("SELECT amount_refunded FROM sandbox_intents WHERE id = $1")
            .bind(&intent)
            .fetch_one(&app.store.pool())
            .await
            .unwrap()
            .get::<i64, _>("amount_refunded");
        assert_eq!(refunded, 700, "round {round}: refunded once");
        // Releases of another hold with one key: one cancellation, every
        // answer the cancelled intent.
        let other = HoldRequest { idempotency_key: format!("hold:concurrent:release:{round}"), ..hold };
        let intent = provider.place_hold(&other).await.expect("a hold").id;
        let key = format!("release:concurrent:{round}");
        let releases = futures_util::future::join_all((0..8).map(|_| provider.release(&intent, &key))).await;
        for r in releases {
            let r = r.expect("every replay succeeds");
            assert_eq!((r.id.as_str(), r.status), (intent.as_str(), IntentStatus::Canceled), "round {round}");
        }
        // One key, two different requests racing: the first recorded
        // stands, every request like it answers its intent, every other is
        // refused (idempotency_error); one intent either way.
        let a = HoldRequest { idempotency_key: format!("hold:clash:{round}"), ..other.clone() };
        let b = HoldRequest { amount: eur(4000), ..a.clone() };
        let racers =
            futures_util::future::join_all((0..8).map(|i| provider.place_hold(if i % 2 == 0 { &a } else { &b })));
        let (won, refused): (Vec<_>, Vec<_>) = racers.await.into_iter().partition(Result::is_ok);
        let ids: std::collections::HashSet<String> = won.into_iter().map(|w| w.unwrap().id).collect();
        assert_eq!(ids.len(), 1, "round {round}: one intent for the key: {ids:?}");
        assert_eq!(refused.len(), 4, "round {round}: the other request's four tries are refused");
        for r in refused {
            assert!(
                matches!(&r, Err(ProviderError::Rejected { code, .. }) if code == "idempotency_error"),
                "round {round}: {r:?}"
            );
        }
        let fresh = provider.release(&intent, &format!("release:again:{round}")).await;
        assert!(
            matches!(&fresh, Err(ProviderError::Rejected { code, .. }) if code == "payment_intent_unexpected_state"),
            "round {round}: a cancelled intent cannot be cancelled under a new key: {fresh:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_sandbox_writes_with_one_key_make_one_effect_on_sqlite() {
    concurrent_writes_with_one_key_make_one_effect(spawn_app().await).await;
}

#[tokio::test]
async fn concurrent_sandbox_writes_with_one_key_make_one_effect_on_postgres() {
    concurrent_writes_with_one_key_make_one_effect(spawn_app_on_postgres().await).await;
}

/// A sandbox hold and a cancellation are each one statement with their
/// idempotency record (migration 0019): a crash before it leaves neither
/// an intent nor a record, and the retry makes the effect once; a replay
/// answers the first outcome and writes nothing.
async fn a_crash_before_a_keyed_write_leaves_nothing_and_the_retry_makes_it_once(app: TestApp) {
    let provider = app.billing.provider().clone();
    let hold = HoldRequest {
        amount: eur(2500),
        payment_method: "pm_card_visa".into(),
        destination: None,
        description: "keyed".into(),
        metadata: vec![],
        idempotency_key: "hold:keyed".into(),
    };
    let intents = "SELECT COUNT(*) AS n FROM sandbox_intents WHERE last_key = $1";
    let records = "SELECT COUNT(*) AS n FROM sandbox_idempotency WHERE key = $1";
    app.billing.faults().arm("sandbox.hold");
    let crashed = provider.place_hold(&hold).await;
    assert!(matches!(crashed, Err(ProviderError::Transient(_))), "{crashed:?}");
    assert_eq!((count(&app, intents, "hold:keyed").await, count(&app, records, "hold:keyed").await), (0, 0));
    let placed = provider.place_hold(&hold).await.expect("the retry places the hold");
    assert_eq!(placed.status, IntentStatus::RequiresCapture);
    let again = provider.place_hold(&hold).await.expect("a replay answers the hold");
    assert_eq!((again.id.as_str(), again.status), (placed.id.as_str(), IntentStatus::RequiresCapture));
    assert_eq!((count(&app, intents, "hold:keyed").await, count(&app, records, "hold:keyed").await), (1, 1));

    app.billing.faults().arm("sandbox.cancel");
    let crashed = provider.release(&placed.id, "release:keyed").await;
    assert!(matches!(crashed, Err(ProviderError::Transient(_))), "{crashed:?}");
    assert_eq!(sandbox_intent(&app, &placed.id).await.0, "requires_capture", "the crash cancelled nothing");
    assert_eq!(count(&app, records, "release:keyed").await, 0);
    let released = provider.release(&placed.id, "release:keyed").await.expect("the retry cancels");
    assert_eq!(released.status, IntentStatus::Canceled);
    let again = provider.release(&placed.id, "release:keyed").await.expect("a replay answers the cancellation");
    assert_eq!((again.id.as_str(), again.status), (placed.id.as_str(), IntentStatus::Canceled));
    assert_eq!(count(&app, records, "release:keyed").await, 1);
    // A refused card is recorded under its key too, and answered again.
    let declined =
        HoldRequest { payment_method: "pm_card_chargeDeclined".into(), idempotency_key: "hold:no".into(), ..hold };
    for _ in 0..2 {
        let refused = provider.place_hold(&declined).await;
        assert!(
            matches!(&refused, Err(ProviderError::Declined { decline_code, .. }) if decline_code == "generic_decline"),
            "{refused:?}"
        );
    }
    assert_eq!((count(&app, intents, "hold:no").await, count(&app, records, "hold:no").await), (0, 1));
}

#[tokio::test]
async fn a_crash_before_a_keyed_write_leaves_nothing_and_the_retry_makes_it_once_on_sqlite() {
    a_crash_before_a_keyed_write_leaves_nothing_and_the_retry_makes_it_once(spawn_app().await).await;
}

#[tokio::test]
async fn a_crash_before_a_keyed_write_leaves_nothing_and_the_retry_makes_it_once_on_postgres() {
    a_crash_before_a_keyed_write_leaves_nothing_and_the_retry_makes_it_once(spawn_app_on_postgres().await).await;
}

/// B5 + issue 13: a Stripe event is marked processed together with its
/// effect. A crash after the mark loses neither: the retry of the same
/// event is applied, not answered as a duplicate.
async fn a_crash_after_the_webhook_mark_lets_the_retry_apply_it(app: TestApp) {
    let sid = SessionId::parse("ses_crash_webhook").unwrap();
    let intent = held(&app, &sid).await;
    // The provider lets the authorisation lapse (B6) and tells us.
    app.billing.provider().release(&intent, "lapsed").await.unwrap();
    let event = WebhookEvent {
        id: "evt_crash_1".into(),
        created: app.clock.now().unix_millis() / 1000,
        kind: WebhookKind::Canceled { intent_id: intent.clone() },
    };
    app.billing.faults().arm("webhook.apply");
    let crashed = app.billing.handle_webhook(&event).await;
    assert!(crashed.is_err(), "the injected crash fails the delivery: {crashed:?}");
    assert_eq!(app.billing.webhooks_processed().await.unwrap(), 0, "the mark rolled back with the effect");
    assert_eq!(app.billing.hold(&sid).await.unwrap().unwrap().status, "held", "nothing applied");
    // Stripe retries the same event: applied now, then a duplicate.
    assert!(app.billing.handle_webhook(&event).await.unwrap(), "the retry is applied");
    assert_eq!(app.billing.hold(&sid).await.unwrap().unwrap().status, "expired");
    assert!(!app.billing.handle_webhook(&event).await.unwrap(), "a third delivery is a duplicate");
    assert_eq!(app.billing.webhooks_processed().await.unwrap(), 1);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn a_crash_after_the_webhook_mark_lets_the_retry_apply_it_on_sqlite() {
    a_crash_after_the_webhook_mark_lets_the_retry_apply_it(spawn_app().await).await;
}

#[tokio::test]
async fn a_crash_after_the_webhook_mark_lets_the_retry_apply_it_on_postgres() {
    a_crash_after_the_webhook_mark_lets_the_retry_apply_it(spawn_app_on_postgres().await).await;
}

/// B5 + issue 13: the same event delivered many times at once is applied
/// once (one delivery answers "processed", the others "duplicate"), many
/// rounds.
async fn concurrent_deliveries_of_one_event_apply_it_once(app: TestApp) {
    let sid = SessionId::parse("ses_webhook_race").unwrap();
    let intent = held(&app, &sid).await;
    for round in 0..5 {
        let event = WebhookEvent {
            id: format!("evt_race_{round}"),
            created: app.clock.now().unix_millis() / 1000,
            kind: WebhookKind::Dispute {
                change: DisputeChange::Created,
                dispute_id: format!("du_race_{round}"),
                intent_id: intent.clone(),
                amount: 100,
                reason: "fraudulent".into(),
                status: "needs_response".into(),
                due_by: None,
            },
        };
        let results = futures_util::future::join_all((0..8).map(|_| app.billing.handle_webhook(&event))).await;
        let applied = results.into_iter().map(|r| r.expect("no delivery fails")).filter(|a| *a).count();
        assert_eq!(applied, 1, "round {round}: applied once");
        let disputes = "SELECT COUNT(*) AS n FROM ledger WHERE session_id = $1 AND kind = 'dispute'";
        assert_eq!(count(&app, disputes, sid.as_str()).await, round + 1);
    }
    assert_eq!(app.billing.webhooks_processed().await.unwrap(), 5);
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_apply_it_once_on_sqlite() {
    concurrent_deliveries_of_one_event_apply_it_once(spawn_app().await).await;
}

#[tokio::test]
async fn concurrent_deliveries_of_one_event_apply_it_once_on_postgres() {
    concurrent_deliveries_of_one_event_apply_it_once(spawn_app_on_postgres().await).await;
}
