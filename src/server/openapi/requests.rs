//! Schemas of request bodies and query parameters.
//!
//! Each schema accepts at least what the checks in `validate.rs`, the
//! handlers in `routes.rs` and serde in `internal.rs` accept: enums, ranges and
//! patterns come from the constants those checks use, and `null` is allowed
//! wherever the checks read it as an absent field. Some rules have no
//! schema form, such as "exactly one of `topics` and `topics_regex`"; the
//! descriptions state them, and the server answers 400 when they are broken.

use serde_json::{Map, Value, json};

use super::{or_null, query_parameter, schema_ref};
use crate::server::keys::PROJECT_ID_PATTERN;
use crate::server::source_task::{
    CLUSTER_ALIAS_PATTERN, COMPRESSION_TYPES, DIRECTIONS, MAX_TASK_NUM, SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
};
use crate::server::validate::{
    BUCKET_NAME_PATTERN, CONSUMER_STRATEGIES, DELIVER_TIME_INTERVAL_S, DESTINATION_FILE_TYPES,
    FLUSH_SIZE, MAX_KV_DELIMITER_LEN, MAX_NODES, MAX_OBS_PATH_LEN, MAX_TOPICS_REGEX_LEN, MIN_NODES,
    OBS_PART_SIZE, PARTITION_FORMATS, RECORD_DELIMITERS, SINK_TYPES, SOURCE_TYPES,
    TASK_NAME_PATTERN,
};

/// Pattern of a numeric string that `validate::opt_int` parses: an optional
/// sign and digits, with surrounding white space. An empty string is absent.
const NUMERIC_STRING: &str = r"^\s*([+-]?[0-9]+)?\s*$";

/// Returns the request schemas of `components/schemas`.
pub fn components() -> Map<String, Value> {
    let mut schemas = Map::new();
    schemas.insert("CreateConnectorRequest".into(), create_connector());
    schemas.insert("CreateTaskRequest".into(), task(true));
    schemas.insert("ModifyTaskRequest".into(), task(false));
    schemas.insert("SinkTaskRequest".into(), sink_task());
    schemas.insert("SourceTaskRequest".into(), source_task());
    schemas.insert("ValidateRequest".into(), validate());
    schemas.insert("CreateKeyRequest".into(), create_key());
    schemas.insert("AddInstanceRequest".into(), add_instance());
    schemas.insert("RegisterNodeRequest".into(), register_node());
    schemas.insert("HeartbeatRequest".into(), heartbeat());
    schemas.insert("TaskReport".into(), task_report());
    schemas
}

pub fn connector_request() -> Value {
    schema_ref("CreateConnectorRequest")
}

pub fn task_request() -> Value {
    schema_ref("CreateTaskRequest")
}

pub fn task_modify_request() -> Value {
    schema_ref("ModifyTaskRequest")
}

pub fn add_instance_request() -> Value {
    schema_ref("AddInstanceRequest")
}

pub fn validate_request() -> Value {
    schema_ref("ValidateRequest")
}

pub fn create_key_request() -> Value {
    schema_ref("CreateKeyRequest")
}

pub fn key_list_query() -> Vec<Value> {
    vec![query_parameter(
        "project_id",
        false,
        json!({ "type": "string", "pattern": PROJECT_ID_PATTERN }),
        "Only the keys of this project. Default: every project.",
    )]
}

pub fn register_request() -> Value {
    schema_ref("RegisterNodeRequest")
}

pub fn heartbeat_request() -> Value {
    schema_ref("HeartbeatRequest")
}

/// Schema of an optional string field.
fn string() -> Value {
    or_null(json!({ "type": "string" }))
}

/// Schema of an optional boolean field.
fn boolean() -> Value {
    or_null(json!({ "type": "boolean" }))
}

/// Schema of an optional enum field.
fn one_of(values: &[&str]) -> Value {
    or_null(json!({ "type": "string", "enum": values }))
}

/// Schema of an optional integer field read by `validate::opt_int`: a JSON
/// integer in `min..=max`, or a numeric string (checked against the range
/// after parsing).
fn integer(min: i64, max: i64) -> Value {
    json!({
        "anyOf": [
            { "type": "integer", "minimum": min, "maximum": max },
            { "type": "string", "pattern": NUMERIC_STRING },
            { "type": "null" },
        ]
    })
}

fn with_description(mut schema: Value, description: &str) -> Value {
    schema["description"] = Value::from(description);
    schema
}

fn create_connector() -> Value {
    json!({
        "type": "object",
        "description": "Every field is optional; an empty body is {}.",
        "properties": {
            "specification": with_description(string(), "Bandwidth specification: 100MB, 300MB, 600MB, 1200MB or one of the server configuration. Default: the instance's."),
            "node_cnt": with_description(integer(MIN_NODES, MAX_NODES), "Number of connector nodes, a number or a numeric string. Default 2."),
            "spec_code": with_description(string(), "Node profile, such as kafka.c3.mini.connector."),
        },
    })
}

fn task(create: bool) -> Value {
    let mut schema = json!({
        "type": "object",
        "description": "Give exactly one of topics and topics_regex. A dump task has sink_type OBS_SINK with sink_task and source_type NONE; a replication task has source_type KAFKA_REPLICATOR_SOURCE with source_task and sink_type NONE.",
        "properties": {
            "task_name": {
                "type": "string",
                "pattern": TASK_NAME_PATTERN,
                "description": "Name, unique on the instance.",
            },
            "start_later": with_description(boolean(), "Create the task WAITING instead of RUNNING."),
            "topics": with_description(string(), "Comma-separated topic names, at most 20, each of 1 to 249 characters from letters, digits, '.', '_' and '-'."),
            "topics_regex": with_description(
                or_null(json!({ "type": "string", "maxLength": MAX_TOPICS_REGEX_LEN })),
                "Regex of the topic names. Not \".*\", and no repetition inside another one, such as (a+)+."
            ),
            "source_type": one_of(&SOURCE_TYPES),
            "source_task": or_null(schema_ref("SourceTaskRequest")),
            "sink_type": one_of(&SINK_TYPES),
            "sink_task": or_null(schema_ref("SinkTaskRequest")),
        },
    });
    if create {
        schema["required"] = json!(["task_name"]);
    } else {
        schema["description"] = Value::from(
            "A full task entity, as ShowConnectorTask returns it; the fields of CreateTaskRequest count and the others are ignored. task_name may be left out.",
        );
    }
    schema
}

fn sink_task() -> Value {
    let (interval_min, interval_max) = DELIVER_TIME_INTERVAL_S;
    json!({
        "type": "object",
        "required": ["obs_bucket_name"],
        "properties": {
            "consumer_strategy": with_description(one_of(&CONSUMER_STRATEGIES), "Where a new consumer group starts. Default latest."),
            "destination_file_type": one_of(&DESTINATION_FILE_TYPES),
            "deliver_time_interval": with_description(integer(interval_min, interval_max), "Seconds between uploads of a partition's records. Default 300."),
            "access_key": with_description(string(), "Access key of the bucket; give it with secret_key. Never returned."),
            "secret_key": with_description(string(), "Secret key of the bucket. Never returned."),
            "obs_bucket_name": {
                "type": "string",
                "pattern": BUCKET_NAME_PATTERN,
                "description": "Destination bucket; without \"..\".",
            },
            "obs_path": with_description(
                or_null(json!({
                    "type": "string",
                    "maxLength": MAX_OBS_PATH_LEN,
                    "pattern": "^[A-Za-z0-9_./-]*$",
                })),
                "Key prefix in the bucket: a relative path, not starting with '/', without '.' or '..' segments."
            ),
            "partition_format": with_description(one_of(&PARTITION_FORMATS), "Time directories of the object keys. Default yyyy/MM/dd/HH."),
            "record_delimiter": with_description(one_of(&RECORD_DELIMITERS), "Written after every record; NULL writes none. Default a newline."),
            "store_keys": with_description(boolean(), "Write each record's key and kv_delimiter before its value."),
            "agency_name": with_description(string(), "Accepted and returned; unused."),
            "kv_delimiter": with_description(
                or_null(json!({ "type": "string", "minLength": 1, "maxLength": MAX_KV_DELIMITER_LEN })),
                "Separator of key and value when store_keys is set. Default ':'."
            ),
            "flush_size": with_description(integer(FLUSH_SIZE.0, FLUSH_SIZE.1), "Records per object at most."),
            "obs_part_size": with_description(integer(OBS_PART_SIZE.0, OBS_PART_SIZE.1), "Bytes per uploaded part."),
            "timezone": with_description(string(), "IANA time zone of the time directories. Default: the server's."),
            "obs_endpoint": with_description(string(), "S3 endpoint, an http:// or https:// URL. Absent: the server's local bucket directory."),
            "obs_region": with_description(string(), "S3 region. Default us-east-1."),
            "obs_path_style": with_description(boolean(), "Path-style S3 requests. Default true."),
        },
    })
}

fn source_task() -> Value {
    json!({
        "type": "object",
        "description": "Give exactly one of instance_id and bootstrap_servers. rename_topic_enabled and topics_mapping exclude each other, and two-way needs one of rename_topic_enabled and provenance_header_enabled.",
        "properties": {
            "current_cluster_name": with_description(or_null(json!({ "type": "string", "pattern": CLUSTER_ALIAS_PATTERN })), "Alias of this instance; required with renaming or the provenance header."),
            "cluster_name": with_description(or_null(json!({ "type": "string", "pattern": CLUSTER_ALIAS_PATTERN })), "Alias of the peer; required with renaming or the provenance header."),
            "instance_id": with_description(or_null(string()), "Peer: another instance of the project."),
            "bootstrap_servers": with_description(or_null(string()), "Peer: a comma-separated host:port list."),
            "security_protocol": one_of(&SECURITY_PROTOCOLS),
            "sasl_mechanism": or_null(json!({ "type": "string", "enum": SASL_MECHANISMS.iter().copied().chain([""]).collect::<Vec<_>>() })),
            "user_name": or_null(string()),
            "password": with_description(or_null(string()), "Never returned."),
            "direction": with_description(one_of(&DIRECTIONS), "pull: peer into this instance; push: the reverse; two-way: both. Default pull."),
            "sync_consumer_offsets_enabled": boolean(),
            "replication_factor": with_description(integer(1, 32), "Replicas of target topics that Weir creates; at most the peer's broker count."),
            "task_num": with_description(integer(1, MAX_TASK_NUM), "Consumers per direction. Default 2."),
            "rename_topic_enabled": boolean(),
            "provenance_header_enabled": boolean(),
            "consumer_strategy": with_description(one_of(&CONSUMER_STRATEGIES), "Default latest."),
            "compression_type": with_description(one_of(&COMPRESSION_TYPES), "Default none."),
            "topics_mapping": with_description(or_null(string()), "source:target pairs, comma-separated."),
        },
    })
}

fn validate() -> Value {
    json!({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": with_description(one_of(&["KAFKA_REPLICATOR_SOURCE", "OBS_SINK"]), "Only KAFKA_REPLICATOR_SOURCE is checked; OBS_SINK gets DMS.00400129."),
            "task": schema_ref("SourceTaskRequest"),
        },
    })
}

fn create_key() -> Value {
    json!({
        "type": "object",
        "required": ["project_id"],
        "properties": {
            "project_id": { "type": "string", "pattern": PROJECT_ID_PATTERN },
            "admin": with_description(boolean(), "Let the key manage keys too. Default false."),
            "description": or_null(json!({ "type": "string", "maxLength": 255 })),
        },
    })
}

fn add_instance() -> Value {
    json!({
        "type": "object",
        "required": ["name", "bootstrap_servers"],
        "properties": {
            "project_id": with_description(string(), "Must be the signing key's project when given."),
            "name": { "type": "string", "minLength": 1, "maxLength": 64 },
            "bootstrap_servers": {
                "type": "string",
                "minLength": 1,
                "description": "Comma-separated host:port list.",
            },
            "specification": with_description(string(), "Bandwidth specification. Default 100MB."),
            "broker_num": with_description(integer(1, 1000), "Reported as node_num and broker_num. Default 3."),
            "security_protocol": one_of(&["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"]),
            "sasl_mechanism": string(),
            "username": string(),
            "password": string(),
            "instance_id": with_description(string(), "Instance ID, a UUID. Default: a new one."),
        },
    })
}

fn u32_schema() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": u32::MAX })
}

fn u64_schema() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX })
}

fn register_node() -> Value {
    json!({
        "type": "object",
        "required": ["pid", "host", "version"],
        "properties": {
            "node_id": with_description(string(), "Set for nodes the server starts; absent nodes get a new ID."),
            "slot": or_null(u32_schema()),
            "pid": u32_schema(),
            "host": { "type": "string" },
            "version": { "type": "string" },
        },
    })
}

fn heartbeat() -> Value {
    json!({
        "type": "object",
        "required": ["tasks", "rss_bytes", "buffered_bytes"],
        "properties": {
            "tasks": { "type": "array", "items": schema_ref("TaskReport") },
            "rss_bytes": u64_schema(),
            "buffered_bytes": u64_schema(),
        },
    })
}

fn task_report() -> Value {
    let counters = [
        "records_read",
        "bytes_read",
        "records_written",
        "bytes_written",
        "objects_written",
        "objects_adopted",
        "upload_retries",
        "open_chunk_bytes",
    ];
    let mut properties = Map::new();
    properties.insert("task_id".into(), json!({ "type": "string" }));
    properties.insert("generation".into(), u64_schema());
    properties.insert(
        "state".into(),
        json!({ "type": "string", "description": "starting, running, failing or stopped." }),
    );
    properties.insert("error".into(), string());
    properties.insert("assigned_partitions".into(), u32_schema());
    for counter in counters {
        properties.insert(counter.into(), u64_schema());
    }
    let mut required = vec!["task_id", "generation", "state", "assigned_partitions"];
    required.extend(counters);
    json!({ "type": "object", "required": required, "properties": properties })
}

/// Builds the query parameter of an integer read by `routes::query_int`.
fn integer_query(name: &str, min: i64, max: Option<i64>, description: &str) -> Value {
    let mut schema = json!({ "type": "integer", "minimum": min });
    if let Some(max) = max {
        schema["maximum"] = Value::from(max);
    }
    query_parameter(name, false, schema, description)
}

pub fn instance_list_query() -> Vec<Value> {
    let text = |name: &str, description: &str| {
        query_parameter(name, false, json!({ "type": "string" }), description)
    };
    vec![
        query_parameter(
            "engine",
            true,
            json!({ "type": "string", "enum": ["kafka"] }),
            "Engine; only kafka.",
        ),
        text(
            "name",
            "Instance name, matched as a substring unless exact_match_name is true.",
        ),
        text(
            "exact_match_name",
            "true to match name exactly; any other value matches substrings.",
        ),
        text("instance_id", "Instance ID to match."),
        text("status", "Instance status to match."),
        text("include_failure", "Accepted and ignored."),
        text("enterprise_project_id", "Accepted and ignored."),
        integer_query(
            "offset",
            0,
            None,
            "0-based index of the first instance. Default 0.",
        ),
        integer_query("limit", 1, Some(50), "Instances per page. Default 10."),
    ]
}

pub fn task_list_query() -> Vec<Value> {
    vec![
        integer_query(
            "offset",
            0,
            None,
            "0-based index of the first task. Default 0; past the end gives an empty page.",
        ),
        integer_query("limit", 1, Some(50), "Tasks per page. Default 10."),
    ]
}

pub fn job_list_query() -> Vec<Value> {
    let time = |name: &str, description: &str| {
        query_parameter(
            name,
            false,
            json!({ "type": "string", "pattern": "^([0-9]{14})?$" }),
            description,
        )
    };
    vec![
        integer_query(
            "start",
            1,
            None,
            "1-based index of the first background task. Default 1.",
        ),
        integer_query(
            "limit",
            1,
            Some(100),
            "Background tasks per page. Default 10.",
        ),
        time(
            "begin_time",
            "Earliest creation time, YYYYMMDDHHmmss in UTC.",
        ),
        time("end_time", "Latest creation time, YYYYMMDDHHmmss in UTC."),
    ]
}
