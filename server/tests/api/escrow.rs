//! Escrow through the API (issue 19, rules E1–E8): engagements funded up
//! front, milestones approved, released on the server clock, disputed and
//! split, cancelled; the races of approve against cancel and of two
//! approvals, on SQLite and PostgreSQL; the sandbox provider's view of
//! every movement and `parley reconcile` after each flow.

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres, until};
use parley_domain::Clock;
use parley_domain::protocol::rest::{Engagement, ReconcileFindingKind};
use parley_domain::protocol::{ErrorCode, Role};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod races;
mod webhooks;

const DAY: Duration = Duration::from_secs(24 * 3600);

/// One REST call; returns the status and the JSON body (null if none).
async fn call(app: &TestApp, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = reqwest::Client::new().request(method, format!("{}{path}", app.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn post(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    call(app, token, Method::POST, path, Some(body)).await
}

/// Asserts an RFC 9457 problem with `code`.
#[track_caller]
fn assert_problem(got: &(StatusCode, Value), status: StatusCode, code: ErrorCode) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code.as_str(), "{}", got.1);
    assert_eq!(got.1["status"], status.as_u16());
}

fn engagement(got: &(StatusCode, Value)) -> Engagement {
    assert_eq!(got.0, StatusCode::OK, "{}", got.1);
    serde_json::from_value(got.1.clone()).unwrap_or_else(|e| panic!("an engagement: {e}: {}", got.1))
}

/// A consultant `id` with a payout account ready (the sandbox's are at once).
async fn ready_consultant(app: &TestApp, id: &str) -> String {
    let token = app.token(id, Role::Consultant);
    let (status, v) = post(app, &token, "/v1/consultants/me/payout-account", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    token
}

/// Funds an engagement of `seeker` with `consultant` for milestones of
/// `amounts` EUR minor units.
async fn fund(app: &TestApp, seeker: &str, consultant: &str, amounts: &[i64]) -> Engagement {
    let milestones: Vec<Value> = amounts
        .iter()
        .enumerate()
        .map(|(i, a)| json!({"description": format!("part {}", i + 1), "amount": {"amount_minor": a, "currency": "EUR"}}))
        .collect();
    let body = json!({"consultant_id": consultant, "title": "A website", "milestones": milestones,
        "payment_method": "pm_card_visa"});
    engagement(&post(app, &app.token(seeker, Role::Seeker), "/v1/engagements", body).await)
}

/// What the sandbox provider did with engagement `id`'s charge: received,
/// refunded, and the transfers out of it (amounts, smallest first: they
/// may be made in the same millisecond of the manual clock).
async fn provider_view(app: &TestApp, id: &str) -> (i64, i64, Vec<i64>) {
    let pool = app.store.pool();
    let row: (i64, i64, String) = sqlx::query_as(
        "SELECT i.amount_received, i.amount_refunded, e.charge_id FROM engagements e \
         JOIN sandbox_intents i ON i.id = e.intent_id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let transfers: Vec<i64> = sqlx::query_scalar(
        "SELECT amount_minor FROM sandbox_transfers WHERE source_transaction = $1 ORDER BY amount_minor",
    )
    .bind(&row.2)
    .fetch_all(&pool)
    .await
    .unwrap();
    (row.0, row.1, transfers)
}

/// E1, E3: funding charges the total at once into the platform's balance
/// (escrowed in the ledger); an approved milestone is transferred to the
/// consultant less the 20 % commission, once even when approved twice;
/// strangers see nothing; bad input gets problems.
#[tokio::test]
async fn e1_e3_milestones_funded_then_approved_pay_the_consultant_less_commission() {
    let app = spawn_app().await;
    let seeker = app.token("sia", Role::Seeker);
    // No payout account yet: nothing can be released to them, nothing charged.
    let body = json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_visa",
        "milestones": [{"description": "d", "amount": {"amount_minor": 100, "currency": "EUR"}}]});
    assert_problem(
        &post(&app, &seeker, "/v1/engagements", body).await,
        StatusCode::CONFLICT,
        ErrorCode::PayoutAccountRequired,
    );
    let cal = ready_consultant(&app, "cal").await;
    // Bad input.
    let bad = [
        (json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_visa"}), ErrorCode::MissingField),
        (
            json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_visa", "milestones": []}),
            ErrorCode::InvalidField,
        ),
        (
            json!({"consultant_id": "cal", "title": " ", "payment_method": "pm_card_visa",
            "milestones": [{"description": "d", "amount": {"amount_minor": 100, "currency": "EUR"}}]}),
            ErrorCode::InvalidField,
        ),
        (
            json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_visa",
            "milestones": [{"description": "d", "amount": {"amount_minor": 0, "currency": "EUR"}}]}),
            ErrorCode::InvalidField,
        ),
        (
            json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_visa",
            "milestones": [{"description": "d", "amount": {"amount_minor": 100, "currency": "JPY"}}]}),
            ErrorCode::UnsupportedCurrency,
        ),
        (
            json!({"consultant_id": "cal", "title": "t", "payment_method": "pm_card_chargeDeclined",
            "milestones": [{"description": "d", "amount": {"amount_minor": 100, "currency": "EUR"}}]}),
            ErrorCode::PaymentDeclined,
        ),
    ];
    for (body, code) in bad {
        assert_problem(&post(&app, &seeker, "/v1/engagements", body).await, StatusCode::BAD_REQUEST, code);
    }
    assert_problem(&post(&app, &cal, "/v1/engagements", json!({})).await, StatusCode::FORBIDDEN, ErrorCode::WrongRole);

    // Funding retried with its Idempotency-Key is replayed: one engagement, one charge.
    let body = json!({"consultant_id": "cal", "title": "A website", "payment_method": "pm_card_visa",
        "milestones": [{"description": "part 1", "amount": {"amount_minor": 10_000, "currency": "EUR"}},
                       {"description": "part 2", "amount": {"amount_minor": 5_000, "currency": "EUR"}}]});
    let first = app.post_keyed(&seeker, "/v1/engagements", "fund-1", &body).await;
    let retry = app.post_keyed(&seeker, "/v1/engagements", "fund-1", &body).await;
    assert_eq!((first.0, retry.0, retry.2), (200, 200, true), "{}", first.1);
    assert_eq!(first.1["id"], retry.1["id"]);
    let e: Engagement = serde_json::from_value(first.1).unwrap();
    assert_eq!((e.state.as_str(), e.kind.as_str()), ("active", "milestones"));
    assert_eq!((e.funded.amount_minor, e.escrowed.amount_minor), (15_000, 15_000));
    assert_eq!(provider_view(&app, &e.id).await, (15_000, 0, vec![]), "charged at once, nothing transferred");
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM ledger WHERE session_id = $1")
        .bind(&e.id)
        .fetch_all(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(kinds, ["escrow_fund"], "the ledger shows it escrowed");
    let (m1, m2) = (e.milestones[0].id.clone(), e.milestones[1].id.clone());
    let eve = app.token("eve", Role::Seeker);
    assert_problem(
        &call(&app, &eve, Method::GET, &format!("/v1/engagements/{}", e.id), None).await,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownEngagement,
    );
    assert_problem(
        &post(&app, &eve, &format!("/v1/milestones/{m1}/approve"), json!({})).await,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownEngagement,
    );
    assert_problem(
        &post(&app, &cal, &format!("/v1/milestones/{m1}/approve"), json!({})).await,
        StatusCode::FORBIDDEN,
        ErrorCode::Forbidden,
    );
    assert_problem(
        &post(&app, &cal, &format!("/v1/milestones/{m1}/submit"), json!({"note": "done", "links": ["ftp://x"]})).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );

    // The seeker approves the first: 10 000 less 20 % goes to the consultant.
    let e = engagement(&post(&app, &seeker, &format!("/v1/milestones/{m1}/approve"), json!({})).await);
    assert_eq!(e.milestones[0].state, "released");
    assert_eq!((e.released.amount_minor, e.escrowed.amount_minor), (10_000, 5_000));
    assert_eq!(provider_view(&app, &e.id).await, (15_000, 0, vec![8_000]));
    // Approving it again moves nothing.
    let again = engagement(&post(&app, &seeker, &format!("/v1/milestones/{m1}/approve"), json!({})).await);
    assert_eq!(again.released.amount_minor, 10_000);
    assert_eq!(provider_view(&app, &e.id).await.2, vec![8_000], "one transfer");
    // The consultant submits the second with a link; the seeker approves it.
    let body = json!({"note": "deployed", "links": ["https://example.com/site"]});
    let e = engagement(&post(&app, &cal, &format!("/v1/milestones/{m2}/submit"), body).await);
    assert_eq!(e.milestones[1].state, "submitted");
    assert_eq!(e.milestones[1].links, ["https://example.com/site"]);
    assert_eq!(e.milestones[1].release_due_ms, Some(app.clock.now().unix_millis() + 7 * 24 * 3_600_000));
    let e = engagement(&post(&app, &seeker, &format!("/v1/milestones/{m2}/approve"), json!({})).await);
    assert_eq!((e.state.as_str(), e.escrowed.amount_minor), ("completed", 0));
    assert_eq!(provider_view(&app, &e.id).await, (15_000, 0, vec![4_000, 8_000]));
    // Nothing left to cancel; the consultant's list has it.
    assert_problem(
        &post(&app, &seeker, &format!("/v1/engagements/{}/cancel", e.id), json!({})).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    let (status, list) = call(&app, &cal, Method::GET, "/v1/engagements", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let states: Vec<(&str, &str)> =
        list.as_array().unwrap().iter().map(|x| (x["id"].as_str().unwrap(), x["state"].as_str().unwrap())).collect();
    assert!(states.contains(&(e.id.as_str(), "completed")), "{states:?}");
    assert!(states.iter().any(|(_, s)| *s == "failed"), "the declined funding is kept as failed: {states:?}");
    assert_eq!(states.len(), 2, "one engagement per keyed request: {states:?}");
    app.assert_reconciled().await;
}

/// E4: a submitted milestone nobody answers is released by the escrow
/// worker when PARLEY_ESCROW_AUTO_RELEASE_DAYS (7) have passed on the
/// server clock, not a second before.
#[tokio::test]
async fn e4_a_submitted_milestone_is_released_on_the_server_clock() {
    let app = spawn_app().await;
    let cal = ready_consultant(&app, "cal").await;
    let e = fund(&app, "sia", "cal", &[6_000]).await;
    let m = e.milestones[0].id.clone();
    let e = engagement(&post(&app, &cal, &format!("/v1/milestones/{m}/submit"), json!({"note": "done"})).await);
    let due = e.milestones[0].release_due_ms.expect("a release time");
    // A second before it is due, a pass releases nothing.
    app.advance(7 * DAY - Duration::from_secs(1)).await;
    app.billing.escrow_pass(app.clock.now()).await.unwrap();
    let seeker = app.token("sia", Role::Seeker);
    let path = format!("/v1/engagements/{}", e.id);
    assert_eq!(engagement(&call(&app, &seeker, Method::GET, &path, None).await).milestones[0].state, "submitted");
    assert_eq!(provider_view(&app, &e.id).await.2, Vec::<i64>::new());
    // At the due time the worker (sleeping on the clock) releases it.
    app.advance(Duration::from_secs(1)).await;
    assert_eq!(app.clock.now().unix_millis(), due);
    until("the milestone is released on its own", || async {
        engagement(&call(&app, &seeker, Method::GET, &path, None).await).milestones[0].state == "released"
    })
    .await;
    until("its transfer is done", || async { provider_view(&app, &e.id).await.2 == vec![4_800] }).await;
    let e = engagement(&call(&app, &seeker, Method::GET, &path, None).await);
    assert_eq!((e.state.as_str(), e.released.amount_minor), ("completed", 6_000));
    app.assert_reconciled().await;
}

/// E5: a disputed milestone is not released on its own; the seeker can no
/// longer approve it nor cancel around it; a moderator splits it (3 000 to
/// the consultant less commission, 7 000 refunded) with a note, once.
#[tokio::test]
async fn e5_a_disputed_milestone_is_split_by_a_moderator() {
    let app = spawn_app().await;
    let cal = ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let moderator = app.token("mo", Role::Moderator);
    let e = fund(&app, "sia", "cal", &[10_000]).await;
    let m = e.milestones[0].id.clone();
    post(&app, &cal, &format!("/v1/milestones/{m}/submit"), json!({"note": "done"})).await;
    assert_problem(
        &post(&app, &seeker, &format!("/v1/milestones/{m}/dispute"), json!({"reason": ""})).await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );
    let e = engagement(
        &post(&app, &seeker, &format!("/v1/milestones/{m}/dispute"), json!({"reason": "half of it is missing"})).await,
    );
    assert_eq!((e.milestones[0].state.as_str(), e.milestones[0].release_due_ms), ("disputed", None));
    // Past its old release time, nothing happens to it.
    app.advance(8 * DAY).await;
    app.billing.escrow_pass(app.clock.now()).await.unwrap();
    assert_problem(
        &post(&app, &seeker, &format!("/v1/milestones/{m}/approve"), json!({})).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    assert_problem(
        &post(&app, &seeker, &format!("/v1/engagements/{}/cancel", e.id), json!({})).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    assert_problem(
        &post(&app, &seeker, &format!("/v1/milestones/{m}/resolve"), json!({"release_minor": 0, "note": "n"})).await,
        StatusCode::FORBIDDEN,
        ErrorCode::WrongRole,
    );
    assert_problem(
        &post(&app, &moderator, &format!("/v1/milestones/{m}/resolve"), json!({"release_minor": 10_001, "note": "n"}))
            .await,
        StatusCode::BAD_REQUEST,
        ErrorCode::InvalidField,
    );
    assert_eq!(provider_view(&app, &e.id).await, (10_000, 0, vec![]), "nothing moved while disputed");

    let body = json!({"release_minor": 3_000, "note": "the first page was delivered"});
    let e = engagement(&post(&app, &moderator, &format!("/v1/milestones/{m}/resolve"), body.clone()).await);
    let ms = &e.milestones[0];
    assert_eq!((ms.state.as_str(), ms.released.amount_minor, ms.refunded.amount_minor), ("split", 3_000, 7_000));
    assert_eq!(ms.resolution_note.as_deref(), Some("the first page was delivered"));
    assert_eq!((e.state.as_str(), e.escrowed.amount_minor), ("completed", 0));
    assert_eq!(provider_view(&app, &e.id).await, (10_000, 7_000, vec![2_400]));
    assert_problem(
        &post(&app, &moderator, &format!("/v1/milestones/{m}/resolve"), body).await,
        StatusCode::CONFLICT,
        ErrorCode::EngagementState,
    );
    app.assert_reconciled().await;
}

/// E6: cancelling refunds the open and submitted milestones once, less the
/// seeker's 5 % cancellation fee; released ones stay released.
#[tokio::test]
async fn e6_cancelling_refunds_what_is_unreleased_once_less_the_fee() {
    let app = spawn_app().await;
    ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let e = fund(&app, "sia", "cal", &[4_000, 6_000]).await;
    post(&app, &seeker, &format!("/v1/milestones/{}/approve", e.milestones[0].id), json!({})).await;
    let path = format!("/v1/engagements/{}/cancel", e.id);
    let e = engagement(&post(&app, &seeker, &path, json!({"reason": "changed plans"})).await);
    assert_eq!(e.state, "cancelled");
    assert_eq!((e.milestones[0].state.as_str(), e.milestones[1].state.as_str()), ("released", "refunded"));
    assert_eq!(e.cancel_fee.map(|m| m.amount_minor), Some(300));
    assert_eq!((e.refunded.amount_minor, e.escrowed.amount_minor), (5_700, 0));
    assert_eq!(provider_view(&app, &e.id).await, (10_000, 5_700, vec![3_200]));
    assert_problem(&post(&app, &seeker, &path, json!({})).await, StatusCode::CONFLICT, ErrorCode::EngagementState);
    assert_eq!(provider_view(&app, &e.id).await.1, 5_700, "refunded once");
    app.assert_reconciled().await;
}

/// E8: reconciliation finds an engagement whose ledger does not add up
/// (a release the ledger lost) and names it.
#[tokio::test]
async fn e8_reconcile_finds_escrow_that_does_not_add_up() {
    let app = spawn_app().await;
    ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let e = fund(&app, "sia", "cal", &[1_000, 2_000]).await;
    post(&app, &seeker, &format!("/v1/milestones/{}/approve", e.milestones[0].id), json!({})).await;
    app.assert_reconciled().await;
    sqlx::query("DELETE FROM ledger WHERE session_id = $1 AND kind = 'escrow_release'")
        .bind(&e.id)
        .execute(&app.store.pool())
        .await
        .unwrap();
    let report = app.reconcile().await;
    let found: Vec<_> = report.findings.iter().map(|f| (f.kind, f.session_id.as_deref())).collect();
    assert_eq!(found, [(ReconcileFindingKind::EscrowBalance, Some(e.id.as_str())); 2], "{report:?}");
}
