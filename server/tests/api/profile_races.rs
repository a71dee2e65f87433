//! Consultants writing their profiles at the same time, each round on a
//! fresh server: every write lands and the directory finds every one.
//!
//! A fresh server's database connections have not yet used the directory's
//! full-text index. On SQLite a profile's insert fires its triggers
//! (migrations/sqlite/0009), and a connection's first statement on that
//! index reads the index's settings before it writes. In a deferred
//! transaction that read turned a rival's write lock into an immediate
//! 500 (`database is locked`) instead of a wait for the lock; the profile
//! write now takes the lock first (`SqlStore::begin_write`).

use std::collections::BTreeSet;

use futures_util::future::join_all;
use parley_domain::protocol::Role;
use parley_domain::protocol::rest::DirectoryPage;
use serde_json::{Value, json};

use crate::common::{TestApp, spawn_app, spawn_app_on_postgres};

/// Fresh servers per backend.
const ROUNDS: usize = 8;
/// Consultants writing at once on each (twice the SQLite pool's connections).
const CONSULTANTS: usize = 8;

async fn profiles_written_at_once_all_land(app: TestApp, round: usize) {
    let client = reqwest::Client::new();
    let ids: Vec<String> = (0..CONSULTANTS).map(|i| format!("c{i}")).collect();
    let write = |id: &String| {
        let body = json!({"display_name": id, "headline": "Astrolabe repairs", "tags": ["astrolabe"],
            "time_zone": "UTC", "session_minutes": [30]});
        let req = client
            .put(format!("{}/v1/consultants/me/profile", app.base))
            .bearer_auth(app.token(id, Role::Consultant))
            .json(&body);
        async move {
            let resp = req.send().await.expect("request");
            (resp.status().as_u16(), resp.json::<Value>().await.expect("a JSON body"))
        }
    };
    for (id, (status, v)) in ids.iter().zip(join_all(ids.iter().map(write)).await) {
        assert_eq!(status, 200, "round {round}: {id}'s profile: {v}");
    }
    let resp = client
        .get(format!("{}/v1/directory?q=astrolabe&limit=50", app.base))
        .bearer_auth(app.token("sam", Role::Seeker))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    let page: DirectoryPage = resp.json().await.expect("a directory page");
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
