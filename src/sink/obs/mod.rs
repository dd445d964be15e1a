//! The `OBS_SINK` task: Kafka records written as text objects to object storage.
//!
//! [`encode`] turns records into object content, [`naming`] places each chunk
//! under its key, [`store`] puts chunks create-if-absent with their offsets as
//! metadata, and [`runner`] drives a consumer group and the chunks of every
//! assigned partition. [`topics`] selects the topics of a `topics_regex` task.

pub mod encode;
pub mod naming;
pub mod runner;
pub mod store;
pub mod topics;
