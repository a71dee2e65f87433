//! Tests of loading and validating the configuration.
use super::*;

/// Loads from TOML `key = value` lines over the defaults.
fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(Raw::default()));
    for (k, v) in pairs {
        figment = figment.merge(Toml::string(&format!("{k} = {v}")));
    }
    Config::from_figment(figment)
}

#[test]
fn defaults_are_the_embedded_setup() {
    let c = load(&[]).unwrap();
    assert_eq!(c.mode, Mode::Dev);
    assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
    assert!(c.database_url.starts_with("sqlite://./data/parley.db"), "{}", c.database_url);
    assert_eq!(c.signaling.ring_timeout, Duration::from_secs(30));
    assert_eq!(c.signaling.grace, Duration::from_secs(30));
    assert_eq!(c.meter.free_window, Duration::from_secs(600));
    assert_eq!(c.meter.grace, Duration::from_secs(30));
    assert_eq!(c.meter.warn_before, Duration::from_secs(60));
    assert_eq!(c.billing.commission_bps, 2000);
    assert_eq!(c.payments, Payments::Sandbox);
    assert_eq!(c.recordings.store, RecordingStore::Local(PathBuf::from("./data/recordings")));
    assert_eq!(c.recordings.url_ttl, Duration::from_secs(900));
    assert_eq!(c.recordings.retention_days, 30);
    assert_eq!(c.webhooks, WebhookConfig::default(), "no webhook URL: events are stored, not delivered");
}

#[test]
fn a_webhook_url_with_a_secret_is_accepted() {
    let secret = "s".repeat(32);
    let c =
        load(&[("webhook_url", "\" https://platform.example/hooks \""), ("webhook_secret", &format!("\"{secret}\""))])
            .unwrap();
    assert_eq!(c.webhooks.url.as_deref(), Some("https://platform.example/hooks"));
    assert_eq!(c.webhooks.secret.as_deref(), Some(secret.as_str()));
}

#[test]
fn currencies_are_a_validated_list() {
    let c = load(&[]).unwrap();
    let codes: Vec<&str> = c.currencies.iter().map(|c| c.as_str()).collect();
    assert_eq!(codes, ["EUR", "USD", "GBP"]);
    let c = load(&[("currencies", "\" chf , CHF,JPY\"")]);
    let e = c.unwrap_err().to_string();
    assert!(e.contains("PARLEY_CURRENCIES") && e.contains("chf"), "{e}");
    let c = load(&[("currencies", "\"CHF, JPY,CHF\"")]).unwrap();
    assert_eq!(c.currencies.iter().map(|c| c.as_str()).collect::<Vec<_>>(), ["CHF", "JPY"]);
    let e = load(&[("currencies", "\" , \"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_CURRENCIES"), "{e}");
}

#[test]
fn recording_stores_are_parsed() {
    let c = load(&[("recording_store", "\"file:///srv/rec\"")]).unwrap();
    assert_eq!(c.recordings.store, RecordingStore::Local(PathBuf::from("/srv/rec")));
    let s3 = load(&[("recording_store", "\"s3://bucket/some/prefix/\"")]);
    if cfg!(feature = "s3") {
        let want = RecordingStore::S3 { bucket: "bucket".into(), prefix: "some/prefix".into() };
        assert_eq!(s3.unwrap().recordings.store, want);
    } else {
        let e = s3.unwrap_err().to_string();
        assert!(e.contains("PARLEY_RECORDING_STORE") && e.contains("`s3`"), "{e}");
    }
    let e =
        load(&[("env", "\"prod\""), ("jwt_secret", "\"0123456789abcdef0123456789abcdef\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_URL_SECRET"), "{e}");
}

#[test]
fn the_seeker_no_show_policy_is_release_or_charge() {
    assert_eq!(load(&[]).unwrap().seeker_no_show, SeekerNoShow::Release);
    assert_eq!(load(&[("seeker_no_show", "\"charge\"")]).unwrap().seeker_no_show, SeekerNoShow::Charge);
    let e = load(&[("seeker_no_show", "\"fine\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_SEEKER_NO_SHOW"), "{e}");
}

#[test]
fn a_bad_value_names_its_key() {
    let e = load(&[("grace_secs", "\"soon\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_GRACE_SECS"), "{e}");
    let e = load(&[("listen", "\"nowhere\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_LISTEN"), "{e}");
    let e = load(&[("env", "\"staging\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_ENV"), "{e}");
    let e = load(&[("database_url", "\"mysql://x\"")]).unwrap_err().to_string();
    assert!(e.contains("DATABASE_URL"), "{e}");
    let e = load(&[("env", "\"prod\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_JWT_SECRET"), "{e}");
    let e = load(&[("jwt_secret", "\"short\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_JWT_SECRET"), "{e}");
    let e = load(&[("turn_urls", "\"turn:x\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_TURN_SECRET"), "{e}");
    let e = load(&[("stun_urls", "\"http://x\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_STUN_URLS"), "{e}");
    let e = load(&[("grace_secs", "0")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_GRACE_SECS"), "{e}");
    let e = load(&[("free_window_secs", "0")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_FREE_WINDOW_SECS"), "{e}");
    let e = load(&[("commission_bps", "10001")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_COMMISSION_BPS"), "{e}");
    let e = load(&[("payment_provider", "\"paypal\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_PAYMENT_PROVIDER"), "{e}");
    let e = load(&[("payment_provider", "\"stripe\"")]).unwrap_err().to_string();
    assert!(e.contains("STRIPE_SECRET_KEY"), "{e}");
    let e =
        load(&[("payment_provider", "\"stripe\""), ("stripe_secret_key", "\"sk_test_1\"")]).unwrap_err().to_string();
    assert!(e.contains("STRIPE_WEBHOOK_SECRET"), "{e}");
    let e = load(&[("currency", "\"euro\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_CURRENCY"), "{e}");
    for prefix in ["\"\"", "\"two words\"", &format!("\"{}\"", "p".repeat(65))] {
        let e = load(&[("redis_prefix", prefix)]).unwrap_err().to_string();
        assert!(e.contains("PARLEY_REDIS_PREFIX"), "{prefix}: {e}");
    }
    assert_eq!(load(&[("redis_prefix", "\"staging:eu-1\"")]).unwrap().cluster.redis_prefix, "staging:eu-1");
    assert_eq!(load(&[]).unwrap().cluster.redis_prefix, "parley");
    let e = load(&[("recording_retention_days", "0")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_RETENTION_DAYS"), "{e}");
    let e = load(&[("recording_url_ttl_secs", "0")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_URL_TTL_SECS"), "{e}");
    let e = load(&[("recording_url_secret", "\"short\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_URL_SECRET"), "{e}");
    let e = load(&[("recording_store", "\"ftp://x\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_STORE"), "{e}");
    let e = load(&[("recording_store", "\"file://relative/dir\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_RECORDING_STORE"), "{e}");
    let e = load(&[("webhook_url", "\"https://platform.example/hooks\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_WEBHOOK_SECRET") && e.contains("PARLEY_WEBHOOK_URL"), "{e}");
    let e = load(&[("webhook_url", "\"https://platform.example/hooks\""), ("webhook_secret", "\"short\"")])
        .unwrap_err()
        .to_string();
    assert!(e.contains("PARLEY_WEBHOOK_SECRET"), "{e}");
    let e = load(&[("webhook_url", "\"ftp://x\""), ("webhook_secret", &format!("\"{}\"", "k".repeat(32)))])
        .unwrap_err()
        .to_string();
    assert!(e.contains("PARLEY_WEBHOOK_URL"), "{e}");
    let e = load(&[("colour", "\"blue\"")]).unwrap_err().to_string();
    assert!(e.contains("colour"), "{e}");
}

#[test]
fn lists_and_prod_are_parsed() {
    let c = load(&[
        ("env", "\"prod\""),
        ("jwt_secret", "\"0123456789abcdef0123456789abcdef\""),
        ("recording_url_secret", "\"fedcba9876543210fedcba9876543210\""),
        ("stun_urls", "\"stun:a:3478, stun:b:3478\""),
        ("database_url", "\"postgres://localhost/parley\""),
    ])
    .unwrap();
    assert_eq!(c.mode, Mode::Prod);
    assert_eq!(c.signaling.ice.stun_urls, vec!["stun:a:3478", "stun:b:3478"]);
    assert_eq!(c.database_url, "postgres://localhost/parley");
}

#[test]
fn the_dispute_window_and_the_chargeback_policy_are_settings() {
    use parley_billing::ChargebackRecovery;
    let c = load(&[]).unwrap();
    assert_eq!((c.dispute_window_days, c.billing.chargeback_recovery), (14, ChargebackRecovery::Consultant));
    let c = load(&[("dispute_window_days", "30"), ("chargeback_recovery", "\"platform\"")]).unwrap();
    assert_eq!((c.dispute_window_days, c.billing.chargeback_recovery), (30, ChargebackRecovery::Platform));
    let e = load(&[("dispute_window_days", "0")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_DISPUTE_WINDOW_DAYS"), "{e}");
    let e = load(&[("chargeback_recovery", "\"seeker\"")]).unwrap_err().to_string();
    assert!(e.contains("PARLEY_CHARGEBACK_RECOVERY"), "{e}");
}

#[test]
fn the_media_backend_is_p2p_or_a_validated_livekit() {
    assert_eq!(load(&[]).unwrap().media, Media::P2p);
    let secret = format!("\"{}\"", "k".repeat(32));
    let lk = |extra: &[(&'static str, &str)]| {
        let mut pairs = vec![("media", "\"livekit\"")];
        pairs.extend_from_slice(extra);
        load(&pairs)
    };
    let c = lk(&[
        ("livekit_url", "\"wss://lk.example\""),
        ("livekit_api_key", "\"APIkey\""),
        ("livekit_api_secret", &secret),
    ])
    .unwrap();
    let Media::Livekit(cfg) = c.media else { panic!("livekit expected") };
    assert_eq!((cfg.url.as_str(), cfg.api_key.as_str()), ("wss://lk.example", "APIkey"));
    assert_eq!(cfg.poll_interval, Duration::from_secs(30));
    let named = |r: Result<Config, ConfigError>, key: &str| {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(key), "{key} not named in {e}");
    };
    named(load(&[("media", "\"sfu\"")]), "PARLEY_MEDIA");
    named(lk(&[]), "LIVEKIT_URL");
    named(lk(&[("livekit_url", "\"lk.example\"")]), "LIVEKIT_URL");
    named(lk(&[("livekit_url", "\"wss://lk.example\"")]), "LIVEKIT_API_KEY");
    named(lk(&[("livekit_url", "\"wss://lk.example\""), ("livekit_api_key", "\"k\"")]), "LIVEKIT_API_SECRET");
    named(
        lk(&[
            ("livekit_url", "\"wss://lk.example\""),
            ("livekit_api_key", "\"k\""),
            ("livekit_api_secret", "\"short\""),
        ]),
        "LIVEKIT_API_SECRET",
    );
    named(
        lk(&[
            ("livekit_url", "\"wss://lk.example\""),
            ("livekit_api_key", "\"k\""),
            ("livekit_api_secret", &secret),
            ("livekit_poll_secs", "0"),
        ]),
        "PARLEY_LIVEKIT_POLL_SECS",
    );
    named(load(&[("livekit_url", "3")]), "LIVEKIT_URL");
}
