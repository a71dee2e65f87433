//! What every handler shares: [`AppState`], and the marketplace settings
//! ([`Marketplace`]) it carries.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use parley_domain::Clock;
use parley_domain::Currency;
use parley_domain::clock::Wake;
use parley_domain::protocol::rest::PromotionPackage;
use parley_signaling::{Authenticator, Hub};

use crate::config::SeekerNoShow;
use crate::store::SqlStore;
use crate::store::consent::Consent;
use crate::store::files::RecordingFiles;
use crate::store::outbox::Outbox;

/// What the routes share (cheap to clone: every part is shared).
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: SqlStore,
    pub(crate) hub: Arc<Hub>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: PrometheusHandle,
    pub(crate) billing: Arc<parley_billing::Billing>,
    pub(crate) meters: Arc<parley_metering::Meters>,
    /// `STRIPE_WEBHOOK_SECRET`, with the `stripe` provider.
    pub(crate) webhook_secret: Option<String>,
    /// Recording files and their signed links.
    pub(crate) files: Arc<RecordingFiles>,
    /// Recording consent (premium seekers, consultants who allow it).
    pub(crate) consent: Consent,
    /// Wakes the booking scheduler (a booking changed).
    pub(crate) bookings_wake: Wake,
    /// Held while a pushed booking or dispute is read and handed to the hub
    /// (`bookings::sql::push`, the disputes' `tell_parties`): on this node,
    /// pushes reach the hub in the order they were read.
    pub(crate) pushes: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the escrow worker (a milestone was submitted).
    pub(crate) escrow_wake: Wake,
    /// The server time (Unix ms) of the booking scheduler's last finished
    /// pass.
    pub(crate) scheduler_progress: Arc<tokio::sync::watch::Sender<i64>>,
    /// `PARLEY_LATE_CANCEL_FEE_PERCENT`.
    pub(crate) late_cancel_fee_percent: u32,
    /// `PARLEY_SEEKER_NO_SHOW`.
    pub(crate) seeker_no_show: SeekerNoShow,
    /// Outgoing webhooks (the outbox): events stored here are delivered by
    /// the webhook worker.
    pub(crate) webhooks: Arc<Outbox>,
    /// The cluster's Redis (`REDIS_URL`), pinged by `/readyz`.
    pub(crate) redis: Option<redis::aio::ConnectionManager>,
    /// `PARLEY_DISPUTE_WINDOW_DAYS` (D1).
    pub(crate) dispute_window_days: u32,
    /// Wakes the chargeback worker (a provider dispute event was applied).
    pub(crate) disputes_wake: Wake,
    /// Accepted pricing currencies and promotion packages.
    pub(crate) marketplace: Arc<Marketplace>,
}

/// What the marketplace accepts: the pricing currencies
/// (`PARLEY_CURRENCIES`) and the promotion packages on sale.
#[derive(Debug, Clone)]
pub struct Marketplace {
    /// Currencies consultants may price in.
    pub currencies: Vec<Currency>,
    /// Promotion packages on sale.
    pub packages: Vec<PromotionPackage>,
}
