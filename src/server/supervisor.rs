//! Starts, watches and restarts the child-process nodes of every connector.
//!
//! Each connector has `node_cnt` slots; slot `n` of connector `C` is the node
//! `C-n`. A slot is filled by a child process, or by a node that survived a
//! server restart and still sends heartbeats: nodes keep moving data while
//! the control plane is down, and a restarted server adopts them instead of
//! starting duplicates.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::Mutex;
use tracing::{error, info, warn};

use super::SharedState;
use crate::store::{Connector, now_ms};

struct Slot {
    child: Option<Child>,
    started: Instant,
    failures: u32,
    next_start: Instant,
}

pub struct Supervisor {
    state: SharedState,
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Returns the time a node last showed it was alive. A node cannot send
/// heartbeats while the server is down, so no node counts as silent before
/// the server has been up for a heartbeat timeout.
fn last_sign_of_life(node: &crate::store::Node, server_started: i64) -> i64 {
    node.last_heartbeat.max(server_started)
}

fn node_id(connector: &Connector, slot: u32) -> String {
    format!("{}-{slot}", connector.id)
}

impl Supervisor {
    pub fn start(state: SharedState) -> Self {
        let slots = Arc::new(Mutex::new(HashMap::new()));
        let loop_slots = Arc::clone(&slots);
        let loop_state = state.clone();
        let started = now_ms();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if !loop_state.config.nodes.spawn {
                    continue;
                }
                let mut slots = loop_slots.lock().await;
                if let Err(e) = reconcile(&loop_state, &mut slots, started).await {
                    warn!(error = %e, "Node supervision pass failed.");
                }
            }
        });
        Self { state, slots, task }
    }

    /// Stops every child node, and every node this server adopted after a
    /// restart (SIGTERM, then SIGKILL after 15 s).
    pub async fn shutdown(self) {
        self.task.abort();
        let mut slots = self.slots.lock().await;
        for (id, slot) in slots.iter_mut() {
            if let Some(child) = slot.child.as_mut() {
                terminate(id, child).await;
            }
        }
        if self.state.config.nodes.spawn {
            let children: Vec<String> = slots
                .iter()
                .filter(|(_, slot)| slot.child.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            terminate_adopted(&self.state, &children).await;
        }
    }
}

/// Stops the local nodes from before the last server restart: they were
/// started by an earlier server process, so they are not children of this
/// one and are found by the pid they registered.
async fn terminate_adopted(state: &SharedState, children: &[String]) {
    let nodes = match state.store.connectors() {
        Ok(connectors) => connectors
            .iter()
            .filter_map(|c| state.store.nodes_of(&c.id).ok())
            .flatten()
            .collect::<Vec<_>>(),
        Err(e) => {
            warn!(error = %e, "Reading the nodes at shutdown failed; nodes from before the last restart keep running.");
            return;
        }
    };
    let adopted: Vec<(String, u32)> = nodes
        .into_iter()
        .filter(|n| n.host == state.hostname && !children.contains(&n.id))
        .filter(|n| is_node_process(n.pid, &n.id))
        .map(|n| (n.id, n.pid))
        .collect();
    for (id, pid) in &adopted {
        info!(node_id = %id, pid, "Stopping a node from before the last server restart.");
        // SAFETY: kill(2) on a pid whose command line names this node.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for (id, pid) in &adopted {
        while is_node_process(*pid, id) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if is_node_process(*pid, id) {
            warn!(node_id = %id, pid, "Node did not stop within 15 s; killing it.");
            // SAFETY: as above.
            unsafe {
                libc::kill(*pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

async fn terminate(node_id: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid this process started; no memory is involved.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(15), child.wait()).await {
        Ok(Ok(status)) => info!(node_id, %status, "Node stopped."),
        _ => {
            warn!(node_id, "Node did not stop within 15 s; killing it.");
            let _ = child.kill().await;
        }
    }
}

fn backoff(state: &SharedState, failures: u32) -> Duration {
    let initial = state.config.nodes.restart_backoff_initial_ms.max(1);
    let max = state.config.nodes.restart_backoff_max_ms.max(initial);
    Duration::from_millis(initial.saturating_mul(1 << failures.min(16)).min(max))
}

/// Returns whether `pid` is a running `weir node` started for `node_id`.
///
/// The pid comes from the node's own registration, so it is only trusted
/// when the process's command line names the node: a forged or reused pid
/// never gets a signal.
fn is_node_process(pid: u32, node_id: &str) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_node = args.iter().any(|a| *a == b"node");
    let names_node = args
        .windows(2)
        .any(|pair| pair[0] == b"--node-id" && pair[1] == node_id.as_bytes());
    is_node && names_node
}

async fn reconcile(
    state: &SharedState,
    slots: &mut HashMap<String, Slot>,
    server_started: i64,
) -> anyhow::Result<()> {
    let connectors = state.store.connectors()?;
    let now = now_ms();
    let dead_after = state.config.nodes.dead_after_ms as i64;
    let mut wanted = std::collections::HashSet::new();
    for connector in connectors.iter().filter(|c| c.state != "deleting") {
        let nodes = state.store.nodes_of(&connector.id)?;
        for index in 0..connector.node_cnt {
            let id = node_id(connector, index);
            wanted.insert(id.clone());
            let known = nodes.iter().find(|n| n.id == id);
            let slot = slots.entry(id.clone()).or_insert_with(|| Slot {
                child: None,
                started: Instant::now(),
                failures: 0,
                next_start: Instant::now(),
            });
            if let Some(child) = slot.child.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        slot.child = None;
                        if slot.started.elapsed() > Duration::from_secs(60) {
                            slot.failures = 0;
                        }
                        let delay = backoff(state, slot.failures);
                        slot.failures += 1;
                        slot.next_start = Instant::now() + delay;
                        warn!(node_id = %id, %status, restart_in_ms = delay.as_millis() as u64, "Node exited; restarting it.");
                    }
                    Ok(None) => {
                        let stale = known.is_none_or(|n| {
                            now - last_sign_of_life(n, server_started) > dead_after
                        });
                        if stale
                            && slot.started.elapsed() > Duration::from_millis(dead_after as u64)
                        {
                            warn!(node_id = %id, "Node sent no heartbeat within the dead-after time; killing it.");
                            let _ = child.kill().await;
                            slot.child = None;
                            slot.next_start = Instant::now();
                        }
                    }
                    Err(e) => warn!(node_id = %id, error = %e, "Checking a node process failed."),
                }
                continue;
            }
            // No child of ours: a node from before a server restart may hold the slot.
            if let Some(node) = known {
                let local = node.host == state.hostname;
                let silent_for = now - last_sign_of_life(node, server_started);
                if silent_for <= dead_after && (!local || is_node_process(node.pid, &id)) {
                    continue;
                }
                if local && is_node_process(node.pid, &id) {
                    warn!(node_id = %id, pid = node.pid, silent_ms = silent_for, "Node from before the server restart sent no heartbeat within the dead-after time; killing it.");
                    // SAFETY: kill(2) on a pid the store records for this slot on this host.
                    unsafe {
                        libc::kill(node.pid as libc::pid_t, libc::SIGKILL);
                    }
                }
            }
            if Instant::now() >= slot.next_start {
                match spawn(state, connector, index, &id) {
                    Ok(child) => {
                        info!(node_id = %id, connector_id = %connector.id, pid = child.id().unwrap_or(0), "Node started.");
                        slot.child = Some(child);
                        slot.started = Instant::now();
                    }
                    Err(e) => {
                        let delay = backoff(state, slot.failures);
                        slot.failures += 1;
                        slot.next_start = Instant::now() + delay;
                        error!(node_id = %id, error = %e, "Starting a node failed.");
                    }
                }
            }
        }
    }
    let unwanted: Vec<String> = slots
        .keys()
        .filter(|id| !wanted.contains(*id))
        .cloned()
        .collect();
    for id in unwanted {
        if let Some(mut slot) = slots.remove(&id)
            && let Some(child) = slot.child.as_mut()
        {
            // Nodes of a connector being deleted also receive `stop` in
            // their heartbeat response and exit by themselves.
            terminate(&id, child).await;
        }
    }
    Ok(())
}

fn spawn(state: &SharedState, connector: &Connector, slot: u32, id: &str) -> anyhow::Result<Child> {
    let binary = node_binary(state)?;
    let logs = state.data_dir.join("logs");
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("node-{id}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let child = Command::new(&binary)
        .arg("node")
        .arg("--server")
        .arg(&state.public_url)
        .arg("--connector")
        .arg(&connector.id)
        .arg("--node-id")
        .arg(id)
        .arg("--slot")
        .arg(slot.to_string())
        // The token goes through the environment so that it does not show in
        // process listings.
        .env("WEIR_NODE_TOKEN", &connector.token)
        // Nodes get secrets from the server in clear, so they never need the master key.
        .env_remove(crate::crypto::MASTER_KEY_ENV)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "running {} failed: {e}; set nodes.binary in the configuration to the weir binary",
                binary.display()
            )
        })?;
    Ok(child)
}

/// Returns the binary for child nodes: `nodes.binary`, or the running binary.
/// Linux reports a running binary that was replaced on disk (by a rebuild or
/// an upgrade) as `PATH (deleted)`; the new file at `PATH` is the one to run.
fn node_binary(state: &SharedState) -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = &state.config.nodes.binary {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(original) => std::path::PathBuf::from(original),
        None => exe,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_not_a_node() {
        assert!(!is_node_process(std::process::id(), "c-0"));
        assert!(!is_node_process(0, "c-0"));
    }
}
