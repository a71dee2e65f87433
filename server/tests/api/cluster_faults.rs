//! Faults of a cluster beside a node's loss (docs/cluster.md): a drained
//! hub node or edge, Redis restarted under a live call, surviving nodes
//! racing for the hub lease. Real PostgreSQL and Redis; each node on a
//! runtime of its own (`spawn_node`).

use std::time::Duration;

use parley_domain::protocol::{ChatKind, Outcome, Role, ServerMessage};
use parley_sdk::{ApiClient, Event};

use crate::cluster::{OwnRedis, free_port};
use crate::cluster_hub::{Live, cluster, cluster_on, event, hub_node, price, settlements};
use crate::common::{Proxy, TestApp, WAIT, settled, test_clock, until};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `GET /readyz`: status and body.
async fn readyz(app: &TestApp) -> (u16, String) {
    match reqwest::get(format!("{}/readyz", app.base)).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// Hangs `live` up `secs` after now and checks what the seeker is charged
/// for: `billable_secs`, settled once, the ledger reconciled.
async fn ends_billed(nodes: &[&TestApp], live: &Live, billable_secs: u64) {
    live.seeker.end_session(&live.session_id).await.unwrap();
    let moderator = nodes[0].token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&nodes[0].base).unwrap(), &moderator, &live.session_id).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), billable_secs));
    assert_eq!(settlements(nodes[0], &live.session_id).await, 1, "settled once");
    nodes[0].assert_reconciled().await;
}

/// SIGTERM on the hub node 655 s into a priced session: it checkpoints the
/// meter as of now, gives up the session's lease and then the hub lease;
/// another node takes the hub at its next beat and the session over from
/// that checkpoint. Both clients come back by themselves and resume their
/// links (the journal) there; the seeker is billed every second: 655 + 60,
/// none lost to the hand-over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_node_drained_hands_its_sessions_over_with_no_second_lost() {
    let clock = test_clock();
    let mut nodes = cluster(3, clock.clone()).await;
    price(&nodes[1], "cora", 3000).await;
    let balancer = Proxy::balance(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    // Not on a checkpoint: a kill here could lose up to a checkpoint
    // interval; a drain loses nothing.
    clock.advance(SECS(655));
    nodes[0].stop().await;
    until("another node runs the hub", || async { hub_node(&nodes[1]).await.is_some_and(|n| n != "node-0") }).await;
    live.resumed(&nodes[1], 1).await;
    assert_eq!(live.epoch(&nodes[1]).await, 2, "handed over once");
    clock.advance(SECS(60));
    ends_billed(&[&nodes[1], &nodes[2]], &live, 715).await;
}

/// SIGTERM on an edge: its clients' sockets close (1001, no
/// `server.shutdown`), they reconnect through the balancer to another
/// node and resume there, since their links live on the hub node: no
/// rejoin, no takeover, and what was sent meanwhile arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_drained_sends_its_clients_elsewhere_to_resume() {
    let mut nodes = cluster(3, test_clock()).await;
    // The balancer takes its nodes in turn, starting with the second: the
    // consultant lands on node 2, the seeker on node 1.
    let balancer = Proxy::balance(&[&nodes[1], &nodes[2]]).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    let (session_id, c_events) = (&live.session_id, &mut live.c_events);

    nodes[2].stop().await;
    event(c_events, |e| matches!(e, Event::Reconnecting).then_some(())).await;
    for i in 0..5 {
        live.seeker.chat(session_id, &format!("note {i}"), ChatKind::Chat).await.unwrap();
    }
    let (mut got, mut resumed) = (Vec::new(), false);
    while got.len() < 5 || !resumed {
        match event(c_events, |e| Some(e.clone())).await {
            Event::Server(ServerMessage::ChatMessage { text, .. }) => got.push(text),
            Event::Resumed { .. } => resumed = true,
            Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
            _ => {}
        }
    }
    assert_eq!(got, (0..5).map(|i| format!("note {i}")).collect::<Vec<_>>(), "once each, in order");
    assert_eq!(hub_node(&nodes[0]).await.as_deref(), Some("node-0"), "the hub stayed");
    assert_eq!(live.epoch(&nodes[0]).await, 1, "no takeover");
    live.consultant.end_session(session_id).await.unwrap();
    live.s_events.wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(())).await.unwrap();
}

/// Redis restarted (empty) under a priced session, away longer than the
/// hub lease: the hub node steps down (its meter checkpoints and stops),
/// the edge forgets the hub node, both close their clients' sockets and
/// `/readyz` says not ready. Once Redis is back, a node takes the hub
/// lease, re-opens the session from its checkpoint; the clients' links
/// went with Redis's memory, so they rejoin by themselves; the seeker
/// loses no billed second and is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_mid_call_costs_no_call() {
    let clock = test_clock();
    let port = free_port();
    let mut redis = OwnRedis::start_on(port).await;
    let nodes = cluster_on(2, clock.clone(), redis.url()).await;
    price(&nodes[1], "cora", 3000).await;
    let balancer = Proxy::balance(&[&nodes[0], &nodes[1]]).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    clock.advance(SECS(620));
    until("the 620 s checkpoint", || async { live.checkpoint(&nodes[1]).await == Some(620_000) }).await;

    redis.kill();
    for events in [&mut live.s_events, &mut live.c_events] {
        event(events, |e| matches!(e, Event::Reconnecting).then_some(())).await;
    }
    for node in &nodes {
        until("not ready without Redis", || async { readyz(node).await.0 == 503 }).await;
    }
    let _redis = OwnRedis::start_on(port).await;
    until("a hub node again", || async { hub_node(&nodes[0]).await.is_some() }).await;
    let hub = hub_node(&nodes[0]).await.unwrap();
    for node in &nodes {
        let ready = (200, format!("ready; hub node {hub}"));
        until("every node ready, naming the hub node", || async { readyz(node).await == ready }).await;
    }
    live.rejoined(&nodes[1], 1).await;
    assert_eq!(live.epoch(&nodes[1]).await, 2, "re-opened once");
    clock.advance(SECS(60));
    ends_billed(&[&nodes[0], &nodes[1]], &live, 680).await;
}

/// The hub node is killed three times over four nodes: each time the
/// survivors race for the lapsed hub lease, exactly one wins, every
/// survivor names it, and it takes the session over exactly once (its
/// owner epoch goes up by one); the clients resume each time, no billed
/// second is lost and the session is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_racing_for_the_hub_lease_elect_one_each_time() {
    let clock = test_clock();
    let mut nodes = cluster(4, clock.clone()).await;
    price(&nodes[1], "cora", 3000).await;
    let balancer = Proxy::balance(&nodes.iter().collect::<Vec<_>>()).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    clock.advance(SECS(620));
    until("the 620 s checkpoint", || async { live.checkpoint(&nodes[1]).await == Some(620_000) }).await;
    let mut alive: Vec<usize> = (0..nodes.len()).collect();
    let mut hub = "node-0".to_owned();
    for round in 1..=3 {
        let dead: usize = hub.trim_start_matches("node-").parse().unwrap();
        nodes[dead].kill();
        alive.retain(|&i| i != dead);
        let first = &nodes[alive[0]];
        until("a survivor runs the hub", || async { hub_node(first).await.is_some_and(|n| n != hub) }).await;
        hub = hub_node(first).await.unwrap();
        for &i in &alive {
            let ready = (200, format!("ready; hub node {hub}"));
            until("every survivor names the one hub node", || async { readyz(&nodes[i]).await == ready }).await;
        }
        live.resumed(first, round).await;
        assert_eq!(live.epoch(first).await, 1 + round as i64, "round {round}: taken over exactly once");
    }
    clock.advance(SECS(60));
    let alive: Vec<&TestApp> = alive.iter().map(|&i| &nodes[i]).collect();
    ends_billed(&alive, &live, 680).await;
}
