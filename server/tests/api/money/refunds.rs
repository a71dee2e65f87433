//! Refunds: a moderator's partial refund, concurrent and idempotent
//! refunds on both databases (M4, B7).

use super::*;

#[tokio::test]
async fn m4_b7_a_moderator_ends_a_session_and_refunds_part_of_it() {
    let app = spawn_app().await;
    let mut s = session_with(&app, PriceModel::Fixed, 3000).await;
    let moderator = app.token("mo", Role::Moderator);
    // Only moderators refund; nothing to refund yet.
    let err = s.api.refund(&s.seeker_token, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongRole));
    let err = s.api.refund(&moderator, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotCharged));

    app.advance(SECS(650)).await;
    let url = format!("{}/v1/sessions/{}/end", app.base, s.session_id);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(ended(&mut s.s_events).await.0, SessionEndReason::Moderator);
    assert_eq!(ended(&mut s.c_events).await.0, SessionEndReason::Moderator);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 409, "a second end is refused");
    settled(&s.api, &moderator, &s.session_id).await;

    let err = s.api.refund(&moderator, &s.session_id, Some(3001)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RefundExceedsCapture), "more than was captured");
    let err = s.api.refund(&moderator, &s.session_id, Some(0)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidField), "nothing");
    let refund = s.api.refund(&moderator, &s.session_id, Some(1000)).await.unwrap();
    assert_eq!(refund.amount, eur(1000));
    let d = s.api.session(&moderator, &s.session_id).await.unwrap();
    assert_eq!(d.refunded, Some(eur(1000)));
    // The consultant gives back their 80 % share of the refund.
    assert_eq!(d.payout, Some(eur(2400 - 800)));
    let earnings = s.api.earnings(&s.consultant_token, &uid("cora")).await.unwrap();
    assert_eq!(earnings.totals[0].earnings, eur(1600));
    let receipts = s.api.receipts(&s.seeker_token).await.unwrap();
    assert_eq!((receipts[0].charged, receipts[0].refunded), (eur(3000), eur(1000)));
    // The rest, then nothing left.
    assert_eq!(s.api.refund(&moderator, &s.session_id, None).await.unwrap().amount, eur(2000));
    let err = s.api.refund(&moderator, &s.session_id, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::RefundExceedsCapture));
    // Strangers see nothing of it.
    let err = s.api.session(&app.token("eve", Role::Seeker), &s.session_id).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    let err = s.api.earnings(&app.token("eve", Role::Consultant), &uid("cora")).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden));
    app.assert_reconciled().await;
}

/// A charged session of 3000 (fixed price), ended by a moderator past F and
/// settled; returns it with the moderator's token.
async fn charged_session(app: &TestApp) -> (Session, String) {
    let mut s = session_with(app, PriceModel::Fixed, 3000).await;
    let moderator = app.token("mo", Role::Moderator);
    app.advance(SECS(650)).await;
    let url = format!("{}/v1/sessions/{}/end", app.base, s.session_id);
    let resp = reqwest::Client::new().post(&url).bearer_auth(&moderator).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    ended(&mut s.s_events).await;
    let d = settled(&s.api, &moderator, &s.session_id).await;
    assert_eq!(d.captured, Some(eur(3000)));
    (s, moderator)
}

/// What the payment provider (the sandbox) has refunded of the session's
/// payment, and what Parley's ledger says was refunded.
async fn refunded(app: &TestApp, s: &Session, moderator: &str) -> (i64, i64) {
    let provider: i64 = sqlx::query_scalar(
        "SELECT i.amount_refunded FROM sandbox_intents i JOIN holds h ON h.intent_id = i.id WHERE h.session_id = $1",
    )
    .bind(s.session_id.as_str())
    .fetch_one(&app.store.pool())
    .await
    .unwrap();
    let d = s.api.session(moderator, &s.session_id).await.unwrap();
    (provider, d.refunded.map_or(0, |m| m.amount_minor))
}

/// A moderator double-clicking: five refunds of 500 at once are five
/// distinct refunds (2500 at the provider and in the ledger); then ten full
/// refunds at once: one refunds the 500 left, nine are refused with
/// `refund_exceeds_capture` — never a 502, never more than the capture.
async fn concurrent_refunds(app: TestApp) {
    let (s, moderator) = charged_session(&app).await;
    let five = futures_util::future::join_all((0..5).map(|_| s.api.refund(&moderator, &s.session_id, Some(500)))).await;
    let mut ids: Vec<String> = five.into_iter().map(|r| r.expect("each refund of 500 fits").refund_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "five 200s are five distinct refunds");
    assert_eq!(refunded(&app, &s, &moderator).await, (2500, 2500));

    let ten = futures_util::future::join_all((0..10).map(|_| s.api.refund(&moderator, &s.session_id, None))).await;
    let (ok, refused): (Vec<_>, Vec<_>) = ten.into_iter().partition(Result::is_ok);
    let ok: Vec<_> = ok.into_iter().map(Result::unwrap).collect();
    assert_eq!(ok.len(), 1, "one full refund gets what is left: {ok:?}");
    assert_eq!(ok[0].amount, eur(500));
    for e in refused {
        assert_eq!(e.unwrap_err().code(), Some(ErrorCode::RefundExceedsCapture));
    }
    assert_eq!(refunded(&app, &s, &moderator).await, (3000, 3000));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn concurrent_refunds_on_sqlite() {
    concurrent_refunds(spawn_app().await).await;
}

#[tokio::test]
async fn concurrent_refunds_on_postgres() {
    concurrent_refunds(spawn_app_on_postgres().await).await;
}

/// A retried refund with the same Idempotency-Key replays the first
/// response and refunds nothing more; the key with another body is a 422;
/// five sends of one new key at once refund once (the others replay it or
/// are told it is in use).
async fn idempotent_refunds(app: TestApp) {
    let (s, moderator) = charged_session(&app).await;
    let path = format!("/v1/sessions/{}/refund", s.session_id);
    let body = serde_json::json!({"amount_minor": 700});
    let first = app.post_keyed(&moderator, &path, "refund-1", &body).await;
    assert_eq!((first.0, first.2), (200, false), "{first:?}");
    let again = app.post_keyed(&moderator, &path, "refund-1", &body).await;
    assert_eq!((again.0, again.2), (200, true), "a replay: {again:?}");
    assert_eq!(again.1["refund_id"], first.1["refund_id"]);
    assert_eq!(refunded(&app, &s, &moderator).await, (700, 700), "the retry moved no money");

    let other = app.post_keyed(&moderator, &path, "refund-1", &serde_json::json!({"amount_minor": 800})).await;
    assert_eq!(other.0, 422, "{other:?}");
    assert_eq!(other.1["code"], "idempotency_key_reused");
    // Another caller's key of the same name is theirs.
    let other_mod = app.token("mia", Role::Moderator);
    let theirs = app.post_keyed(&other_mod, &path, "refund-1", &body).await;
    assert_eq!((theirs.0, theirs.2), (200, false), "{theirs:?}");
    assert_eq!(refunded(&app, &s, &moderator).await, (1400, 1400));

    let b300 = serde_json::json!({"amount_minor": 300});
    let at_once =
        futures_util::future::join_all((0..5).map(|_| app.post_keyed(&moderator, &path, "refund-2", &b300))).await;
    let mut ids = Vec::new();
    for (status, v, _) in &at_once {
        match status {
            200 => ids.push(v["refund_id"].as_str().unwrap().to_owned()),
            409 => assert_eq!(v["code"], "idempotency_key_in_use", "{v}"),
            other => panic!("{other}: {v}"),
        }
    }
    ids.dedup();
    assert!(ids.len() <= 1, "one refund behind every 200: {ids:?}");
    // Whatever the interleaving, a later retry gets the one refund.
    let later = app.post_keyed(&moderator, &path, "refund-2", &b300).await;
    assert_eq!(later.0, 200, "{later:?}");
    if let Some(id) = ids.first() {
        assert_eq!(later.1["refund_id"].as_str(), Some(id.as_str()));
    }
    assert_eq!(refunded(&app, &s, &moderator).await, (1700, 1700), "refund-2 refunded once");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn idempotent_refunds_on_sqlite() {
    idempotent_refunds(spawn_app().await).await;
}

#[tokio::test]
async fn idempotent_refunds_on_postgres() {
    idempotent_refunds(spawn_app_on_postgres().await).await;
}
