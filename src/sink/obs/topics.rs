//! Topic selection of a task with `topics_regex`.
//!
//! The node matches topic names itself with the `regex` crate, the engine
//! the server validates the pattern with, and subscribes to the explicit
//! list. librdkafka's own regex subscription (`rdregex.c`) uses the C
//! library's POSIX extended syntax, where `\d` is the letter `d` and `(?i)`
//! does not compile. Built without POSIX regex, it uses its bundled
//! backtracking engine, where `(a+)+$` against a long name of `a`s followed
//! by `b` takes exponential time and stalls the consumer. The `regex` crate
//! matches in time linear in the name.

use regex::{Regex, RegexBuilder};

/// Compiled-size limit of a pattern, in bytes, the same as the server's check.
const SIZE_LIMIT: usize = 1 << 16;

/// Prefix of Kafka's internal topics (`__consumer_offsets`,
/// `__transaction_state`), which a pattern never selects.
const INTERNAL_PREFIX: &str = "__";

/// A `topics_regex` pattern, anchored at the start of the topic name.
///
/// The pattern must match a prefix of the name, as if it began with `^`, and
/// it may end anywhere unless it ends with `$`. `a|b` selects names that
/// start with `a` or with `b`.
#[derive(Debug, Clone)]
pub struct TopicMatcher {
    regex: Regex,
}

impl TopicMatcher {
    /// Compiles `pattern` with the start anchor.
    pub fn new(pattern: &str) -> Result<Self, regex::Error> {
        let regex = RegexBuilder::new(&format!("^(?:{pattern})"))
            .size_limit(SIZE_LIMIT)
            .build()?;
        Ok(Self { regex })
    }

    pub fn matches(&self, topic: &str) -> bool {
        !topic.starts_with(INTERNAL_PREFIX) && self.regex.is_match(topic)
    }

    /// Returns the matching names, sorted and without duplicates.
    pub fn select<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut selected: Vec<String> = topics
            .into_iter()
            .filter(|topic| self.matches(topic))
            .map(str::to_string)
            .collect();
        selected.sort();
        selected.dedup();
        selected
    }
}

/// Topics added and removed between two sorted subscriptions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SubscriptionChange {
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl SubscriptionChange {
    pub fn between(current: &[String], next: &[String]) -> Self {
        Self {
            added: next
                .iter()
                .filter(|t| !current.contains(t))
                .cloned()
                .collect(),
            removed: current
                .iter()
                .filter(|t| !next.contains(t))
                .cloned()
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(pattern: &str) -> TopicMatcher {
        TopicMatcher::new(pattern).expect("valid pattern")
    }

    #[test]
    fn pattern_is_anchored_at_start_only() {
        let m = matcher("orders-.*");
        assert!(m.matches("orders-eu"));
        assert!(!m.matches("old-orders-eu"));
        let m = matcher("topic-obs");
        assert!(m.matches("topic-obs-1"), "the end is not anchored");
        let m = matcher("topic-obs$");
        assert!(!m.matches("topic-obs-1"));
        assert!(m.matches("topic-obs"));
    }

    #[test]
    fn alternation_is_anchored_as_a_whole() {
        let m = matcher("a1|b1");
        assert!(m.matches("a1-x"));
        assert!(m.matches("b1-x"));
        assert!(!m.matches("x-b1"));
    }

    #[test]
    fn leading_caret_is_accepted() {
        let m = matcher("^dump-");
        assert!(m.matches("dump-1"));
        assert!(!m.matches("x-dump-1"));
    }

    #[test]
    fn internal_topics_are_never_selected() {
        let m = matcher("_.*");
        assert!(!m.matches("__consumer_offsets"));
        assert!(!m.matches("__transaction_state"));
        assert!(m.matches("_schemas"));
    }

    #[test]
    fn select_sorts_and_removes_duplicates() {
        let m = matcher("t-");
        let selected = m.select(["t-b", "x", "t-a", "t-b"]);
        assert_eq!(selected, vec!["t-a".to_string(), "t-b".to_string()]);
    }

    #[test]
    fn catastrophic_pattern_returns() {
        // A backtracking engine takes about 2^60 steps here; the regex crate
        // returns after one linear pass, so this test ends.
        let m = matcher("rx-(a+)+$");
        let hostile = format!("rx-{}b", "a".repeat(60));
        assert!(!m.matches(&hostile));
        assert!(m.matches("rx-aaa"));
        let selected = m.select([hostile.as_str(), "rx-aaa", "rx-ab"]);
        assert_eq!(selected, vec!["rx-aaa".to_string()]);
    }

    #[test]
    fn invalid_and_oversized_patterns_are_rejected() {
        assert!(TopicMatcher::new("(a").is_err());
        assert!(TopicMatcher::new("a{1000}{1000}").is_err());
        // A trailing comment in verbose mode would swallow the closing anchor
        // group, so the pattern is rejected rather than matched unanchored.
        assert!(TopicMatcher::new("(?x)a # comment").is_err());
    }

    #[test]
    fn subscription_change_lists_added_and_removed() {
        let current = vec!["a".to_string(), "b".to_string()];
        let next = vec!["b".to_string(), "c".to_string()];
        let change = SubscriptionChange::between(&current, &next);
        assert_eq!(change.added, vec!["c".to_string()]);
        assert_eq!(change.removed, vec!["a".to_string()]);
        assert!(SubscriptionChange::between(&next, &next).is_empty());
    }
}
