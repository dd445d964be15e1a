//! Background jobs: persisted state machines that enable and disable connectors.
//!
//! A job records the step it has reached; every step is idempotent, so a
//! server that restarts picks up each `EXECUTING` job at its recorded step.

use std::time::Duration;

use serde_json::Value;
use tracing::{info, warn};

use super::SharedState;
use super::render::{node_alive, node_ready};
use crate::store::{ConnectorOutcome, Job, JobStep, now_ms};

pub const CREATE_CONNECTOR: &str = "createConnector";
pub const DELETE_CONNECTOR: &str = "deleteConnector";

const CREATE_STEPS: [&str; 3] = [
    "Start connector nodes",
    "Wait for nodes to join",
    "Enable Smart Connect",
];
const DELETE_STEPS: [&str; 3] = [
    "Stop connector nodes",
    "Wait for nodes to leave",
    "Disable Smart Connect",
];

/// How long a delete job waits for nodes to exit before it removes the connector anyway.
const DELETE_WAIT_MS: i64 = 60_000;

pub fn new_job(instance_id: &str, name: &str, params: Value) -> Job {
    let steps = if name == CREATE_CONNECTOR {
        CREATE_STEPS
    } else {
        DELETE_STEPS
    };
    let now = now_ms();
    Job {
        id: uuid::Uuid::new_v4().simple().to_string(),
        instance_id: instance_id.to_string(),
        name: name.to_string(),
        params: params.to_string(),
        status: "EXECUTING".to_string(),
        step: 0,
        steps: steps
            .iter()
            .map(|s| JobStep {
                name: (*s).to_string(),
                statue: "WAITING".to_string(),
                start_time: None,
                end_time: None,
            })
            .collect(),
        reason: None,
        created_at: now,
        updated_at: now,
    }
}

/// Starts the loop that advances every executing job.
pub fn start(state: SharedState) {
    tokio::spawn(async move {
        match state.store.executing_jobs() {
            Ok(jobs) if !jobs.is_empty() => {
                info!(
                    count = jobs.len(),
                    "Resuming jobs interrupted by a server stop."
                );
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "Reading executing jobs failed."),
        }
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            let jobs = match state.store.executing_jobs() {
                Ok(jobs) => jobs,
                Err(e) => {
                    warn!(error = %e, "Reading executing jobs failed.");
                    continue;
                }
            };
            for job in jobs {
                if let Err(e) = advance(&state, job.clone()) {
                    warn!(job_id = %job.id, error = %e, "Advancing a job failed; retrying.");
                }
            }
        }
    });
}

fn connector_id_of(job: &Job) -> Option<String> {
    serde_json::from_str::<Value>(&job.params)
        .ok()?
        .get("connector_id")?
        .as_str()
        .map(str::to_string)
}

fn mark_step(job: &mut Job, index: usize, statue: &str) {
    let now = now_ms();
    if let Some(step) = job.steps.get_mut(index) {
        if step.start_time.is_none() {
            step.start_time = Some(now);
        }
        if statue == "COMPLETED" || statue == "FAILED" {
            step.end_time = Some(now);
        }
        step.statue = statue.to_string();
    }
}

/// Marks the current step done, starts the next one and stores the job.
fn complete_step(state: &SharedState, job: &mut Job) -> rusqlite::Result<()> {
    let index = job.step as usize;
    mark_step(job, index, "COMPLETED");
    mark_step(job, index + 1, "IN_PROGRESS");
    job.step += 1;
    state.store.update_job(job)
}

/// Moves a job forward by as many steps as are done.
fn advance(state: &SharedState, mut job: Job) -> anyhow::Result<()> {
    let Some(connector_id) = connector_id_of(&job) else {
        return fail(
            state,
            job,
            String::new(),
            "the job has no connector id".to_string(),
        );
    };
    let connector = state.store.connector(&connector_id)?;
    let now = now_ms();
    let name = job.name.clone();
    match name.as_str() {
        CREATE_CONNECTOR => {
            let Some(connector) = connector else {
                return fail(
                    state,
                    job,
                    connector_id,
                    "the connector was removed".to_string(),
                );
            };
            if job.step == 0 {
                // The supervisor starts nodes for every connector in the
                // `creating` state; nothing to do but record it.
                complete_step(state, &mut job)?;
            }
            if job.step == 1 {
                let nodes = state.store.nodes_of(&connector.id)?;
                let ready = nodes.iter().filter(|n| node_ready(state, n, now)).count();
                if ready >= connector.node_cnt as usize {
                    complete_step(state, &mut job)?;
                } else if now - job.created_at > state.config.server.job_timeout_s as i64 * 1000 {
                    let hint = if state.config.nodes.spawn {
                        format!(
                            "see the node logs under {}",
                            state.data_dir.join("logs").display()
                        )
                    } else {
                        format!(
                            "nodes.spawn is false, so start `weir node --connector {}` processes by hand (`weir connector token` prints the token)",
                            connector.id
                        )
                    };
                    let reason = format!(
                        "{ready} of {} connector nodes joined within {} s; {hint}",
                        connector.node_cnt, state.config.server.job_timeout_s,
                    );
                    return fail(state, job, connector.id, reason);
                }
            }
            if job.step == 2 {
                mark_step(&mut job, 2, "COMPLETED");
                job.step = 3;
                job.status = "SUCCESS".to_string();
                state
                    .store
                    .finish_connector_job(&job, &connector.id, ConnectorOutcome::Running)?;
                info!(job_id = %job.id, instance_id = %job.instance_id, connector_id = %connector.id, "Connector enabled.");
            }
        }
        DELETE_CONNECTOR => {
            if job.step == 0 {
                complete_step(state, &mut job)?;
            }
            if job.step == 1 {
                let live = match &connector {
                    Some(c) => state
                        .store
                        .nodes_of(&c.id)?
                        .iter()
                        .filter(|n| node_alive(state, n, now) && now - n.last_heartbeat < 5_000)
                        .count(),
                    None => 0,
                };
                let waited = now - job.created_at;
                if live == 0 || waited > DELETE_WAIT_MS {
                    if live > 0 {
                        warn!(job_id = %job.id, live, "Nodes did not leave in time; removing the connector anyway.");
                    }
                    complete_step(state, &mut job)?;
                }
            }
            if job.step == 2 {
                mark_step(&mut job, 2, "COMPLETED");
                job.step = 3;
                job.status = "SUCCESS".to_string();
                state
                    .store
                    .finish_connector_job(&job, &connector_id, ConnectorOutcome::Removed)?;
                info!(job_id = %job.id, instance_id = %job.instance_id, connector_id = %connector_id, "Connector disabled.");
            }
        }
        other => {
            return fail(
                state,
                job,
                connector_id,
                format!("unknown job type {other:?}"),
            );
        }
    }
    Ok(())
}

/// Ends a job `FAILED` and returns the instance to `RUNNING`. A failed create
/// removes its connector, so that the nodes stop and a retry can start over.
fn fail(
    state: &SharedState,
    mut job: Job,
    connector_id: String,
    reason: String,
) -> anyhow::Result<()> {
    warn!(job_id = %job.id, instance_id = %job.instance_id, %reason, "Job failed.");
    let index = job.step as usize;
    mark_step(&mut job, index, "FAILED");
    job.status = "FAILED".to_string();
    job.reason = Some(reason);
    let outcome = if job.name == CREATE_CONNECTOR {
        ConnectorOutcome::Removed
    } else {
        ConnectorOutcome::Running
    };
    state
        .store
        .finish_connector_job(&job, &connector_id, outcome)?;
    Ok(())
}

/// Starts the loop that removes the consumer groups of deleted and restarted tasks.
pub fn start_group_cleanup(state: SharedState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            let queued = match state.store.group_deletions() {
                Ok(queued) => queued,
                Err(e) => {
                    warn!(error = %e, "Reading queued consumer-group removals failed.");
                    continue;
                }
            };
            for (group, instance_id, queued_at) in queued {
                let done = delete_group(&state, &group, &instance_id).await;
                let expired = now_ms() - queued_at > 600_000;
                if done || expired {
                    if expired && !done {
                        warn!(group = %group, "Giving up on removing a consumer group after 10 minutes; remove it by hand.");
                    }
                    if let Err(e) = state.store.remove_group_deletion(&group) {
                        warn!(group = %group, error = %e, "Dequeuing a consumer-group removal failed.");
                    }
                }
            }
        }
    });
}

/// Removes one consumer group. Returns true when it is gone.
async fn delete_group(state: &SharedState, group: &str, instance_id: &str) -> bool {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let Ok(Some(instance)) = state.store.instance_by_id(instance_id) else {
        return true;
    };
    let mut config = crate::kafka::client_config(&instance.bootstrap_servers);
    for (key, value) in crate::kafka::security_properties(&instance.security) {
        config.set(key, value);
    }
    let admin: AdminClient<DefaultClientContext> = match config.create() {
        Ok(admin) => admin,
        Err(e) => {
            warn!(group, error = %e, "Creating a Kafka admin client failed.");
            return false;
        }
    };
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    match admin.delete_groups(&[group], &options).await {
        Ok(results) => results.iter().all(|result| match result {
            Ok(_) => {
                info!(group, "Consumer group removed.");
                true
            }
            Err((_, RDKafkaErrorCode::GroupIdNotFound)) => true,
            Err((_, code)) => {
                tracing::debug!(group, error = %code, "Consumer group not removed yet.");
                false
            }
        }),
        Err(e) => {
            tracing::debug!(group, error = %e, "Removing a consumer group failed.");
            false
        }
    }
}
