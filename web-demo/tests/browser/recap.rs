//! A premium recorded call: its recap, and its recording playing and
//! downloading in the page.

use super::*;

/// Premium: the consultant allows recording, the operator makes the
/// seeker premium, the seeker asks for recording when calling; both see
/// that the call is recorded; afterwards the recap lists the recordings,
/// an Ogg Opus track plays in the page and downloads through its signed link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_premium_recorded_call_has_a_recap_whose_recording_plays_and_downloads() {
    let _serial = SERIAL.lock().await;
    let server = Server::start_with(|c| c.recorder = parley_server::config::RecorderMode::Embedded).await;
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant) = (&scene.seeker, &scene.consultant);
    consultant.click("#recording-consent").await;
    consultant
        .wait_until("consent saved", "document.querySelector('#status').textContent.includes('may now ask')")
        .await;
    let premium = seeker
        .eval(&format!(
            r#"(async () => {{ const {{ ParleyApi }} = await import(new URL("/sdk/js/parley.js", location.href).href);
                 await new ParleyApi().setPremium({}, {}, true); return "ok"; }})()"#,
            js_str(&scene.server.moderator_token()),
            js_str(SEEKER)
        ))
        .await;
    assert_eq!(premium, serde_json::json!("ok"), "making the seeker premium: {premium}");
    seeker.click("#record-request").await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    tokio::join!(seeker.wait_visible("#recording-indicator"), consultant.wait_visible("#recording-indicator"));
    // Both send to the recorder (SDK internals: the recorder's connection is up and carries media).
    let uplink = "(async () => { const r = window.parleyDemo.call && window.parleyDemo.call.recorder;
        if (!r || r.pc.connectionState !== 'connected') return false;
        let sent = 0; (await r.pc.getStats()).forEach((s) => { if (s.type === 'outbound-rtp' && s.kind === 'audio') sent += s.packetsSent; });
        return sent > 100; })()";
    tokio::join!(
        seeker.wait_until("audio sent to the recorder", uplink),
        consultant.wait_until("audio sent to the recorder", uplink)
    );
    seeker.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    seeker.wait_visible("#recap-recordings .recording[data-kind=\"audio\"] audio").await;
    seeker.screenshot("16-recap").await;
    // Played in the page: time moves on in the first audio track.
    seeker.eval("(() => { const a = document.querySelector('#recap-recordings audio'); a.muted = true; a.play(); return true; })()").await;
    seeker
        .wait_until("the recording playing", "document.querySelector('#recap-recordings audio').currentTime > 0")
        .await;
    // Downloaded through its signed link.
    let download = seeker
        .eval(
            "(async () => { const a = document.querySelector('#recap-recordings .recording[data-kind=\"audio\"] .recording-download');
               const r = await fetch(a.href, { cache: 'no-store' }); const b = await r.arrayBuffer();
               return { status: r.status, type: r.headers.get('content-type'), bytes: b.byteLength, ogg: new TextDecoder().decode(b.slice(0, 4)) }; })()",
        )
        .await;
    assert_eq!(download["status"], 200, "{download}");
    assert_eq!(download["ogg"], "OggS", "{download}");
    assert!(download["bytes"].as_u64().is_some_and(|n| n > 100), "{download}");
    scene.finish().await;
}
