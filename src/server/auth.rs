//! Signature check of `/v2` and `/admin` requests.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::warn;

use super::{ApiError, SharedState};
use crate::sign::{self, SecretAndProject};

/// The key that signed the request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub project_id: String,
}

impl Caller {
    /// Fails like a missing instance when `project_id` is not the caller's, so
    /// that another project's resources look as if they did not exist.
    pub fn check_project(&self, project_id: &str, instance_id: &str) -> Result<(), ApiError> {
        if self.project_id == project_id {
            Ok(())
        } else {
            Err(ApiError::no_instance(instance_id))
        }
    }
}

/// Reads the body (up to the configured limit), verifies the signature over
/// it and passes the request on with a [`Caller`] extension.
pub async fn require_signature(
    State(state): State<SharedState>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.config.server.max_body_bytes;
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "DMS.00400005",
                format!("The request body is larger than the limit of {limit} bytes."),
            )
            .into_response();
        }
    };
    let lookup = |access_key: &str| {
        state
            .store
            .find_key(access_key)
            .ok()
            .flatten()
            .map(|(secret_key, project_id)| SecretAndProject {
                secret_key,
                project_id,
            })
    };
    match sign::verify(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &bytes,
        chrono::Utc::now(),
        lookup,
    ) {
        Ok(key) => {
            let mut request = Request::from_parts(parts, Body::from(bytes));
            tracing::debug!(access_key = %key.access_key, "Request signature verified.");
            request.extensions_mut().insert(Caller {
                project_id: key.project_id,
            });
            next.run(request).await
        }
        Err(error) => {
            warn!(
                method = %parts.method,
                path = %parts.uri.path(),
                reason = error.reason(),
                "Request rejected by the signature check."
            );
            let body = serde_json::json!({
                "error_code": error.error_code(),
                "error_msg": error.to_string(),
            });
            (error.status(), Json(body)).into_response()
        }
    }
}
