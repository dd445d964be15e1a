//! Endpoints the nodes call: register, heartbeat, deregister. Authenticated
//! with the connector's node token, which grants nothing else.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use subtle::ConstantTimeEq;
use tracing::info;

use super::SharedState;
use super::error::{ApiError, ApiResult};
use super::extract::{self, Path};
use super::render::{PENDING_STATUS_FIELD, node_alive};
use super::replication::{entity_topics, entity_topics_regex, replication_spec};
use crate::protocol::{
    HeartbeatRequest, HeartbeatResponse, ObsSinkSpec, RegisterRequest, RegisterResponse, TaskSpec,
};
use crate::store::{Connector, Node, Task, now_ms};

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "WEIR.00401001",
        "Invalid node token for this connector; start the node with the token of its connector.",
    )
}

/// Checks the bearer token against the connector's. A connector that no
/// longer exists gets 410, which tells the node to exit.
fn authorize(state: &SharedState, headers: &HeaderMap, connector_id: &str) -> ApiResult<Connector> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(unauthorized)?;
    let Some(connector) = state.store.connector(connector_id)? else {
        return Err(ApiError::new(
            StatusCode::GONE,
            "WEIR.00410001",
            format!("Connector {connector_id} does not exist; the node should exit."),
        ));
    };
    if bool::from(connector.token.as_bytes().ct_eq(token.as_bytes())) {
        Ok(connector)
    } else {
        Err(unauthorized())
    }
}

fn node_not_registered(connector_id: &str, node_id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "WEIR.00404001",
        format!("Node {node_id} is not registered with connector {connector_id}; register again."),
    )
}

pub(super) async fn node_register(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(connector_id): Path<String>,
    extract::Json(request): extract::Json<RegisterRequest>,
) -> ApiResult<Json<RegisterResponse>> {
    let connector = authorize(&state, &headers, &connector_id)?;
    let node_id = request
        .node_id
        .clone()
        .filter(|id| !id.is_empty() && id.len() <= 128)
        .unwrap_or_else(|| {
            format!(
                "{}-{}",
                &connector.id[..8.min(connector.id.len())],
                uuid::Uuid::new_v4().simple()
            )
        });
    let now = now_ms();
    let registered = state.store.register_node(&Node {
        id: node_id.clone(),
        connector_id: connector.id.clone(),
        slot: request.slot,
        pid: request.pid,
        host: request.host.clone(),
        registered_at: now,
        first_heartbeat: None,
        last_heartbeat: now,
        report: HeartbeatRequest::default(),
    })?;
    if !registered {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "WEIR.00409001",
            format!(
                "Node id {node_id} belongs to a node of another connector; start the node without --node-id or with an id of its own."
            ),
        ));
    }
    info!(connector_id = %connector.id, node_id = %node_id, pid = request.pid, host = %request.host, slot = ?request.slot, "Node registered.");
    Ok(Json(RegisterResponse {
        node_id,
        heartbeat_interval_ms: state.config.nodes.heartbeat_interval_ms,
    }))
}

pub(super) async fn node_heartbeat(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((connector_id, node_id)): Path<(String, String)>,
    extract::Json(report): extract::Json<HeartbeatRequest>,
) -> ApiResult<Json<HeartbeatResponse>> {
    let connector = authorize(&state, &headers, &connector_id)?;
    if !state.store.heartbeat(&connector.id, &node_id, &report)? {
        return Err(node_not_registered(&connector.id, &node_id));
    }
    settle_pending_statuses(&state, &connector, &report)?;
    Ok(Json(assignment(&state, &connector, &node_id)?))
}

/// Removes the pending status of tasks this node now reports running, so that
/// a task that stops running later shows `CREATING` or `RESTARTING` again
/// rather than the status it had before its last start.
fn settle_pending_statuses(
    state: &SharedState,
    connector: &Connector,
    report: &HeartbeatRequest,
) -> ApiResult<()> {
    let running: Vec<_> = report
        .tasks
        .iter()
        .filter(|r| r.state == "running" || r.state == "failing")
        .collect();
    if running.is_empty() {
        return Ok(());
    }
    for task in state.store.tasks(&connector.instance_id)? {
        let Some(entity) = task.entity.as_object() else {
            continue;
        };
        if !entity.contains_key(PENDING_STATUS_FIELD) || task.desired != "RUNNING" {
            continue;
        }
        let reported = running
            .iter()
            .any(|r| r.task_id == task.id && r.generation == task.generation);
        if !reported {
            continue;
        }
        let mut settled = entity.clone();
        settled.remove(PENDING_STATUS_FIELD);
        if state
            .store
            .replace_task_entity(&task, &Value::Object(settled))?
        {
            info!(task_id = %task.id, generation = task.generation, "Task reported running.");
        }
    }
    Ok(())
}

pub(super) async fn node_deregister(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((connector_id, node_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    authorize(&state, &headers, &connector_id)?;
    if !state.store.remove_node(&connector_id, &node_id)? {
        return Err(node_not_registered(&connector_id, &node_id));
    }
    info!(connector_id = %connector_id, node_id = %node_id, "Node deregistered.");
    Ok(Json(serde_json::json!({})))
}

/// Builds the work of every node of a connector.
fn assignment(
    state: &SharedState,
    connector: &Connector,
    node_id: &str,
) -> ApiResult<HeartbeatResponse> {
    let instance = state
        .store
        .instance_by_id(&connector.instance_id)?
        .ok_or_else(|| ApiError::no_instance(&connector.instance_id))?;
    let now = now_ms();
    let mut live_ids: Vec<String> = state
        .store
        .nodes_of(&connector.id)?
        .iter()
        .filter(|n| node_alive(state, n, now) || n.id == node_id)
        .map(|n| n.id.clone())
        .collect();
    live_ids.sort();
    let node_index = live_ids.iter().position(|id| id == node_id).unwrap_or(0);
    let live = live_ids.len().max(1) as u64;
    let bandwidth = state
        .config
        .specification_bytes(&connector.specification)
        .unwrap_or(0);
    let memory = connector
        .spec_code
        .as_deref()
        .and_then(|code| state.config.memory_budget(code))
        .unwrap_or(crate::config::DEFAULT_MEMORY_BUDGET);
    let stopping = connector.state == "deleting";
    let running: Vec<Task> = if stopping {
        Vec::new()
    } else {
        state
            .store
            .tasks(&instance.id)?
            .into_iter()
            .filter(|t| t.desired == "RUNNING")
            .collect()
    };
    let tasks = running.iter().filter_map(|t| task_spec(state, t)).collect();
    let replications = running
        .iter()
        .filter_map(|t| replication_spec(state, &instance, t, live_ids.len(), node_index))
        .collect();
    let mut kafka = crate::kafka::security_properties(&instance.security);
    kafka.extend(state.config.nodes.kafka.clone());
    Ok(HeartbeatResponse {
        stop: stopping,
        bootstrap_servers: instance.bootstrap_servers,
        kafka,
        session_timeout_ms: state.config.nodes.session_timeout_ms,
        topic_refresh_interval_ms: state.config.nodes.topic_refresh_interval_ms,
        read_bytes_per_second: bandwidth / live,
        memory_budget_bytes: memory,
        tasks,
        replications,
    })
}

fn task_spec(state: &SharedState, task: &Task) -> Option<TaskSpec> {
    let entity = task.entity.as_object()?;
    if entity.get("sink_type")?.as_str()? != "OBS_SINK" {
        return None;
    }
    let sink = entity.get("sink_task")?.as_object()?;
    let text = |name: &str| sink.get(name).and_then(Value::as_str).map(str::to_string);
    let number = |name: &str| sink.get(name).and_then(Value::as_u64);
    let endpoint = text("obs_endpoint");
    Some(TaskSpec {
        task_id: task.id.clone(),
        task_name: task.name.clone(),
        generation: task.generation,
        topics: entity_topics(entity),
        topics_regex: entity_topics_regex(entity),
        sink: ObsSinkSpec {
            consumer_strategy: text("consumer_strategy").unwrap_or_else(|| "latest".to_string()),
            bucket: text("obs_bucket_name")?,
            obs_path: text("obs_path").unwrap_or_default(),
            partition_format: text("partition_format")
                .unwrap_or_else(|| "yyyy/MM/dd/HH".to_string()),
            record_delimiter: text("record_delimiter").unwrap_or_else(|| "\n".to_string()),
            store_keys: sink
                .get("store_keys")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            kv_delimiter: text("kv_delimiter").unwrap_or_else(|| ":".to_string()),
            deliver_time_interval_s: number("deliver_time_interval").unwrap_or(300),
            flush_size: number("flush_size").unwrap_or(1_000_000),
            part_size_bytes: number("obs_part_size").unwrap_or(5_242_880),
            timezone: text("timezone").unwrap_or_else(|| state.config.server.timezone.clone()),
            local_root: endpoint.is_none().then(|| {
                state
                    .data_dir
                    .join("buckets")
                    .to_string_lossy()
                    .into_owned()
            }),
            endpoint,
            region: text("obs_region").unwrap_or_else(|| "us-east-1".to_string()),
            path_style: sink
                .get("obs_path_style")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            access_key: text("access_key"),
            secret_key: text("secret_key"),
            source_id: task.instance_id.clone(),
        },
    })
}
