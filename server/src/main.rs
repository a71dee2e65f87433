//! `parley`: runs the server (default), the recorder on its own, or mints
//! a token.

use std::time::Duration;

use clap::{Parser, Subcommand};
use parley_domain::clock::SystemClock;
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{Clock, Timestamp, UserId};
use parley_server::{Application, Config, app, telemetry};
use parley_signaling::Authenticator;

/// Parley: the realtime server for paid expert calls.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Run the recorder as its own process (DESIGN.md §6): it connects to
    /// the server's signaling endpoint with the `recorder` role and stores
    /// recordings with the same configuration (database, recording store)
    /// as the server. Run the server with `PARLEY_RECORDER=off` then.
    Recorder {
        /// The server's signaling endpoint.
        #[arg(long, default_value = "ws://127.0.0.1:8080/v1/signal")]
        server: String,
        /// This recorder's user id (one per recorder process).
        #[arg(long, default_value = "parley-recorder-1")]
        id: String,
        /// Local UDP address for the peer connections.
        #[arg(long, default_value = "0.0.0.0:0")]
        udp: String,
    },
    /// Compare the ledger with the payment provider (the database and
    /// provider of the server's configuration) and list what disagrees:
    /// orphaned holds, ledger rows without a provider object and the
    /// reverse, state mismatches, bad fee/earnings and refund splits.
    /// Exit status: 0 nothing found, 1 findings, 2 the check could not run.
    Reconcile {
        /// Print the report as JSON (the `reconcile.findings` webhook data).
        #[arg(long)]
        json: bool,
        /// Judge ages as of this RFC 3339 instant (default: now).
        #[arg(long, value_parser = parse_instant)]
        as_of: Option<Timestamp>,
    },
    /// Print a client token signed with the configured JWT secret.
    Token {
        /// User id (the `sub` claim).
        #[arg(long)]
        sub: String,
        /// `seeker`, `consultant`, `moderator` or `recorder`.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Display name (default: the user id).
        #[arg(long)]
        name: Option<String>,
        /// Lifetime, e.g. `1h`, `30m`, `7d`.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
}

fn parse_instant(s: &str) -> Result<Timestamp, String> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("{s:?}: {e} (expected e.g. 2026-12-02T07:00:00Z)"))?;
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_err(|e| e.to_string())?.as_millis();
    Ok(Timestamp::from_unix_millis(i64::try_from(ms).map_err(|e| e.to_string())?))
}

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "seeker" => Ok(Role::Seeker),
        "consultant" => Ok(Role::Consultant),
        "moderator" => Ok(Role::Moderator),
        "recorder" => Ok(Role::Recorder),
        other => Err(format!("{other:?}: expected `seeker`, `consultant`, `moderator` or `recorder`")),
    }
}

/// How often, in scheduler ticks, a runtime worker takes its next task
/// from the global queue instead of its own: every other tick. A worker
/// saturated by sockets spills the tasks its readiness events wake beyond
/// its 256-slot local queue into the global queue, which tokio's default
/// (tuned to about 200 µs of work) then serves one task at a time while
/// local work lasts: the connections that woke first waited longest.
/// Relay at saturation, one core, 1,000 pairs: p99 117 to 145 ms by
/// default, 27 to 32 ms with 2 (the bare relay, unsaturated, 20);
/// 1 starves the local queue instead (relayed messages lost). Issue 17's
/// "fair scheduling across connections"; `load-tests/README.md`, fifteenth
/// run.
const GLOBAL_QUEUE_INTERVAL: u32 = 2;

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .global_queue_interval(GLOBAL_QUEUE_INTERVAL)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("parley: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    runtime.block_on(start());
}

/// What `main` runs on the runtime: the configuration, then the command.
async fn start() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            std::process::exit(2);
        }
    };
    if let Some(Command::Reconcile { json, as_of }) = cli.command {
        std::process::exit(reconcile(config, json, as_of).await);
    }
    if let Err(e) = run(cli, config).await {
        eprintln!("parley: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli, config: Config) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            telemetry::init_tracing(&config.log);
            // One socket per client: raise the soft open-file limit to the hard one.
            match rlimit::increase_nofile_limit(u64::MAX) {
                Ok(n) => tracing::info!(open_files = n, "open-file limit"),
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
            let app = Application::build(config).await?;
            tracing::info!(addr = %app.local_addr(), "parley listening; open http://{}/", app.local_addr());
            Ok(app.run_until(app::shutdown_signal()).await?)
        }
        Command::Recorder { server, id, udp } => {
            telemetry::init_tracing(&config.log);
            let id = UserId::parse(&id).map_err(|e| anyhow::anyhow!("--id: {e}"))?;
            let store = parley_server::store::SqlStore::connect(&config.database_url).await?;
            let files = std::sync::Arc::new(parley_server::files::RecordingFiles::from_config(&config)?);
            let auth = Authenticator::new(&config.resolve_jwt_secret()?);
            let user = UserInfo { name: format!("Parley recorder {id}"), id, role: Role::Recorder };
            let token: parley_recorder::service::TokenSource =
                std::sync::Arc::new(move || auth.issue(&user, Duration::from_secs(24 * 3600), SystemClock.now()));
            let recorder = parley_recorder::service::RecorderConfig {
                signal_url: server,
                token,
                work_dir: config.data_dir.join("recorder"),
                udp_addrs: vec![udp],
                reconnect_delay: Duration::from_secs(1),
            };
            let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SystemClock);
            let sink = std::sync::Arc::new(parley_server::recording::ServerSink { store, files, clock });
            let stop = tokio_util::sync::CancellationToken::new();
            let run = tokio::spawn(parley_recorder::service::run(recorder, sink, stop.clone()));
            app::shutdown_signal().await;
            stop.cancel();
            run.await?;
            Ok(())
        }
        Command::Reconcile { .. } => unreachable!("handled in main"),
        Command::Token { sub, role, name, ttl } => {
            let id = UserId::parse(&sub).map_err(|e| anyhow::anyhow!("--sub: {e}"))?;
            let auth = Authenticator::new(&config.resolve_jwt_secret()?);
            let user = UserInfo { name: name.unwrap_or_else(|| sub.clone()), id, role };
            println!("{}", auth.issue(&user, ttl, SystemClock.now()));
            Ok(())
        }
    }
}

/// `parley reconcile`: prints the report; the exit status says what it found.
async fn reconcile(config: Config, json: bool, as_of: Option<Timestamp>) -> i32 {
    let checked = async {
        let store = parley_server::store::SqlStore::connect(&config.database_url).await?;
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(SystemClock);
        let faults = parley_billing::Faults::default();
        let provider = app::payment_provider(&config, &store, clock.clone(), &faults)?;
        let now = as_of.unwrap_or_else(|| clock.now());
        anyhow::Ok(parley_server::reconcile::check(&store.pool(), provider.as_ref(), now).await?)
    };
    match checked.await {
        Ok(report) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                print!("{}", parley_server::reconcile::render(&report));
            }
            i32::from(!report.findings.is_empty())
        }
        Err(e) => {
            eprintln!("parley reconcile: {e:#}");
            2
        }
    }
}
