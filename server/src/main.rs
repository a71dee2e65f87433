//! `parley`: runs the server (default), or mints a token.

use std::time::Duration;

use clap::{Parser, Subcommand};
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{Clock, UserId};
use parley_server::{Application, Config, app, telemetry};
use parley_signaling::Authenticator;
use parley_signaling::clock::SystemClock;

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
    /// Print a client token signed with the configured JWT secret.
    Token {
        /// User id (the `sub` claim).
        #[arg(long)]
        sub: String,
        /// `seeker` or `consultant`.
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

fn parse_role(s: &str) -> Result<Role, String> {
    match s {
        "seeker" => Ok(Role::Seeker),
        "consultant" => Ok(Role::Consultant),
        "moderator" => Ok(Role::Moderator),
        other => Err(format!("{other:?}: expected `seeker`, `consultant` or `moderator`")),
    }
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("parley: {e}");
            std::process::exit(2);
        }
    };
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
            app.run_until(app::shutdown_signal()).await
        }
        Command::Token { sub, role, name, ttl } => {
            let id = UserId::parse(&sub).map_err(|e| anyhow::anyhow!("--sub: {e}"))?;
            let auth = Authenticator::new(&config.resolve_jwt_secret()?);
            let user = UserInfo { name: name.unwrap_or_else(|| sub.clone()), id, role };
            println!("{}", auth.issue(&user, ttl, SystemClock.now()));
            Ok(())
        }
    }
}
