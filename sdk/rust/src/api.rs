//! The REST client: `/v1/...` JSON endpoints.

use parley_domain::protocol::ErrorBody;
use parley_domain::protocol::rest::{
    ConsultantPrice, ConsultantSummary, DevLoginRequest, DevLoginResponse, Earnings, PayoutLink, Receipt,
    RecordingConsent, RecordingList, RefundRequest, RefundResponse, SessionDetails,
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
