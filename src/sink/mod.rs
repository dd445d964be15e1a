//! Sinks that nodes write records to.

pub mod obs;
