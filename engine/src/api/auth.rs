//! The caller of a request: [`Caller`] extracts and verifies the bearer token, so a
//! handler that takes a `Caller` is authenticated, and [`Caller::require`] checks a scope.
//!
//! No token, a bad one or an expired one is 401; a missing scope is 403. A resource of
//! another organization is answered by its handler as 404, never with its data.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::auth::{AuthError, Principal};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl Caller {
    /// The caller, if their token carries `scope`; otherwise 403 naming it.
    pub fn require(&self, scope: &str) -> Result<&Principal, ApiError> {
        if self.0.has_scope(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "missing_scope",
                format!("this request needs the scope `{scope}`, which the token does not carry"),
            ))
        }
    }

    /// The caller's organization: every resource the request reaches belongs to it.
    pub fn org(&self) -> &str {
        &self.0.organization
    }

    /// The caller's user id.
    pub fn user_id(&self) -> &str {
        &self.0.user_id
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        let code = match e {
            AuthError::Missing => "missing_token",
            AuthError::Expired(_) => "token_expired",
            _ => "invalid_token",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code, e.to_string())
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Malformed(
                "the Authorization header is not `Bearer <token>`",
            ))?
            .trim();
        let principal = state.auth.verify(token, chrono::Utc::now())?;
        Ok(Caller(principal))
    }
}
