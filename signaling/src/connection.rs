//! One WebSocket connection: reads frames, enforces size and rate limits,
//! parses and dispatches requests to the [`Hub`], and writes what the link
//! queues. Malformed input is answered with an `error` and the connection
//! goes on (DESIGN.md §3).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{SinkExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parley_domain::protocol::{ClientEnvelope, ClientMessage, ErrorCode, MAX_FRAME_BYTES, ServerMessage, UserInfo};
use tokio::sync::mpsc;

use crate::error::SignalError;
use crate::hub::{CLOSE_GOING_AWAY, Hub};
use crate::link::{Link, Outbound};
use crate::metrics;

/// Longest request id accepted, bytes.
const MAX_REQUEST_ID: usize = 64;
/// Messages written per flush, at most.
const WRITE_BATCH: usize = 64;
/// Close code for a client too slow to read its messages (RFC 6455 policy violation).
const CLOSE_TOO_SLOW: u16 = 1008;

/// Serves one authenticated WebSocket until it closes.
pub(crate) async fn serve(socket: WebSocket, hub: Arc<Hub>, user: UserInfo) {
    let conn_id = hub.next_id();
    let (tx, mut rx) = mpsc::channel(hub.cfg.replay_buffer + WRITE_BATCH);
    let (mut sink, mut stream) = socket.split();
    let Some(mut link) = hub.connect(user, conn_id, tx) else {
        let _ = sink
            .send(Message::Close(Some(CloseFrame { code: CLOSE_GOING_AWAY, reason: "server shutting down".into() })))
            .await;
        return;
    };
    metrics::connection_opened();
    let limiter = limiter(hub.cfg.rate_limit_per_sec, hub.cfg.rate_limit_burst);
    let mut rate_limited_since: Option<(Instant, u64)> = None;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + hub.cfg.ping_interval, hub.cfg.ping_interval);
    let mut last_heard = Instant::now();
    let mut first = true;

    loop {
        tokio::select! {
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        last_heard = Instant::now();
                        send_error(&link, None, SignalError::new(ErrorCode::BinaryNotSupported, "binary frames are not part of the protocol; send JSON text"));
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_heard = Instant::now();
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "websocket read failed");
                        break;
                    }
                };
                last_heard = Instant::now();
                if text.len() > MAX_FRAME_BYTES {
                    send_error(&link, None, SignalError::new(ErrorCode::FrameTooLarge, format!("frame is {} bytes; at most {MAX_FRAME_BYTES} allowed", text.len())));
                    continue;
                }
                if limiter.check().is_err() {
                    // One error per second at most, so a flood is not echoed.
                    let now = Instant::now();
                    match &mut rate_limited_since {
                        Some((since, dropped)) if now.duration_since(*since) < Duration::from_secs(1) => *dropped += 1,
                        _ => {
                            rate_limited_since = Some((now, 1));
                            send_error(&link, None, SignalError::new(ErrorCode::RateLimited, format!(
                                "more than {} messages per second (burst {}); messages are being dropped",
                                hub.cfg.rate_limit_per_sec, hub.cfg.rate_limit_burst)));
                        }
                    }
                    continue;
                }
                let envelope = match parse(&text) {
                    Ok(env) => env,
                    Err((id, e)) => {
                        send_error(&link, id, e);
                        continue;
                    }
                };
                metrics::received(envelope.msg.type_name());
                let was_first = std::mem::replace(&mut first, false);
                if let ClientMessage::Resume { resume_token, last_seq } = envelope.msg {
                    if !was_first {
                        send_error(&link, envelope.id, SignalError::new(ErrorCode::ResumeNotFirst, "resume must be the first message on a connection"));
                        continue;
                    }
                    let (tx2, rx2) = mpsc::channel(hub.cfg.replay_buffer + WRITE_BATCH);
                    match hub.resume(&link, conn_id, tx2, &resume_token, last_seq) {
                        Ok((old, replayed)) => {
                            // Drain what the provisional link queued (its hello).
                            while let Ok(out) = rx.try_recv() {
                                if let Outbound::Text(t) = out { let _ = sink.feed(Message::Text(t)).await; }
                            }
                            link = old;
                            rx = rx2;
                            if let Some(id) = envelope.id {
                                link.send(&ServerMessage::Ack { id, result: Some(parley_domain::protocol::AckResult::Resumed { replayed }) });
                            }
                        }
                        Err(e) => send_error(&link, envelope.id, e),
                    }
                    continue;
                }
                // Boxed: keeps the idle connection's future small.
                match Box::pin(hub.handle(&link, envelope.msg)).await {
                    Ok(result) => {
                        if let Some(id) = envelope.id {
                            link.send(&ServerMessage::Ack { id, result });
                        }
                    }
                    Err(e) => send_error(&link, envelope.id, e),
                }
            }
            out = rx.recv() => {
                let mut written = 0u64;
                let mut close = None;
                let mut next = out;
                loop {
                    match next {
                        Some(Outbound::Text(text)) => {
                            if sink.feed(Message::Text(text)).await.is_err() { break; }
                            written += 1;
                        }
                        Some(Outbound::Close(code, reason)) => { close = Some((code, reason)); break; }
                        None => { close = Some((CLOSE_TOO_SLOW, "too slow to read messages; resume to catch up")); break; }
                    }
                    if written as usize >= WRITE_BATCH { break; }
                    match rx.try_recv() {
                        Ok(o) => next = Some(o),
                        Err(_) => break,
                    }
                }
                metrics::sent(written);
                if sink.flush().await.is_err() { break; }
                if let Some((code, reason)) = close {
                    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
                    break;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > hub.cfg.ping_interval * 3 {
                    tracing::debug!(user = %link.user.id, "no traffic for three ping intervals; closing");
                    break;
                }
                if sink.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
        }
    }
    hub.disconnect(&link, conn_id);
    metrics::connection_closed();
}

fn limiter(per_sec: u32, burst: u32) -> DefaultDirectRateLimiter {
    let per_sec = NonZeroU32::new(per_sec.max(1)).expect("max(1)");
    let burst = NonZeroU32::new(burst.max(1)).expect("max(1)");
    RateLimiter::direct(Quota::per_second(per_sec).allow_burst(burst))
}

fn send_error(link: &Link, id: Option<String>, e: SignalError) {
    metrics::error(e.code);
    link.send(&ServerMessage::Error { id, code: e.code, message: e.message });
}

/// Parses a text frame; on failure says why with a stable code, and the
/// request id when one could be read.
pub(crate) fn parse(text: &str) -> Result<ClientEnvelope, (Option<String>, SignalError)> {
    match serde_json::from_str::<ClientEnvelope>(text) {
        Ok(env) => {
            if env.id.as_ref().is_some_and(|id| id.len() > MAX_REQUEST_ID) {
                return Err((
                    None,
                    SignalError::new(ErrorCode::InvalidField, format!("id: at most {MAX_REQUEST_ID} bytes")),
                ));
            }
            Ok(env)
        }
        Err(e) => Err(classify(text, e)),
    }
}

/// Explains a parse failure (cold path: the frame is parsed again loosely).
fn classify(text: &str, e: serde_json::Error) -> (Option<String>, SignalError) {
    let Ok(serde_json::Value::Object(obj)) = serde_json::from_str::<serde_json::Value>(text) else {
        return (None, SignalError::new(ErrorCode::MalformedJson, format!("not a JSON object: {e}")));
    };
    let id = obj.get("id").and_then(|v| v.as_str()).filter(|s| s.len() <= MAX_REQUEST_ID).map(str::to_owned);
    let err = match obj.get("type") {
        None => SignalError::new(ErrorCode::MissingField, "missing field `type`"),
        Some(serde_json::Value::String(t)) if !ClientMessage::TYPES.contains(&t.as_str()) => {
            SignalError::new(ErrorCode::UnknownType, format!("unknown message type {t:?}"))
        }
        Some(serde_json::Value::String(t)) => {
            let detail = e.to_string();
            let code =
                if detail.starts_with("missing field") { ErrorCode::MissingField } else { ErrorCode::InvalidField };
            SignalError::new(code, format!("{t}: {detail}"))
        }
        Some(_) => SignalError::new(ErrorCode::InvalidField, "`type` must be a string"),
    };
    (id, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> (Option<String>, ErrorCode) {
        let (id, e) = parse(text).unwrap_err();
        (id, e.code)
    }

    #[test]
    fn parse_errors_have_stable_codes_and_keep_the_request_id() {
        assert_eq!(code("{not json"), (None, ErrorCode::MalformedJson));
        assert_eq!(code("[1,2]"), (None, ErrorCode::MalformedJson));
        assert_eq!(code(r#"{"id":"a"}"#), (Some("a".into()), ErrorCode::MissingField));
        assert_eq!(code(r#"{"id":"b","type":"call.teleport"}"#), (Some("b".into()), ErrorCode::UnknownType));
        assert_eq!(code(r#"{"id":"c","type":"call.request"}"#), (Some("c".into()), ErrorCode::MissingField));
        assert_eq!(
            code(r#"{"id":"d","type":"call.request","consultant_id":"a b"}"#),
            (Some("d".into()), ErrorCode::InvalidField)
        );
        assert_eq!(
            code(r#"{"id":"e","type":"presence.set","status":"dancing"}"#),
            (Some("e".into()), ErrorCode::InvalidField)
        );
        assert_eq!(code(r#"{"type":7}"#), (None, ErrorCode::InvalidField));
    }

    #[test]
    fn a_valid_frame_parses() {
        let env = parse(r#"{"id":"1","type":"room.join","session_id":"ses_1"}"#).unwrap();
        assert_eq!(env.id.as_deref(), Some("1"));
        assert_eq!(env.msg.type_name(), "room.join");
    }
}
