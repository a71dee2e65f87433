//! The core's own tests: tables of inputs and the outputs they must give
//! (`table`), and properties over any interleaving of inputs (`props`).
//! Time is an input: nothing sleeps.

mod props;
mod table;

use std::sync::Arc;
use std::time::Duration;

use parley_domain::protocol::{Role, ServerMessage, UserInfo};
use parley_domain::{CallId, SessionId, Timestamp, UserId};

use super::{Action, CallRequest, HubCore, LinkRef, Output};
use crate::config::SignalingConfig;
use crate::store::NoHooks;

/// A link in tests: its number and its user's index.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct TestLink {
    pub id: u64,
    pub user: usize,
    pub token: String,
}

impl LinkRef for TestLink {
    fn resume_token(&self) -> &str {
        &self.token
    }

    fn is_used(&self) -> bool {
        true
    }
}

pub(super) const T0: i64 = 1_767_225_600_000;
pub(super) const GRACE: Duration = Duration::from_secs(30);
pub(super) const RING: Duration = Duration::from_secs(30);

pub(super) fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms)
}

pub(super) fn core() -> HubCore<TestLink> {
    let cfg = SignalingConfig { grace: GRACE, ring_timeout: RING, ..SignalingConfig::default() };
    HubCore::new(cfg, Arc::new(NoHooks))
}

/// The cast: two seekers, two consultants, one recorder.
pub(super) fn users() -> Vec<UserInfo> {
    let user = |id: &str, role| UserInfo { id: UserId::parse(id).expect("valid"), name: id.to_owned(), role };
    vec![
        user("seeker-0", Role::Seeker),
        user("seeker-1", Role::Seeker),
        user("consultant-0", Role::Consultant),
        user("consultant-1", Role::Consultant),
        user("recorder-0", Role::Recorder),
    ]
}

pub(super) fn link(id: u64, user: usize) -> TestLink {
    TestLink { id, user, token: format!("token-{id}") }
}

pub(super) fn request(consultant: &UserInfo, n: u64, recording: bool) -> CallRequest {
    CallRequest {
        consultant_id: consultant.id.clone(),
        recording,
        premium: false,
        call_id: CallId::parse(format!("call_{n}")).expect("valid"),
        session_id: SessionId::parse(format!("ses_{n}")).expect("valid"),
    }
}

/// The session a message is about, if any.
pub(super) fn session_of(msg: &ServerMessage) -> Option<&SessionId> {
    use ServerMessage as M;
    match msg {
        M::ParticipantJoined { session_id, .. }
        | M::ParticipantLeft { session_id, .. }
        | M::SdpOffer { session_id, .. }
        | M::SdpAnswer { session_id, .. }
        | M::IceCandidate { session_id, .. }
        | M::ChatMessage { session_id, .. }
        | M::RecordingStarted { session_id, .. }
        | M::RecordingStopped { session_id, .. }
        | M::RecordingAssigned { session_id, .. }
        | M::SessionEnded { session_id, .. } => Some(session_id),
        _ => None,
    }
}

/// The outputs queued so far.
pub(super) fn drain(core: &mut HubCore<TestLink>) -> Vec<Output<TestLink>> {
    core.drain().collect()
}

/// `(recipient's user index, message)` of the messages among `outs`.
pub(super) fn messages(outs: &[Output<TestLink>]) -> Vec<(usize, &ServerMessage)> {
    outs.iter()
        .filter_map(|o| match &o.action {
            Action::Send { to, msg } | Action::Tell { to, msg } => Some((to.user, msg)),
            _ => None,
        })
        .collect()
}
