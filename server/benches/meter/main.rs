//! The session meter's capacity on one node, without the network: N live
//! sessions on the server's own `Meters` driver with the system clock and
//! the real SQL store (the group-commit writer). Nothing else of the server
//! runs: no signaling, no hub, no HTTP. See [`scenario`] for the phases and
//! `load-tests/README.md` ("The meter's capacity") for what the figures mean.
//!
//! ```text
//! cargo bench -p parley-server --bench meter -- [--sessions 10000] [--secs 60]
//!     [--checkpoint-secs 10] [--tick-secs 30] [--ramp-secs S] [--database-url URL]
//! ```
//!
//! `cargo bench` passes `--bench`: the run is the one asked for, its figures
//! printed and, as the last line of stdout, one JSON object. Without
//! `--bench` (`cargo test --benches`, `--all-targets`) it is a check instead,
//! as criterion's benches are: 50 sessions for 2 s on a temp SQLite file,
//! asserting that checkpoints reach the database and every session settles
//! (figures are printed, never asserted), plus the pure parts (arguments,
//! ramp, database URL check, verdict, JSON shape).

mod checks;
mod report;
mod scenario;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use crate::scenario::MeterOptions;

/// The meter's capacity in-process (the real SQL store, no server).
#[derive(Debug, Parser)]
#[command(name = "meter")]
struct Cli {
    /// Concurrent live sessions.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    sessions: u32,
    /// Length of the run, seconds: sessions open over the ramp, stay live,
    /// then all hang up.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    secs: u64,
    /// Checkpoint interval, seconds (DESIGN.md M9; the server's is 10).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    checkpoint_secs: Option<u64>,
    /// `meter.tick` interval, seconds (DESIGN.md M8; the server's is 30).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
    tick_secs: Option<u64>,
    /// Over how many seconds the sessions open, evenly. Default: one
    /// checkpoint interval, at most half the run.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3600))]
    ramp_secs: Option<u64>,
    /// `sqlite:` or `postgres://` URL on this machine. Default: a fresh
    /// SQLite file in a temp dir, removed afterwards.
    #[arg(long)]
    database_url: Option<String>,
    /// Set by `cargo bench`: run the benchmark (otherwise: the quick check).
    #[arg(long, hide = true)]
    bench: bool,
}

impl Cli {
    fn options(&self) -> MeterOptions {
        let duration = Duration::from_secs(self.secs);
        let mut opts = MeterOptions::new(self.sessions as usize, duration);
        if let Some(secs) = self.checkpoint_secs {
            opts.settings.checkpoint_interval = Duration::from_secs(secs);
        }
        if let Some(secs) = self.tick_secs {
            opts.settings.tick_interval = Duration::from_secs(secs);
        }
        opts.ramp = match self.ramp_secs {
            Some(secs) => Duration::from_secs(secs),
            None => scenario::default_ramp(&opts.settings, duration),
        };
        opts.database_url.clone_from(&self.database_url);
        opts
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One runtime worker per core: pinned to one core (`taskset -c 0`),
    // `cpu_percent` is the share of that core the meter needs.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
    if !cli.bench {
        runtime.block_on(checks::run());
        return ExitCode::SUCCESS;
    }
    let outcome = runtime.block_on(scenario::run(cli.options()));
    runtime.shutdown_timeout(Duration::from_secs(2));
    match outcome {
        Ok(report) => {
            for line in report.summary_lines() {
                println!("{line}");
            }
            parley_load::report::print_json_line(&report);
            if report.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) }
        }
        Err(e) => {
            eprintln!("meter: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
