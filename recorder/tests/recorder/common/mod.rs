//! Test helpers: synthetic RTP packets, and readers for the written files that share no code with
//! the writers (a hand-written Ogg page parser with its own CRC, an IVF parser).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use rtc::rtp::Packet;
use rtc::rtp::header::{EXTENSION_PROFILE_ONE_BYTE, Header};

pub const MS: Duration = Duration::from_millis(1);

/// Opus TOC of config 15 (hybrid fullband, 20 ms frames), mono, code 0: 960 samples.
pub const TOC_20MS: u8 = 15 << 3;

pub fn rtp(ssrc: u32, seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> Packet {
    Packet {
        header: Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            marker,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    }
}

/// A 20 ms Opus packet whose body identifies it (`id`), `len` bytes long (at least 5).
pub fn opus_payload(id: u32, len: usize) -> Vec<u8> {
    let mut p = vec![TOC_20MS];
    p.extend_from_slice(&id.to_be_bytes());
    p.resize(len.max(5), 0xA5);
    p
}

/// Attach an RFC 6464 audio level (one-byte header extension, RFC 8285) to a packet.
pub fn with_audio_level(mut p: Packet, id: u8, voice: bool, level: u8) -> Packet {
    p.header.extension = true;
    p.header.extension_profile = EXTENSION_PROFILE_ONE_BYTE;
    p.header.set_extension(id, Bytes::from(vec![(u8::from(voice) << 7) | level])).expect("set extension");
    p
}

/// One Ogg page as read back from a file.
#[derive(Debug, Clone)]
pub struct Page {
    pub flags: u8,
    pub granule: i64,
    pub serial: u32,
    pub seq: u32,
    pub crc_ok: bool,
    pub lacing: Vec<u8>,
    pub body: Vec<u8>,
}

impl Page {
    pub fn bos(&self) -> bool {
        self.flags & 0x02 != 0
    }
    pub fn eos(&self) -> bool {
        self.flags & 0x04 != 0
    }
    pub fn continued(&self) -> bool {
        self.flags & 0x01 != 0
    }
}

/// CRC-32 of Ogg (RFC 3533 §6): polynomial 0x04c11db7, not reflected, initial value 0.
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
        }
    }
    crc
}

pub fn parse_pages(bytes: &[u8]) -> Vec<Page> {
    let mut pages = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        assert_eq!(&bytes[at..at + 4], b"OggS", "capture pattern at {at}");
        assert_eq!(bytes[at + 4], 0, "stream structure version");
        let flags = bytes[at + 5];
        let granule = i64::from_le_bytes(bytes[at + 6..at + 14].try_into().unwrap());
        let serial = u32::from_le_bytes(bytes[at + 14..at + 18].try_into().unwrap());
        let seq = u32::from_le_bytes(bytes[at + 18..at + 22].try_into().unwrap());
        let crc = u32::from_le_bytes(bytes[at + 22..at + 26].try_into().unwrap());
        let nseg = usize::from(bytes[at + 26]);
        let lacing = bytes[at + 27..at + 27 + nseg].to_vec();
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let end = at + 27 + nseg + body_len;
        let mut raw = bytes[at..end].to_vec();
        raw[22..26].fill(0);
        pages.push(Page {
            flags,
            granule,
            serial,
            seq,
            crc_ok: ogg_crc(&raw) == crc,
            lacing,
            body: bytes[at + 27 + nseg..end].to_vec(),
        });
        at = end;
    }
    pages
}

/// A packet reassembled from pages, with the granule of the page it ends on (RFC 3533 §6).
#[derive(Debug, Clone)]
pub struct OggPacket {
    pub data: Vec<u8>,
    pub page_index: usize,
    pub page_granule: i64,
    pub last_on_page: bool,
}

pub fn packets_of(pages: &[Page]) -> Vec<OggPacket> {
    let mut out: Vec<OggPacket> = Vec::new();
    let mut partial: Vec<u8> = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let mut offset = 0;
        let mut finished_here = Vec::new();
        for &l in &page.lacing {
            partial.extend_from_slice(&page.body[offset..offset + usize::from(l)]);
            offset += usize::from(l);
            if l < 255 {
                finished_here.push(std::mem::take(&mut partial));
            }
        }
        let n = finished_here.len();
        for (k, data) in finished_here.into_iter().enumerate() {
            out.push(OggPacket { data, page_index: i, page_granule: page.granule, last_on_page: k + 1 == n });
        }
    }
    assert!(partial.is_empty(), "unterminated packet at end of file");
    out
}

/// Opus packet duration (48 kHz samples) from its TOC (RFC 6716 §3.1), written independently.
pub fn opus_samples(p: &[u8]) -> u64 {
    let config = p[0] >> 3;
    let frame: u64 = match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    };
    let frames: u64 = match p[0] & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(p[1] & 0x3f),
    };
    frame * frames
}

/// The audio of an Ogg Opus file, checked for RFC 7845 structure on the way.
#[derive(Debug)]
pub struct OggOpus {
    pub channels: u8,
    pub pre_skip: u16,
    pub pages: Vec<Page>,
    /// Audio packets (headers excluded) with the granule at their end, computed from the durations.
    pub audio: Vec<(Vec<u8>, u64)>,
    pub final_granule: u64,
}

/// Read an Ogg Opus file and assert the structure RFC 7845 / RFC 3533 require.
pub fn read_ogg_opus(path: &Path) -> OggOpus {
    let bytes = std::fs::read(path).unwrap();
    let pages = parse_pages(&bytes);
    assert!(pages.len() >= 2, "ID and comment header pages");
    for (i, p) in pages.iter().enumerate() {
        assert!(p.crc_ok, "CRC of page {i}");
        assert_eq!(p.seq, u32::try_from(i).unwrap(), "page sequence numbers count up from 0");
        assert_eq!(p.serial, pages[0].serial, "one logical stream");
        assert_eq!(p.bos(), i == 0, "BOS only on the first page");
        assert_eq!(p.eos(), i + 1 == pages.len(), "EOS only on the last page");
    }
    let packets = packets_of(&pages);
    // RFC 7845 §3: the ID header alone on page 0; the comment header ends its page; granule 0.
    let head = &packets[0];
    assert_eq!(head.page_index, 0);
    assert!(head.last_on_page);
    assert_eq!(pages[0].granule, 0);
    assert_eq!(head.data.len(), 19);
    assert_eq!(&head.data[..8], b"OpusHead");
    assert_eq!(head.data[8], 1, "version");
    let channels = head.data[9];
    assert!(channels == 1 || channels == 2);
    let pre_skip = u16::from_le_bytes([head.data[10], head.data[11]]);
    assert_eq!(head.data[18], 0, "mapping family 0");
    let tags = &packets[1];
    assert_eq!(&tags.data[..8], b"OpusTags");
    assert!(tags.last_on_page, "comment header ends its page");
    assert_eq!(tags.page_granule, 0);
    // RFC 7845 §4: each page's granule = samples of all packets completed up to its end.
    let mut granule = 0u64;
    let mut audio = Vec::new();
    for p in &packets[2..] {
        assert!(p.page_index > tags.page_index, "audio starts on a new page");
        granule += opus_samples(&p.data);
        audio.push((p.data.clone(), granule));
        if p.last_on_page {
            assert_eq!(p.page_granule, i64::try_from(granule).unwrap(), "granule of page {}", p.page_index);
        }
    }
    let final_granule = u64::try_from(pages.last().unwrap().granule).unwrap();
    assert_eq!(final_granule, granule);

    // And the `ogg` crate's reader (checks CRCs too) agrees on packets and EOS.
    let mut reader = ogg::PacketReader::new(std::fs::File::open(path).unwrap());
    let mut n = 0;
    let mut last = None;
    while let Some(p) = reader.read_packet().unwrap() {
        assert_eq!(p.data, packets[n].data);
        n += 1;
        last = Some((p.last_in_stream(), p.absgp_page()));
    }
    assert_eq!(n, packets.len());
    assert_eq!(last, Some((true, final_granule)));

    OggOpus { channels, pre_skip, pages, audio, final_granule }
}

impl OggOpus {
    /// Ids of the real (test-made) packets in file order; PLC filler packets (≤ 2 bytes) skipped.
    pub fn ids(&self) -> Vec<u32> {
        self.audio
            .iter()
            .filter(|(d, _)| d.len() >= 5 && d[0] == TOC_20MS)
            .map(|(d, _)| u32::from_be_bytes(d[1..5].try_into().unwrap()))
            .collect()
    }

    /// Start (48 kHz samples) of the real packet with this id.
    pub fn start_of(&self, id: u32) -> u64 {
        let (d, end) = self
            .audio
            .iter()
            .find(|(d, _)| d.len() >= 5 && d[0] == TOC_20MS && d[1..5] == id.to_be_bytes())
            .expect("packet present");
        end - opus_samples(d)
    }

    /// Filler packets: (count, total samples). They must request PLC: zero-length frames.
    pub fn fillers(&self) -> (usize, u64) {
        let fill: Vec<_> = self.audio.iter().filter(|(d, _)| d.len() <= 2).collect();
        for (d, _) in &fill {
            assert_eq!(d.len(), 2, "code 3 packet: TOC + frame count, no frame data");
            assert_eq!(d[0] & 3, 3);
            assert_eq!(d[1] & 0xC0, 0, "CBR, no padding");
            assert!(opus_samples(d) <= 5760, "at most 120 ms");
        }
        (fill.len(), fill.iter().map(|(d, _)| opus_samples(d)).sum())
    }
}

/// One IVF file read back.
#[derive(Debug)]
pub struct Ivf {
    pub fourcc: [u8; 4],
    pub width: u16,
    pub height: u16,
    pub rate: u32,
    pub scale: u32,
    pub frame_count: u32,
    pub frames: Vec<(u64, Vec<u8>)>,
}

pub fn read_ivf(path: &Path) -> Ivf {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], b"DKIF");
    assert_eq!(u16::from_le_bytes([b[4], b[5]]), 0, "version");
    assert_eq!(u16::from_le_bytes([b[6], b[7]]), 32, "header size");
    let mut frames = Vec::new();
    let mut at = 32;
    while at < b.len() {
        let len = usize::try_from(u32::from_le_bytes(b[at..at + 4].try_into().unwrap())).unwrap();
        let pts = u64::from_le_bytes(b[at + 4..at + 12].try_into().unwrap());
        frames.push((pts, b[at + 12..at + 12 + len].to_vec()));
        at += 12 + len;
    }
    assert_eq!(at, b.len(), "no trailing garbage");
    Ivf {
        fourcc: b[8..12].try_into().unwrap(),
        width: u16::from_le_bytes([b[12], b[13]]),
        height: u16::from_le_bytes([b[14], b[15]]),
        rate: u32::from_le_bytes(b[16..20].try_into().unwrap()),
        scale: u32::from_le_bytes(b[20..24].try_into().unwrap()),
        frame_count: u32::from_le_bytes(b[24..28].try_into().unwrap()),
        frames,
    }
}

/// A VP8 key frame (RFC 6386 §9.1 header) of `width`×`height`, `len` bytes, body tagged with `id`.
pub fn vp8_key_frame(id: u32, width: u16, height: u16, len: usize) -> Vec<u8> {
    let mut f = vec![0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a];
    f.extend_from_slice(&width.to_le_bytes());
    f.extend_from_slice(&height.to_le_bytes());
    f.extend_from_slice(&id.to_be_bytes());
    f.resize(len.max(14), 0x3C);
    f
}

/// A VP8 inter frame (P bit set), `len` bytes, body tagged with `id`.
pub fn vp8_inter_frame(id: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0x51, 0x2a, 0x00];
    f.extend_from_slice(&id.to_be_bytes());
    f.resize(len.max(7), 0x7E);
    f
}

/// Packetize one VP8 frame into RTP payloads of at most `chunk` frame bytes (RFC 7741 §4):
/// descriptor with X/I (15-bit PictureID) on every packet, S=1 on the first; marker on the last.
pub fn vp8_packets(frame: &[u8], chunk: usize, picture_id: u16, ssrc: u32, seq: &mut u16, ts: u32) -> Vec<Packet> {
    let chunks: Vec<&[u8]> = frame.chunks(chunk).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let s = if i == 0 { 0x10 } else { 0x00 };
            let pid = picture_id & 0x7fff;
            let mut payload = vec![0x80 | s, 0x80, 0x80 | (pid >> 8) as u8, (pid & 0xff) as u8];
            payload.extend_from_slice(c);
            let p = rtp(ssrc, *seq, ts, i + 1 == n, payload);
            *seq = seq.wrapping_add(1);
            p
        })
        .collect()
}
