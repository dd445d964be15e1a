//! `/healthz` and Prometheus metrics summed from the nodes' reports.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::SharedState;
use super::render::node_alive;
use crate::store::now_ms;

/// Serves `/healthz`.
pub async fn health() -> &'static str {
    "ok"
}

/// Counters per task, summed over the live nodes. A node that restarts
/// starts its counters from zero, so a sum can go down; rate() copes with
/// such resets.
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    let mut out = String::new();
    let now = now_ms();
    let mut per_task: BTreeMap<String, [u64; 8]> = BTreeMap::new();
    let mut node_lines = Vec::new();
    if let Ok(connectors) = state.store.connectors() {
        for connector in connectors {
            let nodes = state.store.nodes_of(&connector.id).unwrap_or_default();
            let live = nodes
                .iter()
                .filter(|n| node_alive(&state, n, now))
                .collect::<Vec<_>>();
            node_lines.push((connector.id.clone(), live.len()));
            for node in live {
                for report in &node.report.tasks {
                    let entry = per_task.entry(report.task_id.clone()).or_default();
                    let values = [
                        report.records_read,
                        report.bytes_read,
                        report.records_written,
                        report.bytes_written,
                        report.objects_written,
                        report.upload_retries,
                        report.open_chunk_bytes,
                        u64::from(report.state == "failing"),
                    ];
                    for (sum, value) in entry.iter_mut().zip(values) {
                        *sum += value;
                    }
                }
            }
        }
    }
    let names = [
        (
            "weir_task_read_records_total",
            "counter",
            "Records read from Kafka.",
        ),
        (
            "weir_task_read_bytes_total",
            "counter",
            "Key and value bytes read from Kafka.",
        ),
        (
            "weir_task_written_records_total",
            "counter",
            "Records written in objects.",
        ),
        (
            "weir_task_written_bytes_total",
            "counter",
            "Bytes of objects written.",
        ),
        (
            "weir_task_objects_written_total",
            "counter",
            "Objects written.",
        ),
        (
            "weir_task_upload_retries_total",
            "counter",
            "Object puts retried.",
        ),
        (
            "weir_task_open_chunk_bytes",
            "gauge",
            "Bytes buffered in open chunks.",
        ),
        (
            "weir_task_failing_nodes",
            "gauge",
            "Nodes reporting the task as failing.",
        ),
    ];
    for (index, (name, kind, help)) in names.iter().enumerate() {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (task_id, values) in &per_task {
            let _ = writeln!(out, "{name}{{task_id=\"{task_id}\"}} {}", values[index]);
        }
    }
    let _ = writeln!(
        out,
        "# HELP weir_connector_live_nodes Nodes sending heartbeats.\n# TYPE weir_connector_live_nodes gauge"
    );
    for (connector_id, live) in node_lines {
        let _ = writeln!(
            out,
            "weir_connector_live_nodes{{connector_id=\"{connector_id}\"}} {live}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
