//! What a `signal` run measured: [`SignalReport`] (readable lines and the
//! JSON line) and the distributions behind it ([`SignalStats`]).

use super::*;

/// The result of a `signal` run; serialised as the last line of stdout.
/// Latencies are in milliseconds (microsecond precision); `null` when there
/// were no samples.
#[derive(Debug, Clone, Serialize)]
pub struct SignalReport {
    /// Idle connections asked for.
    pub clients: usize,
    /// Pairs asked for.
    pub pairs: usize,
    /// Relay messages in flight per pair in the relay phase.
    pub relay_window: usize,
    /// Pair set-ups started per second (null: all at once).
    pub call_rate: Option<f64>,
    /// Whether the calls started together once every pair had its
    /// connections open (`--calls-at-once`).
    pub calls_at_once: bool,
    /// With `calls_at_once`, seconds from the set-up phase's start until
    /// every pair had its connections open (or had given up) and the calls
    /// started; null without it.
    pub connected_secs: Option<f64>,
    /// Whether each pair stopped once paired into a call (`--paired-only`):
    /// no offer, answer or candidates, so the set-up relay fields are
    /// 0 / null.
    pub paired_only: bool,
    /// How tokens were obtained.
    pub token_source: String,
    /// Idle connections that opened (hello received).
    pub idle_connected: u64,
    /// Idle connections that failed to open.
    pub idle_failed: u64,
    /// Idle connections the server closed before the end of the run.
    pub idle_dropped: u64,
    /// Wall time of the idle phase, seconds.
    pub accept_secs: f64,
    /// Idle connections opened per second of the idle phase.
    pub accept_rate_per_sec: f64,
    /// Server VmRSS before the idle phase, KiB.
    pub server_rss_kib_before: Option<u64>,
    /// Server VmRSS with every idle connection open, KiB.
    pub server_rss_kib_after: Option<u64>,
    /// (after − before) / idle connections opened, KiB.
    pub rss_kib_per_idle_connection: Option<f64>,
    /// The same for this process (the client side).
    pub client_rss_kib_per_idle_connection: Option<f64>,
    /// Pairs that completed set-up.
    pub pairs_set_up: u64,
    /// Pairs that failed set-up.
    pub pairs_failed: u64,
    /// Call set-up (`call.request` sent → answer received), median; with
    /// `paired_only`, `call.request` sent → the seeker's `room.join` ack
    /// received. Against matchbox: the seeker's connect start → answer
    /// received; against PeerJS: both connections open → answer received.
    /// With `calls_at_once` these sends come right after the common start.
    pub setup_ms_p50: Option<f64>,
    /// Call set-up, 99th percentile.
    pub setup_ms_p99: Option<f64>,
    /// Call set-up, slowest.
    pub setup_ms_max: Option<f64>,
    /// Wall time of the set-up phase (every pair set up, its offer,
    /// answer and candidates relayed — with `paired_only`, both sides
    /// joined — or given up), seconds.
    pub setup_secs: f64,
    /// Connections set up into calls per second: `2 × pairs_set_up /
    /// setup_secs` (each pair is two authenticated connections, a call,
    /// its hold and stored session on Parley, and 22 relayed messages, none
    /// with `paired_only`).
    pub setup_connections_per_sec: Option<f64>,
    /// Server CPU over the set-up phase per connection set up, µs (with
    /// `--server-pid`).
    pub server_cpu_us_per_setup_connection: Option<f64>,
    /// Server CPU over the set-up phase, percent of one core (with
    /// `--server-pid`). Near 100 with a one-core server: the server was the
    /// set-up's limit.
    pub server_cpu_percent_setup: Option<f64>,
    /// This process's CPU over the set-up phase, percent of one core. Near
    /// 100 × its cores: the load generator was the limit.
    pub client_cpu_percent_setup: Option<f64>,
    /// How busy the cores the server may run on were over the set-up
    /// phase, every process counted (the server, a database sharing them,
    /// the kernel's network work), percent of those cores (with
    /// `--server-pid`). Near 100 while `server_cpu_percent_setup` is well
    /// below: the server shared its core, and that core was the limit.
    pub server_cores_busy_percent_setup: Option<f64>,
    /// The database server's CPU over the set-up phase, its main process
    /// and every process it forked (PostgreSQL's backends), percent of one
    /// core (with `--db-pid`).
    pub db_cpu_percent_setup: Option<f64>,
    /// Server VmRSS when every pair is set up, before the relay phase, KiB
    /// (with `--server-pid`).
    pub server_rss_kib_calls: Option<u64>,
    /// (RSS with the calls set up − RSS with the idle connections open) /
    /// (2 × pairs set up), KiB: the memory of one connection in an open
    /// call, with its hold, meter and stored session (issue 17 measures it
    /// with 10,000 connections in 5,000 calls).
    pub rss_kib_per_call_connection: Option<f64>,
    /// Relayed messages measured during set-up (SDP and candidates).
    pub setup_relay_messages: u64,
    /// Relay latency during set-up, median.
    pub setup_relay_ms_p50: Option<f64>,
    /// Relay latency during set-up, 99th percentile.
    pub setup_relay_ms_p99: Option<f64>,
    /// Relay latency of the offers and answers, median.
    pub sdp_relay_ms_p50: Option<f64>,
    /// Relay latency of the offers and answers, 99th percentile.
    pub sdp_relay_ms_p99: Option<f64>,
    /// Relay latency of the paced candidates (one per 10 ms), median.
    pub candidate_paced_relay_ms_p50: Option<f64>,
    /// Relay latency of the paced candidates, 99th percentile.
    pub candidate_paced_relay_ms_p99: Option<f64>,
    /// Relay latency of the candidates sent all at once, median.
    pub candidate_burst_relay_ms_p50: Option<f64>,
    /// Relay latency of the candidates sent all at once, 99th percentile.
    pub candidate_burst_relay_ms_p99: Option<f64>,
    /// Wall time of the relay phase, seconds.
    pub relay_secs: f64,
    /// Relay hops completed in the relay phase.
    pub relay_hops: u64,
    /// Relay hops not answered within 2 s (dropped, e.g. rate-limited).
    pub relay_lost: u64,
    /// `relay_hops / relay_secs`.
    pub relay_throughput_msgs_per_sec: f64,
    /// Server CPU during the relay phase, percent of one core (with
    /// `--server-pid`). Near 100 with a one-core server: the server is the
    /// bottleneck.
    pub server_cpu_percent_relay: Option<f64>,
    /// Server CPU while the idle connections were opened, percent of one
    /// core (near 100: the accept rate is the server's limit).
    pub server_cpu_percent_accept: Option<f64>,
    /// This process's CPU while opening the idle connections, percent of one core.
    pub client_cpu_percent_accept: Option<f64>,
    /// This process's CPU during the relay phase, percent of one core. Near
    /// 100 × its cores: the load generator is the bottleneck.
    pub client_cpu_percent_relay: Option<f64>,
    /// Relay latency in the relay phase, median.
    pub relay_ms_p50: Option<f64>,
    /// Relay latency, 90th percentile.
    pub relay_ms_p90: Option<f64>,
    /// Relay latency, 99th percentile.
    pub relay_ms_p99: Option<f64>,
    /// Relay latency, slowest.
    pub relay_ms_max: Option<f64>,
    /// `error` messages received from the server, by code.
    pub errors: Counts,
    /// Client-side failures by kind (connect, set-up stage, teardown …).
    pub client_errors: Counts,
    /// The first few failure messages.
    pub failures: Vec<String>,
}

impl SignalReport {
    /// Whether every idle connection opened and every pair was set up.
    pub fn ok(&self) -> bool {
        self.pairs_failed == 0 && self.idle_failed == 0
    }

    /// The readable summary lines.
    pub fn summary_lines(&self, stats: &SignalStats) -> Vec<String> {
        let mut out = vec![
            format!(
                "signal: {} idle clients, {} pairs{}{}, tokens {}",
                self.clients,
                self.pairs,
                if self.paired_only { " paired only (no SDP, no candidates)" } else { "" },
                match self.connected_secs {
                    Some(secs) => format!(", calls at once ({secs:.3} s until every pair was connected)"),
                    None => String::new(),
                },
                self.token_source
            ),
            format!(
                "idle      {} open, {} failed, {} dropped by the server; {:.0} connections/s ({:.3} s)",
                self.idle_connected, self.idle_failed, self.idle_dropped, self.accept_rate_per_sec, self.accept_secs
            ),
        ];
        match (self.server_rss_kib_before, self.server_rss_kib_after) {
            (Some(before), Some(after)) => out.push(format!(
                "memory    server RSS {before} KiB -> {after} KiB: {} KiB per idle connection (client: {} KiB)",
                opt(self.rss_kib_per_idle_connection),
                opt(self.client_rss_kib_per_idle_connection)
            )),
            _ => out.push("memory    server RSS not measured (pass --server-pid)".to_owned()),
        }
        out.push(format!(
            "pairs     {} set up, {} failed in {:.3} s: {} connections/s into calls, server CPU {} µs per connection",
            self.pairs_set_up,
            self.pairs_failed,
            self.setup_secs,
            opt(self.setup_connections_per_sec),
            opt(self.server_cpu_us_per_setup_connection)
        ));
        if let (Some(server), Some(client)) = (self.server_cpu_percent_setup, self.client_cpu_percent_setup) {
            out.push(format!("cpu       during set-up: server {server:.0} %, parley-load {client:.0} % of one core"));
        }
        if let Some(busy) = self.server_cores_busy_percent_setup {
            let db =
                self.db_cpu_percent_setup.map(|db| format!("; the database {db:.0} % of one core")).unwrap_or_default();
            out.push(format!("cpu       during set-up: the server's cores {busy:.0} % busy, every process{db}"));
        }
        if let (Some(after), Some(per)) = (self.server_rss_kib_calls, self.rss_kib_per_call_connection) {
            out.push(format!(
                "memory    server RSS {after} KiB with the calls open: {per} KiB per connection in a call"
            ));
        }
        out.push(format!("setup     {}", stats::line(stats.setup.summary())));
        out.push("relay of set-up messages:".to_owned());
        out.push(format!("  sdp     {}", stats::line(stats.sdp_relay.summary())));
        out.push(format!("  paced   {}", stats::line(stats.paced_relay.summary())));
        out.push(format!("  burst   {}", stats::line(stats.burst_relay.summary())));
        out.push(format!("  all     {}", stats::line(stats.setup_relay().summary())));
        out.push(format!(
            "relay     {}  | {} hops in {:.3} s = {:.0} msg/s, {} lost",
            stats::line(stats.relay.summary()),
            self.relay_hops,
            self.relay_secs,
            self.relay_throughput_msgs_per_sec,
            self.relay_lost
        ));
        if let (Some(server), Some(client)) = (self.server_cpu_percent_relay, self.client_cpu_percent_relay) {
            out.push(format!("cpu       during relay: server {server:.0} %, parley-load {client:.0} % of one core"));
        }
        if !self.errors.is_empty() {
            out.push(format!("errors    {}", counts_line(&self.errors)));
        }
        if !self.client_errors.is_empty() {
            out.push(format!("failures  {}", counts_line(&self.client_errors)));
        }
        for f in &self.failures {
            out.push(format!("  {f}"));
        }
        out
    }
}

fn counts_line(counts: &Counts) -> String {
    counts.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// The distributions of a run, for the readable summary.
#[derive(Debug, Default)]
pub struct SignalStats {
    /// Call set-up times.
    pub setup: Latencies,
    /// Relay latency of offers and answers.
    pub sdp_relay: Latencies,
    /// Relay latency of paced candidates.
    pub paced_relay: Latencies,
    /// Relay latency of candidates sent at once.
    pub burst_relay: Latencies,
    /// Relay latency of the relay phase.
    pub relay: Latencies,
}

impl SignalStats {
    /// Relay latency of every set-up message.
    pub fn setup_relay(&self) -> Latencies {
        let mut all = self.sdp_relay.clone();
        all.merge(&self.paced_relay);
        all.merge(&self.burst_relay);
        all
    }
}
