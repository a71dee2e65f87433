//! Building the webrtc-rs peer connection: codecs, header extensions,
//! interceptors, ICE settings, local tracks.

use super::*;

/// The RTP payload type offered for VP8 (the value browsers use too).
pub(super) const VP8_PAYLOAD_TYPE: u8 = 96;

/// The RTP payload type offered for Opus (the value browsers use too). The
/// payload type actually used is the one negotiated.
pub(super) const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Maps webrtc's connection state to ours.
pub(super) fn media_state_of(state: RTCPeerConnectionState) -> MediaState {
    match state {
        RTCPeerConnectionState::Connecting => MediaState::Connecting,
        RTCPeerConnectionState::Connected => MediaState::Connected,
        RTCPeerConnectionState::Disconnected => MediaState::Disconnected,
        RTCPeerConnectionState::Failed => MediaState::Failed,
        RTCPeerConnectionState::Closed => MediaState::Closed,
        _ => MediaState::New,
    }
}

/// The Opus codec as offered and as set on the local track.
pub(super) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// VP8 as offered and as set on the local video track.
pub(super) fn vp8_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_VP8.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Builds the peer connection: Opus with the audio-level extension, VP8,
/// webrtc's default interceptors (NACK, RTCP reports, TWCC) plus the key
/// frame request counter, the configured
/// ICE servers, timeouts and sockets (replaced at every ICE restart).
pub(super) async fn build_peer_connection(
    config: &CallConfig,
    handler: Arc<Handler>,
    key_frame_requests: Arc<AtomicU64>,
) -> Result<Arc<dyn PeerConnection>, CallError> {
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PAYLOAD_TYPE },
        RtpCodecKind::Audio,
    )?;
    media_engine.register_codec(
        RTCRtpCodecParameters { rtp_codec: vp8_codec(), payload_type: VP8_PAYLOAD_TYPE },
        RtpCodecKind::Video,
    )?;
    media_engine.register_header_extension(
        RTCRtpHeaderExtensionCapability { uri: AUDIO_LEVEL_URI.to_owned() },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut media_engine)?
        .with(feedback::SLOT.into(), feedback::KeyFrameRequestCounter::new(key_frame_requests));

    let setting_engine = SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(config.ice_disconnected_timeout),
            Some(config.ice_failed_timeout),
            Some(config.ice_keepalive_interval),
        )
        .with_multicast_dns_mode(if config.resolve_mdns_candidates {
            MulticastDnsMode::QueryOnly
        } else {
            MulticastDnsMode::Disabled
        })
        // An ICE restart binds new local sockets and gathers anew, so a TURN
        // server gets a new allocation signed with the current credentials
        // (`Call::set_ice_servers`). Without it webrtc-rs re-signs the live
        // allocation with the new username, which RFC 8656 §5 forbids (a
        // TURN server answers 441) — and a session past the credentials'
        // TTL could not relay again.
        .with_discard_local_candidates_during_ice_restart(true)
        .build();

    let pc = PeerConnectionBuilder::new()
        .with_configuration(rtc_configuration(&config.ice_servers, config.relay_only))
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(setting_engine)
        .with_handler(handler)
        .with_udp_addrs(config.udp_addrs.clone())
        .build()
        .await?;
    Ok(Arc::new(pc))
}

/// The peer connection's configuration: `ice_servers`, and relayed
/// candidates only if `relay_only`. The same builder defaults every time,
/// so [`PeerConnection::set_configuration`] accepts it later.
pub(super) fn rtc_configuration(ice_servers: &[IceServer], relay_only: bool) -> RTCConfiguration {
    let servers = ice_servers
        .iter()
        .map(|server| RTCIceServer {
            urls: server.urls.clone(),
            username: server.username.clone().unwrap_or_default(),
            credential: server.credential.clone().unwrap_or_default(),
        })
        .collect();
    let policy = if relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
    RTCConfigurationBuilder::new().with_ice_servers(servers).with_ice_transport_policy(policy).build()
}

/// A local track of `kind` sending `codec`, with a random SSRC.
pub(super) fn new_track(kind: RtpCodecKind, codec: RTCRtpCodec) -> Result<Arc<TrackLocalStaticSample>, CallError> {
    let ssrc = std::collections::hash_map::RandomState::new().hash_one(Instant::now()) as u32;
    let id = if kind == RtpCodecKind::Audio { "parley-audio" } else { "parley-video" };
    let track = MediaStreamTrack::new(
        "parley".to_owned(),
        id.to_owned(),
        id.to_owned(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    );
    Ok(Arc::new(TrackLocalStaticSample::new(Instant::now(), track)?))
}
