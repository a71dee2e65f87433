//! The media backend seam (issue 18). Where a session's media runs is a
//! per-deployment choice (`PARLEY_MEDIA`):
//!
//! - peer to peer (the default): the signaling room's joins and drops feed
//!   the meter; nothing here runs;
//! - LiveKit ([`livekit::Livekit`]): each session gets a LiveKit room named
//!   after it; `room.join` acks carry a LiveKit URL and a token admitting
//!   exactly that room and identity ([`parley_signaling::JoinExtras`]);
//!   LiveKit's webhooks ([`http`]) and a poll of its participants
//!   ([`worker`]) feed the meter instead of the signaling room
//!   ([`rules`]); the session's end removes the participants and deletes
//!   the room.
//!
//! [`MediaHooks`] sits between the hub and the meter and routes the room
//! events by backend.

pub mod http;
pub mod livekit;
pub mod rules;
pub mod sql;
pub mod worker;

use std::sync::Arc;

use async_trait::async_trait;
use parley_domain::protocol::{MeterStatus, Role, ServerMessage, SessionBill, SessionEndReason};
use parley_domain::{SessionId, Timestamp};
use parley_metering::{MeterEnd, MeterSink};
use parley_signaling::SessionHooks;
use parley_signaling::store::SessionRecord;

use crate::sessions::gate::{HubSink, MeterHooks};

/// The hub's [`SessionHooks`], by media backend: the meter's hooks, plus
/// (LiveKit) the room's life cycle. With LiveKit, the signaling room's
/// joins and drops are not media presence and are not metered; LiveKit's
/// own participant events are (rule L1).
pub struct MediaHooks {
    /// The meter.
    pub meter: MeterHooks,
    /// The LiveKit backend; `None` for peer to peer.
    pub livekit: Option<Arc<livekit::Livekit>>,
}

impl SessionHooks for MediaHooks {
    fn opened(&self, session: &SessionRecord, at: Timestamp) {
        self.meter.opened(session, at);
        if let Some(lk) = &self.livekit {
            lk.opened(session, at);
        }
    }

    fn joined(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        if self.livekit.is_none() {
            self.meter.joined(session_id, role, at);
        }
    }

    fn absent(&self, session_id: &SessionId, role: Role, at: Timestamp) {
        if self.livekit.is_none() {
            self.meter.absent(session_id, role, at);
        }
    }

    fn status(&self, session_id: &SessionId, at: Timestamp) -> Option<MeterStatus> {
        self.meter.status(session_id, at)
    }

    fn ending(
        &self,
        session_id: &SessionId,
        reason: SessionEndReason,
        by: Option<Role>,
        at: Timestamp,
    ) -> Option<SessionBill> {
        let bill = self.meter.ending(session_id, reason, by, at);
        if let Some(lk) = &self.livekit {
            lk.ended(session_id);
        }
        bill
    }
}

/// The meter's sink, by media backend: the hub's, plus (LiveKit) the
/// room's teardown when the meter ends a session itself (a limit, an
/// absence past the grace period).
pub struct MediaSink {
    /// The hub.
    pub hub: HubSink,
    /// The LiveKit backend; `None` for peer to peer.
    pub livekit: Option<Arc<livekit::Livekit>>,
}

#[async_trait]
impl MeterSink for MediaSink {
    fn send(&self, session_id: &SessionId, msg: ServerMessage) {
        self.hub.send(session_id, msg);
    }

    async fn end(&self, session_id: &SessionId, end: &MeterEnd) -> bool {
        let ended = self.hub.end(session_id, end).await;
        if let Some(lk) = &self.livekit {
            lk.ended(session_id);
        }
        ended
    }
}
