//! An instant call through a running Parley server, with the SDK only.
//!
//! ```sh
//! cargo run --release                                   # the server (dev mode)
//! cargo run -p parley-sdk --example instant_call        # this example
//! cargo run -p parley-sdk --example instant_call -- http://127.0.0.1:8080
//! ```
//!
//! A seeker and a consultant sign in with dev login, the consultant goes
//! available, the seeker calls, the consultant accepts, both join the room
//! and set up a real WebRTC peer connection; they exchange a data-channel
//! message and a second of Opus audio, then the seeker hangs up.

use std::sync::Arc;
use std::time::Duration;

use parley_domain::protocol::{Role, ServerMessage};
use parley_sdk::call::CallConfig;
use parley_sdk::session::SessionCall;
use parley_sdk::{ApiClient, Event, Events, SignalingClient};
use tokio::sync::watch;

/// Routes relayed SDP/ICE to the call (once it exists) and prints the rest.
fn route(mut events: Events, who: &'static str) -> watch::Sender<Option<Arc<SessionCall>>> {
    let (tx, rx) = watch::channel::<Option<Arc<SessionCall>>>(None);
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Event::Server(msg) = &event
                && rx.borrow().as_ref().is_some_and(|c| c.handle(msg))
            {
                continue;
            }
            println!("{who:>10} <- {event:?}");
        }
    });
    tx
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args().nth(1).unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let api = ApiClient::new(&base)?;
    let (c_token, cora) = api.dev_login("example-consultant", "Cora Example", Role::Consultant).await?;
    let (s_token, _) = api.dev_login("example-seeker", "Sam Example", Role::Seeker).await?;

    let (consultant, mut c_events) = SignalingClient::connect(&api.signal_url(), &c_token).await?;
    consultant.set_available(true).await?;
    let (seeker, s_events) = SignalingClient::connect(&api.signal_url(), &s_token).await?;
    let s_route = route(s_events, "seeker");

    let ringing = seeker.call(&cora.id, Some("pm_card_visa")).await?;
    println!("ringing {} (session {})", ringing.call_id, ringing.session_id);
    let call_id = c_events
        .wait_for(Duration::from_secs(10), |m| match m {
            ServerMessage::CallIncoming { call_id, .. } => Some(call_id.clone()),
            _ => None,
        })
        .await?;
    consultant.accept(&call_id).await?;
    let c_route = route(c_events, "consultant");

    let config = CallConfig { resolve_mdns_candidates: false, ..CallConfig::default() };
    let c_room = consultant.join(&ringing.session_id).await?;
    let c_call = Arc::new(SessionCall::start(&consultant, &c_room, config.clone()).await?);
    c_route.send_replace(Some(c_call.clone()));
    let s_room = seeker.join(&ringing.session_id).await?; // the consultant is present: offer now
    let s_call = Arc::new(SessionCall::start(&seeker, &s_room, config).await?);
    s_route.send_replace(Some(s_call.clone()));

    s_call.call.wait_connected(Duration::from_secs(20)).await?;
    s_call.call.wait_data_channel_open(Duration::from_secs(20)).await?;
    c_call.call.wait_data_channel_open(Duration::from_secs(20)).await?;
    s_call.call.send_data(b"hello, Cora").await?;
    if let Some(msg) = c_call.call.recv_data().await {
        println!("consultant received {:?}", String::from_utf8_lossy(&msg));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    println!(
        "audio packets received: seeker {}, consultant {}",
        s_call.call.audio_packets_received(),
        c_call.call.audio_packets_received()
    );
    seeker.end_session(&ringing.session_id).await?;
    s_call.close().await?;
    c_call.close().await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}
