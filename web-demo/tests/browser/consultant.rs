//! The consultant's journey: payouts, metrics, promotions, featured first.

use super::*;

/// The consultant's journey on top of an instant call (and the seeker's
/// directory filters: language, available now, price sort and range):
/// payouts set up
/// through the onboarding link and its return page; a charged call; the
/// earnings net of commission; the seeker's review answered from the desk
/// and the reply visible on the profile; the metrics chart; a promotion
/// bought with its receipt, after which the consultant is featured and
/// first in the seeker's search although another consultant matches better.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consultant_journey_from_payouts_to_featured_first() {
    let _serial = SERIAL.lock().await;
    consultant_journey(Server::start().await).await;
}

/// The consultant's journey on PostgreSQL (ranking, promotions, metrics).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consultant_journey_from_payouts_to_featured_first_on_postgres() {
    let _serial = SERIAL.lock().await;
    consultant_journey(Server::start_on_postgres().await).await;
}

async fn consultant_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant) = (&scene.seeker, &scene.consultant);

    // Payout onboarding: the sandbox link comes straight back to the desk.
    consultant.wait_visible(r#"#payout-status[data-ready="false"]"#).await;
    consultant.click("#payout-setup").await;
    consultant.wait_visible(r#"#payout-status[data-ready="true"]"#).await;
    let url = consultant.eval("location.search").await;
    assert_eq!(url, serde_json::json!(""), "consultant: the return page keeps its query in the address bar");

    // A consultant whose profile matches "taxes" better (name, headline and tags).
    let other = seeker.eval(OTHER_CONSULTANT_JS).await;
    assert_eq!(other, serde_json::json!("ok"), "creating the other consultant: {other}");
    seeker.fill("#consultant-search", "tax").await;
    // Filters: French speakers; available now; cheapest first (no price counts as 0).
    let ids = "[...document.querySelectorAll('#consultants [data-consultant-id]')].map((e) => e.dataset.consultantId).join(',')";
    let listed = |want: &str| format!("{ids} === {}", js_str(want));
    seeker.fill("#filter-language", "fr").await;
    seeker.wait_until("only French speakers", &listed(CONSULTANT)).await;
    seeker.fill("#filter-language", "").await;
    seeker.click("#filter-available").await;
    seeker.wait_until("only consultants available now", &listed(CONSULTANT)).await;
    seeker.click("#filter-available").await;
    seeker.fill("#filter-sort", "price").await;
    seeker.wait_until("cheapest first", &listed(&format!("bt-other-consultant,{CONSULTANT}"))).await;
    seeker.fill("#filter-max-price", "10").await;
    seeker.wait_until("at most EUR 10", &listed("bt-other-consultant")).await;
    seeker.fill("#filter-max-price", "").await;
    seeker.fill("#filter-sort", "").await;
    seeker.wait_until(
        "the better match listed first",
        r#"document.querySelector('#consultants [data-consultant-id]')?.dataset.consultantId === 'bt-other-consultant'"#,
    ).await;

    // A charged call (the consultant availability toggle survived the payout round trip).
    consultant.wait_visible(r#"#availability-toggle[aria-pressed="true"]"#).await;
    scene.call("pm_card_visa", false).await;
    scene.accept_and_talk().await;
    scene.past_the_free_window().await;
    consultant.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    seeker.review_and_find_it("Sorted my VAT in one call.").await;

    consultant.click("#summary-close").await;
    consultant.wait_visible("#consultant-home").await;
    // Earnings: EUR 30.00 less the platform's commission (20 % by default).
    consultant
        .wait_until(
            "earnings of one session",
            "document.querySelector('#earnings-count').textContent.includes('1 paid session')",
        )
        .await;
    let total = consultant.text("#earnings-total").await;
    assert!(total.contains("24.00"), "consultant: #earnings-total is {total:?}, expected EUR 24.00 (30.00 less 20 %)");

    // The review, answered from the desk; the reply shows on the profile.
    let review = "#my-reviews .review";
    consultant.wait_visible(&format!("{review} .reply-text")).await;
    consultant.fill(&format!("{review} .reply-text"), "Glad it helped, Sam.").await;
    consultant.click(&format!("{review} .reply-submit")).await;
    consultant.wait_visible(&format!("{review} .review-reply")).await;

    // The metrics chart: one month with one session.
    consultant.wait_visible(r#"#metrics-chart[data-months="1"] svg rect"#).await;
    let facts = consultant.text("#metrics-facts").await;
    assert!(facts.contains("Sessions1"), "consultant: #metrics-facts is {facts:?}");
    consultant.screenshot("13-consultant-metrics").await;

    // A promotion: paid at once, with its receipt and window.
    consultant.click(r#"#promo-packages button.promo-buy[data-package-id="featured_7d"]"#).await;
    consultant.wait_visible(r#"#promo-current[data-featured="true"]"#).await;
    consultant.wait_visible("#promo-receipts .promo-receipt").await;
    let receipt = consultant.text("#promo-receipts .promo-receipt").await;
    assert!(receipt.contains("19.00"), "consultant: the promotion receipt is {receipt:?}");

    // The seeker: the consultant featured and first, and the reply on the profile.
    seeker.click("#profile-back").await;
    let first = format!(
        r#"(() => {{ const e = document.querySelector('#consultants [data-consultant-id]');
            return !!e && e.dataset.consultantId === '{CONSULTANT}' && e.dataset.featured === 'true' && !!e.querySelector('.featured-badge'); }})()"#
    );
    seeker.wait_until("the featured consultant first and marked", &first).await;
    seeker.screenshot("14-featured-first").await;
    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker
        .wait_until(
            "the consultant's reply under the review",
            "[...document.querySelectorAll('#profile-reviews .review-reply')].some((r) => r.textContent.includes('Glad it helped, Sam.'))",
        )
        .await;
    scene.finish().await;
}

/// Creates (through the SDK, in the seeker's page) a consultant whose
/// profile matches "tax" better than the scene's; resolves "ok".
const OTHER_CONSULTANT_JS: &str = r#"(async () => {
  const { ParleyApi } = await import(new URL("/sdk/js/parley.js", location.href).href);
  const api = new ParleyApi();
  const c = await api.devLogin("bt-other-consultant", "Tex Taxman", "consultant");
  await api.setProfile(c.token, {
    display_name: "Tex Tax", headline: "Tax, tax returns and tax audits", bio: "Tax.", tags: ["tax", "taxes", "tax-audit"],
    languages: ["en"], time_zone: "UTC", session_minutes: [30],
  });
  return "ok";
})()"#;
