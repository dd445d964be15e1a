//! librdkafka settings shared by the server and the nodes.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

use crate::config::InstanceSecurity;

/// Returns a client configuration for `bootstrap_servers` with the settings
/// every Weir client uses.
pub fn client_config(bootstrap_servers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap_servers)
        .set("client.id", "weir")
        // Keep librdkafka's own logs at warnings and above.
        .set("log_level", "4");
    config
}

/// Translates an instance's security settings into librdkafka properties.
pub fn security_properties(security: &InstanceSecurity) -> BTreeMap<String, String> {
    let mut props = BTreeMap::new();
    let protocol = security.security_protocol.as_deref().unwrap_or("PLAINTEXT");
    props.insert("security.protocol".to_string(), protocol.to_string());
    if protocol.starts_with("SASL") {
        if let Some(mechanism) = &security.sasl_mechanism {
            props.insert("sasl.mechanism".to_string(), mechanism.clone());
        }
        if let Some(user) = &security.username {
            props.insert("sasl.username".to_string(), user.clone());
        }
        if let Some(password) = &security.password {
            props.insert("sasl.password".to_string(), password.clone());
        }
    }
    props
}
