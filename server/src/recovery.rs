//! Re-opening the open sessions (DESIGN.md M9): at a single node's start,
//! and on the node that becomes a cluster's hub node (issue 16), which
//! then retries, at each lease beat, the sessions whose former owner still
//! held their lease.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parley_billing::Billing;
use parley_domain::SessionId;
use parley_metering::Meters;
use parley_signaling::{Hub, Store};

use crate::app::RecoveryError;
use crate::cluster::Leases;
use crate::config::{Config, SeekerNoShow};
use crate::media::livekit::Livekit;
use crate::sessions::gate::meter_config;
use crate::store::SqlStore;

/// What re-opening a session needs.
#[derive(Clone)]
pub struct Recovery {
    pub(crate) lease_ttl: Duration,
    pub(crate) seeker_no_show: SeekerNoShow,
    pub(crate) late_cancel_fee_percent: u32,
    pub(crate) store: SqlStore,
    pub(crate) billing: Arc<Billing>,
    pub(crate) meters: Arc<Meters>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) livekit: Option<Arc<Livekit>>,
    pub(crate) leases: Arc<dyn Leases>,
}

impl Recovery {
    /// What `config` says recovery needs, besides the parts.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        config: &Config,
        store: SqlStore,
        billing: Arc<Billing>,
        meters: Arc<Meters>,
        hub: Arc<Hub>,
        livekit: Option<Arc<Livekit>>,
        leases: Arc<dyn Leases>,
    ) -> Recovery {
        Recovery {
            lease_ttl: config.cluster.lease_ttl,
            seeker_no_show: config.seeker_no_show,
            late_cancel_fee_percent: config.late_cancel_fee_percent,
            store,
            billing,
            meters,
            hub,
            livekit,
            leases,
        }
    }

    /// Ends the calls the former hub core was still ringing (`only` unset:
    /// at a start or a takeover; [`Hub::end_lost_calls`]), then re-opens
    /// the sessions the database says are open (`only`: those of them in
    /// the set) that no other node meters (their lease is free or
    /// this node's) and this node does not meter yet: each is taken over
    /// (a new owner epoch fences off any former owner), metered again from
    /// its last checkpoint, and both participants get `G` to join its room
    /// again (with LiveKit: its room's participants are listed at once,
    /// L1). Returns the sessions left out because another node holds their
    /// lease (or Redis could not be asked), to try again later.
    ///
    /// # Errors
    ///
    /// [`RecoveryError`] when the store, billing or the bookings fail.
    pub async fn run(&self, only: Option<&HashSet<SessionId>>) -> Result<Vec<SessionId>, RecoveryError> {
        if only.is_none() {
            // What the former core was ringing ended with it.
            self.hub.end_lost_calls().await?;
        }
        let open = self.store.open_sessions().await?;
        let metered: HashSet<SessionId> = self.meters.sessions().into_iter().collect();
        let mut left = Vec::new();
        for (record, snapshot) in open {
            if only.is_some_and(|only| !only.contains(&record.session_id)) || metered.contains(&record.session_id) {
                continue;
            }
            match self.leases.acquire(&record.session_id, self.lease_ttl).await {
                Ok(true) => {}
                Ok(false) => {
                    left.push(record.session_id);
                    continue;
                }
                Err(e) => {
                    tracing::warn!(session_id = %record.session_id, error = %e, "cannot take the session's lease; retried later");
                    left.push(record.session_id);
                    continue;
                }
            }
            let store = &self.store;
            let (Some(seeker), Some(consultant)) =
                (store.user(&record.seeker_id).await?, store.user(&record.consultant_id).await?)
            else {
                tracing::error!(session_id = %record.session_id, "open session with unknown participants; not recovered");
                continue;
            };
            let pricing = self.billing.session_pricing(&record.session_id).await?;
            let cfg = match &pricing {
                Some(held) => meter_config(self.meters.settings(), held),
                None => self.meters.unpriced(),
            };
            // A booked session keeps its no-show time (DESIGN.md §3).
            let booked = match record.scheduled {
                true => crate::bookings::sql::no_show_time(&store.pool(), &record.session_id).await?.map(|at| {
                    let (policy, percent) = (self.seeker_no_show, self.late_cancel_fee_percent);
                    crate::bookings::rules::booked_session(at, pricing.as_ref(), policy, percent)
                }),
                false => None,
            };
            // Taking the session over fences off the meter of any earlier
            // owner of it (a process that has not quite stopped; issue 16).
            let Some(epoch) = store.claim_session(&record.session_id).await? else {
                continue; // ended meanwhile
            };
            tracing::info!(session_id = %record.session_id, billable_ms = snapshot.billable_ms, %epoch, "recovering open session");
            self.meters.recovered(&record.session_id, epoch, cfg, snapshot, booked);
            if let Some(lk) = &self.livekit {
                lk.restored(&record);
            }
            self.hub.restore_session(record, seeker, consultant, booked.map(|b| b.join_by));
        }
        Ok(left)
    }
}
