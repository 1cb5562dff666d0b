//! The API's one error type and its one mapping to a response: the JSON shape
//! of DESIGN §7, `{"error": {"code", "message", "field"}}`. Internal causes
//! are logged with their chain; clients are told only what they can act on.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use signhook_store::StoreError;

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the body is not JSON, or a header is malformed.
    #[error("{message}")]
    BadRequest {
        /// A stable machine-readable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// 401: no API key, or one that is not valid.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403: the key is valid but may not do this without an explicit
    /// opt-in (a live key on `GET /v1/listen` without `live=true`).
    #[error("{message}")]
    Forbidden {
        /// A stable machine-readable code.
        code: &'static str,
        /// What is refused and how to opt in.
        message: String,
        /// The field that opts in.
        field: Option<String>,
    },
    /// 404: no such object for this tenant (another tenant's objects are
    /// 404 too, never 403, so their existence is not confirmed).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists with other methods.
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with existing state.
    #[error("{message}")]
    Conflict {
        /// A stable machine-readable code.
        code: &'static str,
        /// What conflicts.
        message: String,
        /// The field at fault.
        field: Option<String>,
    },
    /// 410: the thing existed but is gone for good (an expired file link).
    #[error("{0}")]
    Gone(String),
    /// 408: the request body stopped arriving before it was complete (the
    /// listener's body timeout).
    #[error("the request body stopped arriving before it was complete; send it without pausing")]
    BodyStalled,
    /// 413: the body is larger than allowed.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 415: the body is not of a type the route reads; `expected` says
    /// which (`JSON with \`content-type: application/json\``).
    #[error("send the body as {expected}")]
    UnsupportedMediaType {
        /// What the route reads.
        expected: &'static str,
    },
    /// 422: the body is JSON but a value is not acceptable.
    #[error("{message}")]
    Validation {
        /// The field at fault, as a JSON path (`subscribed_events[1]`).
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// 429: the API key sent more requests than its rate allows.
    #[error("this API key sent more than {per_second} requests per second; retry after the time in Retry-After")]
    RateLimited {
        /// The rate, per second.
        per_second: u32,
        /// When the key may send again.
        retry_after: std::time::Duration,
    },
    /// 503: the database refuses writes (disk full, read-only, over quota).
    #[error("the service cannot store anything right now (its storage is full or read-only); retry later")]
    StorageUnavailable,
    /// 503 on `/readyz`: the database refused a write moments ago, and has
    /// not yet taken a probe write since.
    #[error(
        "the service's storage refused writes moments ago (full or read-only); not ready until it takes them again"
    )]
    StorageNotReady,
    /// 503: the database cannot be reached right now.
    #[error("the service cannot reach its database right now; retry shortly")]
    Unavailable,
    /// 500: a bug or a failure the client cannot act on; details are logged.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A 422 on `field`.
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// What a request body that could not be read answers: 413 when it is
    /// over its limit (`too_large`), 408 when it stopped arriving, else a
    /// 400 with `text`. `rejection` is axum's, its causes are searched.
    pub fn unreadable_body(
        status: StatusCode,
        rejection: &(dyn std::error::Error + 'static),
        text: String,
        too_large: impl FnOnce() -> ApiError,
    ) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return too_large();
        }
        let mut cause = Some(rejection);
        while let Some(error) = cause {
            if error.is::<tower_http::timeout::TimeoutError>() {
                return ApiError::BodyStalled;
            }
            cause = error.source();
        }
        ApiError::BadRequest {
            code: "unreadable_body",
            message: text,
        }
    }

    /// A 404 naming what was not found.
    pub fn not_found(what: &str, id: &str) -> Self {
        ApiError::NotFound(format!("no {what} `{id}` exists"))
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::BodyStalled => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable | ApiError::StorageUnavailable | ApiError::StorageNotReady => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::Conflict { code, .. } | ApiError::Forbidden { code, .. } => {
                code
            }
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Gone(_) => "gone",
            ApiError::BodyStalled => "body_stalled",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Unavailable => "unavailable",
            ApiError::StorageUnavailable | ApiError::StorageNotReady => "storage_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn field(&self) -> Option<&str> {
        match self {
            ApiError::Validation { field, .. } => Some(field),
            ApiError::Conflict { field, .. } | ApiError::Forbidden { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// How long a client is asked to wait when storage refuses writes.
pub const STORAGE_RETRY_AFTER_SECONDS: u64 = 10;

/// Marks a response answered because the database refused a write.
#[derive(Debug, Clone, Copy)]
pub struct StorageRefusal;

/// The error body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// One error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable machine-readable code, such as `validation_failed`.
    pub code: String,
    /// What went wrong and what is allowed, for a human.
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(cause) = &self {
            tracing::error!(error = %error_chain(cause.as_ref()), "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                field: self.field().map(str::to_owned),
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(self, ApiError::StorageUnavailable | ApiError::StorageNotReady) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, STORAGE_RETRY_AFTER_SECONDS.into());
        }
        if let ApiError::StorageUnavailable = &self {
            // A write was refused: read by the storage watch
            // (`state::StorageWatch`), which turns readiness off.
            response.extensions_mut().insert(StorageRefusal);
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up: never 0, which would invite an
            // immediate retry.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.max(1).into());
        }
        response
    }
}

impl From<signhook_delivery::publisher::PublishError> for ApiError {
    fn from(e: signhook_delivery::publisher::PublishError) -> Self {
        match e {
            signhook_delivery::publisher::PublishError::Store(e) => e.into(),
            signhook_delivery::publisher::PublishError::Stopped => {
                ApiError::Internal("the publisher task has stopped".into())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { field } => ApiError::Conflict {
                code: "conflict",
                message: format!("a resource with this {field} already exists"),
                field: Some(field.to_owned()),
            },
            StoreError::IdempotencyMismatch => ApiError::Conflict {
                code: "idempotency_key_reused",
                message:
                    "this Idempotency-Key was already used with a different request; use a new key for a new request"
                        .into(),
                field: Some("Idempotency-Key".into()),
            },
            StoreError::StorageRefused(_) => ApiError::StorageUnavailable,
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %error_chain(&e), "database unavailable");
                ApiError::Unavailable
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

pub use signhook_core::error_chain;

impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(e: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError as L;
        use signhook_core::lifecycle::Refusal;
        match e {
            L::NotFound => ApiError::NotFound("no such signature request exists".into()),
            L::Refused(refusal @ Refusal::Incomplete { field, .. }) => ApiError::validation(field, refusal.to_string()),
            L::Refused(Refusal::UnknownPerson) => ApiError::NotFound("this link is not valid".into()),
            L::Refused(refusal) => ApiError::Conflict {
                code: "invalid_state",
                message: refusal.to_string(),
                field: None,
            },
            L::Busy => ApiError::Conflict {
                code: "concurrent_update",
                message: "the signature request is changing too fast; retry".into(),
                field: None,
            },
            L::Store(e) => e.into(),
            L::Blob(signhook_store::blobs::BlobError::NotFound(key)) => {
                ApiError::Internal(format!("a file is missing from the blob store: {key}").into())
            }
            other => ApiError::Internal(Box::new(other)),
        }
    }
}
