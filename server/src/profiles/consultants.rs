//! `GET /v1/consultants`: every known consultant with their presence and
//! price, available ones first.

use axum::Json;
use axum::extract::State;
use parley_domain::UserId;
use parley_domain::protocol::rest::ConsultantSummary;
use parley_domain::protocol::{PresenceStatus, Problem, Role};
use parley_signaling::Store;

use crate::kernel::{ApiError, AppState, Caller};

/// `GET /v1/consultants` (bearer token): every known consultant with their
/// presence, available ones first.
#[utoipa::path(get, path = "/v1/consultants", tag = "consultants", security(("bearer" = [])),
    responses((status = 200, body = Vec<ConsultantSummary>),
        (status = 401, description = "missing, forged or expired token", body = Problem)))]
pub(crate) async fn consultants(
    State(s): State<AppState>,
    Caller(_caller): Caller,
) -> Result<Json<Vec<ConsultantSummary>>, ApiError> {
    let mut users = s.store.users_with_role(Role::Consultant).await?;
    for online in s.hub.online_consultants().await {
        if !users.iter().any(|u| u.id == online.id) {
            users.push(online);
        }
    }
    let ids: Vec<UserId> = users.iter().map(|u| u.id.clone()).collect();
    let presence = s.hub.presence_of(&ids).await;
    let mut list: Vec<ConsultantSummary> = Vec::with_capacity(users.len());
    for (u, presence) in users.into_iter().zip(presence) {
        let price = s.billing.price(&u.id).await?;
        list.push(ConsultantSummary { id: u.id, name: u.name, presence, price });
    }
    list.sort_by_key(|c| (c.presence != PresenceStatus::Available, c.name.clone()));
    Ok(Json(list))
}
