//! E7: rival requests on one milestone, many rounds, on both databases:
//! approve against cancel ends in exactly one outcome (released or
//! refunded, never both, the provider agreeing); two approvals make one
//! transfer.

use super::*;

const ROUNDS: usize = 12;

/// Approve and cancel of a one-milestone engagement sent at once: one
/// wins (200), the other is refused (409 `engagement_state`), and the
/// money went one way only.
async fn approve_against_cancel(app: TestApp) {
    ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let (mut released, mut refunded) = (0, 0);
    for round in 0..ROUNDS {
        let e = fund(&app, "sia", "cal", &[2_000]).await;
        let approve_path = format!("/v1/milestones/{}/approve", e.milestones[0].id);
        let cancel_path = format!("/v1/engagements/{}/cancel", e.id);
        let (approve, cancel) =
            tokio::join!(post(&app, &seeker, &approve_path, json!({})), post(&app, &seeker, &cancel_path, json!({})));
        let outcome = match (approve.0, cancel.0) {
            (StatusCode::OK, StatusCode::CONFLICT) => "released",
            (StatusCode::CONFLICT, StatusCode::OK) => "refunded",
            other => panic!("round {round}: one of approve and cancel wins: {other:?} {} {}", approve.1, cancel.1),
        };
        let loser = if outcome == "released" { &cancel } else { &approve };
        assert_eq!(loser.1["code"], ErrorCode::EngagementState.as_str(), "round {round}: {}", loser.1);
        let path = format!("/v1/engagements/{}", e.id);
        let e = engagement(&call(&app, &seeker, Method::GET, &path, None).await);
        assert_eq!(e.milestones[0].state, outcome, "round {round}");
        let expected = if outcome == "released" { (2_000, 0, vec![1_600]) } else { (2_000, 1_900, vec![]) };
        assert_eq!(provider_view(&app, &e.id).await, expected, "round {round}: the money went one way");
        if outcome == "released" { released += 1 } else { refunded += 1 }
    }
    assert_eq!(released + refunded, ROUNDS);
    app.assert_reconciled().await;
}

#[tokio::test]
async fn approve_against_cancel_on_sqlite() {
    approve_against_cancel(spawn_app().await).await;
}

#[tokio::test]
async fn approve_against_cancel_on_postgres() {
    approve_against_cancel(spawn_app_on_postgres().await).await;
}

/// Two approvals of one milestone at once (and a keyed retry of one):
/// both answer it released; one transfer.
async fn double_approve(app: TestApp) {
    ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    for round in 0..ROUNDS {
        let e = fund(&app, "sia", "cal", &[3_000, 1_000]).await;
        let path = format!("/v1/milestones/{}/approve", e.milestones[0].id);
        let key = format!("approve-{round}");
        let empty = json!({});
        let (a, b) = tokio::join!(post(&app, &seeker, &path, json!({})), app.post_keyed(&seeker, &path, &key, &empty));
        assert_eq!((a.0, b.0), (StatusCode::OK, 200), "round {round}: {} {}", a.1, b.1);
        let retried = app.post_keyed(&seeker, &path, &key, &empty).await;
        assert_eq!((retried.0, retried.2), (200, true), "round {round}: the keyed retry is replayed");
        assert_eq!(provider_view(&app, &e.id).await, (4_000, 0, vec![2_400]), "round {round}: one transfer");
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn double_approve_on_sqlite() {
    double_approve(spawn_app().await).await;
}

#[tokio::test]
async fn double_approve_on_postgres() {
    double_approve(spawn_app_on_postgres().await).await;
}

/// Two cancels of one engagement at once, and two moderators resolving one
/// dispute at once: one wins, the other gets 409 `engagement_state`; the
/// money moves once.
async fn rival_cancels_and_resolutions(app: TestApp) {
    let cal = ready_consultant(&app, "cal").await;
    let seeker = app.token("sia", Role::Seeker);
    let (mo1, mo2) = (app.token("mo1", Role::Moderator), app.token("mo2", Role::Moderator));
    for round in 0..ROUNDS {
        let e = fund(&app, "sia", "cal", &[1_000, 3_000]).await;
        let m = e.milestones[1].id.clone();
        post(&app, &cal, &format!("/v1/milestones/{m}/dispute"), json!({"reason": "late"})).await;
        let path = format!("/v1/milestones/{m}/resolve");
        let (a, b) = tokio::join!(
            post(&app, &mo1, &path, json!({"release_minor": 1_000, "note": "a third"})),
            post(&app, &mo2, &path, json!({"release_minor": 2_000, "note": "two thirds"}))
        );
        let mut codes = [a.0, b.0];
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT], "round {round}: {} {}", a.1, b.1);
        let released = if a.0 == StatusCode::OK { 1_000 } else { 2_000 };
        let cancel = format!("/v1/engagements/{}/cancel", e.id);
        let (c1, c2) = tokio::join!(post(&app, &seeker, &cancel, json!({})), post(&app, &cal, &cancel, json!({})));
        let mut codes = [c1.0, c2.0];
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT], "round {round}: {} {}", c1.1, c2.1);
        // The seeker's cancel costs them 5 % of the open 1 000; the consultant's nothing.
        let cancel_refund = if c1.0 == StatusCode::OK { 950 } else { 1_000 };
        let expected = (4_000, (3_000 - released) + cancel_refund, vec![released * 8 / 10]);
        assert_eq!(provider_view(&app, &e.id).await, expected, "round {round}: each movement once");
    }
    app.assert_reconciled().await;
}

#[tokio::test]
async fn rival_cancels_and_resolutions_on_sqlite() {
    rival_cancels_and_resolutions(spawn_app().await).await;
}

#[tokio::test]
async fn rival_cancels_and_resolutions_on_postgres() {
    rival_cancels_and_resolutions(spawn_app_on_postgres().await).await;
}
