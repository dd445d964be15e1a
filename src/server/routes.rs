//! The DMS v2 endpoints of Smart Connect, background tasks and instances.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{Value, json};
use tracing::info;

use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::{Path, Query};
use super::source_task::SourceContext;
use super::{SharedState, jobs, random_token, render, validate};
use crate::sink::obs::runner::group_id;
use crate::store::{Conflict, Connector, Instance, Job, Task, now_ms};

pub async fn unknown_path() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "DMS.00404001",
        "The requested URL does not exist.",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "DMS.00405001",
        "This request method is not allowed for this URL.",
    )
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// Loads an instance of the caller's project.
fn load_instance(
    state: &SharedState,
    caller: &Caller,
    project_id: &str,
    instance_id: &str,
) -> ApiResult<Instance> {
    caller.check_project(project_id, instance_id)?;
    state
        .store
        .instance(project_id, instance_id)?
        .ok_or_else(|| ApiError::no_instance(instance_id))
}

/// Loads a task. On an instance without a connector, where no task can
/// exist, the error names the missing connector instead.
fn load_task(state: &SharedState, instance: &Instance, task_id: &str) -> ApiResult<Task> {
    if let Some(task) = state.store.task(&instance.id, task_id)? {
        return Ok(task);
    }
    if state.store.connector_of(&instance.id)?.is_none() {
        return Err(ApiError::no_connector(&instance.id));
    }
    Err(ApiError::no_task(task_id))
}

fn connector_nodes(
    state: &SharedState,
    instance_id: &str,
) -> ApiResult<(Option<Connector>, Vec<crate::store::Node>)> {
    let connector = state.store.connector_of(instance_id)?;
    let nodes = match &connector {
        Some(c) => state.store.nodes_of(&c.id)?,
        None => Vec::new(),
    };
    Ok((connector, nodes))
}

/// Parses an optional integer query parameter within a range.
fn query_int(
    query: &HashMap<String, String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> ApiResult<i64> {
    let Some(raw) = query.get(name).filter(|v| !v.is_empty()) else {
        return Ok(default);
    };
    let value: i64 = raw.parse().map_err(|_| {
        ApiError::invalid(format!(
            "Invalid query parameter {name}: {raw:?} is not an integer."
        ))
    })?;
    if !(min..=max).contains(&value) {
        return Err(ApiError::invalid(format!(
            "Invalid query parameter {name}: {value} is outside {min}..={max}."
        )));
    }
    Ok(value)
}

fn page<T: Clone>(items: &[T], offset: usize, limit: usize) -> Vec<T> {
    items.iter().skip(offset).take(limit).cloned().collect()
}

// Instances

pub(super) async fn instance_list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(project_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    match query.get("engine").map(String::as_str) {
        Some("kafka") => {}
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "Invalid query parameter engine: {other:?}; use kafka."
            )));
        }
        None => {
            return Err(ApiError::invalid(
                "Missing query parameter engine: use engine=kafka.",
            ));
        }
    }
    let offset = query_int(&query, "offset", 0, 0, i64::MAX)? as usize;
    let limit = query_int(&query, "limit", 10, 1, 50)? as usize;
    if caller.project_id != project_id {
        return Ok(Json(json!({ "instances": [], "instance_num": 0 })));
    }
    let exact = query.get("exact_match_name").is_some_and(|v| v == "true");
    let mut instances = state.store.instances(&project_id)?;
    instances.retain(|i| {
        let name_ok = match query.get("name").filter(|n| !n.is_empty()) {
            Some(name) if exact => &i.name == name,
            Some(name) => i.name.contains(name.as_str()),
            None => true,
        };
        let id_ok = query
            .get("instance_id")
            .filter(|v| !v.is_empty())
            .is_none_or(|id| &i.id == id);
        let status_ok = query
            .get("status")
            .filter(|v| !v.is_empty())
            .is_none_or(|s| &i.status == s);
        name_ok && id_ok && status_ok
    });
    let mut rendered = Vec::new();
    for instance in page(&instances, offset, limit) {
        let (connector, nodes) = connector_nodes(&state, &instance.id)?;
        rendered.push(render::instance(
            &state,
            &instance,
            connector.as_ref(),
            &nodes,
        ));
    }
    Ok(Json(
        json!({ "instances": rendered, "instance_num": instances.len() }),
    ))
}

pub(super) async fn instance_show(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let (connector, nodes) = connector_nodes(&state, &instance.id)?;
    Ok(Json(render::instance(
        &state,
        &instance,
        connector.as_ref(),
        &nodes,
    )))
}

// Connector

pub(super) async fn connector_resources(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    load_instance(&state, &caller, &project_id, &instance_id)?;
    Ok(Json(json!({ "soldOut": false })))
}

pub(super) async fn connector_create(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let request = validate::connector_request(&validate::parse_object(&body, true)?)?;
    let specification = request
        .specification
        .unwrap_or_else(|| instance.specification.clone());
    if state.config.specification_bytes(&specification).is_none() {
        return Err(ApiError::invalid(format!(
            "Invalid specification {specification:?}: use 100MB, 300MB, 600MB, 1200MB or one defined in the server configuration."
        )));
    }
    if let Some(code) = &request.spec_code
        && state.config.memory_budget(code).is_none()
    {
        return Err(ApiError::invalid(format!(
            "Invalid spec_code {code:?}: no node profile has this code; use kafka.c3.mini.connector or one defined in the server configuration."
        )));
    }
    let now = now_ms();
    let connector = Connector {
        id: uuid::Uuid::new_v4().to_string(),
        instance_id: instance.id.clone(),
        node_cnt: request.node_cnt,
        specification,
        spec_code: request.spec_code,
        token: random_token(40),
        state: "creating".to_string(),
        created_at: now,
    };
    let job = jobs::new_job(
        &instance.id,
        jobs::CREATE_CONNECTOR,
        json!({ "connector_id": connector.id, "node_cnt": connector.node_cnt }),
    );
    match state.store.begin_create_connector(&connector, &job) {
        Ok(()) => {}
        Err(Conflict::InstanceBusy { id, status }) => return Err(ApiError::busy(&id, &status)),
        Err(Conflict::ConnectorExists(id)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DMS.00404027",
                format!(
                    "Connector already exists on instance {id}; disable Smart Connect before enabling it again."
                ),
            ));
        }
        Err(Conflict::NoInstance(id)) => return Err(ApiError::no_instance(&id)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    info!(instance_id = %instance.id, connector_id = %connector.id, job_id = %job.id, node_cnt = connector.node_cnt, "Connector creation started.");
    Ok(Json(
        json!({ "job_id": job.id, "connector_id": connector.id }),
    ))
}

pub(super) async fn connector_delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let connector = state
        .store
        .connector_of(&instance.id)?
        .ok_or_else(|| ApiError::no_connector(&instance.id))?;
    let job = jobs::new_job(
        &instance.id,
        jobs::DELETE_CONNECTOR,
        json!({ "connector_id": connector.id }),
    );
    match state.store.begin_delete_connector(&instance.id, &job) {
        Ok(()) => {}
        Err(Conflict::InstanceBusy { id, status }) => return Err(ApiError::busy(&id, &status)),
        Err(Conflict::NoConnector(id)) => return Err(ApiError::no_connector(&id)),
        Err(Conflict::TasksRemain(_, count)) => {
            return Err(ApiError::invalid(format!(
                "The connector still has {count} tasks; delete them before disabling Smart Connect."
            )));
        }
        Err(Conflict::NoInstance(id)) => return Err(ApiError::no_instance(&id)),
        Err(e) => return Err(ApiError::internal(e)),
    }
    info!(instance_id = %instance.id, connector_id = %connector.id, job_id = %job.id, "Connector deletion started.");
    Ok(Json(json!({ "job_id": job.id })))
}

// Tasks

/// Loads the connector that task calls need, rejecting an instance that is
/// changing its connector.
fn ready_connector(state: &SharedState, instance: &Instance) -> ApiResult<Connector> {
    let connector = state
        .store
        .connector_of(&instance.id)?
        .ok_or_else(|| ApiError::no_connector(&instance.id))?;
    if instance.status != "RUNNING" {
        return Err(ApiError::busy(&instance.id, &instance.status));
    }
    Ok(connector)
}

pub(super) async fn task_create(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let body = validate::parse_object(&body, false)?;
    let connector = ready_connector(&state, &instance)?;
    let peer = |id: &str| {
        state
            .store
            .instance(&instance.project_id, id)
            .ok()
            .flatten()
    };
    let defaults = validate::TaskDefaults {
        timezone: &state.config.server.timezone,
        source: SourceContext {
            instance: &instance,
            peer: &peer,
        },
    };
    let request = validate::task_request(&body, &defaults)?;
    let task = Task {
        id: uuid::Uuid::new_v4().to_string(),
        instance_id: instance.id.clone(),
        name: request.name,
        entity: request.entity,
        desired: if request.start_later {
            "WAITING"
        } else {
            "RUNNING"
        }
        .to_string(),
        generation: 0,
        restarting: false,
        created_at: now_ms(),
    };
    reject_overlap(&state, &instance, &task)?;
    match state.store.insert_task(&task) {
        Ok(()) => {}
        Err(Conflict::DuplicateName(name)) => {
            return Err(ApiError::invalid(format!(
                "Invalid task_name {name:?}: a task with this name already exists on the instance."
            )));
        }
        Err(Conflict::Quota(max)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DMS.00400039",
                format!("The quota limit has been reached: an instance has at most {max} tasks."),
            ));
        }
        Err(e) => return Err(ApiError::internal(e)),
    }
    info!(instance_id = %instance.id, task_id = %task.id, task_name = %task.name, desired = %task.desired, "Task created.");
    let nodes = state.store.nodes_of(&connector.id)?;
    Ok(Json(render::task(&state, &task, &nodes)))
}

/// Rejects a replication task that would copy records another task of the
/// instance already copies.
fn reject_overlap(state: &super::AppState, instance: &Instance, task: &Task) -> ApiResult<()> {
    let others = state.store.tasks(&instance.id)?;
    match super::replication::overlapping_task(state, instance, task, &others) {
        None => Ok(()),
        Some(overlap) => Err(ApiError::invalid(format!(
            "Invalid topics: task {:?} already replicates {:?} into {:?} in the same direction ({}) between the same clusters, so every record would be copied twice. Choose other topics, or modify or delete that task.",
            overlap.task_name, overlap.source_topic, overlap.target_topic, overlap.direction
        ))),
    }
}

pub(super) async fn task_list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let offset = query_int(&query, "offset", 0, 0, i64::MAX)? as usize;
    let limit = query_int(&query, "limit", 10, 1, 50)? as usize;
    let (connector, nodes) = connector_nodes(&state, &instance.id)?;
    if connector.is_none() {
        return Err(ApiError::no_connector(&instance.id));
    }
    let tasks = state.store.tasks(&instance.id)?;
    let rendered: Vec<Value> = page(&tasks, offset, limit)
        .iter()
        .map(|t| render::task(&state, t, &nodes))
        .collect();
    Ok(Json(json!({
        "tasks": rendered,
        "total_number": tasks.len(),
        "max_tasks": crate::store::MAX_TASKS,
        "quota_tasks": crate::store::MAX_TASKS,
    })))
}

pub(super) async fn task_show(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let task = load_task(&state, &instance, &task_id)?;
    let (_, nodes) = connector_nodes(&state, &instance.id)?;
    Ok(Json(render::task(&state, &task, &nodes)))
}

/// Fields of `sink_task` that ModifyConnectorTask keeps when a request
/// leaves them out. Responses never return the credentials, and the SDK's
/// response model lacks the other fields, so an SDK client that sends back
/// a shown entity would otherwise lose them.
const KEPT_SINK_FIELDS: [&str; 6] = [
    "access_key",
    "secret_key",
    "obs_endpoint",
    "obs_region",
    "obs_path_style",
    "agency_name",
];

pub(super) async fn task_modify(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, task_id)): Path<(String, String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let mut task = load_task(&state, &instance, &task_id)?;
    let mut body = validate::parse_object(&body, false)?;
    if task.desired != "PAUSED" && task.desired != "WAITING" {
        return Err(ApiError::invalid(format!(
            "Task {task_id} is running; pause it before modifying it."
        )));
    }
    // The response entity carries fields a request may echo back; only the
    // request fields matter, and the name cannot change.
    body.entry("task_name")
        .or_insert_with(|| Value::from(task.name.clone()));
    let old_sink = task.entity.get("sink_task").cloned().unwrap_or(Value::Null);
    if let (Some(Value::Object(new_sink)), Value::Object(old_sink)) =
        (body.get_mut("sink_task"), &old_sink)
    {
        for field in KEPT_SINK_FIELDS {
            if !new_sink.contains_key(field)
                && let Some(value) = old_sink.get(field)
            {
                new_sink.insert(field.to_string(), value.clone());
            }
        }
    }
    let peer = |id: &str| {
        state
            .store
            .instance(&instance.project_id, id)
            .ok()
            .flatten()
    };
    let defaults = validate::TaskDefaults {
        timezone: &state.config.server.timezone,
        source: SourceContext {
            instance: &instance,
            peer: &peer,
        },
    };
    let request = validate::task_request(&body, &defaults)?;
    if request.name != task.name {
        return Err(ApiError::invalid(format!(
            "Invalid task_name {:?}: a task cannot be renamed; keep {:?}.",
            request.name, task.name
        )));
    }
    task.entity = request.entity;
    reject_overlap(&state, &instance, &task)?;
    state.store.update_task(&task)?;
    info!(instance_id = %instance.id, task_id = %task.id, "Task modified.");
    let (_, nodes) = connector_nodes(&state, &instance.id)?;
    Ok(Json(render::task(&state, &task, &nodes)))
}

pub(super) async fn task_delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let task = load_task(&state, &instance, &task_id)?;
    let groups: Vec<String> = (0..=task.generation)
        .map(|g| group_id(&task.id, g))
        .collect();
    state.store.delete_task(&task, &groups)?;
    super::replication::remove_consumer_groups(&state, &instance, &task, 0..=task.generation, true);
    info!(instance_id = %instance.id, task_id = %task.id, "Task deleted; its consumer groups are queued for removal.");
    Ok(no_content())
}

/// Applies a state change to a task and returns 204.
fn change_task(
    state: &SharedState,
    caller: &Caller,
    ids: &(String, String, String),
    action: &str,
    change: impl FnOnce(&mut Task),
) -> ApiResult<Response> {
    let (project_id, instance_id, task_id) = ids;
    let instance = load_instance(state, caller, project_id, instance_id)?;
    let mut task = load_task(state, &instance, task_id)?;
    let before = (task.desired.clone(), task.generation);
    change(&mut task);
    state.store.update_task(&task)?;
    info!(
        instance_id = %instance.id,
        task_id = %task.id,
        action,
        from = %before.0,
        to = %task.desired,
        generation = task.generation,
        "Task state changed."
    );
    Ok(no_content())
}

pub(super) async fn task_pause(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult<Response> {
    change_task(&state, &caller, &ids, "pause", |task| {
        task.desired = "PAUSED".to_string();
        set_pending_status(task, None);
    })
}

pub(super) async fn task_resume(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult<Response> {
    change_task(&state, &caller, &ids, "resume", |task| {
        if task.desired != "RUNNING" {
            let before = task.desired.clone();
            set_pending_status(task, Some(&before));
            task.desired = "RUNNING".to_string();
        }
    })
}

/// Starts a waiting task, or restarts a task from scratch: a new consumer
/// group, so partitions start again at the task's `consumer_strategy`.
pub(super) async fn task_restart(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path(ids): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let queued = state.clone();
    change_task(&state, &caller, &ids, "restart", |task| {
        if task.desired == "WAITING" && task.generation == 0 {
            set_pending_status(task, Some("WAITING"));
            task.desired = "RUNNING".to_string();
            return;
        }
        let old_group = group_id(&task.id, task.generation);
        if let Err(e) = queued
            .store
            .queue_group_deletion(&task.instance_id, &old_group)
        {
            tracing::warn!(task_id = %task.id, group = %old_group, error = %e, "Queueing removal of the old consumer group failed.");
        }
        task.generation += 1;
        task.restarting = true;
        task.desired = "RUNNING".to_string();
        set_pending_status(task, Some("RESTARTING"));
    })?;
    let (project_id, instance_id, task_id) = &ids;
    let instance = load_instance(&state, &caller, project_id, instance_id)?;
    let task = load_task(&state, &instance, task_id)?;
    if let Some(previous) = task.generation.checked_sub(1) {
        super::replication::remove_consumer_groups(&state, &instance, &task, 0..=previous, false);
    }
    Ok(no_content())
}

/// Records the status that ShowConnectorTask reports until a node runs the
/// task, or removes it.
fn set_pending_status(task: &mut Task, status: Option<&str>) {
    let Some(entity) = task.entity.as_object_mut() else {
        return;
    };
    match status {
        Some(status) => {
            entity.insert(render::PENDING_STATUS_FIELD.into(), Value::from(status));
        }
        None => {
            entity.remove(render::PENDING_STATUS_FIELD);
        }
    }
}

// Background tasks (jobs)

/// Parses `YYYYMMDDHHmmss` (UTC) into epoch milliseconds.
fn parse_job_time(name: &str, value: Option<&String>) -> ApiResult<Option<i64>> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::invalid(format!(
            "Invalid query parameter {name}: {value:?}; use YYYYMMDDHHmmss."
        ))
    };
    // chrono alone also accepts a last field of one digit: 2024010100000.
    if value.len() != 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    chrono::NaiveDateTime::parse_from_str(value, "%Y%m%d%H%M%S")
        .map(|t| Some(t.and_utc().timestamp_millis()))
        .map_err(|_| invalid())
}

pub(super) async fn job_list(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let instance = load_instance(&state, &caller, &project_id, &instance_id)?;
    let start = query_int(&query, "start", 1, 1, i64::MAX)? as usize;
    let limit = query_int(&query, "limit", 10, 1, 100)? as usize;
    let begin = parse_job_time("begin_time", query.get("begin_time"))?;
    let end = parse_job_time("end_time", query.get("end_time"))?;
    let jobs = state.store.jobs(&instance.id, begin, end)?;
    let rendered: Vec<Value> = page(&jobs, start - 1, limit)
        .iter()
        .map(render::job)
        .collect();
    Ok(Json(
        json!({ "task_count": jobs.len().to_string(), "tasks": rendered }),
    ))
}

fn load_job(
    state: &SharedState,
    caller: &Caller,
    project_id: &str,
    instance_id: &str,
    job_id: &str,
) -> ApiResult<Job> {
    let instance = load_instance(state, caller, project_id, instance_id)?;
    state
        .store
        .job(&instance.id, job_id)?
        .ok_or_else(|| ApiError::no_job(job_id))
}

pub(super) async fn job_show(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, job_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let job = load_job(&state, &caller, &project_id, &instance_id, &job_id)?;
    Ok(Json(
        json!({ "task_count": "1", "tasks": [render::job(&job)] }),
    ))
}

pub(super) async fn job_progress(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, job_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let job = load_job(&state, &caller, &project_id, &instance_id, &job_id)?;
    Ok(Json(render::job_progress(&job)))
}

pub(super) async fn job_delete(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id, job_id)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let job = load_job(&state, &caller, &project_id, &instance_id, &job_id)?;
    if matches!(job.status.as_str(), "CREATED" | "EXECUTING") {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "DMS.00400017",
            format!(
                "This DMS instance job task is still running: {job_id} is {}; delete it after it ends.",
                job.status
            ),
        ));
    }
    state.store.delete_job(&job.id)?;
    Ok(no_content())
}
