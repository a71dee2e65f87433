//! Property: any sequence of pushes never panics, and the files stay well-formed with media time
//! never going backwards.

use std::time::Duration;

use crate::common::*;
use parley_recorder::media::{TrackCodec, TrackWriter};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Push {
    ssrc: u32,
    seq_step: i32,
    ts_step: i64,
    arrival_step_ms: u64,
    marker: bool,
    payload: Vec<u8>,
}

fn push_strategy() -> impl Strategy<Value = Push> {
    (
        prop_oneof![8 => Just(1u32), 1 => Just(2u32), 1 => any::<u32>()],
        prop_oneof![8 => Just(1i32), 4 => -5i32..40, 1 => any::<u16>().prop_map(i32::from)],
        prop_oneof![6 => Just(960i64), 3 => -3000i64..200_000, 1 => any::<u32>().prop_map(i64::from)],
        0u64..3_000,
        any::<bool>(),
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => Just(vec![0x10, 0x50, 0x2a, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0x00]),
        ],
    )
        .prop_map(|(ssrc, seq_step, ts_step, arrival_step_ms, marker, payload)| Push {
            ssrc,
            seq_step,
            ts_step,
            arrival_step_ms,
            marker,
            payload,
        })
}

fn run(codec: TrackCodec, pushes: &[Push]) -> std::path::PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("t");
    let mut w = TrackWriter::create(&path, codec).unwrap();
    w.set_audio_level_extension_id(Some(1));
    let (mut seq, mut ts, mut arrival) = (0u16, 0u32, Duration::ZERO);
    for p in pushes {
        seq = seq.wrapping_add(p.seq_step as u16);
        ts = ts.wrapping_add(p.ts_step as u32);
        arrival += MS * p.arrival_step_ms as u32;
        w.push(&rtp(p.ssrc, seq, ts, p.marker, p.payload.clone()), arrival).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!(s.packets, pushes.len() as u64);
    assert!(s.frames + s.discarded_packets <= s.packets);
    path
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn opus_any_pushes_give_a_valid_monotonic_ogg(pushes in proptest::collection::vec(push_strategy(), 0..120)) {
        let path = run(TrackCodec::Opus, &pushes);
        // read_ogg_opus asserts CRCs, page order, BOS/EOS, and granule == sum of durations per page.
        let ogg = read_ogg_opus(&path);
        let granules: Vec<i64> = ogg.pages.iter().map(|p| p.granule).filter(|&g| g >= 0).collect();
        prop_assert!(granules.windows(2).all(|w| w[0] <= w[1]), "granules {granules:?}");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn vp8_any_pushes_give_a_valid_monotonic_ivf(pushes in proptest::collection::vec(push_strategy(), 0..120)) {
        let path = run(TrackCodec::Vp8, &pushes);
        let ivf = read_ivf(&path);
        prop_assert_eq!(ivf.frame_count as usize, ivf.frames.len());
        prop_assert!(ivf.frames.windows(2).all(|w| w[0].0 < w[1].0), "pts strictly increasing");
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
