//! The common set-up of the journeys: a consultant with a published
//! profile, a price and presence `available`, and a seeker who found them.

use super::*;

/// What the consultant types into the price form.
pub(crate) struct PriceForm {
    /// In major units, as a person types it ("30", "1.50").
    pub(crate) amount: &'static str,
    pub(crate) model: &'static str,
    /// What must be stored, in minor units.
    pub(crate) minor: i64,
}

pub(crate) const FIXED_30: PriceForm = PriceForm { amount: "30", model: "fixed", minor: 3000 };

pub(crate) const PER_MINUTE_150: PriceForm = PriceForm { amount: "1.50", model: "per_minute", minor: 150 };

/// A server, a consultant with a published profile (a tax adviser in
/// Paris), a price and presence `available`, and a seeker who found them
/// by keyword in the directory.
pub(crate) struct Scene {
    pub(crate) server: Server,
    pub(crate) seeker: Tab,
    pub(crate) consultant: Tab,
}

impl Scene {
    pub(crate) async fn start(screenshots: bool) -> Scene {
        Self::start_with(screenshots, FIXED_30).await
    }

    pub(crate) async fn start_with(screenshots: bool, price: PriceForm) -> Scene {
        Self::start_on(Server::start().await, screenshots, price).await
    }

    pub(crate) async fn start_on(server: Server, screenshots: bool, price: PriceForm) -> Scene {
        let (seeker, consultant) = tokio::join!(Tab::launch("seeker"), Tab::launch("consultant"));
        let home = format!("{}/", server.base);
        tokio::join!(seeker.open(&home), consultant.open(&home));

        consultant.wait_visible("#login-form").await;
        consultant.sign_in(CONSULTANT, CONSULTANT_NAME, "consultant").await;
        consultant.publish_profile().await;
        consultant.wait_visible(r#"#price-form[data-loaded="true"]"#).await;
        consultant.fill("#price-amount", price.amount).await;
        consultant.fill("#price-model", price.model).await;
        consultant.click("#price-save").await;
        server.wait_price(CONSULTANT, price.minor).await;
        consultant.click("#availability-toggle").await;
        consultant.wait_visible(r#"#availability-toggle[aria-pressed="true"]"#).await;
        if screenshots {
            consultant.screenshot("10-consultant-desk").await;
        }

        seeker.wait_visible("#login-form").await;
        if screenshots {
            seeker.screenshot("01-sign-in").await;
        }
        seeker.sign_in(SEEKER, SEEKER_NAME, "seeker").await;
        // Keyword search over the directory: "tax" is in the headline and tags, not the name.
        seeker.fill("#consultant-search", "taxes").await;
        seeker
            .wait_visible(&format!(r#"#consultants [data-consultant-id="{CONSULTANT}"][data-presence="available"]"#))
            .await;
        if screenshots {
            seeker.screenshot("02-consultants").await;
        }
        Scene { server, seeker, consultant }
    }

    /// The seeker calls with `card`; the consultant's `#incoming-call` shows.
    pub(crate) async fn call(&self, card: &str, screenshots: bool) {
        self.seeker.fill("#payment-method", card).await;
        self.seeker.click(&call_now()).await;
        self.consultant.wait_visible("#incoming-call").await;
        if screenshots {
            self.seeker.wait_visible("#outgoing-call").await;
            self.seeker.screenshot("03-outgoing-call").await;
            self.consultant.screenshot("03-incoming-call").await;
        }
    }

    /// Both sides are in `#call-view` with media flowing both ways and the
    /// free-window countdown shown.
    pub(crate) async fn talk(&self) {
        tokio::join!(self.seeker.wait_visible("#call-view"), self.consultant.wait_visible("#call-view"));
        tokio::join!(self.seeker.wait_media_flowing(), self.consultant.wait_media_flowing());
        tokio::join!(self.seeker.wait_visible("#meter-countdown"), self.consultant.wait_visible("#meter-countdown"));
        // The countdown starts from the server's free window (the `room.join`
        // ack carries it), not from an assumed 10 minutes.
        for side in [&self.seeker, &self.consultant] {
            let left = side.eval("Number(document.querySelector('#meter-countdown').dataset.seconds)").await;
            let left = left.as_f64().unwrap_or(f64::MAX);
            assert!(left <= FREE_WINDOW.as_secs_f64(), "countdown shows {left} s of a {FREE_WINDOW:?} free window");
        }
    }

    /// The consultant accepts the ringing call; both talk.
    pub(crate) async fn accept_and_talk(&self) {
        self.consultant.click("#accept-call").await;
        self.talk().await;
    }

    /// Moves the server clock past `F`: both see the billing indicator.
    pub(crate) async fn past_the_free_window(&self) {
        self.server.advance(PAST_FREE_WINDOW);
        tokio::join!(self.seeker.wait_visible("#meter-billing"), self.consultant.wait_visible("#meter-billing"));
    }

    pub(crate) async fn finish(self) {
        tokio::join!(self.seeker.close(), self.consultant.close());
        self.server.stop().await;
    }
}

impl Tab {
    /// The consultant publishes a profile through the editor and waits
    /// until the desk says it is live in the directory.
    pub(crate) async fn publish_profile(&self) {
        self.wait_visible(r#"#profile-form[data-loaded="true"]"#).await;
        self.fill("#profile-display-name", CONSULTANT_NAME).await;
        self.fill("#profile-headline-input", "Tax advice for freelancers").await;
        self.fill("#profile-bio-input", "Ten years of VAT returns for people who work for themselves.").await;
        self.fill("#profile-tags-input", "Tax, VAT, freelancing").await;
        self.fill("#profile-languages-input", "en, fr").await;
        self.fill("#profile-time-zone", "Europe/Paris").await;
        self.click("#profile-save").await;
        self.wait_visible(r#"#profile-live[data-live="true"]"#).await;
    }

    /// The seeker leaves a review on `#summary` and finds it on the
    /// consultant's profile page.
    pub(crate) async fn review_and_find_it(&self, text: &str) {
        self.fill("#review-stars", "4").await;
        self.fill("#review-text", text).await;
        self.click("#review-submit").await;
        self.wait_visible("#review-thanks").await;
        self.click("#review-profile").await;
        self.wait_visible(&format!(r#"#profile-view[data-consultant-id="{CONSULTANT}"]"#)).await;
        let sel = js_str("#profile-reviews .review");
        let want = js_str(text);
        self.wait_until(
            "the review on the profile (#profile-reviews)",
            &format!(
                "[...document.querySelectorAll({sel})].some((r) => r.textContent.includes({want}) && r.textContent.includes('★★★★☆'))"
            ),
        )
        .await;
        let rating = self.text("#profile-rating").await;
        assert!(rating.contains("4.0") && rating.contains("1 review"), "{}: #profile-rating is {rating:?}", self.who);
    }
}
