//! `bare-relay`: a bare tokio-tungstenite signaling relay, the floor
//! Parley's relay is measured against (issue 17; see
//! [`parley_load::bare`] for what it does and leaves out).
//!
//! ```text
//! bare-relay --addr 127.0.0.1:18280 --jwt-secret-file PATH
//! ```
//!
//! `parley-load signal --url http://127.0.0.1:18280 --jwt-secret-file PATH`
//! then runs against it as against Parley. Loopback addresses only. Runs
//! until killed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use parley_load::bare::BareRelay;
use parley_load::tokens::read_secret;

/// A bare signaling relay for `parley-load signal` (loopback only).
#[derive(Debug, Parser)]
#[command(name = "bare-relay", version, about)]
struct Args {
    /// Where to listen (a loopback address; port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:18280")]
    addr: SocketAddr,
    /// The HS256 secret tokens are checked and minted with (as Parley's
    /// `<data dir>/jwt-secret`: surrounding whitespace is trimmed).
    #[arg(long)]
    jwt_secret_file: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bare-relay: error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let outcome = runtime.block_on(async {
        let secret = read_secret(&args.jwt_secret_file)?;
        let relay = BareRelay::bind(args.addr, &secret)?;
        eprintln!("bare-relay: listening on {}", relay.local_addr()?);
        relay.run().await;
        anyhow::Ok(())
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare-relay: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_is_well_formed() {
        Args::command().debug_assert();
        assert!(Args::try_parse_from(["bare-relay"]).is_err(), "the secret file is required");
        let args = Args::try_parse_from(["bare-relay", "--jwt-secret-file", "s"]).unwrap();
        assert_eq!(args.addr.to_string(), "127.0.0.1:18280");
    }
}
