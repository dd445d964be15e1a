//! `weir node`: a dump node. It registers with the server, sends heartbeats
//! with its task reports, and runs every task the heartbeat response lists.
//!
//! A node keeps running its tasks while the server is unreachable, so a
//! control-plane restart does not stop the data plane.

pub mod limits;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::protocol::{
    HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse, ReplicationSpec,
    TaskReport, TaskSpec,
};
use crate::sink::obs::runner::{self, KafkaSettings, RunnerHandles};
use limits::NodeLimits;

/// Arguments of `weir node`.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// URL of the Weir server, such as http://127.0.0.1:8780
    #[arg(long, env = "WEIR_SERVER")]
    pub server: String,
    /// Id of the connector to join (ShowInstance's connector_id)
    #[arg(long)]
    pub connector: String,
    /// Node token of the connector (`weir connector token` prints it)
    #[arg(long, env = "WEIR_NODE_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Fixed node id; set by the server for the nodes it starts
    #[arg(long)]
    pub node_id: Option<String>,
    /// Slot of a server-started node
    #[arg(long)]
    pub slot: Option<u32>,
}

/// The work of one task: a dump or a replication.
#[derive(Debug, Clone, PartialEq)]
enum Work {
    Dump(Box<TaskSpec>),
    Replication(ReplicationSpec),
}

impl Work {
    fn task_id(&self) -> &str {
        match self {
            Work::Dump(spec) => &spec.task_id,
            Work::Replication(spec) => &spec.task_id,
        }
    }

    fn generation(&self) -> u64 {
        match self {
            Work::Dump(spec) => spec.generation,
            Work::Replication(spec) => spec.generation,
        }
    }
}

struct RunningTask {
    spec: Work,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
    report: Arc<Mutex<TaskReport>>,
    /// Runs of this task that ended with an error, for the restart backoff.
    failures: u32,
    /// When the runner was seen ended; its last report is kept until the
    /// backoff has passed, so that the server shows why it failed.
    ended_at: Option<std::time::Instant>,
}

/// Delay before a failed runner is started again: 1 s doubling to 60 s.
fn runner_backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(6)).min(60))
}

/// Longest wait for a runner to stop after its stop signal. A runner flushes
/// its producer (up to 30 s) and commits before it ends; one that takes
/// longer is aborted, which loses no record because its offsets stay
/// uncommitted.
const STOP_TIMEOUT: Duration = Duration::from_secs(40);

/// A runner that was told to stop and has not ended yet.
struct StoppingTask {
    handle: JoinHandle<()>,
    since: std::time::Instant,
}

struct Node {
    args: NodeArgs,
    http: reqwest::Client,
    node_id: String,
    heartbeat_interval: Duration,
    limits: Arc<NodeLimits>,
    tasks: HashMap<String, RunningTask>,
    /// Runners told to stop, by task id. The heartbeat loop never waits for
    /// them, and a task starts again only once its old runner has ended.
    stopping: HashMap<String, StoppingTask>,
    kafka: Option<KafkaSettings>,
}

enum Beat {
    Assigned(Box<HeartbeatResponse>),
    Reregister,
    Gone,
    /// The heartbeat failed, for the reason given.
    Failed(String),
}

/// Whether the `failures`-th heartbeat failure in a row is logged: the first
/// five, then one in 30, so that a node whose server is gone for good does
/// not log every second.
fn log_heartbeat_failure(failures: u32) -> bool {
    failures <= 5 || failures.is_multiple_of(30)
}

/// Runs a node until the connector is deleted or the process gets SIGTERM.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let limits = Arc::new(NodeLimits::new(0, crate::config::DEFAULT_MEMORY_BUDGET));
    let mut node = Node {
        node_id: String::new(),
        heartbeat_interval: Duration::from_secs(1),
        http,
        limits,
        tasks: HashMap::new(),
        stopping: HashMap::new(),
        kafka: None,
        args,
    };
    node.register().await?;
    info!(node_id = %node.node_id, connector_id = %node.args.connector, server = %node.args.server, "Node started.");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut failures = 0u32;
    let mut watchdog_started = false;
    loop {
        match node.heartbeat().await {
            Beat::Assigned(assignment) => {
                if failures > 0 {
                    info!(node_id = %node.node_id, failures, "Server reachable again.");
                }
                failures = 0;
                if assignment.stop {
                    info!(node_id = %node.node_id, "Connector is being deleted; stopping.");
                    break;
                }
                if !watchdog_started {
                    // A lease below the session timeout: a node frozen this long
                    // may have lost its partitions to another node.
                    let lease = Duration::from_millis(assignment.session_timeout_ms.max(2000) / 2);
                    node.limits.start_freeze_watchdog(lease);
                    watchdog_started = true;
                }
                node.reconcile(*assignment).await;
            }
            Beat::Reregister => {
                warn!(node_id = %node.node_id, "Server does not know this node; registering again.");
                if let Err(e) = node.register().await {
                    warn!(error = %e, "Registering again failed.");
                }
            }
            Beat::Gone => {
                info!(node_id = %node.node_id, "Connector no longer exists; stopping.");
                break;
            }
            Beat::Failed(reason) => {
                failures += 1;
                if log_heartbeat_failure(failures) {
                    warn!(node_id = %node.node_id, server = %node.args.server, failures, error = %reason, "Heartbeat failed; tasks keep running and the node retries every second.");
                }
            }
        }
        tokio::select! {
            _ = terminate.recv() => {
                info!(node_id = %node.node_id, "SIGTERM received; stopping.");
                break;
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(node.heartbeat_interval) => {}
        }
    }
    node.stop_all().await;
    let _ = node.deregister().await;
    info!(node_id = %node.node_id, "Node stopped.");
    Ok(())
}

fn rss_bytes() -> u64 {
    // The second field of /proc/self/statm is the resident set in pages.
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |pages| pages * 4096)
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!(
            "{}/internal/v1/connectors/{}/nodes{path}",
            self.args.server.trim_end_matches('/'),
            self.args.connector
        )
    }

    /// Registers, retrying with backoff until the server responds. A rejected
    /// token is final.
    async fn register(&mut self) -> anyhow::Result<()> {
        let request = RegisterRequest {
            node_id: self
                .args
                .node_id
                .clone()
                .or_else(|| (!self.node_id.is_empty()).then(|| self.node_id.clone())),
            slot: self.args.slot,
            pid: std::process::id(),
            host: crate::server::hostname(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        let mut attempt = 0u32;
        loop {
            let sent = self
                .http
                .post(self.url(""))
                .bearer_auth(&self.args.token)
                .json(&request)
                .send()
                .await;
            match sent {
                Ok(response) if response.status().is_success() => {
                    let body: RegisterResponse = response.json().await?;
                    self.node_id = body.node_id;
                    self.heartbeat_interval =
                        Duration::from_millis(body.heartbeat_interval_ms.clamp(100, 60_000));
                    return Ok(());
                }
                Ok(response)
                    if response.status() == StatusCode::UNAUTHORIZED
                        || response.status() == StatusCode::GONE
                        || response.status() == StatusCode::CONFLICT =>
                {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    anyhow::bail!(
                        "server {} rejected the node for connector {} ({status}): {text}",
                        self.args.server,
                        self.args.connector
                    );
                }
                Ok(response) => {
                    warn!(status = %response.status(), attempt, "Registering with the server failed; retrying.");
                }
                Err(e) => {
                    warn!(server = %self.args.server, error = %e, attempt, "Server unreachable; retrying registration.");
                }
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis((500 * u64::from(attempt)).min(5000))).await;
        }
    }

    async fn heartbeat(&mut self) -> Beat {
        let mut tasks = Vec::new();
        for running in self.tasks.values() {
            if let Ok(report) = running.report.lock() {
                tasks.push(report.clone());
            }
        }
        let request = HeartbeatRequest {
            tasks,
            rss_bytes: rss_bytes(),
            buffered_bytes: self.limits.buffered_bytes() as u64,
        };
        let sent = self
            .http
            .post(self.url(&format!("/{}/heartbeat", self.node_id)))
            .bearer_auth(&self.args.token)
            .json(&request)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => match response.json().await {
                Ok(body) => Beat::Assigned(Box::new(body)),
                Err(e) => Beat::Failed(format!("invalid heartbeat response: {e}")),
            },
            Ok(response) if response.status() == StatusCode::NOT_FOUND => Beat::Reregister,
            Ok(response) if response.status() == StatusCode::GONE => Beat::Gone,
            Ok(response) => Beat::Failed(format!(
                "heartbeat rejected with HTTP {}",
                response.status()
            )),
            Err(e) => Beat::Failed(format!("heartbeat request failed: {e}")),
        }
    }

    async fn deregister(&self) -> anyhow::Result<()> {
        self.http
            .post(self.url(&format!("/{}/deregister", self.node_id)))
            .bearer_auth(&self.args.token)
            .send()
            .await?;
        Ok(())
    }

    /// Starts, restarts and stops task runners to match the assignment.
    async fn reconcile(&mut self, assignment: HeartbeatResponse) {
        self.limits.configure(
            assignment.read_bytes_per_second,
            assignment.memory_budget_bytes,
        );
        let kafka = KafkaSettings {
            bootstrap_servers: assignment.bootstrap_servers.clone(),
            extra: assignment.kafka.clone(),
            session_timeout_ms: assignment.session_timeout_ms,
            topic_refresh_interval_ms: assignment.topic_refresh_interval_ms,
        };
        let kafka_changed = self.kafka.as_ref().is_none_or(|k| {
            k.bootstrap_servers != kafka.bootstrap_servers || k.extra != kafka.extra
        });
        self.kafka = Some(kafka.clone());
        let wanted: HashMap<String, Work> = assignment
            .tasks
            .into_iter()
            .map(|spec| Work::Dump(Box::new(spec)))
            .chain(assignment.replications.into_iter().map(Work::Replication))
            .map(|work| (work.task_id().to_string(), work))
            .collect();
        let stale: Vec<String> = self
            .tasks
            .iter()
            .filter(|(id, running)| {
                kafka_changed || wanted.get(*id).is_none_or(|spec| *spec != running.spec)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            if let Some(running) = self.tasks.remove(&id) {
                self.begin_stop(id, running);
            }
        }
        self.reap_stopped();
        // A runner that ended by itself failed; it is started again after a backoff.
        let mut restart = Vec::new();
        for (id, running) in self.tasks.iter_mut() {
            if !running.handle.is_finished() {
                continue;
            }
            let ended_at = *running.ended_at.get_or_insert_with(std::time::Instant::now);
            if ended_at.elapsed() >= runner_backoff(running.failures) {
                restart.push((id.clone(), running.failures + 1));
            }
        }
        for (id, failures) in restart {
            let previous_error = self
                .tasks
                .remove(&id)
                .and_then(|old| old.report.lock().ok().and_then(|r| r.error.clone()));
            if let Some(spec) = wanted.get(&id).filter(|_| !self.stopping.contains_key(&id)) {
                info!(task_id = %id, failures, "Starting a failed task runner again.");
                let mut running = start_task(spec.clone(), kafka.clone(), Arc::clone(&self.limits));
                running.failures = failures;
                // The new runner shows why the last one failed until it runs.
                if let (Some(error), Ok(mut report)) = (previous_error, running.report.lock()) {
                    report.state = "failing".to_string();
                    report.error = Some(error);
                }
                self.tasks.insert(id, running);
            }
        }
        for (id, spec) in wanted {
            if self.tasks.contains_key(&id) || self.stopping.contains_key(&id) {
                continue;
            }
            self.tasks.insert(
                id,
                start_task(spec, kafka.clone(), Arc::clone(&self.limits)),
            );
        }
    }

    /// Sends the stop signal to a runner and keeps its handle until it ends.
    fn begin_stop(&mut self, id: String, running: RunningTask) {
        let _ = running.stop.send(true);
        info!(task_id = %id, "Stopping a task runner.");
        self.stopping.insert(
            id,
            StoppingTask {
                handle: running.handle,
                since: std::time::Instant::now(),
            },
        );
    }

    /// Forgets the runners that have ended and aborts those that have not
    /// ended within [`STOP_TIMEOUT`] of their stop signal.
    fn reap_stopped(&mut self) {
        self.stopping.retain(|id, stopping| {
            if stopping.handle.is_finished() {
                info!(task_id = %id, "Task runner stopped.");
                return false;
            }
            if stopping.since.elapsed() >= STOP_TIMEOUT {
                warn!(task_id = %id, timeout_s = STOP_TIMEOUT.as_secs(), "Task runner did not stop in time; aborting it. Its uncommitted records are read again by the next runner.");
                stopping.handle.abort();
                return false;
            }
            true
        });
    }

    async fn stop_all(&mut self) {
        let running: Vec<(String, RunningTask)> = self.tasks.drain().collect();
        for (id, task) in running {
            self.begin_stop(id, task);
        }
        let waits = self.stopping.drain().map(|(id, stopping)| async move {
            let remaining = STOP_TIMEOUT.saturating_sub(stopping.since.elapsed());
            if tokio::time::timeout(remaining, stopping.handle).await.is_err() {
                warn!(task_id = %id, timeout_s = STOP_TIMEOUT.as_secs(), "Task runner did not stop in time at shutdown.");
            }
        });
        futures::future::join_all(waits).await;
    }
}

fn start_task(spec: Work, kafka: KafkaSettings, limits: Arc<NodeLimits>) -> RunningTask {
    let (stop, stop_rx) = watch::channel(false);
    let report = Arc::new(Mutex::new(TaskReport {
        task_id: spec.task_id().to_string(),
        generation: spec.generation(),
        state: "starting".to_string(),
        ..TaskReport::default()
    }));
    let handles = RunnerHandles {
        limits,
        report: Arc::clone(&report),
        stop: stop_rx,
    };
    let task_id = spec.task_id().to_string();
    let runner_spec = spec.clone();
    let error_report = Arc::clone(&report);
    let handle = tokio::spawn(async move {
        let result = match runner_spec {
            Work::Dump(spec) => runner::run(*spec, kafka, handles).await,
            Work::Replication(spec) => {
                crate::replicator::run(spec, kafka.session_timeout_ms, handles).await
            }
        };
        if let Err(e) = result {
            error!(task_id = %task_id, error = %e, "Task runner failed; it starts again after a backoff.");
            if let Ok(mut report) = error_report.lock() {
                report.state = "failing".to_string();
                report.error = Some(e.to_string());
            }
        }
    });
    RunningTask {
        spec,
        stop,
        handle,
        report,
        failures: 0,
        ended_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_failures_are_logged_first_then_one_in_thirty() {
        let logged: Vec<u32> = (1..=95).filter(|&n| log_heartbeat_failure(n)).collect();
        assert_eq!(logged, vec![1, 2, 3, 4, 5, 30, 60, 90]);
    }
}
