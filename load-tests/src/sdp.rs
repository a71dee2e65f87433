//! Synthetic but realistic signaling payloads: browser-like SDP offers and
//! answers (~3.5 KB, audio + video + data channel) and trickled ICE host
//! candidates.
//!
//! Each carries a send timestamp ([`crate::clock::now_ns`]) so that the
//! receiver can measure the one-way relay latency, and candidates a
//! sequence number: SDP as an `a=x-parley-ts:<ns>` session attribute,
//! candidates as `parley-ts <ns>` / `parley-seq <n>` extension attributes.
//! The server relays both verbatim.

use std::fmt::Write;

use parley_domain::protocol::IceCandidate;

/// The SDP session attribute carrying the send time.
const SDP_TS_ATTR: &str = "a=x-parley-ts:";
/// The candidate extension attribute carrying the send time.
const CAND_TS_ATTR: &str = " parley-ts ";
/// The candidate extension attribute carrying the sequence number.
const CAND_SEQ_ATTR: &str = " parley-seq ";

/// A small deterministic generator (SplitMix64), so payloads differ per
/// pair without a random number crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` characters of the ICE alphabet (`[A-Za-z0-9+/]`).
    pub fn ice_chars(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..len).map(|_| ALPHABET[(self.next_u64() % 64) as usize] as char).collect()
    }

    /// A 32-bit SSRC.
    pub fn ssrc(&mut self) -> u32 {
        self.next_u64() as u32
    }
}

/// Which side a description is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The seeker's offer (`a=setup:actpass`).
    Offer,
    /// The consultant's answer (`a=setup:active`).
    Answer,
}

/// The ICE credentials a side uses in its description and candidates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// `a=ice-ufrag`.
    pub ufrag: String,
    /// `a=ice-pwd`.
    pub pwd: String,
}

impl IceCredentials {
    /// Fresh credentials (4-character ufrag, 24-character password, as Chrome).
    pub fn new(rng: &mut Rng) -> IceCredentials {
        IceCredentials { ufrag: rng.ice_chars(4), pwd: rng.ice_chars(24) }
    }
}

/// A browser-like SDP (Chrome's shape: BUNDLEd Opus audio, VP8/VP9/H264/AV1
/// video with RTX, and an SCTP data channel), about 3.5 KB, stamped with
/// `ts_ns`.
pub fn description(kind: Kind, rng: &mut Rng, ice: &IceCredentials, ts_ns: u64) -> String {
    let fingerprint: Vec<String> = (0..32).map(|_| format!("{:02X}", rng.next_u64() as u8)).collect();
    let fingerprint = fingerprint.join(":");
    let setup = match kind {
        Kind::Offer => "actpass",
        Kind::Answer => "active",
    };
    let stream = rng.ice_chars(36).replace(['+', '/'], "x");
    let audio_track = rng.ice_chars(36).replace(['+', '/'], "y");
    let video_track = rng.ice_chars(36).replace(['+', '/'], "z");
    let cname = rng.ice_chars(16);
    let (a_ssrc, v_ssrc, rtx_ssrc) = (rng.ssrc(), rng.ssrc(), rng.ssrc());
    let mut s = String::with_capacity(4096);
    let mut line = |l: &str| {
        s.push_str(l);
        s.push_str("\r\n");
    };
    line("v=0");
    line(&format!("o=- {} 2 IN IP4 127.0.0.1", rng.next_u64() >> 2));
    line("s=-");
    line("t=0 0");
    line(&format!("{SDP_TS_ATTR}{ts_ns}"));
    line("a=group:BUNDLE 0 1 2");
    line("a=extmap-allow-mixed");
    line(&format!("a=msid-semantic: WMS {stream}"));
    let transport = |line: &mut dyn FnMut(&str), mid: u8| {
        line("c=IN IP4 0.0.0.0");
        if mid < 2 {
            line("a=rtcp:9 IN IP4 0.0.0.0");
        }
        line(&format!("a=ice-ufrag:{}", ice.ufrag));
        line(&format!("a=ice-pwd:{}", ice.pwd));
        line("a=ice-options:trickle");
        line(&format!("a=fingerprint:sha-256 {fingerprint}"));
        line(&format!("a=setup:{setup}"));
        line(&format!("a=mid:{mid}"));
    };
    // Audio.
    line("m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126");
    transport(&mut line, 0);
    line("a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level");
    line("a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time");
    line("a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01");
    line("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid");
    line("a=sendrecv");
    line(&format!("a=msid:{stream} {audio_track}"));
    line("a=rtcp-mux");
    line("a=rtpmap:111 opus/48000/2");
    line("a=rtcp-fb:111 transport-cc");
    line("a=fmtp:111 minptime=10;useinbandfec=1");
    line("a=rtpmap:63 red/48000/2");
    line("a=fmtp:63 111/111");
    line("a=rtpmap:9 G722/8000");
    line("a=rtpmap:0 PCMU/8000");
    line("a=rtpmap:8 PCMA/8000");
    line("a=rtpmap:13 CN/8000");
    line("a=rtpmap:110 telephone-event/48000");
    line("a=rtpmap:126 telephone-event/8000");
    line(&format!("a=ssrc:{a_ssrc} cname:{cname}"));
    line(&format!("a=ssrc:{a_ssrc} msid:{stream} {audio_track}"));
    // Video.
    line("m=video 9 UDP/TLS/RTP/SAVPF 96 97 98 99 100 101 45 46");
    transport(&mut line, 1);
    line("a=extmap:14 urn:ietf:params:rtp-hdrext:toffset");
    line("a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time");
    line("a=extmap:13 urn:3gpp:video-orientation");
    line("a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01");
    line("a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid");
    line("a=sendrecv");
    line(&format!("a=msid:{stream} {video_track}"));
    line("a=rtcp-mux");
    line("a=rtcp-rsize");
    for (pt, codec, fmtp, rtx) in [
        (96, "VP8", None, 97),
        (98, "VP9", Some("profile-id=0"), 99),
        (100, "H264", Some("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"), 101),
        (45, "AV1", Some("level-idx=5;profile=0;tier=0"), 46),
    ] {
        line(&format!("a=rtpmap:{pt} {codec}/90000"));
        for fb in ["goog-remb", "transport-cc", "ccm fir", "nack", "nack pli"] {
            line(&format!("a=rtcp-fb:{pt} {fb}"));
        }
        if let Some(fmtp) = fmtp {
            line(&format!("a=fmtp:{pt} {fmtp}"));
        }
        line(&format!("a=rtpmap:{rtx} rtx/90000"));
        line(&format!("a=fmtp:{rtx} apt={pt}"));
    }
    line(&format!("a=ssrc-group:FID {v_ssrc} {rtx_ssrc}"));
    for ssrc in [v_ssrc, rtx_ssrc] {
        line(&format!("a=ssrc:{ssrc} cname:{cname}"));
        line(&format!("a=ssrc:{ssrc} msid:{stream} {video_track}"));
    }
    // Data channel.
    line("m=application 9 UDP/DTLS/SCTP webrtc-datachannel");
    transport(&mut line, 2);
    line("a=sctp-port:5000");
    line("a=max-message-size:262144");
    s
}

/// A trickled host candidate in Chrome's format for `ice`, on m-line 0,
/// stamped with `seq` and `ts_ns`.
pub fn candidate(rng: &mut Rng, ice: &IceCredentials, seq: u64, ts_ns: u64) -> IceCandidate {
    let mut c = String::with_capacity(200);
    let foundation = rng.next_u64() as u32;
    let port = 49152 + (rng.next_u64() % 16000) as u16;
    let _ = write!(
        c,
        "candidate:{foundation} 1 udp 2122260223 127.0.0.1 {port} typ host generation 0 ufrag {} network-id 1 \
         network-cost 10{CAND_SEQ_ATTR}{seq}{CAND_TS_ATTR}{ts_ns}",
        ice.ufrag
    );
    IceCandidate {
        candidate: c,
        sdp_mid: Some("0".into()),
        sdp_m_line_index: Some(0),
        username_fragment: Some(ice.ufrag.clone()),
    }
}

/// The send time stamped in an SDP by [`description`].
pub fn sdp_ts(sdp: &str) -> Option<u64> {
    let start = sdp.find(SDP_TS_ATTR)? + SDP_TS_ATTR.len();
    let digits = &sdp[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// The number following `attr` in a candidate line.
fn candidate_number(candidate: &str, attr: &str) -> Option<u64> {
    let start = candidate.find(attr)? + attr.len();
    candidate[start..].split(' ').next()?.parse().ok()
}

/// The send time stamped in a candidate by [`candidate`].
pub fn candidate_ts(candidate: &str) -> Option<u64> {
    candidate_number(candidate, CAND_TS_ATTR)
}

/// The sequence number stamped in a candidate by [`candidate`].
pub fn candidate_seq(candidate: &str) -> Option<u64> {
    candidate_number(candidate, CAND_SEQ_ATTR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_are_browser_sized_and_carry_their_timestamp() {
        let mut rng = Rng::new(7);
        let ice = IceCredentials::new(&mut rng);
        for kind in [Kind::Offer, Kind::Answer] {
            let sdp = description(kind, &mut rng, &ice, 123_456_789);
            assert!((3300..=3900).contains(&sdp.len()), "{kind:?} is {} bytes", sdp.len());
            assert!(sdp.len() <= parley_domain::protocol::MAX_SDP_BYTES);
            assert_eq!(sdp_ts(&sdp), Some(123_456_789));
            assert!(sdp.starts_with("v=0\r\n") && sdp.ends_with("\r\n"));
            for m in ["m=audio ", "m=video ", "m=application "] {
                assert_eq!(sdp.matches(m).count(), 1, "{m}");
            }
            assert!(sdp.contains(&format!("a=ice-ufrag:{}", ice.ufrag)));
        }
        let offer = description(Kind::Offer, &mut rng, &ice, 1);
        assert!(offer.contains("a=setup:actpass"));
        assert!(description(Kind::Answer, &mut rng, &ice, 1).contains("a=setup:active"));
    }

    #[test]
    fn candidates_carry_sequence_and_timestamp() {
        let mut rng = Rng::new(1);
        let ice = IceCredentials::new(&mut rng);
        let c = candidate(&mut rng, &ice, 42, 987_654_321_000);
        assert!(c.candidate.starts_with("candidate:"));
        assert!(c.candidate.contains(" typ host "));
        assert!(c.candidate.len() <= parley_domain::protocol::MAX_CANDIDATE_BYTES);
        assert_eq!(candidate_seq(&c.candidate), Some(42));
        assert_eq!(candidate_ts(&c.candidate), Some(987_654_321_000));
        assert_eq!(c.username_fragment.as_deref(), Some(ice.ufrag.as_str()));
        assert_eq!(candidate_ts("candidate:1 1 udp 1 127.0.0.1 1 typ host"), None);
        assert_eq!(sdp_ts("v=0\r\n"), None);
    }

    #[test]
    fn the_generator_is_deterministic_per_seed() {
        assert_eq!(Rng::new(3).next_u64(), Rng::new(3).next_u64());
        assert_ne!(Rng::new(3).next_u64(), Rng::new(4).next_u64());
        assert_eq!(Rng::new(5).ice_chars(24).len(), 24);
    }
}
