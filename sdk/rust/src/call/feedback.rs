//! An interceptor that counts the key frame requests (RTCP PLI and FIR)
//! the remote peer sends about the video this call sends.
//!
//! webrtc-rs 0.21 neither hands inbound RTCP to the application (unless an
//! interceptor marks it) nor counts received PLIs in its statistics (its
//! `process_read_rtcp_for_stats` is never called), so this one, last in the
//! chain, counts them and passes every packet on unchanged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Where the counter sits in the interceptor chain: after every built-in one.
pub(super) const SLOT: usize = 14_000;

/// Counts inbound PLI and FIR packets into a shared counter.
pub(super) struct KeyFrameRequestCounter {
    count: Arc<AtomicU64>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl KeyFrameRequestCounter {
    pub(super) fn new(count: Arc<AtomicU64>) -> Self {
        KeyFrameRequestCounter { count, read: VecDeque::new(), write: VecDeque::new() }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyFrameRequestCounter {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests = packets
                .iter()
                .filter(|p| p.as_any().is::<PictureLossIndication>() || p.as_any().is::<FullIntraRequest>())
                .count();
            if requests > 0 {
                self.count.fetch_add(requests as u64, Ordering::Relaxed);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyFrameRequestCounter {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
