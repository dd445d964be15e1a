"""Backlogs of fixed-size records, produced with rdkafka_performance -P.

Each partition gets the same number of records, a multiple of the flush
size. Every chunk a node writes then closes by its record count, so the last
object of each partition appears as soon as its last record is read.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness.kafka import Kafka

# Producer settings: large batches, so that the broker stores few of them.
PRODUCER_SETTINGS = {
    "linger.ms": "20",
    "batch.size": "1000000",
    "batch.num.messages": "100000",
    "queue.buffering.max.kbytes": "262144",
    "message.timeout.ms": "300000",
}


@dataclass
class Backlog:
    """A topic whose partitions each hold `per_partition` records of `record_size` bytes."""

    topic: str
    partitions: int
    # Records of each partition when they are equal, else None (see `ends`).
    per_partition: int | None
    record_size: int
    flush_size: int
    ends: dict[int, int]
    produce_seconds: float = 0.0

    @property
    def records(self) -> int:
        return sum(self.ends.values())

    @property
    def bytes(self) -> int:
        return self.records * self.record_size

    def as_dict(self) -> dict:
        return {
            "topic": self.topic,
            "partitions": self.partitions,
            "records_per_partition": self.per_partition,
            "record_size": self.record_size,
            "records": self.records,
            "bytes": self.bytes,
            "flush_size": self.flush_size,
            "produce_seconds": round(self.produce_seconds, 2),
        }


def plan(record_size: int, partitions: int, total_bytes: int, object_bytes: int) -> tuple[int, int]:
    """Return (flush_size, records per partition) for a backlog of at least
    `total_bytes` whose objects hold about `object_bytes` each (at least one
    record per object)."""
    flush_size = max(1, object_bytes // (record_size + 1))
    per_partition = -(-total_bytes // (record_size * partitions))
    per_partition = -(-per_partition // flush_size) * flush_size
    return flush_size, per_partition


def produce_backlog(
    rdkafka_performance: Path,
    kafka: Kafka,
    log_dir: Path,
    name: str,
    record_size: int,
    partitions: int,
    total_bytes: int,
    object_bytes: int,
    parallel: int = 2,
    exact: bool = True,
) -> Backlog:
    """Create a topic and fill it with records of `record_size` bytes.

    exact=True gives every partition the same number of records, a multiple
    of the flush size, with one rdkafka_performance process per partition.
    exact=False spreads about `total_bytes` with the random partitioner over
    `parallel` processes, for topics with many partitions. Raises when a
    process fails or, with exact, when a high watermark is not the planned count.
    """
    flush_size, per_partition = plan(record_size, partitions, total_bytes, object_bytes)
    topic = kafka.unique_topic(name)
    kafka.create_topic(topic, partitions, timeout=300)
    started = time.monotonic()
    if exact:
        # (partition, records) per process; -1 is the random partitioner.
        pending = [(partition, per_partition) for partition in range(partitions)]
    else:
        count = -(-total_bytes // record_size)
        pending = [(-1, count // parallel + (1 if index < count % parallel else 0)) for index in range(parallel)]
    running: list[tuple[int, subprocess.Popen, Path]] = []
    log_dir.mkdir(parents=True, exist_ok=True)
    while pending or running:
        while pending and len(running) < parallel:
            partition, count = pending.pop(0)
            argv = [
                str(rdkafka_performance),
                "-P",
                "-t",
                topic,
                "-p",
                str(partition),
                "-b",
                kafka.bootstrap,
                "-s",
                str(record_size),
                "-c",
                str(count),
                "-q",
            ]
            for key, value in PRODUCER_SETTINGS.items():
                argv += ["-X", f"{key}={value}"]
            log_path = log_dir / f"produce-{topic}-{partition}-{len(pending)}.log"
            with open(log_path, "wb") as log:
                process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            running.append((partition, process, log_path))
        partition, process, log_path = running.pop(0)
        if process.wait(timeout=1800) != 0:
            raise RuntimeError(
                f"rdkafka_performance -P for {topic} partition {partition} exited with {process.returncode}; "
                f"see {log_path}"
            )
    elapsed = time.monotonic() - started
    marks = kafka.high_watermarks(topic)
    if exact:
        wrong = {p: n for p, n in marks.items() if n != per_partition}
        if wrong:
            raise RuntimeError(f"{topic}: expected {per_partition} records per partition, high watermarks {wrong}")
        return Backlog(topic, partitions, per_partition, record_size, flush_size, marks, elapsed)
    return Backlog(topic, partitions, None, record_size, flush_size, marks, elapsed)
