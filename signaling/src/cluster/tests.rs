//! A node that has lost the hub role (docs/rules.md C7) while an edge still
//! names it: what it does with that edge's new connections and questions.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_domain::protocol::{PresenceStatus, Role, UserInfo};
use parley_domain::{Timestamp, UserId};

use super::{Bus, HubChange, Wire, ask, lock};
use crate::config::SignalingConfig;
use crate::hub::CLOSE_GOING_AWAY;
use crate::hub::Hub;
use crate::hub::driver::tests::{Flaky, Still};
use crate::store::{NoHooks, OpenGate};

/// A bus that keeps what this node sends, decoded.
struct Sent {
    node: String,
    sent: Mutex<Vec<(String, Wire)>>,
}

impl Bus for Sent {
    fn node(&self) -> &str {
        &self.node
    }

    fn send(&self, to: &str, payload: Vec<u8>) {
        let wire = serde_json::from_slice(&payload).expect("a wire message");
        lock(&self.sent).push((to.to_owned(), wire));
    }
}

impl Sent {
    /// Waits (bounded) until something was sent, and takes it all.
    async fn take(&self) -> Vec<(String, Wire)> {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let sent: Vec<_> = lock(&self.sent).drain(..).collect();
                if !sent.is_empty() {
                    return sent;
                }
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("something was sent")
    }
}

/// Node `a` of a cluster, as hub node; and its bus.
fn node_a() -> (Arc<Hub>, Arc<Sent>) {
    let now = Timestamp::from_unix_millis(1_767_225_600_000);
    let hub = Hub::new(
        SignalingConfig::default(),
        Arc::new(Still(now)),
        Arc::new(Flaky { fail_ends: false }),
        Arc::new(OpenGate),
        Arc::new(NoHooks),
    );
    let bus = Arc::new(Sent { node: "a".into(), sent: Mutex::new(Vec::new()) });
    hub.join_cluster(bus.clone());
    assert_eq!(hub.set_hub_node(Some("a".into())), HubChange::Promoted);
    (hub, bus)
}

fn open(conn: u64) -> Vec<u8> {
    let user = UserInfo { id: UserId::parse("sam").unwrap(), name: "Sam".into(), role: Role::Seeker };
    serde_json::to_vec(&Wire::Open { from: "e".into(), conn, user, premium: false }).unwrap()
}

fn presence_ask(req: u64) -> Vec<u8> {
    let ask = ask::Ask::PresenceOf { ids: vec![UserId::parse("cora").unwrap()] };
    serde_json::to_vec(&Wire::Ask { from: "e".into(), req, ask }).unwrap()
}

fn remotes(hub: &Hub) -> usize {
    lock(&hub.cluster.get().unwrap().remotes).len()
}

#[tokio::test]
async fn the_hub_node_serves_an_edges_connection() {
    let (hub, bus) = node_a();
    hub.on_bus(&open(6));
    assert_eq!(remotes(&hub), 1, "served here");
    // Its first words to the client (`server.hello`) go back to edge `e`.
    let sent = bus.take().await;
    assert!(sent.iter().all(|(to, w)| to == "e" && matches!(w, Wire::Write { conn: 6, .. })), "{sent:?}");
}

#[tokio::test]
async fn a_node_that_lost_the_hub_closes_an_edges_new_connection() {
    let (hub, bus) = node_a();
    assert_eq!(hub.set_hub_node(Some("b".into())), HubChange::Demoted);
    hub.on_bus(&open(7));
    assert_eq!(remotes(&hub), 0, "not served on a core that runs nothing");
    let sent = bus.take().await;
    assert!(
        matches!(&sent[..], [(to, Wire::Close { conn: 7, code, .. })] if to == "e" && *code == CLOSE_GOING_AWAY),
        "{sent:?}"
    );
}

#[tokio::test]
async fn the_hub_node_answers_questions_and_a_former_one_says_so() {
    let (hub, bus) = node_a();
    hub.on_bus(&presence_ask(1));
    let sent = bus.take().await;
    assert!(
        matches!(&sent[..], [(_, Wire::Answer { req: 1, answer: ask::Answer::Presence { statuses } })]
            if statuses == &[PresenceStatus::Offline]),
        "{sent:?}"
    );
    hub.set_hub_node(None);
    hub.on_bus(&presence_ask(2));
    let sent = bus.take().await;
    assert!(matches!(&sent[..], [(to, Wire::Answer { req: 2, answer: ask::Answer::NotHub })] if to == "e"), "{sent:?}");
}
