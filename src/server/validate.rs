//! Validation of request bodies, with errors that name the field and the rule.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use crate::sink::obs::encode::record_delimiter_bytes;
use crate::sink::obs::naming::PartitionFormat;

/// Parses a request body as a JSON object. An empty body is `{}` when `allow_empty`.
pub fn parse_object(body: &[u8], allow_empty: bool) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if allow_empty {
            Ok(Map::new())
        } else {
            Err(ApiError::empty_body())
        };
    }
    let text = std::str::from_utf8(body).map_err(ApiError::malformed_json)?;
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::malformed_json("the body must be a JSON object")),
        Err(e) => Err(ApiError::malformed_json(e)),
    }
}

pub fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    path: &str,
) -> ApiResult<Option<&'a str>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(ApiError::wrong_type(&join(path, field), "a string")),
    }
}

pub fn opt_bool(obj: &Map<String, Value>, field: &str, path: &str) -> ApiResult<Option<bool>> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ApiError::wrong_type(&join(path, field), "a boolean")),
    }
}

/// Reads an integer given as a JSON number or a numeric string. `""` counts as absent.
pub fn opt_int(obj: &Map<String, Value>, field: &str, path: &str) -> ApiResult<Option<i64>> {
    let name = join(path, field);
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
            ApiError::invalid(format!("Invalid {name}: {n} is not an integer in range."))
        }),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::wrong_type(&name, "an integer or a numeric string")),
        Some(_) => Err(ApiError::wrong_type(&name, "an integer")),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn check_range(name: &str, value: i64, min: i64, max: i64) -> ApiResult<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid {name}: {value} is outside {min}..={max}."
        )))
    }
}

fn check_enum<'a>(name: &str, value: &'a str, allowed: &[&str]) -> ApiResult<&'a str> {
    if allowed.contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::invalid(format!(
            "Invalid {name}: {value:?}; use one of {}.",
            allowed.join(", ")
        )))
    }
}

/// The validated body of CreateConnector.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorRequest {
    pub node_cnt: u32,
    pub specification: Option<String>,
    pub spec_code: Option<String>,
}

/// Range of `node_cnt`: the API documents a minimum of 2, and `connector_node_num`
/// of ShowInstance is documented as 0 to 16.
pub const MIN_NODES: i64 = 2;
pub const MAX_NODES: i64 = 16;

/// Values of `source_type`. Only `NONE` works: replicator tasks are rejected as unsupported.
pub const SOURCE_TYPES: [&str; 2] = ["NONE", "KAFKA_REPLICATOR_SOURCE"];
/// Values of `sink_type`.
pub const SINK_TYPES: [&str; 2] = ["NONE", "OBS_SINK"];
pub const CONSUMER_STRATEGIES: [&str; 2] = ["latest", "earliest"];
pub const DESTINATION_FILE_TYPES: [&str; 1] = ["TEXT"];
/// Time directory formats, the ones `PartitionFormat::parse` accepts.
pub const PARTITION_FORMATS: [&str; 5] = [
    "yyyy",
    "yyyy/MM",
    "yyyy/MM/dd",
    "yyyy/MM/dd/HH",
    "yyyy/MM/dd/HH/mm",
];
/// Record delimiters, the ones `record_delimiter_bytes` accepts: a newline is
/// accepted both as a real newline and as the two characters `\n`.
pub const RECORD_DELIMITERS: [&str; 6] = ["\n", "\\n", ",", ";", "|", "NULL"];
/// Range of `deliver_time_interval`, in seconds.
pub const DELIVER_TIME_INTERVAL_S: (i64, i64) = (30, 900);
/// Range of the `flush_size` extension, in records.
pub const FLUSH_SIZE: (i64, i64) = (1, 1_000_000);
/// Range of `obs_part_size`, in bytes.
pub const OBS_PART_SIZE: (i64, i64) = (1024, 5_368_709_120);
/// Rule of `task_name`, the console's: 4 to 64 characters from letters, digits, '_' and '-'.
pub const TASK_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{4,64}$";
/// Rule of `obs_bucket_name`, the S3 one; names with ".." are also rejected.
pub const BUCKET_NAME_PATTERN: &str = "^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$";
/// Maximum length of `topics_regex`, in bytes.
pub const MAX_TOPICS_REGEX_LEN: usize = 255;
/// Maximum length of `obs_path`, in bytes.
pub const MAX_OBS_PATH_LEN: usize = 256;
/// Maximum length of `kv_delimiter`, in bytes.
pub const MAX_KV_DELIMITER_LEN: usize = 8;

pub fn connector_request(obj: &Map<String, Value>) -> ApiResult<ConnectorRequest> {
    // The API documents node_cnt as a string, so text that is not a number is
    // an invalid value rather than a wrong type.
    let node_cnt = opt_int(obj, "node_cnt", "").map_err(|e| match obj.get("node_cnt") {
        Some(Value::String(text)) => {
            ApiError::invalid(format!("Invalid node_cnt: {text:?} is not an integer."))
        }
        _ => e,
    })?;
    let node_cnt = match node_cnt {
        None => 2,
        Some(n) if n < MIN_NODES => {
            return Err(ApiError::invalid(format!(
                "Invalid node_cnt: {n}; a connector needs at least {MIN_NODES} nodes."
            )));
        }
        Some(n) => check_range("node_cnt", n, MIN_NODES, MAX_NODES)?,
    };
    let specification = opt_str(obj, "specification", "")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    let spec_code = opt_str(obj, "spec_code", "")?
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    Ok(ConnectorRequest {
        node_cnt: u32::try_from(node_cnt).unwrap_or(2),
        specification,
        spec_code,
    })
}

/// A validated CreateConnectorTask body.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub name: String,
    pub start_later: bool,
    /// The entity stored for the task: normalised fields, secrets included.
    pub entity: Value,
}

/// Console limit on the number of topics of one task.
const MAX_TOPICS: usize = 20;

fn task_name(name: &str) -> ApiResult<()> {
    static RULE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(TASK_NAME_PATTERN).expect("TASK_NAME_PATTERN is a valid regex")
    });
    if !RULE.is_match(name) {
        return Err(ApiError::invalid(format!(
            "Invalid task_name {name:?}: use 4 to 64 characters from letters, digits, '_' and '-'."
        )));
    }
    Ok(())
}

/// Checks a topic name against Kafka's rule: 1 to 249 characters from
/// letters, digits, '.', '_' and '-', and neither "." nor "..".
pub fn topic_name(topic: &str) -> ApiResult<()> {
    let valid_chars = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    if topic.is_empty() || topic.len() > 249 || !valid_chars || topic == "." || topic == ".." {
        return Err(ApiError::invalid(format!(
            "Invalid topic {topic:?} in topics: a topic name has 1 to 249 characters from letters, digits, '.', '_' and '-'."
        )));
    }
    Ok(())
}

/// Parameters of validation that come from the server configuration.
pub struct TaskDefaults<'a> {
    pub timezone: &'a str,
    /// Instances that a replication task may name.
    pub source: super::source_task::SourceContext<'a>,
}

pub fn task_request(
    obj: &Map<String, Value>,
    defaults: &TaskDefaults<'_>,
) -> ApiResult<TaskRequest> {
    let name = opt_str(obj, "task_name", "")?
        .ok_or_else(|| ApiError::invalid("Missing task_name: every task needs a name."))?;
    task_name(name)?;
    let start_later = opt_bool(obj, "start_later", "")?.unwrap_or(false);
    let topics = opt_str(obj, "topics", "")?.filter(|s| !s.trim().is_empty());
    let topics_regex = opt_str(obj, "topics_regex", "")?.filter(|s| !s.is_empty());
    let mut entity = Map::new();
    entity.insert("task_name".into(), Value::from(name));
    match (topics, topics_regex) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Invalid topics and topics_regex: give exactly one of them, not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "Missing topics: give topics or topics_regex.",
            ));
        }
        (Some(list), None) => {
            let names: Vec<&str> = list.split(',').map(str::trim).collect();
            for topic in &names {
                topic_name(topic)?;
            }
            if names.len() > MAX_TOPICS {
                return Err(ApiError::invalid(format!(
                    "Invalid topics: {} topics given, at most {MAX_TOPICS} are allowed.",
                    names.len()
                )));
            }
            entity.insert("topics".into(), Value::from(names.join(",")));
        }
        (None, Some(regex)) => {
            topics_regex_rule(regex)?;
            entity.insert("topics_regex".into(), Value::from(regex));
        }
    }
    let source_type = opt_str(obj, "source_type", "")?.unwrap_or("NONE");
    check_enum("source_type", source_type, &SOURCE_TYPES)?;
    let sink_type = opt_str(obj, "sink_type", "")?.unwrap_or("NONE");
    check_enum("sink_type", sink_type, &SINK_TYPES)?;
    match (source_type, sink_type) {
        ("NONE", "OBS_SINK") => {}
        ("KAFKA_REPLICATOR_SOURCE", "NONE") => {
            let source = match obj.get("source_task") {
                Some(Value::Object(source)) => source,
                None | Some(Value::Null) => {
                    return Err(ApiError::invalid(
                        "Missing source_task: a KAFKA_REPLICATOR_SOURCE task needs source_task.",
                    ));
                }
                Some(_) => return Err(ApiError::wrong_type("source_task", "an object")),
            };
            let source = super::source_task::source_task(source, &defaults.source)?;
            entity.insert("source_type".into(), Value::from(source_type));
            entity.insert("source_task".into(), Value::Object(source));
            entity.insert("sink_type".into(), Value::from("NONE"));
            entity.insert("sink_task".into(), Value::Object(Map::new()));
            return Ok(TaskRequest {
                name: name.to_string(),
                start_later,
                entity: Value::Object(entity),
            });
        }
        ("NONE", "NONE") => {
            return Err(ApiError::invalid(
                "Missing task type: set sink_type to OBS_SINK (with sink_task) or source_type to KAFKA_REPLICATOR_SOURCE.",
            ));
        }
        _ => {
            return Err(ApiError::invalid(
                "Invalid source_type and sink_type: a task is either a source or a sink; set the other to NONE.",
            ));
        }
    }
    let sink = match obj.get("sink_task") {
        Some(Value::Object(sink)) => sink,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing sink_task: an OBS_SINK task needs sink_task.",
            ));
        }
        Some(_) => return Err(ApiError::wrong_type("sink_task", "an object")),
    };
    entity.insert("source_type".into(), Value::from(source_type));
    entity.insert("source_task".into(), Value::Object(Map::new()));
    entity.insert("sink_type".into(), Value::from(sink_type));
    entity.insert(
        "sink_task".into(),
        Value::Object(sink_task(sink, defaults)?),
    );
    Ok(TaskRequest {
        name: name.to_string(),
        start_later,
        entity: Value::Object(entity),
    })
}

/// Checks a topic regex: it must compile the way nodes compile it (anchored
/// at the start of the topic name), stay small, not be `.*`, which would
/// also match Kafka's internal topics, and not nest repetitions.
///
/// Nodes match with the linear-time `regex` crate, so no pattern can hang
/// them. A nested repetition such as `(a+)+$` is still rejected, because a
/// Kafka client given the same pattern (librdkafka's backtracking engine)
/// takes time exponential in the length of a topic name.
fn topics_regex_rule(regex: &str) -> ApiResult<()> {
    if regex.len() > MAX_TOPICS_REGEX_LEN {
        return Err(ApiError::invalid(format!(
            "Invalid topics_regex: at most {MAX_TOPICS_REGEX_LEN} characters."
        )));
    }
    if regex == ".*" || regex == "^.*" || regex == "^.*$" {
        return Err(ApiError::invalid(
            "Invalid topics_regex: \".*\" is not allowed because it matches internal topics; name a prefix.",
        ));
    }
    crate::sink::obs::topics::TopicMatcher::new(regex)
        .map_err(|e| ApiError::invalid(format!("Invalid topics_regex {regex:?}: {e}")))?;
    let hir = regex_syntax::ParserBuilder::new()
        .nest_limit(64)
        .build()
        .parse(regex)
        .map_err(|e| ApiError::invalid(format!("Invalid topics_regex {regex:?}: {e}")))?;
    if has_nested_repetition(&hir, false) {
        return Err(ApiError::invalid(format!(
            "Invalid topics_regex {regex:?}: a repetition contains another repetition, such as (a+)+, which backtracking regex engines take exponential time to match; repeat each part once, such as a+."
        )));
    }
    Ok(())
}

/// Returns whether a repetition of variable count (`*`, `+`, `{m,n}` with
/// `n > m`) sits inside another repetition of more than one, such as
/// `(a+)+` or `(.*a){12}`.
fn has_nested_repetition(hir: &regex_syntax::hir::Hir, inside_repetition: bool) -> bool {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Repetition(repetition) => {
            let variable = repetition.max != Some(repetition.min);
            if variable && inside_repetition {
                return true;
            }
            let repeats = repetition.max.is_none_or(|max| max > 1);
            has_nested_repetition(&repetition.sub, inside_repetition || repeats)
        }
        HirKind::Capture(capture) => has_nested_repetition(&capture.sub, inside_repetition),
        HirKind::Concat(parts) | HirKind::Alternation(parts) => parts
            .iter()
            .any(|part| has_nested_repetition(part, inside_repetition)),
        HirKind::Empty | HirKind::Literal(_) | HirKind::Class(_) | HirKind::Look(_) => false,
    }
}

/// Checks `obs_path`, a key prefix inside the bucket. With the local backend
/// the key becomes a file path, so the rule keeps it relative and inside the
/// bucket: no leading '/', no '.' or '..' segment, no NUL or backslash.
fn obs_path_rule(path: &str) -> ApiResult<String> {
    let valid_chars = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '/' | '.'));
    let traversal = path
        .split('/')
        .any(|segment| segment == "." || segment == "..");
    if path.len() > MAX_OBS_PATH_LEN || !valid_chars || traversal || path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "Invalid sink_task.obs_path {path:?}: use a relative path of at most {MAX_OBS_PATH_LEN} characters from letters, digits, '_', '-', '.' and '/', not starting with '/' and without '.' or '..' segments."
        )));
    }
    Ok(crate::sink::obs::naming::join_key(&[path]))
}

fn bucket_rule(bucket: &str) -> ApiResult<()> {
    static RULE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(BUCKET_NAME_PATTERN).expect("BUCKET_NAME_PATTERN is a valid regex")
    });
    if !RULE.is_match(bucket) || bucket.contains("..") {
        return Err(ApiError::invalid(format!(
            "Invalid sink_task.obs_bucket_name {bucket:?}: use 3 to 63 characters from lowercase letters, digits, '-' and '.', starting and ending with a letter or digit, without \"..\"."
        )));
    }
    Ok(())
}

fn sink_task(
    sink: &Map<String, Value>,
    defaults: &TaskDefaults<'_>,
) -> ApiResult<Map<String, Value>> {
    const P: &str = "sink_task";
    let mut out = Map::new();
    let strategy = opt_str(sink, "consumer_strategy", P)?.unwrap_or("latest");
    check_enum(
        "sink_task.consumer_strategy",
        strategy,
        &CONSUMER_STRATEGIES,
    )?;
    let file_type = opt_str(sink, "destination_file_type", P)?.unwrap_or("TEXT");
    check_enum(
        "sink_task.destination_file_type",
        file_type,
        &DESTINATION_FILE_TYPES,
    )?;
    let interval = opt_int(sink, "deliver_time_interval", P)?.unwrap_or(300);
    let (min, max) = DELIVER_TIME_INTERVAL_S;
    check_range("sink_task.deliver_time_interval", interval, min, max)?;
    let bucket = opt_str(sink, "obs_bucket_name", P)?.ok_or_else(|| {
        ApiError::invalid("Missing sink_task.obs_bucket_name: name the destination bucket.")
    })?;
    bucket_rule(bucket)?;
    let path = obs_path_rule(opt_str(sink, "obs_path", P)?.unwrap_or(""))?;
    let format = opt_str(sink, "partition_format", P)?.unwrap_or("yyyy/MM/dd/HH");
    if PartitionFormat::parse(format).is_none() {
        check_enum("sink_task.partition_format", format, &PARTITION_FORMATS)?;
    }
    let delimiter = opt_str(sink, "record_delimiter", P)?.unwrap_or("\n");
    if record_delimiter_bytes(delimiter).is_none() {
        check_enum(
            "sink_task.record_delimiter",
            delimiter,
            &RECORD_DELIMITERS[1..],
        )?;
    }
    let store_keys = opt_bool(sink, "store_keys", P)?.unwrap_or(false);
    let kv_delimiter = opt_str(sink, "kv_delimiter", P)?.unwrap_or(":");
    if kv_delimiter.is_empty() || kv_delimiter.len() > MAX_KV_DELIMITER_LEN {
        return Err(ApiError::invalid(format!(
            "Invalid sink_task.kv_delimiter: use 1 to {MAX_KV_DELIMITER_LEN} characters."
        )));
    }
    let flush_size = opt_int(sink, "flush_size", P)?.unwrap_or(1_000_000);
    check_range(
        "sink_task.flush_size",
        flush_size,
        FLUSH_SIZE.0,
        FLUSH_SIZE.1,
    )?;
    let part_size = opt_int(sink, "obs_part_size", P)?.unwrap_or(5_242_880);
    let (min, max) = OBS_PART_SIZE;
    check_range("sink_task.obs_part_size", part_size, min, max)?;
    let timezone = opt_str(sink, "timezone", P)?.unwrap_or(defaults.timezone);
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(ApiError::invalid(format!(
            "Invalid sink_task.timezone {timezone:?}: use an IANA name such as UTC or Asia/Shanghai."
        )));
    }
    let endpoint = opt_str(sink, "obs_endpoint", P)?.filter(|s| !s.is_empty());
    if let Some(endpoint) = endpoint {
        let parsed = reqwest::Url::parse(endpoint).ok();
        if !parsed.is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some()) {
            return Err(ApiError::invalid(format!(
                "Invalid sink_task.obs_endpoint {endpoint:?}: give an http:// or https:// URL."
            )));
        }
        out.insert("obs_endpoint".into(), Value::from(endpoint));
    }
    let region = opt_str(sink, "obs_region", P)?.unwrap_or("us-east-1");
    let path_style = opt_bool(sink, "obs_path_style", P)?.unwrap_or(true);
    let access_key = opt_str(sink, "access_key", P)?;
    let secret_key = opt_str(sink, "secret_key", P)?;
    if access_key.is_some() != secret_key.is_some() {
        return Err(ApiError::invalid(
            "Invalid sink_task.access_key and sink_task.secret_key: give both or neither.",
        ));
    }
    if let Some(agency) = opt_str(sink, "agency_name", P)? {
        out.insert("agency_name".into(), Value::from(agency));
    }
    out.insert("consumer_strategy".into(), Value::from(strategy));
    out.insert("destination_file_type".into(), Value::from(file_type));
    out.insert("deliver_time_interval".into(), Value::from(interval));
    out.insert("obs_bucket_name".into(), Value::from(bucket));
    out.insert("obs_path".into(), Value::from(path));
    out.insert("partition_format".into(), Value::from(format));
    out.insert("record_delimiter".into(), Value::from(delimiter));
    out.insert("store_keys".into(), Value::from(store_keys));
    out.insert("kv_delimiter".into(), Value::from(kv_delimiter));
    out.insert("flush_size".into(), Value::from(flush_size));
    out.insert("obs_part_size".into(), Value::from(part_size));
    out.insert("timezone".into(), Value::from(timezone));
    out.insert("obs_region".into(), Value::from(region));
    out.insert("obs_path_style".into(), Value::from(path_style));
    if let (Some(ak), Some(sk)) = (access_key, secret_key) {
        out.insert("access_key".into(), Value::from(ak));
        out.insert("secret_key".into(), Value::from(sk));
    }
    Ok(out)
}

/// Fields of `sink_task` that the API never returns.
pub const SECRET_FIELDS: [&str; 3] = ["access_key", "secret_key", "password"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    fn no_peer(_: &str) -> Option<crate::store::Instance> {
        None
    }

    fn defaults() -> TaskDefaults<'static> {
        static INSTANCE: std::sync::LazyLock<crate::store::Instance> =
            std::sync::LazyLock::new(|| crate::store::Instance {
                id: "own".to_string(),
                project_id: "p".to_string(),
                name: "k".to_string(),
                bootstrap_servers: "127.0.0.1:9092".to_string(),
                specification: "100MB".to_string(),
                broker_num: 1,
                security: Default::default(),
                status: "RUNNING".to_string(),
                created_at: 1,
            });
        TaskDefaults {
            timezone: "UTC",
            source: super::super::source_task::SourceContext {
                instance: &INSTANCE,
                peer: &no_peer,
            },
        }
    }

    fn task(sink: Value) -> Value {
        json!({"task_name": "dump-1", "topics": "a,b", "sink_type": "OBS_SINK", "sink_task": sink})
    }

    #[test]
    fn node_cnt_accepts_number_string_and_empty() {
        for (value, expected) in [(json!(3), 3), (json!("4"), 4), (json!(""), 2)] {
            let req = connector_request(&obj(json!({ "node_cnt": value }))).expect("valid");
            assert_eq!(req.node_cnt, expected);
        }
        assert_eq!(connector_request(&Map::new()).expect("valid").node_cnt, 2);
    }

    #[test]
    fn node_cnt_rejects_small_large_and_text() {
        for value in [json!(1), json!("1"), json!(17), json!("abc"), json!(2.5)] {
            let err = connector_request(&obj(json!({ "node_cnt": value }))).expect_err("invalid");
            assert_eq!(err.code, "DMS.00400062", "{value}");
        }
        let err = connector_request(&obj(json!({"node_cnt": [2]}))).expect_err("invalid");
        assert_eq!(err.code, "DMS.00400085");
    }

    #[test]
    fn task_defaults_are_filled_in() {
        let req = task_request(
            &obj(task(json!({"obs_bucket_name": "bucket-1"}))),
            &defaults(),
        )
        .expect("valid");
        let sink = &req.entity["sink_task"];
        assert_eq!(sink["deliver_time_interval"], 300);
        assert_eq!(sink["record_delimiter"], "\n");
        assert_eq!(sink["timezone"], "UTC");
        assert_eq!(req.entity["source_task"], json!({}));
        assert_eq!(req.entity["topics"], "a,b");
        assert!(!req.start_later);
    }

    #[test]
    fn topics_and_regex_together_are_rejected() {
        let mut body = obj(task(json!({"obs_bucket_name": "bucket-1"})));
        body.insert("topics_regex".into(), json!("a.*"));
        let err = task_request(&body, &defaults()).expect_err("conflict");
        assert!(err.message.contains("topics_regex"), "{}", err.message);
    }

    #[test]
    fn sink_ranges_and_enums_are_checked() {
        let cases = [
            json!({"obs_bucket_name": "bucket-1", "deliver_time_interval": 29}),
            json!({"obs_bucket_name": "bucket-1", "deliver_time_interval": 901}),
            json!({"obs_bucket_name": "bucket-1", "consumer_strategy": "oldest"}),
            json!({"obs_bucket_name": "bucket-1", "partition_format": "yyyy-MM"}),
            json!({"obs_bucket_name": "bucket-1", "record_delimiter": "\t"}),
            json!({"obs_bucket_name": "bucket-1", "obs_path": "../etc"}),
            json!({"obs_bucket_name": "B"}),
            json!({}),
        ];
        for sink in cases {
            let err = task_request(&obj(task(sink.clone())), &defaults()).expect_err("invalid");
            assert_eq!(err.code, "DMS.00400062", "{sink}");
        }
    }

    fn regex_task(regex: &str) -> Map<String, Value> {
        obj(json!({
            "task_name": "dump-1",
            "topics_regex": regex,
            "sink_type": "OBS_SINK",
            "sink_task": {"obs_bucket_name": "bucket-1"},
        }))
    }

    #[test]
    fn nested_repetitions_in_topics_regex_are_rejected() {
        for regex in [
            "(a+)+$",
            "(a*)*b",
            "((ab)*)*",
            "(a{1,9})+",
            "(.*a){12}",
            "(?:x+y?)+",
        ] {
            let err = task_request(&regex_task(regex), &defaults()).expect_err(regex);
            assert_eq!(err.code, "DMS.00400062", "{regex}");
            assert!(
                err.message.contains("repetition"),
                "{regex}: {}",
                err.message
            );
        }
    }

    #[test]
    fn plain_topics_regexes_are_accepted() {
        for regex in [
            "orders-.*",
            "(a|b)-[0-9]+",
            "(ab{2})+",
            "topic-(x|y){3}",
            "a{2}b*",
        ] {
            task_request(&regex_task(regex), &defaults()).expect(regex);
        }
    }

    #[test]
    fn obs_path_must_stay_inside_the_bucket() {
        for path in ["/etc", "../x", "a/../b", "a/./b", "a\0b", "a\\b", ".."] {
            let body = obj(task(
                json!({"obs_bucket_name": "bucket-1", "obs_path": path}),
            ));
            let err = task_request(&body, &defaults()).expect_err(path);
            assert_eq!(err.code, "DMS.00400062", "{path}");
        }
        let body = obj(task(
            json!({"obs_bucket_name": "bucket-1", "obs_path": "a//b/"}),
        ));
        let req = task_request(&body, &defaults()).expect("relative path");
        assert_eq!(req.entity["sink_task"]["obs_path"], "a/b");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = task_request(
            &obj(task(
                json!({"obs_bucket_name": "bucket-1", "store_keys": 3}),
            )),
            &defaults(),
        )
        .expect_err("type");
        assert_eq!(err.code, "DMS.00400085");
        assert!(
            err.message.contains("sink_task.store_keys"),
            "{}",
            err.message
        );
    }

    #[test]
    fn text_for_integer_or_boolean_is_wrong_type() {
        let sink = json!({"obs_bucket_name": "bucket-1", "deliver_time_interval": "thirty"});
        let err = task_request(&obj(task(sink)), &defaults()).expect_err("type");
        assert_eq!(err.code, "DMS.00400085");
        let mut body = obj(task(json!({"obs_bucket_name": "bucket-1"})));
        body.insert("start_later".into(), json!("true"));
        let err = task_request(&body, &defaults()).expect_err("type");
        assert_eq!(err.code, "DMS.00400085");
        let sink = json!({"obs_bucket_name": "bucket-1", "deliver_time_interval": "60"});
        let req = task_request(&obj(task(sink)), &defaults()).expect("numeric string");
        assert_eq!(req.entity["sink_task"]["deliver_time_interval"], 60);
    }

    #[test]
    fn malformed_and_empty_bodies_have_their_codes() {
        assert_eq!(
            parse_object(b"{", false).expect_err("bad").code,
            "DMS.00400005"
        );
        assert_eq!(
            parse_object(b"[1]", false).expect_err("bad").code,
            "DMS.00400005"
        );
        assert_eq!(
            parse_object(b"", false).expect_err("empty").code,
            "DMS.00400004"
        );
        assert!(parse_object(b"", true).expect("empty ok").is_empty());
        assert_eq!(
            parse_object(b"\xff", false).expect_err("utf8").code,
            "DMS.00400005"
        );
    }
}
