//! Key management endpoints under `/admin/v1/keys`, for admin keys only.
//! A secret key is returned once, by the request that creates it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use super::SharedState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{Path, Query};
use super::validate::{opt_bool, opt_str, parse_object};
use crate::store::RevokeError;

/// Pattern of a project id, for the OpenAPI description.
pub const PROJECT_ID_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

/// Checks a project id: 1 to 64 letters, digits, `-` or `_`, because it is a
/// path segment of every DMS request.
pub fn project_id_rule(project_id: &str) -> ApiResult<()> {
    let valid = !project_id.is_empty()
        && project_id.len() <= 64
        && project_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400002",
            format!(
                "Invalid project_id {project_id:?}: use 1 to 64 letters, digits, '-' or '_', \
                 such as a 32-digit hex id."
            ),
        ))
    }
}

pub(super) async fn key_create(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let body = parse_object(&body, false)?;
    let project_id = opt_str(&body, "project_id", "")?.ok_or_else(|| {
        ApiError::invalid("Missing project_id: name the project the new key belongs to.")
    })?;
    project_id_rule(project_id)?;
    let admin = opt_bool(&body, "admin", "")?.unwrap_or(false);
    let description = opt_str(&body, "description", "")?.unwrap_or("");
    if description.chars().count() > 255 {
        return Err(ApiError::invalid(
            "Invalid description: use at most 255 characters.",
        ));
    }
    let access_key = super::random_token(20).to_uppercase();
    let secret_key = super::random_token(40);
    state
        .store
        .insert_key(&access_key, &secret_key, project_id, admin, description)?;
    info!(
        %access_key,
        project_id,
        admin,
        created_by = caller.access_key.as_deref().unwrap_or("-"),
        "API key created."
    );
    let key = state
        .store
        .keys(Some(project_id))?
        .into_iter()
        .find(|k| k.access_key == access_key)
        .ok_or_else(|| ApiError::internal("the new key was not found after it was written"))?;
    Ok(Json(json!({
        "access_key": key.access_key,
        "secret_key": secret_key,
        "project_id": key.project_id,
        "admin": key.admin,
        "description": key.description,
        "create_time": key.create_time,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct KeyListQuery {
    project_id: Option<String>,
}

pub(super) async fn key_list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<KeyListQuery>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let project_id = query.project_id;
    if let Some(project_id) = &project_id {
        project_id_rule(project_id)?;
    }
    let keys = state.store.keys(project_id.as_deref())?;
    Ok(Json(json!({ "total": keys.len(), "keys": keys })))
}

pub(super) async fn key_revoke(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(access_key): Path<String>,
) -> ApiResult<StatusCode> {
    caller.require_admin()?;
    if state.config.keys.iter().any(|k| k.access_key == access_key) {
        return Err(ApiError::invalid(format!(
            "Access key {access_key} is defined in the configuration file, which writes it again at every start; remove it from [[keys]] and restart the server instead."
        )));
    }
    match state.store.revoke_key(&access_key) {
        Ok(key) => {
            info!(
                %access_key,
                project_id = %key.project_id,
                revoked_by = caller.access_key.as_deref().unwrap_or("-"),
                "API key revoked."
            );
            Ok(StatusCode::NO_CONTENT)
        }
        Err(RevokeError::NotFound(_)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "DMS.00404001",
            format!("Access key {access_key} does not exist: list keys with `weir key list`."),
        )),
        Err(RevokeError::LastAdmin(_)) => Err(ApiError::invalid(format!(
            "Access key {access_key} is the last admin key: create another admin key \
             (`weir key create --admin`) before revoking it."
        ))),
        Err(RevokeError::Db(e)) => Err(e.into()),
    }
}
