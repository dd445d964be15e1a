//! One consumer of a replication flow: it reads assigned partitions of the
//! source cluster and writes each record to the same partition of the
//! target topic.
//!
//! Delivery is at least once. Source offsets are stored only after the
//! target acknowledged every earlier record of the partition, and the
//! consumer commits stored offsets every second and when partitions are
//! revoked. A crash can therefore repeat the records in flight and those
//! acknowledged in the last second, and nothing else.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use rdkafka::ClientContext;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::offsets::SOURCE_OFFSET_HEADER;
use super::topics::{self, PROVENANCE_HEADER, Provenance};
use crate::node::limits::NodeLimits;
use crate::protocol::{ClusterSpec, FlowSpec, ReplicationSpec};

/// Records sent to the target and not yet acknowledged, at most, per consumer.
const MAX_IN_FLIGHT: usize = 100_000;
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of one consumer, summed into the task report.
#[derive(Default)]
pub struct WorkerStats {
    pub assigned_partitions: AtomicU32,
    pub records_read: AtomicU64,
    pub bytes_read: AtomicU64,
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    pub records_skipped: AtomicU64,
    /// Whether the consumer has had its first assignment.
    pub running: AtomicU32,
    pub error: Mutex<Option<String>>,
}

impl WorkerStats {
    fn set_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.error.lock() {
            *slot = error;
        }
    }
}

/// A record sent to the target, or skipped, in source order.
struct Pending {
    offset: i64,
    bytes: usize,
    delivery: Option<DeliveryFuture>,
}

/// Pending records per source partition.
#[derive(Default)]
struct InFlight {
    partitions: HashMap<(String, i32), VecDeque<Pending>>,
    count: usize,
}

impl InFlight {
    /// Removes acknowledged records from the front of every partition and
    /// returns, per partition, the last source offset whose record and every
    /// earlier one are in the target. A failed delivery is an error.
    fn drain_ready(&mut self, stats: &WorkerStats) -> Result<Vec<(String, i32, i64)>, String> {
        let mut done = Vec::new();
        for ((topic, partition), queue) in self.partitions.iter_mut() {
            let mut last = None;
            while let Some(front) = queue.front_mut() {
                if let Some(delivery) = front.delivery.as_mut() {
                    match delivery.now_or_never() {
                        None => break,
                        Some(Ok(Ok(_))) => {
                            stats.records_written.fetch_add(1, Ordering::Relaxed);
                            stats
                                .bytes_written
                                .fetch_add(front.bytes as u64, Ordering::Relaxed);
                        }
                        Some(Ok(Err((error, _)))) => {
                            return Err(format!(
                                "writing the record at offset {} of {topic}/{partition} to the target failed: {error}",
                                front.offset
                            ));
                        }
                        Some(Err(_)) => {
                            return Err(format!(
                                "the producer dropped the record at offset {} of {topic}/{partition}",
                                front.offset
                            ));
                        }
                    }
                } else {
                    stats.records_skipped.fetch_add(1, Ordering::Relaxed);
                }
                last = Some(front.offset);
                queue.pop_front();
                self.count -= 1;
            }
            if let Some(offset) = last {
                done.push((topic.clone(), *partition, offset));
            }
        }
        self.partitions.retain(|_, queue| !queue.is_empty());
        Ok(done)
    }

    fn forget(&mut self, topic: &str, partition: i32) {
        if let Some(queue) = self.partitions.remove(&(topic.to_string(), partition)) {
            self.count -= queue.len();
        }
    }
}

/// Consumer context: flushes the producer and stores the offsets of
/// acknowledged records before partitions are revoked, so that the next
/// owner repeats as little as possible.
struct FlowContext {
    label: String,
    producer: FutureProducer,
    in_flight: Arc<Mutex<InFlight>>,
    stats: Arc<WorkerStats>,
    /// The task starts at `latest`: pin the start of newly assigned partitions.
    pin_latest: bool,
}

impl ClientContext for FlowContext {}

impl ConsumerContext for FlowContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        if let Err(e) = crate::kafka::blocking(|| self.producer.flush(Duration::from_secs(30))) {
            warn!(flow = %self.label, error = %e, "Flushing the producer before a revocation failed; the next owner repeats the unacknowledged records.");
        }
        let Ok(mut in_flight) = self.in_flight.lock() else {
            return;
        };
        match in_flight.drain_ready(&self.stats) {
            Ok(done) => store_offsets(consumer, &self.label, &done),
            Err(e) => {
                warn!(flow = %self.label, error = %e, "A delivery failed before a revocation.")
            }
        }
        for element in revoked.elements() {
            in_flight.forget(element.topic(), element.partition());
        }
        let partitions = revoked.count() as u32;
        let _ = self.stats.assigned_partitions.fetch_update(
            Ordering::Relaxed,
            Ordering::Relaxed,
            |n| Some(n.saturating_sub(partitions)),
        );
        info!(flow = %self.label, partitions, "Partitions revoked.");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                if self.pin_latest && assigned.count() > 0 {
                    crate::kafka::blocking(|| {
                        crate::kafka::pin_latest_start(consumer, assigned, &self.label)
                    });
                }
                self.stats
                    .assigned_partitions
                    .fetch_add(assigned.count() as u32, Ordering::Relaxed);
                self.stats.running.store(1, Ordering::Relaxed);
                info!(flow = %self.label, partitions = assigned.count(), "Partitions assigned.");
            }
            Rebalance::Error(e) => warn!(flow = %self.label, error = %e, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

fn store_offsets<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    label: &str,
    done: &[(String, i32, i64)],
) {
    for (topic, partition, offset) in done {
        // `store_offset` records `offset + 1`, the next record to read.
        if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
            debug!(flow = %label, topic, partition, error = %e, "Storing an offset failed; the partition was probably revoked.");
        }
    }
}

pub(crate) fn cluster_config(cluster: &ClusterSpec, producer: bool) -> rdkafka::ClientConfig {
    let mut config = crate::kafka::client_config(&cluster.bootstrap_servers);
    for (key, value) in &cluster.kafka {
        // Operator extras are consumer settings; producers take only the
        // connection and security ones.
        let connection = ["security.", "sasl.", "ssl.", "socket.", "broker."]
            .iter()
            .any(|prefix| key.starts_with(prefix));
        if !producer || connection {
            config.set(key, value);
        }
    }
    config
}

/// Returns the progress group of a flow, made of characters Kafka accepts.
pub(crate) fn group_id(spec: &ReplicationSpec, flow: &FlowSpec, target_cluster_id: &str) -> String {
    let clean: String = target_cluster_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "weir-{}-g{}-{}-{clean}",
        spec.task_id, spec.generation, flow.direction
    )
}

/// One consumer of a flow, with its producer and admin client.
pub struct Worker {
    pub spec: ReplicationSpec,
    pub flow: FlowSpec,
    pub index: u32,
    pub limits: Arc<NodeLimits>,
    pub stats: Arc<WorkerStats>,
    pub stop: watch::Receiver<bool>,
    pub session_timeout_ms: u64,
}

impl Worker {
    fn label(&self) -> String {
        format!(
            "{}/{}/{}",
            self.spec.task_id, self.flow.direction, self.index
        )
    }

    /// Runs until `stop` turns true, then sends what is in flight, stores
    /// and commits the offsets, and returns.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let label = self.label();
        let producer: FutureProducer = self.producer_config().create().with_context(|| {
            format!(
                "creating a producer for target {} failed",
                self.flow.target.bootstrap_servers
            )
        })?;
        let target_id = cluster_id(&self.flow.target).await?;
        let admin: AdminClient<DefaultClientContext> = cluster_config(&self.flow.target, true)
            .create()
            .context("creating the target admin client failed")?;
        let in_flight = Arc::new(Mutex::new(InFlight::default()));
        let consumer = self.consumer(&producer, &target_id, Arc::clone(&in_flight))?;
        info!(flow = %label, source = %self.flow.source.bootstrap_servers, target = %self.flow.target.bootstrap_servers, target_cluster_id = %target_id, "Replication consumer started.");

        let regex = match &self.spec.topics_regex {
            Some(pattern) => Some(
                topics::compile_regex(pattern)
                    .with_context(|| format!("invalid topics_regex {pattern:?}"))?,
            ),
            None => None,
        };
        let mut subscribed: BTreeMap<String, i32> = BTreeMap::new();
        let mut refresh = tokio::time::interval(Duration::from_millis(
            self.spec.refresh_interval_ms.max(500),
        ));
        let mut drain = tokio::time::interval(Duration::from_millis(50));
        drain.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let result = loop {
            tokio::select! {
                _ = self.stop.changed() => {
                    if *self.stop.borrow() {
                        break Ok(());
                    }
                }
                _ = refresh.tick() => {
                    if let Err(e) = self.refresh_topics(&consumer, &admin, regex.as_ref(), &mut subscribed).await {
                        warn!(flow = %label, error = %e, "Refreshing the replicated topics failed; retrying at the next refresh.");
                        self.stats.set_error(Some(e.to_string()));
                    }
                }
                _ = drain.tick() => {
                    if let Err(e) = self.drain(&consumer, &in_flight) {
                        break Err(e);
                    }
                }
                message = consumer.recv(), if !subscribed.is_empty() => {
                    match message {
                        Ok(message) => {
                            if let Err(e) = self.forward(&message, &producer, &consumer, &in_flight).await {
                                break Err(e);
                            }
                        }
                        Err(e) => {
                            warn!(flow = %label, error = %e, "Reading from the source failed; the consumer retries.");
                        }
                    }
                }
            }
        };
        crate::kafka::blocking(|| self.finish(&consumer, &producer, &in_flight));
        info!(flow = %label, "Replication consumer stopped.");
        result
    }

    fn producer_config(&self) -> rdkafka::ClientConfig {
        let mut config = cluster_config(&self.flow.target, true);
        config
            .set("enable.idempotence", "true")
            .set("compression.type", self.spec.compression_type.as_str())
            .set("linger.ms", "20")
            .set("batch.size", "1048576")
            .set("queue.buffering.max.messages", MAX_IN_FLIGHT.to_string())
            .set("queue.buffering.max.kbytes", "262144")
            .set("message.timeout.ms", "300000");
        config
    }

    fn consumer(
        &self,
        producer: &FutureProducer,
        target_id: &str,
        in_flight: Arc<Mutex<InFlight>>,
    ) -> anyhow::Result<StreamConsumer<FlowContext>> {
        let session_timeout = self.session_timeout_ms.max(1000);
        let prefetch_kbytes = (self.limits.prefetch_budget() / 1024).clamp(1024, 65536);
        let mut config = cluster_config(&self.flow.source, false);
        config
            .set("group.id", group_id(&self.spec, &self.flow, target_id))
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", self.spec.consumer_strategy.as_str())
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", session_timeout.to_string())
            .set(
                "heartbeat.interval.ms",
                (session_timeout / 5).max(300).to_string(),
            )
            .set("queued.max.messages.kbytes", prefetch_kbytes.to_string());
        // Fetch sizes are defaults that the operator's settings override.
        for (key, value) in [
            ("fetch.max.bytes", "52428800"),
            ("max.partition.fetch.bytes", "10485760"),
        ] {
            if !self.flow.source.kafka.contains_key(key) {
                config.set(key, value);
            }
        }
        config
            .create_with_context(FlowContext {
                label: self.label(),
                producer: producer.clone(),
                in_flight,
                stats: Arc::clone(&self.stats),
                pin_latest: self.spec.consumer_strategy == "latest",
            })
            .with_context(|| {
                format!(
                    "creating a consumer for source {} failed",
                    self.flow.source.bootstrap_servers
                )
            })
    }

    /// Lists the source topics, creates missing target topics, and
    /// subscribes to the selection when it changed.
    async fn refresh_topics(
        &self,
        consumer: &StreamConsumer<FlowContext>,
        admin: &AdminClient<DefaultClientContext>,
        regex: Option<&regex::Regex>,
        subscribed: &mut BTreeMap<String, i32>,
    ) -> anyhow::Result<()> {
        let source_topics = list_topics(&self.flow.source).await?;
        let (selected, missing) =
            topics::select_topics(&self.spec, &self.flow, &source_topics, regex);
        let target_topics = list_topics(&self.flow.target).await?;
        for (topic, partitions) in &selected {
            let target = topics::target_topic(&self.flow, topic);
            self.ensure_target_topic(
                admin,
                &target,
                *partitions,
                target_topics.get(&target).copied(),
            )
            .await?;
        }
        if selected != *subscribed {
            let names: Vec<&str> = selected.keys().map(String::as_str).collect();
            if names.is_empty() {
                consumer.unsubscribe();
            } else {
                consumer
                    .subscribe(&names)
                    .context("subscribing to the source topics failed")?;
            }
            info!(flow = %self.label(), topics = ?names, "Replicated topics changed.");
            *subscribed = selected;
        }
        let error = (!missing.is_empty()).then(|| {
            format!(
                "topics {} do not exist on the source cluster {}",
                missing.join(", "),
                self.flow.source.bootstrap_servers
            )
        });
        self.stats.set_error(error);
        Ok(())
    }

    /// Creates the target topic with the source's partition count, or adds
    /// partitions to a target topic that has fewer.
    async fn ensure_target_topic(
        &self,
        admin: &AdminClient<DefaultClientContext>,
        topic: &str,
        partitions: i32,
        existing: Option<i32>,
    ) -> anyhow::Result<()> {
        let options = AdminOptions::new().request_timeout(Some(METADATA_TIMEOUT));
        match existing {
            Some(count) if count >= partitions => Ok(()),
            Some(count) => {
                let results = admin
                    .create_partitions(&[NewPartitions::new(topic, partitions as usize)], &options)
                    .await?;
                for result in results {
                    if let Err((name, code)) = result {
                        anyhow::bail!(
                            "adding partitions to target topic {name} ({count} to {partitions}) failed: {code}"
                        );
                    }
                }
                info!(flow = %self.label(), topic, from = count, to = partitions, "Partitions added to the target topic.");
                Ok(())
            }
            None => {
                let replication = match self.spec.replication_factor {
                    Some(factor) => TopicReplication::Fixed(factor),
                    None => TopicReplication::Fixed(-1),
                };
                let results = admin
                    .create_topics(&[NewTopic::new(topic, partitions, replication)], &options)
                    .await?;
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => anyhow::bail!(
                            "creating target topic {name} with {partitions} partitions failed: {code}"
                        ),
                    }
                }
                info!(flow = %self.label(), topic, partitions, "Target topic created.");
                Ok(())
            }
        }
    }

    /// Sends one source record to the target, or records it as skipped.
    async fn forward(
        &self,
        message: &BorrowedMessage<'_>,
        producer: &FutureProducer,
        consumer: &StreamConsumer<FlowContext>,
        in_flight: &Arc<Mutex<InFlight>>,
    ) -> anyhow::Result<()> {
        let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
        self.stats.records_read.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_read
            .fetch_add(bytes as u64, Ordering::Relaxed);
        self.limits.consume_bandwidth(bytes);
        if let Some(wait) = self.limits.throttle_wait() {
            tokio::time::sleep(wait).await;
        }
        let topic = message.topic().to_string();
        let partition = message.partition();
        let offset = message.offset();

        let mut headers = OwnedHeaders::new();
        let mut provenance_value = None;
        if let Some(existing) = message.headers() {
            for header in existing.iter() {
                if header.key == PROVENANCE_HEADER {
                    provenance_value = header.value;
                } else if self.spec.sync_consumer_offsets && header.key == SOURCE_OFFSET_HEADER {
                    // Replaced by this copy's own source offset below.
                } else {
                    headers = headers.insert(Header {
                        key: header.key,
                        value: header.value,
                    });
                }
            }
        }
        let delivery = if self.spec.provenance_header {
            match topics::provenance(
                provenance_value,
                &self.flow.source.alias,
                &self.flow.target.alias,
            ) {
                Provenance::Skip => None,
                Provenance::Write(value) => {
                    headers = headers.insert(Header {
                        key: PROVENANCE_HEADER,
                        value: Some(value.as_str()),
                    });
                    Some(())
                }
            }
        } else {
            if let Some(value) = provenance_value {
                headers = headers.insert(Header {
                    key: PROVENANCE_HEADER,
                    value: Some(value),
                });
            }
            Some(())
        };
        let offset_text = offset.to_string();
        if self.spec.sync_consumer_offsets {
            headers = headers.insert(Header {
                key: SOURCE_OFFSET_HEADER,
                value: Some(offset_text.as_str()),
            });
        }
        let delivery = match delivery {
            None => None,
            Some(()) => {
                let target = topics::target_topic(&self.flow, &topic);
                let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&target)
                    .partition(partition)
                    .headers(headers);
                if let Some(key) = message.key() {
                    record = record.key(key);
                }
                if let Some(payload) = message.payload() {
                    record = record.payload(payload);
                }
                if let Some(timestamp) = message.timestamp().to_millis() {
                    record = record.timestamp(timestamp);
                }
                Some(self.send(producer, record, consumer, in_flight).await?)
            }
        };
        let mut in_flight = in_flight
            .lock()
            .map_err(|_| anyhow::anyhow!("the in-flight table lock is poisoned"))?;
        in_flight
            .partitions
            .entry((topic, partition))
            .or_default()
            .push_back(Pending {
                offset,
                bytes,
                delivery,
            });
        in_flight.count += 1;
        Ok(())
    }

    /// Sends a record, waiting for acknowledgements while the producer
    /// queue or the in-flight table is full.
    async fn send<'a>(
        &self,
        producer: &FutureProducer,
        mut record: FutureRecord<'a, [u8], [u8]>,
        consumer: &StreamConsumer<FlowContext>,
        in_flight: &Arc<Mutex<InFlight>>,
    ) -> anyhow::Result<DeliveryFuture> {
        loop {
            let full = in_flight
                .lock()
                .map(|f| f.count >= MAX_IN_FLIGHT)
                .unwrap_or(false);
            if !full {
                match producer.send_result(record) {
                    Ok(delivery) => return Ok(delivery),
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        record = returned;
                    }
                    Err((e, _)) => {
                        return Err(anyhow::anyhow!(
                            "sending a record to the target failed: {e}"
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            self.drain(consumer, in_flight)?;
        }
    }

    fn drain(
        &self,
        consumer: &StreamConsumer<FlowContext>,
        in_flight: &Arc<Mutex<InFlight>>,
    ) -> anyhow::Result<()> {
        let done = {
            let mut in_flight = in_flight
                .lock()
                .map_err(|_| anyhow::anyhow!("the in-flight table lock is poisoned"))?;
            in_flight
                .drain_ready(&self.stats)
                .map_err(anyhow::Error::msg)?
        };
        for (topic, partition, offset) in &done {
            if let Err(e) = consumer.store_offset(topic, *partition, *offset) {
                debug!(flow = %self.label(), topic, partition, error = %e, "Storing an offset failed; the partition was probably revoked.");
            }
        }
        Ok(())
    }

    /// Waits for the records in flight, then stores and commits offsets.
    fn finish(
        &self,
        consumer: &StreamConsumer<FlowContext>,
        producer: &FutureProducer,
        in_flight: &Arc<Mutex<InFlight>>,
    ) {
        if let Err(e) = producer.flush(Duration::from_secs(30)) {
            warn!(flow = %self.label(), error = %e, "Flushing the producer at stop failed; the unacknowledged records are read again by the next owner.");
        }
        if let Err(e) = self.drain(consumer, in_flight) {
            warn!(flow = %self.label(), error = %e, "A delivery failed at stop.");
        }
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            debug!(flow = %self.label(), error = %e, "Committing offsets at stop failed.");
        }
    }
}

/// Returns the topics of a cluster with their partition counts.
/// Creates a client of `cluster` whose context keeps connection errors.
fn explaining_client(
    cluster: &ClusterSpec,
) -> anyhow::Result<BaseConsumer<crate::kafka::ConnectionErrors>> {
    cluster_config(cluster, false)
        .create_with_context(crate::kafka::ConnectionErrors::default())
        .with_context(|| format!("creating a client for {} failed", cluster.bootstrap_servers))
}

/// Fails when the source and the target of `flow` report the same cluster id. A peer
/// address that reaches the instance's own cluster would copy every record into its
/// own topic without end, and offset sync would move its groups to the end.
pub(crate) async fn check_distinct_clusters(flow: &FlowSpec) -> anyhow::Result<()> {
    let target_id = cluster_id(&flow.target).await?;
    let source_id = cluster_id(&flow.source).await?;
    if source_id == target_id {
        anyhow::bail!(
            "the source {} and the target {} are the same cluster (cluster id {target_id}), \
             and copying a cluster into itself repeats every record without end; give the \
             peer's address, or start two clusters that share an id with distinct cluster ids",
            flow.source.bootstrap_servers,
            flow.target.bootstrap_servers
        );
    }
    Ok(())
}

/// Reads the cluster id of `cluster`, which keys replication progress.
pub(crate) async fn cluster_id(cluster: &ClusterSpec) -> anyhow::Result<String> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let client = explaining_client(&cluster)?;
        client
            .client()
            .fetch_cluster_id(METADATA_TIMEOUT)
            .ok_or_else(|| {
                anyhow::anyhow!(crate::kafka::explain_failure(
                    &client,
                    format!(
                        "the cluster {} did not return its cluster id within {} s",
                        cluster.bootstrap_servers,
                        METADATA_TIMEOUT.as_secs()
                    )
                ))
            })
    })
    .await?
}

pub async fn list_topics(cluster: &ClusterSpec) -> anyhow::Result<BTreeMap<String, i32>> {
    let cluster = cluster.clone();
    tokio::task::spawn_blocking(move || {
        let consumer = explaining_client(&cluster)?;
        let metadata = consumer
            .fetch_metadata(None, METADATA_TIMEOUT)
            .map_err(|e| {
                anyhow::anyhow!(crate::kafka::explain_failure(
                    &consumer,
                    format!(
                        "reading the topics of {} failed: {e}",
                        cluster.bootstrap_servers
                    )
                ))
            })?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| (t.name().to_string(), t.partitions().len() as i32))
            .collect())
    })
    .await?
}
