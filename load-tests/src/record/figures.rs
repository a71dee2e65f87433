//! The pure maths of a `record` run: CPU shares, the cost per session,
//! loss, and what limited the run.

use std::time::Duration;

use bytes::Bytes;
use parley_sdk::call::{VIDEO_FRAME_DURATION, VP8_GREY_KEY_FRAME};

/// A process is taken as saturated at this % of the cores it may use.
pub const SATURATED_PERCENT: f64 = 90.0;

/// The VP8 frame every uplink sends every 100 ms for `kbps`: the SDK's
/// 64×48 grey key frame, padded with zeros to `kbps × 100 ms` (never
/// shorter than the frame itself). The recorder never decodes, so only the
/// size matters: webrtc-rs splits it into RTP packets of at most ~1200 bytes.
pub fn video_frame(kbps: u32) -> Bytes {
    let per_frame = u64::from(kbps) * 1000 / 8 * VIDEO_FRAME_DURATION.as_millis() as u64 / 1000;
    let len = (per_frame as usize).max(VP8_GREY_KEY_FRAME.len());
    let mut frame = VP8_GREY_KEY_FRAME.to_vec();
    frame.resize(len, 0);
    Bytes::from(frame)
}

/// `cpu_secs` used over `wall`, as % of one core.
pub fn cpu_percent(cpu_secs: f64, wall: Duration) -> Option<f64> {
    (wall > Duration::ZERO).then(|| cpu_secs * 100.0 / wall.as_secs_f64())
}

/// The recorder's CPU per live session (% of one core): its CPU in the
/// steady window less its idle CPU, over the sessions live in the window.
pub fn per_session_percent(window_percent: f64, idle_percent: f64, live: usize) -> Option<f64> {
    (live > 0).then(|| (window_percent - idle_percent).max(0.0) / live as f64)
}

/// Sessions one core would hold at `per_session` % each (100 / per session).
pub fn sessions_per_core(per_session: f64) -> Option<f64> {
    (per_session > 0.0).then(|| 100.0 / per_session)
}

/// % of `sent` packets that did not arrive (`received` may exceed `sent`
/// by duplicates; never negative). `None` when nothing was sent.
pub fn loss_percent(sent: u64, received: u64) -> Option<f64> {
    (sent > 0).then(|| sent.saturating_sub(received) as f64 * 100.0 / sent as f64)
}

/// A process's share of the machine in the steady window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuUse {
    /// Its CPU, % of one core.
    pub cpu: Option<f64>,
    /// The cores it may run on.
    pub cores: usize,
    /// How busy those cores were, every process on them, %.
    pub cores_busy: Option<f64>,
}

/// Saturated cores are put down to other processes when these took at
/// least this many percentage points of them.
pub const OTHERS_PERCENT: f64 = 10.0;

/// Below this % of the audio packets they should have sent, the uplinks
/// fell behind: the generator did not get the CPU it needed.
pub const MIN_SEND_RATE_PERCENT: f64 = 95.0;

/// What limited the run, or `none`: a process that used at least
/// [`SATURATED_PERCENT`] of the cores it may run on, or whose cores were
/// that busy (by other processes too, on a shared machine: named as such
/// when they took [`OTHERS_PERCENT`] or more); or a generator whose
/// uplinks sent less than [`MIN_SEND_RATE_PERCENT`] of their packets.
pub fn bottleneck(recorder: CpuUse, generator: CpuUse, send_rate_percent: Option<f64>) -> String {
    let limit = |name: &str, u: CpuUse| {
        let own = u.cpu.map(|c| c / u.cores.max(1) as f64);
        if own.is_some_and(|c| c >= SATURATED_PERCENT) {
            return Some(name.to_owned());
        }
        let busy = u.cores_busy.filter(|b| *b >= SATURATED_PERCENT)?;
        // Saturated cores: by this process, or with a good share taken by others.
        Some(if busy - own.unwrap_or(0.0) >= OTHERS_PERCENT {
            format!("{name}'s cores (busy with other processes)")
        } else {
            name.to_owned()
        })
    };
    let mut limits: Vec<String> = limit("recorder", recorder).into_iter().collect();
    match (limit("generator", generator), send_rate_percent) {
        (_, Some(rate)) if rate < MIN_SEND_RATE_PERCENT => {
            limits.push(format!("generator (sent {rate:.0} % of its audio)"))
        }
        (Some(g), _) => limits.push(g),
        _ => {}
    }
    if limits.is_empty() { "none".to_owned() } else { limits.join(" and ") }
}

/// % of the audio packets `uplinks` sending 50 packets/s should have sent
/// in `wall` that they did send.
pub fn send_rate_percent(sent: u64, uplinks: usize, wall: Duration) -> Option<f64> {
    let expected = uplinks as f64 * wall.as_secs_f64() / parley_sdk::call::AUDIO_FRAME_DURATION.as_secs_f64();
    (expected > 0.0).then(|| sent as f64 * 100.0 / expected)
}
