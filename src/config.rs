//! Server configuration: a TOML file, environment overrides and defaults that
//! make `weir server --data-dir DIR` work alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole configuration file. Every section and key is optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerSection,
    /// API keys (AK/SK), each belonging to one project.
    pub keys: Vec<KeyConfig>,
    /// Kafka clusters registered at start; more can be added through the admin endpoint.
    pub instances: Vec<InstanceConfig>,
    /// Bandwidth specifications beyond the built-in `100MB`, `300MB`, `600MB` and `1200MB`.
    pub specifications: Vec<SpecificationConfig>,
    /// Node profiles selected by `spec_code`, beyond the built-in ones.
    pub node_profiles: Vec<NodeProfile>,
    pub nodes: NodesSection,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    /// Address the HTTP API listens on.
    pub listen: String,
    /// Directory of the SQLite store and of the local buckets (`DATA_DIR/buckets/B`).
    pub data_dir: PathBuf,
    /// URL the nodes use to reach the server; defaults to `http://` plus `listen`.
    pub public_url: Option<String>,
    /// IANA time zone of time directories when a task names none.
    pub timezone: String,
    /// Largest request body accepted, in bytes; larger requests get 413.
    pub max_body_bytes: usize,
    /// Time a create-connector job waits for its nodes before it fails, in seconds.
    pub job_timeout_s: u64,
    /// File with the master key that encrypts stored secrets (32 bytes as
    /// base64). `WEIR_MASTER_KEY` takes precedence; without either, the
    /// server uses `DATA_DIR/master.key` and creates it for a new store.
    pub master_key_file: Option<PathBuf>,
    /// `signature` (default): every API request must carry a valid
    /// SDK-HMAC-SHA256 signature. `none`: no authentication, for local
    /// development only; the project of a request is the one in its path.
    pub auth: AuthMode,
    /// Time a client has to send a request's headers, and then its body, in seconds.
    /// Late headers close the connection; a late body gets 408.
    pub read_timeout_s: u64,
}

/// Authentication mode of the HTTP API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    Signature,
    None,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8780".to_string(),
            data_dir: PathBuf::from("weir-data"),
            public_url: None,
            timezone: "UTC".to_string(),
            max_body_bytes: 1 << 20,
            job_timeout_s: 300,
            master_key_file: None,
            auth: AuthMode::Signature,
            read_timeout_s: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub access_key: String,
    pub secret_key: String,
    pub project_id: String,
    /// Whether the key may also manage keys (`/admin/v1/keys`).
    #[serde(default)]
    pub admin: bool,
    #[serde(default)]
    pub description: String,
}

/// Security settings Weir uses to reach a Kafka cluster.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceSecurity {
    /// `PLAINTEXT` (default), `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: Option<String>,
    /// `PLAIN` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// Instance id (a UUID); generated when absent.
    pub id: Option<String>,
    pub project_id: String,
    pub name: String,
    pub bootstrap_servers: String,
    /// Bandwidth specification of the instance, used when a connector names none.
    #[serde(default = "default_specification")]
    pub specification: String,
    /// Broker count reported as `node_num` and `broker_num`.
    #[serde(default = "default_broker_num")]
    pub broker_num: u32,
    /// `PLAINTEXT` (default), `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: Option<String>,
    /// `PLAIN` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl InstanceConfig {
    pub fn security(&self) -> InstanceSecurity {
        InstanceSecurity {
            security_protocol: self.security_protocol.clone(),
            sasl_mechanism: self.sasl_mechanism.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }
}

fn default_specification() -> String {
    "100MB".to_string()
}

fn default_broker_num() -> u32 {
    3
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecificationConfig {
    pub name: String,
    /// Bytes per second that all nodes of a connector read together.
    pub bytes_per_second: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeProfile {
    pub spec_code: String,
    /// Bytes a node may buffer, including librdkafka's prefetch queues.
    pub memory_budget_bytes: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodesSection {
    /// Start nodes as child processes of the server.
    pub spawn: bool,
    /// Path of the `weir` binary for child nodes; defaults to the running binary.
    pub binary: Option<PathBuf>,
    pub heartbeat_interval_ms: u64,
    /// A node that has not sent a heartbeat for this long counts as dead.
    pub dead_after_ms: u64,
    /// A node counts as ready once it has sent heartbeats for this long.
    pub ready_after_ms: u64,
    pub restart_backoff_initial_ms: u64,
    pub restart_backoff_max_ms: u64,
    /// Kafka consumer group session timeout of the nodes.
    pub session_timeout_ms: u64,
    /// Period of a node's topic check, in milliseconds: missing listed
    /// topics, the topics matching a `topics_regex`, and the target topics
    /// of replication tasks.
    pub topic_refresh_interval_ms: u64,
    /// Extra librdkafka settings for the nodes' consumers.
    pub kafka: BTreeMap<String, String>,
}

impl Default for NodesSection {
    fn default() -> Self {
        Self {
            spawn: true,
            binary: None,
            heartbeat_interval_ms: 1000,
            dead_after_ms: 30_000,
            ready_after_ms: 1000,
            restart_backoff_initial_ms: 500,
            restart_backoff_max_ms: 30_000,
            session_timeout_ms: 10_000,
            topic_refresh_interval_ms: crate::protocol::DEFAULT_TOPIC_REFRESH_INTERVAL_MS,
            kafka: BTreeMap::new(),
        }
    }
}

/// Built-in bandwidth specifications, in bytes per second.
const BUILTIN_SPECIFICATIONS: [(&str, u64); 4] = [
    ("100MB", 100 * 1024 * 1024),
    ("300MB", 300 * 1024 * 1024),
    ("600MB", 600 * 1024 * 1024),
    ("1200MB", 1200 * 1024 * 1024),
];

/// Memory budget of nodes whose connector names no `spec_code`.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

const BUILTIN_PROFILES: [(&str, u64); 2] = [
    ("kafka.c3.mini.connector", 256 * 1024 * 1024),
    ("kafka.c3.small.connector", 512 * 1024 * 1024),
];

impl Config {
    /// Reads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading config file {} failed: {e}", path.display()))?;
        toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }

    /// Applies `WEIR_LISTEN`, `WEIR_DATA_DIR`, `WEIR_PUBLIC_URL` and `WEIR_TIMEZONE`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("WEIR_LISTEN") {
            self.server.listen = v;
        }
        if let Some(v) = get("WEIR_DATA_DIR") {
            self.server.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("WEIR_PUBLIC_URL") {
            self.server.public_url = Some(v);
        }
        if let Some(v) = get("WEIR_TIMEZONE") {
            self.server.timezone = v;
        }
    }

    /// Checks values that serde cannot: time zone, specification names.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.timezone.parse::<chrono_tz::Tz>().is_err() {
            anyhow::bail!(
                "invalid server.timezone {:?}: use an IANA name such as UTC or Asia/Shanghai",
                self.server.timezone
            );
        }
        for instance in &self.instances {
            if self.specification_bytes(&instance.specification).is_none() {
                anyhow::bail!(
                    "instance {:?} names unknown specification {:?}; define it under [[specifications]]",
                    instance.name,
                    instance.specification
                );
            }
        }
        Ok(())
    }

    /// Returns the bytes per second of a specification name.
    pub fn specification_bytes(&self, name: &str) -> Option<u64> {
        self.specifications
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.bytes_per_second)
            .or_else(|| {
                BUILTIN_SPECIFICATIONS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| *b)
            })
    }

    /// Returns the memory budget of a node profile.
    pub fn memory_budget(&self, spec_code: &str) -> Option<u64> {
        self.node_profiles
            .iter()
            .find(|p| p.spec_code == spec_code)
            .map(|p| p.memory_budget_bytes)
            .or_else(|| {
                BUILTIN_PROFILES
                    .iter()
                    .find(|(c, _)| *c == spec_code)
                    .map(|(_, b)| *b)
            })
    }

    /// Returns the URL nodes use to reach the server.
    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let config: Config = toml::from_str("").expect("parse");
        assert_eq!(config.server.listen, "127.0.0.1:8780");
        assert!(config.nodes.spawn);
        assert_eq!(config.specification_bytes("100MB"), Some(100 * 1024 * 1024));
        assert_eq!(
            config.memory_budget("kafka.c3.mini.connector"),
            Some(256 << 20)
        );
    }

    #[test]
    fn custom_specification_and_instance_parse() {
        let text = r#"
            [[specifications]]
            name = "1MB"
            bytes_per_second = 1048576

            [[instances]]
            project_id = "p"
            name = "k"
            bootstrap_servers = "127.0.0.1:9092"
            specification = "1MB"
            security_protocol = "SASL_PLAINTEXT"
            sasl_mechanism = "SCRAM-SHA-512"
        "#;
        let config: Config = toml::from_str(text).expect("parse");
        config.validate().expect("valid");
        assert_eq!(config.specification_bytes("1MB"), Some(1 << 20));
        let instance = &config.instances[0];
        assert_eq!(
            instance.security().sasl_mechanism.as_deref(),
            Some("SCRAM-SHA-512")
        );
        assert_eq!(instance.broker_num, 3);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err =
            toml::from_str::<Config>("[server]\nlisten_addr = \"x\"").expect_err("unknown key");
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let mut config = Config::default();
        config.apply_env(|name| (name == "WEIR_LISTEN").then(|| "127.0.0.1:1".to_string()));
        assert_eq!(config.server.listen, "127.0.0.1:1");
    }
}
