//! An edge's socket: the client is connected here, the hub core runs on
//! the hub node. The edge does what needs the socket — the size and rate
//! limits (docs/protocol.md §8.8), pings, the idle close, writing — and
//! forwards every admitted frame, in order, to the hub node, which serves
//! the connection (`remote`) and sends its numbered messages back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::WebSocket;
use axum::extract::ws::{CloseFrame, Message};
use futures_util::{SinkExt, StreamExt};
use parley_domain::protocol::{ErrorCode, Role};
use tokio::sync::mpsc;

use super::{Cluster, Down, Wire};
use crate::auth::Identity;
use crate::connection::{Admit, CLOSE_IDLE, CLOSE_RATE_LIMITED, Limiter, frame_len};
use crate::hub::{CLOSE_GOING_AWAY, Hub};
use crate::metrics;

/// How long one batch of writes may wait on a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one authenticated WebSocket through the hub node until it closes.
pub(crate) async fn serve(socket: WebSocket, hub: Arc<Hub>, cluster: Arc<Cluster>, identity: Identity) {
    let conn = hub.next_id();
    let me = cluster.bus.node().to_owned();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut down) = mpsc::unbounded_channel();
    cluster.register_edge(conn, tx);
    let role = identity.user.role;
    let open = Wire::Open { from: me.clone(), conn, user: identity.user, premium: identity.premium };
    if !cluster.to_hub(&open) {
        cluster.forget_edge(conn);
        let reason = "no hub node elected; reconnect in a moment";
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CLOSE_GOING_AWAY, reason: reason.into() }))).await;
        return;
    }
    metrics::connection_opened();
    // Recorders are not limited (see `connection::serve`).
    let mut limiter =
        (role != Role::Recorder).then(|| Limiter::new(hub.cfg.rate_limit_per_sec, hub.cfg.rate_limit_burst));
    let ping_every = hub.cfg.ping_interval;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let notice = |code: ErrorCode, message: String| {
        metrics::error(code);
        cluster.to_hub(&Wire::Notice { from: me.clone(), conn, code, message });
    };
    let close = |code: u16, reason: String| Message::Close(Some(CloseFrame { code, reason: reason.into() }));
    let closed = loop {
        tokio::select! {
            frame = stream.next() => {
                let frame = match frame {
                    Some(Ok(Message::Close(_))) => break true,
                    Some(Ok(frame)) => frame,
                    None => break false,
                    Some(Err(e)) => {
                        if let Some((code, reason)) = e.close() {
                            let _ = sink.send(close(code, reason.into())).await;
                        }
                        break false;
                    }
                };
                last_heard = Instant::now();
                if let Some(limiter) = &mut limiter {
                    match limiter.admit(frame_len(&frame), last_heard) {
                        Admit::Pass => {}
                        Admit::Drop { notify } => {
                            metrics::frame_dropped();
                            if notify {
                                notice(ErrorCode::RateLimited, limiter.notice(&hub.cfg));
                            }
                            continue;
                        }
                        Admit::Close => {
                            metrics::error(ErrorCode::RateLimited);
                            let _ = sink.send(close(CLOSE_RATE_LIMITED, "over the rate limit for too long".into())).await;
                            break false;
                        }
                    }
                }
                match frame {
                    Message::Text(text) => {
                        cluster.to_hub(&Wire::Frame { from: me.clone(), conn, text: text.as_str().to_owned() });
                    }
                    Message::Binary(_) => notice(
                        ErrorCode::BinaryNotSupported,
                        "binary frames are not part of the protocol; send JSON text".into(),
                    ),
                    Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {}
                }
            }
            down = down.recv() => match down {
                Some(Down::Write(texts)) => {
                    metrics::sent(texts.len() as u64);
                    let written = tokio::time::timeout(WRITE_TIMEOUT, async {
                        for text in texts {
                            sink.feed(Message::Text(text.into())).await?;
                        }
                        sink.flush().await
                    })
                    .await;
                    if !matches!(written, Ok(Ok(()))) {
                        break false;
                    }
                }
                Some(Down::Close(code, reason)) => {
                    let _ = sink.send(close(code, reason)).await;
                    break false;
                }
                None => break false,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 3 {
                    let _ = sink.send(close(CLOSE_IDLE, "no traffic for three ping intervals".into())).await;
                    break false;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    break false;
                }
            }
        }
    };
    cluster.forget_edge(conn);
    cluster.to_hub(&Wire::Gone { from: me, conn, closed });
    metrics::connection_closed();
}
