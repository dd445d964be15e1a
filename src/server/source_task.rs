//! Validation of the `source_task` of a `KAFKA_REPLICATOR_SOURCE` task.

use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::validate::{opt_bool, opt_int, opt_str};
use crate::store::Instance;

const P: &str = "source_task.";

/// Directions of replication, relative to the task's own instance.
pub const DIRECTIONS: [&str; 3] = ["pull", "push", "two-way"];
pub const COMPRESSION_TYPES: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
pub const SECURITY_PROTOCOLS: [&str; 3] = ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"];
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"];
/// Pattern of a cluster alias, for the OpenAPI description.
pub const CLUSTER_ALIAS_PATTERN: &str = "^[A-Za-z0-9_-]{1,20}$";
/// Maximum `task_num`, the consumers per direction.
pub const MAX_TASK_NUM: i64 = 32;

/// Instances a source task may name.
pub struct SourceContext<'a> {
    /// The instance the task is created on.
    pub instance: &'a Instance,
    /// Looks up another instance of the same project by id.
    pub peer: &'a dyn Fn(&str) -> Option<Instance>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::invalid(format!("Invalid {P}{field}: {message}"))
}

fn check_enum(field: &str, value: &str, allowed: &[&str]) -> ApiResult<()> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is not one of {}.", allowed.join(", ")),
        ))
    }
}

/// Checks a cluster alias: 1 to 20 letters, digits, `_` or `-`, as the DMS
/// console requires. The alias prefixes renamed topics, so it must be a
/// valid part of a topic name.
fn alias_rule(field: &str, alias: &str) -> ApiResult<()> {
    let valid = (1..=20).contains(&alias.len())
        && alias
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{alias:?}: use 1 to 20 letters, digits, '_' or '-'."),
        ))
    }
}

/// Maximum entries of a bootstrap list. librdkafka starts one thread per
/// bootstrap broker, so an unbounded list lets one request start thousands.
pub const MAX_BOOTSTRAP_SERVERS: usize = 32;

/// Checks a `host:port` list of at most `MAX_BOOTSTRAP_SERVERS` entries.
pub fn bootstrap_rule(field: &str, list: &str) -> ApiResult<()> {
    if list.trim().is_empty() {
        return Err(invalid(field, "give a comma-separated host:port list."));
    }
    let count = list.split(',').count();
    if count > MAX_BOOTSTRAP_SERVERS {
        return Err(invalid(
            field,
            format!(
                "{count} entries given, at most {MAX_BOOTSTRAP_SERVERS} are allowed; a few brokers of the cluster are enough."
            ),
        ));
    }
    for server in list.split(',') {
        let valid = server
            .trim()
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            return Err(invalid(
                field,
                format!("entry {server:?} is not host:port."),
            ));
        }
    }
    Ok(())
}

/// Parses `topics_mapping` (`a:b,c:d`) into pairs, checking both names.
pub fn parse_topics_mapping(mapping: &str) -> ApiResult<Vec<(String, String)>> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    for entry in mapping.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((from, to)) = entry.split_once(':') else {
            return Err(invalid(
                "topics_mapping",
                format!("entry {entry:?} is not source:target."),
            ));
        };
        for name in [from, to] {
            super::validate::topic_name(name.trim()).map_err(|_| {
                invalid(
                    "topics_mapping",
                    format!("{name:?} in {entry:?} is not a valid topic name."),
                )
            })?;
        }
        let from = from.trim().to_string();
        let to = to.trim().to_string();
        if pairs.iter().any(|(f, _)| *f == from) {
            return Err(invalid(
                "topics_mapping",
                format!("topic {from:?} is mapped twice."),
            ));
        }
        // Two sources in one target would interleave their partitions, and
        // offset translation needs one source per target partition.
        if pairs.iter().any(|(_, t)| *t == to) {
            return Err(invalid(
                "topics_mapping",
                format!("two topics are mapped to {to:?}; map each source to its own target."),
            ));
        }
        pairs.push((from, to));
    }
    Ok(pairs)
}

/// Checks a `source_task` and returns the stored form, with defaults filled
/// in and the password kept (it is sealed at rest and never rendered).
pub fn source_task(
    source: &Map<String, Value>,
    context: &SourceContext<'_>,
) -> ApiResult<Map<String, Value>> {
    let mut out = Map::new();

    let direction = opt_str(source, "direction", P)?.unwrap_or("pull");
    check_enum("direction", direction, &DIRECTIONS)?;

    let rename = opt_bool(source, "rename_topic_enabled", P)?.unwrap_or(false);
    let provenance = opt_bool(source, "provenance_header_enabled", P)?.unwrap_or(false);
    let mapping = opt_str(source, "topics_mapping", P)?.unwrap_or("");
    let pairs = parse_topics_mapping(mapping)?;
    if rename && !pairs.is_empty() {
        return Err(ApiError::invalid(
            "Invalid source_task: rename_topic_enabled and topics_mapping exclude each other; use one of them.",
        ));
    }
    if direction == "two-way" && !rename && !provenance {
        return Err(ApiError::invalid(
            "Invalid source_task.direction two-way: enable rename_topic_enabled or provenance_header_enabled, else records would loop between the clusters.",
        ));
    }

    let current_alias = opt_str(source, "current_cluster_name", P)?;
    let peer_alias = opt_str(source, "cluster_name", P)?;
    if (rename || provenance) && (current_alias.is_none() || peer_alias.is_none()) {
        return Err(ApiError::invalid(
            "Missing source_task.current_cluster_name or cluster_name: renaming and the provenance header name the clusters by these aliases.",
        ));
    }
    let current_alias = current_alias.unwrap_or("local");
    let peer_alias = peer_alias.unwrap_or("peer");
    alias_rule("current_cluster_name", current_alias)?;
    alias_rule("cluster_name", peer_alias)?;
    if current_alias == peer_alias {
        return Err(invalid(
            "cluster_name",
            format!(
                "{peer_alias:?} is also current_cluster_name; give the two clusters different aliases."
            ),
        ));
    }

    let peer_id = opt_str(source, "instance_id", P)?.filter(|s| !s.is_empty());
    let bootstrap = opt_str(source, "bootstrap_servers", P)?.filter(|s| !s.is_empty());
    let peer_brokers = match (peer_id, bootstrap) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "Invalid source_task: give instance_id or bootstrap_servers of the peer, not both.",
            ));
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "Missing source_task.instance_id or bootstrap_servers: name the peer cluster.",
            ));
        }
        (Some(id), None) => {
            if id == context.instance.id {
                return Err(invalid(
                    "instance_id",
                    "the peer is the task's own instance; name another instance.",
                ));
            }
            let peer = (context.peer)(id).ok_or_else(|| {
                invalid(
                    "instance_id",
                    format!("no instance {id} in this project; register the peer first."),
                )
            })?;
            out.insert("instance_id".into(), Value::from(id));
            Some(peer.broker_num)
        }
        (None, Some(list)) => {
            bootstrap_rule("bootstrap_servers", list)?;
            let list: Vec<&str> = list.split(',').map(str::trim).collect();
            out.insert("bootstrap_servers".into(), Value::from(list.join(",")));
            None
        }
    };

    let protocol = opt_str(source, "security_protocol", P)?.unwrap_or("PLAINTEXT");
    check_enum("security_protocol", protocol, &SECURITY_PROTOCOLS)?;
    let mechanism = opt_str(source, "sasl_mechanism", P)?.filter(|s| !s.is_empty());
    let user = opt_str(source, "user_name", P)?.filter(|s| !s.is_empty());
    let password = opt_str(source, "password", P)?.filter(|s| !s.is_empty());
    if protocol.starts_with("SASL") {
        let mechanism = mechanism.ok_or_else(|| {
            ApiError::invalid(format!(
                "Missing source_task.sasl_mechanism: {protocol} needs one of {}.",
                SASL_MECHANISMS.join(", ")
            ))
        })?;
        check_enum("sasl_mechanism", mechanism, &SASL_MECHANISMS)?;
        if user.is_none() || password.is_none() {
            return Err(ApiError::invalid(format!(
                "Missing source_task.user_name or password: {protocol} needs both."
            )));
        }
        out.insert("sasl_mechanism".into(), Value::from(mechanism));
        out.insert("user_name".into(), Value::from(user.unwrap_or_default()));
        out.insert("password".into(), Value::from(password.unwrap_or_default()));
    } else if let Some(mechanism) = mechanism {
        check_enum("sasl_mechanism", mechanism, &SASL_MECHANISMS)?;
    }
    out.insert("security_protocol".into(), Value::from(protocol));

    let replication_factor = opt_int(source, "replication_factor", P)?;
    if let Some(factor) = replication_factor {
        if !(1..=32).contains(&factor) {
            return Err(invalid(
                "replication_factor",
                format!("{factor} is outside 1..=32."),
            ));
        }
        if let Some(brokers) = peer_brokers
            && factor > i64::from(brokers)
        {
            return Err(invalid(
                "replication_factor",
                format!("{factor} is larger than the peer's {brokers} brokers."),
            ));
        }
        out.insert("replication_factor".into(), Value::from(factor));
    }
    let task_num = opt_int(source, "task_num", P)?.unwrap_or(2);
    if !(1..=MAX_TASK_NUM).contains(&task_num) {
        return Err(invalid(
            "task_num",
            format!("{task_num} is outside 1..={MAX_TASK_NUM}."),
        ));
    }
    let strategy = opt_str(source, "consumer_strategy", P)?.unwrap_or("latest");
    check_enum("consumer_strategy", strategy, &["latest", "earliest"])?;
    let compression = opt_str(source, "compression_type", P)?.unwrap_or("none");
    check_enum("compression_type", compression, &COMPRESSION_TYPES)?;
    let sync_offsets = opt_bool(source, "sync_consumer_offsets_enabled", P)?.unwrap_or(false);

    out.insert("current_cluster_name".into(), Value::from(current_alias));
    out.insert("cluster_name".into(), Value::from(peer_alias));
    out.insert("direction".into(), Value::from(direction));
    out.insert(
        "sync_consumer_offsets_enabled".into(),
        Value::from(sync_offsets),
    );
    out.insert("task_num".into(), Value::from(task_num));
    out.insert("rename_topic_enabled".into(), Value::from(rename));
    out.insert("provenance_header_enabled".into(), Value::from(provenance));
    out.insert("consumer_strategy".into(), Value::from(strategy));
    out.insert("compression_type".into(), Value::from(compression));
    let mapping: Vec<String> = pairs.iter().map(|(f, t)| format!("{f}:{t}")).collect();
    out.insert("topics_mapping".into(), Value::from(mapping.join(",")));
    Ok(out)
}

/// Builds the `source_task` of a response: the stored fields without the
/// password, with `user_name` as `""` when unused.
pub fn source_response(stored: &Map<String, Value>) -> Value {
    let mut out = stored.clone();
    out.remove("password");
    out.entry("user_name").or_insert_with(|| Value::from(""));
    out.entry("sasl_mechanism")
        .or_insert_with(|| Value::from(""));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(id: &str, brokers: u32) -> Instance {
        Instance {
            id: id.to_string(),
            project_id: "p".to_string(),
            name: "k".to_string(),
            bootstrap_servers: "127.0.0.1:9092".to_string(),
            specification: "100MB".to_string(),
            broker_num: brokers,
            security: Default::default(),
            status: "RUNNING".to_string(),
            created_at: 1,
        }
    }

    fn check(body: Value) -> ApiResult<Map<String, Value>> {
        let own = instance("own", 3);
        let peer = |id: &str| (id == "peer").then(|| instance("peer", 1));
        let context = SourceContext {
            instance: &own,
            peer: &peer,
        };
        source_task(body.as_object().expect("object"), &context)
    }

    fn message(result: ApiResult<Map<String, Value>>) -> String {
        result.expect_err("must be rejected").message
    }

    #[test]
    fn minimal_pull_gets_defaults() {
        let out = check(json!({"bootstrap_servers": "h:1, h:2"})).expect("valid");
        assert_eq!(out["direction"], "pull");
        assert_eq!(out["task_num"], 2);
        assert_eq!(out["consumer_strategy"], "latest");
        assert_eq!(out["compression_type"], "none");
        assert_eq!(out["bootstrap_servers"], "h:1,h:2");
        assert_eq!(out["topics_mapping"], "");
    }

    #[test]
    fn rename_and_mapping_exclude_each_other() {
        let body = json!({"bootstrap_servers": "h:1", "rename_topic_enabled": true,
            "current_cluster_name": "a", "cluster_name": "b", "topics_mapping": "x:y"});
        assert!(message(check(body)).contains("exclude each other"));
    }

    #[test]
    fn two_way_needs_rename_or_provenance() {
        let body = json!({"bootstrap_servers": "h:1", "direction": "two-way"});
        assert!(message(check(body)).contains("loop"));
        let body = json!({"bootstrap_servers": "h:1", "direction": "two-way",
            "provenance_header_enabled": true, "current_cluster_name": "a", "cluster_name": "b"});
        assert!(check(body).is_ok());
    }

    #[test]
    fn peer_is_exactly_one_of_id_and_bootstrap() {
        assert!(message(check(json!({}))).contains("Missing"));
        let both = json!({"bootstrap_servers": "h:1", "instance_id": "peer"});
        assert!(message(check(both)).contains("not both"));
        assert!(message(check(json!({"instance_id": "own"}))).contains("own instance"));
        assert!(message(check(json!({"instance_id": "nope"}))).contains("no instance"));
        assert!(check(json!({"instance_id": "peer"})).is_ok());
    }

    #[test]
    fn replication_factor_bounded_by_peer_brokers() {
        let body = json!({"instance_id": "peer", "replication_factor": 2});
        assert!(message(check(body)).contains("1 brokers"));
    }

    #[test]
    fn sasl_needs_mechanism_and_credentials() {
        let body = json!({"bootstrap_servers": "h:1", "security_protocol": "SASL_PLAINTEXT"});
        assert!(message(check(body)).contains("sasl_mechanism"));
        let body = json!({"bootstrap_servers": "h:1", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512", "user_name": "u"});
        assert!(message(check(body)).contains("password"));
        let body = json!({"bootstrap_servers": "h:1", "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512", "user_name": "u", "password": "pw"});
        let out = check(body).expect("valid");
        assert_eq!(out["password"], "pw");
        let response = source_response(&out);
        assert!(response.get("password").is_none());
        assert_eq!(response["user_name"], "u");
    }

    #[test]
    fn mapping_is_checked() {
        assert!(
            message(check(
                json!({"bootstrap_servers": "h:1", "topics_mapping": "a"})
            ))
            .contains("source:target")
        );
        assert!(
            message(check(
                json!({"bootstrap_servers": "h:1", "topics_mapping": "a:b,a:c"})
            ))
            .contains("twice")
        );
        assert!(
            message(check(
                json!({"bootstrap_servers": "h:1", "topics_mapping": "a:../b"})
            ))
            .contains("not a valid")
        );
        let out = check(json!({"bootstrap_servers": "h:1", "topics_mapping": " a:b , c:d "}))
            .expect("valid");
        assert_eq!(out["topics_mapping"], "a:b,c:d");
    }

    #[test]
    fn bootstrap_list_is_bounded() {
        let list: Vec<String> = (1..=33).map(|p| format!("127.0.0.1:{p}")).collect();
        let body = json!({"bootstrap_servers": list.join(",")});
        assert!(message(check(body)).contains("at most 32"));
        let list: Vec<String> = (1..=32).map(|p| format!("127.0.0.1:{p}")).collect();
        assert!(check(json!({"bootstrap_servers": list.join(",")})).is_ok());
    }

    #[test]
    fn aliases_are_checked() {
        let body =
            json!({"bootstrap_servers": "h:1", "current_cluster_name": "a", "cluster_name": "a"});
        assert!(message(check(body)).contains("different aliases"));
        let body = json!({"bootstrap_servers": "h:1", "current_cluster_name": "a.b"});
        assert!(message(check(body)).contains("1 to 20"));
    }
}
