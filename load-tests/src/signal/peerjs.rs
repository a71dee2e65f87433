//! `--protocol peerjs`: PeerJS server 1.0 (npm `peer`), as its own
//! client (`peerjs`) talks to it.
//!
//! * A client picks its id and a random token and connects to
//!   `ws://host:port/peerjs?key=peerjs&id=<id>&token=<token>` (the server's
//!   default path `/` and key `peerjs`); the server answers `{"type":"OPEN"}`,
//!   or `{"type":"ERROR","payload":{"msg":…}}` (e.g. its concurrent limit)
//!   or `{"type":"ID-TAKEN",…}`, and closes.
//! * A client sends `{"type":"OFFER"|"ANSWER"|"CANDIDATE","payload":…,
//!   "dst":<id>}`; the server forwards `{"type","src","dst","payload"}` to
//!   `dst`. Payloads as the client's negotiator writes them for a media
//!   connection: `{"sdp":{"type":"offer","sdp":…},"type":"media",
//!   "connectionId":"mc_…","browser":"chrome"}`, and
//!   `{"candidate":<RTCIceCandidateInit>,"type":"media","connectionId":…}`.
//! * The server closes a client that has not sent `{"type":"HEARTBEAT"}`
//!   within its `alive_timeout` (60 s from its CLI); this client sends one
//!   every 5 s, as PeerJS's does.
//!
//! Ids are `c-<run>-<i>` (consultant) and `s-<run>-<i>` (seeker). Both
//! connect and wait for `OPEN`; call set-up runs from then — the offer is
//! the call — to the answer received, the seeker offering.

use parley_domain::protocol::IceCandidate;
use serde::Deserialize;

use super::pair::trickle;
use super::peers::{Link, PeerCall, Wire, open};
use super::*;
use crate::ws::raw::{Event, Keepalive};

/// The protocol, for [`super::peers::pair`].
pub(super) struct PeerJs;

/// The server's default key (`--key`).
pub(super) const KEY: &str = "peerjs";

/// The client's heartbeat.
const HEARTBEAT: Keepalive = Keepalive { every: Duration::from_secs(5), frame: r#"{"type":"HEARTBEAT"}"# };

/// The WebSocket URL of client `id` with `token` on a server at `ws_base`
/// (`ws://host:port`, path `/`, key [`KEY`]).
pub(super) fn url(ws_base: &str, id: &str, token: &str) -> String {
    format!("{ws_base}/peerjs?key={KEY}&id={id}&token={token}")
}

/// A random token as PeerJS makes them (`Math.random().toString(36).slice(2)`):
/// 11 base-36 digits.
pub(super) fn token(rng: &mut Rng) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..11).map(|_| DIGITS[(rng.next_u64() % 36) as usize] as char).collect()
}

#[derive(Serialize)]
struct Out<'a, P> {
    #[serde(rename = "type")]
    kind: &'static str,
    payload: P,
    dst: &'a str,
}

#[derive(Serialize)]
struct Description<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    sdp: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SdpPayload<'a> {
    sdp: Description<'a>,
    #[serde(rename = "type")]
    kind: &'static str,
    connection_id: &'a str,
    browser: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CandidatePayload<'a> {
    candidate: &'a IceCandidate,
    #[serde(rename = "type")]
    kind: &'static str,
    connection_id: &'a str,
}

fn description_frame(kind: &'static str, to: &Link, sdp: &str) -> String {
    let description = Description { kind: if kind == "OFFER" { "offer" } else { "answer" }, sdp };
    let payload = SdpPayload { sdp: description, kind: "media", connection_id: &to.connection, browser: "chrome" };
    serde_json::to_string(&Out { kind, payload, dst: &to.peer }).expect("messages serialise")
}

/// The `OFFER` of `sdp` to `to`.
pub(super) fn offer_frame(to: &Link, sdp: &str) -> String {
    description_frame("OFFER", to, sdp)
}

/// The `ANSWER` of `sdp` to `to`.
pub(super) fn answer_frame(to: &Link, sdp: &str) -> String {
    description_frame("ANSWER", to, sdp)
}

/// The `CANDIDATE` `candidate` to `to`.
pub(super) fn candidate_frame(to: &Link, candidate: &IceCandidate) -> String {
    let payload = CandidatePayload { candidate, kind: "media", connection_id: &to.connection };
    serde_json::to_string(&Out { kind: "CANDIDATE", payload, dst: &to.peer }).expect("messages serialise")
}

/// What the PeerJS server sends, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeerJsEvent {
    /// The connection is registered.
    Open,
    /// A relayed offer from `src`.
    Offer { src: String, connection_id: String, sdp: String },
    /// A relayed answer from `src`.
    Answer { src: String, connection_id: String, sdp: String },
    /// A relayed candidate from `src`.
    Candidate { src: String, connection_id: String, candidate: IceCandidate },
    /// `ERROR`, `ID-TAKEN`, `EXPIRE` or `LEAVE` (`type`), with `payload.msg` if any.
    Refused { kind: String, msg: Option<String> },
    /// Any other type.
    Other(String),
}

#[derive(Deserialize)]
struct In {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    src: Option<String>,
    #[serde(default)]
    payload: Option<PayloadIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PayloadIn {
    #[serde(default)]
    sdp: Option<DescriptionIn>,
    #[serde(default)]
    candidate: Option<IceCandidate>,
    #[serde(default)]
    connection_id: Option<String>,
    #[serde(default)]
    msg: Option<String>,
}

#[derive(Deserialize)]
struct DescriptionIn {
    sdp: String,
}

impl Event for PeerJsEvent {
    fn decode(text: &str) -> Result<PeerJsEvent, String> {
        let m: In = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let relayed = |m: In| -> Result<(String, String, PayloadIn), String> {
            let src = m.src.ok_or_else(|| format!("{} without src", m.kind))?;
            let payload = m.payload.ok_or_else(|| format!("{} without payload", m.kind))?;
            Ok((src, payload.connection_id.clone().unwrap_or_default(), payload))
        };
        Ok(match m.kind.as_str() {
            "OPEN" => PeerJsEvent::Open,
            "OFFER" | "ANSWER" => {
                let offer = m.kind == "OFFER";
                let (src, connection_id, payload) = relayed(m)?;
                let sdp = payload.sdp.ok_or("a description without sdp")?.sdp;
                if offer {
                    PeerJsEvent::Offer { src, connection_id, sdp }
                } else {
                    PeerJsEvent::Answer { src, connection_id, sdp }
                }
            }
            "CANDIDATE" => {
                let (src, connection_id, payload) = relayed(m)?;
                let candidate = payload.candidate.ok_or("a CANDIDATE without candidate")?;
                PeerJsEvent::Candidate { src, connection_id, candidate }
            }
            "ERROR" | "ID-TAKEN" | "EXPIRE" | "LEAVE" => {
                PeerJsEvent::Refused { msg: m.payload.and_then(|p| p.msg), kind: m.kind }
            }
            _ => PeerJsEvent::Other(m.kind),
        })
    }

    fn error_key(&self) -> Option<&'static str> {
        match self {
            PeerJsEvent::Refused { kind, .. } => Some(match kind.as_str() {
                "ERROR" => "peerjs_error",
                "ID-TAKEN" => "peerjs_id_taken",
                "EXPIRE" => "peerjs_expire",
                _ => "peerjs_leave",
            }),
            _ => None,
        }
    }
}

/// `Ok` on `OPEN`, the reason on a refusal.
fn opened(e: &PeerJsEvent) -> Option<Result<(), String>> {
    match e {
        PeerJsEvent::Open => Some(Ok(())),
        PeerJsEvent::Refused { kind, msg } => Some(Err(format!("{kind}: {}", msg.as_deref().unwrap_or("-")))),
        _ => None,
    }
}

impl Wire for PeerJs {
    type Event = PeerJsEvent;
    const KEEPALIVE: Option<Keepalive> = Some(HEARTBEAT);

    async fn set_up(
        i: u64,
        ctx: &PairCtx,
        line: &mut StartLine,
        stage: &mut &'static str,
    ) -> anyhow::Result<PeerCall<PeerJs>> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let mut rng = Rng::new(i.wrapping_mul(0x9E37_79B9) ^ now_ns());
        let (seeker_id, consultant_id) = (format!("s-{}-{i}", ctx.run), format!("c-{}-{i}", ctx.run));
        *stage = "connect";
        let consultant_url = url(&ctx.ws_base, &consultant_id, &token(&mut rng));
        let mut consultant = open::<PeerJs>(ctx, format!("consultant {i}"), &consultant_url).await?;
        consultant.recv_until(deadline, "OPEN", |m| opened(&m.event)).await?;
        let seeker_url = url(&ctx.ws_base, &seeker_id, &token(&mut rng));
        let mut seeker = open::<PeerJs>(ctx, format!("seeker {i}"), &seeker_url).await?;
        seeker.recv_until(deadline, "OPEN", |m| opened(&m.event)).await?;

        *stage = "start line";
        line.line_up().await;
        *stage = "sdp";
        let t0 = now_ns();
        let connection = format!("mc_{}", token(&mut rng));
        let to_consultant = Link { peer: consultant_id.clone(), connection: connection.clone() };
        let to_seeker = Link { peer: seeker_id.clone(), connection };
        let seeker_ice = IceCredentials::new(&mut rng);
        let consultant_ice = IceCredentials::new(&mut rng);
        let offer = sdp::description(Kind::Offer, &mut rng, &seeker_ice, now_ns());
        seeker.send(offer_frame(&to_consultant, &offer)).await?;
        let latency = consultant
            .recv_until(deadline, "the OFFER", |m| match &m.event {
                PeerJsEvent::Offer { src, sdp, .. } if *src == seeker_id => {
                    sdp::sdp_ts(sdp).map(|ts| Ok(since(ts, m.at_ns)))
                }
                _ => None,
            })
            .await?;
        record(&ctx.shared.sdp_relay, latency);
        let answer = sdp::description(Kind::Answer, &mut rng, &consultant_ice, now_ns());
        consultant.send(answer_frame(&to_seeker, &answer)).await?;
        let (latency, at_ns) = seeker
            .recv_until(deadline, "the ANSWER", |m| match &m.event {
                PeerJsEvent::Answer { src, sdp, .. } if *src == consultant_id => {
                    sdp::sdp_ts(sdp).map(|ts| Ok((since(ts, m.at_ns), m.at_ns)))
                }
                _ => None,
            })
            .await?;
        record(&ctx.shared.sdp_relay, latency);
        record(&ctx.shared.setup, since(t0, at_ns));

        let mut call = PeerCall { seeker, consultant, to_seeker, to_consultant, seeker_ice, consultant_ice, rng };
        trickle(&mut call, deadline, ctx, stage).await?;
        Ok(call)
    }

    fn candidate_frame(to: &Link, candidate: &IceCandidate) -> String {
        candidate_frame(to, candidate)
    }

    fn candidate(event: &PeerJsEvent) -> Option<&IceCandidate> {
        match event {
            PeerJsEvent::Candidate { candidate, .. } => Some(candidate),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn link() -> Link {
        Link { peer: "c-m1abc-7".into(), connection: "mc_k3j4h5g6f7d".into() }
    }

    #[test]
    fn urls_and_tokens_are_the_clients() {
        assert_eq!(
            url("ws://127.0.0.1:9000", "c-m1abc-7", "a1b2c3d4e5f"),
            "ws://127.0.0.1:9000/peerjs?key=peerjs&id=c-m1abc-7&token=a1b2c3d4e5f"
        );
        let mut rng = Rng::new(1);
        let t = token(&mut rng);
        assert_eq!(t.len(), 11);
        assert!(t.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{t}");
        assert_ne!(t, token(&mut rng));
        assert_eq!(HEARTBEAT.every, Duration::from_secs(5));
        assert_eq!(serde_json::from_str::<serde_json::Value>(HEARTBEAT.frame).unwrap(), json!({"type": "HEARTBEAT"}));
    }

    #[test]
    fn messages_are_the_negotiators() {
        let v: serde_json::Value = serde_json::from_str(&offer_frame(&link(), "v=0\r\n")).unwrap();
        assert_eq!(
            v,
            json!({"type": "OFFER", "dst": "c-m1abc-7", "payload": {
                "sdp": {"type": "offer", "sdp": "v=0\r\n"}, "type": "media",
                "connectionId": "mc_k3j4h5g6f7d", "browser": "chrome"}})
        );
        let v: serde_json::Value = serde_json::from_str(&answer_frame(&link(), "v=0")).unwrap();
        assert_eq!((v["type"].as_str(), v["payload"]["sdp"]["type"].as_str()), (Some("ANSWER"), Some("answer")));

        let mut rng = Rng::new(5);
        let ice = IceCredentials::new(&mut rng);
        let c = sdp::candidate(&mut rng, &ice, 8, 1234);
        let frame = candidate_frame(&link(), &c);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "CANDIDATE");
        assert_eq!(v["dst"], "c-m1abc-7");
        assert_eq!(v["payload"]["type"], "media");
        assert_eq!(v["payload"]["connectionId"], "mc_k3j4h5g6f7d");
        assert_eq!(v["payload"]["candidate"]["candidate"], c.candidate.as_str());
        assert_eq!(v["payload"]["candidate"]["sdpMLineIndex"], 0);
        assert!(frame.len() < 400, "{} bytes: {frame}", frame.len());
    }

    #[test]
    fn server_messages_decode_as_the_server_writes_them() {
        let decode = |s: &str| PeerJsEvent::decode(s).unwrap();
        // `socket.send(JSON.stringify({type: MessageType.OPEN}))`
        assert_eq!(decode(r#"{"type":"OPEN"}"#), PeerJsEvent::Open);
        // The transmission handler forwards `{type, src, dst, payload}`.
        let offer = r#"{"type":"OFFER","src":"s-m1abc-7","dst":"c-m1abc-7","payload":{"sdp":{"type":"offer","sdp":"v=0\r\na=x-parley-ts:5\r\n"},"type":"media","connectionId":"mc_x","browser":"chrome"}}"#;
        assert_eq!(
            decode(offer),
            PeerJsEvent::Offer {
                src: "s-m1abc-7".into(),
                connection_id: "mc_x".into(),
                sdp: "v=0\r\na=x-parley-ts:5\r\n".into()
            }
        );
        let answer = r#"{"type":"ANSWER","src":"c-m1abc-7","dst":"s-m1abc-7","payload":{"sdp":{"type":"answer","sdp":"v=0"},"type":"media","connectionId":"mc_x","browser":"chrome"}}"#;
        assert!(matches!(decode(answer), PeerJsEvent::Answer { src, sdp, .. } if src == "c-m1abc-7" && sdp == "v=0"));
        let candidate = r#"{"type":"CANDIDATE","src":"c-m1abc-7","dst":"s-m1abc-7","payload":{"candidate":{"candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host parley-seq 9 parley-ts 42","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"},"type":"media","connectionId":"mc_x"}}"#;
        let event = decode(candidate);
        let c = PeerJs::candidate(&event).unwrap();
        assert_eq!((sdp::candidate_seq(&c.candidate), sdp::candidate_ts(&c.candidate)), (Some(9), Some(42)));
        assert_eq!(event.error_key(), None);
        // `_sendErrorAndClose`, the id check, expiry of queued messages.
        let limit = decode(r#"{"type":"ERROR","payload":{"msg":"Server has reached its concurrent user limit"}}"#);
        assert_eq!(limit.error_key(), Some("peerjs_error"));
        assert_eq!(opened(&limit), Some(Err("ERROR: Server has reached its concurrent user limit".into())));
        let taken = decode(r#"{"type":"ID-TAKEN","payload":{"msg":"ID is taken"}}"#);
        assert_eq!(taken.error_key(), Some("peerjs_id_taken"));
        assert_eq!(decode(r#"{"type":"EXPIRE","src":"c-1","dst":"s-1"}"#).error_key(), Some("peerjs_expire"));
        assert_eq!(decode(r#"{"type":"LEAVE","src":"c-1","dst":"s-1"}"#).error_key(), Some("peerjs_leave"));
        assert_eq!(opened(&PeerJsEvent::Open), Some(Ok(())));
        assert_eq!(decode(r#"{"type":"SOMETHING"}"#), PeerJsEvent::Other("SOMETHING".into()));
    }

    #[test]
    fn what_the_client_sends_is_what_a_peer_receives() {
        // The server parses the message, sets `src` and forwards type, src, dst, payload.
        let mut rng = Rng::new(11);
        let ice = IceCredentials::new(&mut rng);
        let c = sdp::candidate(&mut rng, &ice, 3, 21);
        let sent: serde_json::Value = serde_json::from_str(&candidate_frame(&link(), &c)).unwrap();
        let relayed = json!({"type": sent["type"], "src": "s-m1abc-7", "dst": sent["dst"], "payload": sent["payload"]});
        let event = PeerJsEvent::decode(&relayed.to_string()).unwrap();
        assert_eq!(
            event,
            PeerJsEvent::Candidate { src: "s-m1abc-7".into(), connection_id: "mc_k3j4h5g6f7d".into(), candidate: c }
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        for bad in [
            "",
            "[]",
            r#"{"src":"x"}"#,
            r#"{"type":"OFFER","payload":{"sdp":{"type":"offer","sdp":"v=0"}}}"#,
            r#"{"type":"CANDIDATE","src":"x","payload":{"type":"media"}}"#,
        ] {
            assert!(PeerJsEvent::decode(bad).is_err(), "{bad}");
        }
    }
}
