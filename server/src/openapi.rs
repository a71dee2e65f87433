//! `GET /openapi.json`: the REST API described with utoipa from the
//! handlers' annotations and `domain::protocol::rest` (the signaling
//! WebSocket is described in docs/protocol.md).

use parley_domain::protocol::rest::{
    Acceptance, AcceptanceCounts, ConsultantMetrics, MonthMetrics, ReplyRequest, Reputation, Review, ReviewCreatedData,
    ReviewPage, ReviewReply, ReviewRequest, SessionEndedData, SessionSettledData, SessionStartedData, WebhookEventType,
};
use parley_domain::protocol::rest::{
    ChatLine, ConsultantPrice, ConsultantSummary, DevLoginRequest, DevLoginResponse, Earnings, EarningsItem,
    EarningsTotal, HoldInfo, LedgerItem, PayoutLink, PayoutLinkRequest, PremiumRequest, PriceModel, Recap, Receipt,
    RecordingConsent, RecordingFile, RecordingList, RefundRequest, RefundResponse, SessionDetails, TalkTime,
    TimelineItem,
};
use parley_domain::protocol::{ChatKind, ErrorBody, ErrorCode, Outcome, PresenceStatus, Role, UserInfo};
use parley_domain::{Money, SessionId, UserId};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley REST API", description = "Sessions, prices, earnings, receipts, payouts, refunds and \
        Stripe webhooks. Amounts are integer minor units with an ISO 4217 currency (DESIGN.md B1); times are \
        Unix milliseconds of server time. Errors are `ErrorBody` with a stable `code`."),
    paths(
        crate::routes::consultants,
        crate::routes::dev_login,
        crate::api::session,
        crate::api::my_price,
        crate::api::set_price,
        crate::api::clear_price,
        crate::api::payout_account,
        crate::api::earnings,
        crate::api::receipts,
        crate::api::refund,
        crate::api::end_session,
        crate::api::stripe_webhook,
        crate::files::download,
        crate::recording::recordings,
        crate::recording::recap,
        crate::recording::set_premium,
        crate::recording::my_recording_consent,
        crate::recording::set_recording_consent,
        crate::reviews::create_review,
        crate::reviews::reply,
        crate::reviews::consultant_reviews,
        crate::metrics_api::consultant_metrics,
    ),
    components(schemas(
        ConsultantPrice, ConsultantSummary, DevLoginRequest, DevLoginResponse, Earnings, EarningsItem, EarningsTotal,
        HoldInfo, LedgerItem, PayoutLink, PayoutLinkRequest, PriceModel, Receipt, RefundRequest, RefundResponse, SessionDetails,
        TimelineItem, PremiumRequest, RecordingConsent, RecordingFile, RecordingList, TalkTime, ChatLine, Recap,
        ChatKind, ErrorBody, ErrorCode, Outcome, PresenceStatus, Role, UserInfo, Money, SessionId, UserId,
        ReviewRequest, ReplyRequest, Review, ReviewReply, Reputation, ReviewPage,
        ConsultantMetrics, MonthMetrics, Acceptance, AcceptanceCounts,
        WebhookEventType, SessionStartedData, SessionEndedData, SessionSettledData, ReviewCreatedData,
    )),
    modifiers(&Bearer),
)]
struct ApiDoc;

/// Declares the `bearer` security scheme (the JWT of `parley token` or dev
/// login).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

/// The OpenAPI 3.1 document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
