//! `--protocol matchbox`: matchbox_server 0.15 (crates.io), its
//! `MatchmakingDemoTopology`, speaking matchbox_protocol's JSON.
//!
//! * A peer connects to `ws://host:port/<room>?next=2` and is sent
//!   `{"IdAssigned":"<uuid>"}`. With `next=2` the room pairs peers as they
//!   arrive: the second peer's arrival sends `{"NewPeer":"<its uuid>"}` to
//!   the first; the second is told nothing.
//! * A peer sends `{"Signal":{"receiver":"<uuid>","data":<signal>}}`; the
//!   receiver gets `{"Signal":{"sender":"<uuid>","data":<signal>}}`. The
//!   signal is matchbox_socket's `PeerSignal`: `{"Offer":"<sdp>"}`,
//!   `{"Answer":"<sdp>"}`, `{"IceCandidate":"<RTCIceCandidateInit as a JSON
//!   string>"}`.
//! * `"KeepAlive"` is accepted and ignored; the server drops nobody for
//!   silence, so this client sends none.
//!
//! Each pair has a room of its own, `pair-<run>-<i>`. As matchbox_socket
//! does, the peer already in the room (the consultant) makes the offer on
//! `NewPeer`, and the newcomer (the seeker, who has no other way to learn
//! the consultant's id) answers. Call set-up runs from the seeker's connect
//! start — joining the room is the call — to the answer received.

use parley_domain::protocol::IceCandidate;
use serde::Deserialize;

use super::pair::trickle;
use super::peers::{Link, PeerCall, Wire, open};
use super::*;
use crate::ws::raw::{Event, Keepalive};

/// The protocol, for [`super::peers::pair`].
pub(super) struct Matchbox;

/// The URL of pair `i`'s room in run `run`: `<ws_base>/pair-<run>-<i>?next=2`
/// (`ws_base`: `ws://host:port`).
pub(super) fn room_url(ws_base: &str, run: &str, i: u64) -> String {
    format!("{ws_base}/pair-{run}-{i}?next=2")
}

/// matchbox_socket's `PeerSignal`, as sent.
#[derive(Serialize)]
enum SignalOut<'a> {
    IceCandidate(String),
    Offer(&'a str),
    Answer(&'a str),
}

/// matchbox_protocol's `PeerRequest`, as sent.
#[derive(Serialize)]
enum Request<'a> {
    Signal { receiver: &'a str, data: SignalOut<'a> },
}

fn signal(receiver: &str, data: SignalOut<'_>) -> String {
    serde_json::to_string(&Request::Signal { receiver, data }).expect("requests serialise")
}

/// The request sending offer `sdp` to peer `to`.
pub(super) fn offer_frame(to: &str, sdp: &str) -> String {
    signal(to, SignalOut::Offer(sdp))
}

/// The request sending answer `sdp` to peer `to`.
pub(super) fn answer_frame(to: &str, sdp: &str) -> String {
    signal(to, SignalOut::Answer(sdp))
}

/// The request sending `candidate` to peer `to`: the candidate as a JSON
/// string inside the signal, as matchbox_socket sends it.
pub(super) fn candidate_frame(to: &str, candidate: &IceCandidate) -> String {
    let json = serde_json::to_string(candidate).expect("candidates serialise");
    signal(to, SignalOut::IceCandidate(json))
}

/// What matchbox_server sends, decoded (peer ids are UUIDs as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum MatchboxEvent {
    /// This connection's id.
    IdAssigned(String),
    /// A peer paired with this one (sent to the peer already in the room).
    NewPeer(String),
    /// A peer left.
    PeerLeft(String),
    /// A relayed offer.
    Offer { sender: String, sdp: String },
    /// A relayed answer.
    Answer { sender: String, sdp: String },
    /// A relayed candidate, its inner JSON decoded.
    Candidate { sender: String, candidate: IceCandidate },
}

#[derive(Deserialize)]
enum EventIn {
    IdAssigned(String),
    NewPeer(String),
    PeerLeft(String),
    Signal { sender: String, data: SignalIn },
}

#[derive(Deserialize)]
enum SignalIn {
    IceCandidate(String),
    Offer(String),
    Answer(String),
}

impl Event for MatchboxEvent {
    fn decode(text: &str) -> Result<MatchboxEvent, String> {
        let event: EventIn = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(match event {
            EventIn::IdAssigned(id) => MatchboxEvent::IdAssigned(id),
            EventIn::NewPeer(id) => MatchboxEvent::NewPeer(id),
            EventIn::PeerLeft(id) => MatchboxEvent::PeerLeft(id),
            EventIn::Signal { sender, data: SignalIn::Offer(sdp) } => MatchboxEvent::Offer { sender, sdp },
            EventIn::Signal { sender, data: SignalIn::Answer(sdp) } => MatchboxEvent::Answer { sender, sdp },
            EventIn::Signal { sender, data: SignalIn::IceCandidate(json) } => {
                let candidate = serde_json::from_str(&json).map_err(|e| format!("candidate: {e}"))?;
                MatchboxEvent::Candidate { sender, candidate }
            }
        })
    }
}

/// The id in an `IdAssigned`.
fn assigned(e: &MatchboxEvent) -> Option<Result<String, String>> {
    match e {
        MatchboxEvent::IdAssigned(id) => Some(Ok(id.clone())),
        _ => None,
    }
}

impl Wire for Matchbox {
    type Event = MatchboxEvent;
    const KEEPALIVE: Option<Keepalive> = None;

    async fn set_up(
        i: u64,
        ctx: &PairCtx,
        line: &mut StartLine,
        stage: &mut &'static str,
    ) -> anyhow::Result<PeerCall<Matchbox>> {
        let deadline = Instant::now() + SETUP_TIMEOUT;
        let url = room_url(&ctx.ws_base, &ctx.run, i);
        *stage = "connect";
        let mut consultant = open::<Matchbox>(ctx, format!("consultant {i}"), &url).await?;
        let consultant_id = consultant.recv_until(deadline, "IdAssigned", |m| assigned(&m.event)).await?;

        // The seeker's arrival in the room is the call: it waits at the line.
        *stage = "start line";
        line.line_up().await;
        *stage = "pairing";
        let t0 = now_ns();
        let mut seeker = open::<Matchbox>(ctx, format!("seeker {i}"), &url).await?;
        let seeker_id = consultant
            .recv_until(deadline, "NewPeer", |m| match &m.event {
                MatchboxEvent::NewPeer(id) => Some(Ok(id.clone())),
                _ => None,
            })
            .await?;

        *stage = "sdp";
        let mut rng = Rng::new(i.wrapping_mul(0x9E37_79B9) ^ now_ns());
        let seeker_ice = IceCredentials::new(&mut rng);
        let consultant_ice = IceCredentials::new(&mut rng);
        let offer = sdp::description(Kind::Offer, &mut rng, &consultant_ice, now_ns());
        consultant.send(offer_frame(&seeker_id, &offer)).await?;
        let seeker_assigned = seeker.recv_until(deadline, "IdAssigned", |m| assigned(&m.event)).await?;
        if seeker_assigned != seeker_id {
            anyhow::bail!("the consultant was told of {seeker_id}, but the seeker was assigned {seeker_assigned}");
        }
        let latency = seeker
            .recv_until(deadline, "the offer", |m| match &m.event {
                MatchboxEvent::Offer { sender, sdp } if *sender == consultant_id => {
                    sdp::sdp_ts(sdp).map(|ts| Ok(since(ts, m.at_ns)))
                }
                _ => None,
            })
            .await?;
        record(&ctx.shared.sdp_relay, latency);
        let answer = sdp::description(Kind::Answer, &mut rng, &seeker_ice, now_ns());
        seeker.send(answer_frame(&consultant_id, &answer)).await?;
        let (latency, at_ns) = consultant
            .recv_until(deadline, "the answer", |m| match &m.event {
                MatchboxEvent::Answer { sender, sdp } if *sender == seeker_id => {
                    sdp::sdp_ts(sdp).map(|ts| Ok((since(ts, m.at_ns), m.at_ns)))
                }
                _ => None,
            })
            .await?;
        record(&ctx.shared.sdp_relay, latency);
        record(&ctx.shared.setup, since(t0, at_ns));

        let mut call = PeerCall {
            seeker,
            consultant,
            to_seeker: Link { peer: seeker_id, connection: String::new() },
            to_consultant: Link { peer: consultant_id, connection: String::new() },
            seeker_ice,
            consultant_ice,
            rng,
        };
        trickle(&mut call, deadline, ctx, stage).await?;
        Ok(call)
    }

    fn candidate_frame(to: &Link, candidate: &IceCandidate) -> String {
        candidate_frame(&to.peer, candidate)
    }

    fn candidate(event: &MatchboxEvent) -> Option<&IceCandidate> {
        match event {
            MatchboxEvent::Candidate { candidate, .. } => Some(candidate),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const A: &str = "5b0a8c3e-3d0f-4a4e-9a53-0e8b8b7a1c2d";
    const B: &str = "c1f2e3d4-b5a6-4978-8695-a4b3c2d1e0f9";

    #[test]
    fn rooms_are_two_peer_rooms_of_their_own() {
        assert_eq!(room_url("ws://127.0.0.1:3536", "m1abc", 7), "ws://127.0.0.1:3536/pair-m1abc-7?next=2");
        assert_ne!(room_url("ws://h:1", "r", 1), room_url("ws://h:1", "r", 11));
    }

    #[test]
    fn requests_are_matchbox_protocol_signals() {
        let offer: serde_json::Value = serde_json::from_str(&offer_frame(A, "v=0\r\n")).unwrap();
        assert_eq!(offer, json!({"Signal": {"receiver": A, "data": {"Offer": "v=0\r\n"}}}));
        let answer: serde_json::Value = serde_json::from_str(&answer_frame(B, "v=0\r\na")).unwrap();
        assert_eq!(answer, json!({"Signal": {"receiver": B, "data": {"Answer": "v=0\r\na"}}}));

        let mut rng = Rng::new(3);
        let ice = IceCredentials::new(&mut rng);
        let c = sdp::candidate(&mut rng, &ice, 4, 99);
        let frame = candidate_frame(A, &c);
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        let inner = v["Signal"]["data"]["IceCandidate"].as_str().unwrap();
        let inner: serde_json::Value = serde_json::from_str(inner).unwrap();
        assert_eq!(inner["candidate"], c.candidate.as_str());
        assert_eq!((inner["sdpMid"].as_str(), inner["sdpMLineIndex"].as_u64()), (Some("0"), Some(0)));
        assert_eq!(inner["usernameFragment"], ice.ufrag.as_str());
        assert!(frame.len() < 400, "{} bytes: {frame}", frame.len());
    }

    #[test]
    fn server_events_decode_as_matchbox_server_writes_them() {
        // As matchbox_server writes them: `JsonPeerEvent::…(…).to_string()`.
        let decode = |s: &str| MatchboxEvent::decode(s).unwrap();
        assert_eq!(decode(&format!(r#"{{"IdAssigned":"{A}"}}"#)), MatchboxEvent::IdAssigned(A.into()));
        assert_eq!(decode(&format!(r#"{{"NewPeer":"{B}"}}"#)), MatchboxEvent::NewPeer(B.into()));
        assert_eq!(decode(&format!(r#"{{"PeerLeft":"{B}"}}"#)), MatchboxEvent::PeerLeft(B.into()));
        let offer = format!(r#"{{"Signal":{{"sender":"{A}","data":{{"Offer":"v=0\r\na=x-parley-ts:12\r\n"}}}}}}"#);
        assert_eq!(
            decode(&offer),
            MatchboxEvent::Offer { sender: A.into(), sdp: "v=0\r\na=x-parley-ts:12\r\n".into() }
        );
        let answer = format!(r#"{{"Signal":{{"sender":"{B}","data":{{"Answer":"v=0"}}}}}}"#);
        assert_eq!(decode(&answer), MatchboxEvent::Answer { sender: B.into(), sdp: "v=0".into() });
        let candidate = format!(
            r#"{{"Signal":{{"sender":"{A}","data":{{"IceCandidate":"{{\"candidate\":\"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host parley-seq 3 parley-ts 77\",\"sdpMid\":\"0\",\"sdpMLineIndex\":0,\"usernameFragment\":\"abcd\"}}"}}}}}}"#
        );
        let MatchboxEvent::Candidate { sender, candidate } = decode(&candidate) else { panic!() };
        assert_eq!(sender, A);
        assert_eq!(
            (sdp::candidate_seq(&candidate.candidate), sdp::candidate_ts(&candidate.candidate)),
            (Some(3), Some(77))
        );
        assert_eq!(
            Matchbox::candidate(&MatchboxEvent::Candidate { sender, candidate: candidate.clone() }),
            Some(&candidate)
        );
        assert_eq!(Matchbox::candidate(&MatchboxEvent::NewPeer(A.into())), None);
        assert_eq!(decode(&format!(r#"{{"IdAssigned":"{A}"}}"#)).error_key(), None);
    }

    #[test]
    fn what_the_client_sends_is_what_a_peer_receives() {
        // The server relays `data` as it came, with `sender` for `receiver`.
        let mut rng = Rng::new(9);
        let ice = IceCredentials::new(&mut rng);
        let c = sdp::candidate(&mut rng, &ice, 12, 34);
        let mut v: serde_json::Value = serde_json::from_str(&candidate_frame(B, &c)).unwrap();
        let data = v["Signal"]["data"].take();
        let relayed = json!({"Signal": {"sender": A, "data": data}}).to_string();
        let event = MatchboxEvent::decode(&relayed).unwrap();
        assert_eq!(event, MatchboxEvent::Candidate { sender: A.into(), candidate: c });
    }

    #[test]
    fn malformed_events_are_errors() {
        for bad in ["", "{}", r#"{"Hello":1}"#, r#"{"Signal":{"sender":"x","data":{"IceCandidate":"not json"}}}"#] {
            assert!(MatchboxEvent::decode(bad).is_err(), "{bad}");
        }
    }
}
