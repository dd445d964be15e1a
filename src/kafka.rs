//! librdkafka settings shared by the server and the nodes.

use std::collections::BTreeMap;

use std::time::Duration;

use std::sync::Mutex;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use crate::config::InstanceSecurity;

/// Runs `work`, a call that blocks on the broker (a flush, a committed-offset
/// or watermark query), without stalling the other tasks of the runtime.
///
/// librdkafka invokes rebalance callbacks inside the consumer's poll, so a
/// blocking call there holds a runtime worker thread. On the multi-threaded
/// runtime `block_in_place` hands that worker's other tasks, such as the
/// node's heartbeat loop, to another thread first. Elsewhere `work` runs
/// directly.
pub fn blocking<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Cause of a failed connection to a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionFailure {
    Unreachable,
    Authentication,
    Tls,
}

impl ConnectionFailure {
    /// Classifies a librdkafka error code and its message.
    pub fn classify(code: RDKafkaErrorCode, reason: &str) -> Self {
        let lowered = reason.to_ascii_lowercase();
        let reason = strip_broker_prefixes(&lowered);
        match code {
            RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
                Self::Authentication
            }
            RDKafkaErrorCode::SSL => Self::Tls,
            _ if reason.contains("connection refused")
                || reason.contains("failed to resolve")
                || reason.contains("no route to host")
                || reason.contains("network is unreachable") =>
            {
                Self::Unreachable
            }
            _ if reason.contains("ssl")
                || reason.contains("tls")
                || reason.contains("certificate") =>
            {
                Self::Tls
            }
            _ if reason.contains("sasl") || reason.contains("authentication") => {
                Self::Authentication
            }
            _ => Self::Unreachable,
        }
    }
}

/// Strips what librdkafka puts before a message: the thread name of its log
/// lines (`[thrd:sasl_ssl://host:9093/bootstrap]: `) and the broker's name
/// (`sasl_ssl://host:9093/bootstrap: `). The protocol in them must not count as
/// a word of the message.
fn strip_broker_prefixes(reason: &str) -> &str {
    let mut rest = reason.trim_start();
    loop {
        let stripped = if let Some(thread) = rest.strip_prefix("[thrd:") {
            thread.split_once("]: ").map(|(_, message)| message)
        } else {
            match rest.split_once("://") {
                Some((scheme, after)) if !scheme.contains([' ', ':']) => {
                    after.split_once(": ").map(|(_, message)| message)
                }
                _ => None,
            }
        };
        match stripped {
            Some(message) => rest = message.trim_start(),
            None => return rest,
        }
    }
}

/// Client context that keeps the connection errors librdkafka reports, so
/// that a timeout can be explained by its cause. Logs and errors reach the
/// context only while the client is polled or waits in a blocking call.
#[derive(Default)]
pub struct ConnectionErrors {
    errors: Mutex<Vec<(RDKafkaErrorCode, String)>>,
}

/// Most errors a [`ConnectionErrors`] keeps; later ones replace the oldest.
const MAX_KEPT_ERRORS: usize = 32;

impl ConnectionErrors {
    fn push(&self, code: RDKafkaErrorCode, reason: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            if errors.len() >= MAX_KEPT_ERRORS {
                errors.remove(0);
            }
            errors.push((code, reason.to_string()));
        }
    }

    /// Returns the most specific error seen: an authentication or TLS
    /// failure outranks the transport errors that follow it.
    pub fn worst(&self) -> Option<(ConnectionFailure, String)> {
        let errors = self.errors.lock().ok()?;
        errors
            .iter()
            .map(|(code, reason)| (ConnectionFailure::classify(*code, reason), reason.clone()))
            .min_by_key(|(failure, _)| match failure {
                ConnectionFailure::Authentication => 0,
                ConnectionFailure::Tls => 1,
                ConnectionFailure::Unreachable => 2,
            })
    }

    /// Appends the most specific error seen to `message`, for errors of calls
    /// that only report a timeout.
    pub fn explain(&self, message: String) -> String {
        match self.worst() {
            Some((_, reason)) => format!("{message}; connection error: {reason}"),
            None => message,
        }
    }
}

impl ClientContext for ConnectionErrors {
    /// Keeps connection failures: librdkafka reports SASL and TLS failures
    /// of a connection in `FAIL` log lines, not through the error callback.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if fac == "FAIL" {
            self.push(RDKafkaErrorCode::BrokerTransportFailure, message);
        }
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
            warn!(facility = fac, "librdkafka: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.push(code, reason);
        }
    }
}

impl ConsumerContext for ConnectionErrors {}

/// Polls `consumer` briefly so that the errors librdkafka queued for it
/// reach its [`ConnectionErrors`] context.
pub fn collect_connection_errors(consumer: &BaseConsumer<ConnectionErrors>) {
    for _ in 0..5 {
        let _ = consumer.poll(Duration::from_millis(20));
    }
}

/// Appends the most specific connection error of `consumer` to `message`.
pub fn explain_failure(consumer: &BaseConsumer<ConnectionErrors>, message: String) -> String {
    collect_connection_errors(consumer);
    consumer.context().explain(message)
}

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

/// Commits the high watermark of every assigned partition that has no
/// committed offset yet, and seeks there.
///
/// Without this, each consumer that is assigned such a partition resolves
/// `latest` anew, and records produced between two rebalances would be
/// skipped by the second owner. `label` names the task in logs.
pub fn pin_latest_start<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assigned: &TopicPartitionList,
    label: &str,
) {
    let timeout = Duration::from_secs(10);
    let committed = match consumer.committed_offsets(assigned.clone(), timeout) {
        Ok(committed) => committed,
        Err(e) => {
            warn!(task = %label, error = %e, "Reading committed offsets of new partitions failed; they start at the broker's latest offset.");
            return;
        }
    };
    let mut pinned = TopicPartitionList::new();
    for element in committed.elements() {
        if matches!(element.offset(), Offset::Offset(_)) {
            continue;
        }
        match consumer.fetch_watermarks(element.topic(), element.partition(), timeout) {
            Ok((_, high)) => {
                let _ = pinned.add_partition_offset(
                    element.topic(),
                    element.partition(),
                    Offset::Offset(high),
                );
            }
            Err(e) => {
                warn!(task = %label, topic = element.topic(), partition = element.partition(), error = %e, "Reading the high watermark failed.")
            }
        }
    }
    if pinned.count() == 0 {
        return;
    }
    if let Err(e) = consumer.commit(&pinned, CommitMode::Sync) {
        warn!(task = %label, error = %e, "Committing the start offsets failed.");
    }
    for element in pinned.elements() {
        if let Err(e) = consumer.seek(
            element.topic(),
            element.partition(),
            element.offset(),
            timeout,
        ) {
            debug!(task = %label, topic = element.topic(), partition = element.partition(), error = %e, "Seek to the start offset failed.");
        }
    }
    info!(task = %label, partitions = pinned.count(), "Start offsets of new partitions committed at the high watermark.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_prefers_reason_words() {
        use ConnectionFailure::*;
        let classify = ConnectionFailure::classify;
        assert_eq!(
            classify(RDKafkaErrorCode::Authentication, "x"),
            Authentication
        );
        assert_eq!(
            classify(
                RDKafkaErrorCode::BrokerTransportFailure,
                "SSL handshake failed"
            ),
            Tls
        );
        assert_eq!(
            classify(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down"),
            Unreachable
        );
    }

    #[test]
    fn classification_ignores_the_broker_protocol() {
        use ConnectionFailure::*;
        let classify = ConnectionFailure::classify;
        let refused = "sasl_ssl://127.0.0.1:19399/bootstrap: Connect to ipv4#127.0.0.1:19399 \
                       failed: Connection refused (after 0ms in state CONNECT)";
        let bad_password = "sasl_plaintext://127.0.0.1:9092/bootstrap: SASL authentication \
                            error: Authentication failed during authentication";
        let handshake = "sasl_ssl://127.0.0.1:9093/bootstrap: SSL handshake failed: \
                         certificate verify failed";
        let logged_reset = "[thrd:sasl_ssl://127.0.0.1:9093/bootstrap]: \
                            sasl_ssl://127.0.0.1:9093/bootstrap: Disconnected while requesting \
                            ApiVersion";
        let cases = [
            (refused, Unreachable),
            (bad_password, Authentication),
            (handshake, Tls),
            (logged_reset, Unreachable),
        ];

        for (reason, expected) in cases {
            let failure = classify(RDKafkaErrorCode::BrokerTransportFailure, reason);
            assert_eq!(failure, expected, "classification of {reason:?}");
        }
    }

    #[test]
    fn worst_error_outranks_later_transport_errors() {
        let errors = ConnectionErrors::default();
        assert_eq!(errors.explain("timed out".into()), "timed out");
        errors.push(
            RDKafkaErrorCode::SaslAuthenticationFailed,
            "SASL authentication error: bad password",
        );
        errors.push(RDKafkaErrorCode::AllBrokersDown, "1/1 brokers are down");
        assert_eq!(
            errors.explain("timed out".into()),
            "timed out; connection error: SASL authentication error: bad password"
        );
    }
}
