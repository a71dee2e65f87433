//! One-time WebSocket tickets (`POST /v1/ws-tickets`, `/v1/signal?ticket=`):
//! a browser opens the socket without its token in the URL. A ticket opens
//! one connection, for 30 s of server time; a used, expired or unknown one
//! is refused before the upgrade with its own code — also when the same
//! ticket is raced by many connections, on both databases.

use std::time::Duration;

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres};
use parley_domain::Clock;
use parley_domain::protocol::rest::WsTicket;
use parley_domain::protocol::{ErrorCode, Problem, Role};
use parley_sdk::{SdkError, SignalingClient};

/// A ticket for `token`.
async fn ticket(app: &TestApp, token: &str) -> WsTicket {
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/ws-tickets", app.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    resp.json().await.expect("a ticket")
}

/// Opens the socket with `ticket` in the URL and no token at all.
async fn open(app: &TestApp, ticket: &str) -> Result<(SignalingClient, parley_sdk::Events), SdkError> {
    SignalingClient::connect(&format!("{}?ticket={ticket}", app.ws_url), "").await
}

#[track_caller]
fn refused_with(got: Result<(SignalingClient, parley_sdk::Events), SdkError>, code: ErrorCode) {
    match got {
        Err(SdkError::Unauthorized { code: c, .. }) => assert_eq!(c, code),
        Err(other) => panic!("expected {code:?}, got {other:?}"),
        Ok(_) => panic!("expected {code:?}, the connection opened"),
    }
}

async fn a_ticket_opens_one_connection_for_30_seconds(app: TestApp) {
    let token = app.token("sam", Role::Seeker);
    let t = ticket(&app, &token).await;
    assert_eq!(t.expires_at_ms, app.clock.now().unix_millis() + 30_000, "30 s of server time");
    assert_eq!(t.ticket.len(), 43, "256 random bits, base64url");
    let (client, _events) = open(&app, &t.ticket).await.expect("the ticket opens the socket");
    assert_eq!(client.user().id.as_str(), "sam");
    assert_eq!(client.user().name, "sam name");
    assert_eq!(client.user().role, Role::Seeker);
    // Spent: a second connection with it is refused.
    refused_with(open(&app, &t.ticket).await, ErrorCode::TicketUsed);
    // Expired: 30 s later on the server clock.
    let late = ticket(&app, &token).await;
    app.advance(Duration::from_secs(30)).await;
    refused_with(open(&app, &late.ticket).await, ErrorCode::TicketExpired);
    // One the server never issued.
    refused_with(open(&app, "not-a-ticket").await, ErrorCode::UnknownTicket);
    // An empty ticket and no header: no credentials at all.
    refused_with(open(&app, "").await, ErrorCode::MissingToken);
    // The token in the URL is not read any more.
    let in_url = SignalingClient::connect(&format!("{}?access_token={token}", app.ws_url), "").await;
    refused_with(in_url, ErrorCode::MissingToken);
    // Only the ticket's hash is stored.
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ws_tickets WHERE ticket_hash = $1")
        .bind(&t.ticket)
        .fetch_one(&app.store.pool())
        .await
        .unwrap();
    assert_eq!(stored, 0, "the ticket itself is not in the database");
    // Issuing needs a token, and moderators do not use signaling.
    let resp = reqwest::Client::new().post(format!("{}/v1/ws-tickets", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json::<Problem>().await.unwrap().code, ErrorCode::MissingToken);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/ws-tickets", app.base))
        .bearer_auth(app.token("mo", Role::Moderator))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.json::<Problem>().await.unwrap().code, ErrorCode::WrongRole);
}

#[tokio::test]
async fn a_ticket_opens_one_connection_for_30_seconds_on_sqlite() {
    a_ticket_opens_one_connection_for_30_seconds(spawn_app().await).await;
}

#[tokio::test]
async fn a_ticket_opens_one_connection_for_30_seconds_on_postgres() {
    a_ticket_opens_one_connection_for_30_seconds(spawn_app_on_postgres().await).await;
}

/// Many connections race with one ticket, round after round: exactly one
/// opens, every other one is refused `ticket_used`.
async fn one_ticket_raced(app: TestApp) {
    for round in 0..10 {
        let user = format!("racer{round}");
        let t = ticket(&app, &app.token(&user, Role::Seeker)).await;
        let tries = (0..6).map(|_| open(&app, &t.ticket));
        let results = futures_util::future::join_all(tries).await;
        let mut opened = 0;
        for r in results {
            match r {
                Ok((client, _)) => {
                    assert_eq!(client.user().id.as_str(), user);
                    opened += 1;
                }
                Err(SdkError::Unauthorized { code: ErrorCode::TicketUsed, .. }) => {}
                Err(other) => panic!("round {round}: {other:?}"),
            }
        }
        assert_eq!(opened, 1, "round {round}: one connection per ticket");
    }
}

#[tokio::test]
async fn one_ticket_raced_on_sqlite() {
    one_ticket_raced(spawn_app().await).await;
}

#[tokio::test]
async fn one_ticket_raced_on_postgres() {
    one_ticket_raced(spawn_app_on_postgres().await).await;
}
