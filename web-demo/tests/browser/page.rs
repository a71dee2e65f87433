//! The page itself: phone width, the network banner, and the JavaScript
//! SDK's directory and booking methods used from the page.

use super::*;

/// At phone width (390 px) the seeker's home is usable: the search box
/// takes the width, nothing scrolls sideways. A "can't reach Parley" banner
/// goes away once a request succeeds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phone_width_and_the_network_banner_clears_when_parley_is_back() {
    use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
    let _serial = SERIAL.lock().await;
    let scene = Scene::start(false).await;
    let seeker = &scene.seeker;
    seeker.page.execute(SetDeviceMetricsOverrideParams::new(390, 844, 2.0, true)).await.expect("phone viewport");
    seeker.wait_until("the phone layout", "window.innerWidth === 390").await;
    let width = seeker.eval("document.querySelector('#consultant-search').getBoundingClientRect().width").await;
    assert!(width.as_f64().is_some_and(|w| w >= 300.0), "seeker: the search box is {width} px wide at 390 px");
    let overflow = seeker.eval("document.documentElement.scrollWidth").await;
    assert!(overflow.as_f64().is_some_and(|w| w <= 390.0), "seeker: the page is {overflow} px wide at 390 px");
    seeker.screenshot("15-phone-home").await;

    // The network goes away for the page's requests, and comes back.
    seeker
        .eval(
            "(() => { const real = window.fetch; window.__offline = true;
               window.fetch = (...a) => window.__offline ? Promise.reject(new TypeError('Failed to fetch')) : real(...a);
               return true; })()",
        )
        .await;
    seeker.wait_visible(r#"#error-banner[data-code="network"]"#).await;
    seeker.eval("(() => { window.__offline = false; return true; })()").await;
    seeker.wait_hidden("#error-banner").await;
    scene.finish().await;
}

/// The SDK's directory and booking methods, used from the demo page: a
/// consultant publishes a profile with a distinctive tag, availability and a
/// price; a seeker finds them by the tag, lists their slots and proposes
/// one, which the consultant accepts. A slot in the past is refused with a
/// `ParleyError` whose code is `slot_in_past`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdk_finds_a_consultant_in_the_directory_and_books_a_slot() {
    let _serial = SERIAL.lock().await;
    let server = Server::start().await;
    let tab = Tab::launch("sdk").await;
    tab.open(&format!("{}/", server.base)).await;
    tab.wait_visible("#login-form").await;
    let js = BOOKING_JOURNEY_JS
        .replace("__CONSULTANT__", "bt-booked-consultant")
        .replace("__SEEKER__", "bt-booking-seeker")
        .replace("__TAG__", "Browser-Booking-Tag")
        .replace("__NOW__", &server.now_ms().to_string());
    let out = tab.eval(&js).await;
    let console = tab.console_tail();
    assert_eq!(out["error"], serde_json::Value::Null, "the journey threw: {out}\nconsole:\n  {console}");
    assert_eq!(out["roles"], serde_json::json!(["consultant", "seeker"]), "{out}");
    // Tags are stored lower-case; session lengths sorted.
    assert_eq!(out["profile_tags"], serde_json::json!(["browser-booking-tag", "tax"]), "{out}");
    assert_eq!(out["availability_lengths"], serde_json::json!([30, 60]), "{out}");
    assert_eq!(out["price"], 2500, "{out}");
    assert_eq!(out["directory_ids"], serde_json::json!(["bt-booked-consultant"]), "{out}");
    assert_eq!(out["directory_price"], 2500, "{out}");
    assert_eq!(out["directory_without_the_tag"], true, "{out}");
    assert_eq!(out["slots_length_min"], 60, "{out}");
    assert_eq!(out["slots_time_zone"], "UTC", "{out}");
    // Available around the clock: a whole day of hour slots.
    assert!(out["slot_count"].as_u64().is_some_and(|n| n >= 23), "{out}");
    assert_eq!(out["slot_length_ms"], 3_600_000, "{out}");
    assert_eq!(out["slot_on_the_hour"], true, "{out}");
    assert_eq!(out["proposed_state"], "pending", "{out}");
    assert_eq!(out["proposed_price"], 2500, "{out}");
    assert_eq!(out["accepted_state"], "confirmed", "{out}");
    assert_eq!(out["accepted_start"], out["start"], "{out}");
    assert_eq!(out["opens_before_start_ms"], 600_000, "{out}");
    assert_eq!(out["seeker_sees"], "confirmed", "{out}");
    assert_eq!(out["consultant_lists"], serde_json::json!(["confirmed"]), "{out}");
    assert_eq!(out["slot_no_longer_free"], true, "{out}");
    assert_eq!(
        out["past"],
        serde_json::json!({"parley_error": true, "code": "slot_in_past", "is_constant": true, "status": 400}),
        "{out}"
    );
    tab.close().await;
    server.stop().await;
}

/// The journey of the test above, run in the page; placeholders
/// `__CONSULTANT__`, `__SEEKER__`, `__TAG__` and `__NOW__` (the server clock, Unix ms). Resolves with the values to
/// check (`error` if something threw).
const BOOKING_JOURNEY_JS: &str = r#"(async () => {
  const { ParleyApi, ParleyError, ErrorCode } = await import(new URL("/sdk/js/parley.js", location.href).href);
  const api = new ParleyApi();
  const out = {};
  try {
    const c = await api.devLogin("__CONSULTANT__", "Cora Booking", "consultant");
    const s = await api.devLogin("__SEEKER__", "Sam Booking", "seeker");
    out.roles = [c.user.role, s.user.role];
    const profile = await api.setProfile(c.token, {
      display_name: "Cora Booking", headline: "Booked from a browser", tags: ["__TAG__", "Tax"],
      languages: ["en"], time_zone: "Europe/Paris", session_minutes: [60, 30],
    });
    out.profile_tags = profile.tags;
    const weekly = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
      .map((weekday) => ({ weekday, start: "00:00", end: "24:00" }));
    const availability = await api.setAvailability(c.token, { time_zone: "UTC", session_lengths_min: [60, 30], weekly, exceptions: [] });
    out.availability_lengths = availability.session_lengths_min;
    const price = await api.setPrice(c.token, { model: "fixed", amount: { amount_minor: 2500, currency: "EUR" } });
    out.price = price.amount.amount_minor;

    const tag = "__TAG__".toLowerCase();
    const page = await api.directory(s.token, { tag, currency: "EUR", max_price: 5000, cursor: undefined, q: null });
    out.directory_ids = page.items.map((i) => i.id);
    out.directory_price = page.items[0]?.price?.amount?.amount_minor;
    const everyone = await api.directory(s.token, { limit: 50 });
    out.directory_without_the_tag = everyone.items.some((i) => i.id === "__CONSULTANT__");

    // Two days ahead: well inside the booking horizon, never near the room opening.
    const from = __NOW__ + 2 * 24 * 3600 * 1000;
    const slots = await api.slots(s.token, "__CONSULTANT__", { from_ms: from, to_ms: from + 24 * 3600 * 1000, length_min: 60 });
    out.slots_length_min = slots.length_min;
    out.slots_time_zone = slots.time_zone;
    out.slot_count = slots.slots.length;
    const start = slots.slots[0].start_ms;
    out.start = start;
    out.slot_length_ms = slots.slots[0].end_ms - start;
    out.slot_on_the_hour = start % 3600000 === 0 && start >= from;

    const proposed = await api.proposeBooking(s.token, {
      consultant_id: "__CONSULTANT__", slots: [start], length_min: 60, payment_method: "pm_card_visa",
    });
    out.proposed_state = proposed.state;
    out.proposed_price = proposed.price && proposed.price.amount.amount_minor;
    const accepted = await api.acceptBooking(c.token, proposed.id, start);
    out.accepted_state = accepted.state;
    out.accepted_start = accepted.start_ms;
    out.opens_before_start_ms = accepted.start_ms - accepted.opens_at_ms;
    out.seeker_sees = (await api.booking(s.token, proposed.id)).state;
    out.consultant_lists = (await api.bookings(c.token)).bookings.filter((b) => b.id === proposed.id).map((b) => b.state);
    const after = await api.slots(s.token, "__CONSULTANT__", { from_ms: from, to_ms: from + 24 * 3600 * 1000, length_min: 60 });
    out.slot_no_longer_free = !after.slots.some((x) => x.start_ms === start);

    try {
      await api.proposeBooking(s.token, {
        consultant_id: "__CONSULTANT__", slots: [__NOW__ - 3600000], length_min: 60, payment_method: "pm_card_visa",
      });
      out.past = "resolved";
    } catch (err) {
      out.past = { parley_error: err instanceof ParleyError, code: err.code, is_constant: err.code === ErrorCode.SLOT_IN_PAST, status: err.status };
    }
  } catch (err) {
    out.error = `${err.name}: ${err.code || ""} ${err.message}`;
  }
  return out;
})()"#;
