//! Payment holds: declined cards, unanswered calls, expiry, crashes, and
//! where captures go (B2–B8).

use super::*;

#[tokio::test]
async fn b2_b8_a_declined_card_never_rings_the_consultant() {
    let app = spawn_app().await;
    priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let (_consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    let cases = [
        ("pm_card_chargeDeclined", ErrorCode::PaymentDeclined, "declined"),
        ("pm_card_authenticationRequired", ErrorCode::PaymentActionRequired, "authentication"),
        ("pm_card_unknown", ErrorCode::PaymentDeclined, "No such PaymentMethod"),
    ];
    for (pm, code, words) in cases {
        match seeker.call(&uid("cora"), Some(pm)).await {
            Err(SdkError::Server { code: got, message }) => {
                assert_eq!(got, code, "{pm}: {message}");
                assert!(message.contains(words), "{pm}: readable reason: {message}");
            }
            other => panic!("{pm}: expected a refusal, got {other:?}"),
        }
    }
    match seeker.call(&uid("cora"), None).await {
        Err(SdkError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::MissingField);
            assert!(message.contains("payment_method") && message.contains("30"), "{message}");
        }
        other => panic!("expected missing_field, got {other:?}"),
    }
    // The consultant heard nothing and is still available for a funded call.
    assert!(c_events.try_recv().is_none(), "the consultant was disturbed");
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.expect("a good card rings");
    incoming(&mut c_events).await;
    let receipts = ApiClient::new(&app.base).unwrap().receipts(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!(receipts.len(), 1, "refused holds are no receipts");
    let booked: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'hold'")
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(booked, 1, "only the hold placed is in the ledger (B7)");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_an_unanswered_call_releases_its_hold_once() {
    let app = spawn_app().await;
    let (api, _) = priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, _s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.decline(&call_id, Some("busy")).await.unwrap();
    let billing = app.billing.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while billing.settlement(&session_id).await.unwrap().is_none_or(|s| s.status != "done") {
        assert!(tokio::time::Instant::now() < deadline, "release not carried out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let settlement = billing.settlement(&session_id).await.unwrap().unwrap();
    assert_eq!((settlement.outcome.as_str(), settlement.attempts), ("unanswered", 1));
    assert_eq!(billing.hold(&session_id).await.unwrap().unwrap().status, "released");
    let ledger = billing.session_ledger(&session_id).await.unwrap();
    assert_eq!(ledger.iter().map(|l| l.kind.as_str()).collect::<Vec<_>>(), ["hold", "release"]);
    let receipts = api.receipts(&app.token("sam", Role::Seeker)).await.unwrap();
    assert_eq!((receipts[0].outcome, receipts[0].charged), (Some(Outcome::Free), eur(0)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b6_an_expired_hold_is_never_captured() {
    // A deployment allowing sessions longer than a card authorisation lasts.
    let app = spawn_app_with(|c| c.billing.instant_max_minutes = 8 * 24 * 60).await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(7 * 24 * 3600 + 1)).await; // the 7-day hold has lapsed
    s.seeker.end_session(&s.session_id).await.unwrap();
    let (_, bill) = ended(&mut s.s_events).await;
    assert_eq!(bill.map(|b| b.outcome), Some(Outcome::Charged));
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!(d.settlement_status.as_deref(), Some("failed"));
    assert_eq!(d.hold.map(|h| h.status), Some("expired".to_owned()));
    assert_eq!(d.captured, None, "never captured");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b4_a_consultant_with_a_payout_account_is_the_captures_destination() {
    let app = spawn_app().await;
    let (api, token) = priced(&app, "cora", PriceModel::Fixed, 3000).await;
    let link = api.payout_link(&token).await.unwrap();
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(600)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    ended(&mut s.s_events).await;
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!((d.captured, d.fee), (Some(eur(3000)), Some(eur(600))));
    // The sandbox's PaymentIntent was destined for the consultant's account
    // and captured with the platform's fee (B4).
    let intent_id = d.hold.and_then(|h| h.intent_id).expect("intent");
    let row = sqlx::query("SELECT destination, amount_received, fee_minor FROM sandbox_intents WHERE id = $1")
        .bind(&intent_id)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    let destination: Option<String> = row.get("destination");
    assert_eq!(destination.as_deref(), Some(link.account_id.as_str()));
    assert_eq!((row.get::<i64, _>("amount_received"), row.get::<Option<i64>, _>("fee_minor")), (3000, Some(600)));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn the_money_path_works_on_postgres() {
    let app = spawn_app_on_postgres().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    app.advance(SECS(600)).await;
    s.seeker.end_session(&s.session_id).await.unwrap();
    let bill = SessionBill { outcome: Outcome::Charged, billable_secs: 600, charge: eur(3000) };
    assert_eq!(ended(&mut s.s_events).await.1, Some(bill), "charged at exactly F (M6)");
    let d = settled(&s.api, &s.seeker_token, &s.session_id).await;
    assert_eq!((d.captured, d.fee, d.payout), (Some(eur(3000)), Some(eur(600)), Some(eur(2400))));
    assert_eq!(kinds(&d), ["hold", "capture", "fee", "earnings"], "each movement booked once (B7)");
    let refund = s.api.refund(&app.token("mo", Role::Moderator), &s.session_id, None).await.unwrap();
    assert_eq!(refund.amount, eur(3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn b3_a_hold_whose_call_never_became_a_session_is_released_after_a_crash() {
    let app = spawn_app().await;
    priced(&app, "cora", PriceModel::Fixed, 3000).await;
    // A hold placed by a server that died while the call rang: no session,
    // no release.
    let orphan = SessionId::parse("ses_orphan").unwrap();
    let held = app.billing.place_hold(&orphan, "call_orphan", &uid("sam"), &uid("cora"), Some("pm_card_visa")).await;
    assert!(held.unwrap().is_some());
    app.advance(SECS(301)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while app.billing.hold(&orphan).await.unwrap().unwrap().status != "released" {
        assert!(tokio::time::Instant::now() < deadline, "the orphaned hold was not released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let s = app.billing.settlement(&orphan).await.unwrap().unwrap();
    assert_eq!((s.outcome.as_str(), s.status.as_str()), ("unanswered", "done"));
    app.assert_reconciled().await;
}

/// The consultant accepts while the seeker cancels, many rounds: exactly
/// one wins, and the store and the hold agree with the winner. Accepted:
/// the call is `accepted`, its session stored and its hold still held.
/// Cancelled: the call is `cancelled`, no session is stored, and the hold
/// is released once (B3).
async fn accept_against_cancel(app: TestApp) {
    use parley_signaling::Store;
    let (mut accepts, mut cancels) = (0, 0);
    for round in 0..12 {
        let (c, s) = (format!("cora{round}"), format!("sam{round}"));
        priced(&app, &c, PriceModel::Fixed, 3000).await;
        let (consultant, mut c_events) = app.available_consultant(&c).await;
        let (seeker, _s_events) = app.client(&s, Role::Seeker).await;
        seeker.call(&uid(&c), Some("pm_card_visa")).await.expect("hold placed, call rings");
        let (call_id, session_id) = incoming(&mut c_events).await;
        // Sent together, each round in the other order.
        let (accepted, cancelled) = if round % 2 == 0 {
            tokio::join!(consultant.accept(&call_id), seeker.cancel(&call_id))
        } else {
            let (cancelled, accepted) = tokio::join!(seeker.cancel(&call_id), consultant.accept(&call_id));
            (accepted, cancelled)
        };
        assert!(accepted.is_ok() != cancelled.is_ok(), "round {round}: one wins: {accepted:?} / {cancelled:?}");
        let state = app.store.call(&call_id).await.unwrap().expect("the call is stored").state;
        let session = app.store.session(&session_id).await.unwrap();
        let hold = |status: &'static str| {
            let (billing, session_id) = (app.billing.clone(), session_id.clone());
            async move {
                let what = format!("round {round}: the hold {status}");
                common::until(&what, || async {
                    billing.hold(&session_id).await.unwrap().expect("the hold is stored").status == status
                })
                .await;
            }
        };
        if accepted.is_ok() {
            accepts += 1;
            assert_eq!(state, "accepted", "round {round}");
            assert_eq!(session.map(|s| s.record.call_id), Some(call_id.clone()), "round {round}");
            hold("held").await;
            seeker.end_session(&session_id).await.unwrap();
        } else {
            cancels += 1;
            assert_eq!(state, "cancelled", "round {round}");
            assert!(session.is_none(), "round {round}: no session for a cancelled call");
            hold("released").await;
            let settlement = app.billing.settlement(&session_id).await.unwrap().expect("a settlement");
            assert_eq!((settlement.outcome.as_str(), settlement.attempts), ("unanswered", 1), "round {round}");
        }
    }
    eprintln!("accept against cancel: {accepts} accepted, {cancels} cancelled");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn accept_against_cancel_on_sqlite() {
    accept_against_cancel(spawn_app().await).await;
}

#[tokio::test]
async fn accept_against_cancel_on_postgres() {
    accept_against_cancel(spawn_app_on_postgres().await).await;
}

/// Calls placed together read their consultants' prices together, in one
/// statement per batch: each hold is still its own consultant's price,
/// model and payout account, whichever calls share its batch (each
/// consultant is asked for three times a round, consultants without a
/// price beside priced ones), and a consultant without a price gets no
/// hold (B2, M7). Twelve
/// consultants: a third charge nothing, a third a fixed price, a third by
/// the minute; every fourth has a payout account that can receive
/// transfers and every fourth another one that cannot yet. Each round
/// places 36 holds at once, three per consultant.
async fn holds_placed_together_each_get_their_consultants_price(app: TestApp) {
    const CONSULTANTS: usize = 12;
    let max_minutes = i64::from(app.billing.config().instant_max_minutes);
    let mut expected = Vec::new();
    for i in 0..CONSULTANTS {
        let c = uid(&format!("cora{i}"));
        let price = match i % 3 {
            0 => None,
            1 => Some(ConsultantPrice { model: PriceModel::Fixed, amount: eur(1000 + i as i64) }),
            _ => Some(ConsultantPrice { model: PriceModel::PerMinute, amount: eur(10 + i as i64) }),
        };
        if let Some(price) = &price {
            app.billing.set_price(&c, price).await.unwrap();
        }
        let account = format!("acct_cora{i}");
        if i % 4 < 2 {
            app.billing.account_updated(&c, &account, i % 4 == 0, i % 4 == 0, i % 4 == 0).await.unwrap();
        }
        expected.push((c, price, (i % 4 == 0).then_some(account)));
    }
    for round in 0..8 {
        let placements = (0..3 * CONSULTANTS).map(|k| {
            let (consultant, price, destination) = &expected[(k * 5 + round) % CONSULTANTS];
            let sid = SessionId::parse(format!("ses_together_{round}_{k}")).unwrap();
            let billing = app.billing.clone();
            async move {
                let held =
                    billing.place_hold(&sid, "call_together", &uid("sam"), consultant, Some("pm_card_visa")).await;
                (sid, consultant, price, destination, held)
            }
        });
        for (sid, consultant, price, destination, held) in futures_util::future::join_all(placements).await {
            let held = held.unwrap_or_else(|e| panic!("round {round}: {consultant}: {e}"));
            let Some(price) = price else {
                assert_eq!(held, None, "round {round}: {consultant} charges nothing: no hold");
                assert!(app.billing.hold(&sid).await.unwrap().is_none(), "round {round}: {consultant}: none stored");
                continue;
            };
            let held = held.unwrap_or_else(|| panic!("round {round}: {consultant} charges {price:?}: a hold"));
            let amount = match price.model {
                PriceModel::Fixed => price.amount,
                PriceModel::PerMinute => eur(price.amount.amount_minor * max_minutes),
            };
            assert_eq!((held.price, held.hold), (*price, amount), "round {round}: {consultant}");
            let row = sqlx::query("SELECT consultant_id, amount_minor, destination FROM holds WHERE session_id = $1")
                .bind(sid.as_str())
                .fetch_one(&app.store.pool())
                .await
                .unwrap();
            let stored = (row.get::<String, _>("consultant_id"), row.get::<i64, _>("amount_minor"));
            assert_eq!(stored, (consultant.to_string(), amount.amount_minor), "round {round}: {consultant}");
            let to: Option<String> = row.get("destination");
            assert_eq!(to.as_ref(), destination.as_ref(), "round {round}: {consultant}'s payout account");
        }
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn holds_placed_together_each_get_their_consultants_price_on_sqlite() {
    holds_placed_together_each_get_their_consultants_price(spawn_app().await).await;
}

#[tokio::test]
async fn holds_placed_together_each_get_their_consultants_price_on_postgres() {
    holds_placed_together_each_get_their_consultants_price(spawn_app_on_postgres().await).await;
}
