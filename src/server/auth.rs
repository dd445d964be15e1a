//! Authentication of `/v2` and `/admin` requests: the SDK-HMAC-SHA256
//! signature check, or none in development mode.

use std::cell::Cell;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{error, warn};

use super::{ApiError, SharedState};
use crate::config::AuthMode;
use crate::sign::{self, SecretAndProject};

/// The key that signed the request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Project the request may act on: the key's project, or an empty string,
    /// which matches no path, when the `X-Project-Id` header names another one.
    pub project_id: String,
    /// Whether the key may manage keys.
    pub admin: bool,
    /// Whether authentication is off, so that any project may be named.
    pub unauthenticated: bool,
    pub access_key: Option<String>,
}

impl Caller {
    /// Returns whether the request may act on `project_id`.
    pub fn owns(&self, project_id: &str) -> bool {
        !self.project_id.is_empty() && self.project_id == project_id
    }

    /// Fails like a missing instance when `project_id` is not the caller's, so
    /// that another project's resources look as if they did not exist.
    pub fn check_project(&self, project_id: &str, instance_id: &str) -> Result<(), ApiError> {
        if self.owns(project_id) {
            Ok(())
        } else {
            Err(ApiError::no_instance(instance_id))
        }
    }

    /// Fails with 403 unless the key is an admin key. Without authentication
    /// keys cannot be managed, because keys created by anyone would stay
    /// valid once signatures are required again.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.unauthenticated {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "DMS.00403003",
                "Key management is disabled while authentication is off (server.auth = \"none\"); start the server with signatures to manage keys.",
            ));
        }
        if self.admin {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "DMS.00403003",
                "This key lacks permission for key management: sign the request with an admin key.",
            ))
        }
    }
}

fn header_project(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-project-id").and_then(|v| v.to_str().ok())
}

/// Returns the project segment of a `/v2/{project_id}/...` path.
fn path_project(path: &str) -> Option<&str> {
    path.strip_prefix("/v2/")?
        .split('/')
        .next()
        .filter(|s| !s.is_empty())
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
    if state.config.server.auth == AuthMode::None {
        let project_id = path_project(parts.uri.path())
            .or_else(|| header_project(&parts.headers))
            .unwrap_or_default()
            .to_string();
        let mut request = Request::from_parts(parts, Body::from(bytes));
        request.extensions_mut().insert(Caller {
            project_id,
            admin: true,
            unauthenticated: true,
            access_key: None,
        });
        return next.run(request).await;
    }
    let admin = Cell::new(false);
    let lookup = |access_key: &str| match state.store.find_key(access_key) {
        Ok(Some(key)) => {
            admin.set(key.admin);
            Some(SecretAndProject {
                secret_key: key.secret_key,
                project_id: key.project_id,
            })
        }
        Ok(None) => None,
        Err(e) => {
            error!(%access_key, error = %e, "Reading the key from the store failed.");
            None
        }
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
            let header = header_project(&parts.headers);
            let project_id = match header {
                Some(header) if header != key.project_id => {
                    tracing::debug!(
                        access_key = %key.access_key,
                        key_project = %key.project_id,
                        header_project = %header,
                        "X-Project-Id names another project than the key's."
                    );
                    String::new()
                }
                _ => key.project_id,
            };
            tracing::debug!(access_key = %key.access_key, "Request signature verified.");
            let mut request = Request::from_parts(parts, Body::from(bytes));
            request.extensions_mut().insert(Caller {
                project_id,
                admin: admin.get(),
                unauthenticated: false,
                access_key: Some(key.access_key),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(project_id: &str) -> Caller {
        Caller {
            project_id: project_id.to_string(),
            admin: false,
            unauthenticated: false,
            access_key: None,
        }
    }

    #[test]
    fn empty_project_owns_nothing() {
        assert!(!caller("").owns(""));
        assert!(caller("p1").owns("p1"));
        assert!(!caller("p1").owns("p2"));
    }

    #[test]
    fn path_project_takes_first_segment() {
        assert_eq!(path_project("/v2/p1/instances/i"), Some("p1"));
        assert_eq!(path_project("/v2//instances"), None);
        assert_eq!(path_project("/admin/v1/keys"), None);
    }

    #[test]
    fn non_admin_cannot_manage_keys() {
        let error = caller("p1").require_admin().expect_err("not admin");
        assert_eq!(error.status, StatusCode::FORBIDDEN);
    }
}
