//! Resolution of replication tasks into the flows a node runs.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::AppState;
use super::source_task::parse_topics_mapping;
use crate::config::InstanceSecurity;
use crate::protocol::{ClusterSpec, FlowSpec, ReplicationSpec};
use crate::replicator::topics;
use crate::store::{Instance, Task};

/// Returns how many of `task_num` consumers the node at `index` of `nodes`
/// live nodes runs: consumer `j` runs on node `j % nodes`.
pub fn worker_share(task_num: u32, nodes: usize, index: usize) -> u32 {
    let nodes = nodes.max(1);
    (0..task_num as usize)
        .filter(|j| j % nodes == index)
        .count() as u32
}

fn cluster_kafka(state: &AppState, security: &InstanceSecurity) -> BTreeMap<String, String> {
    let mut kafka = crate::kafka::security_properties(security);
    kafka.extend(state.config.nodes.kafka.clone());
    kafka
}

/// Security settings of a peer given by `bootstrap_servers` in a source task.
pub fn peer_security(source: &Map<String, Value>) -> InstanceSecurity {
    let text = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    InstanceSecurity {
        security_protocol: text("security_protocol"),
        sasl_mechanism: text("sasl_mechanism"),
        username: text("user_name"),
        password: text("password"),
    }
}

/// Returns the topic names of a stored task entity (empty for a regex task).
pub fn entity_topics(entity: &Map<String, Value>) -> Vec<String> {
    entity
        .get("topics")
        .and_then(Value::as_str)
        .map(|t| t.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

pub fn entity_topics_regex(entity: &Map<String, Value>) -> Option<String> {
    entity
        .get("topics_regex")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Builds the replication spec of a task for one node, or `None` for a task
/// of another type or whose peer instance no longer exists.
pub fn replication_spec(
    state: &AppState,
    instance: &Instance,
    task: &Task,
    live_nodes: usize,
    node_index: usize,
) -> Option<ReplicationSpec> {
    let entity = task.entity.as_object()?;
    if entity.get("source_type")?.as_str()? != "KAFKA_REPLICATOR_SOURCE" {
        return None;
    }
    let source = entity.get("source_task")?.as_object()?;
    let text = |name: &str| source.get(name).and_then(Value::as_str).unwrap_or("");
    let flag = |name: &str| source.get(name).and_then(Value::as_bool).unwrap_or(false);

    let local = ClusterSpec {
        alias: text("current_cluster_name").to_string(),
        bootstrap_servers: instance.bootstrap_servers.clone(),
        kafka: cluster_kafka(state, &instance.security),
    };
    let peer = match source.get("instance_id").and_then(Value::as_str) {
        Some(peer_id) => {
            let peer = state
                .store
                .instance(&instance.project_id, peer_id)
                .ok()
                .flatten()?;
            ClusterSpec {
                alias: text("cluster_name").to_string(),
                bootstrap_servers: peer.bootstrap_servers,
                kafka: cluster_kafka(state, &peer.security),
            }
        }
        None => ClusterSpec {
            alias: text("cluster_name").to_string(),
            bootstrap_servers: text("bootstrap_servers").to_string(),
            kafka: cluster_kafka(state, &peer_security(source)),
        },
    };
    let rename = flag("rename_topic_enabled");
    let mapping: BTreeMap<String, String> = parse_topics_mapping(text("topics_mapping"))
        .ok()?
        .into_iter()
        .collect();
    let task_num = source.get("task_num").and_then(Value::as_u64).unwrap_or(2) as u32;
    let workers = worker_share(task_num, live_nodes, node_index);
    let sync_offsets = flag("sync_consumer_offsets_enabled");
    let flow = |direction: &str, from: &ClusterSpec, to: &ClusterSpec| FlowSpec {
        direction: direction.to_string(),
        rename_prefix: rename.then(|| format!("{}.", from.alias)),
        topics_mapping: mapping.clone(),
        source: from.clone(),
        target: to.clone(),
        workers,
        offset_sync: sync_offsets && node_index == 0,
    };
    let flows = match text("direction") {
        "push" => vec![flow("push", &local, &peer)],
        "two-way" => vec![flow("pull", &peer, &local), flow("push", &local, &peer)],
        _ => vec![flow("pull", &peer, &local)],
    };
    Some(ReplicationSpec {
        task_id: task.id.clone(),
        task_name: task.name.clone(),
        generation: task.generation,
        topics: entity_topics(entity),
        topics_regex: entity_topics_regex(entity),
        flows,
        consumer_strategy: text("consumer_strategy").to_string(),
        compression_type: text("compression_type").to_string(),
        provenance_header: flag("provenance_header_enabled"),
        sync_consumer_offsets: flag("sync_consumer_offsets_enabled"),
        replication_factor: source
            .get("replication_factor")
            .and_then(Value::as_i64)
            .map(|f| f as i32),
        refresh_interval_ms: state.config.nodes.topic_refresh_interval_ms,
    })
}

/// A source topic that two replication tasks would copy into the same target
/// topic between the same clusters.
#[derive(Debug, PartialEq)]
pub struct Overlap {
    pub task_name: String,
    pub direction: String,
    pub source_topic: String,
    pub target_topic: String,
}

/// Bootstrap list in a canonical form, so that two spellings of one cluster
/// compare equal.
fn cluster_key(bootstrap_servers: &str) -> Vec<String> {
    let mut servers: Vec<String> = bootstrap_servers
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    servers.sort();
    servers.dedup();
    servers
}

/// Finds a replication task of `instance`, other than `task`, that would
/// write one of `task`'s target topics from the same source cluster into the
/// same target cluster, so that every record would be copied twice.
///
/// Topic lists are compared by name after renaming and mapping. Two
/// `topics_regex` tasks overlap when their patterns and renaming are equal.
/// NOTE: a regex task and a listed-topics task, or two different regexes,
/// are not compared, because their overlap depends on topics created later.
pub fn overlapping_task(
    state: &AppState,
    instance: &Instance,
    task: &Task,
    others: &[Task],
) -> Option<Overlap> {
    let spec = replication_spec(state, instance, task, 1, 0)?;
    for other in others.iter().filter(|o| o.id != task.id) {
        let Some(other_spec) = replication_spec(state, instance, other, 1, 0) else {
            continue;
        };
        for flow in &spec.flows {
            for other_flow in &other_spec.flows {
                let same_clusters = cluster_key(&flow.source.bootstrap_servers)
                    == cluster_key(&other_flow.source.bootstrap_servers)
                    && cluster_key(&flow.target.bootstrap_servers)
                        == cluster_key(&other_flow.target.bootstrap_servers);
                if !same_clusters {
                    continue;
                }
                let overlap = |source_topic: &str, target_topic: String| Overlap {
                    task_name: other.name.clone(),
                    direction: flow.direction.clone(),
                    source_topic: source_topic.to_string(),
                    target_topic,
                };
                match (&spec.topics_regex, &other_spec.topics_regex) {
                    (None, None) => {
                        for topic in &spec.topics {
                            let target = topics::target_topic(flow, topic);
                            if other_spec
                                .topics
                                .iter()
                                .any(|t| topics::target_topic(other_flow, t) == target)
                            {
                                return Some(overlap(topic, target));
                            }
                        }
                    }
                    (Some(regex), Some(other_regex))
                        if regex == other_regex
                            && flow.rename_prefix == other_flow.rename_prefix =>
                    {
                        return Some(overlap(regex, format!("{regex} (topics_regex)")));
                    }
                    _ => {}
                }
            }
        }
    }
    None
}

/// How often and how long [`remove_consumer_groups`] tries: the groups can
/// be removed only once the nodes have stopped the task's consumers.
const GROUP_REMOVAL_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const GROUP_REMOVAL_ATTEMPTS: u32 = 120;

/// Removes in the background the consumer groups that a replication task
/// left on its clusters: the progress group of each flow and generation on
/// the flow's source, and with `probe_group` the offset-probe group on its
/// target. Only the `generations` given are removed, so that a restarted
/// task keeps the group of its new generation.
///
/// NOTE: the removal lives in memory only. A server restart within the
/// retry window leaves the remaining groups in place.
pub fn remove_consumer_groups(
    state: &AppState,
    instance: &Instance,
    task: &Task,
    generations: std::ops::RangeInclusive<u64>,
    probe_group: bool,
) {
    let Some(spec) = replication_spec(state, instance, task, 1, 0) else {
        return;
    };
    tokio::spawn(async move {
        for attempt in 1..=GROUP_REMOVAL_ATTEMPTS {
            tokio::time::sleep(GROUP_REMOVAL_INTERVAL).await;
            let mut remaining = 0;
            for flow in &spec.flows {
                let target_id = match crate::replicator::flow::cluster_id(&flow.target).await {
                    Ok(id) => id,
                    Err(e) => {
                        remaining += 1;
                        tracing::debug!(task_id = %spec.task_id, attempt, error = %e, "Reading the target cluster id failed; retrying the group removal.");
                        continue;
                    }
                };
                let progress: Vec<String> = generations
                    .clone()
                    .map(|generation| {
                        let spec = ReplicationSpec {
                            generation,
                            ..spec.clone()
                        };
                        crate::replicator::flow::group_id(&spec, flow, &target_id)
                    })
                    .collect();
                let mut removals = vec![(&flow.source, progress)];
                if probe_group {
                    removals.push((
                        &flow.target,
                        vec![format!("weir-{}-offset-probe", spec.task_id)],
                    ));
                }
                for (cluster, groups) in removals {
                    match delete_groups_on(cluster, &groups).await {
                        Ok(left) => remaining += left,
                        Err(e) => {
                            remaining += 1;
                            tracing::debug!(task_id = %spec.task_id, cluster = %cluster.bootstrap_servers, attempt, error = %e, "Removing replication consumer groups failed; retrying.");
                        }
                    }
                }
            }
            if remaining == 0 {
                return;
            }
        }
        tracing::warn!(task_id = %spec.task_id, "Replication consumer groups were not all removed within 10 minutes; remove the groups named weir-TASK_ID-* by hand.");
    });
}

/// Deletes `groups` on `cluster`. Returns how many of them are still there.
async fn delete_groups_on(cluster: &ClusterSpec, groups: &[String]) -> anyhow::Result<usize> {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;

    let admin: AdminClient<DefaultClientContext> =
        crate::replicator::flow::cluster_config(cluster, true).create()?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let options = AdminOptions::new().request_timeout(Some(std::time::Duration::from_secs(10)));
    let mut left = 0;
    for result in admin.delete_groups(&names, &options).await? {
        match result {
            Ok(group) => {
                tracing::info!(group = %group, cluster = %cluster.bootstrap_servers, "Replication consumer group removed.")
            }
            Err((_, RDKafkaErrorCode::GroupIdNotFound)) => {}
            Err((group, code)) => {
                tracing::debug!(group = %group, error = %code, "Replication consumer group not removed yet.");
                left += 1;
            }
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_spread_over_nodes() {
        assert_eq!(worker_share(2, 2, 0), 1);
        assert_eq!(worker_share(2, 2, 1), 1);
        assert_eq!(worker_share(3, 2, 0), 2);
        assert_eq!(worker_share(3, 2, 1), 1);
        assert_eq!(worker_share(1, 3, 2), 0);
        let total: u32 = (0..4).map(|i| worker_share(5, 4, i)).sum();
        assert_eq!(total, 5);
    }
}
