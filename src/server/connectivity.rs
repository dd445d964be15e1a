//! ValidateConnectorConnectivity: `POST .../connector/validate` connects to
//! the peer of a replication task with its settings and reports whether it
//! is reachable and accepts the credentials, without creating anything.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use bytes::Bytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use tracing::info;

use super::SharedState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use super::extract::Path;
use super::source_task::{SourceContext, source_task};
use super::validate::{opt_str, parse_object};
use crate::config::InstanceSecurity;

/// Time the probe waits for the peer's metadata.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

use crate::kafka::ConnectionFailure as ProbeFailure;

/// Returns the API error of a failed probe.
fn probe_error(failure: ProbeFailure, bootstrap: &str, detail: &str) -> ApiError {
    let (code, what, hint) = match failure {
        ProbeFailure::Unreachable => (
            "WEIR.00400101",
            "is unreachable",
            "check bootstrap_servers and that the brokers listen there",
        ),
        ProbeFailure::Authentication => (
            "WEIR.00400102",
            "rejected the credentials",
            "check sasl_mechanism, user_name and password",
        ),
        ProbeFailure::Tls => (
            "WEIR.00400103",
            "failed the TLS handshake",
            "check security_protocol and the broker's certificate",
        ),
    };
    ApiError::new(
        StatusCode::BAD_REQUEST,
        code,
        format!("The peer cluster {bootstrap} {what} ({detail}); {hint}."),
    )
}

/// Connects to `bootstrap` with `security` and reads the cluster metadata.
/// `extra` contains the operator's librdkafka settings (such as
/// `ssl.ca.location`), applied as the nodes apply them.
pub fn probe(
    bootstrap: &str,
    security: &InstanceSecurity,
    extra: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<usize, (ProbeFailure, String)> {
    let mut config = crate::kafka::client_config(bootstrap);
    let protocol = security
        .security_protocol
        .clone()
        .unwrap_or_else(|| "PLAINTEXT".to_string());
    for (key, value) in crate::kafka::security_properties(security) {
        config.set(key, value);
    }
    for (key, value) in extra {
        config.set(key, value);
    }
    config.set("socket.timeout.ms", "10000");
    let consumer: BaseConsumer<crate::kafka::ConnectionErrors> = config
        .create_with_context(crate::kafka::ConnectionErrors::default())
        .map_err(|e| (ProbeFailure::Unreachable, e.to_string()))?;
    let result = consumer.fetch_metadata(None, timeout);
    crate::kafka::collect_connection_errors(&consumer);
    let worst = consumer.context().worst();
    match (result, worst) {
        (Ok(metadata), None) => Ok(metadata.brokers().len()),
        (Ok(metadata), Some((ProbeFailure::Unreachable, _))) => Ok(metadata.brokers().len()),
        (Ok(_), Some(failure)) => Err(failure),
        (Err(_), Some(failure)) => Err(failure),
        // A TLS client on a plaintext listener reports nothing: the broker
        // waits for the rest of what it reads as a request, so the handshake
        // stalls until the timeout. A refused connection would have logged.
        (Err(e), None) if protocol.ends_with("SSL") => Err((
            ProbeFailure::Tls,
            format!(
                "no TLS handshake completed within {} s, so the port may be a plaintext listener: {e}",
                timeout.as_secs()
            ),
        )),
        (Err(e), None) => Err((ProbeFailure::Unreachable, e.to_string())),
    }
}

pub(super) async fn validate_connectivity(
    State(state): State<SharedState>,
    Extension(caller): Extension<Caller>,
    Path((project_id, instance_id)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    caller.check_project(&project_id, &instance_id)?;
    let instance = state
        .store
        .instance(&project_id, &instance_id)?
        .ok_or_else(|| ApiError::no_instance(&instance_id))?;
    let body = parse_object(&body, false)?;
    let kind = opt_str(&body, "type", "")?
        .ok_or_else(|| ApiError::invalid("Missing type: use KAFKA_REPLICATOR_SOURCE."))?;
    match kind {
        "KAFKA_REPLICATOR_SOURCE" => {}
        "OBS_SINK" => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "DMS.00400129",
                "Validating OBS_SINK settings is not supported; create the task, and its health shows whether the object store is reachable.",
            ));
        }
        other => {
            return Err(ApiError::invalid(format!(
                "Invalid type {other:?}: use KAFKA_REPLICATOR_SOURCE."
            )));
        }
    }
    let task = match body.get("task") {
        Some(Value::Object(task)) => task,
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "Missing task: give the source_task settings of the peer.",
            ));
        }
        Some(_) => return Err(ApiError::wrong_type("task", "an object")),
    };
    // The lookup closure is not Send, so the checks run in a block that ends
    // before the probe is awaited.
    let (bootstrap, security) = {
        let peer_lookup = |id: &str| {
            state
                .store
                .instance(&instance.project_id, id)
                .ok()
                .flatten()
        };
        let context = SourceContext {
            instance: &instance,
            peer: &peer_lookup,
        };
        let source = source_task(task, &context)?;
        let text = |name: &str| {
            source
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        match text("instance_id").and_then(|id| peer_lookup(&id)) {
            Some(peer) => (peer.bootstrap_servers, peer.security),
            None => (
                text("bootstrap_servers").unwrap_or_default(),
                super::replication::peer_security(&source),
            ),
        }
    };
    let probe_bootstrap = bootstrap.clone();
    let extra = state.config.nodes.kafka.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        probe(&probe_bootstrap, &security, &extra, PROBE_TIMEOUT)
    })
    .await
    .map_err(ApiError::internal)?;
    match outcome {
        Ok(brokers) => {
            info!(instance_id = %instance.id, peer = %bootstrap, brokers, "Peer cluster validated.");
            Ok(Json(json!({})))
        }
        Err((failure, detail)) => {
            info!(instance_id = %instance.id, peer = %bootstrap, ?failure, %detail, "Peer cluster validation failed.");
            Err(probe_error(failure, &bootstrap, &detail))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let failure = probe(
            &format!("127.0.0.1:{port}"),
            &InstanceSecurity::default(),
            &BTreeMap::new(),
            Duration::from_secs(1),
        )
        .expect_err("closed port");
        assert_eq!(failure.0, ProbeFailure::Unreachable);
    }
}
