//! VP8 RTP depacketization (RFC 7741) and key frame headers (RFC 6386 §9.1).

/// VP8's RTP clock rate (RFC 7741 §4.1): 90 kHz.
pub const VP8_CLOCK_RATE: u32 = 90_000;

/// The parts of the VP8 payload descriptor (RFC 7741 §4.2) the recorder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// S bit: this packet starts a VP8 partition.
    pub start: bool,
    /// Partition index (PID).
    pub partition: u8,
    /// Length of the descriptor in bytes; the VP8 payload follows it.
    pub len: usize,
}

impl Descriptor {
    /// Does this packet start a frame (start of partition 0, RFC 7741 §4.2)?
    pub fn starts_frame(&self) -> bool {
        self.start && self.partition == 0
    }
}

/// Parse the payload descriptor at the start of a VP8 RTP payload (RFC 7741 §4.2). `None` when
/// the payload is too short to hold the descriptor and at least one byte of VP8 data.
///
/// Written here rather than using `rtc::rtp::codec::vp8::Vp8Packet` because that depacketizer
/// rejects payloads shorter than 4 bytes (legitimate tail fragments) and keeps the I/L/T/K bits of
/// the previous packet when X is 0 if reused.
pub fn parse_descriptor(payload: &[u8]) -> Option<Descriptor> {
    let first = *payload.first()?;
    let mut len = 1;
    if first & 0x80 != 0 {
        let ext = *payload.get(1)?;
        len += 1;
        if ext & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits (M flag).
            let pic = *payload.get(len)?;
            len += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            len += 1; // L: TL0PICIDX
        }
        if ext & 0x30 != 0 {
            len += 1; // T and/or K: TID/Y/KEYIDX
        }
    }
    (payload.len() > len).then_some(Descriptor { start: first & 0x10 != 0, partition: first & 0x07, len })
}

/// Is this VP8 frame (the reassembled payload) a key frame? Frame tag P bit = 0 (RFC 6386 §9.1).
pub fn is_key_frame(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// Width and height in pixels from a key frame header (RFC 6386 §9.1): the 3-byte frame tag, the
/// start code `9d 01 2a`, then 14-bit width and height (the top 2 bits are scaling). `None` for an
/// inter frame or a malformed header.
pub fn key_frame_size(frame: &[u8]) -> Option<(u16, u16)> {
    if !is_key_frame(frame) || frame.get(3..6)? != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([*frame.get(6)?, *frame.get(7)?]) & 0x3fff;
    let height = u16::from_le_bytes([*frame.get(8)?, *frame.get(9)?]) & 0x3fff;
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_lengths() {
        // Minimal: S=1, PID=0.
        assert_eq!(parse_descriptor(&[0x10, 0xAA]), Some(Descriptor { start: true, partition: 0, len: 1 }));
        // X, I with 15-bit PictureID, L, T: 1 + 1 + 2 + 1 + 1 = 6.
        assert_eq!(parse_descriptor(&[0x90, 0xE0, 0x80, 0x01, 0x05, 0x40, 0xAA]).map(|d| d.len), Some(6));
        // X, I with 7-bit PictureID, K only; continuation packet of partition 1.
        assert_eq!(
            parse_descriptor(&[0x81, 0x90, 0x12, 0x03, 0xAA]),
            Some(Descriptor { start: false, partition: 1, len: 4 })
        );
        // Descriptor but no payload.
        assert_eq!(parse_descriptor(&[0x90, 0xE0, 0x80, 0x01, 0x05, 0x40]), None);
        assert_eq!(parse_descriptor(&[]), None);
    }

    #[test]
    fn key_frame_dimensions() {
        let key = [0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0xff];
        assert_eq!(key_frame_size(&key), Some((640, 480)));
        assert!(is_key_frame(&key));
        let inter = [0x51, 0x2a, 0x00, 0xff];
        assert!(!is_key_frame(&inter));
        assert_eq!(key_frame_size(&inter), None);
    }
}
