//! Instant calls from the directory: free within the window, charged past
//! it, per-minute holds, reloads, declines and declined cards.

use super::*;

/// An instant call with real media, hung up before `F`: free; the seeker's
/// review is posted and shows on the consultant's profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_call_hung_up_within_the_free_window_is_free_and_the_review_is_posted() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(true).await;
    scene.call("pm_card_visa", true).await;
    scene.accept_and_talk().await;
    scene.seeker.screenshot("04-in-call").await;
    // `F` − 4 s: the seeker is asked, and ends the call now, free.
    scene.server.advance(FREE_WINDOW - WARN_BEFORE + Duration::from_secs(1));
    scene.seeker.wait_visible("#free-window-choice").await;
    scene.consultant.wait_visible("#free-window-choice").await;
    assert!(!scene.consultant.is_visible("#choice-end").await, "consultant: offered the seeker's choice");
    let words = scene.seeker.text("#choice-text").await;
    assert!(words.contains("30.00"), "seeker: the choice does not state the charge: {words:?}");
    scene.seeker.screenshot("04-free-window-choice").await;
    scene.seeker.click("#choice-end").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.seeker.screenshot("05-summary-free").await;
    scene.seeker.review_and_find_it("Clear and kind, from a browser.").await;
    scene.seeker.screenshot("09-profile-with-review").await;
    scene.finish().await;
}

/// The same call kept past `F`: the billing indicator shows, the bill is
/// the fixed EUR 30.00; the ringing screen stated the hold that was placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_call_past_the_free_window_is_charged_the_fixed_hold_shown() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    let session = scene.seeker.assert_hold_shown(3000, "30.00").await;
    scene.accept_and_talk().await;
    assert_eq!(scene.server.hold_minor(&session).await, 3000, "the hold the server placed (and the page stated)");
    scene.server.advance(FREE_WINDOW - WARN_BEFORE + Duration::from_secs(1));
    scene.seeker.click("#choice-continue").await;
    scene.seeker.wait_hidden("#free-window-choice").await;
    scene.past_the_free_window().await;
    scene.seeker.screenshot("04-in-call-billing").await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = scene.seeker.text("#summary-amount").await;
    assert!(amount.contains("30.00"), "seeker: #summary-amount is {amount:?}, expected EUR 30.00");
    scene.seeker.screenshot("06-summary-charged").await;
    scene.finish().await;
}

/// A per-minute consultant who typed "1.50" charges EUR 1.50 a minute
/// (150 minor units, not 1); the ringing screen states the hold placed:
/// the rate × the instant-call maximum of 60 minutes, EUR 90.00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_minute_call_states_the_hold_that_was_placed() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start_with(false, PER_MINUTE_150).await;
    let price =
        scene.seeker.text(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .consultant-price"#)).await;
    assert!(price.contains("1.50") && price.contains("minute"), "seeker: the listed price is {price:?}");
    scene.call("pm_card_visa", false).await;
    let ringing = scene.seeker.assert_hold_shown(9000, "90.00").await;
    scene.seeker.screenshot("03-outgoing-call-per-minute").await;
    // Past `F`, the running amount: a started minute costs EUR 1.50.
    scene.accept_and_talk().await;
    assert_eq!(scene.server.hold_minor(&ringing).await, 9000, "the hold the server placed (and the page stated)");
    scene.past_the_free_window().await;
    scene
        .seeker
        .wait_until(
            "#meter-amount stating one started minute (EUR 1.50)",
            "(() => { const e = document.querySelector('#meter-amount'); return e.checkVisibility() && e.dataset.minor === '150'; })()",
        )
        .await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = scene.seeker.text("#summary-amount").await;
    assert!(amount.contains("1.50"), "seeker: #summary-amount is {amount:?}, expected one started minute, EUR 1.50");
    // Later, from the recent calls: named, charged, and the bill opens again.
    let session = scene.seeker.eval("document.querySelector('#summary').dataset.sessionId").await;
    let session = session.as_str().expect("#summary has data-session-id").to_owned();
    scene.seeker.click("#summary-close").await;
    let receipt = format!(r#"#receipts li[data-session-id="{session}"]"#);
    scene
        .seeker
        .wait_until(
            "the receipt charged with the consultant's name",
            &format!(
                "(() => {{ const e = document.querySelector({}); return !!e && e.textContent.includes('Cora Browser') && e.textContent.includes('Charged €1.50'); }})()",
                js_str(&receipt)
            ),
        )
        .await;
    scene.seeker.click(&format!("{receipt} .receipt-open")).await;
    scene.seeker.wait_visible(&format!(r#"#summary[data-session-id="{session}"][data-outcome="charged"]"#)).await;
    scene.finish().await;
}

impl Tab {
    /// The ringing screen states a hold of `minor` (`major` in words) and
    /// explains the free window; returns the ringing session's id, to check
    /// the hold the server placed once the session is open
    /// ([`Server::hold_minor`]).
    async fn assert_hold_shown(&self, minor: i64, major: &str) -> String {
        self.wait_visible("#outgoing-detail[data-hold-minor]").await;
        let session = self.eval("document.querySelector('#outgoing-call').dataset.sessionId").await;
        let session = session.as_str().expect("#outgoing-call has data-session-id").to_owned();
        let shown = self.eval("Number(document.querySelector('#outgoing-detail').dataset.holdMinor)").await;
        assert_eq!(shown.as_i64(), Some(minor), "{}: the ringing screen states a hold of {shown}", self.who);
        let text = self.text("#outgoing-detail").await;
        assert!(text.contains(major), "{}: #outgoing-detail says {text:?}, not {major}", self.who);
        assert!(
            text.contains("free window"),
            "{}: #outgoing-detail does not explain the free window: {text:?}",
            self.who
        );
        session
    }
}

/// A reload in the middle of a call rejoins the open session: media flows
/// again and hanging up ends it with a bill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_call_rejoins_the_open_session() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    let session = scene.seeker.eval("document.querySelector('#call-view').dataset.sessionId").await;
    scene.seeker.page.reload().await.expect("reload");
    scene.seeker.wait_visible(&format!(r#"#call-view[data-session-id={session}]"#)).await;
    scene.seeker.wait_media_flowing().await;
    scene.consultant.wait_media_flowing().await;
    scene.seeker.click("#hangup").await;
    scene.seeker.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.consultant.wait_visible(r#"#summary[data-outcome="free"]"#).await;
    scene.finish().await;
}

/// The consultant declines: the seeker's ringing ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_ends_the_seekers_ringing() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    scene.call("pm_card_visa", false).await;
    scene.seeker.wait_visible("#outgoing-call").await;
    scene.consultant.click("#decline-call").await;
    scene.consultant.wait_hidden("#incoming-call").await;
    scene.seeker.wait_hidden("#outgoing-call").await;
    scene
        .seeker
        .wait_until(
            "#error-banner or the home screen (#consultants) after the decline",
            &format!("{} || {}", visible_js("#error-banner"), visible_js("#consultants")),
        )
        .await;
    assert!(!scene.seeker.is_visible("#call-view").await, "seeker: #call-view shows after a decline");
    scene.seeker.screenshot("08-call-declined").await;
    scene.finish().await;
}

/// A declined card: the seeker sees `payment_declined`, the consultant's
/// phone never rings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_never_rings_the_consultant() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    // Records whether #incoming-call is ever shown from now on.
    let watching = scene
        .consultant
        .eval(
            "(() => { const e = document.querySelector('#incoming-call'); window.__sawIncoming = e.checkVisibility();
               new MutationObserver(() => { if (e.checkVisibility()) window.__sawIncoming = true; })
                 .observe(e, { attributes: true });
               return true; })()",
        )
        .await;
    assert_eq!(watching, serde_json::Value::Bool(true));
    scene.seeker.fill("#payment-method", "pm_card_chargeDeclined").await;
    scene.seeker.click(&call_now()).await;
    scene.seeker.wait_visible(r#"#error-banner[data-code="payment_declined"]"#).await;
    assert!(!scene.seeker.is_visible("#outgoing-call").await, "seeker: #outgoing-call shows for a declined card");
    scene.seeker.screenshot("07-declined-card").await;
    // Anything that would ring would have come by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let saw = scene.consultant.eval("window.__sawIncoming").await;
    assert_eq!(saw, serde_json::Value::Bool(false), "consultant: #incoming-call showed for a declined card");
    assert!(!scene.consultant.is_visible("#incoming-call").await, "consultant: #incoming-call shows");
    scene.finish().await;
}
