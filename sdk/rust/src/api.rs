//! The REST client: `/v1/...` JSON endpoints.

use parley_domain::protocol::ErrorBody;
use parley_domain::protocol::rest::{
    AcceptBooking, Availability, Booking, BookingList, BookingReason, BookingRequest, ConsultantMetrics,
    ConsultantPrice, ConsultantProfile, ConsultantSummary, DevLoginRequest, DevLoginResponse, DirectoryPage,
    DirectoryQuery, Earnings, PayoutLink, ProfileUpdate, PromotionPackage, PromotionPurchaseRequest, PromotionReceipt,
    Receipt, RecordingConsent, RecordingList, RefundRequest, RefundResponse, ReplyRequest, RescheduleBooking, Review,
    ReviewPage, ReviewRequest, SessionDetails, SlotList,
};
use parley_domain::protocol::{Role, UserInfo};
use parley_domain::{SessionId, UserId};

use crate::SdkError;

/// A REST client for one Parley server.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    /// A client for the server at `base` (`http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<ApiClient, SdkError> {
        // reqwest is built without a bundled crypto provider: use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().build().map_err(|e| SdkError::Connect(e.to_string()))?;
        Ok(ApiClient { base: base.trim_end_matches('/').to_owned(), http })
    }

    /// The WebSocket URL of the server's signaling endpoint.
    pub fn signal_url(&self) -> String {
        let ws = self.base.replacen("http://", "ws://", 1).replacen("https://", "wss://", 1);
        format!("{ws}/v1/signal")
    }

    /// Dev mode only: a token for `user_id`, creating the user with `name`
    /// and `role` if new.
    pub async fn dev_login(&self, user_id: &str, name: &str, role: Role) -> Result<(String, UserInfo), SdkError> {
        let body = DevLoginRequest { user_id: user_id.to_owned(), name: Some(name.to_owned()), role: Some(role) };
        let resp = self.http.post(format!("{}/v1/dev/login", self.base)).json(&body).send().await.map_err(http_err)?;
        let out: DevLoginResponse = read(resp).await?;
        Ok((out.token, out.user))
    }

    /// Every known consultant with their presence, available ones first.
    pub async fn consultants(&self, token: &str) -> Result<Vec<ConsultantSummary>, SdkError> {
        let resp =
            self.http.get(format!("{}/v1/consultants", self.base)).bearer_auth(token).send().await.map_err(http_err)?;
        read(resp).await
    }

    /// Consultants: sets the price of their next sessions (DESIGN.md M7).
    pub async fn set_price(&self, token: &str, price: &ConsultantPrice) -> Result<ConsultantPrice, SdkError> {
        let url = format!("{}/v1/consultants/me/price", self.base);
        read(self.http.put(url).bearer_auth(token).json(price).send().await.map_err(http_err)?).await
    }

    /// A session's state, billable seconds, outcome, money and timeline
    /// (its participants and moderators).
    pub async fn session(&self, token: &str, session_id: &SessionId) -> Result<SessionDetails, SdkError> {
        let url = format!("{}/v1/sessions/{session_id}", self.base);
        read(self.http.get(url).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// A consultant's earnings (that consultant, or moderators).
    pub async fn earnings(&self, token: &str, consultant: &UserId) -> Result<Earnings, SdkError> {
        let url = format!("{}/v1/consultants/{consultant}/earnings", self.base);
        read(self.http.get(url).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// Seekers: their receipts, newest first.
    pub async fn receipts(&self, token: &str) -> Result<Vec<Receipt>, SdkError> {
        let url = format!("{}/v1/seekers/me/receipts", self.base);
        read(self.http.get(url).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// Consultants: a payout onboarding link (creating the account if new).
    pub async fn payout_link(&self, token: &str) -> Result<PayoutLink, SdkError> {
        let url = format!("{}/v1/consultants/me/payout-account", self.base);
        read(self.http.post(url).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// Moderators: refunds `amount_minor` (default: all that is left) of a
    /// charged session.
    pub async fn refund(
        &self,
        token: &str,
        session_id: &SessionId,
        amount_minor: Option<i64>,
    ) -> Result<RefundResponse, SdkError> {
        let url = format!("{}/v1/sessions/{session_id}/refund", self.base);
        let body = RefundRequest { amount_minor, reason: None };
        read(self.http.post(url).bearer_auth(token).json(&body).send().await.map_err(http_err)?).await
    }

    /// Consultants: allow (or stop allowing) their sessions to be recorded
    /// (`PUT /v1/consultants/me/recording`).
    pub async fn set_recording_allowed(&self, token: &str, allowed: bool) -> Result<RecordingConsent, SdkError> {
        let url = format!("{}/v1/consultants/me/recording", self.base);
        let body = RecordingConsent { allowed };
        read(self.http.put(url).bearer_auth(token).json(&body).send().await.map_err(http_err)?).await
    }

    /// A session's stored recording files with signed links (the
    /// consultant; the seeker if premium). Empty until the recorder has
    /// stored them, shortly after the session ended.
    pub async fn recordings(&self, token: &str, session_id: &SessionId) -> Result<RecordingList, SdkError> {
        let url = format!("{}/v1/sessions/{session_id}/recordings", self.base);
        read(self.http.get(url).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    // ----- profiles, directory, promotions (docs/protocol.md §13.23–13.28)

    /// Consultants: replaces their profile (`PUT /v1/consultants/me/profile`).
    /// Errors: `invalid_field` naming the field, `unknown_time_zone`.
    pub async fn set_profile(&self, token: &str, profile: &ProfileUpdate) -> Result<ConsultantProfile, SdkError> {
        self.send(reqwest::Method::PUT, token, "/v1/consultants/me/profile", Some(profile)).await
    }

    /// A consultant's public profile, with rating and presence. Errors:
    /// `unknown_consultant` (no such consultant, or no profile yet).
    pub async fn profile(&self, token: &str, consultant: &UserId) -> Result<ConsultantProfile, SdkError> {
        self.get(token, &format!("/v1/consultants/{consultant}/profile")).await
    }

    /// One page of the directory (`GET /v1/directory`): featured consultants
    /// first, then by `query.sort`. Pass the page's `next_cursor` back in
    /// `query.cursor` for the next. Errors: `invalid_field` naming the
    /// parameter.
    pub async fn directory(&self, token: &str, query: &DirectoryQuery) -> Result<DirectoryPage, SdkError> {
        let url = format!("{}/v1/directory", self.base);
        read(self.http.get(url).query(query).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// The promotion packages on sale.
    pub async fn promotion_packages(&self, token: &str) -> Result<Vec<PromotionPackage>, SdkError> {
        self.get(token, "/v1/promotions/packages").await
    }

    /// Consultants: buys a promotion package, charged at once to
    /// `payment_method`. Errors: `unknown_package`, `payment_declined`,
    /// `payment_action_required`.
    pub async fn buy_promotion(
        &self,
        token: &str,
        package_id: &str,
        payment_method: &str,
    ) -> Result<PromotionReceipt, SdkError> {
        let body =
            PromotionPurchaseRequest { package_id: package_id.to_owned(), payment_method: payment_method.to_owned() };
        self.send(reqwest::Method::POST, token, "/v1/consultants/me/promotions", Some(&body)).await
    }

    // ----- scheduling (docs/protocol.md §13.30) ----------------------------

    /// Consultants: replaces their weekly availability and date exceptions.
    /// Errors: `unknown_time_zone`, `invalid_field`.
    pub async fn set_availability(&self, token: &str, availability: &Availability) -> Result<Availability, SdkError> {
        self.send(reqwest::Method::PUT, token, "/v1/consultants/me/availability", Some(availability)).await
    }

    /// A consultant's free slots of `length_min` minutes (default: the
    /// shortest offered) in `[from_ms, to_ms)` (Unix ms; default: now and
    /// 14 days later). Errors: `slot_unavailable`, `invalid_field`.
    pub async fn slots(
        &self,
        token: &str,
        consultant: &UserId,
        from_ms: Option<i64>,
        to_ms: Option<i64>,
        length_min: Option<u32>,
    ) -> Result<SlotList, SdkError> {
        let url = format!("{}/v1/consultants/{consultant}/slots", self.base);
        let query = [("from_ms", from_ms), ("to_ms", to_ms), ("length_min", length_min.map(i64::from))];
        let query: Vec<(&str, i64)> = query.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect();
        read(self.http.get(url).query(&query).bearer_auth(token).send().await.map_err(http_err)?).await
    }

    /// Seekers: proposes 1–3 slots to a consultant. Errors: `slot_in_past`,
    /// `slot_unavailable`, `slot_taken`, `missing_field` (no payment method
    /// for a priced session), `payment_declined`.
    pub async fn book(&self, token: &str, request: &BookingRequest) -> Result<Booking, SdkError> {
        self.send(reqwest::Method::POST, token, "/v1/bookings", Some(request)).await
    }

    /// The caller's bookings (as seeker or consultant).
    pub async fn bookings(&self, token: &str) -> Result<BookingList, SdkError> {
        self.get(token, "/v1/bookings").await
    }

    /// One of the caller's bookings. Errors: `unknown_booking`.
    pub async fn booking(&self, token: &str, booking_id: &str) -> Result<Booking, SdkError> {
        self.get(token, &format!("/v1/bookings/{booking_id}")).await
    }

    /// The consultant: accepts the proposed start `start_ms` (Unix ms).
    /// Errors: `booking_not_pending`, `slot_taken`, `invalid_field`.
    pub async fn accept_booking(&self, token: &str, booking_id: &str, start_ms: i64) -> Result<Booking, SdkError> {
        let path = format!("/v1/bookings/{booking_id}/accept");
        self.send(reqwest::Method::POST, token, &path, Some(&AcceptBooking { start_ms })).await
    }

    /// The consultant: declines a pending booking.
    pub async fn decline_booking(
        &self,
        token: &str,
        booking_id: &str,
        reason: Option<&str>,
    ) -> Result<Booking, SdkError> {
        self.booking_step(token, booking_id, "decline", reason).await
    }

    /// Either side: cancels a pending or confirmed booking (a seeker pays
    /// the late fee within 24 h of the start).
    pub async fn cancel_booking(
        &self,
        token: &str,
        booking_id: &str,
        reason: Option<&str>,
    ) -> Result<Booking, SdkError> {
        self.booking_step(token, booking_id, "cancel", reason).await
    }

    /// `POST /v1/bookings/{id}/{step}` with an optional reason.
    async fn booking_step(
        &self,
        token: &str,
        booking_id: &str,
        step: &str,
        reason: Option<&str>,
    ) -> Result<Booking, SdkError> {
        let body = BookingReason { reason: reason.map(str::to_owned) };
        self.send(reqwest::Method::POST, token, &format!("/v1/bookings/{booking_id}/{step}"), Some(&body)).await
    }

    /// Either side, more than 24 h ahead: proposes new slots; the booking
    /// waits for the consultant again, under a new session id.
    pub async fn reschedule_booking(&self, token: &str, booking_id: &str, slots: &[i64]) -> Result<Booking, SdkError> {
        let body = RescheduleBooking { slots: slots.to_vec() };
        self.send(reqwest::Method::POST, token, &format!("/v1/bookings/{booking_id}/reschedule"), Some(&body)).await
    }

    // ----- reviews and metrics (docs/protocol.md §13.32–13.35) ------------

    /// The seeker of a completed session: 1–5 stars and a text. Errors:
    /// `session_not_completed`, `review_exists`, `forbidden`, `invalid_field`.
    pub async fn review(
        &self,
        token: &str,
        session_id: &SessionId,
        review: &ReviewRequest,
    ) -> Result<Review, SdkError> {
        self.send(reqwest::Method::POST, token, &format!("/v1/sessions/{session_id}/review"), Some(review)).await
    }

    /// The reviewed consultant: their one public reply. Errors:
    /// `unknown_review`, `review_exists`, `forbidden`.
    pub async fn reply(&self, token: &str, review_id: &str, text: &str) -> Result<Review, SdkError> {
        let body = ReplyRequest { text: text.to_owned() };
        self.send(reqwest::Method::POST, token, &format!("/v1/reviews/{review_id}/reply"), Some(&body)).await
    }

    /// A consultant's reviews, newest first (first page), with their
    /// reputation.
    pub async fn reviews(&self, token: &str, consultant: &UserId) -> Result<ReviewPage, SdkError> {
        self.get(token, &format!("/v1/consultants/{consultant}/reviews")).await
    }

    /// A consultant's metrics over all time (that consultant, or moderators):
    /// sessions, billable minutes, earnings, rating, acceptance, per month.
    pub async fn metrics(&self, token: &str, consultant: &UserId) -> Result<ConsultantMetrics, SdkError> {
        self.get(token, &format!("/v1/consultants/{consultant}/metrics")).await
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, SdkError> {
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await.map_err(http_err)?;
        read(resp).await
    }

    async fn send<B: serde::Serialize + ?Sized, T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, SdkError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(body);
        }
        read(req.send().await.map_err(http_err)?).await
    }

    /// Downloads a recording file through its signed link
    /// ([`RecordingFile::url`](parley_domain::protocol::rest::RecordingFile::url),
    /// relative to the server's base URL; no token needed while it is valid).
    pub async fn download(&self, url: &str) -> Result<bytes::Bytes, SdkError> {
        let resp = self.http.get(format!("{}{url}", self.base)).send().await.map_err(http_err)?;
        let status = resp.status();
        if !status.is_success() {
            return Err(SdkError::Connect(format!("HTTP {status} for {url}")));
        }
        resp.bytes().await.map_err(http_err)
    }
}

fn http_err(e: reqwest::Error) -> SdkError {
    SdkError::Connect(e.to_string())
}

async fn read<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, SdkError> {
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(http_err)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| SdkError::Protocol(e.to_string()));
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(b) if status.as_u16() == 401 => Err(SdkError::Unauthorized { code: b.code, message: b.message }),
        Ok(b) => Err(SdkError::Server { code: b.code, message: b.message }),
        Err(_) => Err(SdkError::Connect(format!("HTTP {status}"))),
    }
}
