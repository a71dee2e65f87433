//! The relay's fast path for `sdp.offer`, `sdp.answer` and
//! `ice.candidate`, most of what a signaling server reads.
//!
//! The typed path turns a frame into a [`ClientMessage`] and then writes a
//! `ServerMessage`. For an SDP, that decodes about 3.5 KB of JSON string,
//! with its `\r\n` escapes, and encodes it again. It also buffers every
//! field once more, because `ClientMessage` is a tagged enum. Here the
//! frame is read in one borrowing pass into [`Signal`]. The peer is then
//! written the client's own SDP bytes, with `from` added
//! ([`Signal::write`]).
//!
//! An ICE candidate is passed on as the client wrote it too, when it has
//! only the fields of [`IceCandidate`] (read once more, borrowed, to check
//! them); one with other fields is re-written from its typed form, which
//! leaves them out, as the typed path does.
//!
//! Only frames this path can vouch for take it: a well-formed relay
//! message whose SDP is a JSON string under [`MAX_SDP_BYTES`] (a candidate
//! under [`MAX_CANDIDATE_BYTES`]) with no `\u` escape. A lone surrogate
//! there would pass the raw read but fail the peer's parser. Anything
//! else, valid or not, goes the typed way, which owns every error code. A
//! client therefore sees the same messages on both paths (the tests
//! below). The API tests relay through it with real clients, among them
//! the acks and `not_in_room` errors of
//! `only_the_sessions_two_participants_may_join_or_relay`.

use std::borrow::Cow;

use parley_domain::protocol::{IceCandidate, MAX_CANDIDATE_BYTES, MAX_SDP_BYTES};
use parley_domain::{SessionId, UserId};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::connection::MAX_REQUEST_ID;

/// A relay message read for the fast path.
#[derive(Debug)]
pub(crate) struct Signal<'a> {
    /// `sdp.offer`, `sdp.answer` or `ice.candidate`.
    pub(crate) kind: &'static str,
    /// The request id, if any (acked with no result).
    pub(crate) id: Option<Cow<'a, str>>,
    /// The session whose room the sender is in, as the client wrote it
    /// (checked as a [`SessionId`]; borrowed unless it has escapes).
    pub(crate) session_id: Cow<'a, str>,
    /// Who it is for (`None`: the other participant).
    pub(crate) to: Option<UserId>,
    payload: Payload<'a>,
}

#[derive(Debug)]
enum Payload<'a> {
    /// The SDP (a JSON string, quotes included) or the candidate (a JSON
    /// object of [`CandidateFields`]) as the client wrote it.
    Raw(&'a RawValue),
    /// A candidate with fields [`IceCandidate`] does not have, re-written
    /// from its typed form (its unknown fields are not passed on).
    Candidate(IceCandidate),
}

/// The fields of [`IceCandidate`], borrowed, and no others: a candidate
/// that reads as this is passed on byte for byte. Its `candidate` is
/// checked against [`MAX_CANDIDATE_BYTES`] decoded, as on the typed path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[allow(dead_code)] // read to check the shape; only `candidate` is used
struct CandidateFields<'a> {
    #[serde(borrow)]
    candidate: Cow<'a, str>,
    #[serde(borrow, default)]
    sdp_mid: Option<Text<'a>>,
    #[serde(default, rename = "sdpMLineIndex")]
    sdp_m_line_index: Option<u16>,
    #[serde(borrow, default)]
    username_fragment: Option<Text<'a>>,
}

/// A string field, borrowed from the frame unless it has escapes. serde
/// borrows a `Cow<str>` only where it is the field's own type: inside an
/// `Option` it is always copied (an allocation per field per message, 2.9
/// of the 5.1 a relayed candidate cost: perf on `malloc`).
#[derive(Debug, Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// Every field a relay message may have; others are ignored, as on the
/// typed path.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    id: Option<Text<'a>>,
    #[serde(borrow, default)]
    session_id: Option<Text<'a>>,
    #[serde(default)]
    to: Option<UserId>,
    #[serde(borrow, default)]
    sdp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    candidate: Option<&'a RawValue>,
}

/// Reads `text` as a relay message the fast path can carry; `None` sends
/// it the typed way (another type, an error, a case left to it).
pub(crate) fn read(text: &str) -> Option<Signal<'_>> {
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    if frame.id.as_ref().is_some_and(|id| id.0.len() > MAX_REQUEST_ID) {
        return None;
    }
    let (kind, payload) = match &*frame.kind {
        "sdp.offer" | "sdp.answer" => {
            let sdp = frame.sdp?;
            let raw = sdp.get();
            // Quotes included, so the decoded SDP is at most len - 2 bytes.
            if !raw.starts_with('"') || raw.len() - 2 > MAX_SDP_BYTES || raw.contains("\\u") {
                return None;
            }
            let kind = if frame.kind == "sdp.offer" { "sdp.offer" } else { "sdp.answer" };
            (kind, Payload::Raw(sdp))
        }
        "ice.candidate" => {
            let raw = frame.candidate?;
            let known = (!raw.get().contains("\\u"))
                .then(|| serde_json::from_str::<CandidateFields<'_>>(raw.get()).ok())
                .flatten();
            let (line, payload) = match known {
                Some(fields) => (fields.candidate.len(), Payload::Raw(raw)),
                None => {
                    let candidate = serde_json::from_str::<IceCandidate>(raw.get()).ok()?;
                    (candidate.candidate.len(), Payload::Candidate(candidate))
                }
            };
            if line > MAX_CANDIDATE_BYTES {
                return None;
            }
            ("ice.candidate", payload)
        }
        _ => return None,
    };
    // An id that is not one goes the typed way, which answers it with
    // `invalid_field`.
    let session_id = frame.session_id.map(|s| s.0).filter(|s| SessionId::check(s).is_ok())?;
    Some(Signal { kind, id: frame.id.map(|id| id.0), session_id, to: frame.to, payload })
}

impl Signal<'_> {
    /// Writes the message the peer gets: the `ServerMessage` of the same
    /// type from `from`, as one JSON object. Its fields come in the order
    /// serde writes them.
    pub(crate) fn write(&self, from: &UserId, buf: &mut Vec<u8>) -> serde_json::Result<()> {
        buf.extend_from_slice(b"{\"type\":\"");
        buf.extend_from_slice(self.kind.as_bytes());
        buf.extend_from_slice(b"\",\"session_id\":");
        serde_json::to_writer(&mut *buf, &self.session_id)?;
        buf.extend_from_slice(b",\"from\":");
        serde_json::to_writer(&mut *buf, from)?;
        match &self.payload {
            Payload::Raw(raw) => {
                buf.extend_from_slice(if self.kind == "ice.candidate" { b",\"candidate\":" } else { b",\"sdp\":" });
                buf.extend_from_slice(raw.get().as_bytes());
            }
            Payload::Candidate(candidate) => {
                buf.extend_from_slice(b",\"candidate\":");
                serde_json::to_writer(&mut *buf, candidate)?;
            }
        }
        buf.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::parse;
    use parley_domain::protocol::{ClientMessage, ServerMessage};

    /// What the typed path would send the peer for `text`.
    fn typed(text: &str, from: &UserId) -> ServerMessage {
        match parse(text).unwrap().msg {
            ClientMessage::SdpOffer { session_id, sdp, .. } => {
                ServerMessage::SdpOffer { session_id, from: from.clone(), sdp }
            }
            ClientMessage::SdpAnswer { session_id, sdp, .. } => {
                ServerMessage::SdpAnswer { session_id, from: from.clone(), sdp }
            }
            ClientMessage::IceCandidate { session_id, candidate, .. } => {
                ServerMessage::IceCandidate { session_id, from: from.clone(), candidate }
            }
            other => panic!("not a relay message: {other:?}"),
        }
    }

    fn fast(text: &str, from: &UserId) -> ServerMessage {
        let signal = read(text).expect("fast path");
        let mut buf = Vec::new();
        signal.write(from, &mut buf).unwrap();
        serde_json::from_slice(&buf).unwrap()
    }

    #[test]
    fn the_peer_gets_the_same_message_on_both_paths() {
        let from = UserId::parse("u_seeker").unwrap();
        let sdp = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=\"quoted\" \\ back/slash\r\nt=0 0\r\n";
        let sdp_json = serde_json::to_string(sdp).unwrap();
        for text in [
            format!(r#"{{"type":"sdp.offer","session_id":"ses_1","sdp":{sdp_json}}}"#),
            format!(r#"{{"id":"7","type":"sdp.answer","sdp":{sdp_json},"session_id":"ses_1","to":"rec_1"}}"#),
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"extra":1},"also":"ignored"}"#.to_owned(),
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":"a=\/escaped\tslash"}"#.to_owned(),
            r#"{"type":"sdp.answer","session_id":"ses\u005f1","sdp":"x"}"#.to_owned(),
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate": { "candidate" : "candidate:2 1 udp 1 10.0.0.1 9 typ host", "sdpMid":null,"sdpMLineIndex":1,"usernameFragment":"u\/f"}}"#.to_owned(),
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"\u0063andidate:3 1 udp 1 10.0.0.1 9 typ host"}}"#.to_owned(),
        ] {
            assert_eq!(fast(&text, &from), typed(&text, &from), "{text}");
        }
        let signal = read(r#"{"id":"7","type":"sdp.answer","sdp":"x","session_id":"ses_1","to":"rec_1"}"#).unwrap();
        assert_eq!((signal.id.as_deref(), signal.to.as_ref().map(UserId::as_str)), (Some("7"), Some("rec_1")));
        // Read where they lie in the frame, not copied (unless escaped).
        assert!(matches!((&signal.id, &signal.session_id), (Some(Cow::Borrowed(_)), Cow::Borrowed(_))), "{signal:?}");
        let escaped = read(r#"{"type":"sdp.answer","sdp":"x","session_id":"ses\u005f1"}"#).unwrap();
        assert!(matches!(&escaped.session_id, Cow::Owned(s) if s == "ses_1"), "{escaped:?}");
    }

    #[test]
    fn a_candidate_of_known_fields_is_passed_on_as_written_and_others_are_rewritten() {
        let from = UserId::parse("u_seeker").unwrap();
        let written = |text: &str| {
            let mut buf = Vec::new();
            read(text).expect("fast path").write(&from, &mut buf).unwrap();
            String::from_utf8(buf).unwrap()
        };
        let known = r#"{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"abcd"}"#;
        let text = format!(r#"{{"type":"ice.candidate","session_id":"ses_1","candidate":{known}}}"#);
        assert!(written(&text).ends_with(&format!(r#","candidate":{known}}}"#)), "{}", written(&text));
        let unknown =
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"candidate:1","extra":1}}"#;
        assert!(!written(unknown).contains("extra"), "unknown fields are left out: {}", written(unknown));
        let escaped = r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"\u0063andidate:1"}}"#;
        assert!(written(escaped).contains(r#""candidate":"candidate:1""#), "{}", written(escaped));
    }

    #[test]
    fn frames_it_cannot_vouch_for_go_the_typed_way() {
        let long = format!(r#"{{"type":"sdp.offer","session_id":"ses_1","sdp":"{}"}}"#, "x".repeat(MAX_SDP_BYTES + 1));
        let candidate = format!(
            r#"{{"type":"ice.candidate","session_id":"ses_1","candidate":{{"candidate":"{}"}}}}"#,
            "c".repeat(MAX_CANDIDATE_BYTES + 1)
        );
        let id = format!(r#"{{"id":"{}","type":"sdp.offer","session_id":"ses_1","sdp":"x"}}"#, "i".repeat(65));
        for text in [
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":"lone \ud800 surrogate"}"#,
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":"\u0076=0"}"#,
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":7}"#,
            r#"{"type":"sdp.offer","session_id":"ses_1"}"#,
            r#"{"type":"sdp.offer","sdp":"x"}"#,
            r#"{"type":"sdp.offer","session_id":"a b","sdp":"x"}"#,
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":"x","sdp":"y"}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"sdpMid":"0"}}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"c","candidate":"d"}}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"lone \ud800"}}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":{"candidate":"c","sdpMLineIndex":-1}}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","candidate":"c"}"#,
            r#"{"type":"ice.candidate","session_id":"ses_1","sdp":"x"}"#,
            r#"{"type":"room.join","session_id":"ses_1"}"#,
            r#"{"type":"sdp.offer","session_id":"ses_1","sdp":"x""#,
            &long,
            &candidate,
            &id,
        ] {
            assert!(read(text).is_none(), "{text}");
        }
        let at_limit = format!(r#"{{"type":"sdp.offer","session_id":"ses_1","sdp":"{}"}}"#, "x".repeat(MAX_SDP_BYTES));
        assert!(read(&at_limit).is_some(), "an SDP of exactly the limit is relayed");
    }
}
