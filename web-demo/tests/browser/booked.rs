//! A booked session, from the consultant's profile to the bill.

use super::*;

/// The scheduled journey: the consultant opens a weekly calendar with a
/// day off; the seeker finds them by keyword, opens the profile (no slots
/// on the day off), proposes three slots (a fourth cannot be picked) after
/// reading price, hold timing and the cancellation policy, for mentorship
/// (priced EUR 45.00 by the consultant), then two other times instead; the
/// consultant accepts the second; when the server clock reaches the room
/// opening both get Join, talk past `F`, and the seeker is charged the
/// mentorship price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_session_from_the_profile_to_the_bill() {
    let _serial = SERIAL.lock().await;
    booked_journey(Server::start().await).await;
}

/// The booked journey on PostgreSQL (its full-text search and scheduling queries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_booked_session_from_the_profile_to_the_bill_on_postgres() {
    let _serial = SERIAL.lock().await;
    booked_journey(Server::start_on_postgres().await).await;
}

async fn booked_journey(server: Server) {
    let scene = Scene::start_on(server, false, FIXED_30).await;
    let (seeker, consultant, server) = (&scene.seeker, &scene.consultant, &scene.server);

    // The consultant's week: Monday to Friday, 09:00-17:00 Paris time.
    for day in ["mon", "tue", "wed", "thu", "fri"] {
        consultant.click(&format!("#avail-{day}-on")).await;
    }
    // Mentorship costs EUR 45.00 (a price per purpose, in major units).
    consultant.fill("#price-mentorship", "45").await;
    consultant.click("#price-save").await;
    consultant
        .wait_until("prices saved", "document.querySelector('#status').textContent.includes('Price saved')")
        .await;

    // Tuesday 8 January off (a date exception).
    consultant.fill("#exception-date", "2030-01-08").await;
    consultant.click("#exception-add").await;
    consultant.wait_visible(r#"#exception-rows .exception[data-date="2030-01-08"]"#).await;
    consultant.click("#week-save").await;
    consultant
        .wait_until(
            "availability saved",
            "document.querySelector('#status').textContent.includes('Availability saved')",
        )
        .await;

    // The seeker's profile page.
    seeker.click(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"] .open-profile"#)).await;
    seeker.wait_visible("#profile-view").await;
    let headline = seeker.text("#profile-headline").await;
    assert_eq!(headline, "Tax advice for freelancers");
    seeker.wait_until("four free slots", "document.querySelectorAll('#profile-slots input').length >= 4").await;
    let days = seeker
        .eval("[...document.querySelectorAll('#profile-slots .slot-day-title')].map((e) => e.textContent).join(' | ')")
        .await;
    let days = days.as_str().unwrap_or_default().to_owned();
    assert!(
        days.contains("January 7") && days.contains("January 9") && !days.contains("January 8"),
        "seeker: slot days {days:?}: Tuesday 8 January is off"
    );
    let zones = seeker.text("#book-zones").await;
    assert!(zones.contains("Europe/Paris"), "seeker: #book-zones is {zones:?}: the consultant's zone is not shown");
    for n in 1..=3 {
        seeker.click(&format!("#profile-slots .slot:nth-child({n}) input")).await;
    }
    let fourth_disabled = seeker.eval("document.querySelectorAll('#profile-slots input')[3].disabled").await;
    assert_eq!(fourth_disabled, serde_json::Value::Bool(true), "seeker: a fourth slot can be picked");
    let summary = seeker.text("#book-summary").await;
    for words in ["30.00", "hold", "24 hours"] {
        assert!(summary.contains(words), "seeker: #book-summary does not mention {words:?}: {summary:?}");
    }
    seeker.screenshot("11-profile-booking").await;
    seeker.fill("#book-purpose", "mentorship").await;
    seeker.click("#book-submit").await;
    seeker.wait_visible(r#"#my-bookings .booking[data-state="pending"]"#).await;

    // The seeker changes their mind: two other times instead.
    seeker.click(r#"#my-bookings .booking[data-state="pending"] .booking-reschedule"#).await;
    seeker.wait_visible(r#"#book-form[data-mode="reschedule"]"#).await;
    seeker.wait_until("free slots to pick", "document.querySelectorAll('#profile-slots input').length >= 5").await;
    for n in 4..=5 {
        seeker.click(&format!("#profile-slots .slot:nth-child({n}) input")).await;
    }
    seeker.click("#book-submit").await;
    seeker
        .wait_until("the new proposal", "document.querySelector('#status').textContent.includes('New times proposed')")
        .await;

    // The consultant accepts the second proposed time.
    let pending = r#"#consultant-bookings .booking[data-state="pending"]"#;
    consultant.wait_visible(pending).await;
    consultant
        .wait_until(
            "the rescheduled booking offering the two new times",
            &format!("document.querySelector('{pending} .booking-slot')?.options.length === 2"),
        )
        .await;
    let second = consultant.eval(&format!("document.querySelector('{pending} .booking-slot').options[1].value")).await;
    let second = second.as_str().expect("a second proposed time").to_owned();
    consultant.fill(&format!("{pending} .booking-slot"), &second).await;
    consultant.click(&format!("{pending} .booking-accept")).await;
    let confirmed = format!(r#".booking[data-state="confirmed"][data-start-ms="{second}"]"#);
    consultant.wait_visible(&format!("#consultant-bookings {confirmed}")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed}")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed} .booking-wait")).await;
    assert!(!seeker.is_visible("#my-bookings .booking-join").await, "seeker: Join shows before the room opens");
    // Cancelling now would be late (the start is within 24 hours): the fee is stated first.
    seeker.click(&format!("#my-bookings {confirmed} .booking-cancel")).await;
    seeker.wait_visible(&format!("#my-bookings {confirmed} .booking-fee")).await;
    let fee = seeker.text(&format!("#my-bookings {confirmed} .booking-fee")).await;
    assert!(fee.contains("late") && fee.contains("45.00"), "seeker: the late-cancellation words are {fee:?}");
    seeker.click(&format!("#my-bookings {confirmed} .booking-cancel-keep")).await;
    seeker.screenshot("12-my-sessions").await;

    // The server clock reaches the room opening (10 minutes before the start).
    let opens =
        seeker.eval(&format!("Number(document.querySelector('#my-bookings {confirmed}').dataset.opensAtMs)")).await;
    let opens = opens.as_i64().expect("data-opens-at-ms");
    let wait = u64::try_from(opens - server.now_ms()).expect("the room opens later");
    server.advance(Duration::from_millis(wait));
    let join = r#".booking[data-state="held"] .booking-join"#;
    let (seeker_join, consultant_join) = (format!("#my-bookings {join}"), format!("#consultant-bookings {join}"));
    tokio::join!(seeker.click(&seeker_join), consultant.click(&consultant_join));
    scene.talk().await;
    scene.past_the_free_window().await;
    seeker.click("#hangup").await;
    seeker.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    consultant.wait_visible(r#"#summary[data-outcome="charged"]"#).await;
    let amount = seeker.text("#summary-amount").await;
    assert!(
        amount.contains("45.00"),
        "seeker: #summary-amount is {amount:?}, expected the mentorship price, EUR 45.00"
    );
    scene.finish().await;
}
