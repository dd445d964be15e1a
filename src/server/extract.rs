//! Request extractors and middleware that turn every rejection into a DMS error body.
//!
//! axum's own extractors reject with plain-text bodies such as
//! `Invalid URL: ...`. The wrappers here ([`Path`], [`Query`], [`Json`]) keep
//! axum's parsing but respond with `{"error_code", "error_msg"}`, and
//! [`json_errors`] rewrites any other plain-text error response the router
//! produces. [`buffer_body`] reads the body once, bounded in size and time,
//! before the handlers and the signature check see it.

use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// Path parameters, rejected with a DMS error body.
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_error(&rejection)),
        }
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    use axum::extract::path::ErrorKind;
    let PathRejection::FailedToDeserializePathParams(failed) = rejection else {
        return ApiError::internal(format!("path parameters: {}", rejection.body_text()));
    };
    match failed.kind() {
        ErrorKind::InvalidUtf8InPathParam { key } => ApiError::invalid(format!(
            "Invalid path parameter {key}: its percent-decoded value is not valid UTF-8."
        )),
        ErrorKind::UnsupportedType { .. } | ErrorKind::WrongNumberOfParameters { .. } => {
            ApiError::internal(format!("path parameters: {}", failed.body_text()))
        }
        _ => ApiError::invalid(format!("Invalid path parameter: {}.", failed.body_text())),
    }
}

/// Query parameters, rejected with a DMS error body.
pub struct Query<T>(pub T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(QueryRejection::FailedToDeserializeQueryString(failed)) => Err(ApiError::invalid(
                format!("Invalid query string: {}.", failed.body_text()),
            )),
            Err(rejection) => Err(ApiError::invalid(format!(
                "Invalid query string: {}.",
                rejection.body_text()
            ))),
        }
    }
}

/// A JSON body deserialized into `T`, rejected with a DMS error body.
pub struct Json<T>(pub T);

impl<S, T> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_error(&rejection)),
        }
    }
}

fn json_error(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(failed) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400085",
            format!("Invalid field: {}.", failed.body_text()),
        ),
        JsonRejection::JsonSyntaxError(failed) => ApiError::malformed_json(failed.body_text()),
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::malformed_json("the request has no Content-Type: application/json header")
        }
        JsonRejection::BytesRejection(failed) => ApiError::new(
            failed.status(),
            "DMS.00400005",
            format!("Reading the request body failed: {}.", failed.body_text()),
        ),
        other => ApiError::malformed_json(other.body_text()),
    }
}

/// Bounds of [`buffer_body`].
#[derive(Debug, Clone, Copy)]
pub struct BodyBounds {
    /// Largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Time the client has to send the whole body.
    pub timeout: Duration,
}

/// Reads the whole request body before the next layer runs. A body over
/// `max_bytes` gets 413, and one that has not arrived within `timeout` gets
/// 408, so that a client sending its body slowly cannot hold a handler.
pub async fn buffer_body(
    State(bounds): State<BodyBounds>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    // A Content-Length over the limit is rejected before any byte is read.
    if HttpBody::size_hint(&body).lower() > bounds.max_bytes as u64 {
        return too_large(bounds.max_bytes).into_response();
    }
    let limited = http_body_util::Limited::new(body, bounds.max_bytes);
    let bytes = match tokio::time::timeout(bounds.timeout, limited.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            return too_large(bounds.max_bytes).into_response();
        }
        Ok(Err(error)) => {
            // The client closed the connection or sent a broken chunked body.
            return ApiError::malformed_json(format!("reading the request body failed: {error}"))
                .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "DMS.00400005",
                format!(
                    "The request body did not arrive within {} s; send it at once.",
                    bounds.timeout.as_secs_f64()
                ),
            )
            .into_response();
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "DMS.00400005",
        format!("The request body is larger than the limit of {limit} bytes."),
    )
}

/// Maximum number of characters of a plain-text error body that [`json_errors`]
/// copies into `error_msg`.
const MAX_COPIED_TEXT: usize = 512;

/// Rewrites error responses that are not JSON, such as the plain-text
/// rejections of axum's built-in extractors, into DMS error bodies. The
/// status and the other headers (such as `Allow`) stay as they are.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = match http_body_util::Limited::new(body, 64 * 1024)
        .collect()
        .await
    {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let detail = text.trim();
    let detail: String = if detail.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("Request failed")
            .to_string()
    } else {
        detail.chars().take(MAX_COPIED_TEXT).collect()
    };
    let error = ApiError::new(status, error_code(status), format!("{detail}."));
    let rewritten = error.into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, rewritten.into_body())
}

/// Returns the DMS error code of an error status that no handler chose a code for.
fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        404 => "DMS.00404001",
        405 => "DMS.00405001",
        408 | 413 | 415 => "DMS.00400005",
        422 => "DMS.00400085",
        500..=599 => "DMS.00500000",
        _ => "DMS.00400062",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_follow_the_status() {
        assert_eq!(error_code(StatusCode::NOT_FOUND), "DMS.00404001");
        assert_eq!(error_code(StatusCode::METHOD_NOT_ALLOWED), "DMS.00405001");
        assert_eq!(error_code(StatusCode::PAYLOAD_TOO_LARGE), "DMS.00400005");
        assert_eq!(error_code(StatusCode::BAD_REQUEST), "DMS.00400062");
        assert_eq!(error_code(StatusCode::BAD_GATEWAY), "DMS.00500000");
    }
}
