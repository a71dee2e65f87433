//! The driver's links: connections registered and gone, resume (a link of
//! this node's core, or one the former hub node journaled), and the links'
//! journal of a cluster (`crate::journal`).

use std::sync::Arc;

use parley_domain::protocol::{ErrorCode, IceServer, Role, UserInfo};
use tokio::sync::Notify;

use super::Hub;
use crate::connection::Departure;
use crate::error::SignalError;
use crate::hub::core::Refusal;
use crate::hub::delivery::LocalLink;
use crate::journal::LinkJournal;
use crate::link::Link;
use crate::metrics;

impl Hub {
    /// Copies every seeker's and consultant's link to `journal`, so that a
    /// later hub node can resume them (a cluster's hub node may die or be
    /// drained; `crate::journal`). Once, before clients connect; later
    /// calls are ignored.
    pub fn set_link_journal(&self, journal: Arc<dyn LinkJournal>) {
        let _ = self.journal.set(journal);
    }

    /// The journal for a link of `role` (recorders are not journaled: a
    /// recorder reconnects and is assigned its sessions again).
    fn journal_for(&self, role: Role) -> Option<Arc<dyn LinkJournal>> {
        self.journal.get().filter(|_| matches!(role, Role::Seeker | Role::Consultant)).cloned()
    }

    /// Registers a new connection of `user` woken through `wake`; returns its
    /// fresh link (see `HubCore::connect`).
    pub(crate) fn connect(
        self: &Arc<Self>,
        user: UserInfo,
        premium: bool,
        conn_id: u64,
        wake: Arc<Notify>,
    ) -> Result<LocalLink, Refusal> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let journal = self.journal_for(user.role);
        let link = LocalLink(Arc::new(Link::new(user.clone(), premium, token, self.cfg.replay_buffer, journal)));
        link.0.attach(conn_id, wake, None).expect("attaching without replay cannot fail");
        let batch = {
            let mut locked = self.lock();
            if let Some((journal, key)) = link.0.journal() {
                journal.opened(key, &user, premium, &locked.term);
            }
            let now = self.clock.now();
            if let Err(refusal) = locked.core.connect(user, link.clone(), now) {
                if refusal == Refusal::RecorderConnected {
                    metrics::error(ErrorCode::RecorderConnected);
                }
                return Err(refusal);
            }
            self.apply(&mut locked)
        };
        self.spawn(batch);
        Ok(link)
    }

    /// The connection `conn_id` of `link` has closed (see
    /// `HubCore::disconnect`); nothing if a resume took the link over.
    pub(crate) fn disconnect(self: &Arc<Self>, link: &LocalLink, conn_id: u64, departure: Departure) {
        link.0.detach(conn_id);
        if link.0.is_attached() {
            return;
        }
        if departure == Departure::Closed
            && let Some((journal, key)) = link.0.journal()
        {
            journal.closed(key);
        }
        let batch = {
            let mut locked = self.lock();
            let now = self.clock.now();
            locked.core.disconnect(&link.0.user.id, link, departure, now);
            self.apply(&mut locked)
        };
        self.spawn(batch);
    }

    /// Takes over the dropped link whose token is `resume_token`: the
    /// connection (woken through `wake`) writes that link's messages from
    /// `last_seq + 1` on. `provisional` is the link the connection started with.
    /// A link this node does not know is looked up in the links' journal, in
    /// a cluster (it was the former hub node's: [`HubCore::adopt`]).
    /// Returns the link, how many messages it replays, and fresh ICE
    /// servers for the resume's ack (TURN credentials valid from now).
    pub(crate) async fn resume(
        self: &Arc<Self>,
        provisional: &LocalLink,
        conn_id: u64,
        wake: Arc<Notify>,
        resume_token: &str,
        last_seq: u64,
    ) -> Result<(LocalLink, u64, Vec<IceServer>), SignalError> {
        let refused = match self.resume_here(provisional, conn_id, wake.clone(), resume_token, last_seq) {
            Err(e) if e.code == ErrorCode::ResumeFailed => e,
            done => return done,
        };
        let user = &provisional.0.user;
        let Some(journal) = self.journal_for(user.role) else { return Err(refused) };
        let journaled = match journal.load(resume_token).await {
            Ok(Some(journaled)) if journaled.user.id == user.id => journaled,
            Ok(_) => return Err(refused),
            Err(e) => {
                tracing::warn!(error = %e, user = %user.id, "cannot read the link journal; resume refused");
                return Err(refused);
            }
        };
        let (available, link_term) = (journaled.available, journaled.term.clone());
        let link = Link::restored(journaled, resume_token.to_owned(), last_seq, self.cfg.replay_buffer, Some(journal));
        let batch = {
            let mut locked = self.lock();
            // This core wrote it: it forgot the link on purpose (its grace
            // period ran out, or a newer connection replaced it).
            if link_term == locked.term {
                return Err(refused);
            }
            tracing::info!(user = %user.id, "resuming a link of the former hub node");
            if let Some((journal, key)) = link.journal() {
                journal.opened(key, user, link.premium, &locked.term);
            }
            let now = self.clock.now();
            locked.core.adopt(user, LocalLink(Arc::new(link)), available, now);
            self.apply(&mut locked)
        };
        self.spawn(batch);
        self.resume_here(provisional, conn_id, wake, resume_token, last_seq)
    }

    /// [`Hub::resume`] of a link this node's core knows.
    fn resume_here(
        self: &Arc<Self>,
        provisional: &LocalLink,
        conn_id: u64,
        wake: Arc<Notify>,
        resume_token: &str,
        last_seq: u64,
    ) -> Result<(LocalLink, u64, Vec<IceServer>), SignalError> {
        let user = &provisional.0.user.id;
        let (old, replayed, batch) = {
            let mut locked = self.lock();
            let old = locked.core.resume_target(user, resume_token)?;
            let replayed = old.0.attach(conn_id, wake, Some(last_seq)).map_err(|gap| {
                SignalError::new(
                    ErrorCode::ResumeFailed,
                    format!(
                        "messages after seq {last_seq} are no longer buffered (oldest kept: {}): start afresh",
                        gap.oldest_buffered
                    ),
                )
            })?;
            provisional.0.detach(conn_id);
            let now = self.clock.now();
            locked.core.resumed(user, now);
            (old, replayed, self.apply(&mut locked))
        };
        self.spawn(batch);
        Ok((old, replayed, self.cfg.ice.ice_servers(user, self.clock.now())))
    }
}
