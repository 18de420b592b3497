//! The bearer token scheme: token checks and the rate limit per subject.

use std::sync::Arc;
use std::time::Instant;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::{ApiError, ApiState};
use crate::auth::Principal;

/// A JWT in `Authorization: Bearer <token>`, signed with the configured key and carrying
/// `sub`, `role`, `iss`, `aud`, `exp` and `nbf`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

/// Verifies the token, then takes one request from its subject's rate limit.
async fn check_bearer(request: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = request.data::<Arc<ApiState>>().ok_or_else(|| {
        ApiError::Internal("the API state is not attached to the route".to_owned())
    })?;
    authorize(state, &bearer.token).map_err(Into::into)
}

/// Checks `token` and the rate limit of its subject.
///
/// # Errors
///
/// [`ApiError::Unauthorized`] for a token that fails verification (the token itself is in
/// no error or log), [`ApiError::RateLimited`] when the subject's bucket is empty.
pub fn authorize(state: &ApiState, token: &str) -> Result<Principal, ApiError> {
    let principal = state.auth.verify(token).map_err(ApiError::Unauthorized)?;
    if let Err(wait) = state.limiter.check(&principal.subject, Instant::now()) {
        tracing::debug!(subject = %principal.subject, "rate limited");
        return Err(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    Ok(principal)
}

/// Returns the token of an `Authorization: Bearer` header, if the request has one.
pub fn bearer_token(request: &Request) -> Option<&str> {
    let value = request.header(poem::http::header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
