//! Two nodes on one PostgreSQL database (issue 16): both booking
//! schedulers see every booking, and a due hold is placed once.

use std::sync::Arc;

use super::*;
use crate::common::{fresh_postgres_url, spawn_with_config};
use parley_server::Config;

/// Two nodes share a PostgreSQL database and a clock. Five bookings, made
/// and confirmed on either node, start 8 days ahead or more, so their holds
/// are placed by the booking scheduler 24 h before the start (A4). The
/// clock then moves past every hold time at once: both nodes' schedulers
/// wake and race for the same bookings, and each booking's hold is placed
/// exactly once.
#[tokio::test]
async fn two_nodes_place_each_due_booking_hold_once() {
    let clock = common::test_clock();
    let url = fresh_postgres_url().await;
    let node = || {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = Config::for_tests(dir.path());
        config.database_url = url.clone();
        spawn_with_config(config, dir, clock.clone())
    };
    let nodes = [node().await, node().await];
    consultant(&nodes[0], "cleo", "UTC").await;
    let mut booked = Vec::new();
    for i in 0..5 {
        let app = &nodes[i % 2];
        let seeker = format!("seeker{i}");
        let token = app.token(&seeker, Role::Seeker);
        let start = slot_after(app, &token, "cleo", 8 * DAY).await;
        let b = booking(&propose(app, &seeker, "cleo", &[start]).await.1);
        let b = booking(&accept(app, "cleo", &b.id, start).await.1);
        assert_eq!((b.state, b.hold_status.as_str()), (BookingState::Confirmed, "scheduled"), "{b:?}");
        booked.push((token, b, start));
    }
    let last = booked.iter().map(|(_, _, start)| *start).max().unwrap();
    set_clock(&nodes[0], last - DAY + HOUR).await;

    let pool = nodes[0].store.pool();
    for (i, (token, b, _)) in booked.iter().enumerate() {
        hold_becomes(&nodes[i % 2], &b.session_id, "held").await;
        let other = &nodes[(i + 1) % 2];
        let path = format!("/v1/bookings/{}", b.id);
        common::until("the other node shows the booking held", || async {
            booking(&call(other, token, Method::GET, &path, None).await.1).hold_status == "held"
        })
        .await;
        let holds: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE session_id = $1 AND kind = 'hold'")
            .bind(b.session_id.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(holds, 1, "booking {i}: one hold");
        assert_eq!(nodes[1].billing.hold(&b.session_id).await.unwrap().unwrap().status, "held");
    }
    nodes[0].assert_reconciled().await;
}
