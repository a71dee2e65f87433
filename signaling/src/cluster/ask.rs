//! The server's questions to the hub (presence for the directory, pushes
//! to a user, ending or opening a session), answered by the hub core
//! wherever it runs: here, or on the hub node over the bus.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parley_domain::protocol::{PresenceStatus, ServerMessage, SessionEndReason, UserInfo};
use parley_domain::{SessionId, Timestamp, UserId};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::{Wire, lock};
use crate::hub::Hub;
use crate::store::{SessionRecord, StoreError};

/// How long a node waits for the hub node's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// A question for the hub core.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Ask {
    PresenceOf { ids: Vec<UserId> },
    OnlineConsultants,
    NotifyUser { user: UserId, msg: Box<ServerMessage> },
    EndSession { session_id: SessionId, reason: SessionEndReason },
    OpenScheduled { record: SessionRecord, seeker: UserInfo, consultant: UserInfo, no_show_at: Timestamp },
}

/// The hub core's answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub(crate) enum Answer {
    Presence {
        statuses: Vec<PresenceStatus>,
    },
    Users {
        users: Vec<UserInfo>,
    },
    Ended {
        open: bool,
    },
    Opened {
        opened: Result<bool, String>,
    },
    Done,
    /// The asked node is not the hub node (any more): ask again once the
    /// hub node is known.
    NotHub,
}

impl Hub {
    /// Answers `ask` from this node's core.
    pub(crate) async fn answer(self: &Arc<Self>, ask: Ask) -> Answer {
        match ask {
            Ask::PresenceOf { ids } => Answer::Presence { statuses: self.lock().core.presence_of(&ids) },
            Ask::OnlineConsultants => Answer::Users { users: self.lock().core.online_consultants() },
            Ask::NotifyUser { user, msg } => {
                self.notify_user_here(&user, &msg);
                Answer::Done
            }
            Ask::EndSession { session_id, reason } => {
                Answer::Ended { open: self.end_session_here(&session_id, reason).await }
            }
            Ask::OpenScheduled { record, seeker, consultant, no_show_at } => {
                let opened = self.open_scheduled_here(record, seeker, consultant, no_show_at).await;
                Answer::Opened { opened: opened.map_err(|e| e.0) }
            }
        }
    }

    /// Asks the hub core, here or on the hub node. `None`: no hub node is
    /// elected, it did not answer within [`ANSWER_TIMEOUT`], or the node
    /// asked no longer runs the hub.
    pub(crate) async fn ask(self: &Arc<Self>, ask: Ask) -> Option<Answer> {
        let Some(cluster) = self.remote_hub() else { return Some(self.answer(ask).await) };
        let req = cluster.next_ask.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&cluster.asks).insert(req, tx);
        let sent = cluster.to_hub(&Wire::Ask { from: cluster.bus.node().to_owned(), req, ask });
        let answer = match sent {
            true => tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok().and_then(Result::ok),
            false => None,
        };
        lock(&cluster.asks).remove(&req);
        match answer {
            None => tracing::warn!(hub = ?cluster.hub_node(), "the hub node did not answer"),
            Some(Answer::NotHub) => {
                tracing::warn!(hub = ?cluster.hub_node(), "asked a node that no longer runs the hub")
            }
            Some(_) => return answer,
        }
        None
    }

    /// Tells the hub core without waiting for an answer.
    fn tell(self: &Arc<Self>, ask: Ask) {
        match self.remote_hub() {
            Some(cluster) => {
                cluster.to_hub(&Wire::Ask { from: cluster.bus.node().to_owned(), req: 0, ask });
            }
            None => {
                let hub = self.clone();
                tokio::spawn(async move { hub.answer(ask).await });
            }
        }
    }

    // ----- the server's questions -------------------------------------------

    /// The presence of each consultant in `ids`, cluster-wide (offline
    /// when unknown, or when the hub node cannot be asked).
    pub async fn presence_of(self: &Arc<Self>, ids: &[UserId]) -> Vec<PresenceStatus> {
        if self.remote_hub().is_none() {
            return self.lock().core.presence_of(ids);
        }
        match self.ask(Ask::PresenceOf { ids: ids.to_vec() }).await {
            Some(Answer::Presence { statuses }) if statuses.len() == ids.len() => statuses,
            _ => vec![PresenceStatus::Offline; ids.len()],
        }
    }

    /// Consultants with a link (connected or within grace), cluster-wide.
    pub async fn online_consultants(self: &Arc<Self>) -> Vec<UserInfo> {
        if self.remote_hub().is_none() {
            return self.lock().core.online_consultants();
        }
        match self.ask(Ask::OnlineConsultants).await {
            Some(Answer::Users { users }) => users,
            _ => Vec::new(),
        }
    }

    /// Sends `msg` to `user` wherever they are connected (booking and
    /// dispute pushes); nothing if they are not.
    pub fn notify_user(self: &Arc<Self>, user: &UserId, msg: &ServerMessage) {
        if self.remote_hub().is_none() {
            return self.notify_user_here(user, msg);
        }
        self.tell(Ask::NotifyUser { user: user.clone(), msg: Box::new(msg.clone()) });
    }

    /// Ends the open session `session_id` for `reason` (a moderator):
    /// stored, then both participants get `session.ended`. False if it was
    /// not open (or the hub node could not be asked).
    pub async fn end_session_for(self: &Arc<Self>, session_id: &SessionId, reason: SessionEndReason) -> bool {
        if self.remote_hub().is_none() {
            return self.end_session_here(session_id, reason).await;
        }
        matches!(
            self.ask(Ask::EndSession { session_id: session_id.clone(), reason }).await,
            Some(Answer::Ended { open: true })
        )
    }

    /// Opens the room of a booked session on the hub core (see
    /// `Hub::open_scheduled_here`).
    ///
    /// # Errors
    ///
    /// [`StoreError`] when the session could not be stored, or the hub
    /// node could not be asked.
    pub async fn open_scheduled(
        self: &Arc<Self>,
        record: SessionRecord,
        seeker: UserInfo,
        consultant: UserInfo,
        no_show_at: Timestamp,
    ) -> Result<bool, StoreError> {
        if self.remote_hub().is_none() {
            return self.open_scheduled_here(record, seeker, consultant, no_show_at).await;
        }
        let ask = Ask::OpenScheduled { record, seeker, consultant, no_show_at };
        match self.ask(ask).await {
            Some(Answer::Opened { opened }) => opened.map_err(StoreError),
            _ => Err(StoreError("the hub node did not answer".into())),
        }
    }
}
