//! Persistent state in SQLite: instances, connectors, tasks, jobs, nodes and keys.
//!
//! Every state change is one transaction, and nothing the API reports lives
//! only in memory, so a server killed at any moment starts again where it was.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::config::InstanceSecurity;
use crate::crypto::Cipher;

mod keys;
mod secrets;

pub use keys::RevokeError;

// NOTE: the schema has only been run on SQLite.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE keys (
    access_key TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL,
    project_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    bootstrap_servers TEXT NOT NULL,
    specification TEXT NOT NULL,
    broker_num INTEGER NOT NULL,
    security TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE connectors (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL UNIQUE,
    node_cnt INTEGER NOT NULL,
    specification TEXT NOT NULL,
    spec_code TEXT,
    token TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    entity TEXT NOT NULL,
    desired TEXT NOT NULL,
    generation INTEGER NOT NULL,
    restarting INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (instance_id, name)
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    name TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,
    step INTEGER NOT NULL,
    steps TEXT NOT NULL,
    reason TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX jobs_instance ON jobs (instance_id, created_at);
CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    connector_id TEXT NOT NULL,
    slot INTEGER,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    first_heartbeat INTEGER,
    last_heartbeat INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE group_deletions (
    group_id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
"#,
    // Keys created before roles existed could call the admin endpoints, so
    // they stay admin keys.
    r#"
ALTER TABLE keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;
ALTER TABLE keys ADD COLUMN description TEXT NOT NULL DEFAULT '';
UPDATE keys SET admin = 1;
CREATE TABLE meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#,
];

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub bootstrap_servers: String,
    pub specification: String,
    pub broker_num: u32,
    pub security: InstanceSecurity,
    pub status: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Connector {
    pub id: String,
    pub instance_id: String,
    pub node_cnt: u32,
    pub specification: String,
    pub spec_code: Option<String>,
    pub token: String,
    /// `creating`, `running` or `deleting`.
    pub state: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Task {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    /// The stored request: every field of the task, secrets included.
    pub entity: serde_json::Value,
    /// `RUNNING`, `PAUSED` or `WAITING`.
    pub desired: String,
    pub generation: u64,
    pub restarting: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobStep {
    pub name: String,
    /// `WAITING`, `IN_PROGRESS`, `COMPLETED` or `FAILED`.
    pub statue: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub params: String,
    pub status: String,
    pub step: u32,
    pub steps: Vec<JobStep>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub connector_id: String,
    pub slot: Option<u32>,
    pub pid: u32,
    pub host: String,
    pub registered_at: i64,
    pub first_heartbeat: Option<i64>,
    pub last_heartbeat: i64,
    pub report: crate::protocol::HeartbeatRequest,
}

/// Reason a state change was not made.
#[derive(Debug, thiserror::Error)]
pub enum Conflict {
    #[error("instance {0} does not exist")]
    NoInstance(String),
    #[error("instance {id} is {status}")]
    InstanceBusy { id: String, status: String },
    #[error("instance {0} already has a connector")]
    ConnectorExists(String),
    #[error("instance {0} has no connector")]
    NoConnector(String),
    #[error("instance {0} still has {1} tasks")]
    TasksRemain(String, u64),
    #[error("a task named {0:?} already exists")]
    DuplicateName(String),
    #[error("the instance has {0} tasks, the maximum")]
    Quota(u64),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Cipher of the secret columns, checked against the store's check value.
    cipher: Cipher,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

fn from_json<T: for<'de> Deserialize<'de> + Default>(text: &str) -> T {
    serde_json::from_str(text).unwrap_or_default()
}

fn instance_from_row(row: &Row<'_>) -> rusqlite::Result<Instance> {
    Ok(Instance {
        id: row.get(0)?,
        project_id: row.get(1)?,
        name: row.get(2)?,
        bootstrap_servers: row.get(3)?,
        specification: row.get(4)?,
        broker_num: row.get(5)?,
        security: from_json(&row.get::<_, String>(6)?),
        status: row.get(7)?,
        created_at: row.get(8)?,
    })
}

fn connector_from_row(row: &Row<'_>) -> rusqlite::Result<Connector> {
    Ok(Connector {
        id: row.get(0)?,
        instance_id: row.get(1)?,
        node_cnt: row.get(2)?,
        specification: row.get(3)?,
        spec_code: row.get(4)?,
        token: row.get(5)?,
        state: row.get(6)?,
        created_at: row.get(7)?,
    })
}

fn task_from_row(row: &Row<'_>) -> rusqlite::Result<Task> {
    let entity: String = row.get(3)?;
    Ok(Task {
        id: row.get(0)?,
        instance_id: row.get(1)?,
        name: row.get(2)?,
        entity: serde_json::from_str(&entity).unwrap_or(serde_json::Value::Null),
        desired: row.get(4)?,
        generation: row.get::<_, i64>(5)?.max(0) as u64,
        restarting: row.get(6)?,
        created_at: row.get(7)?,
    })
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let steps: String = row.get(6)?;
    Ok(Job {
        id: row.get(0)?,
        instance_id: row.get(1)?,
        name: row.get(2)?,
        params: row.get(3)?,
        status: row.get(4)?,
        step: row.get(5)?,
        steps: serde_json::from_str(&steps).unwrap_or_default(),
        reason: row.get(7)?,
        created_at: row.get(8)?,
        updated_at: row.get(9)?,
    })
}

fn node_from_row(row: &Row<'_>) -> rusqlite::Result<Node> {
    Ok(Node {
        id: row.get(0)?,
        connector_id: row.get(1)?,
        slot: row.get(2)?,
        pid: row.get(3)?,
        host: row.get(4)?,
        registered_at: row.get(5)?,
        first_heartbeat: row.get(6)?,
        last_heartbeat: row.get(7)?,
        report: from_json(&row.get::<_, String>(8)?),
    })
}

const INSTANCE_COLUMNS: &str = "id, project_id, name, bootstrap_servers, specification, broker_num, security, status, created_at";
const CONNECTOR_COLUMNS: &str =
    "id, instance_id, node_cnt, specification, spec_code, token, state, created_at";
const TASK_COLUMNS: &str =
    "id, instance_id, name, entity, desired, generation, restarting, created_at";
const JOB_COLUMNS: &str =
    "id, instance_id, name, params, status, step, steps, reason, created_at, updated_at";
const NODE_COLUMNS: &str =
    "id, connector_id, slot, pid, host, registered_at, first_heartbeat, last_heartbeat, report";

/// Maximum number of tasks per instance, as in the DMS console.
pub const MAX_TASKS: u64 = 18;

impl Store {
    /// Opens (or creates) `DIR/weir.db`, applies pending migrations and
    /// unlocks the secrets with the cipher that `load_key` returns.
    ///
    /// `load_key` learns whether the store already contains secrets sealed with
    /// some master key. The cipher must open the store's check value, else
    /// the store is not opened: a wrong master key is reported as such.
    pub fn open(
        data_dir: &Path,
        load_key: impl FnOnce(bool) -> anyhow::Result<Cipher>,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            anyhow::anyhow!("creating data directory {} failed: {e}", data_dir.display())
        })?;
        let path = data_dir.join("weir.db");
        let conn = Connection::open(&path)
            .map_err(|e| anyhow::anyhow!("opening store {} failed: {e}", path.display()))?;
        // The store contains secrets. SQLite gives its -wal and -shm files the
        // permissions of the database file.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
                |e| anyhow::anyhow!("restricting permissions of {} failed: {e}", path.display()),
            )?;
        }
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)?;
            tx.commit()?;
        }
        let check = secrets::check_value(&conn)?;
        let cipher = load_key(check.is_some())?;
        let store = Self {
            conn: Mutex::new(conn),
            cipher,
        };
        store.unlock(check.as_deref(), &path)?;
        Ok(store)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held leaves SQLite consistent (every change
        // is a transaction), so a poisoned lock is safe to reuse.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // Instances

    /// Inserts an instance unless one with its id exists. Returns whether it was inserted.
    pub fn insert_instance(&self, instance: &Instance) -> rusqlite::Result<bool> {
        let changed = self.conn().execute(
            &format!("INSERT OR IGNORE INTO instances ({INSTANCE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
            params![
                instance.id,
                instance.project_id,
                instance.name,
                instance.bootstrap_servers,
                instance.specification,
                instance.broker_num,
                json(&self.seal_security(&instance.security)),
                instance.status,
                instance.created_at
            ],
        )?;
        Ok(changed == 1)
    }

    pub fn instance(&self, project_id: &str, id: &str) -> rusqlite::Result<Option<Instance>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1 AND project_id = ?2"
                ),
                [id, project_id],
                instance_from_row,
            )
            .optional()?
            .map(|i| self.open_instance(i))
            .transpose()
    }

    pub fn instance_by_id(&self, id: &str) -> rusqlite::Result<Option<Instance>> {
        self.conn()
            .query_row(
                &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1"),
                [id],
                instance_from_row,
            )
            .optional()?
            .map(|i| self.open_instance(i))
            .transpose()
    }

    pub fn instances(&self, project_id: &str) -> rusqlite::Result<Vec<Instance>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE project_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([project_id], instance_from_row)?;
        rows.map(|row| self.open_instance(row?)).collect()
    }

    // Connectors and their jobs

    /// Creates a connector and its job, and marks the instance `EXTENDING`, in one transaction.
    pub fn begin_create_connector(&self, connector: &Connector, job: &Job) -> Result<(), Conflict> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM instances WHERE id = ?1",
                [&connector.instance_id],
                |r| r.get(0),
            )
            .optional()?;
        let status = status.ok_or_else(|| Conflict::NoInstance(connector.instance_id.clone()))?;
        if status != "RUNNING" {
            return Err(Conflict::InstanceBusy {
                id: connector.instance_id.clone(),
                status,
            });
        }
        let exists: i64 = tx.query_row(
            "SELECT COUNT(*) FROM connectors WHERE instance_id = ?1",
            [&connector.instance_id],
            |r| r.get(0),
        )?;
        if exists > 0 {
            return Err(Conflict::ConnectorExists(connector.instance_id.clone()));
        }
        tx.execute(
            &format!("INSERT INTO connectors ({CONNECTOR_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                connector.id,
                connector.instance_id,
                connector.node_cnt,
                connector.specification,
                connector.spec_code,
                self.seal(&connector.token),
                connector.state,
                connector.created_at
            ],
        )?;
        insert_job(&tx, job)?;
        tx.execute(
            "UPDATE instances SET status = 'EXTENDING' WHERE id = ?1",
            [&connector.instance_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Marks the connector of an instance `deleting`, the instance
    /// `CONNECTOR_DELETING`, and records the job, in one transaction.
    pub fn begin_delete_connector(&self, instance_id: &str, job: &Job) -> Result<(), Conflict> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let status: Option<String> = tx
            .query_row(
                "SELECT status FROM instances WHERE id = ?1",
                [instance_id],
                |r| r.get(0),
            )
            .optional()?;
        let status = status.ok_or_else(|| Conflict::NoInstance(instance_id.to_string()))?;
        if status != "RUNNING" {
            return Err(Conflict::InstanceBusy {
                id: instance_id.to_string(),
                status,
            });
        }
        let connectors: i64 = tx.query_row(
            "SELECT COUNT(*) FROM connectors WHERE instance_id = ?1",
            [instance_id],
            |r| r.get(0),
        )?;
        if connectors == 0 {
            return Err(Conflict::NoConnector(instance_id.to_string()));
        }
        let tasks: i64 = tx.query_row(
            "SELECT COUNT(*) FROM tasks WHERE instance_id = ?1",
            [instance_id],
            |r| r.get(0),
        )?;
        if tasks > 0 {
            return Err(Conflict::TasksRemain(
                instance_id.to_string(),
                tasks.max(0) as u64,
            ));
        }
        tx.execute(
            "UPDATE connectors SET state = 'deleting' WHERE instance_id = ?1",
            [instance_id],
        )?;
        insert_job(&tx, job)?;
        tx.execute(
            "UPDATE instances SET status = 'CONNECTOR_DELETING' WHERE id = ?1",
            [instance_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends a connector job: sets the job's final state, the connector's state
    /// (or removes the connector) and returns the instance to `RUNNING`.
    pub fn finish_connector_job(
        &self,
        job: &Job,
        connector_id: &str,
        connector_outcome: ConnectorOutcome,
    ) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        update_job(&tx, job)?;
        match connector_outcome {
            ConnectorOutcome::Running => {
                tx.execute(
                    "UPDATE connectors SET state = 'running' WHERE id = ?1",
                    [connector_id],
                )?;
            }
            ConnectorOutcome::Removed => {
                tx.execute("DELETE FROM nodes WHERE connector_id = ?1", [connector_id])?;
                tx.execute("DELETE FROM connectors WHERE id = ?1", [connector_id])?;
            }
        }
        tx.execute(
            "UPDATE instances SET status = 'RUNNING' WHERE id = ?1",
            [&job.instance_id],
        )?;
        tx.commit()
    }

    pub fn connector_of(&self, instance_id: &str) -> rusqlite::Result<Option<Connector>> {
        self.conn()
            .query_row(
                &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE instance_id = ?1"),
                [instance_id],
                connector_from_row,
            )
            .optional()?
            .map(|c| self.open_connector(c))
            .transpose()
    }

    pub fn connector(&self, id: &str) -> rusqlite::Result<Option<Connector>> {
        self.conn()
            .query_row(
                &format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE id = ?1"),
                [id],
                connector_from_row,
            )
            .optional()?
            .map(|c| self.open_connector(c))
            .transpose()
    }

    pub fn connectors(&self) -> rusqlite::Result<Vec<Connector>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([], connector_from_row)?;
        rows.map(|row| self.open_connector(row?)).collect()
    }

    // Tasks

    /// Inserts a task unless its name is taken or the instance is at its quota.
    pub fn insert_task(&self, task: &Task) -> Result<(), Conflict> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let count: i64 = tx.query_row(
            "SELECT COUNT(*) FROM tasks WHERE instance_id = ?1",
            [&task.instance_id],
            |r| r.get(0),
        )?;
        let same_name: i64 = tx.query_row(
            "SELECT COUNT(*) FROM tasks WHERE instance_id = ?1 AND name = ?2",
            [&task.instance_id, &task.name],
            |r| r.get(0),
        )?;
        if same_name > 0 {
            return Err(Conflict::DuplicateName(task.name.clone()));
        }
        if count.max(0) as u64 >= MAX_TASKS {
            return Err(Conflict::Quota(MAX_TASKS));
        }
        tx.execute(
            &format!("INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
            params![
                task.id,
                task.instance_id,
                task.name,
                self.seal_entity(&task.entity).to_string(),
                task.desired,
                task.generation as i64,
                task.restarting,
                task.created_at
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn task(&self, instance_id: &str, id: &str) -> rusqlite::Result<Option<Task>> {
        self.conn()
            .query_row(
                &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ?1 AND id = ?2"),
                [instance_id, id],
                task_from_row,
            )
            .optional()?
            .map(|t| self.open_task(t))
            .transpose()
    }

    pub fn tasks(&self, instance_id: &str) -> rusqlite::Result<Vec<Task>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE instance_id = ?1 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map([instance_id], task_from_row)?;
        rows.map(|row| self.open_task(row?)).collect()
    }

    /// Writes the desired state, generation, restart flag and entity of a task.
    pub fn update_task(&self, task: &Task) -> rusqlite::Result<()> {
        self.conn().execute(
            "UPDATE tasks SET entity = ?1, desired = ?2, generation = ?3, restarting = ?4 WHERE id = ?5",
            params![self.seal_entity(&task.entity).to_string(), task.desired, task.generation as i64, task.restarting, task.id],
        )?;
        Ok(())
    }

    /// Replaces the entity of a task only while its stored row still equals
    /// `task`, so that a concurrent API change is never overwritten. Returns
    /// whether it did.
    pub fn replace_task_entity(
        &self,
        task: &Task,
        entity: &serde_json::Value,
    ) -> rusqlite::Result<bool> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let row: Option<(String, String, i64)> = tx
            .query_row(
                "SELECT entity, desired, generation FROM tasks WHERE id = ?1",
                [&task.id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((stored, desired, generation)) = row else {
            return Ok(false);
        };
        // The stored entity is sealed with fresh nonces, so it is compared
        // after opening, not as text.
        let stored: serde_json::Value =
            serde_json::from_str(&stored).unwrap_or(serde_json::Value::Null);
        let unchanged = self.open_entity(&stored)? == task.entity
            && desired == task.desired
            && generation == task.generation as i64;
        if !unchanged {
            return Ok(false);
        }
        tx.execute(
            "UPDATE tasks SET entity = ?1 WHERE id = ?2",
            params![self.seal_entity(entity).to_string(), task.id],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Deletes a task and queues the removal of its consumer groups.
    pub fn delete_task(&self, task: &Task, groups: &[String]) -> rusqlite::Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM tasks WHERE id = ?1", [&task.id])?;
        for group in groups {
            tx.execute(
                "INSERT OR IGNORE INTO group_deletions (group_id, instance_id, created_at) VALUES (?1, ?2, ?3)",
                params![group, task.instance_id, now_ms()],
            )?;
        }
        tx.commit()
    }

    pub fn queue_group_deletion(&self, instance_id: &str, group: &str) -> rusqlite::Result<()> {
        self.conn().execute(
            "INSERT OR IGNORE INTO group_deletions (group_id, instance_id, created_at) VALUES (?1, ?2, ?3)",
            params![group, instance_id, now_ms()],
        )?;
        Ok(())
    }

    /// Returns queued consumer-group removals as (group, instance id, queued at).
    pub fn group_deletions(&self) -> rusqlite::Result<Vec<(String, String, i64)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT group_id, instance_id, created_at FROM group_deletions")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    pub fn remove_group_deletion(&self, group: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute("DELETE FROM group_deletions WHERE group_id = ?1", [group])?;
        Ok(())
    }

    // Jobs

    pub fn job(&self, instance_id: &str, id: &str) -> rusqlite::Result<Option<Job>> {
        self.conn()
            .query_row(
                &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE instance_id = ?1 AND id = ?2"),
                [instance_id, id],
                job_from_row,
            )
            .optional()
    }

    /// Returns the jobs of an instance created between `begin` and `end` (ms), oldest first.
    pub fn jobs(
        &self,
        instance_id: &str,
        begin: Option<i64>,
        end: Option<i64>,
    ) -> rusqlite::Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE instance_id = ?1 AND created_at >= ?2 AND created_at <= ?3 ORDER BY created_at, id"
        ))?;
        let rows = stmt.query_map(
            params![
                instance_id,
                begin.unwrap_or(i64::MIN),
                end.unwrap_or(i64::MAX)
            ],
            job_from_row,
        )?;
        rows.collect()
    }

    pub fn executing_jobs(&self) -> rusqlite::Result<Vec<Job>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE status IN ('CREATED', 'EXECUTING') ORDER BY created_at"
        ))?;
        let rows = stmt.query_map([], job_from_row)?;
        rows.collect()
    }

    pub fn update_job(&self, job: &Job) -> rusqlite::Result<()> {
        update_job(&self.conn(), job)
    }

    pub fn delete_job(&self, id: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute("DELETE FROM jobs WHERE id = ?1", [id])?;
        Ok(())
    }

    // Nodes

    /// Stores a node's registration, replacing an earlier one of the same node id.
    /// Returns false, and changes nothing, when the id belongs to a node of another
    /// connector.
    pub fn register_node(&self, node: &Node) -> rusqlite::Result<bool> {
        let changed = self.conn().execute(
            &format!(
                "INSERT INTO nodes ({NODE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT(id) DO UPDATE SET slot = excluded.slot, pid = excluded.pid, \
                 host = excluded.host, registered_at = excluded.registered_at, \
                 first_heartbeat = excluded.first_heartbeat, \
                 last_heartbeat = excluded.last_heartbeat, report = excluded.report \
                 WHERE nodes.connector_id = excluded.connector_id"
            ),
            params![
                node.id,
                node.connector_id,
                node.slot,
                node.pid,
                node.host,
                node.registered_at,
                node.first_heartbeat,
                node.last_heartbeat,
                json(&node.report)
            ],
        )?;
        Ok(changed == 1)
    }

    /// Stores a heartbeat. Returns false when the node is not registered with
    /// this connector.
    pub fn heartbeat(
        &self,
        connector_id: &str,
        node_id: &str,
        report: &crate::protocol::HeartbeatRequest,
    ) -> rusqlite::Result<bool> {
        let now = now_ms();
        let changed = self.conn().execute(
            "UPDATE nodes SET last_heartbeat = ?1, first_heartbeat = COALESCE(first_heartbeat, ?1), report = ?2 \
             WHERE id = ?3 AND connector_id = ?4",
            params![now, json(report), node_id, connector_id],
        )?;
        Ok(changed == 1)
    }

    pub fn nodes_of(&self, connector_id: &str) -> rusqlite::Result<Vec<Node>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {NODE_COLUMNS} FROM nodes WHERE connector_id = ?1 ORDER BY slot, registered_at"
        ))?;
        let rows = stmt.query_map([connector_id], node_from_row)?;
        rows.collect()
    }

    /// Removes a node of a connector. Returns false when the connector has no such node.
    pub fn remove_node(&self, connector_id: &str, node_id: &str) -> rusqlite::Result<bool> {
        let removed = self.conn().execute(
            "DELETE FROM nodes WHERE id = ?1 AND connector_id = ?2",
            [node_id, connector_id],
        )?;
        Ok(removed == 1)
    }
}

/// Fate of the connector when its job finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorOutcome {
    Running,
    Removed,
}

fn insert_job(conn: &Connection, job: &Job) -> rusqlite::Result<()> {
    conn.execute(
        &format!(
            "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        ),
        params![
            job.id,
            job.instance_id,
            job.name,
            job.params,
            job.status,
            job.step,
            json(&job.steps),
            job.reason,
            job.created_at,
            job.updated_at
        ],
    )?;
    Ok(())
}

fn update_job(conn: &Connection, job: &Job) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE jobs SET status = ?1, step = ?2, steps = ?3, reason = ?4, updated_at = ?5 WHERE id = ?6",
        params![job.status, job.step, json(&job.steps), job.reason, now_ms(), job.id],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto;

    fn instance(id: &str) -> Instance {
        Instance {
            id: id.to_string(),
            project_id: "p".to_string(),
            name: "k".to_string(),
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            specification: "100MB".to_string(),
            broker_num: 3,
            security: InstanceSecurity::default(),
            status: "RUNNING".to_string(),
            created_at: 1,
        }
    }

    fn connector(instance_id: &str) -> Connector {
        Connector {
            id: format!("c-{instance_id}"),
            instance_id: instance_id.to_string(),
            node_cnt: 2,
            specification: "100MB".to_string(),
            spec_code: None,
            token: "t".to_string(),
            state: "creating".to_string(),
            created_at: 1,
        }
    }

    fn job(id: &str, instance_id: &str) -> Job {
        Job {
            id: id.to_string(),
            instance_id: instance_id.to_string(),
            name: "createConnector".to_string(),
            params: "{}".to_string(),
            status: "EXECUTING".to_string(),
            step: 0,
            steps: Vec::new(),
            reason: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn create_connector_marks_instance_extending_and_rejects_second() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        assert!(store.insert_instance(&instance("i1")).expect("insert"));
        store
            .begin_create_connector(&connector("i1"), &job("j1", "i1"))
            .expect("create");
        let status = store
            .instance("p", "i1")
            .expect("read")
            .expect("exists")
            .status;
        assert_eq!(status, "EXTENDING");
        let busy = store.begin_create_connector(&connector("i1"), &job("j2", "i1"));
        assert!(
            matches!(busy, Err(Conflict::InstanceBusy { .. })),
            "{busy:?}"
        );
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cipher = Cipher::ephemeral();
        {
            let store = Store::open(dir.path(), |_| Ok(cipher.clone())).expect("open");
            store.insert_instance(&instance("i1")).expect("insert");
            store
                .begin_create_connector(&connector("i1"), &job("j1", "i1"))
                .expect("create");
        }
        let store = Store::open(dir.path(), |has_secrets| {
            assert!(has_secrets);
            Ok(cipher)
        })
        .expect("reopen");
        let jobs = store.executing_jobs().expect("jobs");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].id, "j1");
        assert!(store.connector_of("i1").expect("read").is_some());
    }

    #[test]
    fn corrupted_secret_error_names_the_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        let mut with_password = instance("i1");
        with_password.security.password = Some("secret".to_string());
        store.insert_instance(&with_password).expect("insert");
        let security = serde_json::json!({"password": "sealed:v1:AAAA"}).to_string();
        store
            .conn()
            .execute(
                "UPDATE instances SET security = ?1 WHERE id = 'i1'",
                [security],
            )
            .expect("corrupt");
        let error = store.instance("p", "i1").expect_err("corrupted secret");
        assert!(error.to_string().contains("instance i1"), "{error}");
    }

    #[test]
    fn duplicate_task_name_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        let task = Task {
            id: "t1".to_string(),
            instance_id: "i1".to_string(),
            name: "dump-1".to_string(),
            entity: serde_json::json!({}),
            desired: "RUNNING".to_string(),
            generation: 0,
            restarting: false,
            created_at: 1,
        };
        store.insert_task(&task).expect("insert");
        let again = Task {
            id: "t2".to_string(),
            ..task
        };
        assert!(matches!(
            store.insert_task(&again),
            Err(Conflict::DuplicateName(_))
        ));
    }

    #[test]
    fn replace_task_entity_skips_changed_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        let task = Task {
            id: "t1".to_string(),
            instance_id: "i1".to_string(),
            name: "dump-1".to_string(),
            entity: serde_json::json!({"a": 1}),
            desired: "RUNNING".to_string(),
            generation: 0,
            restarting: false,
            created_at: 1,
        };
        store.insert_task(&task).expect("insert");
        let paused = Task {
            desired: "PAUSED".to_string(),
            ..task.clone()
        };
        store.update_task(&paused).expect("pause");
        let replaced = store
            .replace_task_entity(&task, &serde_json::json!({"a": 2}))
            .expect("replace");
        assert!(!replaced, "a row changed since it was read must stay");
        let replaced = store
            .replace_task_entity(&paused, &serde_json::json!({"a": 2}))
            .expect("replace");
        assert!(replaced);
        let stored = store.task("i1", "t1").expect("read").expect("exists");
        assert_eq!(stored.entity, serde_json::json!({"a": 2}));
        assert_eq!(stored.desired, "PAUSED");
    }

    #[test]
    fn other_project_does_not_see_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        store.insert_instance(&instance("i1")).expect("insert");
        assert!(store.instance("other", "i1").expect("read").is_none());
        assert!(store.instances("other").expect("list").is_empty());
    }

    fn raw_text(dir: &Path, sql: &str) -> String {
        let conn = Connection::open(dir.join("weir.db")).expect("raw open");
        conn.query_row(sql, [], |r| r.get(0)).expect("raw read")
    }

    fn secret_instance() -> Instance {
        Instance {
            security: InstanceSecurity {
                security_protocol: Some("SASL_PLAINTEXT".to_string()),
                sasl_mechanism: Some("SCRAM-SHA-512".to_string()),
                username: Some("u".to_string()),
                password: Some("instance-password".to_string()),
            },
            ..instance("i1")
        }
    }

    fn secret_task() -> Task {
        Task {
            id: "t1".to_string(),
            instance_id: "i1".to_string(),
            name: "dump-1".to_string(),
            entity: serde_json::json!({
                "sink_task": {"access_key": "obs-ak", "secret_key": "obs-sk", "obs_path": "p"},
                "source_task": {}
            }),
            desired: "RUNNING".to_string(),
            generation: 0,
            restarting: false,
            created_at: 1,
        }
    }

    #[test]
    fn secrets_are_sealed_at_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        store
            .insert_key("AK1", "key-secret", "p", false, "")
            .expect("key");
        store.insert_instance(&secret_instance()).expect("instance");
        store
            .begin_create_connector(
                &Connector {
                    token: "node-token".to_string(),
                    ..connector("i1")
                },
                &job("j1", "i1"),
            )
            .expect("connector");
        store.insert_task(&secret_task()).expect("task");

        let db = std::fs::read(dir.path().join("weir.db")).expect("read db");
        let wal = std::fs::read(dir.path().join("weir.db-wal")).unwrap_or_default();
        for secret in [
            "key-secret",
            "instance-password",
            "node-token",
            "obs-ak",
            "obs-sk",
        ] {
            let needle = secret.as_bytes();
            let found = [&db, &wal]
                .iter()
                .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle));
            assert!(!found, "{secret} is stored in plain text");
        }

        let key = store.find_key("AK1").expect("find").expect("exists");
        assert_eq!(key.secret_key, "key-secret");
        let read = store.instance("p", "i1").expect("read").expect("exists");
        assert_eq!(read.security.password.as_deref(), Some("instance-password"));
        let task = store.task("i1", "t1").expect("read").expect("exists");
        assert_eq!(task.entity["sink_task"]["secret_key"], "obs-sk");
        assert_eq!(task.entity["sink_task"]["obs_path"], "p");
        let connector = store.connector_of("i1").expect("read").expect("exists");
        assert_eq!(connector.token, "node-token");
    }

    #[test]
    fn wrong_master_key_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
            store
                .insert_key("AK1", "key-secret", "p", true, "")
                .expect("key");
        }
        let error = Store::open(dir.path(), |_| Ok(Cipher::ephemeral()))
            .err()
            .expect("a wrong key must fail");
        let message = error.to_string();
        assert!(message.contains("does not match"), "{message}");
        assert!(message.contains("not damaged"), "{message}");
    }

    #[test]
    fn plain_text_store_is_sealed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cipher = Cipher::ephemeral();
        {
            let store = Store::open(dir.path(), |_| Ok(cipher.clone())).expect("open");
            store.insert_task(&secret_task()).expect("task");
        }
        // Simulate a store written before encryption: plain-text values and
        // no check value.
        {
            let conn = Connection::open(dir.path().join("weir.db")).expect("raw open");
            conn.execute(
                "INSERT INTO keys (access_key, secret_key, project_id, created_at) VALUES ('AK0', 'legacy-secret', 'p', 1)",
                [],
            )
            .expect("legacy key");
            conn.execute(
                "UPDATE tasks SET entity = '{\"sink_task\":{\"secret_key\":\"legacy-sk\"}}'",
                [],
            )
            .expect("legacy task");
            conn.execute("DELETE FROM meta", []).expect("drop check");
        }
        let store = Store::open(dir.path(), |has_secrets| {
            assert!(!has_secrets);
            Ok(cipher.clone())
        })
        .expect("reopen");
        let secret = raw_text(
            dir.path(),
            "SELECT secret_key FROM keys WHERE access_key = 'AK0'",
        );
        assert!(crypto::is_sealed(&secret), "{secret}");
        let entity = raw_text(dir.path(), "SELECT entity FROM tasks");
        assert!(!entity.contains("legacy-sk"), "{entity}");
        let key = store.find_key("AK0").expect("find").expect("exists");
        assert_eq!(key.secret_key, "legacy-secret");
        let task = store.task("i1", "t1").expect("read").expect("exists");
        assert_eq!(task.entity["sink_task"]["secret_key"], "legacy-sk");
    }

    #[test]
    fn last_admin_key_cannot_be_revoked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), |_| Ok(Cipher::ephemeral())).expect("open");
        store
            .insert_key("ADMIN", "s1", "p", true, "")
            .expect("admin");
        store
            .insert_key("USER", "s2", "q", false, "")
            .expect("user");
        assert!(matches!(
            store.revoke_key("ADMIN"),
            Err(RevokeError::LastAdmin(_))
        ));
        assert!(matches!(
            store.revoke_key("NOPE"),
            Err(RevokeError::NotFound(_))
        ));
        store.revoke_key("USER").expect("revoke user");
        assert!(store.find_key("USER").expect("find").is_none());
        assert_eq!(store.keys(Some("q")).expect("list").len(), 0);
        assert_eq!(store.keys(None).expect("list").len(), 1);
    }
}
