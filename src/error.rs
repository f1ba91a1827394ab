//! Errors at the HTTP edge.
//!
//! Policy: modules return their own typed errors (`InboundError`, `StoreError`,
//! `VerifyError`...); infrastructure calls inside workers and the CLI use
//! `anyhow` with `.context("Failed to <verb> <thing>")`. Only `ApiError` knows
//! about status codes, and every error response is `{"code", "message"}` with a
//! stable `code`. Messages never contain secrets.

use actix_web::{HttpResponse, ResponseError, http::StatusCode};
use serde::Serialize;

use crate::adapters::InboundError;

#[derive(thiserror::Error)]
pub enum ApiError {
    #[error("no source named {0:?} is configured")]
    UnknownSource(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(&'static str),
    #[error("the body is larger than the {0}-byte limit")]
    TooLarge(usize),
    #[error("the delivery could not be stored; retry later")]
    Unavailable(#[source] crate::store::StoreError),
    #[error(transparent)]
    Unexpected(#[from] anyhow::Error),
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")?;
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            write!(f, "\n  caused by: {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl From<InboundError> for ApiError {
    fn from(e: InboundError) -> Self {
        match e {
            InboundError::Unauthenticated(sig) => ApiError::Unauthenticated(format!("authentication failed: {sig}")),
            InboundError::Malformed(m) => ApiError::Malformed(format!("malformed payload: {m}")),
        }
    }
}

/// Every error answer: a stable machine-readable code and a message for people.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `unknown_source`, `invalid_signature`, `malformed_payload`,
    /// `request_id_conflict`, `not_found`, `payload_too_large`,
    /// `store_unavailable`, `not_ready` or `internal`.
    #[schema(value_type = String, example = "invalid_signature")]
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::Unauthenticated(_) => "invalid_signature",
            ApiError::Malformed(_) => "malformed_payload",
            ApiError::Conflict(_) => "request_id_conflict",
            ApiError::NotFound(_) => "not_found",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Unavailable(_) => "store_unavailable",
            ApiError::Unexpected(_) => "internal",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            ApiError::Unexpected(_) => "internal error".to_string(),
            other => other.to_string(),
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            code: self.code(),
            message,
        })
    }
}
