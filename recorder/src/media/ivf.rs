//! IVF container writer (the libvpx `ivfenc` format): a 32-byte file header, then per frame a
//! 12-byte header (size u32, timestamp u64, little endian) and the frame.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};

/// IVF file header length in bytes.
pub const HEADER_LEN: u16 = 32;

/// Writes VP8 frames to an IVF file with a 1/`timebase_hz` timebase.
pub struct IvfFile {
    file: BufWriter<File>,
    frames: u32,
}

impl IvfFile {
    /// Write the file header: `DKIF`, version 0, header length 32, fourcc `VP80`, width and height
    /// (0 until fixed up by [`IvfFile::finish`]), timebase denominator `timebase_hz` and numerator 1
    /// (timestamps count 1/`timebase_hz` seconds), frame count (fixed up on finish).
    pub fn create(mut file: BufWriter<File>, timebase_hz: u32) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(usize::from(HEADER_LEN));
        h.extend_from_slice(b"DKIF");
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&HEADER_LEN.to_le_bytes());
        h.extend_from_slice(b"VP80");
        h.extend_from_slice(&0u16.to_le_bytes()); // width, px
        h.extend_from_slice(&0u16.to_le_bytes()); // height, px
        h.extend_from_slice(&timebase_hz.to_le_bytes()); // timebase denominator ("rate")
        h.extend_from_slice(&1u32.to_le_bytes()); // timebase numerator ("scale")
        h.extend_from_slice(&0u32.to_le_bytes()); // frame count
        h.extend_from_slice(&0u32.to_le_bytes()); // unused
        file.write_all(&h)?;
        Ok(IvfFile { file, frames: 0 })
    }

    /// Append one frame with timestamp `pts` in timebase units.
    pub fn write_frame(&mut self, frame: &[u8], pts: u64) -> std::io::Result<()> {
        let len = u32::try_from(frame.len()).map_err(|_| std::io::Error::other("VP8 frame over 4 GiB"))?;
        self.file.write_all(&len.to_le_bytes())?;
        self.file.write_all(&pts.to_le_bytes())?;
        self.file.write_all(frame)?;
        self.frames = self.frames.saturating_add(1);
        Ok(())
    }

    /// Fix up width, height (px) and frame count in the header, flush and sync.
    pub fn finish(mut self, width: u16, height: u16) -> std::io::Result<()> {
        self.file.flush()?;
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(12))?;
        file.write_all(&width.to_le_bytes())?;
        file.write_all(&height.to_le_bytes())?;
        file.seek(SeekFrom::Start(24))?;
        file.write_all(&self.frames.to_le_bytes())?;
        file.seek(SeekFrom::End(0))?;
        file.sync_data()
    }
}
