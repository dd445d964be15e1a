//! Messages between the server and its nodes (`/internal/v1/...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Sent by a node when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Set by the server's supervisor for the nodes it starts; absent for nodes
    /// started by hand, which get a fresh id.
    pub node_id: Option<String>,
    pub slot: Option<u32>,
    pub pid: u32,
    pub host: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub node_id: String,
    pub heartbeat_interval_ms: u64,
}

/// Report of a task runner on a node.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TaskReport {
    pub task_id: String,
    pub generation: u64,
    /// `starting`, `running`, `failing` or `stopped`.
    pub state: String,
    /// The latest error while `failing`.
    pub error: Option<String>,
    pub assigned_partitions: u32,
    pub records_read: u64,
    pub bytes_read: u64,
    pub records_written: u64,
    pub bytes_written: u64,
    pub objects_written: u64,
    pub objects_adopted: u64,
    pub upload_retries: u64,
    pub open_chunk_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub tasks: Vec<TaskReport>,
    pub rss_bytes: u64,
    pub buffered_bytes: u64,
}

/// Default period of the topic check of a task runner, in milliseconds.
pub const DEFAULT_TOPIC_REFRESH_INTERVAL_MS: u64 = 15_000;

fn default_topic_refresh_interval_ms() -> u64 {
    DEFAULT_TOPIC_REFRESH_INTERVAL_MS
}

/// The work the server assigns to every node of a connector.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// The connector is being disabled: stop every task and exit.
    pub stop: bool,
    pub bootstrap_servers: String,
    /// librdkafka settings for the instance: security and operator extras.
    pub kafka: BTreeMap<String, String>,
    pub session_timeout_ms: u64,
    /// Period of the topic check of each task runner, in milliseconds.
    #[serde(default = "default_topic_refresh_interval_ms")]
    pub topic_refresh_interval_ms: u64,
    /// This node's share of the connector's bandwidth, in bytes per second.
    pub read_bytes_per_second: u64,
    pub memory_budget_bytes: u64,
    pub tasks: Vec<TaskSpec>,
    /// Replication tasks, each with the flows this node runs.
    #[serde(default)]
    pub replications: Vec<ReplicationSpec>,
}

/// One `KAFKA_REPLICATOR_SOURCE` task as a node runs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReplicationSpec {
    pub task_id: String,
    pub task_name: String,
    pub generation: u64,
    pub topics: Vec<String>,
    pub topics_regex: Option<String>,
    /// One flow per direction: `pull`, `push`, or both for `two-way`.
    pub flows: Vec<FlowSpec>,
    /// `latest` or `earliest`, for partitions without stored progress.
    pub consumer_strategy: String,
    /// librdkafka `compression.type` of the target producer.
    pub compression_type: String,
    /// Add and honour the provenance header, so records never loop.
    pub provenance_header: bool,
    /// Translate committed offsets of source consumer groups to the target.
    pub sync_consumer_offsets: bool,
    /// Replication factor of target topics that Weir creates; `None` takes
    /// the target broker's default.
    pub replication_factor: Option<i32>,
    /// Interval of the topic list refresh and of offset translation, in ms.
    pub refresh_interval_ms: u64,
}

/// One direction of a replication task: from `source` into `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowSpec {
    /// `pull` (peer into this instance) or `push` (this instance into the peer).
    pub direction: String,
    pub source: ClusterSpec,
    pub target: ClusterSpec,
    /// Prefix of target topic names (`ALIAS.`) when renaming is enabled.
    pub rename_prefix: Option<String>,
    /// Explicit source-to-target topic names.
    pub topics_mapping: BTreeMap<String, String>,
    /// Consumers of this flow that this node runs.
    pub workers: u32,
    /// This node translates the flow's consumer offsets (one node per flow).
    #[serde(default)]
    pub offset_sync: bool,
}

/// A Kafka cluster at one end of a flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterSpec {
    /// Cluster alias, written to the provenance header.
    pub alias: String,
    pub bootstrap_servers: String,
    /// librdkafka settings: security and operator extras.
    pub kafka: BTreeMap<String, String>,
}

/// One task as a node runs it. A change of `generation` means the task was
/// restarted and its progress reset.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSpec {
    pub task_id: String,
    pub task_name: String,
    pub generation: u64,
    pub topics: Vec<String>,
    pub topics_regex: Option<String>,
    pub sink: ObsSinkSpec,
}

/// The resolved `sink_task` of an `OBS_SINK` task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ObsSinkSpec {
    pub consumer_strategy: String,
    pub bucket: String,
    pub obs_path: String,
    pub partition_format: String,
    pub record_delimiter: String,
    pub store_keys: bool,
    pub kv_delimiter: String,
    pub deliver_time_interval_s: u64,
    pub flush_size: u64,
    pub part_size_bytes: u64,
    pub timezone: String,
    /// S3 endpoint; `None` selects the server's local bucket directory.
    pub endpoint: Option<String>,
    pub region: String,
    pub path_style: bool,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// Root of the local buckets, used when `endpoint` is `None`.
    pub local_root: Option<String>,
    /// ID of the instance whose records the task writes. Every object carries it,
    /// and a writer adopts only objects of its own instance.
    #[serde(default)]
    pub source_id: String,
}
