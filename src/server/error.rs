//! API errors in the DMS body format `{"error_code": "DMS.xxxxxxxx", "error_msg": "..."}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Builds the error for a value outside its enum or range, or for fields that exclude each other.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "DMS.00400062", message)
    }

    /// Builds the error for a field of the wrong JSON type.
    pub fn wrong_type(field: &str, expected: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400085",
            format!("Invalid field: the error key is {field}; expected {expected}."),
        )
    }

    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400005",
            format!(
                "The message body is not in JSON format or contains invalid characters: {detail}."
            ),
        )
    }

    pub fn empty_body() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400004",
            "The request body is empty.",
        )
    }

    pub fn busy(instance_id: &str, status: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400026",
            format!(
                "This operation is not allowed due to the instance status: instance {instance_id} is {status}; retry when it is RUNNING."
            ),
        )
    }

    pub fn no_instance(instance_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DMS.00404022",
            format!("This instance does not exist: {instance_id}."),
        )
    }

    pub fn no_connector(instance_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DMS.00404024",
            format!(
                "Connector does not exist on instance {instance_id}; enable Smart Connect first."
            ),
        )
    }

    pub fn no_task(task_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DMS.00404026",
            format!("The dumping task does not exist: {task_id}."),
        )
    }

    pub fn no_job(job_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "DMS.00404001",
            format!("The background task does not exist: {job_id}."),
        )
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Request failed with an internal error.");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "DMS.00500000",
            "Internal service error.",
        )
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        Self::internal(format!("store: {error}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error_code": self.code, "error_msg": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
