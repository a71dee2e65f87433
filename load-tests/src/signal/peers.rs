//! The `signal` pairs against other signaling servers (`--protocol
//! matchbox|peerjs`): what every such pair shares, whatever the protocol.
//!
//! A protocol ([`Wire`]) sets its pair up its own way — connect, pair, an
//! offer and an answer (`sdp::description`, ~3.5 KB, stamped) — then
//! [`super::pair::trickle`] sends the 10 paced and 10 burst candidates each way
//! (`sdp::candidate`, ~230 B, stamped) exactly as the Parley pair does, and
//! the relay phase ([`super::pair::relay_phase`]) ping-pongs candidates with
//! the same hops. There is no session to end: the hang-up closes both
//! connections. Latencies land in the same histograms as Parley's.

use parley_domain::protocol::IceCandidate;

use super::pair::{Hop, Sides, Trickle, relay_phase, settle};
use super::*;
use crate::target::Protocol;
use crate::ws::raw::{self, Got, Keepalive, RawPeer};

/// Where a frame goes: the peer's id (matchbox: the UUID the server
/// assigned; PeerJS: the id the client chose) and, for PeerJS, the media
/// connection's id (`mc_…`) its payloads carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Link {
    /// The receiving peer's id.
    pub peer: String,
    /// The connection id (empty for matchbox).
    pub connection: String,
}

/// A peer server's protocol, as a `signal` pair needs it.
pub(super) trait Wire: Sized + Send + Sync + 'static {
    /// What the server sends, decoded.
    type Event: raw::Event + std::fmt::Debug;

    /// The keep-alive its client sends, if the server needs one.
    const KEEPALIVE: Option<Keepalive>;

    /// Connects pair `i`'s two sides, lines up at `line` (the common start
    /// of `--calls-at-once`), exchanges offer and answer (recording `setup`
    /// and `sdp_relay`) and trickles the candidates ([`super::pair::trickle`]).
    /// `stage` names the step under way.
    fn set_up(
        i: u64,
        ctx: &PairCtx,
        line: &mut StartLine,
        stage: &mut &'static str,
    ) -> impl Future<Output = anyhow::Result<PeerCall<Self>>> + Send;

    /// The frame that sends `candidate` to `to`.
    fn candidate_frame(to: &Link, candidate: &IceCandidate) -> String;

    /// The candidate a relayed event carries, if it is one.
    fn candidate(event: &Self::Event) -> Option<&IceCandidate>;
}

/// A pair set up on a peer server.
pub(super) struct PeerCall<W: Wire> {
    /// The seeker's connection.
    pub seeker: RawPeer<W::Event>,
    /// The consultant's connection.
    pub consultant: RawPeer<W::Event>,
    /// How the consultant addresses the seeker.
    pub to_seeker: Link,
    /// How the seeker addresses the consultant.
    pub to_consultant: Link,
    /// The seeker's ICE credentials (its candidates carry its ufrag).
    pub seeker_ice: IceCredentials,
    /// The consultant's.
    pub consultant_ice: IceCredentials,
    /// Payload randomness.
    pub rng: Rng,
}

/// Refuses, with a clear error, the options the run cannot honour:
/// [`PairSetup::PairedOnly`] with a relay phase (`relay_secs` > 0: a pair
/// paired only has nothing set up to relay on), calls at once at a call
/// rate, and what the peers cannot do: they have no call to be paired
/// into (`--paired-only`), no authentication (`--jwt-secret-file`), no
/// billing (`--price-minor`), and `signal` runs no idle phase against them
/// (`--clients`: pairs only).
pub(super) fn check_options(opts: &SignalOptions) -> anyhow::Result<()> {
    let protocol = opts.target.protocol;
    let paired_only = opts.setup == PairSetup::PairedOnly;
    if paired_only && protocol != Protocol::Parley {
        anyhow::bail!(
            "--paired-only is for Parley's protocol only: the peers ({protocol}) have no call to be paired into \
             (a pair there is two sockets relaying an offer, an answer and candidates)"
        );
    }
    if paired_only && opts.relay_secs > 0 {
        anyhow::bail!(
            "--paired-only needs --relay-secs 0 (the default is 10): the pairs stop before any SDP or \
             candidate, so there is no relay phase to run"
        );
    }
    if opts.calls_at_once && opts.call_rate.is_some() {
        anyhow::bail!(
            "--calls-at-once and --call-rate exclude each other: the calls either start together once every \
             pair is connected or at the given rate"
        );
    }
    if protocol == Protocol::Parley {
        return Ok(());
    }
    if opts.price_minor != 0 {
        anyhow::bail!("--price-minor is for Parley only: {protocol} has no billing (no price, no hold)");
    }
    if opts.jwt_secret_file.is_some() {
        anyhow::bail!("--jwt-secret-file is for Parley only: {protocol} has no authentication (no tokens)");
    }
    if opts.clients != 0 {
        anyhow::bail!("--clients must be 0 with --protocol {protocol}: against the peers `signal` runs pairs only");
    }
    Ok(())
}

/// One pair on a peer server, start to end: set-up (reported on
/// `setup_tx`), the relay phase once `go` is given, and the close.
pub(super) async fn pair<W: Wire>(
    i: u64,
    ctx: Arc<PairCtx>,
    mut line: StartLine,
    setup_tx: mpsc::UnboundedSender<bool>,
) -> PairResult {
    let mut result = PairResult::default();
    let mut stage = "connect";
    // A little longer than the steps' own deadline, so that they name what timed out.
    let set_up = W::set_up(i, &ctx, &mut line, &mut stage);
    let set_up = tokio::time::timeout(SETUP_TIMEOUT + Duration::from_secs(2), set_up).await;
    match settle(set_up, stage, &mut result, &setup_tx) {
        Some(call) => relay_phase(call, &ctx, result).await,
        None => result,
    }
}

/// Opens one side's connection to `url` (`name` names it in errors).
pub(super) async fn open<W: Wire>(ctx: &PairCtx, name: String, url: &str) -> anyhow::Result<RawPeer<W::Event>> {
    let peer = RawPeer::open(name.clone(), url, CONNECT_TIMEOUT, W::KEEPALIVE, ctx.stop.clone(), ctx.deadline).await;
    peer.map_err(|e| anyhow::anyhow!("{name}: {e}"))
}

/// The relay latency of a candidate received at `at_ns`.
fn latency(candidate: &IceCandidate, at_ns: u64) -> Option<Duration> {
    sdp::candidate_ts(&candidate.candidate).map(|ts| since(ts, at_ns))
}

impl<W: Wire> Trickle for PeerCall<W> {
    async fn send_candidates(&mut self, seq: u64, queue: bool) -> anyhow::Result<()> {
        let s = sdp::candidate(&mut self.rng, &self.seeker_ice, seq, now_ns());
        let c = sdp::candidate(&mut self.rng, &self.consultant_ice, seq, now_ns());
        let (s, c) = (W::candidate_frame(&self.to_consultant, &s), W::candidate_frame(&self.to_seeker, &c));
        if queue {
            self.seeker.feed(s).await?;
            self.consultant.feed(c).await
        } else {
            self.seeker.send(s).await?;
            self.consultant.send(c).await
        }
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.seeker.flush().await?;
        self.consultant.flush().await
    }

    async fn collect_candidates(&mut self, deadline: Instant, into: &Mutex<Latencies>) -> anyhow::Result<()> {
        for peer in [&mut self.consultant, &mut self.seeker] {
            for _ in 0..CANDIDATES_PER_ROUND {
                let got = peer
                    .recv_until(deadline, "a candidate", |m| {
                        W::candidate(&m.event).and_then(|c| latency(c, m.at_ns)).map(Ok)
                    })
                    .await?;
                record(into, got);
            }
        }
        Ok(())
    }
}

impl<W: Wire> Sides for PeerCall<W> {
    /// As the Parley hop: the window's candidates back to back, all
    /// received within [`HOP_TIMEOUT`].
    async fn hop(&mut self, forward: bool, last: u64, ctx: &PairCtx) -> Hop {
        let window = ctx.relay_window.max(1) as u64;
        let first = last + 1 - window;
        let (from, to, link, ice) = if forward {
            (&mut self.seeker, &mut self.consultant, &self.to_consultant, &self.seeker_ice)
        } else {
            (&mut self.consultant, &mut self.seeker, &self.to_seeker, &self.consultant_ice)
        };
        for seq in first..=last {
            let candidate = sdp::candidate(&mut self.rng, ice, seq, now_ns());
            if let Err(e) = from.send(W::candidate_frame(link, &candidate)).await {
                return Hop::Broken(format!("{e:#}"));
            }
        }
        let until = Instant::now() + HOP_TIMEOUT;
        let mut missing = window;
        loop {
            match to.recv(until).await {
                Got::Msg(m) => {
                    if let Some(candidate) = W::candidate(&m.event)
                        && sdp::candidate_seq(&candidate.candidate).is_some_and(|s| (first..=last).contains(&s))
                        && let Some(latency) = latency(candidate, m.at_ns)
                    {
                        record(&ctx.shared.relay, latency);
                        missing -= 1;
                        if missing == 0 {
                            return Hop::Done;
                        }
                    }
                }
                Got::Timeout => return Hop::Lost,
                Got::Closed => return Hop::Broken(format!("{}: connection closed", to.name)),
            }
        }
    }

    /// No session to end: closes both connections.
    async fn finish(self, mut result: PairResult) -> PairResult {
        for peer in [self.seeker, self.consultant] {
            let end = peer.close(Duration::from_secs(1)).await;
            add_counts(&mut result.errors, &end.errors);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(protocol: Protocol) -> SignalOptions {
        SignalOptions {
            target: crate::target::parse("http://127.0.0.1:9000").unwrap().with_protocol(protocol),
            clients: 0,
            pairs: 10,
            server_pid: None,
            db_pid: None,
            relay_secs: 1,
            relay_window: 1,
            call_rate: None,
            calls_at_once: false,
            price_minor: 0,
            jwt_secret_file: None,
            connect_concurrency: 256,
            setup: PairSetup::Full,
        }
    }

    #[test]
    fn the_peers_refuse_what_they_cannot_do() {
        for protocol in [Protocol::Matchbox, Protocol::PeerJs] {
            check_options(&options(protocol)).unwrap();
            let priced = SignalOptions { price_minor: 2500, ..options(protocol) };
            let e = check_options(&priced).unwrap_err().to_string();
            assert!(e.contains("--price-minor") && e.contains("no billing") && e.contains(protocol.as_str()), "{e}");
            let secret = SignalOptions { jwt_secret_file: Some("data/jwt-secret".into()), ..options(protocol) };
            let e = check_options(&secret).unwrap_err().to_string();
            assert!(e.contains("--jwt-secret-file") && e.contains("no authentication"), "{e}");
            let idle = SignalOptions { clients: 5, ..options(protocol) };
            assert!(check_options(&idle).unwrap_err().to_string().contains("--clients must be 0"));
            // Even with --relay-secs 0: there is no call to stop at.
            let paired = SignalOptions { relay_secs: 0, ..options(protocol) };
            let e = check_options(&SignalOptions { setup: PairSetup::PairedOnly, ..paired.clone() })
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("--paired-only") && e.contains("no call to be paired into") && e.contains(protocol.as_str()),
                "{e}"
            );
        }
    }

    #[test]
    fn calls_at_once_refuses_a_call_rate() {
        for protocol in [Protocol::Parley, Protocol::Matchbox, Protocol::PeerJs] {
            check_options(&SignalOptions { calls_at_once: true, ..options(protocol) }).unwrap();
            let paced = SignalOptions { calls_at_once: true, call_rate: Some(200.0), ..options(protocol) };
            let e = check_options(&paced).unwrap_err().to_string();
            assert!(e.contains("--calls-at-once") && e.contains("--call-rate"), "{e}");
        }
    }

    #[test]
    fn paired_only_needs_parley_and_no_relay_phase() {
        let paired = SignalOptions { relay_secs: 0, ..options(Protocol::Parley) };
        check_options(&SignalOptions { setup: PairSetup::PairedOnly, ..paired.clone() }).unwrap();
        for relay_secs in [1, 10] {
            let relaying = SignalOptions { relay_secs, ..options(Protocol::Parley) };
            let e = check_options(&SignalOptions { setup: PairSetup::PairedOnly, ..relaying.clone() })
                .unwrap_err()
                .to_string();
            assert!(e.contains("--paired-only needs --relay-secs 0"), "{e}");
            check_options(&relaying).unwrap();
        }
    }

    #[test]
    fn parley_keeps_every_option() {
        let opts = SignalOptions {
            clients: 2000,
            price_minor: 2500,
            jwt_secret_file: Some("data/jwt-secret".into()),
            ..options(Protocol::Parley)
        };
        check_options(&opts).unwrap();
    }
}
