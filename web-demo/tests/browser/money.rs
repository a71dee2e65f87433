//! Money after the call: a dispute decided by a moderator, and escrow
//! (milestones funded up front, submitted, approved and released).

use super::*;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;

/// Nothing scrolls sideways on a 390 px wide phone.
async fn assert_fits_390(tab: &Tab) {
    let width = tab.eval("document.documentElement.scrollWidth").await;
    assert!(width.as_f64().is_some_and(|w| w <= 390.0), "{}: the page is {width} px wide at 390 px", tab.who);
}

/// The dispute journey (rules D1–D4): a charged call; the seeker disputes
/// it from recent calls (a reason from the list and a text); the
/// consultant answers once, told by the `dispute.updated` push; a
/// moderator (a pasted token: dev sign-in makes no moderators) opens the
/// dispute, reads the bundle's Markdown as plain text and decides a
/// partial refund of EUR 10.00; the seeker sees the decision and the refund.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputed_session_is_answered_and_partly_refunded_by_a_moderator() {
    let _serial = SERIAL.lock().await;
    dispute_journey(Server::start().await).await;
}

/// The dispute journey on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disputed_session_is_answered_and_partly_refunded_by_a_moderator_on_postgres() {
    let _serial = SERIAL.lock().await;
    dispute_journey(Server::start_on_postgres().await).await;
}

async fn dispute_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant, server) = (&scene.seeker, &scene.consultant, &scene.server);

    // A charged call.
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    scene.past_the_free_window().await;
    seeker.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    // Back home. The summary's recap loads under the button and moves it: a
    // pointer click may land where it was, so the button is clicked in the page.
    for (side, home) in [(seeker, "#seeker-home"), (consultant, "#consultant-home")] {
        side.eval("(() => { document.querySelector('#summary-close').click(); return true; })()").await;
        side.wait_visible(home).await;
    }

    // The seeker disputes it from recent calls, once the charge is captured.
    let dispute_button = "#receipts li[data-session-id] .receipt-dispute";
    seeker.click(dispute_button).await;
    seeker.wait_visible("#dispute-dialog[open]").await;
    seeker.wait_until("focus in the dialog", "document.activeElement?.id === 'dispute-reason'").await;
    seeker.fill("#dispute-reason", "session_cut_short").await;
    seeker.fill("#dispute-text", "The consultant left after a few minutes.").await;
    seeker.click("#dispute-submit").await;
    seeker.wait_visible(r#"#disputes .dispute[data-status="open"]"#).await;
    seeker.wait_hidden("#dispute-dialog").await;
    // One dispute per session: the button is gone.
    seeker
        .wait_until("no second Dispute button", &format!("!document.querySelector({})", js_str(dispute_button)))
        .await;

    // The consultant answers, once.
    let answer = r#"#consultant-disputes .dispute[data-status="open"] .dispute-answer-text"#;
    consultant.fill(answer, "We talked for the whole booked time.").await;
    consultant.click(r#"#consultant-disputes .dispute[data-status="open"] .dispute-answer-submit"#).await;
    consultant.wait_visible(r#"#consultant-disputes .dispute[data-status="answered"]"#).await;
    assert!(
        !consultant.is_visible("#consultant-disputes .dispute-answer-text").await,
        "consultant: the answer form is still offered after answering"
    );
    seeker.wait_visible(r#"#disputes .dispute[data-status="answered"] .dispute-answer"#).await;

    // The moderator: a pasted token, the list, the bundle, the decision.
    let moderator = Tab::launch("moderator").await;
    moderator.open(&format!("{}/", server.base)).await;
    moderator.wait_visible("#login-form").await;
    moderator.click(".moderator-login summary").await;
    moderator.fill("#moderator-token", &server.moderator_token()).await;
    moderator.click("#moderator-submit").await;
    moderator.wait_visible("#moderator-home").await;
    moderator.click(r#"#moderator-disputes .dispute[data-status="answered"] .dispute-open"#).await;
    moderator.wait_visible(r#"#moderator-dispute[data-status="answered"] #bundle-md"#).await;
    let bundle = moderator.text("#bundle-md").await;
    for words in ["The consultant left after a few minutes.", "We talked for the whole booked time."] {
        assert!(bundle.contains(words), "moderator: the bundle does not show {words:?}:\n{bundle}");
    }
    // Shown as text: the Markdown never becomes elements of the page.
    let elements = moderator.eval("document.querySelector('#bundle-md').childElementCount").await;
    assert_eq!(elements, serde_json::json!(0), "moderator: the bundle was rendered as HTML");
    moderator.fill("#decision-kind", "partial_refund").await;
    moderator.fill("#decision-amount", "10").await;
    moderator.fill("#decision-note", "The call ended early: a third back.").await;
    moderator.click("#decision-submit").await;
    moderator.wait_visible(r#"#moderator-dispute[data-status="decided"]"#).await;
    let result = moderator.text("#decision-result").await;
    assert!(result.contains("10.00"), "moderator: #decision-result is {result:?}");
    moderator.screenshot("17-moderator-bundle").await;

    // The seeker sees the decision and the refund, pushed.
    let outcome = r#"#disputes .dispute[data-status="decided"] .dispute-outcome[data-refunded-minor="1000"]"#;
    seeker.wait_visible(outcome).await;
    let words = seeker.text(outcome).await;
    assert!(words.contains("Partial refund") && words.contains("10.00"), "seeker: the decision reads {words:?}");
    seeker.wait_visible(r#"#receipts .receipt-refunded[data-minor="1000"]"#).await;
    consultant.wait_visible(r#"#consultant-disputes .dispute[data-status="decided"] .dispute-outcome"#).await;
    seeker.screenshot("18-dispute-decided").await;
    moderator.close().await;
    scene.finish().await;
}

/// Escrow (rules E1, E3): the consultant sets up payouts; the seeker funds
/// two milestones from the profile (the total charged now is stated as
/// escrow); the consultant submits the first; the seeker approves it; both
/// see it released and what stays in escrow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milestones_funded_submitted_approved_and_released_on_both_sides() {
    let _serial = SERIAL.lock().await;
    escrow_journey(Server::start().await).await;
}

/// The escrow journey on PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn milestones_funded_submitted_approved_and_released_on_both_sides_on_postgres() {
    let _serial = SERIAL.lock().await;
    escrow_journey(Server::start_on_postgres().await).await;
}

async fn escrow_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant) = (&scene.seeker, &scene.consultant);

    // Only a consultant who can receive transfers can be funded.
    consultant.wait_visible(r#"#payout-status[data-ready="false"]"#).await;
    consultant.click("#payout-setup").await;
    consultant.wait_visible(r#"#payout-status[data-ready="true"]"#).await;

    // The seeker is on a phone (390 px wide) from here on.
    seeker.page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true)).await.expect("phone viewport");
    seeker.wait_until("the phone layout", "window.innerWidth === 390").await;
    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker.wait_visible("#engage-form").await;
    seeker.fill("#engage-kind", "milestones").await;
    seeker.fill("#engage-title-input", "A VAT registration").await;
    seeker.fill("#ms-description-1", "Collect the documents").await;
    seeker.fill("#ms-amount-1", "400").await;
    seeker.fill("#ms-description-2", "File the registration").await;
    seeker.fill("#ms-amount-2", "600.50").await;
    seeker.wait_until("the total", "document.querySelector('#engage-total').dataset.totalMinor === '100050'").await;
    let total = seeker.text("#engage-total").await;
    assert!(
        total.contains("1,000.50") && total.contains("Charged now") && total.contains("escrow"),
        "seeker: #engage-total is {total:?}"
    );
    assert_fits_390(seeker).await;
    seeker.screenshot("19-escrow-form").await;
    seeker.click("#engage-submit").await;
    seeker.wait_until("funded", "document.querySelector('#status').textContent.includes('into escrow')").await;
    seeker.click("#profile-back").await;
    let funded = r#"#engagements .engagement[data-state="active"][data-kind="milestones"]"#;
    seeker.wait_visible(&format!(r#"{funded} .engagement-escrowed[data-minor="100050"]"#)).await;
    seeker
        .wait_until(
            "two open milestones",
            &format!("document.querySelectorAll('{funded} .milestone[data-state=\"open\"]').length === 2"),
        )
        .await;

    // The consultant submits the first milestone.
    let first = r#"#consultant-engagements .engagement[data-state="active"] .milestone:nth-child(1)"#;
    consultant
        .fill(&format!(r#"{first}[data-state="open"] .milestone-note"#), "Documents collected and checked.")
        .await;
    consultant.click(&format!("{first} .milestone-submit")).await;
    consultant.wait_visible(&format!(r#"{first}[data-state="submitted"]"#)).await;

    // The seeker approves it: released.
    let submitted = format!(r#"{funded} .milestone[data-state="submitted"]"#);
    seeker.wait_visible(&format!("{submitted} .milestone-note-text")).await;
    seeker.click(&format!("{submitted} .milestone-approve")).await;
    seeker.wait_visible(&format!(r#"{funded} .milestone:nth-child(1)[data-state="released"]"#)).await;
    seeker.wait_visible(&format!(r#"{funded} .engagement-released[data-minor="40000"]"#)).await;
    seeker.wait_visible(&format!(r#"{funded} .engagement-escrowed[data-minor="60050"]"#)).await;
    assert_fits_390(seeker).await;
    seeker.screenshot("20-escrow-released").await;

    // The consultant sees it released too.
    let theirs = r#"#consultant-engagements .engagement[data-state="active"]"#;
    consultant.wait_visible(&format!(r#"{theirs} .milestone:nth-child(1)[data-state="released"]"#)).await;
    consultant.wait_visible(&format!(r#"{theirs} .engagement-released[data-minor="40000"]"#)).await;
    consultant.wait_visible(&format!(r#"{theirs} .milestone:nth-child(2)[data-state="open"] .milestone-submit"#)).await;
    scene.finish().await;
}
