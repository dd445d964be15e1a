//! Bandwidth, memory and freeze detection shared by the task runners of a node.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Node-wide limits. The server sets the bandwidth share and the memory budget
/// in every heartbeat response.
pub struct NodeLimits {
    bucket: Mutex<TokenBucket>,
    buffered: AtomicUsize,
    memory_budget: AtomicU64,
    freeze_epoch: AtomicU64,
}

struct TokenBucket {
    rate: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.updated = now;
        // Allow a burst of at most 100 ms of traffic, so that the rate over any
        // window longer than a second stays close to the cap.
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate / 10.0);
    }
}

impl NodeLimits {
    pub fn new(read_bytes_per_second: u64, memory_budget_bytes: u64) -> Self {
        Self {
            bucket: Mutex::new(TokenBucket {
                rate: read_bytes_per_second as f64,
                tokens: 0.0,
                updated: Instant::now(),
            }),
            buffered: AtomicUsize::new(0),
            memory_budget: AtomicU64::new(memory_budget_bytes),
            freeze_epoch: AtomicU64::new(0),
        }
    }

    /// Updates the bandwidth share (0 = unlimited) and the memory budget.
    pub fn configure(&self, read_bytes_per_second: u64, memory_budget_bytes: u64) {
        if let Ok(mut bucket) = self.bucket.lock() {
            let rate = read_bytes_per_second as f64;
            if (bucket.rate - rate).abs() > f64::EPSILON {
                bucket.refill(Instant::now());
                bucket.rate = rate;
                bucket.tokens = bucket.tokens.min(rate / 10.0);
            }
        }
        self.memory_budget
            .store(memory_budget_bytes, Ordering::Relaxed);
    }

    /// Takes `bytes` read from Kafka out of the bandwidth share.
    pub fn consume_bandwidth(&self, bytes: usize) {
        if let Ok(mut bucket) = self.bucket.lock()
            && bucket.rate > 0.0
        {
            bucket.refill(Instant::now());
            bucket.tokens -= bytes as f64;
        }
    }

    /// Returns how long to wait until the share allows reading again.
    pub fn throttle_wait(&self) -> Option<Duration> {
        let mut bucket = self.bucket.lock().ok()?;
        if bucket.rate <= 0.0 {
            return None;
        }
        bucket.refill(Instant::now());
        if bucket.tokens >= 0.0 {
            return None;
        }
        let seconds = -bucket.tokens / bucket.rate;
        Some(Duration::from_secs_f64(seconds.min(1.0)))
    }

    pub fn memory_budget(&self) -> u64 {
        self.memory_budget.load(Ordering::Relaxed)
    }

    /// Bytes that open chunks may hold: 5/16 of the budget. librdkafka's
    /// prefetch queue gets 1/16 per task ([`NodeLimits::prefetch_budget`]);
    /// the rest covers fetch buffers, per-partition state, allocator slack
    /// and the process itself.
    pub fn chunk_budget(&self) -> usize {
        usize::try_from(self.memory_budget() / 16 * 5).unwrap_or(usize::MAX)
    }

    /// Bytes librdkafka may hold in the prefetch queue of one consumer.
    pub fn prefetch_budget(&self) -> u64 {
        self.memory_budget() / 16
    }

    pub fn hold(&self, bytes: usize) {
        self.buffered.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn release(&self, bytes: usize) {
        let _ = self
            .buffered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(bytes))
            });
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// Counts the times the process was found frozen (for example by SIGSTOP)
    /// for longer than the lease.
    pub fn freeze_epoch(&self) -> u64 {
        self.freeze_epoch.load(Ordering::Acquire)
    }

    /// Starts a thread that wakes every 100 ms and bumps the freeze epoch when
    /// a wake-up comes later than `lease`. `Instant` keeps running while the
    /// process is stopped, so a SIGSTOP shows up as one long gap.
    pub fn start_freeze_watchdog(self: &std::sync::Arc<Self>, lease: Duration) {
        let limits = std::sync::Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("weir-freeze-watchdog".to_string())
            .spawn(move || {
                let mut last = Instant::now();
                loop {
                    std::thread::sleep(Duration::from_millis(100));
                    let now = Instant::now();
                    let gap = now.duration_since(last);
                    if gap > lease {
                        limits.freeze_epoch.fetch_add(1, Ordering::AcqRel);
                        tracing::warn!(
                            gap_ms = gap.as_millis() as u64,
                            "Node was frozen longer than its lease."
                        );
                    }
                    last = now;
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "Starting the freeze watchdog failed; frozen nodes are then caught only by the chunk chain.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_bucket_never_waits() {
        let limits = NodeLimits::new(0, 1 << 20);
        limits.consume_bandwidth(1 << 30);
        assert_eq!(limits.throttle_wait(), None);
    }

    #[test]
    fn bucket_waits_in_proportion_to_debt() {
        let limits = NodeLimits::new(1000, 1 << 20);
        limits.consume_bandwidth(500);
        let wait = limits.throttle_wait().expect("in debt");
        assert!(wait > Duration::from_millis(400), "{wait:?}");
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
    }

    #[test]
    fn held_bytes_are_released() {
        let limits = NodeLimits::new(0, 100);
        limits.hold(70);
        assert_eq!(limits.buffered_bytes(), 70);
        limits.release(100);
        assert_eq!(limits.buffered_bytes(), 0);
        assert_eq!(limits.chunk_budget(), 30);
    }
}
