//! The consumer loop of one `OBS_SINK` task on one node.
//!
//! # Delivery
//!
//! Every node of a connector runs the task in the same consumer group, so
//! Kafka spreads the partitions over the live nodes. For each assigned
//! partition the runner keeps one open chunk. A chunk is put create-if-absent
//! under a key derived from its first record, and the offset after it is
//! committed only once the put has succeeded. When the key already contains a
//! chunk (written by a node that died before committing, or by a node that was
//! expelled from the group and has not noticed yet), the runner adopts that
//! chunk: it drops the records the chunk covers and continues after its last
//! offset. Every writer of a partition therefore walks the same chain of
//! chunks, so no record lands in two objects, and no offset is committed past
//! a record that is not in an object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use super::encode::{TextFormat, record_delimiter_bytes};
use super::naming::{ObjectNaming, PartitionFormat};
use super::store::{
    ChunkMeta, ChunkStore, LocalStore, PutOutcome, S3Settings, S3Store, StoreError,
};
use super::topics::{SubscriptionChange, TopicMatcher};
use crate::node::limits::NodeLimits;
use crate::protocol::{TaskReport, TaskSpec};

/// Kafka settings a runner needs beyond the task itself.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub bootstrap_servers: String,
    pub extra: std::collections::BTreeMap<String, String>,
    pub session_timeout_ms: u64,
    /// Period of the topic check, which also picks up the topics that start
    /// or stop matching a `topics_regex`.
    pub topic_refresh_interval_ms: u64,
}

/// Handles shared between a runner and the node that owns it.
#[derive(Clone)]
pub struct RunnerHandles {
    pub limits: Arc<NodeLimits>,
    pub report: Arc<Mutex<TaskReport>>,
    pub stop: watch::Receiver<bool>,
}

#[derive(Debug)]
enum GroupEvent {
    Assigned(Vec<(String, i32)>),
    Revoked(Vec<(String, i32)>),
}

/// Collects rebalance events so that the loop applies them between messages.
#[derive(Default)]
struct GroupContext {
    events: Mutex<Vec<GroupEvent>>,
    /// Set when `events` holds an event, so that the loop checks the mutex
    /// only after a rebalance rather than for every record.
    pending: AtomicBool,
    task_id: String,
    /// The task starts at `latest`: pin the start of newly assigned partitions.
    pin_latest: bool,
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = partitions_of(tpl);
            info!(task_id = %self.task_id, ?partitions, "Partitions revoked.");
            if let Ok(mut events) = self.events.lock() {
                events.push(GroupEvent::Revoked(partitions));
                self.pending.store(true, Ordering::Release);
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = partitions_of(tpl);
                info!(task_id = %self.task_id, ?partitions, "Partitions assigned.");
                if self.pin_latest && tpl.count() > 0 {
                    crate::kafka::blocking(|| {
                        crate::kafka::pin_latest_start(consumer, tpl, &self.task_id)
                    });
                }
                if let Ok(mut events) = self.events.lock() {
                    events.push(GroupEvent::Assigned(partitions));
                    self.pending.store(true, Ordering::Release);
                }
            }
            Rebalance::Error(e) => warn!(task_id = %self.task_id, error = %e, "Rebalance failed."),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The open chunk of one partition.
struct Chunk {
    first_offset: i64,
    first_timestamp_ms: i64,
    last_offset: i64,
    record_count: u64,
    body: Vec<u8>,
    /// The body handed to the object store, kept for retries without a copy.
    sealed: Option<Bytes>,
    opened: Instant,
    /// Records in the chunk with their encoded length, kept so that the chunk
    /// can be cut after an adopted chunk that ends inside it.
    records: Vec<(i64, i64, usize)>,
}

impl Chunk {
    fn len(&self) -> usize {
        self.sealed.as_ref().map_or(self.body.len(), Bytes::len)
    }

    fn content(&self) -> &[u8] {
        self.sealed.as_deref().unwrap_or(&self.body)
    }

    /// Freezes the body for upload. No record is appended afterwards: a put
    /// runs inline in the consumer loop.
    fn seal(&mut self) -> Bytes {
        let body = std::mem::take(&mut self.body);
        self.sealed.get_or_insert_with(|| Bytes::from(body)).clone()
    }
}

struct PartitionState {
    /// Records below this offset are already in an object.
    next_offset: Option<i64>,
    chunk: Option<Chunk>,
    /// Look for an existing chunk before opening the next one. Set after an
    /// assignment, because a previous owner may have written past the
    /// committed offset.
    verify_next_chunk: bool,
}

impl PartitionState {
    fn new() -> Self {
        Self {
            next_offset: None,
            chunk: None,
            verify_next_chunk: true,
        }
    }
}

type PartitionKey = (String, i32);

struct Runner {
    spec: TaskSpec,
    consumer: Arc<StreamConsumer<GroupContext>>,
    store: Box<dyn ChunkStore>,
    naming: ObjectNaming,
    format: TextFormat,
    partitions: HashMap<PartitionKey, PartitionState>,
    handles: RunnerHandles,
    interval: Duration,
    flush_size: u64,
    part_size: usize,
    consecutive_failures: u32,
    freeze_epoch: u64,
    assigned_once: bool,
    /// Listed topics the broker does not know, found by [`Runner::check_topics`].
    missing_topics: Vec<String>,
    /// Matcher of a `topics_regex` task, whose subscription is the explicit
    /// list of matching topics.
    topic_matcher: Option<TopicMatcher>,
    /// Topics of the current subscription of a `topics_regex` task, sorted.
    matched_topics: Vec<String>,
    /// Failed topic listings in a row, to log the first and then one in 20.
    topic_listing_failures: u32,
    topic_check_interval: Duration,
    /// Records and bytes read since the last [`Runner::publish_read_counts`].
    unpublished_records: u64,
    unpublished_bytes: u64,
}

/// Most records taken from librdkafka's queue in one turn of the loop. Stop,
/// timers and the group's events are checked between turns, the memory
/// budget and the bandwidth share between records.
const RECORDS_PER_TURN: usize = 512;

/// Shortest period of the topic check, so that a small setting does not
/// turn it into a stream of metadata requests.
const MIN_TOPIC_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Outcome of trying to put one chunk.
enum Flushed {
    Done,
    /// The task is stopping; the chunk was dropped uncommitted.
    Abandoned,
}

/// Returns the consumer group of a task at a generation.
pub fn group_id(task_id: &str, generation: u64) -> String {
    if generation == 0 {
        format!("weir-{task_id}")
    } else {
        format!("weir-{task_id}-{generation}")
    }
}

fn build_store(spec: &TaskSpec) -> Result<Box<dyn ChunkStore>, StoreError> {
    let sink = &spec.sink;
    match &sink.endpoint {
        Some(endpoint) => Ok(Box::new(S3Store::new(&S3Settings {
            endpoint: endpoint.clone(),
            region: sink.region.clone(),
            bucket: sink.bucket.clone(),
            path_style: sink.path_style,
            access_key: sink.access_key.clone(),
            secret_key: sink.secret_key.clone(),
            source_id: sink.source_id.clone(),
        })?)),
        None => {
            let root = sink
                .local_root
                .as_deref()
                .ok_or_else(|| StoreError::Permanent {
                    key: String::new(),
                    message: "the task has neither an S3 endpoint nor a local bucket root"
                        .to_string(),
                })?;
            Ok(Box::new(Arc::new(LocalStore::new(
                std::path::Path::new(root),
                &sink.bucket,
                &sink.source_id,
            ))))
        }
    }
}

fn build_consumer(
    spec: &TaskSpec,
    kafka: &KafkaSettings,
    limits: &NodeLimits,
) -> Result<StreamConsumer<GroupContext>, KafkaError> {
    let mut config = crate::kafka::client_config(&kafka.bootstrap_servers);
    let session_timeout = kafka.session_timeout_ms.max(1000);
    let prefetch_kbytes = (limits.prefetch_budget() / 1024).clamp(1024, 65536);
    config
        .set("group.id", group_id(&spec.task_id, spec.generation))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", spec.sink.consumer_strategy.as_str())
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("session.timeout.ms", session_timeout.to_string())
        .set(
            "heartbeat.interval.ms",
            (session_timeout / 5).max(300).to_string(),
        )
        // Uploads run inline; a long object-store outage must not expel the node.
        .set("max.poll.interval.ms", "900000")
        .set("topic.metadata.refresh.interval.ms", "10000")
        .set("queued.max.messages.kbytes", prefetch_kbytes.to_string())
        .set(
            "fetch.max.bytes",
            (prefetch_kbytes * 1024 / 2).max(1 << 20).to_string(),
        )
        .set("max.partition.fetch.bytes", "1048576")
        .set("fetch.wait.max.ms", "100");
    for (key, value) in &kafka.extra {
        config.set(key, value);
    }
    config.create_with_context(GroupContext {
        events: Mutex::new(Vec::new()),
        pending: AtomicBool::new(false),
        task_id: spec.task_id.clone(),
        pin_latest: spec.sink.consumer_strategy == "latest",
    })
}

/// Runs the task until `handles.stop` turns true, then puts the open chunks and returns.
pub async fn run(
    spec: TaskSpec,
    kafka: KafkaSettings,
    handles: RunnerHandles,
) -> anyhow::Result<()> {
    let sink = &spec.sink;
    let format = TextFormat {
        store_keys: sink.store_keys,
        kv_delimiter: sink.kv_delimiter.as_bytes().to_vec(),
        record_delimiter: record_delimiter_bytes(&sink.record_delimiter).ok_or_else(|| {
            anyhow::anyhow!("invalid record_delimiter {:?}", sink.record_delimiter)
        })?,
    };
    let naming = ObjectNaming {
        prefix: sink.obs_path.clone(),
        partition_format: PartitionFormat::parse(&sink.partition_format).ok_or_else(|| {
            anyhow::anyhow!("invalid partition_format {:?}", sink.partition_format)
        })?,
        timezone: sink
            .timezone
            .parse()
            .map_err(|_| anyhow::anyhow!("invalid timezone {:?}", sink.timezone))?,
    };
    let topic_matcher = match &spec.topics_regex {
        Some(pattern) => Some(TopicMatcher::new(pattern).map_err(|e| {
            anyhow::anyhow!("invalid topics_regex {pattern:?}: {e}; fix the task's topics_regex")
        })?),
        None => None,
    };
    let store = build_store(&spec)?;
    let consumer = Arc::new(build_consumer(&spec, &kafka, &handles.limits)?);
    if topic_matcher.is_none() {
        // A topics_regex task subscribes at its first topic check.
        let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
    }
    info!(
        task_id = %spec.task_id,
        generation = spec.generation,
        group = %group_id(&spec.task_id, spec.generation),
        destination = %store.describe(),
        "Task runner started."
    );
    let mut runner = Runner {
        interval: Duration::from_secs(sink.deliver_time_interval_s),
        flush_size: sink.flush_size.max(1),
        part_size: usize::try_from(sink.part_size_bytes)
            .unwrap_or(usize::MAX)
            .max(1),
        freeze_epoch: handles.limits.freeze_epoch(),
        spec,
        consumer,
        store,
        naming,
        format,
        partitions: HashMap::new(),
        handles,
        consecutive_failures: 0,
        assigned_once: false,
        missing_topics: Vec::new(),
        topic_matcher,
        matched_topics: Vec::new(),
        topic_listing_failures: 0,
        topic_check_interval: Duration::from_millis(kafka.topic_refresh_interval_ms)
            .max(MIN_TOPIC_CHECK_INTERVAL),
        unpublished_records: 0,
        unpublished_bytes: 0,
    };
    // The task counts as running once the first assignment has been applied,
    // so that a client that waits for RUNNING and then produces finds the
    // records dumped even with `latest`.
    runner.set_state("starting", None);
    let result = runner.run_loop().await;
    runner.shutdown().await;
    result
}

impl Runner {
    fn task_id(&self) -> &str {
        &self.spec.task_id
    }

    fn set_state(&self, state: &str, error: Option<String>) {
        if let Ok(mut report) = self.handles.report.lock() {
            report.state = state.to_string();
            report.error = error;
            report.assigned_partitions = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        }
    }

    fn update_report(&self, update: impl FnOnce(&mut TaskReport)) {
        if let Ok(mut report) = self.handles.report.lock() {
            update(&mut report);
        }
    }

    fn stopping(&self) -> bool {
        *self.handles.stop.borrow()
    }

    async fn run_loop(&mut self) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut stop = self.handles.stop.clone();
        let consumer = Arc::clone(&self.consumer);
        // One stream for the whole loop: each `recv()` would register and
        // unregister a waker under a mutex for every record.
        let mut messages = consumer.stream();
        let mut last_topic_check: Option<Instant> = None;
        loop {
            self.apply_group_events();
            if self.stopping() {
                return Ok(());
            }
            if last_topic_check.is_none_or(|t| t.elapsed() >= self.topic_check_interval) {
                last_topic_check = Some(Instant::now());
                if self.topic_matcher.is_some() {
                    self.refresh_matched_topics().await;
                } else {
                    self.check_topics().await;
                }
            }
            self.check_freeze();
            if let Some(wait) = self.backpressure_wait() {
                tokio::select! {
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                self.flush_due().await;
                continue;
            }
            tokio::select! {
                // Stop and timers come before records, so that a busy topic
                // neither delays a pause nor starves the rotation of idle chunks.
                biased;
                _ = stop.changed() => {}
                _ = tick.tick() => self.flush_due().await,
                message = messages.next() => match message {
                    Some(Ok(message)) => {
                        self.take(message).await;
                        // Take the records librdkafka has already queued
                        // without going through the select again.
                        let mut taken = 1;
                        while taken < RECORDS_PER_TURN
                            && !self.stopping()
                            && self.backpressure_wait().is_none()
                        {
                            match messages.next().now_or_never() {
                                Some(Some(Ok(message))) => {
                                    self.take(message).await;
                                    taken += 1;
                                }
                                Some(Some(Err(e))) => {
                                    warn!(task_id = %self.task_id(), error = %e, "Kafka consumer error.");
                                    break;
                                }
                                Some(None) | None => break,
                            }
                        }
                        self.publish_read_counts();
                    }
                    Some(Err(e)) => {
                        warn!(task_id = %self.task_id(), error = %e, "Kafka consumer error.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    None => {
                        // rdkafka's message stream never ends; back off if it does.
                        warn!(task_id = %self.task_id(), "Kafka message stream ended unexpectedly.");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
            }
        }
    }

    /// Adds one record to its chunk and puts the chunk when it is full.
    async fn take(&mut self, message: BorrowedMessage<'_>) {
        self.apply_group_events();
        let full = self.append(&message);
        drop(message);
        if let Some(key) = full {
            self.flush_partition(&key).await;
        }
    }

    /// Adds the records and bytes read since the last call to the task report.
    fn publish_read_counts(&mut self) {
        let (records, bytes) = (self.unpublished_records, self.unpublished_bytes);
        if records == 0 {
            return;
        }
        self.unpublished_records = 0;
        self.unpublished_bytes = 0;
        self.update_report(|r| {
            r.records_read += records;
            r.bytes_read += bytes;
        });
    }

    /// Returns how long to wait before reading the next record, when the
    /// bandwidth share or the memory budget is used up.
    fn backpressure_wait(&self) -> Option<Duration> {
        let limits = &self.handles.limits;
        if limits.buffered_bytes() >= limits.chunk_budget() {
            return Some(Duration::from_millis(20));
        }
        limits.throttle_wait()
    }

    fn apply_group_events(&mut self) {
        let context = self.consumer.context();
        if !context.pending.load(Ordering::Acquire) {
            return;
        }
        let events = match context.events.lock() {
            Ok(mut events) => {
                context.pending.store(false, Ordering::Release);
                std::mem::take(&mut *events)
            }
            Err(_) => return,
        };
        for event in events {
            match event {
                GroupEvent::Assigned(partitions) => {
                    for key in partitions {
                        self.partitions.insert(key, PartitionState::new());
                    }
                    if !self.assigned_once {
                        self.assigned_once = true;
                        if self.missing_topics.is_empty() {
                            self.set_state("running", None);
                        }
                    }
                }
                GroupEvent::Revoked(partitions) => {
                    for key in partitions {
                        if let Some(state) = self.partitions.remove(&key) {
                            self.release(state.chunk);
                        }
                    }
                }
            }
        }
        let count = u32::try_from(self.partitions.len()).unwrap_or(u32::MAX);
        self.update_report(|r| r.assigned_partitions = count);
    }

    /// Drops an unwritten chunk. Its records were never committed, so the
    /// partition's next owner reads them again.
    fn release(&self, chunk: Option<Chunk>) {
        if let Some(chunk) = chunk {
            self.handles.limits.release(chunk.len());
        }
    }

    /// Drops every open chunk after the process was frozen longer than the
    /// lease, because the group has probably given its partitions to another
    /// node by now. Reading resumes from the committed offsets.
    fn check_freeze(&mut self) {
        let epoch = self.handles.limits.freeze_epoch();
        if epoch == self.freeze_epoch {
            return;
        }
        self.freeze_epoch = epoch;
        warn!(
            task_id = %self.task_id(),
            partitions = self.partitions.len(),
            "The node was frozen past its lease; dropping open chunks and rereading from committed offsets."
        );
        let keys: Vec<PartitionKey> = self.partitions.keys().cloned().collect();
        for key in keys {
            if let Some(state) = self.partitions.get_mut(&key) {
                let chunk = state.chunk.take();
                state.next_offset = None;
                state.verify_next_chunk = true;
                self.release(chunk);
            }
        }
        crate::kafka::blocking(|| self.seek_to_committed());
    }

    fn seek_to_committed(&self) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition) in self.partitions.keys() {
            tpl.add_partition(topic, *partition);
        }
        match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
        {
            Ok(committed) => {
                for element in committed.elements() {
                    if let Offset::Offset(offset) = element.offset() {
                        let _ = self.consumer.seek(
                            element.topic(),
                            element.partition(),
                            Offset::Offset(offset),
                            Duration::from_secs(5),
                        );
                    }
                }
            }
            Err(e) => {
                warn!(task_id = %self.task_id(), error = %e, "Reading committed offsets failed.")
            }
        }
    }

    /// Adds a record to its partition's chunk. Returns the partition when the
    /// chunk reached its size bound.
    fn append(&mut self, message: &BorrowedMessage<'_>) -> Option<PartitionKey> {
        let key = (message.topic().to_string(), message.partition());
        let offset = message.offset();
        let record_key = message.key();
        let value = message.payload();
        let raw_len = record_key.map_or(0, <[u8]>::len) + value.map_or(0, <[u8]>::len);
        self.handles.limits.consume_bandwidth(raw_len);
        self.unpublished_records += 1;
        self.unpublished_bytes += raw_len as u64;
        let state = self
            .partitions
            .entry(key.clone())
            .or_insert_with(PartitionState::new);
        if state.next_offset.is_some_and(|next| offset < next) {
            return None;
        }
        let timestamp = message.timestamp().to_millis().unwrap_or(0);
        let encoded = self.format.encoded_len(record_key, value);
        let chunk = state.chunk.get_or_insert_with(|| Chunk {
            first_offset: offset,
            first_timestamp_ms: timestamp,
            last_offset: offset,
            record_count: 0,
            body: Vec::with_capacity(encoded.max(4096)),
            sealed: None,
            opened: Instant::now(),
            records: Vec::new(),
        });
        self.format.append(&mut chunk.body, record_key, value);
        chunk.last_offset = offset;
        chunk.record_count += 1;
        chunk.records.push((offset, timestamp, encoded));
        state.next_offset = Some(offset + 1);
        self.handles.limits.hold(encoded);
        let full = chunk.record_count >= self.flush_size || chunk.body.len() >= self.part_size;
        let verify = state.verify_next_chunk && chunk.record_count == 1;
        (full || verify).then_some(key)
    }

    /// Puts every chunk whose delivery interval has passed, and the largest
    /// chunk when the node is over its memory budget.
    async fn flush_due(&mut self) {
        let due: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, s)| {
                s.chunk
                    .as_ref()
                    .is_some_and(|c| c.opened.elapsed() >= self.interval)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if self.stopping() {
                return;
            }
            self.flush_partition(&key).await;
        }
        let limits = &self.handles.limits;
        if limits.buffered_bytes() >= limits.chunk_budget() {
            let largest = self
                .partitions
                .iter()
                .filter_map(|(k, s)| s.chunk.as_ref().map(|c| (c.len(), k.clone())))
                .max();
            if let Some((_, key)) = largest {
                debug!(task_id = %self.task_id(), topic = %key.0, partition = key.1, "Memory budget reached; putting the largest chunk early.");
                self.flush_partition(&key).await;
            }
        }
    }

    /// Puts the chunk of one partition (or, for a chunk that was just opened
    /// after an assignment, only checks for an existing chunk at its key).
    async fn flush_partition(&mut self, key: &PartitionKey) {
        let forced = self.stopping()
            || self.handles.limits.buffered_bytes() >= self.handles.limits.chunk_budget();
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        let Some(chunk) = state.chunk.as_ref() else {
            return;
        };
        let object_key =
            self.naming
                .chunk_key(&key.0, key.1, chunk.first_offset, chunk.first_timestamp_ms);
        let full = chunk.record_count >= self.flush_size
            || chunk.len() >= self.part_size
            || chunk.opened.elapsed() >= self.interval
            || forced;
        if state.verify_next_chunk && !full {
            state.verify_next_chunk = false;
            if let Some(Some(existing)) = self.head_with_retry(&object_key).await {
                self.adopt(key, existing)
            }
            return;
        }
        match self.put_with_retry(key, &object_key).await {
            Flushed::Done | Flushed::Abandoned => {}
        }
    }

    async fn head_with_retry(&mut self, object_key: &str) -> Option<Option<ChunkMeta>> {
        let mut attempt = 0u32;
        loop {
            match self.store.head(object_key).await {
                Ok(meta) => {
                    self.record_success();
                    return Some(meta);
                }
                Err(e) => {
                    if self.stopping() {
                        return None;
                    }
                    self.record_failure(object_key, &e, attempt);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn put_with_retry(&mut self, key: &PartitionKey, object_key: &str) -> Flushed {
        let mut attempt = 0u32;
        loop {
            let Some(chunk) = self.partitions.get_mut(key).and_then(|s| s.chunk.as_mut()) else {
                return Flushed::Done;
            };
            let meta = ChunkMeta {
                first_offset: chunk.first_offset,
                last_offset: chunk.last_offset,
                record_count: chunk.record_count,
            };
            let body = chunk.seal();
            if self.handles.limits.freeze_epoch() != self.freeze_epoch {
                self.check_freeze();
                return Flushed::Abandoned;
            }
            let started = Instant::now();
            // NOTE: the put blocks this task's loop, one object at a time.
            // librdkafka keeps prefetching meanwhile, which hid the stall
            // while tansu 0.6.0 served 15 MB/s in scripts/bench.sh runs; a
            // faster broker needs puts in flight while the loop reads on.
            match self.store.put_if_absent(object_key, body, meta).await {
                Ok(PutOutcome::Created) => {
                    self.record_success();
                    info!(
                        task_id = %self.task_id(),
                        topic = %key.0,
                        partition = key.1,
                        object_key,
                        first_offset = meta.first_offset,
                        last_offset = meta.last_offset,
                        records = meta.record_count,
                        upload_ms = started.elapsed().as_millis() as u64,
                        "Chunk written."
                    );
                    self.complete(key, meta);
                    return Flushed::Done;
                }
                Ok(PutOutcome::Exists(existing)) => {
                    self.record_success();
                    info!(
                        task_id = %self.task_id(),
                        topic = %key.0,
                        partition = key.1,
                        object_key,
                        existing_last_offset = existing.last_offset,
                        own_last_offset = meta.last_offset,
                        "Chunk already written by another writer; adopting it."
                    );
                    self.adopt(key, existing);
                    return Flushed::Done;
                }
                Err(e) => {
                    if self.stopping() {
                        warn!(task_id = %self.task_id(), object_key, error = %e, "Task stopping; dropping an unwritten chunk, its records stay uncommitted.");
                        return Flushed::Abandoned;
                    }
                    self.record_failure(object_key, &e, attempt);
                    self.update_report(|r| r.upload_retries += 1);
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Lists the topics of the cluster, matches them against the task's
    /// `topics_regex` and subscribes to the matching ones when they changed.
    ///
    /// A failed listing keeps the current subscription. Without a matching
    /// topic the task has nothing to read, and it counts as running.
    async fn refresh_matched_topics(&mut self) {
        let Some(matcher) = self.topic_matcher.clone() else {
            return;
        };
        let consumer = Arc::clone(&self.consumer);
        let listed = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, Duration::from_secs(10))
                .map(|metadata| {
                    let names = metadata
                        .topics()
                        .iter()
                        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
                        .map(|t| t.name());
                    matcher.select(names)
                })
        })
        .await;
        let matched = match listed {
            Ok(Ok(matched)) => matched,
            Ok(Err(e)) => {
                self.record_listing_failure(&e.to_string());
                return;
            }
            Err(e) => {
                self.record_listing_failure(&e.to_string());
                return;
            }
        };
        if self.topic_listing_failures > 0 {
            info!(task_id = %self.task_id(), failures = self.topic_listing_failures, "Listing topics works again.");
            self.topic_listing_failures = 0;
        }
        let change = SubscriptionChange::between(&self.matched_topics, &matched);
        if change.is_empty() {
            if matched.is_empty() && !self.assigned_once && self.consecutive_failures == 0 {
                self.set_state("running", None);
            }
            return;
        }
        info!(
            task_id = %self.task_id(),
            added = ?change.added,
            removed = ?change.removed,
            topics = matched.len(),
            "Topics matching topics_regex changed; subscribing to the new list."
        );
        if matched.is_empty() {
            self.consumer.unsubscribe();
            if self.consecutive_failures == 0 {
                self.set_state("running", None);
            }
        } else {
            let topics: Vec<&str> = matched.iter().map(String::as_str).collect();
            if let Err(e) = self.consumer.subscribe(&topics) {
                warn!(task_id = %self.task_id(), error = %e, "Subscribing to the matching topics failed; retrying at the next topic check.");
                return;
            }
        }
        self.matched_topics = matched;
    }

    fn record_listing_failure(&mut self, error: &str) {
        self.topic_listing_failures += 1;
        let failures = self.topic_listing_failures;
        if failures == 1 || failures.is_multiple_of(20) {
            warn!(task_id = %self.task_id(), failures, error, "Listing topics for topics_regex failed; keeping the current subscription.");
        }
    }

    /// Reports the task as failing while a listed topic does not exist, since
    /// the consumer then waits for it without an error of its own.
    async fn check_topics(&mut self) {
        if self.spec.topics.is_empty() {
            return;
        }
        let consumer = Arc::clone(&self.consumer);
        let topics = self.spec.topics.clone();
        let missing = tokio::task::spawn_blocking(move || {
            let mut missing = Vec::new();
            for topic in topics {
                // An unreachable broker is not a missing topic: librdkafka
                // logs and retries the connection itself.
                if let Ok(metadata) = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))
                {
                    let absent = metadata
                        .topics()
                        .iter()
                        .any(|t| t.error().is_some() || t.partitions().is_empty());
                    if absent {
                        missing.push(topic);
                    }
                }
            }
            missing
        })
        .await
        .unwrap_or_default();
        let was_missing = !self.missing_topics.is_empty();
        if missing.is_empty() {
            if was_missing {
                info!(task_id = %self.task_id(), "Every topic of the task exists now.");
                self.missing_topics.clear();
                if self.consecutive_failures == 0 {
                    self.set_state("running", None);
                }
            }
            return;
        }
        if missing != self.missing_topics {
            warn!(task_id = %self.task_id(), ?missing, "Topics of the task do not exist on the instance.");
        }
        let message = format!(
            "topics {} do not exist on the instance; create them or fix the task's topics",
            missing.join(", ")
        );
        self.missing_topics = missing;
        self.set_state("failing", Some(message));
    }

    fn record_success(&mut self) {
        if self.consecutive_failures > 0 {
            info!(task_id = %self.task_id(), failures = self.consecutive_failures, "Object store reachable again.");
            self.consecutive_failures = 0;
            if self.missing_topics.is_empty() {
                self.set_state("running", None);
            }
        }
    }

    fn record_failure(&mut self, object_key: &str, error: &StoreError, attempt: u32) {
        self.consecutive_failures += 1;
        // Log the first failures, then one in ten, so an outage does not flood the log.
        if attempt < 3 || attempt.is_multiple_of(10) {
            let level_error = !error.is_transient();
            if level_error {
                error!(task_id = %self.task_id(), object_key, attempt, error = %error, "Object store request failed; retrying.");
            } else {
                warn!(task_id = %self.task_id(), object_key, attempt, error = %error, "Object store request failed; retrying.");
            }
        }
        if self.consecutive_failures >= 3 || !error.is_transient() {
            self.set_state("failing", Some(error.to_string()));
        }
    }

    /// Marks a written chunk done: frees its memory and commits the offset after it.
    fn complete(&mut self, key: &PartitionKey, meta: ChunkMeta) {
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        let Some(chunk) = state.chunk.take() else {
            return;
        };
        let bytes = chunk.len();
        self.handles.limits.release(bytes);
        state.verify_next_chunk = false;
        self.update_report(|r| {
            r.records_written += meta.record_count;
            r.bytes_written += bytes as u64;
            r.objects_written += 1;
        });
        self.commit(key, meta.last_offset + 1);
    }

    /// Continues after a chunk another writer put: records it covers are
    /// dropped, later buffered records form the new open chunk.
    fn adopt(&mut self, key: &PartitionKey, existing: ChunkMeta) {
        let Some(state) = self.partitions.get_mut(key) else {
            return;
        };
        let next = existing.last_offset + 1;
        let mut released = 0usize;
        let mut seek = false;
        if let Some(chunk) = state.chunk.take() {
            if chunk.last_offset < next {
                released = chunk.len();
                seek = state.next_offset.is_some_and(|n| n < next);
            } else {
                let (kept, cut_bytes) = split_chunk(&chunk, next);
                released = cut_bytes;
                state.chunk = kept;
            }
        } else {
            seek = true;
        }
        if state.next_offset.is_none_or(|n| n < next) {
            state.next_offset = Some(next);
        }
        // The chain may continue with chunks the previous owner also wrote.
        state.verify_next_chunk = true;
        self.handles.limits.release(released);
        self.update_report(|r| r.objects_adopted += 1);
        if seek
            && let Err(e) =
                self.consumer
                    .seek(&key.0, key.1, Offset::Offset(next), Duration::from_secs(5))
        {
            debug!(task_id = %self.task_id(), topic = %key.0, partition = key.1, error = %e, "Seek after adopted chunk failed; skipping records instead.");
        }
        self.commit(key, next);
    }

    fn commit(&self, key: &PartitionKey, next_offset: i64) {
        let mut tpl = TopicPartitionList::new();
        if let Err(e) = tpl.add_partition_offset(&key.0, key.1, Offset::Offset(next_offset)) {
            warn!(task_id = %self.task_id(), error = %e, "Building the commit failed.");
            return;
        }
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            // The next chunk's commit covers this one; the chain of chunks keeps
            // a stale commit from duplicating records.
            warn!(task_id = %self.task_id(), topic = %key.0, partition = key.1, next_offset, error = %e, "Offset commit failed.");
        }
    }

    /// Puts the open chunks and leaves the group.
    async fn shutdown(&mut self) {
        self.publish_read_counts();
        self.apply_group_events();
        let keys: Vec<PartitionKey> = self
            .partitions
            .iter()
            .filter(|(_, s)| s.chunk.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(20);
        for key in keys {
            if Instant::now() > deadline {
                break;
            }
            let Some(state) = self.partitions.get_mut(&key) else {
                continue;
            };
            state.verify_next_chunk = false;
            let object_key = match state.chunk.as_ref() {
                Some(c) => {
                    self.naming
                        .chunk_key(&key.0, key.1, c.first_offset, c.first_timestamp_ms)
                }
                None => continue,
            };
            match tokio::time::timeout(Duration::from_secs(10), self.store_once(&key, &object_key))
                .await
            {
                Ok(()) => {}
                Err(_) => {
                    warn!(task_id = %self.task_id(), object_key, "Putting a chunk at shutdown timed out; its records stay uncommitted.")
                }
            }
        }
        for (_, state) in self.partitions.drain() {
            if let Some(chunk) = state.chunk {
                self.handles.limits.release(chunk.len());
            }
        }
        let _ = self.consumer.commit_consumer_state(CommitMode::Sync);
        self.consumer.unsubscribe();
        self.set_state("stopped", None);
        info!(task_id = %self.spec.task_id, generation = self.spec.generation, "Task runner stopped.");
    }

    /// Tries one put, at shutdown, where retrying would delay the stop.
    async fn store_once(&mut self, key: &PartitionKey, object_key: &str) {
        let Some(chunk) = self.partitions.get_mut(key).and_then(|s| s.chunk.as_mut()) else {
            return;
        };
        let meta = ChunkMeta {
            first_offset: chunk.first_offset,
            last_offset: chunk.last_offset,
            record_count: chunk.record_count,
        };
        let body = chunk.seal();
        match self.store.put_if_absent(object_key, body, meta).await {
            Ok(PutOutcome::Created) => self.complete(key, meta),
            Ok(PutOutcome::Exists(existing)) => self.adopt(key, existing),
            Err(e) => {
                warn!(task_id = %self.task_id(), object_key, error = %e, "Putting a chunk at shutdown failed; its records stay uncommitted.")
            }
        }
    }
}

/// Splits off the records at and after `next`, returning them as a new chunk
/// (or `None`) and the number of bytes dropped.
fn split_chunk(chunk: &Chunk, next: i64) -> (Option<Chunk>, usize) {
    let mut dropped = 0usize;
    let mut start = 0usize;
    let mut index = 0usize;
    for (offset, _, len) in &chunk.records {
        if *offset >= next {
            break;
        }
        dropped += len;
        start += len;
        index += 1;
    }
    let rest = chunk.records.get(index..).unwrap_or_default();
    let Some((first_offset, first_ts, _)) = rest.first().copied() else {
        return (None, chunk.len());
    };
    let body = chunk.content().get(start..).unwrap_or_default().to_vec();
    let kept = Chunk {
        first_offset,
        first_timestamp_ms: first_ts,
        last_offset: chunk.last_offset,
        record_count: rest.len() as u64,
        body,
        sealed: None,
        opened: chunk.opened,
        records: rest.to_vec(),
    };
    (Some(kept), dropped)
}

/// Exponential backoff with jitter: 200 ms doubling to 10 s.
fn backoff(attempt: u32) -> Duration {
    let base = 200u64.saturating_mul(1u64 << attempt.min(6)).min(10_000);
    let jitter = rand::random_range(0..=base / 4);
    Duration::from_millis(base + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offsets: &[i64]) -> Chunk {
        let format = TextFormat {
            store_keys: false,
            kv_delimiter: b":".to_vec(),
            record_delimiter: b"\n".to_vec(),
        };
        let mut body = Vec::new();
        let mut records = Vec::new();
        for offset in offsets {
            let value = format!("v{offset}");
            format.append(&mut body, None, Some(value.as_bytes()));
            records.push((
                *offset,
                offset * 10,
                format.encoded_len(None, Some(value.as_bytes())),
            ));
        }
        Chunk {
            first_offset: offsets[0],
            first_timestamp_ms: offsets[0] * 10,
            last_offset: *offsets.last().expect("offsets"),
            record_count: offsets.len() as u64,
            body,
            sealed: None,
            opened: Instant::now(),
            records,
        }
    }

    #[test]
    fn split_chunk_keeps_records_after_adopted_chunk() {
        let (kept, dropped) = split_chunk(&chunk(&[5, 6, 7, 8]), 7);
        let kept = kept.expect("records remain");
        assert_eq!(kept.first_offset, 7);
        assert_eq!(kept.first_timestamp_ms, 70);
        assert_eq!(kept.record_count, 2);
        assert_eq!(kept.body, b"v7\nv8\n");
        assert_eq!(dropped, 6);
    }

    #[test]
    fn split_chunk_past_end_drops_everything() {
        let original = chunk(&[1, 2]);
        let (kept, dropped) = split_chunk(&original, 3);
        assert!(kept.is_none());
        assert_eq!(dropped, original.len());
    }

    #[test]
    fn split_chunk_handles_offset_gaps() {
        // Compacted topics have gaps between offsets.
        let (kept, _) = split_chunk(&chunk(&[10, 20, 30]), 15);
        let kept = kept.expect("records remain");
        assert_eq!(kept.first_offset, 20);
        assert_eq!(kept.body, b"v20\nv30\n");
    }

    #[test]
    fn group_id_changes_with_generation() {
        assert_eq!(group_id("t1", 0), "weir-t1");
        assert_eq!(group_id("t1", 2), "weir-t1-2");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(0) < Duration::from_millis(300));
        assert!(backoff(20) <= Duration::from_millis(12_500));
        assert!(backoff(3) >= Duration::from_millis(1600));
    }
}
