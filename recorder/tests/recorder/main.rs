//! One test binary for the recorder's writers, decoders and manifests.
//! Each module was a test file of its own; one binary links once.

mod common;
mod ffmpeg_decode;
mod ivf_vp8;
mod ogg_opus;
mod prop;
mod talk_time_and_manifest;
