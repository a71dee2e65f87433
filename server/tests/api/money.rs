//! The money path end to end (issue 3): a real server with the sandbox
//! provider (DESIGN.md B8) and a manual clock, real SDK clients. Each test
//! names the rules of DESIGN.md §4 (M…) and §5 (B…) it checks.

use crate::common;

use std::time::Duration;

use crate::common::{TestApp, WAIT, incoming, settled, spawn_app, spawn_app_on_postgres, spawn_app_with};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel, SessionDetails};
use parley_domain::protocol::{ErrorCode, Outcome, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::{ApiClient, Events, SdkError, SignalingClient};
use sqlx::Row;

mod fencing;
mod holds;
mod meter;
mod refunds;
mod rest;

fn eur(minor: i64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn uid(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// A seeker and a consultant in the room of a session whose hold is placed.
struct Session {
    api: ApiClient,
    seeker: SignalingClient,
    s_events: Events,
    consultant: SignalingClient,
    c_events: Events,
    session_id: SessionId,
    seeker_token: String,
    consultant_token: String,
}

async fn priced(app: &TestApp, consultant: &str, model: PriceModel, minor: i64) -> (ApiClient, String) {
    let api = ApiClient::new(&app.base).unwrap();
    let token = app.token(consultant, Role::Consultant);
    let price = ConsultantPrice { model, amount: eur(minor) };
    assert_eq!(api.set_price(&token, &price).await.unwrap(), price);
    (api, token)
}

/// `cora` charges `price`; `sam` calls her with `pm_card_visa`; she
/// accepts; the seeker joins first, then the consultant (the meter starts).
async fn session_with(app: &TestApp, model: PriceModel, minor: i64) -> Session {
    let (api, consultant_token) = priced(app, "cora", model, minor).await;
    let (consultant, mut c_events) = app.available_consultant("cora").await;
    let (seeker, s_events) = app.client("sam", Role::Seeker).await;
    seeker.call(&uid("cora"), Some("pm_card_visa")).await.expect("hold placed, call rings");
    let (call_id, session_id) = incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();
    Session {
        api,
        seeker,
        s_events,
        consultant,
        c_events,
        session_id,
        seeker_token: app.token("sam", Role::Seeker),
        consultant_token,
    }
}

async fn ended(events: &mut Events) -> (SessionEndReason, Option<SessionBill>) {
    events
        .wait_for(WAIT, |m| match m {
            ServerMessage::SessionEnded { reason, bill, .. } => Some((*reason, *bill)),
            _ => None,
        })
        .await
        .expect("session.ended")
}

fn kinds(d: &SessionDetails) -> Vec<&str> {
    d.ledger.iter().map(|l| l.kind.as_str()).collect()
}
