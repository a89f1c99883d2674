//! The API's error type: each variant maps to one status code and a safe
//! message; internal causes are logged, never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::staff::{refused_message, ImportError, RowProblem};
use crate::store::StoreError;

#[derive(Debug)]
pub enum ApiError {
    BadRequest(String),
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    /// A file refused whole, with each bad row.
    Rows {
        message: String,
        rows: Vec<RowProblem>,
    },
    Unavailable(String),
    Timeout,
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// What the error says to a person.
    pub fn message(&self) -> &str {
        match self {
            ApiError::BadRequest(m)
            | ApiError::Unauthorized(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::Unavailable(m)
            | ApiError::Rows { message: m, .. } => m,
            ApiError::Timeout => "the request took too long; try again",
            ApiError::Internal => "something went wrong on the broker; it has been logged",
        }
    }

    /// The store cannot answer now (unreachable, locked, disk full).
    pub fn store_unavailable() -> Self {
        ApiError::Unavailable("the store is unavailable; try again shortly".into())
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::NotFound(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "store unavailable");
                ApiError::store_unavailable()
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Internal
            }
        }
    }
}

impl From<ImportError> for ApiError {
    fn from(e: ImportError) -> Self {
        match e {
            ImportError::Rows(rows) => ApiError::Rows {
                message: refused_message(&rows),
                rows,
            },
            ImportError::Store(s) => s.into(),
        }
    }
}

/// A file refused for its header (line 1), before any row is read.
pub fn header_refused(rows: Vec<RowProblem>) -> ApiError {
    ApiError::Rows {
        message: "import refused: bad header; nothing was written".into(),
        rows,
    }
}

impl From<crate::model::Invalid> for ApiError {
    fn from(e: crate::model::Invalid) -> Self {
        ApiError::BadRequest(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, rows) = match self {
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, "bad_request", m, None),
            ApiError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "unauthorized", m, None),
            ApiError::Forbidden(m) => (StatusCode::FORBIDDEN, "forbidden", m, None),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "not_found", m, None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, None),
            ApiError::Rows { message, rows } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "rows_refused",
                message,
                Some(rows),
            ),
            ApiError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", m, None),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request took too long".into(),
                None,
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; the broker's log has the details".into(),
                None,
            ),
        };
        let mut body = json!({ "error": { "code": code, "message": message } });
        if let Some(rows) = rows {
            body["error"]["rows"] = json!(rows);
        }
        (status, Json(body)).into_response()
    }
}

/// What an import answers.
#[derive(Debug, serde::Serialize)]
pub struct Imported {
    pub imported: usize,
}
