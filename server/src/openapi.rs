//! `GET /openapi.json`: the REST API described with utoipa from the
//! handlers' annotations and `domain::protocol::rest` (the signaling
//! WebSocket is described in docs/protocol.md).

use parley_domain::protocol::rest::EngagementEventData;
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
    AnswerDisputeRequest, Chargeback, DecideDisputeRequest, Dispute, DisputeBundle, DisputeDecision, DisputeReason,
    DisputeStatus, OpenDisputeRequest, PartyHistory,
};
use parley_domain::protocol::rest::{
    ConsultantProfile, ConsultantRating, DirectoryItem, DirectoryPage, FeaturedWindow, MyPromotions, ProfileUpdate,
    PromotionPackage, PromotionPurchaseRequest, PromotionReceipt,
};
use parley_domain::protocol::rest::{
    CreateEngagement, DisputeMilestone, Engagement, Milestone, MilestoneTerms, PackageTerms, ResolveMilestone,
    SubmitMilestone,
};
use parley_domain::protocol::rest::{Policy, PurposePrices, WsTicket};
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
        crate::profiles::consultants::consultants,
        crate::kernel::http::dev_login,
        crate::kernel::tickets::issue,
        crate::bookings::availability::policy,
        crate::sessions::http::session,
        crate::sessions::http::my_price,
        crate::sessions::http::set_price,
        crate::sessions::http::clear_price,
        crate::sessions::http::payout_account,
        crate::sessions::http::earnings,
        crate::sessions::http::receipts,
        crate::sessions::http::refund,
        crate::sessions::http::end_session,
        crate::sessions::http::stripe_webhook,
        crate::media::http::livekit_webhook,
        crate::recordings::download::download,
        crate::recordings::http::recordings,
        crate::recordings::http::recap,
        crate::recordings::http::set_premium,
        crate::recordings::http::my_recording_consent,
        crate::recordings::http::set_recording_consent,
        crate::bookings::availability::my_availability,
        crate::bookings::availability::set_availability,
        crate::bookings::availability::set_purpose_price,
        crate::bookings::availability::clear_purpose_price,
        crate::bookings::availability::slots,
        crate::bookings::http::propose,
        crate::bookings::http::list,
        crate::bookings::http::one,
        crate::bookings::http::accept,
        crate::bookings::http::decline,
        crate::bookings::http::cancel,
        crate::engagements::http::create,
        crate::engagements::http::list,
        crate::engagements::http::one,
        crate::engagements::http::cancel,
        crate::engagements::http::submit,
        crate::engagements::http::approve,
        crate::engagements::http::dispute,
        crate::engagements::http::resolve,
        crate::bookings::http::reschedule,
        crate::reviews::http::create_review,
        crate::reviews::http::reply,
        crate::reviews::http::consultant_reviews,
        crate::reviews::metrics::consultant_metrics,
        crate::profiles::http::my_profile,
        crate::profiles::http::set_profile,
        crate::profiles::http::profile,
        crate::profiles::directory::directory,
        crate::profiles::promotions::packages,
        crate::profiles::promotions::buy,
        crate::profiles::promotions::my_promotions,
        crate::disputes::http::open,
        crate::disputes::http::answer,
        crate::disputes::http::decide,
        crate::disputes::http::list,
        crate::disputes::http::show,
        crate::disputes::http::show_markdown,
    ),
    components(schemas(
        ConsultantPrice, ConsultantSummary, DevLoginRequest, DevLoginResponse, Earnings, EarningsItem, EarningsTotal,
        HoldInfo, LedgerItem, PayoutLink, PayoutLinkRequest, PriceModel, Receipt, RefundRequest, RefundResponse, SessionDetails,
        TimelineItem, PremiumRequest, RecordingConsent, RecordingFile, RecordingList, TalkTime, ChatLine, Recap,
        Availability, WeeklyRule, DateException, TimeWindow, Weekday, Slot, SlotList, Purpose, BookingRequest,
        AcceptBooking, RescheduleBooking, BookingReason, BookingState, Booking, BookingPrice, BookingList,
        CreateEngagement, PackageTerms, MilestoneTerms, Engagement, Milestone, SubmitMilestone, DisputeMilestone,
        ResolveMilestone,
        ChatKind, Problem, ErrorCode, Outcome, PresenceStatus, Role, UserInfo, Money, SessionId, UserId,
        ReviewRequest, ReplyRequest, Review, ReviewReply, Reputation, ReviewPage,
        ConsultantMetrics, MonthMetrics, Acceptance, AcceptanceCounts,
        WebhookEventType, SessionStartedData, SessionEndedData, SessionSettledData, ReviewCreatedData, EngagementEventData,
        ReconcileFindingsData, ReconcileFinding, ReconcileFindingKind,
        ProfileUpdate, ConsultantProfile, ConsultantRating, DirectoryItem, DirectoryPage, PromotionPackage,
        PromotionPurchaseRequest, PromotionReceipt, FeaturedWindow, MyPromotions, Policy, PurposePrices, WsTicket,
        PromotionPurchaseRequest, PromotionReceipt, FeaturedWindow, MyPromotions,
        OpenDisputeRequest, AnswerDisputeRequest, DecideDisputeRequest, Dispute, DisputeBundle, DisputeDecision,
        DisputeReason, DisputeStatus, PartyHistory, Chargeback,
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
