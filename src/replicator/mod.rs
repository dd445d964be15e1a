//! Kafka-to-Kafka replication (`KAFKA_REPLICATOR_SOURCE` tasks) on a node.
//!
//! A task has one flow per direction, and each flow runs the node's share of
//! `task_num` consumers in one consumer group on the source cluster. The
//! group id contains the target's cluster id, so that a new target cluster
//! starts from `consumer_strategy` instead of the old target's progress.

pub mod flow;
pub mod offsets;
pub mod topics;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{error, info};

use crate::protocol::ReplicationSpec;
use crate::sink::obs::runner::RunnerHandles;
use flow::{Worker, WorkerStats};

/// Runs every consumer of a replication task until `handles.stop` turns
/// true. Returns the first error of a consumer, after stopping the others.
pub async fn run(
    spec: ReplicationSpec,
    session_timeout_ms: u64,
    handles: RunnerHandles,
) -> anyhow::Result<()> {
    // Checked before any consumer or offset sync starts, because one pass of
    // either does harm on a cluster that is its own peer.
    for flow in &spec.flows {
        flow::check_distinct_clusters(flow).await?;
    }
    let mut workers = Vec::new();
    let mut stats = Vec::new();
    let (stop_all, stop_rx) = tokio::sync::watch::channel(false);
    for flow in &spec.flows {
        for index in 0..flow.workers {
            let worker_stats = Arc::new(WorkerStats::default());
            stats.push(Arc::clone(&worker_stats));
            let worker = Worker {
                spec: spec.clone(),
                flow: flow.clone(),
                index,
                limits: Arc::clone(&handles.limits),
                stats: worker_stats,
                stop: stop_rx.clone(),
                session_timeout_ms,
            };
            workers.push(tokio::spawn(worker.run()));
        }
    }
    let mut syncs = Vec::new();
    for flow in spec.flows.iter().filter(|f| f.offset_sync) {
        syncs.push(tokio::spawn(sync_offsets_loop(
            spec.clone(),
            flow.clone(),
            stop_rx.clone(),
        )));
    }
    info!(task_id = %spec.task_id, consumers = workers.len(), flows = spec.flows.len(), offset_syncs = syncs.len(), "Replication task started.");
    if let Ok(mut report) = handles.report.lock() {
        if workers.is_empty() {
            report.state = "running".to_string();
        } else if report.error.is_none() {
            report.state = "starting".to_string();
        }
    }

    let mut stop = handles.stop.clone();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut failure = None;
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    break;
                }
            }
            _ = tick.tick() => {
                publish(&handles, &stats, workers.is_empty());
                if let Some(index) = workers.iter().position(|w| w.is_finished()) {
                    let ended = workers.swap_remove(index);
                    failure = Some(match ended.await {
                        Ok(Ok(())) => anyhow::anyhow!("a replication consumer stopped unexpectedly"),
                        Ok(Err(e)) => e,
                        Err(e) => anyhow::anyhow!("a replication consumer panicked: {e}"),
                    });
                    break;
                }
            }
        }
    }
    let _ = stop_all.send(true);
    for sync in syncs {
        let _ = sync.await;
    }
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                error!(task_id = %spec.task_id, error = %e, "A replication consumer failed while stopping.")
            }
            Err(e) => {
                error!(task_id = %spec.task_id, error = %e, "A replication consumer panicked.")
            }
        }
    }
    publish(&handles, &stats, false);
    info!(task_id = %spec.task_id, "Replication task stopped.");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Sums the consumers' counters into the task report.
fn publish(handles: &RunnerHandles, stats: &[Arc<WorkerStats>], idle: bool) {
    let Ok(mut report) = handles.report.lock() else {
        return;
    };
    let sum = |f: fn(&WorkerStats) -> u64| stats.iter().map(|s| f(s)).sum::<u64>();
    report.records_read = sum(|s| s.records_read.load(Ordering::Relaxed));
    report.bytes_read = sum(|s| s.bytes_read.load(Ordering::Relaxed));
    report.records_written = sum(|s| s.records_written.load(Ordering::Relaxed));
    report.bytes_written = sum(|s| s.bytes_written.load(Ordering::Relaxed));
    report.assigned_partitions = stats
        .iter()
        .map(|s| s.assigned_partitions.load(Ordering::Relaxed))
        .sum();
    let running = idle || stats.iter().any(|s| s.running.load(Ordering::Relaxed) == 1);
    let error = stats
        .iter()
        .find_map(|s| s.error.lock().ok().and_then(|e| e.clone()));
    // Until a consumer runs, the error of the previous run (kept by the node
    // when it restarted this task) stays visible.
    let error = match (error, running) {
        (None, false) => report.error.take(),
        (error, _) => error,
    };
    report.state = match (&error, running) {
        (Some(_), _) => "failing",
        (None, true) => "running",
        (None, false) => "starting",
    }
    .to_string();
    report.error = error;
}

/// Translates consumer offsets of a flow every refresh interval until `stop`.
async fn sync_offsets_loop(
    spec: ReplicationSpec,
    flow: crate::protocol::FlowSpec,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let regex = spec
        .topics_regex
        .as_deref()
        .and_then(|pattern| topics::compile_regex(pattern).ok());
    let mut last = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(spec.refresh_interval_ms.max(500)));
    loop {
        tokio::select! {
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
            }
            _ = tick.tick() => {
                if let Err(e) = offsets::sync_once(&spec, &flow, regex.as_ref(), &mut last).await {
                    tracing::warn!(task_id = %spec.task_id, direction = %flow.direction, error = %e, "Translating consumer offsets failed; retrying at the next interval.");
                }
            }
        }
    }
}
