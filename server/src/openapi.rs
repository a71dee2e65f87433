//! `GET /openapi.json`: the REST API described with utoipa from the
//! handlers' annotations and `domain::protocol::rest` (the signaling
//! WebSocket is described in docs/protocol.md).

use parley_domain::protocol::rest::{
    AcceptBooking, Availability, Booking, BookingList, BookingPrice, BookingReason, BookingRequest, BookingState,
    ChatLine, ConsultantPrice, ConsultantSummary, DateException, DevLoginRequest, DevLoginResponse, Earnings,
    EarningsItem, EarningsTotal, HoldInfo, LedgerItem, PayoutLink, PayoutLinkRequest, PremiumRequest, PriceModel,
    Purpose, Recap, Receipt, RecordingConsent, RecordingFile, RecordingList, RefundRequest, RefundResponse,
    RescheduleBooking, SessionDetails, Slot, SlotList, TalkTime, TimeWindow, TimelineItem, Weekday, WeeklyRule,
};
use parley_domain::protocol::rest::{
    Acceptance, AcceptanceCounts, ConsultantMetrics, MonthMetrics, ReplyRequest, Reputation, Review, ReviewCreatedData,
    ReviewPage, ReviewReply, ReviewRequest, SessionEndedData, SessionSettledData, SessionStartedData, WebhookEventType,
};
use parley_domain::protocol::rest::{
    ConsultantProfile, ConsultantRating, DirectoryItem, DirectoryPage, FeaturedWindow, MyPromotions, ProfileUpdate,
    PromotionPackage, PromotionPurchaseRequest, PromotionReceipt,
};
use parley_domain::protocol::rest::{ReconcileFinding, ReconcileFindingKind, ReconcileFindingsData};
use parley_domain::protocol::{ChatKind, ErrorCode, Outcome, PresenceStatus, Problem, Role, UserInfo};
use parley_domain::{Money, SessionId, UserId};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Parley REST API", description = "Sessions, prices, earnings, receipts, payouts, refunds and \
        Stripe webhooks. Amounts are integer minor units with an ISO 4217 currency (DESIGN.md B1); times are \
        Unix milliseconds of server time. Errors are RFC 9457 problem details (`application/problem+json`) with a stable `code`."),
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
        crate::bookings::my_availability,
        crate::bookings::set_availability,
        crate::bookings::set_purpose_price,
        crate::bookings::clear_purpose_price,
        crate::bookings::slots,
        crate::bookings::propose,
        crate::bookings::list,
        crate::bookings::one,
        crate::bookings::accept,
        crate::bookings::decline,
        crate::bookings::cancel,
        crate::bookings::reschedule,
        crate::reviews::create_review,
        crate::reviews::reply,
        crate::reviews::consultant_reviews,
        crate::metrics_api::consultant_metrics,
        crate::profiles::my_profile,
        crate::profiles::set_profile,
        crate::profiles::profile,
        crate::directory::directory,
        crate::promotions::packages,
        crate::promotions::buy,
        crate::promotions::my_promotions,
    ),
    components(schemas(
        ConsultantPrice, ConsultantSummary, DevLoginRequest, DevLoginResponse, Earnings, EarningsItem, EarningsTotal,
        HoldInfo, LedgerItem, PayoutLink, PayoutLinkRequest, PriceModel, Receipt, RefundRequest, RefundResponse, SessionDetails,
        TimelineItem, PremiumRequest, RecordingConsent, RecordingFile, RecordingList, TalkTime, ChatLine, Recap,
        Availability, WeeklyRule, DateException, TimeWindow, Weekday, Slot, SlotList, Purpose, BookingRequest,
        AcceptBooking, RescheduleBooking, BookingReason, BookingState, Booking, BookingPrice, BookingList,
        ChatKind, Problem, ErrorCode, Outcome, PresenceStatus, Role, UserInfo, Money, SessionId, UserId,
        ReviewRequest, ReplyRequest, Review, ReviewReply, Reputation, ReviewPage,
        ConsultantMetrics, MonthMetrics, Acceptance, AcceptanceCounts,
        WebhookEventType, SessionStartedData, SessionEndedData, SessionSettledData, ReviewCreatedData,
        ReconcileFindingsData, ReconcileFinding, ReconcileFindingKind,
        ProfileUpdate, ConsultantProfile, ConsultantRating, DirectoryItem, DirectoryPage, PromotionPackage,
        PromotionPurchaseRequest, PromotionReceipt, FeaturedWindow, MyPromotions,
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
