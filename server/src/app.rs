//! Wiring: builds every part from a [`Config`], binds the listener and runs
//! until shut down (zero-to-production's `Application`).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use parley_billing::stripe::{StripeConfig, StripeConfigError, StripeProvider};
use parley_billing::{Billing, BillingError, PaymentProvider, SandboxProvider};
use parley_domain::clock::SystemClock;
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{Clock, UserId};
use parley_metering::Meters;
use parley_signaling::{Authenticator, CallGate, Hub, Signaling, Store, StoreError};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Election, HubLease, Leases, LocalLeases, RedisBus, RedisJournal, RedisLeases};
use crate::config::{ClusterConfig, Config, Media, Mode, Payments, RecorderMode, SecretError};
use crate::kernel::{AppState, Marketplace};
use crate::media::livekit::Livekit;
use crate::media::{MediaHooks, MediaSink};
use crate::recovery::Recovery;
use crate::routes;
use crate::sessions::gate::{BillingGate, HubSink, MeterHooks};
use crate::store::consent::Consent;
use crate::store::files::FilesError;
use crate::store::files::RecordingFiles;
use crate::store::outbox::Outbox;
use crate::store::{ConnectError, SqlStore};
use crate::telemetry;
use crate::webhooks::{Webhooks, WebhooksError};

/// How long shutdown waits for clients to close their WebSockets.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The demo users seeded in dev mode.
pub fn demo_users() -> Vec<UserInfo> {
    let user = |id: &str, name: &str, role| UserInfo { id: UserId::parse(id).expect("valid"), name: name.into(), role };
    vec![user("demo-seeker", "Sam Seeker", Role::Seeker), user("demo-consultant", "Cora Consultant", Role::Consultant)]
}

/// Why the server could not be built ([`Application::build`]) or stopped
/// serving ([`Application::run_until`]). Each variant names the setting at
/// fault, or what was being done; the underlying error is its
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory (SQLite's home) could not be created.
    #[error("PARLEY_DATA_DIR: cannot create {}", path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be connected to or migrated (`DATABASE_URL`).
    #[error(transparent)]
    Database(#[from] ConnectError),
    /// The cluster's Redis could not be connected to (`REDIS_URL`).
    #[error("REDIS_URL: cannot connect to Redis")]
    Redis(#[source] redis::RedisError),
    /// No JWT secret is configured and the dev one could not be kept.
    #[error("PARLEY_JWT_SECRET")]
    JwtSecret(#[source] SecretError),
    /// The recording store or its link secret is unusable
    /// (`PARLEY_RECORDING_STORE`, `PARLEY_RECORDING_URL_SECRET`).
    #[error(transparent)]
    RecordingFiles(#[from] FilesError),
    /// The Stripe provider could not be configured.
    #[error("STRIPE_API_BASE")]
    Stripe(#[source] StripeConfigError),
    /// The webhook worker could not be built (`PARLEY_WEBHOOK_URL`,
    /// `PARLEY_WEBHOOK_SECRET`).
    #[error(transparent)]
    Webhooks(#[from] WebhooksError),
    /// Dev mode: the demo users could not be stored.
    #[error("cannot seed the demo users")]
    DemoUsers(#[source] StoreError),
    /// Dev mode: the demo consultant's price could not be read or stored.
    #[error("cannot seed the demo prices")]
    DemoPrices(#[source] BillingError),
    /// The open sessions could not be recovered (DESIGN.md M9).
    #[error("cannot recover the open sessions")]
    Recovery(#[source] RecoveryError),
    /// The listen address could not be bound.
    #[error("PARLEY_LISTEN: cannot listen on {addr}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// Why (e.g. in use, or a privileged port).
        #[source]
        source: std::io::Error,
    },
    /// Serving failed (accepting connections), or the accept loop's task
    /// panicked.
    #[error("serving failed")]
    Serve(#[source] std::io::Error),
}

/// Why an open session could not be recovered at startup: reading it
/// from the store, from billing or from the bookings failed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The store failed (sessions, participants).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Billing failed (the session's held price).
    #[error(transparent)]
    Billing(#[from] BillingError),
    /// The bookings query failed (the no-show time).
    #[error("booking of the session")]
    Booking(#[from] sqlx::Error),
}

/// A built, bound server, ready to run.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    hub: Arc<Hub>,
    store: SqlStore,
    auth: Arc<Authenticator>,
    billing: Arc<Billing>,
    meters: Arc<Meters>,
    files: Arc<RecordingFiles>,
    webhooks: Arc<Outbox>,
    stop_outbox: CancellationToken,
    /// The embedded recorder, started by `run_until`.
    recorder: Option<RecorderSetup>,
    scheduler_progress: Arc<tokio::sync::watch::Sender<i64>>,
    /// Stops the lease keeper, which then gives this node's leases up.
    stop_leases: CancellationToken,
    /// The background workers (outboxes, scheduler, sweeps), stopped by
    /// `stop_outbox` and waited for before `run_until` returns.
    workers: TaskTracker,
    lease_keeper: tokio::task::JoinHandle<()>,
    /// Stops this node's part of the hub election (which then gives the
    /// hub lease up if it holds it).
    stop_election: CancellationToken,
    election: Option<tokio::task::JoinHandle<()>>,
}

/// What the embedded recorder needs besides the application's parts.
struct RecorderSetup {
    work_dir: std::path::PathBuf,
    clock: Arc<dyn Clock>,
}

impl Application {
    /// Builds the server with the system clock.
    ///
    /// # Errors
    ///
    /// [`StartError`] as [`Application::build_with`].
    pub async fn build(config: Config) -> Result<Application, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the server with `clock` (tests pass a manual clock).
    ///
    /// # Errors
    ///
    /// [`StartError`] as [`Application::build_with`].
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Application, StartError> {
        Self::build_with(config, clock, None).await
    }

    /// Builds the server with `clock` and, if given, another payment seam
    /// than billing's (tests of the seam): connects and migrates the
    /// database, seeds demo users in dev mode, recovers open sessions
    /// (DESIGN.md M9), starts the settlement outbox, binds `config.listen`.
    ///
    /// # Errors
    ///
    /// [`StartError`], naming the setting at fault: the data directory,
    /// database, a secret, the recording store, Stripe or webhook settings
    /// are unusable, the listen address cannot be bound, or seeding (dev)
    /// or recovering open sessions fails.
    pub async fn build_with(
        config: Config,
        clock: Arc<dyn Clock>,
        gate: Option<Arc<dyn CallGate>>,
    ) -> Result<Application, StartError> {
        // The recorder first: signaling keeps the handles of its hottest
        // counters from their first use on.
        let metrics = telemetry::metrics_handle();
        if config.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|source| StartError::DataDir { path: config.data_dir.clone(), source })?;
        }
        let store = SqlStore::connect(&config.database_url).await?;
        let jwt_secret = config.resolve_jwt_secret().map_err(StartError::JwtSecret)?;
        let auth = Arc::new(Authenticator::with_clock(&jwt_secret, clock.clone()));
        let files = Arc::new(RecordingFiles::from_config(&config)?);
        if config.mode == Mode::Dev {
            store.users_seen(&demo_users(), clock.now()).await.map_err(StartError::DemoUsers)?;
        }
        // Crash points, armed only by tests (issue 13): shared by billing and the sandbox.
        let faults = parley_billing::Faults::default();
        let provider = payment_provider(&config, &store, clock.clone(), &faults)?;
        let webhook_secret = match &config.payments {
            Payments::Stripe { webhook_secret, .. } => Some(webhook_secret.clone()),
            Payments::Sandbox => None,
        };
        let billing = Billing::new_with_faults(
            store.pool(),
            Arc::new(store.clone()),
            provider,
            clock.clone(),
            config.billing,
            store.settlement_signal(),
            faults,
        );
        if config.mode == Mode::Dev {
            seed_demo_prices(&billing).await.map_err(StartError::DemoPrices)?;
        }
        let stop_outbox_early = CancellationToken::new();
        // Every background worker, so the stop can wait for them to finish.
        let workers = TaskTracker::new();
        let meters = Meters::new(config.meter, config.currency, clock.clone(), Arc::new(store.clone()));
        meters.observe_lateness(|late| {
            metrics::histogram!("parley_meter_deadline_lateness_seconds").record(late.as_secs_f64());
        });
        let consent = Consent::new(store.clone());
        let gate = gate.unwrap_or_else(|| {
            Arc::new(BillingGate { billing: billing.clone(), meters: meters.clone(), consent: consent.clone() })
        });
        let (leases, redis) = cluster_leases(&config.cluster).await?;
        let livekit = match &config.media {
            Media::P2p => None,
            Media::Livekit(lk) => {
                // Tokens last as long as the longest session: the free
                // window, the instant-call maximum and one grace period.
                let length = config.meter.free_window
                    + Duration::from_secs(u64::from(config.billing.instant_max_minutes) * 60)
                    + config.meter.grace;
                Some(Livekit::new(lk.clone(), meters.clone(), clock.clone(), store.clone(), config.meter.grace, length))
            }
        };
        let hooks = Arc::new(MediaHooks { meter: MeterHooks(meters.clone()), livekit: livekit.clone() });
        let hub = Hub::new(config.signaling.clone(), clock.clone(), Arc::new(store.clone()), gate, hooks);
        meters.set_sink(Arc::new(MediaSink { hub: HubSink(Arc::downgrade(&hub)), livekit: livekit.clone() }));
        if let Some(lk) = &livekit {
            hub.set_join_extras(lk.clone());
            workers.spawn(crate::media::worker::run_poll(lk.clone(), stop_outbox_early.clone().cancelled_owned()));
        }
        let lease_ttl = config.cluster.lease_ttl;
        let recovery = Recovery::new(
            &config,
            store.clone(),
            billing.clone(),
            meters.clone(),
            hub.clone(),
            livekit.clone(),
            leases.clone(),
        );
        let stop_election = CancellationToken::new();
        let election = match &redis {
            // Alone: this node is the hub node; it re-opens every open session now.
            None => {
                let left = recovery.run(None).await.map_err(StartError::Recovery)?;
                debug_assert!(left.is_empty(), "a lone node holds every lease");
                None
            }
            // In a cluster: the elected hub node re-opens them (cluster::hub_node).
            Some(redis) => {
                let (prefix, node) = (&config.cluster.redis_prefix, &config.cluster.node_id);
                let bus = RedisBus::start(redis.clone(), prefix.clone(), node.clone());
                hub.join_cluster(bus.clone());
                let capacity = config.signaling.replay_buffer;
                hub.set_link_journal(Arc::new(RedisJournal::start(redis.clone(), prefix.clone(), capacity)));
                let reader = redis_manager(&config.cluster).await?;
                let (hub, stop) = (Arc::downgrade(&hub), stop_election.clone());
                tokio::spawn(async move { bus.read(reader, hub, stop).await });
                let lease = HubLease::new(redis.clone(), prefix, node.clone());
                // The first beat before serving: this node knows the hub
                // node (or is it, its sessions re-opened) when `build` returns.
                let mut election = Election::new(lease, recovery, lease_ttl);
                election.beat().await;
                Some(tokio::spawn(election.run(stop_election.clone())))
            }
        };
        let stop_leases = CancellationToken::new();
        let lease_keeper = tokio::spawn(crate::cluster::keep_leases(
            leases,
            meters.clone(),
            lease_ttl,
            stop_leases.clone().cancelled_owned(),
        ));
        let stop_outbox = stop_outbox_early;
        // The webhook worker announces finished settlements (`session.settled`).
        billing.on_settled(store.webhook_signal());
        workers.spawn(billing.clone().run_outbox(stop_outbox.clone().cancelled_owned()));
        let delivery = Webhooks::new(&store, clock.clone(), &config.webhooks, store.webhook_signal())?;
        workers.spawn(delivery.run(stop_outbox.clone().cancelled_owned()));
        let webhooks = Outbox::new(store.pool(), clock.clone(), store.webhook_signal());
        // Escrow's changes store their webhooks in their own transactions (E9).
        billing.on_escrow_change(crate::engagements::events::EscrowWebhooks::new(clock.clone(), webhooks.clone()));
        let days = config.recordings.retention_days;
        let sweeper = crate::recordings::retention::run(
            store.clone(),
            files.clone(),
            clock.clone(),
            days,
            stop_outbox.clone().cancelled_owned(),
        );
        workers.spawn(sweeper);
        workers.spawn(crate::sessions::reconcile::run(
            store.pool(),
            billing.provider().clone(),
            clock.clone(),
            webhooks.clone(),
            stop_outbox.clone().cancelled_owned(),
        ));
        let tickets = Arc::new(crate::kernel::tickets::SqlTickets::new(store.pool(), clock.clone()));
        let signaling = Signaling::new(hub.clone(), auth.clone()).with_tickets(tickets);
        let scheduler_progress = Arc::new(tokio::sync::watch::Sender::new(i64::MIN));
        let escrow_wake = parley_domain::clock::Wake::default();
        let state = AppState {
            store: store.clone(),
            hub: hub.clone(),
            auth: auth.clone(),
            clock: clock.clone(),
            metrics,
            billing: billing.clone(),
            meters: meters.clone(),
            webhook_secret,
            files: files.clone(),
            consent,
            bookings_wake: store.booking_signal(),
            pushes: Arc::default(),
            escrow_wake: escrow_wake.clone(),
            scheduler_progress: scheduler_progress.clone(),
            late_cancel_fee_percent: config.late_cancel_fee_percent,
            seeker_no_show: config.seeker_no_show,
            dispute_window_days: config.dispute_window_days,
            disputes_wake: parley_domain::clock::Wake::new(),
            webhooks: webhooks.clone(),
            redis,
            marketplace: Arc::new(Marketplace {
                currencies: config.currencies.clone(),
                packages: crate::profiles::promotions::default_packages(),
            }),
        };
        workers.spawn(crate::bookings::worker::run(state.clone(), stop_outbox.clone().cancelled_owned()));
        workers.spawn(crate::disputes::worker::run(state.clone(), stop_outbox.clone().cancelled_owned()));
        workers.spawn(crate::kernel::worker::run(
            crate::engagements::worker::EscrowWorker(billing.clone()),
            clock.clone(),
            escrow_wake,
            stop_outbox.clone().cancelled_owned(),
        ));
        let mut router = routes::router(state.clone()).merge(signaling.router());
        router = router.merge(match &livekit {
            Some(lk) => crate::media::http::router(lk.clone()),
            None => crate::media::http::absent_router(),
        });
        if config.mode == Mode::Dev {
            router = router.merge(routes::dev_router(state, &config.web_dir, &config.sdk_js_dir));
        } else {
            router = router.merge(routes::landing_router());
        }
        // Every error is a problem (RFC 9457), axum's own plain-text ones
        // included; bodies over 1 MiB are refused (413).
        let router = router
            .layer(axum::extract::DefaultBodyLimit::max(crate::kernel::extract::MAX_BODY_BYTES))
            .layer(axum::middleware::from_fn(crate::kernel::extract::problems));
        let listener = listen(config.listen).map_err(|source| StartError::Listen { addr: config.listen, source })?;
        // With LiveKit, its egress records; the embedded recorder is peer to peer.
        let recorder = (config.recorder == RecorderMode::Embedded && config.media == Media::P2p)
            .then(|| RecorderSetup { work_dir: config.data_dir.join("recorder"), clock: clock.clone() });
        Ok(Application {
            listener,
            router,
            hub,
            store,
            auth,
            billing,
            meters,
            files,
            webhooks,
            stop_outbox,
            recorder,
            scheduler_progress,
            stop_leases,
            lease_keeper,
            stop_election,
            election,
            workers,
        })
    }

    /// Billing (prices, holds, the outbox, the ledger).
    pub fn billing(&self) -> Arc<Billing> {
        self.billing.clone()
    }

    /// Outgoing webhooks: [`Outbox::emit`] stores an event for the
    /// operator's platform.
    pub fn webhooks(&self) -> Arc<Outbox> {
        self.webhooks.clone()
    }

    /// The server time (Unix ms) as of which the booking scheduler last
    /// finished a pass: everything due by then is done (tests wait on it
    /// instead of sleeping).
    pub fn scheduler_progress(&self) -> tokio::sync::watch::Receiver<i64> {
        self.scheduler_progress.subscribe()
    }

    /// Wakes the booking scheduler for a pass at the clock's current time
    /// (tests that moved a manual clock wake it, then wait on
    /// [`Application::scheduler_progress`]).
    pub fn wake_scheduler(&self) {
        self.store.booking_signal().wake();
    }

    /// The session meters.
    pub fn meters(&self) -> Arc<Meters> {
        self.meters.clone()
    }

    /// Recording files: the store the recorder writes to, signed links.
    pub fn recording_files(&self) -> Arc<RecordingFiles> {
        self.files.clone()
    }

    /// The bound address (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The signaling hub.
    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    /// The store.
    pub fn store(&self) -> SqlStore {
        self.store.clone()
    }

    /// The token authenticator.
    pub fn auth(&self) -> Arc<Authenticator> {
        self.auth.clone()
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully: clients
    /// get `server.shutdown` and a 1001 close, in-flight requests finish,
    /// and WebSockets get up to 5 s to close.
    ///
    /// # Errors
    ///
    /// [`StartError::Serve`] if serving fails.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), StartError> {
        let hub = self.hub.clone();
        let stop_recorder = CancellationToken::new();
        let recorder = self.recorder.as_ref().map(|r| self.spawn_recorder(r, stop_recorder.clone()));
        let signal = {
            let hub = hub.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down");
                hub.shutdown().await;
            }
        };
        // Signaling sends small messages back to back: without TCP_NODELAY,
        // Nagle's algorithm and delayed ACKs stall them ~40 ms.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        // Routes are made once here. Served as a `Router`, axum copies its
        // whole route table for every connection (`Router::with_state` per
        // accepted stream), then drops it: 12 % of the server's CPU in a burst
        // of 1,000 calls (perf). `into_make_service` hands each the same table.
        let app = self.router.with_state(()).into_make_service();
        // The accept loop runs as a task on the runtime's workers, not on
        // the thread awaiting this (`main`'s, which is none of them): each
        // accepted connection's task is then queued where it was accepted
        // instead of waking a worker from another thread.
        let serving = tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(signal).into_future());
        serving.await.map_err(|e| StartError::Serve(std::io::Error::other(e)))?.map_err(StartError::Serve)?;
        // Nothing metered is lost to a deploy: each live session's time up
        // to now is checkpointed (a restart resumes from it).
        let drained = self.meters.drain().await;
        tracing::info!(sessions = drained, "live sessions checkpointed");
        // Then their leases go, so another node may take them over at once,
        // and the hub lease, so another node becomes the hub node at once.
        self.stop_leases.cancel();
        let _ = self.lease_keeper.await;
        self.stop_election.cancel();
        if let Some(election) = self.election {
            let _ = election.await;
        }
        if tokio::time::timeout(SHUTDOWN_GRACE, hub.connections_closed()).await.is_err() {
            tracing::warn!("some WebSockets did not close within {SHUTDOWN_GRACE:?}");
        }
        // The recorder finishes what it was recording and stores it.
        stop_recorder.cancel();
        if let Some(task) = recorder
            && tokio::time::timeout(Duration::from_secs(30), task).await.is_err()
        {
            tracing::warn!("the recorder did not finish within 30 s");
        }
        self.stop_outbox.cancel();
        // Nothing of this server runs on after it stopped: a worker's pass
        // in progress finishes first (a restarted or other node takes over
        // from what it stored).
        self.workers.close();
        if tokio::time::timeout(Duration::from_secs(10), self.workers.wait()).await.is_err() {
            tracing::warn!("some background workers did not stop within 10 s");
        }
        Ok(())
    }

    /// Starts the embedded recorder: a `recorder` client of this server's
    /// own signaling endpoint, storing through [`ServerSink`](crate::recordings::ServerSink).
    fn spawn_recorder(&self, setup: &RecorderSetup, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let addr = self.local_addr();
        let auth = self.auth.clone();
        let clock = setup.clock.clone();
        let user = UserInfo {
            id: UserId::parse("parley-recorder").expect("valid"),
            name: "Parley recorder".into(),
            role: Role::Recorder,
        };
        let token: parley_recorder::service::TokenSource =
            Arc::new(move || auth.issue(&user, Duration::from_secs(24 * 3600), clock.now()));
        let ip = if addr.ip().is_loopback() { "127.0.0.1" } else { "0.0.0.0" };
        let config = parley_recorder::service::RecorderConfig {
            signal_url: format!("ws://{}/v1/signal", std::net::SocketAddr::new([127, 0, 0, 1].into(), addr.port())),
            token,
            work_dir: setup.work_dir.clone(),
            udp_addrs: vec![format!("{ip}:0")],
            reconnect_delay: Duration::from_secs(1),
        };
        let sink = Arc::new(crate::recordings::ServerSink {
            store: self.store.clone(),
            files: self.files.clone(),
            clock: setup.clock.clone(),
        });
        tokio::spawn(parley_recorder::service::run(config, sink, stop))
    }
}

/// Demo prices (dev mode): the demo consultant charges a fixed EUR 30.00
/// unless a price was set through the API.
/// The payment provider `config` names: the sandbox over `store`'s database
/// (with crash points `faults`), or Stripe's API.
///
/// # Errors
///
/// [`StartError::Stripe`] if the Stripe settings are unusable.
pub fn payment_provider(
    config: &Config,
    store: &SqlStore,
    clock: Arc<dyn Clock>,
    faults: &parley_billing::Faults,
) -> Result<Arc<dyn PaymentProvider>, StartError> {
    Ok(match &config.payments {
        Payments::Sandbox => {
            Arc::new(SandboxProvider::new(store.pool(), Arc::new(store.clone()), clock).with_faults(faults.clone()))
        }
        Payments::Stripe { secret_key, api_base, .. } => {
            let cfg = StripeConfig { secret_key: secret_key.clone(), api_base: api_base.clone() };
            Arc::new(StripeProvider::new(&cfg).map_err(StartError::Stripe)?)
        }
    })
}

async fn seed_demo_prices(billing: &Billing) -> Result<(), BillingError> {
    use parley_domain::protocol::rest::{ConsultantPrice, PriceModel};
    let cora = UserId::parse("demo-consultant").expect("valid");
    if billing.price(&cora).await?.is_none() {
        let eur = parley_domain::Currency::parse("EUR").expect("valid");
        let price = ConsultantPrice { model: PriceModel::Fixed, amount: parley_domain::Money::new(3000, eur) };
        billing.set_price(&cora, &price).await?;
    }
    Ok(())
}

/// This node's session leases: in the cluster's Redis when `REDIS_URL` is
/// set (also the connection `/readyz` pings), else its own.
async fn cluster_leases(
    cluster: &ClusterConfig,
) -> Result<(Arc<dyn Leases>, Option<redis::aio::ConnectionManager>), StartError> {
    if cluster.redis_url.is_none() {
        return Ok((Arc::new(LocalLeases::new(cluster.node_id.clone())), None));
    }
    let redis = redis_manager(cluster).await?;
    let leases = RedisLeases::new(redis.clone(), cluster.redis_prefix.clone(), cluster.node_id.clone());
    Ok((Arc::new(leases), Some(redis)))
}

/// A connection to the cluster's Redis (`REDIS_URL`, which must be set).
/// It reconnects with backoff by itself after Redis restarts or a network
/// cut; a command meanwhile fails at once rather than hanging.
async fn redis_manager(cluster: &ClusterConfig) -> Result<redis::aio::ConnectionManager, StartError> {
    let url = cluster.redis_url.as_deref().unwrap_or_default();
    let client = redis::Client::open(url).map_err(StartError::Redis)?;
    let manager = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(2));
    client.get_connection_manager_with_config(manager).await.map_err(StartError::Redis)
}

/// Connections the kernel may hold waiting for `accept` (capped by
/// `net.core.somaxconn`). The std/mio default of 128 overflowed under
/// `parley-load signal` (TcpExtListenOverflows), stalling handshakes for a
/// SYN retransmit; every client reconnecting after a restart is such a burst.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
