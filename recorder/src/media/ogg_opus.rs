//! Ogg Opus file framing (RFC 7845) on top of the `ogg` crate's [`PacketWriter`], which does the
//! page layout, lacing and CRC (RFC 3533).
//!
//! Layout: page 0 holds only the ID header (`OpusHead`, beginning-of-stream flag, granule 0); the
//! comment header (`OpusTags`) ends the next page (granule 0); audio starts on a fresh page
//! (RFC 7845 §3). Audio pages are ended every [`PACKETS_PER_PAGE`] packets; each carries the
//! granule position (48 kHz samples) at the end of its last completed packet (RFC 7845 §4). The
//! last packet is held back until the next one or `finish`, so the final page can carry the
//! end-of-stream flag without writing any packet twice.

use std::fs::File;
use std::io::{BufWriter, Write};

use ogg::{PacketWriteEndInfo, PacketWriter};

use super::opus::OPUS_CLOCK_RATE;

/// Opus packets per Ogg page (~1 s of 20 ms packets): keeps pages small so a crash loses little
/// and seeking stays cheap (RFC 7845 §6 suggests pages of at most ~1 s).
pub const PACKETS_PER_PAGE: u32 = 50;

/// Vendor string of the `OpusTags` header (RFC 7845 §5.2).
pub const VENDOR: &str = concat!("parley-recorder ", env!("CARGO_PKG_VERSION"));

struct Held {
    data: Vec<u8>,
    granule: u64,
    ends_page: bool,
}

/// One Ogg Opus logical stream being written to a file.
pub struct OggOpusFile {
    writer: PacketWriter<'static, BufWriter<File>>,
    serial: u32,
    held: Option<Held>,
    packets_in_page: u32,
    headers_written: bool,
}

impl OggOpusFile {
    /// Wrap an open file; nothing is written until the first packet (the channel count in the ID
    /// header comes from it) or `finish`.
    pub fn new(file: BufWriter<File>, serial: u32) -> Self {
        OggOpusFile { writer: PacketWriter::new(file), serial, held: None, packets_in_page: 0, headers_written: false }
    }

    /// Have the ID and comment headers been written?
    pub fn headers_written(&self) -> bool {
        self.headers_written
    }

    /// Write the ID header (own page) and queue the comment header (RFC 7845 §5.1, §5.2).
    /// `channels` is 1 or 2 (channel mapping family 0). Pre-skip is 0: the recording starts
    /// mid-stream, and a non-zero pre-skip would shift the audio against the other tracks.
    pub fn write_headers(&mut self, channels: u8) -> std::io::Result<()> {
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&0u16.to_le_bytes()); // pre-skip, 48 kHz samples
        head.extend_from_slice(&OPUS_CLOCK_RATE.to_le_bytes()); // input sample rate, Hz (informational)
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain, Q7.8 dB
        head.push(0); // channel mapping family 0: mono or stereo, no table
        self.writer.write_packet(head, self.serial, PacketWriteEndInfo::EndPage, 0)?;

        let vendor = VENDOR.as_bytes();
        let mut tags = Vec::with_capacity(16 + vendor.len());
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&u32::try_from(vendor.len()).unwrap_or(0).to_le_bytes());
        tags.extend_from_slice(vendor);
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        self.held = Some(Held { data: tags, granule: 0, ends_page: true });
        self.headers_written = true;
        Ok(())
    }

    /// Queue one audio packet whose last sample is at `granule` (48 kHz samples since media time 0).
    /// Writes the previously queued packet.
    pub fn write_audio(&mut self, data: Vec<u8>, granule: u64) -> std::io::Result<()> {
        self.write_held(false)?;
        self.held = Some(Held { data, granule, ends_page: false });
        Ok(())
    }

    /// Write the queued packet on an end-of-stream page and flush. Writes the headers first if no
    /// packet ever came (a valid stream without audio).
    pub fn finish(mut self) -> std::io::Result<()> {
        if !self.headers_written {
            self.write_headers(1)?;
        }
        self.write_held(true)?;
        let mut file = self.writer.into_inner();
        file.flush()?;
        file.get_ref().sync_data()
    }

    fn write_held(&mut self, last: bool) -> std::io::Result<()> {
        let Some(held) = self.held.take() else { return Ok(()) };
        let info = if last {
            PacketWriteEndInfo::EndStream
        } else if held.ends_page || self.packets_in_page + 1 >= PACKETS_PER_PAGE {
            PacketWriteEndInfo::EndPage
        } else {
            PacketWriteEndInfo::NormalPacket
        };
        self.packets_in_page = match info {
            PacketWriteEndInfo::NormalPacket => self.packets_in_page + 1,
            _ => 0,
        };
        self.writer.write_packet(held.data, self.serial, info, held.granule)
    }
}
