//! Translation of consumer-group offsets from the source cluster to the
//! target, so that a consumer can move to the target and resume there.
//!
//! Records copied by a flow with offset sync carry their source offset in
//! the `weir-source-offset` header. For a group whose committed source
//! offset on a partition is `o`, the translated offset is the target offset
//! of the first copied record whose source offset is at least `o`, found by
//! binary search over the target partition. A consumer that starts there
//! skips nothing: every record it had not read on the source is at or after
//! that position. When no such copy exists yet, the translation is the
//! target's high watermark, because every later copy lands after it. The
//! result is committed for the same group on the target only when it moves
//! the group forward and the group has no active members there.
//!
//! NOTE: the search assumes source offsets grow along the target partition.
//! Copies repeated after a crash break that locally; the result then may
//! point at an earlier copy, which costs re-reads but skips nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::{debug, info, warn};

use super::flow::{cluster_config, list_topics};
use super::topics;
use crate::protocol::{FlowSpec, ReplicationSpec};

/// Header with the source offset of a copied record, in decimal.
pub const SOURCE_OFFSET_HEADER: &str = "weir-source-offset";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Source offset of a copied record, from its header.
fn source_offset<M: Message>(message: &M) -> Option<i64> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == SOURCE_OFFSET_HEADER)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
}

/// Reads a target partition at chosen offsets.
struct Probe<'a> {
    consumer: &'a BaseConsumer,
    topic: String,
    partition: i32,
}

impl Probe<'_> {
    /// Returns the offset and source offset of the first copied record at or
    /// after `offset` and before `high`, or `None` when there is none.
    fn first_copy_from(&self, offset: i64, high: i64) -> anyhow::Result<Option<(i64, i64)>> {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&self.topic, self.partition, Offset::Offset(offset))?;
        self.consumer.assign(&assignment)?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            if std::time::Instant::now() > deadline {
                anyhow::bail!(
                    "reading {}/{} at offset {offset} timed out",
                    self.topic,
                    self.partition
                );
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(message)) => {
                    if message.offset() >= high {
                        return Ok(None);
                    }
                    if let Some(source) = source_offset(&message) {
                        return Ok(Some((message.offset(), source)));
                    }
                    if message.offset() + 1 >= high {
                        return Ok(None);
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => {}
            }
        }
    }

    /// Returns the smallest target offset whose copy has a source offset of
    /// at least `wanted`, searching `[low, high)`, and whether such a copy
    /// exists. Without one the result is `high`.
    fn translate(&self, wanted: i64, low: i64, high: i64) -> anyhow::Result<(i64, bool)> {
        let (mut low, mut high_bound) = (low, high);
        let mut best = high;
        while low < high_bound {
            let middle = low + (high_bound - low) / 2;
            match self.first_copy_from(middle, high)? {
                Some((offset, source)) if source >= wanted => {
                    best = best.min(offset);
                    high_bound = middle;
                }
                Some((offset, _)) => low = offset + 1,
                None => high_bound = middle,
            }
        }
        Ok((best, best < high))
    }
}

/// Translates the committed offsets of every source group of a flow's
/// topics once, and commits the results on the target.
pub async fn sync_once(
    spec: &ReplicationSpec,
    flow: &FlowSpec,
    regex: Option<&regex::Regex>,
    last: &mut HashMap<(String, String, i32), i64>,
) -> anyhow::Result<usize> {
    let source_topics = list_topics(&flow.source).await?;
    let (selected, _) = topics::select_topics(spec, flow, &source_topics, regex);
    if selected.is_empty() {
        return Ok(0);
    }
    let spec = spec.clone();
    let flow = flow.clone();
    let mut remembered = std::mem::take(last);
    let result = tokio::task::spawn_blocking(move || {
        let committed = sync_blocking(&spec, &flow, &selected, &mut remembered);
        (committed, remembered)
    })
    .await?;
    *last = result.1;
    result.0
}

/// A consumer group of a cluster and whether it has members.
struct GroupListing {
    name: String,
    active: bool,
}

/// Lists the consumer groups of a cluster with the ListConsumerGroups admin
/// request (Kafka's ListGroups alone).
///
/// rdkafka's `fetch_group_list` also sends DescribeGroups, which tansu 0.6.0
/// fails on its sqlite storage, so the listing goes through librdkafka's
/// admin API directly.
fn group_list(cluster: &crate::protocol::ClusterSpec) -> anyhow::Result<Vec<GroupListing>> {
    use rd::rd_kafka_consumer_group_state_t as RDKafkaConsumerGroupState;
    use rdkafka::bindings as rd;

    let client: BaseConsumer = cluster_config(cluster, false).create()?;
    let rk = client.client().native_ptr();
    let timeout_ms = TIMEOUT.as_millis() as i32;
    // SAFETY: `rk` stays valid while `client` lives, which is until the end
    // of this function. Every object created here is destroyed before
    // returning, and the listing strings are copied while the event that
    // owns them is alive.
    unsafe {
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPS,
        );
        let queue = rd::rd_kafka_queue_new(rk);
        rd::rd_kafka_ListConsumerGroups(rk, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms + 1000);
        let outcome = if event.is_null() {
            Err(anyhow::anyhow!(
                "listing the consumer groups of {} timed out",
                cluster.bootstrap_servers
            ))
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            let message = std::ffi::CStr::from_ptr(rd::rd_kafka_event_error_string(event))
                .to_string_lossy()
                .into_owned();
            Err(anyhow::anyhow!(
                "listing the consumer groups of {} failed: {message}",
                cluster.bootstrap_servers
            ))
        } else {
            let result = rd::rd_kafka_event_ListConsumerGroups_result(event);
            let mut count = 0usize;
            let listings = rd::rd_kafka_ListConsumerGroups_result_valid(result, &mut count);
            let mut groups = Vec::with_capacity(count);
            for index in 0..count {
                let listing = *listings.add(index);
                let name =
                    std::ffi::CStr::from_ptr(rd::rd_kafka_ConsumerGroupListing_group_id(listing))
                        .to_string_lossy()
                        .into_owned();
                let state = rd::rd_kafka_ConsumerGroupListing_state(listing);
                let active = !matches!(
                    state,
                    RDKafkaConsumerGroupState::RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY
                        | RDKafkaConsumerGroupState::RD_KAFKA_CONSUMER_GROUP_STATE_DEAD
                        | RDKafkaConsumerGroupState::RD_KAFKA_CONSUMER_GROUP_STATE_UNKNOWN
                );
                groups.push(GroupListing { name, active });
            }
            Ok(groups)
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_queue_destroy(queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        outcome
    }
}

fn sync_blocking(
    spec: &ReplicationSpec,
    flow: &FlowSpec,
    selected: &BTreeMap<String, i32>,
    last: &mut HashMap<(String, String, i32), i64>,
) -> anyhow::Result<usize> {
    let names: Vec<String> = group_list(&flow.source)?
        .into_iter()
        .map(|g| g.name)
        .filter(|name| !name.starts_with("weir-"))
        .collect();
    let probe_consumer: BaseConsumer = {
        let mut config = cluster_config(&flow.target, false);
        config
            .set("group.id", format!("weir-{}-offset-probe", spec.task_id))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false");
        config.create()?
    };
    let active_on_target: Vec<String> = group_list(&flow.target)?
        .into_iter()
        .filter(|g| g.active)
        .map(|g| g.name)
        .collect();
    let mut committed_count = 0;
    for group in names {
        if active_on_target.contains(&group) {
            debug!(task_id = %spec.task_id, group, "The group is active on the target; its offsets are left alone.");
            continue;
        }
        let mut wanted = TopicPartitionList::new();
        for (topic, partitions) in selected {
            for partition in 0..*partitions {
                wanted.add_partition(topic, partition);
            }
        }
        let reader: BaseConsumer = {
            let mut config = cluster_config(&flow.source, false);
            config
                .set("group.id", &group)
                .set("enable.auto.commit", "false");
            config.create()?
        };
        let source_committed = reader.committed_offsets(wanted, TIMEOUT)?;
        let target_writer: BaseConsumer = {
            let mut config = cluster_config(&flow.target, false);
            config
                .set("group.id", &group)
                .set("enable.auto.commit", "false");
            config.create()?
        };
        let mut target_wanted = TopicPartitionList::new();
        let mut pending = Vec::new();
        for element in source_committed.elements() {
            let Offset::Offset(offset) = element.offset() else {
                continue;
            };
            let key = (
                group.clone(),
                element.topic().to_string(),
                element.partition(),
            );
            if last.get(&key) == Some(&offset) {
                continue;
            }
            let target_topic = topics::target_topic(flow, element.topic());
            target_wanted.add_partition(&target_topic, element.partition());
            pending.push((key, target_topic, element.partition(), offset));
        }
        if pending.is_empty() {
            continue;
        }
        let target_committed = target_writer.committed_offsets(target_wanted, TIMEOUT)?;
        let mut commit = TopicPartitionList::new();
        for (key, target_topic, partition, offset) in pending {
            let (low, high) = match probe_consumer.fetch_watermarks(
                &target_topic,
                partition,
                TIMEOUT,
            ) {
                Ok(marks) => marks,
                Err(e) => {
                    debug!(task_id = %spec.task_id, topic = %target_topic, partition, error = %e, "Reading target watermarks failed.");
                    continue;
                }
            };
            let probe = Probe {
                consumer: &probe_consumer,
                topic: target_topic.clone(),
                partition,
            };
            let (translated, exact) = probe.translate(offset, low, high)?;
            let translated = translated.clamp(low, high);
            let current = target_committed
                .find_partition(&target_topic, partition)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                });
            // A translation to the high watermark improves as replication
            // catches up, so only an exact one is final for this offset.
            if exact {
                last.insert(key, offset);
            }
            if current.is_some_and(|c| c >= translated) {
                continue;
            }
            commit.add_partition_offset(&target_topic, partition, Offset::Offset(translated))?;
        }
        if commit.count() == 0 {
            continue;
        }
        match target_writer.commit(&commit, CommitMode::Sync) {
            Ok(()) => {
                committed_count += commit.count();
                info!(task_id = %spec.task_id, direction = %flow.direction, group, partitions = commit.count(), "Consumer offsets translated to the target.");
            }
            Err(e) => {
                warn!(task_id = %spec.task_id, group, error = %e, "Committing translated offsets failed; retrying at the next sync.");
                for element in commit.elements() {
                    last.retain(|(g, t, p), _| {
                        !(g == &group
                            && topics::target_topic(flow, t) == element.topic()
                            && *p == element.partition())
                    });
                }
            }
        }
    }
    Ok(committed_count)
}
