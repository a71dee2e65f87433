//! Two Parley calls talking to each other over loopback.
//!
//! A seeker (the offerer) and a consultant (the answerer) each run a real
//! WebRTC peer connection on 127.0.0.1. Instead of the signaling server,
//! their signals (offer, answer, ICE candidates) travel through two in-memory
//! channels: what one side sends on its `outbound` sender, the other reads
//! from its `inbound` receiver.
//!
//! The example connects them, says "hello" both ways over the data channel,
//! lets Opus silence frames flow for a second, prints the audio packet
//! counters and closes both calls.
//!
//! ```text
//! cargo run -p parley-sdk --example loopback_call
//! RUST_LOG=parley_sdk=debug cargo run -p parley-sdk --example loopback_call   # with negotiation logs
//! ```

use std::time::Duration;

use parley_sdk::call::{Call, CallConfig};
use tokio::sync::mpsc::unbounded_channel;

/// Upper bound for each step; on loopback they take well under a second.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();

    // seeker → consultant and consultant → seeker.
    let (seeker_out, consultant_in) = unbounded_channel();
    let (consultant_out, seeker_in) = unbounded_channel();

    let consultant =
        Call::start(CallConfig { offerer: false, ..CallConfig::default() }, consultant_out, consultant_in).await?;
    // The seeker sends its offer as soon as it starts.
    let seeker = Call::start(CallConfig::default(), seeker_out, seeker_in).await?;

    seeker.wait_connected(STEP_TIMEOUT).await?;
    consultant.wait_connected(STEP_TIMEOUT).await?;
    println!("connected");

    seeker.wait_data_channel_open(STEP_TIMEOUT).await?;
    consultant.wait_data_channel_open(STEP_TIMEOUT).await?;

    seeker.send_data(b"hello").await?;
    let message = consultant.recv_data().await.ok_or("data channel closed")?;
    println!("consultant received {:?}", String::from_utf8_lossy(&message));

    consultant.send_data(b"hello").await?;
    let message = seeker.recv_data().await.ok_or("data channel closed")?;
    println!("seeker received {:?}", String::from_utf8_lossy(&message));

    // Audio: one 20 ms Opus frame per packet, each way.
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "seeker: {} audio packets sent, {} received",
        seeker.audio_packets_sent(),
        seeker.audio_packets_received()
    );
    println!(
        "consultant: {} audio packets sent, {} received",
        consultant.audio_packets_sent(),
        consultant.audio_packets_received()
    );

    seeker.close().await?;
    consultant.close().await?;
    println!("closed");
    Ok(())
}
