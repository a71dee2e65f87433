//! Configuration: an optional `parley.toml` (or the file named by
//! `PARLEY_CONFIG`), overridden by `PARLEY_*` environment variables and
//! `DATABASE_URL`. Validated at start-up; a bad value stops the server with
//! a message naming the key. Only this module reads configuration
//! (ARCHITECTURE.md invariant); the libraries take typed structs.

mod media;

pub use media::{LivekitConfig, Media};
use media::{RAW_LIVEKIT_KEYS, media_config};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use parley_billing::BillingConfig;
use parley_domain::Currency;
use parley_metering::MeterSettings;
use parley_signaling::SignalingConfig;
use parley_signaling::turn::IceConfig;
use serde::{Deserialize, Serialize};

/// Development (demo users, `POST /v1/dev/login`, generated JWT secret) or
/// production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The default.
    Dev,
    /// No dev routes; `PARLEY_JWT_SECRET` required.
    Prod,
}

/// Raw settings as read; key names are the TOML keys, and the environment
/// variable is `PARLEY_` + the key in upper case (`DATABASE_URL` as is).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    env: Mode,
    listen: SocketAddr,
    data_dir: PathBuf,
    database_url: Option<String>,
    jwt_secret: Option<String>,
    ring_timeout_secs: u64,
    grace_secs: u64,
    ping_interval_secs: u64,
    rate_limit_per_sec: u32,
    rate_limit_burst: u32,
    stun_urls: String,
    turn_urls: String,
    turn_secret: Option<String>,
    turn_ttl_secs: u64,
    log: String,
    free_window_secs: u64,
    commission_bps: u32,
    instant_max_minutes: u32,
    currency: String,
    currencies: String,
    payment_provider: String,
    stripe_secret_key: Option<String>,
    stripe_webhook_secret: Option<String>,
    stripe_api_base: Option<String>,
    web_dir: PathBuf,
    sdk_js_dir: PathBuf,
    recording_store: String,
    recording_url_secret: Option<String>,
    recording_url_ttl_secs: u64,
    recording_retention_days: u32,
    recorder: RecorderMode,
    late_cancel_fee_percent: u32,
    escrow_auto_release_days: u32,
    escrow_cancel_fee_percent: u32,
    seeker_no_show: SeekerNoShow,
    dispute_window_days: u32,
    chargeback_recovery: parley_billing::ChargebackRecovery,
    webhook_url: Option<String>,
    webhook_secret: Option<String>,
    redis_url: Option<String>,
    node_id: Option<String>,
    lease_ttl_ms: u64,
    redis_prefix: String,
    media: String,
    livekit_url: Option<String>,
    livekit_api_key: Option<String>,
    livekit_api_secret: Option<String>,
    livekit_poll_secs: u64,
}

impl Default for Raw {
    fn default() -> Self {
        let sig = SignalingConfig::default();
        Raw {
            env: Mode::Dev,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            jwt_secret: None,
            ring_timeout_secs: sig.ring_timeout.as_secs(),
            grace_secs: sig.grace.as_secs(),
            ping_interval_secs: sig.ping_interval.as_secs(),
            rate_limit_per_sec: sig.rate_limit_per_sec,
            rate_limit_burst: sig.rate_limit_burst,
            stun_urls: String::new(),
            turn_urls: String::new(),
            turn_secret: None,
            turn_ttl_secs: 3600,
            log: "info".into(),
            free_window_secs: MeterSettings::default().free_window.as_secs(),
            commission_bps: BillingConfig::default().commission_bps,
            instant_max_minutes: BillingConfig::default().instant_max_minutes,
            currency: "EUR".into(),
            currencies: "EUR,USD,GBP".into(),
            payment_provider: "sandbox".into(),
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: None,
            web_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web-demo")),
            sdk_js_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk/js")),
            recording_store: String::new(),
            recording_url_secret: None,
            recording_url_ttl_secs: 900,
            recording_retention_days: 30,
            recorder: RecorderMode::Embedded,
            late_cancel_fee_percent: 50,
            escrow_auto_release_days: 7,
            escrow_cancel_fee_percent: BillingConfig::default().escrow_cancel_fee_percent,
            seeker_no_show: SeekerNoShow::Release,
            dispute_window_days: 14,
            chargeback_recovery: parley_billing::ChargebackRecovery::Consultant,
            webhook_url: None,
            webhook_secret: None,
            redis_url: None,
            node_id: None,
            lease_ttl_ms: 3000,
            redis_prefix: "parley".into(),
            media: "p2p".into(),
            livekit_url: None,
            livekit_api_key: None,
            livekit_api_secret: None,
            livekit_poll_secs: 30,
        }
    }
}

/// The validated configuration of one `parley` process.
#[derive(Debug, Clone)]
pub struct Config {
    /// `dev` or `prod` (`PARLEY_ENV`).
    pub mode: Mode,
    /// Address to listen on (`PARLEY_LISTEN`, default 127.0.0.1:8080; port 0 picks one).
    pub listen: SocketAddr,
    /// Where SQLite, the dev JWT secret and recordings live (`PARLEY_DATA_DIR`, default ./data).
    pub data_dir: PathBuf,
    /// `sqlite:` or `postgres://` URL (`DATABASE_URL`, default SQLite in the data dir).
    pub database_url: String,
    /// HS256 secret for client tokens (`PARLEY_JWT_SECRET`); `None` in dev
    /// means: generate one and keep it in the data dir.
    pub jwt_secret: Option<String>,
    /// Signaling tunables.
    pub signaling: SignalingConfig,
    /// `tracing` filter (`PARLEY_LOG`, default `info`).
    pub log: String,
    /// Meter settings: free window (`PARLEY_FREE_WINDOW_SECS`, default
    /// 600) and grace (`PARLEY_GRACE_SECS`, default 30), DESIGN.md §4.
    pub meter: MeterSettings,
    /// Commission (`PARLEY_COMMISSION_BPS`, default 2000) and instant-call
    /// maximum (`PARLEY_INSTANT_MAX_MINUTES`, default 60), DESIGN.md §5;
    /// escrow auto-release (`PARLEY_ESCROW_AUTO_RELEASE_DAYS`, default 7)
    /// and cancellation fee (`PARLEY_ESCROW_CANCEL_FEE_PERCENT`, default 5),
    /// E4, E6.
    pub billing: BillingConfig,
    /// Currency of unpriced (free) sessions (`PARLEY_CURRENCY`, default EUR).
    pub currency: Currency,
    /// The currencies consultants may price in (`PARLEY_CURRENCIES`,
    /// comma-separated ISO 4217 codes, default `EUR,USD,GBP`); another is
    /// 400 `unsupported_currency`.
    pub currencies: Vec<Currency>,
    /// The payment provider (`PARLEY_PAYMENT_PROVIDER`).
    pub payments: Payments,
    /// The web demo served at `/` in dev mode (`PARLEY_WEB_DIR`, default
    /// the repository's `web-demo/`). Without an `index.html` there, `/`
    /// is a small landing page.
    pub web_dir: PathBuf,
    /// The JavaScript SDK served at `/sdk/js/` in dev mode
    /// (`PARLEY_SDK_JS_DIR`, default the repository's `sdk/js/`).
    pub sdk_js_dir: PathBuf,
    /// Recording storage, download links and retention (DESIGN.md §6).
    pub recordings: RecordingConfig,
    /// Whether this process runs the recorder (`PARLEY_RECORDER`:
    /// `embedded`, the default, or `off` when `parley recorder` runs
    /// elsewhere).
    pub recorder: RecorderMode,
    /// The share of the hold a seeker pays for cancelling a booking 24 h
    /// or less before its start (`PARLEY_LATE_CANCEL_FEE_PERCENT`, 0–100,
    /// default 50); earlier cancellations are free (issue 4 policy).
    pub late_cancel_fee_percent: u32,
    /// What a booked seeker who does not come costs them
    /// (`PARLEY_SEEKER_NO_SHOW`, default `release`; issue 4 policy).
    pub seeker_no_show: SeekerNoShow,
    /// How many days after a session's end a participant may dispute it
    /// (`PARLEY_DISPUTE_WINDOW_DAYS`, default 14, at least 1; D1).
    pub dispute_window_days: u32,
    /// Outgoing webhooks to the operator's platform (docs/protocol.md §14).
    pub webhooks: WebhookConfig,
    /// Where sessions' media runs: peer to peer or LiveKit (`PARLEY_MEDIA`,
    /// `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`).
    pub media: Media,
    /// Several nodes as one service (issue 16).
    pub cluster: ClusterConfig,
}

/// How this node works with the others of its cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` URL of the cluster's Redis (`REDIS_URL`);
    /// `None`: the node is alone (in-process leases). Requires a PostgreSQL
    /// `DATABASE_URL`: the nodes share the database.
    pub redis_url: Option<String>,
    /// This node's id in the cluster (`PARLEY_NODE_ID`; default a random
    /// `node-<hex>` per process). Two live nodes must not share one.
    pub node_id: String,
    /// How long a session's lease outlives its node's last renewal
    /// (`PARLEY_LEASE_TTL_MS`, 300–60,000, default 3,000): the longest a
    /// lost node's sessions wait for another node. Renewed every third of it.
    pub lease_ttl: Duration,
    /// Prefix of this cluster's Redis keys (`PARLEY_REDIS_PREFIX`, default
    /// `parley`; 1–64 of `A-Z a-z 0-9 - _ . :`): clusters sharing one Redis
    /// need different ones, or they would share one hub lease and one bus.
    pub redis_prefix: String,
}

/// Where outgoing webhooks go (`PARLEY_WEBHOOK_URL`) and their signing
/// key (`PARLEY_WEBHOOK_SECRET`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookConfig {
    /// An `http(s)://` URL events are POSTed to; `None`: events are stored
    /// but not delivered (they are delivered once a URL is configured).
    pub url: Option<String>,
    /// HMAC-SHA256 key of `Parley-Signature`, ≥ 32 bytes; required with a URL.
    pub secret: Option<String>,
}

/// Where the recorder runs (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecorderMode {
    /// Inside the server process, connected to its own signaling endpoint.
    Embedded,
    /// Not here: `parley recorder` runs as its own process.
    Off,
}

/// The policy for a seeker who does not come to a booked session whose
/// consultant did (no-show at start + 15 min, DESIGN.md §3). A consultant
/// who does not come never costs the seeker: their hold is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeekerNoShow {
    /// The hold is released in full: the no-show costs nothing.
    Release,
    /// The seeker pays the late-cancellation fee
    /// (`PARLEY_LATE_CANCEL_FEE_PERCENT` of the hold), captured like any
    /// charge: not coming costs what cancelling at the last minute costs.
    Charge,
}

/// Recording storage, signed download links and retention (DESIGN.md §6).
#[derive(Debug, Clone)]
pub struct RecordingConfig {
    /// Where the files live (`PARLEY_RECORDING_STORE`).
    pub store: RecordingStore,
    /// HMAC-SHA256 key of download links (`PARLEY_RECORDING_URL_SECRET`,
    /// ≥ 32 bytes); `None` in dev means: generate one and keep it in the
    /// data dir. Required in prod.
    pub url_secret: Option<String>,
    /// How long a signed download link works (`PARLEY_RECORDING_URL_TTL_SECS`,
    /// default 900 s).
    pub url_ttl: Duration,
    /// Files older than this many days are deleted
    /// (`PARLEY_RECORDING_RETENTION_DAYS`, default 30, at least 1).
    pub retention_days: u32,
}

/// Where recordings are stored (`PARLEY_RECORDING_STORE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingStore {
    /// A directory on this machine, created if missing: empty (the default,
    /// `<data_dir>/recordings`) or `file:///abs/path`.
    Local(PathBuf),
    /// `s3://bucket/prefix`, only in a server built with the `s3` feature;
    /// region and credentials come from the usual `AWS_*` variables.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix inside the bucket, without slashes at either end; may be empty.
        prefix: String,
    },
}

/// Which payment provider the server uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payments {
    /// `sandbox`, the default: Stripe test-mode behaviour kept in the
    /// database, no network (DESIGN.md B8).
    Sandbox,
    /// `stripe`: the Stripe API.
    Stripe {
        /// `STRIPE_SECRET_KEY` (`sk_…`).
        secret_key: String,
        /// `STRIPE_WEBHOOK_SECRET` (`whsec_…`), to verify webhooks.
        webhook_secret: String,
        /// `STRIPE_API_BASE`: another API base URL (tests point it at a
        /// local fake); default Stripe's.
        api_base: Option<String>,
    },
}

/// A configuration problem, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// A development secret (none configured) that could not be kept in the
/// data directory: neither read from its file nor generated into it.
#[derive(Debug, thiserror::Error)]
#[error("cannot keep the development {what} secret in {}", path.display())]
pub struct SecretError {
    /// Which secret (`JWT`, `recording URL`).
    pub what: &'static str,
    /// The file (or the data directory) that could not be written.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

fn list(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Config {
    /// Reads `parley.toml` (or `$PARLEY_CONFIG`) if present, then the
    /// environment, and validates.
    pub fn load() -> Result<Config, ConfigError> {
        let file = std::env::var("PARLEY_CONFIG").unwrap_or_else(|_| "parley.toml".into());
        if std::env::var_os("PARLEY_CONFIG").is_some() && !Path::new(&file).exists() {
            return Err(ConfigError(format!("PARLEY_CONFIG: no file at {file}")));
        }
        let figment = Figment::from(Serialized::defaults(Raw::default()))
            .merge(Toml::file(&file))
            .merge(Env::prefixed("PARLEY_").ignore(&["CONFIG"]))
            .merge(Env::raw().only(&[
                "DATABASE_URL",
                "REDIS_URL",
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRET",
                "STRIPE_API_BASE",
                "LIVEKIT_URL",
                "LIVEKIT_API_KEY",
                "LIVEKIT_API_SECRET",
            ]));
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: Raw = figment.extract().map_err(|e| {
            let key = e.path.join(".");
            let env_name = if key == "database_url"
                || key == "redis_url"
                || key.starts_with("stripe_")
                || RAW_LIVEKIT_KEYS.contains(&key.as_str())
            {
                key.to_uppercase()
            } else {
                format!("PARLEY_{}", key.to_uppercase())
            };
            ConfigError(format!("{env_name} (`{key}` in parley.toml): {}", e.kind))
        })?;
        Self::validate(raw)
    }

    fn validate(raw: Raw) -> Result<Config, ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
        if raw.ring_timeout_secs == 0 {
            return bad("PARLEY_RING_TIMEOUT_SECS", "must be at least 1");
        }
        if raw.grace_secs == 0 {
            return bad("PARLEY_GRACE_SECS", "must be at least 1");
        }
        if raw.ping_interval_secs == 0 {
            return bad("PARLEY_PING_INTERVAL_SECS", "must be at least 1");
        }
        if raw.rate_limit_per_sec == 0 || raw.rate_limit_burst == 0 {
            return bad("PARLEY_RATE_LIMIT_PER_SEC / PARLEY_RATE_LIMIT_BURST", "must be at least 1");
        }
        if raw.free_window_secs == 0 {
            return bad("PARLEY_FREE_WINDOW_SECS", "must be at least 1");
        }
        if raw.commission_bps > 10_000 {
            return bad("PARLEY_COMMISSION_BPS", "must be at most 10000 (100 %)");
        }
        if raw.instant_max_minutes == 0 {
            return bad("PARLEY_INSTANT_MAX_MINUTES", "must be at least 1");
        }
        if raw.dispute_window_days == 0 {
            return bad("PARLEY_DISPUTE_WINDOW_DAYS", "must be at least 1");
        }
        if raw.late_cancel_fee_percent > 100 {
            return bad("PARLEY_LATE_CANCEL_FEE_PERCENT", "must be 0 to 100");
        }
        if raw.escrow_cancel_fee_percent > 100 {
            return bad("PARLEY_ESCROW_CANCEL_FEE_PERCENT", "must be 0 to 100");
        }
        if raw.escrow_auto_release_days == 0 {
            return bad("PARLEY_ESCROW_AUTO_RELEASE_DAYS", "must be at least 1");
        }
        let Ok(currency) = Currency::parse(&raw.currency) else {
            return bad("PARLEY_CURRENCY", "expected an ISO 4217 code such as EUR");
        };
        let mut currencies = Vec::new();
        for c in list(&raw.currencies) {
            match Currency::parse(&c) {
                Ok(c) if !currencies.contains(&c) => currencies.push(c),
                Ok(_) => {}
                Err(_) => return bad("PARLEY_CURRENCIES", &format!("{c:?} is not an ISO 4217 code such as EUR")),
            }
        }
        if currencies.is_empty() {
            return bad("PARLEY_CURRENCIES", "name at least one currency, e.g. EUR,USD,GBP");
        }
        // Checked here (before `raw` is taken apart), reported after the JWT secret.
        let recordings = recording_config(&raw);
        let webhooks = webhook_config(&raw);
        let media = media_config(&raw)?;
        let payments = match raw.payment_provider.as_str() {
            "sandbox" => Payments::Sandbox,
            "stripe" => {
                let Some(secret_key) = raw.stripe_secret_key.filter(|k| k.starts_with("sk_")) else {
                    return bad("STRIPE_SECRET_KEY", "an sk_… key is required when PARLEY_PAYMENT_PROVIDER=stripe");
                };
                let Some(webhook_secret) = raw.stripe_webhook_secret.filter(|k| !k.is_empty()) else {
                    return bad("STRIPE_WEBHOOK_SECRET", "is required when PARLEY_PAYMENT_PROVIDER=stripe");
                };
                Payments::Stripe { secret_key, webhook_secret, api_base: raw.stripe_api_base }
            }
            _ => return bad("PARLEY_PAYMENT_PROVIDER", "expected `sandbox` or `stripe`"),
        };
        let meter = MeterSettings {
            free_window: Duration::from_secs(raw.free_window_secs),
            grace: Duration::from_secs(raw.grace_secs),
            // The warning comes 60 s before F, or halfway for a shorter F.
            warn_before: Duration::from_secs(60.min(raw.free_window_secs / 2)),
            ..MeterSettings::default()
        };
        let billing = BillingConfig {
            commission_bps: raw.commission_bps,
            instant_max_minutes: raw.instant_max_minutes,
            chargeback_recovery: raw.chargeback_recovery,
            escrow_auto_release: Duration::from_secs(u64::from(raw.escrow_auto_release_days) * 24 * 3600),
            escrow_cancel_fee_percent: raw.escrow_cancel_fee_percent,
            ..BillingConfig::default()
        };
        let database_url = match raw.database_url {
            Some(url) if crate::store::Backend::of(&url).is_none() => {
                return bad("DATABASE_URL", "expected a sqlite: or postgres:// URL");
            }
            Some(url) => url,
            None => format!("sqlite://{}?mode=rwc", raw.data_dir.join("parley.db").display()),
        };
        match (&raw.jwt_secret, raw.env) {
            (Some(s), _) if s.len() < 32 => return bad("PARLEY_JWT_SECRET", "must be at least 32 bytes"),
            (None, Mode::Prod) => return bad("PARLEY_JWT_SECRET", "is required when PARLEY_ENV=prod"),
            _ => {}
        }
        let recordings = recordings?;
        let webhooks = webhooks?;
        if let Some(url) = &raw.redis_url {
            if !url.starts_with("redis://") && !url.starts_with("rediss://") {
                return bad("REDIS_URL", "expected a redis:// or rediss:// URL");
            }
            if !database_url.starts_with("postgres") {
                return bad("REDIS_URL", "needs a PostgreSQL DATABASE_URL: the nodes of a cluster share the database");
            }
        }
        if !(300..=60_000).contains(&raw.lease_ttl_ms) {
            return bad("PARLEY_LEASE_TTL_MS", "must be between 300 and 60000");
        }
        let prefix_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':');
        if raw.redis_prefix.is_empty() || raw.redis_prefix.len() > 64 || !raw.redis_prefix.chars().all(prefix_ok) {
            return bad("PARLEY_REDIS_PREFIX", "1 to 64 of A-Z a-z 0-9 - _ . :");
        }
        let cluster = ClusterConfig {
            redis_url: raw.redis_url,
            node_id: match raw.node_id {
                Some(id) if id.trim().is_empty() => return bad("PARLEY_NODE_ID", "must not be empty"),
                Some(id) => id,
                None => format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
            },
            lease_ttl: Duration::from_millis(raw.lease_ttl_ms),
            redis_prefix: raw.redis_prefix,
        };
        let turn_urls = list(&raw.turn_urls);
        if !turn_urls.is_empty() && raw.turn_secret.is_none() {
            return bad("PARLEY_TURN_SECRET", "is required when PARLEY_TURN_URLS is set");
        }
        for url in list(&raw.stun_urls) {
            if !url.starts_with("stun:") && !url.starts_with("stuns:") {
                return bad("PARLEY_STUN_URLS", &format!("{url:?} is not a stun: URL"));
            }
        }
        for url in &turn_urls {
            if !url.starts_with("turn:") && !url.starts_with("turns:") {
                return bad("PARLEY_TURN_URLS", &format!("{url:?} is not a turn: URL"));
            }
        }
        let signaling = SignalingConfig {
            ring_timeout: Duration::from_secs(raw.ring_timeout_secs),
            grace: Duration::from_secs(raw.grace_secs),
            ping_interval: Duration::from_secs(raw.ping_interval_secs),
            rate_limit_per_sec: raw.rate_limit_per_sec,
            rate_limit_burst: raw.rate_limit_burst,
            ice: IceConfig {
                stun_urls: list(&raw.stun_urls),
                turn_urls,
                turn_secret: raw.turn_secret,
                turn_ttl: Duration::from_secs(raw.turn_ttl_secs),
            },
            ..SignalingConfig::default()
        };
        Ok(Config {
            mode: raw.env,
            listen: raw.listen,
            data_dir: raw.data_dir,
            database_url,
            jwt_secret: raw.jwt_secret,
            signaling,
            log: raw.log,
            meter,
            billing,
            currency,
            currencies,
            payments,
            web_dir: raw.web_dir,
            sdk_js_dir: raw.sdk_js_dir,
            recorder: raw.recorder,
            recordings,
            late_cancel_fee_percent: raw.late_cancel_fee_percent,
            seeker_no_show: raw.seeker_no_show,
            dispute_window_days: raw.dispute_window_days,
            webhooks,
            cluster,
            media,
        })
    }

    /// A dev configuration for tests: port 0 on loopback, everything under
    /// `data_dir`, a fixed JWT secret.
    pub fn for_tests(data_dir: &Path) -> Config {
        let mut config = Self::validate(Raw {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: data_dir.to_owned(),
            jwt_secret: Some("test-secret-test-secret-test-secret".into()),
            ..Raw::default()
        })
        .expect("defaults are valid");
        config.log = "warn,rtc_dtls=error,rtc_ice=error".into();
        // Tests that record turn it on.
        config.recorder = RecorderMode::Off;
        config
    }

    /// The JWT secret: the configured one, or (dev) the one kept in
    /// `<data_dir>/jwt-secret`, generated on first use.
    ///
    /// # Errors
    ///
    /// [`SecretError`] if the dev secret file can be neither read nor written.
    pub fn resolve_jwt_secret(&self) -> Result<Vec<u8>, SecretError> {
        match &self.jwt_secret {
            Some(s) => Ok(s.as_bytes().to_vec()),
            None => self.dev_secret("jwt-secret", "JWT"),
        }
    }

    /// The key of recording download links: the configured one, or (dev)
    /// the one kept in `<data_dir>/recording-url-secret`, generated on
    /// first use.
    ///
    /// # Errors
    ///
    /// [`SecretError`] if the dev secret file can be neither read nor written.
    pub fn resolve_recording_url_secret(&self) -> Result<Vec<u8>, SecretError> {
        match &self.recordings.url_secret {
            Some(s) => Ok(s.as_bytes().to_vec()),
            None => self.dev_secret("recording-url-secret", "recording URL"),
        }
    }

    /// The secret kept in `<data_dir>/<file>`, generated (32 random bytes,
    /// hex) on first use.
    fn dev_secret(&self, file: &str, what: &'static str) -> Result<Vec<u8>, SecretError> {
        let path = self.data_dir.join(file);
        if let Ok(s) = std::fs::read_to_string(&path) {
            return Ok(s.trim().as_bytes().to_vec());
        }
        std::fs::create_dir_all(&self.data_dir).map_err(|source| SecretError {
            what,
            path: self.data_dir.clone(),
            source,
        })?;
        let secret = hex::encode(rand::random::<[u8; 32]>());
        std::fs::write(&path, &secret).map_err(|source| SecretError { what, path: path.clone(), source })?;
        tracing::info!(path = %path.display(), "generated a development {what} secret");
        Ok(secret.into_bytes())
    }
}

/// The webhook settings of `raw`, validated: a URL needs a secret of at
/// least 32 bytes.
fn webhook_config(raw: &Raw) -> Result<WebhookConfig, ConfigError> {
    let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
    let url = raw.webhook_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
    if let Some(url) = url {
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !scheme_ok || url.parse::<axum::http::Uri>().map_or(true, |u| u.host().is_none()) {
            return bad(
                "PARLEY_WEBHOOK_URL",
                "expected an http:// or https:// URL, e.g. https://platform.example/parley",
            );
        }
    }
    match (&raw.webhook_secret, url) {
        (Some(s), _) if s.len() < 32 => return bad("PARLEY_WEBHOOK_SECRET", "must be at least 32 bytes"),
        (None, Some(_)) => return bad("PARLEY_WEBHOOK_SECRET", "is required when PARLEY_WEBHOOK_URL is set"),
        _ => {}
    }
    Ok(WebhookConfig { url: url.map(str::to_owned), secret: raw.webhook_secret.clone() })
}

/// The recording settings of `raw`, validated.
fn recording_config(raw: &Raw) -> Result<RecordingConfig, ConfigError> {
    let bad = |key: &str, why: &str| Err(ConfigError(format!("{key}: {why}")));
    if raw.recording_retention_days == 0 {
        return bad("PARLEY_RECORDING_RETENTION_DAYS", "must be at least 1");
    }
    if raw.recording_url_ttl_secs == 0 {
        return bad("PARLEY_RECORDING_URL_TTL_SECS", "must be at least 1");
    }
    match (&raw.recording_url_secret, raw.env) {
        (Some(s), _) if s.len() < 32 => return bad("PARLEY_RECORDING_URL_SECRET", "must be at least 32 bytes"),
        (None, Mode::Prod) => return bad("PARLEY_RECORDING_URL_SECRET", "is required when PARLEY_ENV=prod"),
        _ => {}
    }
    let url = raw.recording_store.trim();
    let store = if url.is_empty() {
        RecordingStore::Local(raw.data_dir.join("recordings"))
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return bad("PARLEY_RECORDING_STORE", "a file:// URL needs an absolute path, e.g. file:///var/lib/parley");
        }
        RecordingStore::Local(PathBuf::from(path))
    } else if let Some(rest) = url.strip_prefix("s3://") {
        if !cfg!(feature = "s3") {
            return bad("PARLEY_RECORDING_STORE", "s3:// needs a server built with the `s3` cargo feature");
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return bad("PARLEY_RECORDING_STORE", "an s3:// URL needs a bucket: s3://bucket/prefix");
        }
        RecordingStore::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() }
    } else {
        return bad("PARLEY_RECORDING_STORE", "expected empty (the data dir), file:///abs/path or s3://bucket/prefix");
    };
    Ok(RecordingConfig {
        store,
        url_secret: raw.recording_url_secret.clone(),
        url_ttl: Duration::from_secs(raw.recording_url_ttl_secs),
        retention_days: raw.recording_retention_days,
    })
}

#[cfg(test)]
mod tests;
