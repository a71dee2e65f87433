//! E9: every escrow change stores its outgoing webhook once, with the
//! change: `engagement.funded`, `milestone.submitted`, `milestone.released`
//! (approved, then on its own), `milestone.disputed`, `milestone.resolved`,
//! `engagement.cancelled`; a repeated or refused request announces nothing.

use super::*;

/// The escrow events stored for engagement `id`: (type, milestone id,
/// auto, the engagement's state in the payload), oldest first.
async fn events(app: &TestApp, id: &str) -> Vec<(String, Option<String>, Option<bool>, String)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT type, body FROM webhook_outbox WHERE (type LIKE 'engagement.%' OR type LIKE 'milestone.%') \
         AND body LIKE $1 ORDER BY created_ms, id",
    )
    .bind(format!("%\"id\":\"{id}\"%"))
    .fetch_all(&app.store.pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(kind, body)| {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["type"], kind.as_str(), "{body}");
            assert!(v["id"].as_str().is_some_and(|e| e.starts_with("evt_")), "{body}");
            let data = &v["data"];
            assert_eq!(data["engagement"]["id"], id, "{body}");
            let state = data["engagement"]["state"].as_str().unwrap().to_owned();
            (kind, data["milestone_id"].as_str().map(str::to_owned), data["auto"].as_bool(), state)
        })
        .collect()
}

/// The type and milestone of each event.
fn kinds(events: &[(String, Option<String>, Option<bool>, String)]) -> Vec<(&str, Option<&str>)> {
    events.iter().map(|(k, m, _, _)| (k.as_str(), m.as_deref())).collect()
}

#[tokio::test]
async fn e9_each_escrow_change_is_announced_once() {
    let app = spawn_app().await;
    let cal = ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let moderator = app.token("mo", Role::Moderator);
    let e = fund(&app, "sia", "cal", &[1_000, 2_000, 3_000]).await;
    let (m1, m2, m3) = (e.milestones[0].id.clone(), e.milestones[1].id.clone(), e.milestones[2].id.clone());
    let got = events(&app, &e.id).await;
    assert_eq!(kinds(&got), [("engagement.funded", None)]);
    assert_eq!(got[0].3, "active", "the payload shows the engagement funded");

    // Approved: submitted, then released (not on its own); a second approval announces nothing.
    post(&app, &cal, &format!("/v1/milestones/{m1}/submit"), json!({"note": "done"})).await;
    let approve = format!("/v1/milestones/{m1}/approve");
    assert_eq!(post(&app, &seeker, &approve, json!({})).await.0, StatusCode::OK);
    assert_eq!(post(&app, &seeker, &approve, json!({})).await.0, StatusCode::OK);
    // Released on its own at the due time, by the worker on the server clock.
    post(&app, &cal, &format!("/v1/milestones/{m2}/submit"), json!({"note": "done"})).await;
    app.advance(7 * DAY).await;
    let path = format!("/v1/engagements/{}", e.id);
    until("the second milestone is released on its own", || async {
        engagement(&call(&app, &seeker, Method::GET, &path, None).await).milestones[1].state == "released"
    })
    .await;
    // Disputed, then split by a moderator; a second resolution is refused and announces nothing.
    post(&app, &seeker, &format!("/v1/milestones/{m3}/dispute"), json!({"reason": "late"})).await;
    let resolve = format!("/v1/milestones/{m3}/resolve");
    let split = json!({"release_minor": 1_000, "note": "a third"});
    assert_eq!(post(&app, &moderator, &resolve, split.clone()).await.0, StatusCode::OK);
    assert_problem(&post(&app, &moderator, &resolve, split).await, StatusCode::CONFLICT, ErrorCode::EngagementState);

    let got = events(&app, &e.id).await;
    // Events of one millisecond of the manual clock have no order: compare as sets.
    let mut seen: Vec<(&str, Option<&str>, Option<bool>)> =
        got.iter().map(|(k, m, auto, _)| (k.as_str(), m.as_deref(), *auto)).collect();
    seen.sort();
    let mut want = vec![
        ("engagement.funded", None, None),
        ("milestone.submitted", Some(m1.as_str()), None),
        ("milestone.released", Some(m1.as_str()), Some(false)),
        ("milestone.submitted", Some(m2.as_str()), None),
        ("milestone.released", Some(m2.as_str()), Some(true)),
        ("milestone.disputed", Some(m3.as_str()), None),
        ("milestone.resolved", Some(m3.as_str()), None),
    ];
    want.sort();
    assert_eq!(seen, want, "each change once; approved, then released on its own");
    let resolved = got.iter().find(|(k, ..)| k == "milestone.resolved").unwrap();
    assert_eq!(resolved.3, "completed", "the resolution's payload is the engagement after it");

    // Cancelled once: one `engagement.cancelled`, none for the refused second cancel.
    let e = fund(&app, "sia", "cal", &[500]).await;
    let cancel = format!("/v1/engagements/{}/cancel", e.id);
    assert_eq!(post(&app, &seeker, &cancel, json!({})).await.0, StatusCode::OK);
    assert_problem(&post(&app, &cal, &cancel, json!({})).await, StatusCode::CONFLICT, ErrorCode::EngagementState);
    let got = events(&app, &e.id).await;
    let mut seen = kinds(&got);
    seen.sort();
    assert_eq!(seen, [("engagement.cancelled", None), ("engagement.funded", None)]);
    assert!(got.iter().any(|(k, _, _, state)| k == "engagement.cancelled" && state == "cancelled"));

    // A declined card funds nothing and announces nothing.
    let body = json!({"consultant_id": "cal", "title": "Declined", "payment_method": "pm_card_chargeDeclined",
        "milestones": [{"description": "x", "amount": {"amount_minor": 700, "currency": "EUR"}}]});
    let (status, v) = post(&app, &seeker, "/v1/engagements", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let failed: String = sqlx::query_scalar("SELECT id FROM engagements WHERE title = 'Declined'")
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert!(events(&app, &failed).await.is_empty());
    app.assert_reconciled().await;
}
