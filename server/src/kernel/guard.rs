//! Checks every area makes on a request's caller and path.

use parley_domain::SessionId;
use parley_domain::protocol::{ErrorCode, Role, UserInfo};

use super::error::ApiError;

/// 403 `wrong_role` unless `user` has `role`.
pub fn require(user: &UserInfo, role: Role) -> Result<(), ApiError> {
    if user.role == role {
        Ok(())
    } else {
        Err(ApiError::Forbidden(ErrorCode::WrongRole, format!("only {}s can do this", role.as_str())))
    }
}

/// A session id from a path segment; 400 `invalid_field` if it is not one.
pub fn session_id(raw: String) -> Result<SessionId, ApiError> {
    SessionId::parse(raw).map_err(|e| ApiError::BadRequest(ErrorCode::InvalidField, format!("session id: {e}")))
}
