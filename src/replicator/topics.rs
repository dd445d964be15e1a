//! Topic selection, target names and the provenance header of replication.

use std::collections::BTreeMap;

use crate::protocol::{FlowSpec, ReplicationSpec};

/// Header that lists, comma-separated, the aliases of the clusters a
/// replicated record has been written to, its origin first.
pub const PROVENANCE_HEADER: &str = "weir-provenance";

/// Returns the target topic of `topic`: its explicit mapping, else the
/// renamed form `ALIAS.topic`, else the same name.
pub fn target_topic(flow: &FlowSpec, topic: &str) -> String {
    if let Some(mapped) = flow.topics_mapping.get(topic) {
        return mapped.clone();
    }
    match &flow.rename_prefix {
        Some(prefix) => format!("{prefix}{topic}"),
        None => topic.to_string(),
    }
}

/// Source topics a flow replicates, selected from the source cluster's
/// topics and their partition counts.
///
/// A regex matches from the start of the name, as subscriptions with a regex
/// do in Kafka clients. Internal topics (`__...`) are never selected, and
/// with renaming neither are topics named with the target's prefix, which
/// are copies the opposite flow made.
pub fn select_topics(
    spec: &ReplicationSpec,
    flow: &FlowSpec,
    source_topics: &BTreeMap<String, i32>,
    regex: Option<&regex::Regex>,
) -> (BTreeMap<String, i32>, Vec<String>) {
    let mut selected = BTreeMap::new();
    let mut missing = Vec::new();
    let target_prefix = flow
        .rename_prefix
        .as_ref()
        .map(|_| format!("{}.", flow.target.alias));
    match regex {
        Some(regex) => {
            for (topic, partitions) in source_topics {
                let internal = topic.starts_with("__");
                let copied_back = target_prefix
                    .as_ref()
                    .is_some_and(|prefix| topic.starts_with(prefix.as_str()));
                if !internal && !copied_back && regex.is_match(topic) {
                    selected.insert(topic.clone(), *partitions);
                }
            }
        }
        None => {
            for topic in &spec.topics {
                match source_topics.get(topic) {
                    Some(partitions) => {
                        selected.insert(topic.clone(), *partitions);
                    }
                    None => missing.push(topic.clone()),
                }
            }
        }
    }
    (selected, missing)
}

/// Compiles a task's topic regex, anchored at the start of the name.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})"))
        .size_limit(1 << 20)
        .build()
}

/// Decision for one record under the provenance rule.
#[derive(Debug, PartialEq, Eq)]
pub enum Provenance {
    /// The target cluster is already in the record's provenance: skip it.
    Skip,
    /// Write the record with this header value.
    Write(String),
}

/// Applies the provenance rule: a record is never written into a cluster
/// named in its header, and the source alias is appended to the header.
pub fn provenance(existing: Option<&[u8]>, source_alias: &str, target_alias: &str) -> Provenance {
    let existing = existing
        .and_then(|value| std::str::from_utf8(value).ok())
        .unwrap_or("");
    let clusters: Vec<&str> = existing.split(',').filter(|c| !c.is_empty()).collect();
    if clusters.contains(&target_alias) {
        return Provenance::Skip;
    }
    let mut value = clusters.join(",");
    if !clusters.contains(&source_alias) {
        if !value.is_empty() {
            value.push(',');
        }
        value.push_str(source_alias);
    }
    Provenance::Write(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ClusterSpec;

    fn cluster(alias: &str) -> ClusterSpec {
        ClusterSpec {
            alias: alias.to_string(),
            bootstrap_servers: "h:1".to_string(),
            kafka: BTreeMap::new(),
        }
    }

    fn flow(rename: bool, mapping: &[(&str, &str)]) -> FlowSpec {
        FlowSpec {
            direction: "pull".to_string(),
            source: cluster("b"),
            target: cluster("a"),
            rename_prefix: rename.then(|| "b.".to_string()),
            topics_mapping: mapping
                .iter()
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .collect(),
            workers: 1,
            offset_sync: false,
        }
    }

    fn spec(topics: &[&str]) -> ReplicationSpec {
        ReplicationSpec {
            task_id: "t".to_string(),
            task_name: "t".to_string(),
            generation: 0,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            topics_regex: None,
            flows: Vec::new(),
            consumer_strategy: "earliest".to_string(),
            compression_type: "none".to_string(),
            provenance_header: false,
            sync_consumer_offsets: false,
            replication_factor: None,
            refresh_interval_ms: 1000,
        }
    }

    #[test]
    fn target_names() {
        assert_eq!(target_topic(&flow(false, &[]), "orders"), "orders");
        assert_eq!(target_topic(&flow(true, &[]), "orders"), "b.orders");
        assert_eq!(
            target_topic(&flow(false, &[("orders", "o2")]), "orders"),
            "o2"
        );
        assert_eq!(
            target_topic(&flow(false, &[("orders", "o2")]), "other"),
            "other"
        );
    }

    #[test]
    fn regex_skips_internal_and_copied_back_topics() {
        let topics: BTreeMap<String, i32> = [
            ("orders", 3),
            ("orders-eu", 1),
            ("__consumer_offsets", 50),
            ("a.orders", 3),
            ("x-orders", 1),
        ]
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
        let regex = compile_regex("orders|a\\.orders|__.*").expect("regex");
        let (selected, missing) =
            select_topics(&spec(&[]), &flow(true, &[]), &topics, Some(&regex));
        assert_eq!(selected.keys().collect::<Vec<_>>(), ["orders", "orders-eu"]);
        assert!(missing.is_empty());
        let (selected, _) = select_topics(&spec(&[]), &flow(false, &[]), &topics, Some(&regex));
        assert!(selected.contains_key("a.orders"));
    }

    #[test]
    fn listed_topics_report_missing() {
        let topics: BTreeMap<String, i32> = [("orders".to_string(), 3)].into_iter().collect();
        let (selected, missing) =
            select_topics(&spec(&["orders", "gone"]), &flow(false, &[]), &topics, None);
        assert_eq!(selected.get("orders"), Some(&3));
        assert_eq!(missing, ["gone"]);
    }

    #[test]
    fn provenance_rule() {
        assert_eq!(
            provenance(None, "a", "b"),
            Provenance::Write("a".to_string())
        );
        assert_eq!(provenance(Some(b"b"), "a", "b"), Provenance::Skip);
        assert_eq!(
            provenance(Some(b"c"), "a", "b"),
            Provenance::Write("c,a".to_string())
        );
        assert_eq!(
            provenance(Some(b"a"), "a", "b"),
            Provenance::Write("a".to_string())
        );
        assert_eq!(provenance(Some(b"c,b"), "a", "b"), Provenance::Skip);
    }

    #[test]
    fn catastrophic_regex_is_linear() {
        let regex = compile_regex("(a+)+$").expect("regex");
        let name = format!("{}b", "a".repeat(200));
        assert!(!regex.is_match(&name));
    }
}
