//! Schemas of response bodies, as `render.rs`, `routes.rs`, `admin.rs` and
//! the node protocol build them. A test in `tests.rs` sends a request to
//! every endpoint and checks the response against these schemas, with every
//! field required to be declared, so a response field cannot be added
//! without its schema.

use serde_json::{Map, Value, json};

use super::schema_ref;

/// Returns the response schemas of `components/schemas`.
pub fn components() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error());
    schemas.insert("Instance".into(), instance_schema());
    schemas.insert("ConnectorNode".into(), connector_node());
    schemas.insert("InstanceList".into(), instance_list_schema());
    schemas.insert("ConnectorCreated".into(), connector_created_schema());
    schemas.insert("ConnectorDeleted".into(), job_id_only());
    schemas.insert("ConnectorResources".into(), connector_resources_schema());
    schemas.insert("Task".into(), task_schema());
    schemas.insert("SinkTaskResponse".into(), sink_task_response());
    schemas.insert("SourceTaskResponse".into(), source_task_response());
    schemas.insert("KeyCreated".into(), key_created_schema());
    schemas.insert("KeyInfo".into(), key_info());
    schemas.insert(
        "KeyList".into(),
        object(&[
            ("total", unsigned()),
            ("keys", array(schema_ref("KeyInfo"))),
        ]),
    );
    schemas.insert("TaskList".into(), task_list_schema());
    schemas.insert("BackgroundTask".into(), job());
    schemas.insert("BackgroundTaskList".into(), job_list_schema());
    schemas.insert("BackgroundTaskProgress".into(), job_progress_schema());
    schemas.insert("InstanceAdded".into(), object(&[("instance_id", string())]));
    schemas.insert(
        "NodeToken".into(),
        object(&[("connector_id", string()), ("token", string())]),
    );
    schemas.insert(
        "NodeRegistered".into(),
        object(&[("node_id", string()), ("heartbeat_interval_ms", unsigned())]),
    );
    schemas.insert("NodeAssignment".into(), node_assignment_schema());
    schemas.insert("NodeTask".into(), node_task());
    schemas.insert("NodeReplication".into(), node_replication());
    schemas.insert("NodeSink".into(), node_sink());
    schemas.insert(
        "EmptyObject".into(),
        json!({ "type": "object", "maxProperties": 0 }),
    );
    schemas
}

pub fn instance() -> Value {
    schema_ref("Instance")
}

pub fn instance_list() -> Value {
    schema_ref("InstanceList")
}

pub fn connector_created() -> Value {
    schema_ref("ConnectorCreated")
}

pub fn connector_deleted() -> Value {
    schema_ref("ConnectorDeleted")
}

pub fn connector_resources() -> Value {
    schema_ref("ConnectorResources")
}

pub fn task() -> Value {
    schema_ref("Task")
}

pub fn task_list() -> Value {
    schema_ref("TaskList")
}

pub fn job_list() -> Value {
    schema_ref("BackgroundTaskList")
}

pub fn job_progress() -> Value {
    schema_ref("BackgroundTaskProgress")
}

pub fn instance_added() -> Value {
    schema_ref("InstanceAdded")
}

pub fn node_token() -> Value {
    schema_ref("NodeToken")
}

pub fn node_registered() -> Value {
    schema_ref("NodeRegistered")
}

pub fn node_assignment() -> Value {
    schema_ref("NodeAssignment")
}

pub fn key_created() -> Value {
    schema_ref("KeyCreated")
}

pub fn key_list() -> Value {
    schema_ref("KeyList")
}

pub fn empty_object() -> Value {
    schema_ref("EmptyObject")
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn boolean() -> Value {
    json!({ "type": "boolean" })
}

fn integer() -> Value {
    json!({ "type": "integer" })
}

fn unsigned() -> Value {
    json!({ "type": "integer", "minimum": 0 })
}

fn one_of(values: &[&str]) -> Value {
    json!({ "type": "string", "enum": values })
}

fn array(items: Value) -> Value {
    json!({ "type": "array", "items": items })
}

/// Builds an object schema whose properties are all required.
fn object(properties: &[(&str, Value)]) -> Value {
    let required: Vec<&str> = properties.iter().map(|(name, _)| *name).collect();
    let properties: Map<String, Value> = properties
        .iter()
        .map(|(name, schema)| ((*name).to_string(), schema.clone()))
        .collect();
    json!({ "type": "object", "required": required, "properties": properties })
}

fn error() -> Value {
    let mut schema = object(&[
        (
            "error_code",
            json!({ "type": "string", "pattern": "^[A-Z]+\\.[0-9]+$", "description": "DMS.xxxxxxxx, APIGW.xxxx for signature errors, WEIR.xxxxxxxx for node errors." }),
        ),
        ("error_msg", json!({ "type": "string", "minLength": 1 })),
    ]);
    schema["description"] = Value::from("Body of every 4xx and 5xx response.");
    schema
}

fn instance_schema() -> Value {
    let mut schema = object(&[
        ("instance_id", string()),
        ("name", string()),
        ("engine", one_of(&["kafka"])),
        ("engine_version", string()),
        ("specification", string()),
        (
            "status",
            json!({ "type": "string", "description": "RUNNING, EXTENDING while Smart Connect is being enabled, CONNECTOR_DELETING while it is being disabled." }),
        ),
        ("type", one_of(&["cluster"])),
        ("charging_mode", integer()),
        ("project_id", string()),
        ("connect_address", string()),
        ("node_num", unsigned()),
        ("broker_num", unsigned()),
        (
            "created_at",
            json!({ "type": "string", "description": "Epoch milliseconds, as a string." }),
        ),
        ("connector_enable", boolean()),
        (
            "connector_id",
            json!({ "type": "string", "description": "Empty when Smart Connect is disabled." }),
        ),
        ("connector_node_num", unsigned()),
        ("connector_live_node_num", unsigned()),
        ("connector_nodes", array(schema_ref("ConnectorNode"))),
    ]);
    schema["description"] = Value::from(
        "The ShowInstance fields that Smart Connect uses, plus connector_live_node_num and connector_nodes.",
    );
    schema
}

fn connector_node() -> Value {
    object(&[
        ("node_id", string()),
        ("status", one_of(&["RUNNING", "UNREACHABLE"])),
        ("host", string()),
        ("pid", unsigned()),
        ("slot", json!({ "type": ["integer", "null"], "minimum": 0 })),
        ("registered_at", integer()),
        ("last_heartbeat", integer()),
        ("rss_bytes", unsigned()),
        ("buffered_bytes", unsigned()),
    ])
}

fn instance_list_schema() -> Value {
    object(&[
        ("instances", array(schema_ref("Instance"))),
        ("instance_num", unsigned()),
    ])
}

fn connector_created_schema() -> Value {
    object(&[("job_id", string()), ("connector_id", string())])
}

fn job_id_only() -> Value {
    object(&[("job_id", string())])
}

fn connector_resources_schema() -> Value {
    object(&[("soldOut", boolean())])
}

fn task_schema() -> Value {
    let mut schema = object(&[
        ("id", string()),
        ("task_name", string()),
        ("source_type", string()),
        ("source_task", schema_ref("SourceTaskResponse")),
        ("sink_type", string()),
        ("sink_task", schema_ref("SinkTaskResponse")),
        (
            "status",
            one_of(&["CREATING", "RUNNING", "PAUSED", "WAITING", "RESTARTING"]),
        ),
        (
            "health",
            json!({ "type": "string", "enum": ["HEALTHY", "FAILING", "UNKNOWN"], "description": "Whether the nodes running the task reach Kafka and the object store." }),
        ),
        (
            "create_time",
            json!({ "type": "integer", "description": "Epoch milliseconds." }),
        ),
        (
            "generation",
            json!({ "type": "integer", "minimum": 0, "description": "Number of restarts; each one resets the progress." }),
        ),
    ]);
    let properties = &mut schema["properties"];
    properties["topics"] = json!({ "type": "string", "description": "Comma-joined topic names; absent for a regex task." });
    properties["topics_regex"] = string();
    properties["error_msg"] =
        json!({ "type": "string", "description": "Latest error of a FAILING task." });
    schema
}

fn sink_task_response() -> Value {
    let fields = [
        ("consumer_strategy", string()),
        ("destination_file_type", string()),
        ("deliver_time_interval", integer()),
        ("obs_bucket_name", string()),
        ("obs_path", string()),
        ("partition_format", string()),
        ("record_delimiter", string()),
        ("store_keys", boolean()),
        ("kv_delimiter", string()),
        ("flush_size", integer()),
        ("obs_part_size", integer()),
        ("timezone", string()),
        ("obs_region", string()),
        ("obs_path_style", boolean()),
        ("obs_endpoint", string()),
        ("agency_name", string()),
        ("schema_generator_class", string()),
        ("partitioner_class", string()),
        ("value_converter", string()),
        ("key_converter", string()),
    ];
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(name, schema)| (name.to_string(), schema))
        .collect();
    json!({
        "type": "object",
        "description": "The stored sink_task without access_key and secret_key, or {} for a task without a sink.",
        "properties": properties,
    })
}

fn source_task_response() -> Value {
    let fields = [
        ("current_cluster_name", string()),
        ("cluster_name", string()),
        ("instance_id", string()),
        ("bootstrap_servers", string()),
        ("security_protocol", string()),
        ("sasl_mechanism", string()),
        ("user_name", string()),
        ("direction", string()),
        ("sync_consumer_offsets_enabled", boolean()),
        ("replication_factor", integer()),
        ("task_num", integer()),
        ("rename_topic_enabled", boolean()),
        ("provenance_header_enabled", boolean()),
        ("consumer_strategy", string()),
        ("compression_type", string()),
        ("topics_mapping", string()),
    ];
    let properties: Map<String, Value> = fields
        .into_iter()
        .map(|(name, schema)| (name.to_string(), schema))
        .collect();
    json!({
        "type": "object",
        "description": "The stored source_task without password, or {} for a task without a source.",
        "properties": properties,
    })
}

fn key_info() -> Value {
    object(&[
        ("access_key", string()),
        ("project_id", string()),
        ("admin", boolean()),
        ("description", string()),
        (
            "create_time",
            json!({ "type": "integer", "description": "Epoch milliseconds." }),
        ),
    ])
}

fn key_created_schema() -> Value {
    let mut schema = key_info();
    schema["properties"]["secret_key"] = string();
    if let Some(required) = schema["required"].as_array_mut() {
        required.push(Value::from("secret_key"));
    }
    schema
}

fn task_list_schema() -> Value {
    object(&[
        ("tasks", array(schema_ref("Task"))),
        ("total_number", unsigned()),
        ("max_tasks", unsigned()),
        ("quota_tasks", unsigned()),
    ])
}

fn job() -> Value {
    object(&[
        ("id", string()),
        ("name", string()),
        ("user_name", string()),
        ("user_id", string()),
        (
            "params",
            json!({ "type": "string", "description": "JSON-encoded parameters." }),
        ),
        (
            "status",
            one_of(&[
                "CREATED",
                "EXECUTING",
                "SUCCESS",
                "FAILED",
                "DELETED",
                "CANCELLED",
            ]),
        ),
        (
            "created_at",
            json!({ "type": "string", "description": "ISO 8601, such as 2020-06-15T08:55:53.606Z." }),
        ),
        ("updated_at", string()),
        ("reason", string()),
    ])
}

fn job_list_schema() -> Value {
    object(&[
        (
            "task_count",
            json!({ "type": "string", "pattern": "^[0-9]+$", "description": "Number of matching background tasks, as a string." }),
        ),
        ("tasks", array(schema_ref("BackgroundTask"))),
    ])
}

fn job_progress_schema() -> Value {
    let step = object(&[
        ("name", string()),
        (
            "statue",
            one_of(&["COMPLETED", "IN_PROGRESS", "FAILED", "WAITING"]),
        ),
        ("start_time", integer()),
        ("end_time", integer()),
    ]);
    object(&[
        (
            "progress_percentage",
            json!({ "type": "integer", "minimum": 0, "maximum": 100 }),
        ),
        ("remain_time", integer()),
        ("step_list", array(step)),
    ])
}

fn node_assignment_schema() -> Value {
    object(&[
        ("stop", boolean()),
        ("bootstrap_servers", string()),
        (
            "kafka",
            json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        ),
        ("session_timeout_ms", unsigned()),
        ("read_bytes_per_second", unsigned()),
        ("memory_budget_bytes", unsigned()),
        ("topic_refresh_interval_ms", unsigned()),
        ("tasks", array(schema_ref("NodeTask"))),
        ("replications", array(schema_ref("NodeReplication"))),
    ])
}

fn node_replication() -> Value {
    let kafka = json!({ "type": "object", "additionalProperties": { "type": "string" } });
    let cluster = object(&[
        ("alias", string()),
        ("bootstrap_servers", string()),
        ("kafka", kafka),
    ]);
    let flow = object(&[
        ("direction", one_of(&["pull", "push"])),
        ("source", cluster.clone()),
        ("target", cluster),
        ("rename_prefix", json!({ "type": ["string", "null"] })),
        (
            "topics_mapping",
            json!({ "type": "object", "additionalProperties": { "type": "string" } }),
        ),
        ("workers", unsigned()),
        ("offset_sync", boolean()),
    ]);
    object(&[
        ("task_id", string()),
        ("task_name", string()),
        ("generation", unsigned()),
        ("topics", array(string())),
        ("topics_regex", json!({ "type": ["string", "null"] })),
        ("flows", array(flow)),
        ("consumer_strategy", string()),
        ("compression_type", string()),
        ("provenance_header", boolean()),
        ("sync_consumer_offsets", boolean()),
        ("replication_factor", json!({ "type": ["integer", "null"] })),
        ("refresh_interval_ms", unsigned()),
    ])
}

fn node_task() -> Value {
    object(&[
        ("task_id", string()),
        ("task_name", string()),
        ("generation", unsigned()),
        ("topics", array(string())),
        ("topics_regex", json!({ "type": ["string", "null"] })),
        ("sink", schema_ref("NodeSink")),
    ])
}

fn node_sink() -> Value {
    let nullable = || json!({ "type": ["string", "null"] });
    object(&[
        ("consumer_strategy", string()),
        ("bucket", string()),
        ("obs_path", string()),
        ("partition_format", string()),
        ("record_delimiter", string()),
        ("store_keys", boolean()),
        ("kv_delimiter", string()),
        ("deliver_time_interval_s", unsigned()),
        ("flush_size", unsigned()),
        ("part_size_bytes", unsigned()),
        ("timezone", string()),
        ("endpoint", nullable()),
        ("region", string()),
        ("path_style", boolean()),
        ("access_key", nullable()),
        ("secret_key", nullable()),
        ("local_root", nullable()),
        ("source_id", string()),
    ])
}
