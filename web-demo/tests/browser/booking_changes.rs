//! Bookings changed by the other side, seen without reloading (the server
//! pushes `booking.updated`; the app no longer polls every 4 s): a decline,
//! a consultant's new times, and the 24-hour reminder. Also: the terms and
//! the purpose prices on the profile, names instead of ids, and no URL the
//! page loads or opens carries the access token.

use super::*;

/// Monday to Friday, 09:00–17:00 Paris time, and a mentorship price.
async fn open_calendar(consultant: &Tab) {
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        consultant.click(&format!("#avail-{day}-on")).await;
    }
    consultant.fill("#price-mentorship", "45").await;
    consultant.click("#price-save").await;
    consultant
        .wait_until("prices saved", "document.querySelector('#status').textContent.includes('Price saved')")
        .await;
    consultant.click("#week-save").await;
    consultant
        .wait_until(
            "availability saved",
            "document.querySelector('#status').textContent.includes('Availability saved')",
        )
        .await;
}

/// Ticks the first free slot on the open profile page starting at least
/// `after_ms` after `now_ms`; returns its start.
async fn pick_slot(tab: &Tab, now_ms: i64, after_ms: i64) -> i64 {
    tab.wait_until("free slots", "document.querySelectorAll('#profile-slots input').length > 0").await;
    let js = format!(
        "(() => {{ const i = [...document.querySelectorAll('#profile-slots input')].find((i) => Number(i.value) >= {}); \
         if (!i) return null; i.click(); return Number(i.value); }})()",
        now_ms + after_ms
    );
    tab.eval(&js).await.as_i64().unwrap_or_else(|| panic!("{}: no free slot {after_ms} ms ahead", tab.who))
}

/// Fails if any URL the page fetched or any WebSocket it opened carries its
/// access token.
async fn assert_no_token_in_urls(tab: &Tab) {
    let token = tab.eval("JSON.parse(sessionStorage.getItem('parley.login')).token").await;
    let token = token.as_str().expect("a signed-in page keeps its token").to_owned();
    let urls = tab
        .eval(
            "JSON.stringify([location.href, ...performance.getEntriesByType('resource').map((e) => e.name), \
             ...(window.parleySocketUrls || [])])",
        )
        .await;
    let urls: Vec<String> = serde_json::from_str(urls.as_str().expect("a list")).expect("URLs");
    let sockets: Vec<&String> = urls.iter().filter(|u| u.starts_with("ws")).collect();
    assert!(!sockets.is_empty(), "{}: no WebSocket was seen: {urls:?}", tab.who);
    assert!(sockets.iter().all(|u| u.contains("ticket=")), "{}: sockets opened without a ticket: {sockets:?}", tab.who);
    for url in &urls {
        assert!(!url.contains(&token), "{}: the access token is in a URL: {url}", tab.who);
        assert!(!url.contains("access_token"), "{}: a URL names access_token: {url}", tab.who);
    }
}

/// The seeker reads the terms and the purpose prices on the profile,
/// proposes a time; the consultant, told by a push, declines it; the
/// seeker sees it declined, with the consultant's name, without reloading.
/// Neither page ever put its token in a URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultant_declines_and_the_seeker_sees_it_without_reloading() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start_on(Server::start().await, false, PER_MINUTE_150).await;
    let (seeker, consultant, server) = (&scene.seeker, &scene.consultant, &scene.server);
    open_calendar(consultant).await;

    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker.wait_visible("#profile-view").await;
    // The terms before a call: the free window, the instant-call maximum and
    // the exact hold (rate × maximum); the purpose prices.
    let policy = seeker.text("#profile-policy").await;
    assert!(
        policy.contains(&format!("first {} seconds", FREE_WINDOW.as_secs())) && policy.contains("at most 60 minutes"),
        "seeker: #profile-policy is {policy:?}"
    );
    let hold = seeker.text("#profile-hold").await;
    assert!(hold.contains("90.00") && hold.contains("60 minutes"), "seeker: #profile-hold is {hold:?}");
    let mentorship = seeker.text("#profile-price-mentorship").await;
    assert!(mentorship.contains("45.00"), "seeker: the mentorship price is {mentorship:?}");
    assert_eq!(seeker.text("#profile-price-interview").await, "Free");

    pick_slot(seeker, server.now_ms(), 2 * 24 * 3600 * 1000).await;
    let summary = seeker.text("#book-summary").await;
    assert!(summary.contains("50% of the hold"), "seeker: #book-summary states no fee: {summary:?}");
    seeker.click("#book-submit").await;
    let pending = r#".booking[data-state="pending"]"#;
    seeker.wait_visible(&format!("#my-bookings {pending}")).await;
    let mine = seeker.text(&format!("#my-bookings {pending}")).await;
    assert!(mine.contains(CONSULTANT_NAME), "seeker: the booking names {mine:?}, not {CONSULTANT_NAME}");

    // Pushed to the consultant (no polling any more), with the seeker's name.
    consultant.wait_visible(&format!("#consultant-bookings {pending}")).await;
    let theirs = consultant.text(&format!("#consultant-bookings {pending}")).await;
    assert!(theirs.contains(SEEKER_NAME), "consultant: the request names {theirs:?}, not {SEEKER_NAME}");
    consultant.click(&format!("#consultant-bookings {pending} .booking-decline")).await;

    let declined = r#"#my-bookings .booking[data-state="declined"]"#;
    seeker.wait_visible(declined).await;
    seeker
        .wait_until(
            "the decline announced",
            &format!(
                "document.querySelector('#status').textContent.includes({})",
                js_str(&format!("{CONSULTANT_NAME} declined"))
            ),
        )
        .await;
    assert_no_token_in_urls(seeker).await;
    assert_no_token_in_urls(consultant).await;
    scene.finish().await;
}

/// A confirmed booking: the consultant proposes other times from their
/// side; the seeker sees the new times pushed; the consultant accepts one;
/// at 24 hours before the start both get the reminder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consultant_reschedules_and_both_get_the_reminder() {
    let _serial = SERIAL.lock().await;
    let scene = Scene::start_on(Server::start().await, false, FIXED_30).await;
    let (seeker, consultant, server) = (&scene.seeker, &scene.consultant, &scene.server);
    open_calendar(consultant).await;
    const HOUR_MS: i64 = 3600 * 1000;
    const DAY_MS: i64 = 24 * HOUR_MS;

    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker.wait_visible("#profile-view").await;
    // Tuesday: more than 24 hours ahead (so still free to move), and near
    // enough that the dev tokens (12 h of server time) outlive the test.
    let first = pick_slot(seeker, server.now_ms(), DAY_MS + HOUR_MS).await;
    seeker.click("#book-submit").await;
    let pending = r#".booking[data-state="pending"]"#;
    consultant.wait_visible(&format!("#consultant-bookings {pending}")).await;
    consultant.click(&format!("#consultant-bookings {pending} .booking-accept")).await;
    let confirmed = format!(r#".booking[data-state="confirmed"][data-start-ms="{first}"]"#);
    seeker.wait_visible(&format!("#my-bookings {confirmed}")).await;

    // The consultant moves it: their own profile page proposes new times.
    consultant.click(&format!("#consultant-bookings {confirmed} .booking-reschedule")).await;
    consultant.wait_visible(r#"#book-form[data-mode="reschedule"]"#).await;
    assert!(!consultant.is_visible("#profile-call").await, "consultant: a call button on their own profile");
    let later = pick_slot(consultant, server.now_ms(), DAY_MS + 2 * HOUR_MS).await;
    assert_ne!(later, first);
    consultant.click("#book-submit").await;
    consultant
        .wait_until(
            "the new times proposed",
            "document.querySelector('#status').textContent.includes('New times proposed')",
        )
        .await;

    // Pushed to the seeker: pending again, offering the new time.
    let moved = format!("#my-bookings {pending}");
    seeker.wait_visible(&moved).await;
    let offered = seeker.text(&moved).await;
    seeker
        .wait_until(
            "the new times announced",
            "document.querySelector('#status').textContent.includes('New times proposed for your session')",
        )
        .await;
    assert!(offered.contains(CONSULTANT_NAME), "seeker: {offered:?}");
    consultant.wait_visible(&format!("#consultant-bookings {pending}")).await;
    consultant.click(&format!("#consultant-bookings {pending} .booking-accept")).await;
    let confirmed = format!(r#".booking[data-state="confirmed"][data-start-ms="{later}"]"#);
    seeker.wait_visible(&format!("#my-bookings {confirmed}")).await;

    // 24 hours before the start (server clock): the reminder, on both sides.
    let until = u64::try_from(later - DAY_MS - server.now_ms() + 60_000).expect("the reminder is ahead");
    server.advance(Duration::from_millis(until));
    for tab in [seeker, consultant] {
        tab.wait_until(
            "the 24-hour reminder",
            "document.querySelector('#status').textContent.includes('Reminder: a session starts')",
        )
        .await;
    }
    assert!(!seeker.is_visible("#my-bookings .booking-join").await, "seeker: Join shows a day early");
    scene.finish().await;
}
