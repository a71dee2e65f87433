//! Several nodes, one hub (issue 16, docs/rules.md C7): three `parley`
//! nodes on one PostgreSQL and one Redis, each on a runtime of its own so a
//! test can kill one like `kill -9`. Node 0 starts first and is the hub
//! node; clients connect to the others (or through a balancer over all).

use std::sync::Arc;
use std::time::Duration;

use parley_domain::clock::ManualClock;

use crate::common::{
    Proxy, TestApp, WAIT, next_matching, pump, settled, spawn_node, test_clock, timeline_kinds, until,
};
use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
use parley_domain::protocol::{
    CallEndReason, ChatKind, Outcome, PresenceStatus, Role, ServerMessage, SessionEndReason,
};
use parley_domain::{Currency, Money, SessionId, UserId};
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;
use parley_sdk::{ApiClient, Event, Events, SignalingClient};

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `n` nodes of one cluster on a fresh database and Redis prefix, sharing
/// `clock`; node 0 is the hub node (it took the free hub lease first).
pub(crate) async fn cluster(n: usize, clock: Arc<ManualClock>) -> Vec<TestApp> {
    cluster_on(n, clock, crate::cluster::redis_url()).await
}

/// [`cluster`] on the Redis at `redis_url`.
pub(crate) async fn cluster_on(n: usize, clock: Arc<ManualClock>, redis_url: String) -> Vec<TestApp> {
    let url = crate::common::fresh_postgres_url().await;
    let prefix = crate::cluster::fresh_prefix();
    let mut nodes = Vec::new();
    for i in 0..n {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let mut config = parley_server::Config::for_tests(dir.path());
        config.database_url = url.clone();
        config.cluster.redis_url = Some(redis_url.clone());
        config.cluster.redis_prefix = prefix.clone();
        config.cluster.node_id = format!("node-{i}");
        // Takeover within a second of real time (Redis expires leases).
        config.cluster.lease_ttl = Duration::from_millis(900);
        nodes.push(spawn_node(config, dir, clock.clone()).await);
    }
    assert_eq!(hub_node(&nodes[0]).await.as_deref(), Some("node-0"));
    nodes
}

/// Who holds the hub lease, as Redis says.
pub(crate) async fn hub_node(app: &TestApp) -> Option<String> {
    let client = redis::Client::open(app.config.cluster.redis_url.clone().unwrap()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:hub", app.config.cluster.redis_prefix);
    redis::cmd("GET").arg(key).query_async(&mut redis).await.unwrap()
}

async fn presence_on(app: &TestApp, who: &str) -> PresenceStatus {
    let list: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/consultants", app.base))
        .bearer_auth(app.token("sam", Role::Seeker))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let me = list.as_array().unwrap().iter().find(|c| c["id"] == who);
    me.map_or(PresenceStatus::Offline, |c| serde_json::from_value(c["presence"].clone()).unwrap())
}

pub(crate) async fn price(app: &TestApp, consultant: &str, minor: i64) {
    let api = ApiClient::new(&app.base).unwrap();
    let amount = Money::new(minor, Currency::parse("EUR").unwrap());
    let price = ConsultantPrice { model: PriceModel::Fixed, amount };
    api.set_price(&app.token(consultant, Role::Consultant), &price).await.unwrap();
}

/// The first event `pick` picks, within [`WAIT`].
pub(crate) async fn event<T>(events: &mut Events, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.expect("the client is open");
            if let Some(t) = pick(&e) {
                return t;
            }
        }
    })
    .await
    .expect("the event within WAIT")
}

pub(crate) async fn settlements(app: &TestApp, session: &SessionId) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM settlements WHERE session_id = $1")
        .bind(session.as_str())
        .fetch_one(&app.store.pool())
        .await
        .unwrap()
}

/// A consultant on node 1 and a seeker on node 2 (neither on the hub
/// node): presence is the same on every node; the call rings across
/// nodes; their SDP and ICE relay through the hub node in order and a real
/// webrtc-rs peer connection carries a data channel and audio; the hang-up
/// is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_across_nodes_over_a_real_peer_connection() {
    let nodes = cluster(3, test_clock()).await;
    let (consultant, c_events) = nodes[1].available_consultant("cora").await;
    for node in &nodes {
        assert_eq!(presence_on(node, "cora").await, PresenceStatus::Available, "on {}", node.base);
    }
    let (seeker, s_events) = nodes[2].client("sam", Role::Seeker).await;
    let (c_call_tx, mut c_rest) = pump(c_events);
    let (s_call_tx, mut s_rest) = pump(s_events);
    let ringing = seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.unwrap();
    let incoming = next_matching(&mut c_rest, |m| matches!(m, ServerMessage::CallIncoming { .. })).await;
    let ServerMessage::CallIncoming { call_id, session_id, .. } = incoming else { unreachable!() };
    assert_eq!(session_id, ringing.session_id);
    consultant.accept(&call_id).await.unwrap();
    for node in &nodes {
        assert_eq!(presence_on(node, "cora").await, PresenceStatus::Busy, "on {}", node.base);
    }

    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    let c_room = consultant.join(&session_id).await.unwrap();
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await.unwrap());
    let _ = c_call_tx.send(c_call.clone());
    let s_room = seeker.join(&session_id).await.unwrap();
    assert!(s_room.offerer);
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, config).await.unwrap());
    let _ = s_call_tx.send(s_call.clone());
    s_call.call.wait_connected(SECS(20)).await.expect("seeker connected");
    c_call.call.wait_connected(SECS(20)).await.expect("consultant connected");
    s_call.call.wait_data_channel_open(SECS(20)).await.unwrap();
    c_call.call.wait_data_channel_open(SECS(20)).await.unwrap();
    s_call.call.send_data(b"across nodes").await.unwrap();
    let got = tokio::time::timeout(WAIT, c_call.call.recv_data()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"across nodes");
    until("audio both ways", || async {
        s_call.call.audio_packets_received() >= 10 && c_call.call.audio_packets_received() >= 10
    })
    .await;

    seeker.end_session(&session_id).await.unwrap();
    for rest in [&mut s_rest, &mut c_rest] {
        let ended = next_matching(rest, |m| matches!(m, ServerMessage::SessionEnded { .. })).await;
        assert!(matches!(ended, ServerMessage::SessionEnded { reason: SessionEndReason::Hangup, .. }));
    }
    s_call.close().await.unwrap();
    c_call.close().await.unwrap();
    let moderator = nodes[1].token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&nodes[1].base).unwrap(), &moderator, &session_id).await;
    assert_eq!(d.outcome, Some(Outcome::Free), "under the free window");
    assert_eq!(settlements(&nodes[0], &session_id).await, 1);
}

/// cora on `node` and sam through `balancer` in a free session; then sam's
/// connection is cut (the balancer refuses new ones until told) and cora
/// sends five chat notes (`note 0` … `note 4`) while sam is away.
struct Away {
    consultant: SignalingClient,
    c_events: Events,
    seeker: SignalingClient,
    s_events: Events,
    session_id: SessionId,
}

async fn away_while_notes_are_sent(node: &TestApp, balancer: &Proxy) -> Away {
    let (consultant, mut c_events) = node.available_consultant("cora").await;
    let token = node.token("sam", Role::Seeker);
    let (seeker, mut s_events) = SignalingClient::connect(&balancer.ws_url, &token).await.unwrap();
    seeker.call(&UserId::parse("cora").unwrap(), None).await.unwrap();
    let (call_id, session_id) = crate::common::incoming(&mut c_events).await;
    consultant.accept(&call_id).await.unwrap();
    seeker.join(&session_id).await.unwrap();
    consultant.join(&session_id).await.unwrap();

    balancer.set_refusing(true);
    balancer.cut();
    event(&mut s_events, |e| matches!(e, Event::Reconnecting).then_some(())).await;
    for i in 0..5 {
        consultant.chat(&session_id, &format!("note {i}"), ChatKind::Chat).await.unwrap();
    }
    Away { consultant, c_events, seeker, s_events, session_id }
}

/// sam resumed (no rejoin) and got the five notes once each, in order
/// (replayed messages come before the resume's ack).
async fn resumed_with_the_notes(s_events: &mut Events) {
    let (mut got, mut replayed) = (Vec::new(), None);
    while got.len() < 5 || replayed.is_none() {
        match event(s_events, |e| Some(e.clone())).await {
            Event::Server(ServerMessage::ChatMessage { text, .. }) => got.push(text),
            Event::Resumed { replayed: n, .. } => replayed = Some(n),
            Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
            Event::Rejoined { .. } => panic!("rejoined instead of resuming"),
            _ => {}
        }
    }
    assert!(replayed >= Some(5), "the five notes (at least) were replayed: {replayed:?}");
    assert_eq!(got, (0..5).map(|i| format!("note {i}")).collect::<Vec<_>>(), "once each, in order");
}

/// A seeker's connection drops while the consultant writes to them; the
/// seeker's next connection (through a balancer, to another node) resumes
/// the link, which lives on the hub node, and gets what it missed in
/// order with the same sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_with_what_it_missed() {
    let nodes = cluster(3, test_clock()).await;
    let balancer = Proxy::balance(&[&nodes[1], &nodes[2]]).await;
    let Away { consultant: _consultant, mut c_events, seeker, mut s_events, session_id } =
        away_while_notes_are_sent(&nodes[1], &balancer).await;
    balancer.set_refusing(false);
    resumed_with_the_notes(&mut s_events).await;
    // Still one session on the hub: the resumed seeker hangs up.
    seeker.end_session(&session_id).await.unwrap();
    c_events.wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(())).await.unwrap();
}

/// The hub node dies while the seeker's socket is down and the consultant
/// has sent five notes: the seeker comes back through a live node and
/// resumes its link from the journal the dead hub node kept in Redis — the
/// five notes arrive once, in order — and both are back in the room
/// without a rejoin (the numbering: `link::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_hub_node_dies_a_client_resumes_on_the_next_with_what_it_missed() {
    let mut nodes = cluster(3, test_clock()).await;
    assert_eq!(hub_node(&nodes[1]).await.as_deref(), Some("node-0"));
    let balancer = Proxy::balance(&[&nodes[1], &nodes[2]]).await;
    let Away { consultant: _consultant, mut c_events, seeker, mut s_events, session_id } =
        away_while_notes_are_sent(&nodes[1], &balancer).await;
    nodes[0].kill();
    until("another node runs the hub", || async { hub_node(&nodes[1]).await.is_some_and(|n| n != "node-0") }).await;
    balancer.set_refusing(false);

    resumed_with_the_notes(&mut s_events).await;
    // The consultant, on the surviving node 1, resumed too; both are back
    // in the room: the seeker's hang-up reaches the consultant.
    event(&mut c_events, |e| match e {
        Event::Resumed { .. } => Some(()),
        Event::ResumeFailed { reason } => panic!("the consultant's resume refused: {reason}"),
        _ => None,
    })
    .await;
    seeker.end_session(&session_id).await.unwrap();
    c_events.wait_for(WAIT, |m| matches!(m, ServerMessage::SessionEnded { .. }).then_some(())).await.unwrap();
}

/// The hub node dies while its lease on a session is still held (here:
/// for 30 s more): the new hub node cannot re-open that session at once,
/// and both clients resume their links before it can. When the lease is
/// free and the session is re-opened, both are put back in its room —
/// they resumed, so they will not join it again — and it is metered as
/// before: nobody is left absent until the grace period ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_who_resumed_before_their_session_was_reopened_are_put_back_in_its_room() {
    let clock = test_clock();
    let mut nodes = cluster(3, clock.clone()).await;
    price(&nodes[1], "cora", 3000).await;
    let balancer = Proxy::balance(&[&nodes[1], &nodes[2]]).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    clock.advance(SECS(620));
    until("the 620 s checkpoint", || async { live.checkpoint(&nodes[1]).await == Some(620_000) }).await;

    let config = &nodes[1].config.cluster;
    let client = redis::Client::open(config.redis_url.clone().unwrap()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let lease = format!("{}:lease:session:{}", config.redis_prefix, live.session_id.as_str());
    nodes[0].kill();
    let _: () =
        redis::cmd("SET").arg(&lease).arg("node-0").arg("PX").arg(30_000).query_async(&mut redis).await.unwrap();
    until("another node runs the hub", || async { hub_node(&nodes[1]).await.is_some_and(|n| n != "node-0") }).await;
    for events in [&mut live.s_events, &mut live.c_events] {
        event(events, |e| match e {
            Event::Resumed { .. } => Some(()),
            Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
            _ => None,
        })
        .await;
    }
    assert_eq!(live.epoch(&nodes[1]).await, 1, "not taken over yet: the dead node's lease holds");

    let _: () = redis::cmd("DEL").arg(&lease).query_async(&mut redis).await.unwrap();
    until("taken over once the lease is free", || async { live.epoch(&nodes[1]).await == 2 }).await;
    live.joined(&nodes[1], 1).await;
    clock.advance(SECS(60));
    live.seeker.end_session(&live.session_id).await.unwrap();
    let moderator = nodes[1].token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&nodes[2].base).unwrap(), &moderator, &live.session_id).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), 680), "both present again, metered");
    assert_eq!(settlements(&nodes[1], &live.session_id).await, 1);
}

/// A consultant who said `available` is still ringable after the hub node
/// died: their link resumes on the next hub node with their presence
/// choice, and a seeker on another node rings them there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_available_consultant_stays_ringable_after_the_hub_node_dies() {
    let mut nodes = cluster(3, test_clock()).await;
    assert_eq!(hub_node(&nodes[1]).await.as_deref(), Some("node-0"));
    let (_consultant, mut c_events) = nodes[1].available_consultant("cora").await;
    until("cora is available", || async { presence_on(&nodes[2], "cora").await == PresenceStatus::Available }).await;

    nodes[0].kill();
    event(&mut c_events, |e| match e {
        Event::Resumed { .. } => Some(()),
        Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
        _ => None,
    })
    .await;
    assert_eq!(presence_on(&nodes[2], "cora").await, PresenceStatus::Available, "still available");
    let (seeker, _s_events) = nodes[2].client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), None).await.unwrap();
    crate::common::incoming(&mut c_events).await;
}

/// A call still ringing when the hub node dies ends with it: the new hub
/// node stores it as ended (`server_shutdown`) and releases its hold at
/// once, and both parties, resuming there, are told `call.ended` instead
/// of waiting for an answer that cannot come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_ringing_when_the_hub_node_dies_ends_and_its_hold_is_released() {
    let mut nodes = cluster(3, test_clock()).await;
    assert_eq!(hub_node(&nodes[1]).await.as_deref(), Some("node-0"));
    price(&nodes[1], "cora", 3000).await;
    let (_consultant, mut c_events) = nodes[1].available_consultant("cora").await;
    let (seeker, mut s_events) = nodes[2].client("sam", Role::Seeker).await;
    seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.unwrap();
    let (call_id, session_id) = crate::common::incoming(&mut c_events).await;
    assert_eq!(nodes[1].billing.hold(&session_id).await.unwrap().unwrap().status, "held");

    nodes[0].kill();
    for events in [&mut s_events, &mut c_events] {
        let ended = event(events, |e| match e {
            Event::Server(ServerMessage::CallEnded { call_id, reason, .. }) => Some((call_id.clone(), *reason)),
            Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
            _ => None,
        })
        .await;
        assert_eq!(ended, (call_id.clone(), CallEndReason::ServerShutdown));
    }
    until("the hold is released", || async {
        nodes[1].billing.hold(&session_id).await.unwrap().unwrap().status == "released"
    })
    .await;
    nodes[1].assert_reconciled().await;
}

/// The hub node is killed (no goodbye: its sockets drop, its leases lapse)
/// 620 s into a priced session: another node takes the hub lease within a
/// lease TTL, re-opens the session from its last checkpoint under a new
/// owner epoch; both clients (behind a balancer) come back by themselves
/// and resume their links from the journal; the session goes on, is
/// billed without losing the checkpointed time and is settled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_node_killed_mid_session_costs_no_call() {
    let clock = test_clock();
    let mut nodes = cluster(3, clock.clone()).await;
    price(&nodes[1], "cora", 3000).await;
    let balancer = Proxy::balance(&[&nodes[0], &nodes[1], &nodes[2]]).await;
    let mut live = Live::start(&nodes[1], &balancer).await;
    clock.advance(SECS(620));
    until("the 620 s checkpoint", || async { live.checkpoint(&nodes[1]).await == Some(620_000) }).await;

    nodes[0].kill();
    until("another node runs the hub", || async { hub_node(&nodes[1]).await.is_some_and(|n| n != "node-0") }).await;
    live.resumed(&nodes[1], 1).await;
    assert_eq!(live.epoch(&nodes[1]).await, 2, "taken over once");
    clock.advance(SECS(60));
    let (seeker, session_id) = (&live.seeker, &live.session_id);
    seeker.end_session(session_id).await.unwrap();
    let moderator = nodes[1].token("mo", Role::Moderator);
    let d = settled(&ApiClient::new(&nodes[2].base).unwrap(), &moderator, session_id).await;
    assert_eq!((d.outcome, d.billable_secs), (Some(Outcome::Charged), 680), "nothing checkpointed was lost");
    assert_eq!(settlements(&nodes[1], session_id).await, 1);
    nodes[1].assert_reconciled().await;
}

/// A priced session (cora at 30 EUR, sam with a card) whose two clients
/// connect through `balancer` and have joined its room; `app` mints tokens.
pub(crate) struct Live {
    pub(crate) seeker: SignalingClient,
    pub(crate) s_events: Events,
    pub(crate) consultant: SignalingClient,
    pub(crate) c_events: Events,
    pub(crate) session_id: SessionId,
}

impl Live {
    pub(crate) async fn start(app: &TestApp, balancer: &Proxy) -> Live {
        let connect = |id: &'static str, role| {
            let token = app.token(id, role);
            let url = balancer.ws_url.clone();
            async move { SignalingClient::connect(&url, &token).await.unwrap() }
        };
        let (consultant, mut c_events) = connect("cora", Role::Consultant).await;
        consultant.set_available(true).await.unwrap();
        let (seeker, s_events) = connect("sam", Role::Seeker).await;
        seeker.call(&UserId::parse("cora").unwrap(), Some("pm_card_visa")).await.unwrap();
        let (call_id, session_id) = crate::common::incoming(&mut c_events).await;
        consultant.accept(&call_id).await.unwrap();
        seeker.join(&session_id).await.unwrap();
        consultant.join(&session_id).await.unwrap();
        Live { seeker, s_events, consultant, c_events, session_id }
    }

    /// The session's last meter checkpoint, billable ms.
    pub(crate) async fn checkpoint(&self, app: &TestApp) -> Option<i64> {
        sqlx::query_scalar::<_, i64>("SELECT billable_ms FROM meter_checkpoints WHERE session_id = $1")
            .bind(self.session_id.as_str())
            .fetch_optional(&app.store.pool())
            .await
            .unwrap()
    }

    /// The session's owner epoch: 1 when opened, +1 per takeover (C6).
    pub(crate) async fn epoch(&self, app: &TestApp) -> i64 {
        sqlx::query_scalar("SELECT owner_epoch FROM sessions WHERE id = $1")
            .bind(self.session_id.as_str())
            .fetch_one(&app.store.pool())
            .await
            .unwrap()
    }

    /// Both clients were refused their resume (their links were lost with
    /// Redis) and rejoined by themselves: the session's timeline has
    /// `2 * times` joins after the first two.
    pub(crate) async fn rejoined(&mut self, app: &TestApp, times: usize) {
        for events in [&mut self.s_events, &mut self.c_events] {
            event(events, |e| matches!(e, Event::ResumeFailed { .. }).then_some(())).await;
        }
        self.joined(app, times).await;
    }

    /// Both clients resumed their links on the new hub node (from the
    /// links' journal: no rejoin) and are back in the room: the session's
    /// timeline has `2 * times` joins after the first two.
    pub(crate) async fn resumed(&mut self, app: &TestApp, times: usize) {
        for events in [&mut self.s_events, &mut self.c_events] {
            event(events, |e| match e {
                Event::Resumed { .. } => Some(()),
                Event::ResumeFailed { reason } => panic!("resume refused: {reason}"),
                _ => None,
            })
            .await;
        }
        self.joined(app, times).await;
    }

    async fn joined(&self, app: &TestApp, times: usize) {
        let session_id = &self.session_id;
        until("both back in the session on the new hub node", || async {
            let kinds = timeline_kinds(&app.store, session_id).await;
            kinds.iter().filter(|k| *k == "joined").count() >= 2 + 2 * times
        })
        .await;
    }
}
