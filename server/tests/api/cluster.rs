//! Session leases in a real Redis (issue 16): at most one node meters a
//! live session; a lapsed lease is taken over; nodes starting together
//! recover each open session once. docs/rules.md C6.

use std::sync::Arc;
use std::time::Duration;

use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{SessionId, UserId};
use parley_server::cluster::{Leases, RedisJournal, RedisLeases};
use parley_signaling::LinkJournal;

/// `TEST_REDIS_URL` (the README's test command sets it and starts Redis).
/// Missing → the test fails: never a silent skip.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .expect("TEST_REDIS_URL is not set: run the tests with ./scripts/test.sh (see README), which starts Redis")
}

/// A key prefix of this test's own, so tests sharing the Redis never meet.
pub fn fresh_prefix() -> String {
    format!("parley-test-{}", uuid::Uuid::new_v4().simple())
}

async fn nodes(prefix: &str, n: usize) -> Vec<Arc<RedisLeases>> {
    let client = redis::Client::open(redis_url()).expect("redis URL");
    let redis = client.get_connection_manager().await.expect("TEST_REDIS_URL is reachable");
    (0..n).map(|i| Arc::new(RedisLeases::new(redis.clone(), prefix, format!("node-{i}")))).collect()
}

const TTL: Duration = Duration::from_secs(30);

/// What a hub node journals of a link comes back whole from Redis for the
/// next one — the user, the consultant's presence choice, the newest
/// messages in `seq` order (about the replay buffer's length) — under a
/// key that is not the token, with an expiry; another token finds nothing,
/// and a link closed on purpose is deleted.
#[tokio::test]
async fn the_link_journal_gives_the_next_hub_node_what_the_last_one_wrote() {
    let prefix = fresh_prefix();
    let client = redis::Client::open(redis_url()).expect("redis URL");
    let redis = client.get_connection_manager().await.expect("TEST_REDIS_URL is reachable");
    let writer = RedisJournal::start(redis.clone(), prefix.clone(), 8);
    let cora = UserInfo { id: UserId::parse("cora").unwrap(), name: "Cora".into(), role: Role::Consultant };
    let key = writer.key("tok-cora");
    writer.opened(&key, &cora, true, "core-1");
    for seq in 1..=300u64 {
        let text = format!(r#"{{"seq":{seq},"type":"presence.updated","status":"busy"}}"#);
        writer.appended(&key, seq, &text.into());
    }
    writer.presence(&key, true);

    // Another node's journal on the same Redis reads it back.
    let reader = RedisJournal::start(redis.clone(), prefix.clone(), 8);
    crate::common::until("the journal is written", || async {
        let found = reader.load("tok-cora").await.unwrap();
        found.is_some_and(|l| l.available && l.messages.last().is_some_and(|m| m.0 == 300))
    })
    .await;
    let link = reader.load("tok-cora").await.unwrap().unwrap();
    assert_eq!((link.user, link.premium, link.term.as_str()), (cora, true, "core-1"));
    let seqs: Vec<u64> = link.messages.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (293..=300).collect::<Vec<_>>(), "the newest 8, in order");
    assert_eq!(link.messages[7].1, r#"{"seq":300,"type":"presence.updated","status":"busy"}"#);
    assert!(reader.load("tok-sam").await.unwrap().is_none(), "another token finds nothing");

    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    assert_eq!(keys.len(), 2, "a hash and a stream: {keys:?}");
    for key in keys {
        assert!(!key.contains("tok-cora"), "the token is not a key: {key}");
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut conn).await.unwrap();
        assert!(ttl > 0, "{key} expires");
    }

    // Closed on purpose: gone.
    writer.closed(&key);
    crate::common::until("the closed link is deleted", || async { reader.load("tok-cora").await.unwrap().is_none() })
        .await;
    let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut conn).await.unwrap();
    assert!(keys.is_empty(), "nothing left: {keys:?}");
}

#[tokio::test]
async fn racing_nodes_get_one_lease_per_session() {
    let prefix = fresh_prefix();
    let all = nodes(&prefix, 6).await;
    for round in 0..40usize {
        let session: SessionId = format!("ses_race{round}").parse().unwrap();
        let rivals = &all[..2 + round % 5];
        let tries: Vec<_> = rivals
            .iter()
            .map(|n| {
                let (n, s) = (n.clone(), session.clone());
                tokio::spawn(async move { n.acquire(&s, TTL).await.unwrap() })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tries.into_iter().enumerate() {
            if t.await.unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one node holds the lease: {winners:?}");
        let holder = &rivals[winners[0]];
        let other = rivals.iter().find(|n| n.node() != holder.node()).unwrap();
        // The holder keeps it; another node can neither renew nor free it.
        assert!(holder.acquire(&session, TTL).await.unwrap(), "round {round}: the holder extends");
        assert_eq!(holder.renew(std::slice::from_ref(&session), TTL).await.unwrap(), Vec::<SessionId>::new());
        assert_eq!(other.renew(std::slice::from_ref(&session), TTL).await.unwrap(), vec![session.clone()]);
        other.release(&session).await.unwrap();
        assert!(!other.acquire(&session, TTL).await.unwrap(), "round {round}: a non-holder's release frees nothing");
        // Given up, it is anyone's.
        holder.release(&session).await.unwrap();
        assert!(other.acquire(&session, TTL).await.unwrap(), "round {round}: released, then taken");
    }
}

#[tokio::test]
async fn a_lapsed_lease_is_taken_over_by_another_node() {
    let prefix = fresh_prefix();
    let all = nodes(&prefix, 2).await;
    let session: SessionId = "ses_lapse".parse().unwrap();
    assert!(all[0].acquire(&session, Duration::from_millis(300)).await.unwrap());
    assert!(!all[1].acquire(&session, TTL).await.unwrap(), "held");
    // Node 0 stops renewing (it died): Redis drops the lease after its TTL.
    crate::common::until("the lease lapses and node 1 takes it", || async {
        all[1].acquire(&session, TTL).await.unwrap()
    })
    .await;
    // The former holder finds out at its next renewal.
    assert_eq!(all[0].renew(std::slice::from_ref(&session), TTL).await.unwrap(), vec![session]);
}

/// A Redis server of the test's own (Debian's `redis-server`, which the
/// README's test command installs), on a free port, keeping nothing on disk.
pub(crate) struct OwnRedis {
    port: u16,
    child: std::process::Child,
}

impl OwnRedis {
    pub(crate) async fn start_on(port: u16) -> OwnRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server runs (./scripts/test.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        crate::common::until("the test's Redis answers", || async {
            let Ok(client) = redis::Client::open(url.as_str()) else { return false };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else { return false };
            redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
        })
        .await;
        OwnRedis { port, child }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn readyz(app: &crate::common::TestApp) -> (u16, String) {
    let r = reqwest::get(format!("{}/readyz", app.base)).await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Redis restarted under a running node: `/readyz` says not ready while it
/// is away (a balancer stops sending clients) and ready again once the
/// node has reconnected by itself.
#[tokio::test]
async fn readyz_follows_redis_going_away_and_coming_back() {
    let port = free_port();
    let mut own = OwnRedis::start_on(port).await;
    let url = crate::common::fresh_postgres_url().await;
    let redis_url = own.url();
    let app = crate::common::spawn_app_with(|c| {
        c.database_url = url;
        c.cluster.redis_url = Some(redis_url);
        c.cluster.redis_prefix = fresh_prefix();
    })
    .await;
    // Alone, it is the hub node itself.
    let ready = (200, format!("ready; hub node {}", app.config.cluster.node_id));
    assert_eq!(readyz(&app).await, ready);
    own.kill();
    crate::common::until("not ready without Redis", || async { readyz(&app).await.0 == 503 }).await;
    let (_, why) = readyz(&app).await;
    assert!(why.contains("redis"), "says why: {why}");
    let _back = OwnRedis::start_on(port).await;
    crate::common::until("ready again", || async { readyz(&app).await == ready }).await;
}

/// A node whose `REDIS_URL` answers nothing does not start, and says which
/// setting is at fault.
#[tokio::test]
async fn a_node_without_its_redis_does_not_start() {
    let url = crate::common::fresh_postgres_url().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = parley_server::Config::for_tests(dir.path());
    config.database_url = url;
    config.cluster.redis_url = Some(format!("redis://127.0.0.1:{}", free_port()));
    let clock: Arc<dyn parley_domain::Clock> = crate::common::test_clock();
    let err = parley_server::Application::build_with_clock(config, clock).await.err().expect("refused");
    assert!(err.to_string().starts_with("REDIS_URL"), "{err}");
}
