//! Disputes (docs/rules.md D1–D4): a participant disputes an ended,
//! charged session; the other side answers once; a moderator decides
//! through the serialised refund path; the evidence bundle; rivals on both
//! databases.

use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming, settled, spawn_app, spawn_app_on_postgres, spawn_app_with};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{Role, ServerMessage};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::{ApiClient, Events, SignalingClient};
use serde_json::{Value, json};

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

/// A session between `seeker` and `consultant` (EUR 30.00 fixed), open,
/// with its clients kept connected.
struct Charged {
    session_id: SessionId,
    seeker: String,
    consultant: String,
    clients: (SignalingClient, SignalingClient),
    s_events: Events,
    c_events: Events,
}

/// `n` sessions, pair `i` being `sam{tag}{i}` calling `cora{tag}{i}`, both
/// joined; then `secs` of server time pass and a moderator ends them all,
/// and they are settled (charged past the free window, free within it).
async fn sessions(app: &TestApp, tag: &str, n: usize, secs: u64) -> Vec<Charged> {
    let api = ApiClient::new(&app.base).unwrap();
    let mut out = Vec::new();
    for i in 0..n {
        let (seeker, consultant) = (format!("sam{tag}{i}"), format!("cora{tag}{i}"));
        let token = app.token(&consultant, Role::Consultant);
        api.set_price(&token, &ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) }).await.unwrap();
        let (c, mut c_events) = app.available_consultant(&consultant).await;
        let (s, s_events) = app.client(&seeker, Role::Seeker).await;
        s.call(&UserId::parse(&consultant).unwrap(), Some("pm_card_visa")).await.expect("hold placed");
        let (call_id, session_id) = incoming(&mut c_events).await;
        c.accept(&call_id).await.unwrap();
        s.join(&session_id).await.unwrap();
        c.join(&session_id).await.unwrap();
        out.push(Charged { session_id, seeker, consultant, clients: (s, c), s_events, c_events });
    }
    app.advance(Duration::from_secs(secs)).await;
    let moderator = app.token("mo", Role::Moderator);
    for c in &out {
        let (status, v) = call(app, "POST", &format!("/v1/sessions/{}/end", c.session_id), &moderator, None).await;
        assert_eq!(status, 200, "{v}");
        settled(&api, &moderator, &c.session_id).await;
    }
    out
}

/// Sends `method path` with `token` and a JSON `body`; the status and the
/// JSON answer (`null` if none).
async fn call(app: &TestApp, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", app.base);
    let mut req = match method {
        "GET" => http.get(&url),
        _ => http.post(&url),
    }
    .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn open(app: &TestApp, c: &Charged, who: &str, role: Role) -> (u16, Value) {
    let body = json!({"reason": "session_cut_short", "text": "The consultant left after ten minutes."});
    call(app, "POST", &format!("/v1/sessions/{}/disputes", c.session_id), &app.token(who, role), Some(body)).await
}

/// The webhook event types stored for `dispute` (`dispute.*`), by time
/// then type.
async fn dispute_webhooks(app: &TestApp, dispute: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT type FROM webhook_outbox WHERE body LIKE $1 AND type LIKE 'dispute.%' ORDER BY created_ms, type",
    )
    .bind(format!("%{dispute}%"))
    .fetch_all(&app.store.pool())
    .await
    .unwrap()
}

/// What the provider (the sandbox) refunded of the session's payment.
async fn provider_refunded(app: &TestApp, sid: &SessionId) -> i64 {
    sqlx::query_scalar(
        "SELECT i.amount_refunded FROM sandbox_intents i JOIN holds h ON h.intent_id = i.id WHERE h.session_id = $1",
    )
    .bind(sid.as_str())
    .fetch_one(&app.store.pool())
    .await
    .unwrap()
}

async fn told(events: &mut Events, status: &str) {
    let want = status.to_owned();
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::DisputeUpdated { status, .. } if *status == want => Some(()),
            _ => None,
        })
        .await
        .expect("dispute.updated");
}

/// Waits (on the real clock, at most [`WAIT`]) until the last
/// `dispute.updated` of dispute `id` on `events` says `status`: what the
/// party's app shows once the dust settled (`client` is its connection).
async fn last_told(client: &SignalingClient, events: &mut Events, id: &str, status: &str, round: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        // Every push handed to this connection so far comes before the
        // answer to a request.
        client.ice_servers().await.expect("a round trip");
        while let Some(event) = events.try_recv() {
            last = told_of(event, id).or(last);
        }
        if last.as_deref() == Some(status) {
            return;
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => last = told_of(event, id).or(last),
            Ok(None) => panic!("round {round}: the connection closed"),
            Err(_) => panic!("round {round}: the last dispute.updated said {last:?}"),
        }
    }
}

/// The status `event` says if it is a `dispute.updated` of dispute `id`.
fn told_of(event: parley_sdk::Event, id: &str) -> Option<String> {
    match event {
        parley_sdk::Event::Server(ServerMessage::DisputeUpdated { dispute_id, status, .. }) if dispute_id == id => {
            Some(status)
        }
        _ => None,
    }
}

/// D1–D4: the seeker opens, the consultant is told and answers once, the
/// bundle shows the session to both and the moderator, a moderator decides
/// a partial refund: 1000 back, 800 of it from the consultant, 200 from
/// the fee; webhooks stored for each step; the ledger balances.
async fn dispute_flow(app: TestApp) {
    let mut cs = sessions(&app, "f", 1, 650).await;
    let c = &mut cs[0];
    let moderator = app.token("mo", Role::Moderator);
    let seeker = app.token(&c.seeker, Role::Seeker);
    let consultant = app.token(&c.consultant, Role::Consultant);

    let (status, d) = open(&app, c, &c.seeker.clone(), Role::Seeker).await;
    assert_eq!(status, 201, "{d}");
    assert_eq!((d["status"].as_str(), d["reason"].as_str()), (Some("open"), Some("session_cut_short")));
    let id = d["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dsp_"), "{id}");
    told(&mut c.c_events, "open").await;

    // The bundle: the parties and moderators, nobody else.
    for token in [&seeker, &consultant, &moderator] {
        let (status, b) = call(&app, "GET", &format!("/v1/disputes/{id}"), token, None).await;
        assert_eq!(status, 200, "{b}");
        assert_eq!(b["dispute"]["id"], id.as_str());
        assert_eq!(b["session"]["captured"]["amount_minor"], 3000);
        assert_eq!(b["session"]["billable_secs"], 650);
        assert!(b["session"]["timeline"].as_array().unwrap().iter().any(|t| t["kind"] == "joined"), "{b}");
        assert_eq!(b["history"][0]["role"], "seeker");
        assert_eq!(b["history"][0]["disputes_opened"], 1);
        assert_eq!(b["history"][1]["disputes_against"], 1);
    }
    let (status, e) = call(&app, "GET", &format!("/v1/disputes/{id}"), &app.token("eve", Role::Seeker), None).await;
    assert_eq!((status, e["code"].as_str()), (404, Some("unknown_dispute")));
    let md = reqwest::Client::new()
        .get(format!("{}/v1/disputes/{id}/bundle.md", app.base))
        .bearer_auth(&moderator)
        .send()
        .await
        .unwrap();
    assert_eq!(md.status(), 200);
    assert!(md.headers()["content-type"].to_str().unwrap().starts_with("text/markdown"));
    let md = md.text().await.unwrap();
    for part in ["# Dispute ", "## Money and the meter", "| captured | EUR 30.00 |", "## Timeline", "## History"] {
        assert!(md.contains(part), "{part} in\n{md}");
    }

    // The opener does not answer their own dispute; the other side once.
    let answer = |text: &str| json!({"text": text});
    let (status, e) = call(&app, "POST", &format!("/v1/disputes/{id}/answer"), &seeker, Some(answer("me"))).await;
    assert_eq!((status, e["code"].as_str()), (403, Some("forbidden")));
    let (status, a) =
        call(&app, "POST", &format!("/v1/disputes/{id}/answer"), &consultant, Some(answer("I stayed 11 min."))).await;
    assert_eq!((status, a["status"].as_str()), (200, Some("answered")), "{a}");
    told(&mut c.s_events, "answered").await;
    let (status, e) =
        call(&app, "POST", &format!("/v1/disputes/{id}/answer"), &consultant, Some(answer("again"))).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("dispute_answered")));

    // Only moderators decide; a partial refund needs an amount.
    let decision_path = format!("/v1/disputes/{id}/decision");
    let decide = |body: Value| call(&app, "POST", &decision_path, &moderator, Some(body));
    let (status, e) = call(
        &app,
        "POST",
        &format!("/v1/disputes/{id}/decision"),
        &seeker,
        Some(json!({"decision": "uphold", "note": "n"})),
    )
    .await;
    assert_eq!((status, e["code"].as_str()), (403, Some("wrong_role")));
    let (status, e) = decide(json!({"decision": "partial_refund", "note": "half"})).await;
    assert_eq!((status, e["code"].as_str()), (400, Some("invalid_field")));
    let (status, d) = decide(json!({"decision": "partial_refund", "amount_minor": 1000, "note": "Ended early."})).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!((d["status"].as_str(), d["decision"].as_str()), (Some("decided"), Some("partial_refund")));
    assert_eq!(d["refunded"]["amount_minor"], 1000);
    told(&mut c.s_events, "decided").await;
    told(&mut c.c_events, "decided").await;
    let (status, e) = decide(json!({"decision": "full_refund", "note": "more"})).await;
    assert_eq!((status, e["code"].as_str()), (409, Some("dispute_decided")));

    // The money: refunded once at the provider, the consultant gives back
    // their 80 %, the fee the rest.
    assert_eq!(provider_refunded(&app, &c.session_id).await, 1000);
    let (_, s) = call(&app, "GET", &format!("/v1/sessions/{}", c.session_id), &moderator, None).await;
    assert_eq!(s["refunded"]["amount_minor"], 1000);
    assert_eq!(s["payout"]["amount_minor"], 2400 - 800);
    let kinds: Vec<&str> = s["ledger"].as_array().unwrap().iter().filter_map(|l| l["kind"].as_str()).collect();
    assert!(kinds.ends_with(&["refund", "earnings_reversal", "fee_reversal"]), "{kinds:?}");
    // One of each (ordered by type: the manual clock stamps them alike).
    assert_eq!(dispute_webhooks(&app, &id).await, ["dispute.answered", "dispute.decided", "dispute.opened"]);
    let (_, list) = call(&app, "GET", "/v1/disputes", &seeker, None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    let (_, list) = call(&app, "GET", "/v1/disputes", &app.token("eve", Role::Seeker), None).await;
    assert_eq!(list.as_array().map(Vec::len), Some(0));
    app.assert_reconciled().await;
}

#[tokio::test]
async fn dispute_flow_on_sqlite() {
    dispute_flow(spawn_app().await).await;
}

#[tokio::test]
async fn dispute_flow_on_postgres() {
    dispute_flow(spawn_app_on_postgres().await).await;
}

/// D1: strangers, moderators, bad bodies, a session not ended, a free
/// session, an unknown one, and a dispute past the window are refused
/// with their codes, and nothing is stored.
async fn refused_disputes(app: TestApp) {
    let cs = sessions(&app, "r", 2, 650).await;
    let c = &cs[0];
    let path = format!("/v1/sessions/{}/disputes", c.session_id);
    let seeker = app.token(&c.seeker, Role::Seeker);
    let ok = json!({"reason": "quality", "text": "Poor."});
    for (token, body, status, code) in [
        (app.token("eve", Role::Seeker), ok.clone(), 403, "forbidden"),
        (app.token("mo", Role::Moderator), ok.clone(), 403, "forbidden"),
        (seeker.clone(), json!({"reason": "bored", "text": "x"}), 400, "invalid_field"),
        (seeker.clone(), json!({"reason": "quality", "text": "   "}), 400, "invalid_field"),
        (seeker.clone(), json!({"reason": "quality"}), 400, "invalid_field"),
    ] {
        let (s, e) = call(&app, "POST", &path, &token, Some(body)).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{e}");
    }
    let (s, e) = call(&app, "POST", "/v1/sessions/ses_nope/disputes", &seeker, Some(ok.clone())).await;
    assert_eq!((s, e["code"].as_str()), (404, Some("unknown_session")), "{e}");

    // A free session (ended within the free window), and an open one.
    let free = sessions(&app, "free", 1, 30).await;
    let (s, e) = open(&app, &free[0], &free[0].seeker, Role::Seeker).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("not_charged")), "{e}");
    let api = ApiClient::new(&app.base).unwrap();
    let token = app.token("coraopen", Role::Consultant);
    api.set_price(&token, &ConsultantPrice { model: PriceModel::Fixed, amount: eur(3000) }).await.unwrap();
    let (cc, mut c_events) = app.available_consultant("coraopen").await;
    let (sc, _s_events) = app.client("samopen", Role::Seeker).await;
    sc.call(&UserId::parse("coraopen").unwrap(), Some("pm_card_visa")).await.unwrap();
    let (call_id, open_sid) = incoming(&mut c_events).await;
    cc.accept(&call_id).await.unwrap();
    let (s, e) = call(
        &app,
        "POST",
        &format!("/v1/sessions/{open_sid}/disputes"),
        &app.token("samopen", Role::Seeker),
        Some(ok.clone()),
    )
    .await;
    assert_eq!((s, e["code"].as_str()), (409, Some("session_not_completed")), "{e}");
    let moderator = app.token("mo", Role::Moderator);
    let (s, _) = call(&app, "POST", &format!("/v1/sessions/{open_sid}/end"), &moderator, None).await;
    assert_eq!(s, 200);
    settled(&api, &moderator, &open_sid).await;

    // Within the window to the last day; past it, refused.
    app.advance(Duration::from_secs(14 * 24 * 3600 - 700)).await;
    let (s, d) = open(&app, &cs[1], &cs[1].consultant, Role::Consultant).await;
    assert_eq!(s, 201, "the consultant may dispute too, within the window: {d}");
    app.advance(Duration::from_secs(700)).await;
    let (s, e) = call(&app, "POST", &path, &seeker, Some(ok)).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("dispute_window_closed")), "{e}");
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM disputes").fetch_one(&app.store.pool()).await.unwrap();
    assert_eq!(n, 1, "only the one within the window was stored");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn refused_disputes_on_sqlite() {
    refused_disputes(spawn_app().await).await;
}

#[tokio::test]
async fn refused_disputes_on_postgres() {
    refused_disputes(spawn_app_on_postgres().await).await;
}

/// D1–D3 under rivals, many rounds: both parties open at once → one
/// dispute (the other `dispute_exists`); two moderators decide (a partial
/// and a full refund) while the other side answers → one decision, the
/// other `dispute_decided`, the answer either before it or refused; the
/// provider refunded exactly what the decision says; the ledger balances;
/// the last `dispute.updated` both parties got says `decided`.
async fn dispute_rivals(app: TestApp) {
    const ROUNDS: usize = 6;
    let mut cs = sessions(&app, "x", ROUNDS, 650).await;
    for (round, c) in cs.iter_mut().enumerate() {
        let (a, b) =
            tokio::join!(open(&app, c, &c.seeker, Role::Seeker), open(&app, c, &c.consultant, Role::Consultant));
        let mut statuses = [a.0, b.0];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {round}: {a:?} {b:?}");
        let (winner, loser) = if a.0 == 201 { (a.1, b.1) } else { (b.1, a.1) };
        assert_eq!(loser["code"], "dispute_exists", "round {round}");
        let id = winner["id"].as_str().unwrap().to_owned();
        let other = if winner["opened_by"] == c.seeker.as_str() {
            app.token(&c.consultant, Role::Consultant)
        } else {
            app.token(&c.seeker, Role::Seeker)
        };
        let decision = format!("/v1/disputes/{id}/decision");
        let answer = format!("/v1/disputes/{id}/answer");
        let (m1, m2) = (app.token("mo", Role::Moderator), app.token("mia", Role::Moderator));
        let (d1, d2, ans) = tokio::join!(
            call(
                &app,
                "POST",
                &decision,
                &m1,
                Some(json!({"decision": "partial_refund", "amount_minor": 700, "note": "a"}))
            ),
            call(&app, "POST", &decision, &m2, Some(json!({"decision": "full_refund", "note": "b"}))),
            call(&app, "POST", &answer, &other, Some(json!({"text": "no"}))),
        );
        let won: Vec<&Value> = [&d1, &d2].into_iter().filter(|r| r.0 == 200).map(|r| &r.1).collect();
        assert_eq!(won.len(), 1, "round {round}: one decision: {d1:?} {d2:?}");
        for r in [&d1, &d2].into_iter().filter(|r| r.0 != 200) {
            assert_eq!((r.0, r.1["code"].as_str()), (409, Some("dispute_decided")), "round {round}");
        }
        match ans.0 {
            200 => {}
            409 => assert_eq!(ans.1["code"], "dispute_decided", "round {round}"),
            s => panic!("round {round}: answer {s}: {}", ans.1),
        }
        let refunded = won[0]["refunded"]["amount_minor"].as_i64().unwrap();
        assert!(refunded == 700 || refunded == 3000, "round {round}: {refunded}");
        assert_eq!(provider_refunded(&app, &c.session_id).await, refunded, "round {round}: refunded once");
        let (_, d) = call(&app, "GET", &format!("/v1/disputes/{id}"), &m1, None).await;
        assert_eq!(d["dispute"]["status"], "decided");
        assert_eq!(d["dispute"]["answer"].is_string(), ans.0 == 200, "round {round}: the answer as told");
        let hooks = dispute_webhooks(&app, &id).await;
        assert_eq!(hooks.iter().filter(|h| *h == "dispute.decided").count(), 1, "round {round}: {hooks:?}");
        // Both parties' apps show it decided: the rivals' pushes arrive in
        // the order they were read.
        last_told(&c.clients.0, &mut c.s_events, &id, "decided", round).await;
        last_told(&c.clients.1, &mut c.c_events, &id, "decided", round).await;
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn dispute_rivals_on_sqlite() {
    dispute_rivals(spawn_app().await).await;
}

#[tokio::test]
async fn dispute_rivals_on_postgres() {
    dispute_rivals(spawn_app_on_postgres().await).await;
}

/// D1: the window is `PARLEY_DISPUTE_WINDOW_DAYS`.
#[tokio::test]
async fn the_dispute_window_is_configurable() {
    let app = spawn_app_with(|c| c.dispute_window_days = 1).await;
    let cs = sessions(&app, "w", 1, 650).await;
    app.advance(Duration::from_secs(24 * 3600 + 1)).await;
    let (s, e) = open(&app, &cs[0], &cs[0].seeker, Role::Seeker).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("dispute_window_closed")), "{e}");
}

/// D3 with C3: a decision retried with its `Idempotency-Key` replays the
/// first answer and refunds nothing more; the same key with another body
/// is refused.
async fn idempotent_decision(app: TestApp) {
    let cs = sessions(&app, "i", 1, 650).await;
    let (_, d) = open(&app, &cs[0], &cs[0].seeker, Role::Seeker).await;
    let path = format!("/v1/disputes/{}/decision", d["id"].as_str().unwrap());
    let moderator = app.token("mo", Role::Moderator);
    let body = json!({"decision": "partial_refund", "amount_minor": 500, "note": "Half an hour short."});
    let first = app.post_keyed(&moderator, &path, "decide-1", &body).await;
    assert_eq!((first.0, first.2), (200, false), "{first:?}");
    let again = app.post_keyed(&moderator, &path, "decide-1", &body).await;
    assert_eq!((again.0, again.2), (200, true), "a replay: {again:?}");
    assert_eq!(again.1["refund_id"], first.1["refund_id"]);
    let other = app.post_keyed(&moderator, &path, "decide-1", &json!({"decision": "uphold", "note": "x"})).await;
    assert_eq!((other.0, other.1["code"].as_str()), (422, Some("idempotency_key_reused")), "{other:?}");
    assert_eq!(provider_refunded(&app, &cs[0].session_id).await, 500, "refunded once");
    app.assert_reconciled().await;
}

#[tokio::test]
async fn idempotent_decision_on_sqlite() {
    idempotent_decision(spawn_app().await).await;
}

#[tokio::test]
async fn idempotent_decision_on_postgres() {
    idempotent_decision(spawn_app_on_postgres().await).await;
}
