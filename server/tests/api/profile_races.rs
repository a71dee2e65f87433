//! Profiles and availability written at the same time.
//!
//! Consultants writing their profiles at once, each round on a fresh
//! server: every write lands and the directory finds every one.
//! A fresh server's database connections have not yet used the directory's
//! full-text index. On SQLite a profile's insert fires its triggers
//! (migrations/sqlite/0009), and a connection's first statement on that
//! index reads the index's settings before it writes. In a deferred
//! transaction that read turned a rival's write lock into an immediate
//! 500 (`database is locked`) instead of a wait for the lock; the profile
//! write now takes the lock first (`SqlStore::begin_write`).
//!
//! A consultant's availability and profile written at once by rival
//! requests: the profile shows the availability's time zone and lengths
//! (one source for display and scheduling), and the weekly windows are
//! those of an availability written, never older ones a profile write read
//! before a rival changed them.

use std::collections::BTreeSet;

use futures_util::future::join_all;
use parley_domain::protocol::Role;
use parley_domain::protocol::rest::{Availability, ConsultantProfile, DirectoryPage};
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres};

/// Where a consultant writes their profile.
const PROFILE: &str = "/v1/consultants/me/profile";
/// Fresh servers per backend.
const ROUNDS: usize = 8;
/// Consultants writing at once on each (twice the SQLite pool's connections).
const CONSULTANTS: usize = 8;

/// `PUT path` with `body` as `token`: the status and the body.
async fn put(client: &reqwest::Client, app: &TestApp, token: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = client.put(format!("{}{path}", app.base)).bearer_auth(token).json(&body).send().await.expect("request");
    (resp.status().as_u16(), resp.json().await.expect("a JSON body"))
}

/// `GET path` as `token`, which must answer 200 with a `T`.
async fn get<T: serde::de::DeserializeOwned>(client: &reqwest::Client, app: &TestApp, token: &str, path: &str) -> T {
    let resp = client.get(format!("{}{path}", app.base)).bearer_auth(token).send().await.expect("request");
    assert_eq!(resp.status().as_u16(), 200, "GET {path}");
    resp.json().await.expect("the body")
}

async fn profiles_written_at_once_all_land(app: TestApp, round: usize) {
    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..CONSULTANTS).map(|i| format!("c{i}")).collect();
    let tokens: Vec<String> = ids.iter().map(|id| app.token(id, Role::Consultant)).collect();
    let body = |id: &str| {
        json!({"display_name": id, "headline": "Astrolabe repairs", "tags": ["astrolabe"],
            "time_zone": "UTC", "session_minutes": [30]})
    };
    let writes = ids.iter().zip(&tokens).map(|(id, token)| put(&client, &app, token, PROFILE, body(id)));
    for (id, (status, v)) in ids.iter().zip(join_all(writes).await) {
        assert_eq!(status, 200, "round {round}: {id}'s profile: {v}");
    }
    let seeker = app.token("sam", Role::Seeker);
    let page: DirectoryPage = get(&client, &app, &seeker, "/v1/directory?q=astrolabe&limit=50").await;
    let found: BTreeSet<String> = page.items.into_iter().map(|i| i.id.to_string()).collect();
    assert_eq!(found, ids.into_iter().collect(), "round {round}: the directory finds every profile written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profiles_written_at_once_on_fresh_servers_all_land_on_sqlite() {
    for round in 0..ROUNDS {
        profiles_written_at_once_all_land(spawn_app().await, round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn profiles_written_at_once_on_fresh_servers_all_land_on_postgres() {
    for round in 0..ROUNDS {
        profiles_written_at_once_all_land(spawn_app_on_postgres().await, round).await;
    }
}

/// Rounds of rival writes on one server.
const RIVAL_ROUNDS: usize = 16;

/// An availability in `tz` offering `lengths`, open on `weekday` from `start` to 18:00.
fn availability(tz: &str, lengths: &[u32], weekday: &str, start: &str) -> Value {
    json!({"time_zone": tz, "session_lengths_min": lengths,
        "weekly": [{"weekday": weekday, "start": start, "end": "18:00"}]})
}

async fn availability_and_profile_written_at_once_agree(app: TestApp) {
    let client = reqwest::Client::new();
    let seeker = app.token("sam", Role::Seeker);
    for round in 0..RIVAL_ROUNDS {
        let id = format!("r{round}");
        let token = app.token(&id, Role::Consultant);
        let profile = |tz: &str, lengths: &[u32]| json!({"display_name": id, "headline": "Sundials", "time_zone": tz, "session_minutes": lengths});
        let path = "/v1/consultants/me/availability";
        let (status, v) = put(&client, &app, &token, path, availability("UTC", &[30], "mon", "09:00")).await;
        assert_eq!(status, 200, "{v}");
        let (status, v) = put(&client, &app, &token, PROFILE, profile("UTC", &[30])).await;
        assert_eq!(status, 200, "{v}");
        // Two availabilities and a profile, each with its own zone and lengths, at once.
        let (paris, tokyo, york) = tokio::join!(
            put(&client, &app, &token, path, availability("Europe/Paris", &[30, 60], "tue", "10:00")),
            put(&client, &app, &token, path, availability("Asia/Tokyo", &[45], "wed", "11:00")),
            put(&client, &app, &token, PROFILE, profile("America/New_York", &[60])),
        );
        for (what, (status, v)) in [("paris", paris), ("tokyo", tokyo), ("new york", york)] {
            assert_eq!(status, 200, "round {round}, {what}: {v}");
        }
        let a: Availability = get(&client, &app, &token, path).await;
        let p: ConsultantProfile = get(&client, &app, &seeker, &format!("/v1/consultants/{id}/profile")).await;
        assert_eq!(
            (p.time_zone.as_str(), p.session_minutes.as_slice()),
            (a.time_zone.as_str(), a.session_lengths_min.as_slice()),
            "round {round}: the profile shows the availability's zone and lengths"
        );
        let windows = serde_json::to_value(&a.weekly).expect("rules serialise");
        assert!(
            windows == json!([{"weekday": "tue", "start": "10:00", "end": "18:00"}])
                || windows == json!([{"weekday": "wed", "start": "11:00", "end": "18:00"}]),
            "round {round}: the weekly windows are an availability written, not the first: {windows}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn availability_and_profile_written_at_once_agree_on_sqlite() {
    availability_and_profile_written_at_once_agree(spawn_app().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn availability_and_profile_written_at_once_agree_on_postgres() {
    availability_and_profile_written_at_once_agree(spawn_app_on_postgres().await).await;
}
