//! Two real [`Call`]s over loopback UDP, signaling through in-memory relays.
//!
//! No mocks: every test runs two webrtc-rs peer connections on 127.0.0.1 and
//! checks what a user of the call would notice — the connection state, data
//! channel messages, audio packets. Timeouts are failure guards only.
//!
//! Run with `RUST_LOG=parley_sdk=debug` to see the negotiation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use parley_domain::protocol::{IceCandidate, MediaState};
use parley_sdk::call::{Call, CallConfig, CallError, MediaKind, Signal};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::watch;

/// Generous guard for anything that should take well under a second.
const GUARD: Duration = Duration::from_secs(20);

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// What went through a relay.
#[derive(Default)]
struct Tap {
    offers: Mutex<Vec<String>>,
    answers: AtomicUsize,
    candidates: Mutex<Vec<IceCandidate>>,
    /// Candidates delivered before the first offer or answer.
    candidates_before_description: AtomicUsize,
    /// The sending call dropped its outbound channel (its tasks ended).
    source_ended: AtomicBool,
}

/// One direction of signaling between the two calls.
struct Relay {
    tap: Arc<Tap>,
    paused: watch::Sender<bool>,
}

impl Relay {
    /// Relays `from` to `to`. With `hold_first_description`, the first offer
    /// or answer is held back until a candidate has been delivered ahead of
    /// it.
    fn spawn(mut from: UnboundedReceiver<Signal>, to: UnboundedSender<Signal>, hold_first_description: bool) -> Relay {
        let tap = Arc::new(Tap::default());
        let (paused, mut paused_rx) = watch::channel(false);
        let relay_tap = Arc::clone(&tap);
        tokio::spawn(async move {
            let tap = relay_tap;
            let mut queue = VecDeque::new();
            let mut held: Option<Signal> = None;
            let mut description_delivered = false;
            let mut candidate_delivered = false;
            let mut pause_alive = true;
            loop {
                tokio::select! {
                    signal = from.recv() => {
                        let Some(signal) = signal else {
                            tap.source_ended.store(true, Ordering::SeqCst);
                            break;
                        };
                        let is_description = !matches!(signal, Signal::Candidate(_));
                        if hold_first_description
                            && is_description
                            && !description_delivered
                            && !candidate_delivered
                        {
                            held = Some(signal);
                        } else {
                            queue.push_back(signal);
                        }
                    }
                    changed = paused_rx.changed(), if pause_alive => {
                        pause_alive = changed.is_ok();
                    }
                }
                if *paused_rx.borrow() {
                    continue;
                }
                while let Some(signal) = queue.pop_front() {
                    match &signal {
                        Signal::Offer(sdp) => {
                            description_delivered = true;
                            tap.offers.lock().unwrap().push(sdp.clone());
                        }
                        Signal::Answer(_) => {
                            description_delivered = true;
                            tap.answers.fetch_add(1, Ordering::SeqCst);
                        }
                        Signal::Candidate(candidate) => {
                            candidate_delivered = true;
                            tap.candidates.lock().unwrap().push(candidate.clone());
                            if !description_delivered {
                                tap.candidates_before_description.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                    let _ = to.send(signal);
                    if candidate_delivered && let Some(description) = held.take() {
                        queue.push_front(description);
                    }
                }
            }
        });
        Relay { tap, paused }
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }

    fn offers(&self) -> Vec<String> {
        self.tap.offers.lock().unwrap().clone()
    }

    fn answers(&self) -> usize {
        self.tap.answers.load(Ordering::SeqCst)
    }

    fn candidates(&self) -> Vec<IceCandidate> {
        self.tap.candidates.lock().unwrap().clone()
    }
}

/// A seeker (offerer) and a consultant (answerer) wired to each other.
struct Pair {
    seeker: Call,
    consultant: Call,
    to_consultant: Relay,
    to_seeker: Relay,
}

async fn start_pair(hold_first_descriptions: bool) -> Pair {
    init_tracing();
    let (seeker_out, seeker_out_rx) = unbounded_channel();
    let (seeker_in_tx, seeker_in) = unbounded_channel();
    let (consultant_out, consultant_out_rx) = unbounded_channel();
    let (consultant_in_tx, consultant_in) = unbounded_channel();
    let to_consultant = Relay::spawn(seeker_out_rx, consultant_in_tx, hold_first_descriptions);
    let to_seeker = Relay::spawn(consultant_out_rx, seeker_in_tx, hold_first_descriptions);

    let consultant = Call::start(CallConfig { offerer: false, ..CallConfig::default() }, consultant_out, consultant_in)
        .await
        .expect("consultant starts");
    let seeker = Call::start(CallConfig::default(), seeker_out, seeker_in).await.expect("seeker starts");
    Pair { seeker, consultant, to_consultant, to_seeker }
}

impl Pair {
    async fn wait_connected(&self) {
        self.seeker.wait_connected(GUARD).await.expect("seeker connects");
        self.consultant.wait_connected(GUARD).await.expect("consultant connects");
    }

    async fn wait_data_channels(&self) {
        self.seeker.wait_data_channel_open(GUARD).await.expect("seeker's data channel opens");
        self.consultant.wait_data_channel_open(GUARD).await.expect("consultant's data channel opens");
    }

    /// Sends one message each way and checks it arrives intact.
    async fn exchange(&self, tag: &str) {
        let to_consultant = format!("{tag}: hello from the seeker");
        let to_seeker = format!("{tag}: hello from the consultant");
        self.seeker.send_data(to_consultant.as_bytes()).await.unwrap();
        self.consultant.send_data(to_seeker.as_bytes()).await.unwrap();
        assert_eq!(recv(&self.consultant).await, to_consultant.as_bytes());
        assert_eq!(recv(&self.seeker).await, to_seeker.as_bytes());
    }

    /// The call still works: connected, data both ways, and at least ten
    /// more audio packets heard on each side.
    async fn still_working(&self, tag: &str) {
        self.wait_connected().await;
        self.exchange(tag).await;
        for call in [&self.consultant, &self.seeker] {
            let heard = call.audio_packets_received();
            wait_audio_above(call, heard + 10).await;
        }
    }

    async fn close(&self) {
        self.seeker.close().await.expect("seeker closes");
        self.consultant.close().await.expect("consultant closes");
    }
}

async fn recv(call: &Call) -> Vec<u8> {
    tokio::time::timeout(GUARD, call.recv_data())
        .await
        .expect("a message arrives in time")
        .expect("the data channel is still open")
        .to_vec()
}

/// Waits until `call` has received more than `above` audio packets.
async fn wait_audio_above(call: &Call, above: u64) -> u64 {
    tokio::time::timeout(GUARD, async {
        loop {
            let received = call.audio_packets_received();
            if received > above {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("audio packets keep arriving")
}

fn ice_ufrag(sdp: &str) -> Option<&str> {
    sdp.lines().find_map(|line| line.trim_end().strip_prefix("a=ice-ufrag:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_only_call_asks_the_sender_for_key_frames() {
    init_tracing();
    // The recorder's shape: a receive-only offerer and a sender answering
    // with audio and video.
    let (r_out, r_out_rx) = unbounded_channel();
    let (r_in_tx, r_in) = unbounded_channel();
    let (s_out, s_out_rx) = unbounded_channel();
    let (s_in_tx, s_in) = unbounded_channel();
    let _relays = (Relay::spawn(r_out_rx, s_in_tx, false), Relay::spawn(s_out_rx, r_in_tx, false));
    let (sink, mut received) = unbounded_channel();
    let receiver_config = CallConfig {
        receive_only: true,
        data_channel: false,
        rtp_sink: Some(sink),
        resolve_mdns_candidates: false,
        ..CallConfig::default()
    };
    let receiver = Call::start(receiver_config, r_out, r_in).await.unwrap();
    let sender_config = CallConfig {
        offerer: false,
        data_channel: false,
        send_video: true,
        resolve_mdns_candidates: false,
        ..CallConfig::default()
    };
    let sender = Call::start(sender_config, s_out, s_in).await.unwrap();
    assert_eq!(receiver.request_key_frame(), 0, "no video yet");

    tokio::time::timeout(GUARD, async {
        while let Some(rtp) = received.recv().await {
            if rtp.kind == MediaKind::Video {
                return;
            }
        }
        panic!("the RTP sink closed");
    })
    .await
    .expect("video arrives");
    assert_eq!(sender.key_frame_requests_received(), 0);
    assert_eq!(receiver.request_key_frame(), 1, "one remote video track");
    let requests = tokio::time::timeout(GUARD, async {
        loop {
            let n = sender.key_frame_requests_received();
            if n > 0 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the sender sees the PLI");
    assert_eq!(requests, 1);
    receiver.close().await.unwrap();
    assert_eq!(receiver.request_key_frame(), 0, "nothing once closed");
    sender.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_exchanges_data_and_audio() {
    let pair = start_pair(false).await;
    pair.wait_connected().await;
    assert_eq!(*pair.seeker.media_state().borrow(), MediaState::Connected);
    assert_eq!(*pair.consultant.media_state().borrow(), MediaState::Connected);

    pair.wait_data_channels().await;
    pair.exchange("first").await;
    // Binary data, not just text.
    let blob: Vec<u8> = (0..=255u8).collect();
    pair.seeker.send_data(&blob).await.unwrap();
    assert_eq!(recv(&pair.consultant).await, blob);

    // ~200 ms of 20 ms frames, each way.
    wait_audio_above(&pair.consultant, 10).await;
    wait_audio_above(&pair.seeker, 10).await;
    assert!(pair.seeker.audio_packets_sent() > 10);
    assert!(pair.consultant.audio_packets_sent() > 10);

    // Exactly one offer/answer exchange for the initial negotiation.
    assert_eq!(pair.to_consultant.offers().len(), 1);
    assert_eq!(pair.to_seeker.answers(), 1);
    // Trickled candidates carry what browsers need to place them.
    let ufrag = ice_ufrag(&pair.to_consultant.offers()[0]).map(str::to_owned);
    let candidates = pair.to_consultant.candidates();
    assert!(!candidates.is_empty());
    for candidate in &candidates {
        assert!(candidate.candidate.starts_with("candidate:"));
        assert_eq!(candidate.sdp_mid.as_deref(), Some("0"));
        assert_eq!(candidate.sdp_m_line_index, Some(0));
        assert_eq!(candidate.username_fragment, ufrag);
    }
    assert!(!pair.to_seeker.candidates().is_empty());
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_before_descriptions_are_buffered() {
    // Each side's first description is held back until one of its
    // candidates was delivered: the consultant gets a candidate before the
    // offer, the seeker one before the answer.
    let pair = start_pair(true).await;
    pair.wait_connected().await;
    assert!(
        pair.to_consultant.tap.candidates_before_description.load(Ordering::SeqCst) > 0,
        "the relay delivered a candidate before the offer"
    );
    assert!(
        pair.to_seeker.tap.candidates_before_description.load(Ordering::SeqCst) > 0,
        "the relay delivered a candidate before the answer"
    );
    pair.wait_data_channels().await;
    pair.exchange("buffered").await;
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_restart_keeps_the_call_working() {
    let pair = start_pair(false).await;
    pair.wait_connected().await;
    pair.wait_data_channels().await;
    pair.exchange("before restart").await;

    pair.seeker.restart_ice().await.expect("restart offer sent");
    // The restart offer is answered...
    tokio::time::timeout(GUARD, async {
        while pair.to_seeker.answers() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the restart offer is answered");
    let offers = pair.to_consultant.offers();
    assert_eq!(offers.len(), 2);
    assert_ne!(ice_ufrag(&offers[0]), ice_ufrag(&offers[1]), "the second offer carries new ICE credentials");

    // ...and the call keeps working: connected, data and audio flowing.
    pair.still_working("after restart").await;
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_initiated_restart_is_answered() {
    let pair = start_pair(false).await;
    pair.wait_connected().await;
    pair.wait_data_channels().await;

    // The consultant offers this time; the seeker answers.
    pair.consultant.restart_ice().await.expect("consultant's offer");
    tokio::time::timeout(GUARD, async {
        while pair.to_consultant.answers() < 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the seeker answers the consultant's offer");
    assert_eq!(pair.to_seeker.offers().len(), 1);

    pair.wait_connected().await;
    pair.exchange("after the consultant's restart").await;
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_restarts_resolve_glare() {
    let pair = start_pair(false).await;
    pair.wait_connected().await;
    pair.wait_data_channels().await;
    pair.exchange("before glare").await;

    // Both sides offer while neither sees the other's offer: a collision.
    pair.to_consultant.pause();
    pair.to_seeker.pause();
    pair.seeker.restart_ice().await.expect("seeker's offer");
    pair.consultant.restart_ice().await.expect("consultant's offer");
    pair.to_consultant.resume();
    pair.to_seeker.resume();

    // The consultant (polite) rolls back and answers the seeker's offer; the
    // seeker ignores the consultant's offer.
    tokio::time::timeout(GUARD, async {
        while pair.to_seeker.answers() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the seeker's offer is answered");

    pair.still_working("after glare").await;
    pair.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_the_call() {
    let pair = start_pair(false).await;
    pair.wait_connected().await;
    pair.wait_data_channels().await;
    pair.exchange("before close").await;

    let mut state = pair.seeker.media_state();
    pair.seeker.close().await.expect("close");
    assert_eq!(*state.borrow_and_update(), MediaState::Closed);
    assert!(
        tokio::time::timeout(GUARD, pair.seeker.recv_data()).await.expect("recv_data returns").is_none(),
        "no more data after close"
    );
    assert!(matches!(pair.seeker.send_data(b"late").await, Err(CallError::Closed)));
    assert!(matches!(pair.seeker.restart_ice().await, Err(CallError::Closed)));
    assert!(matches!(pair.seeker.wait_connected(GUARD).await, Err(CallError::Closed)));
    // Audio stops: the counter no longer moves.
    let sent = pair.seeker.audio_packets_sent();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(pair.seeker.audio_packets_sent(), sent);
    // Closing twice is fine.
    pair.seeker.close().await.expect("second close");
    // The seeker's tasks are gone: nothing holds its outbound channel.
    tokio::time::timeout(GUARD, async {
        while !pair.to_consultant.tap.source_ended.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the seeker's outbound signal channel ends");

    pair.consultant.close().await.expect("consultant closes");
    assert_eq!(*pair.consultant.media_state().borrow(), MediaState::Closed);
    assert!(tokio::time::timeout(GUARD, pair.consultant.recv_data()).await.expect("recv_data returns").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answerer_cannot_restart_before_negotiation() {
    init_tracing();
    let (out, _out_rx) = unbounded_channel();
    let (_in_tx, inbound) = unbounded_channel();
    let call = Call::start(CallConfig { offerer: false, ..CallConfig::default() }, out, inbound).await.unwrap();
    assert!(matches!(call.restart_ice().await, Err(CallError::InvalidState(_))));
    assert!(matches!(call.send_data(b"x").await, Err(CallError::DataChannelNotOpen)));
    assert!(matches!(call.wait_data_channel_open(Duration::from_millis(50)).await, Err(CallError::Timeout(_))));
    call.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_stops_it() {
    init_tracing();
    let (out, mut out_rx) = unbounded_channel();
    let (_in_tx, inbound) = unbounded_channel();
    let call = Call::start(CallConfig::default(), out, inbound).await.unwrap();
    let mut state = call.media_state();
    drop(call);
    assert_eq!(*state.borrow_and_update(), MediaState::Closed);
    // The offer (and any candidates) went out; then the channel ends because
    // the call's tasks stopped.
    let drained = tokio::time::timeout(GUARD, async {
        let mut signals = Vec::new();
        while let Some(signal) = out_rx.recv().await {
            signals.push(signal);
        }
        signals
    })
    .await
    .expect("the outbound signal channel ends");
    assert!(matches!(drained.first(), Some(Signal::Offer(_))));
}

/// Compile-time check: a `Call` can be shared between tasks and its futures
/// can be spawned.
#[allow(dead_code)]
fn call_is_send_and_sync(
    config: CallConfig,
    out: UnboundedSender<Signal>,
    inbound: UnboundedReceiver<Signal>,
    call: Arc<Call>,
) {
    fn is_send<T: Send>(_: &T) {}
    fn is_sync<T: Sync>() {}
    is_sync::<Call>();
    is_send(&Call::start(config, out, inbound));
    is_send(&async move {
        let _ = call.wait_connected(GUARD).await;
        let _ = call.wait_data_channel_open(GUARD).await;
        let _ = call.send_data(b"x").await;
        let _ = call.recv_data().await;
        let _ = call.restart_ice().await;
        let _ = call.close().await;
    });
}
