//! Response bodies built from stored state.

use serde_json::{Map, Value, json};

use super::AppState;
use super::validate::SECRET_FIELDS;
use crate::store::{Connector, Instance, Job, Node, Task, now_ms};

/// Returns whether a node sent a heartbeat recently enough to count as alive.
pub fn node_alive(state: &AppState, node: &Node, now: i64) -> bool {
    now - node.last_heartbeat <= state.config.nodes.dead_after_ms as i64
}

/// Returns whether a node has been alive long enough to take work.
pub fn node_ready(state: &AppState, node: &Node, now: i64) -> bool {
    let ready_after = state.config.nodes.ready_after_ms as i64;
    let fresh = now - node.last_heartbeat
        <= (state.config.nodes.heartbeat_interval_ms as i64 * 5).max(3000);
    fresh
        && node
            .first_heartbeat
            .is_some_and(|first| now - first >= ready_after)
}

fn node_json(state: &AppState, node: &Node, now: i64) -> Value {
    json!({
        "node_id": node.id,
        "status": if node_alive(state, node, now) { "RUNNING" } else { "UNREACHABLE" },
        "host": node.host,
        "pid": node.pid,
        "slot": node.slot,
        "registered_at": node.registered_at,
        "last_heartbeat": node.last_heartbeat,
        "rss_bytes": node.report.rss_bytes,
        "buffered_bytes": node.report.buffered_bytes,
    })
}

/// Builds the ShowInstance body, with the connector fields and the `connector_nodes` extension.
pub fn instance(
    state: &AppState,
    instance: &Instance,
    connector: Option<&Connector>,
    nodes: &[Node],
) -> Value {
    let now = now_ms();
    let enabled = connector.is_some_and(|c| c.state != "deleting");
    let live = nodes.iter().filter(|n| node_alive(state, n, now)).count();
    json!({
        "instance_id": instance.id,
        "name": instance.name,
        "engine": "kafka",
        "engine_version": "3.x",
        "specification": instance.specification,
        "status": instance.status,
        "type": "cluster",
        "charging_mode": 1,
        "project_id": instance.project_id,
        "connect_address": instance.bootstrap_servers,
        "node_num": instance.broker_num,
        "broker_num": instance.broker_num,
        "created_at": instance.created_at.to_string(),
        "connector_enable": enabled,
        "connector_id": connector.map(|c| c.id.clone()).unwrap_or_default(),
        "connector_node_num": connector.map_or(0, |c| c.node_cnt),
        "connector_live_node_num": live,
        "connector_nodes": nodes.iter().map(|n| node_json(state, n, now)).collect::<Vec<_>>(),
    })
}

/// Extra fields of a sink task response that the DMS service returns.
fn sink_response(stored: &Map<String, Value>) -> Value {
    let mut out: Map<String, Value> = stored
        .iter()
        .filter(|(k, _)| !SECRET_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(
        "schema_generator_class".into(),
        Value::from("io.confluent.connect.storage.hive.schema.DefaultSchemaGenerator"),
    );
    out.insert(
        "partitioner_class".into(),
        Value::from("io.confluent.connect.storage.partitioner.TimeBasedPartitioner"),
    );
    out.insert(
        "value_converter".into(),
        Value::from("org.apache.kafka.connect.converters.ByteArrayConverter"),
    );
    out.insert(
        "key_converter".into(),
        Value::from("org.apache.kafka.connect.converters.ByteArrayConverter"),
    );
    Value::Object(out)
}

/// Status of a task as the nodes report it.
pub struct TaskStatus {
    pub status: &'static str,
    /// `HEALTHY`, `FAILING` or `UNKNOWN`: whether the nodes running the task
    /// reach Kafka and the object store.
    pub health: &'static str,
    pub error: Option<String>,
}

/// Field of a stored task entity that contains the status to show after a
/// start, resume or restart until a node reports the task running. The API
/// never returns it.
///
/// Clients poll with the status before the action as their only pending
/// state: terraform's `start` waits on `WAITING`, `resume` on `PAUSED` and
/// `restart` on `PAUSED` or `RESTARTING`, and fails on any other status.
pub const PENDING_STATUS_FIELD: &str = "weir_pending_status";

/// Statuses that [`PENDING_STATUS_FIELD`] may contain.
const PENDING_STATUSES: [&str; 4] = ["CREATING", "WAITING", "PAUSED", "RESTARTING"];

/// Returns the status of a task that should run but that no node reports running.
fn pending_status(task: &Task) -> &'static str {
    let stored = task
        .entity
        .get(PENDING_STATUS_FIELD)
        .and_then(Value::as_str);
    if let Some(status) = PENDING_STATUSES.iter().find(|s| Some(**s) == stored) {
        return status;
    }
    if task.restarting {
        "RESTARTING"
    } else {
        "CREATING"
    }
}

pub fn task_status(state: &AppState, task: &Task, nodes: &[Node]) -> TaskStatus {
    let unknown = |status| TaskStatus {
        status,
        health: "UNKNOWN",
        error: None,
    };
    match task.desired.as_str() {
        "WAITING" => return unknown("WAITING"),
        "PAUSED" => return unknown("PAUSED"),
        _ => {}
    }
    let now = now_ms();
    let reports: Vec<_> = nodes
        .iter()
        .filter(|n| node_alive(state, n, now))
        .flat_map(|n| n.report.tasks.iter())
        .filter(|r| r.task_id == task.id && r.generation == task.generation)
        .collect();
    let running = reports
        .iter()
        .any(|r| r.state == "running" || r.state == "failing");
    let failing = reports.iter().find(|r| r.state == "failing");
    if !running {
        return unknown(pending_status(task));
    }
    match failing {
        Some(report) => TaskStatus {
            status: "RUNNING",
            health: "FAILING",
            error: report.error.clone(),
        },
        None => TaskStatus {
            status: "RUNNING",
            health: "HEALTHY",
            error: None,
        },
    }
}

/// Builds the task entity of create, show, list and modify responses.
pub fn task(state: &AppState, task: &Task, nodes: &[Node]) -> Value {
    let stored = task.entity.as_object().cloned().unwrap_or_default();
    let status = task_status(state, task, nodes);
    let mut out = Map::new();
    out.insert("id".into(), Value::from(task.id.clone()));
    out.insert("task_name".into(), Value::from(task.name.clone()));
    for field in ["topics", "topics_regex"] {
        if let Some(value) = stored.get(field) {
            out.insert(field.into(), value.clone());
        }
    }
    let sink_type = stored
        .get("sink_type")
        .cloned()
        .unwrap_or(Value::from("NONE"));
    let source_type = stored
        .get("source_type")
        .cloned()
        .unwrap_or(Value::from("NONE"));
    let sink = match stored.get("sink_task") {
        Some(Value::Object(sink)) if sink_type == "OBS_SINK" => sink_response(sink),
        _ => json!({}),
    };
    let source = match stored.get("source_task") {
        Some(Value::Object(source)) if source_type == "KAFKA_REPLICATOR_SOURCE" => {
            super::source_task::source_response(source)
        }
        _ => json!({}),
    };
    out.insert("source_type".into(), source_type);
    out.insert("source_task".into(), source);
    out.insert("sink_type".into(), sink_type);
    out.insert("sink_task".into(), sink);
    out.insert("status".into(), Value::from(status.status));
    out.insert("health".into(), Value::from(status.health));
    if let Some(error) = status.error {
        out.insert("error_msg".into(), Value::from(error));
    }
    out.insert("create_time".into(), Value::from(task.created_at));
    out.insert("generation".into(), Value::from(task.generation));
    Value::Object(out)
}

fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

pub fn job(job: &Job) -> Value {
    json!({
        "id": job.id,
        "name": job.name,
        "user_name": "weir",
        "user_id": "",
        "params": job.params,
        "status": job.status,
        "created_at": iso8601(job.created_at),
        "updated_at": iso8601(job.updated_at),
        "reason": job.reason.clone().unwrap_or_default(),
    })
}

/// Builds the body of ShowBackgroundTaskProgress.
pub fn job_progress(job: &Job) -> Value {
    let total = job.steps.len().max(1);
    let done = job.steps.iter().filter(|s| s.statue == "COMPLETED").count();
    let percentage = if job.status == "SUCCESS" {
        100
    } else {
        done * 100 / total
    };
    json!({
        "progress_percentage": percentage,
        "remain_time": 0,
        "step_list": job.steps.iter().map(|s| json!({
            "name": s.name,
            "statue": s.statue,
            "start_time": s.start_time.unwrap_or(0),
            "end_time": s.end_time.unwrap_or(0),
        })).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(entity: Value, restarting: bool) -> Task {
        Task {
            id: "t1".to_string(),
            instance_id: "i1".to_string(),
            name: "dump-1".to_string(),
            entity,
            desired: "RUNNING".to_string(),
            generation: 0,
            restarting,
            created_at: 1,
        }
    }

    #[test]
    fn pending_status_uses_recorded_status() {
        for status in PENDING_STATUSES {
            let task = task(json!({ PENDING_STATUS_FIELD: status }), true);
            assert_eq!(pending_status(&task), status);
        }
    }

    #[test]
    fn pending_status_falls_back_without_record() {
        assert_eq!(pending_status(&task(json!({}), false)), "CREATING");
        assert_eq!(pending_status(&task(json!({}), true)), "RESTARTING");
        let unknown = task(json!({ PENDING_STATUS_FIELD: "RUNNING" }), false);
        assert_eq!(pending_status(&unknown), "CREATING");
    }
}
