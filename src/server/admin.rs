//! Admin endpoints outside the DMS namespace, signed like `/v2` requests.
//! Resources they create belong to the signing key's project.

use axum::extract::State;
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{Value, json};
use tracing::info;

use super::SharedState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::validate::{opt_int, opt_str, parse_object};
use crate::config::InstanceSecurity;
use crate::store::{Instance, now_ms};

pub(super) async fn instance_add(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let body = parse_object(&body, false)?;
    let project_id = opt_str(&body, "project_id", "")?.unwrap_or(&caller.project_id);
    super::keys::project_id_rule(project_id)?;
    if !caller.unauthenticated && !caller.owns(project_id) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "DMS.00403003",
            format!(
                "The key belongs to project {}; it cannot add instances to project {project_id}.",
                caller.project_id
            ),
        ));
    }
    let name = opt_str(&body, "name", "")?
        .filter(|n| !n.is_empty() && n.len() <= 64)
        .ok_or_else(|| {
            ApiError::invalid("Missing name: give the instance a name of 1 to 64 characters.")
        })?;
    let bootstrap = opt_str(&body, "bootstrap_servers", "")?
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid("Missing bootstrap_servers: give the cluster's host:port list.")
        })?;
    super::source_task::bootstrap_rule("bootstrap_servers", bootstrap)
        .map_err(|e| ApiError::invalid(e.message.replacen("source_task.", "", 1)))?;
    let specification = opt_str(&body, "specification", "")?.unwrap_or("100MB");
    if state.config.specification_bytes(specification).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid specification {specification:?}."
        )));
    }
    let broker_num = opt_int(&body, "broker_num", "")?.unwrap_or(3);
    if !(1..=1000).contains(&broker_num) {
        return Err(ApiError::invalid(format!(
            "Invalid broker_num {broker_num}: use 1..=1000."
        )));
    }
    let security = InstanceSecurity {
        security_protocol: opt_str(&body, "security_protocol", "")?.map(str::to_string),
        sasl_mechanism: opt_str(&body, "sasl_mechanism", "")?.map(str::to_string),
        username: opt_str(&body, "username", "")?.map(str::to_string),
        password: opt_str(&body, "password", "")?.map(str::to_string),
    };
    if let Some(protocol) = &security.security_protocol
        && !["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"].contains(&protocol.as_str())
    {
        return Err(ApiError::invalid(format!(
            "Invalid security_protocol {protocol:?}: use PLAINTEXT, SASL_PLAINTEXT or SASL_SSL."
        )));
    }
    let id = match opt_str(&body, "instance_id", "")? {
        Some(id) => uuid::Uuid::parse_str(id)
            .map_err(|_| ApiError::invalid(format!("Invalid instance_id {id:?}: use a UUID.")))?
            .to_string(),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let instance = Instance {
        id: id.clone(),
        project_id: project_id.to_string(),
        name: name.to_string(),
        bootstrap_servers: bootstrap.to_string(),
        specification: specification.to_string(),
        broker_num: broker_num as u32,
        security,
        status: "RUNNING".to_string(),
        created_at: now_ms(),
    };
    if !state.store.insert_instance(&instance)? {
        return Err(ApiError::invalid(format!(
            "Invalid instance_id {id}: an instance with this id exists."
        )));
    }
    info!(instance_id = %id, name, project_id, "Instance registered.");
    Ok(Json(json!({ "instance_id": id })))
}

pub(super) async fn node_token(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(instance_id): Path<String>,
) -> ApiResult<Json<Value>> {
    let instance = state
        .store
        .instance(&caller.project_id, &instance_id)?
        .ok_or_else(|| ApiError::no_instance(&instance_id))?;
    let connector = state
        .store
        .connector_of(&instance.id)?
        .ok_or_else(|| ApiError::no_connector(&instance.id))?;
    Ok(Json(
        json!({ "connector_id": connector.id, "token": connector.token }),
    ))
}
